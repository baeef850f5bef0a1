// SPDX-License-Identifier: GPL-2.0

//! Doorbell mode: asking a linked peer for a sign of life.
//!
//! In doorbell mode a quiet peer is not watched: nothing in flight, no timer. When the header's
//! `departures` word changes (see *Departures* in [`super::super::layout`]: the host's ivshmem-server
//! saw a client leave), a peer asks every peer it is linked with to show that it is still
//! there: it notes the peer's heartbeat and kicks it. A live peer answers by running its
//! housekeeping, which beats its heartbeat; a dead one never does, and its link goes down
//! [`PROBE_TIMEOUT_MS`] after the question instead of whenever traffic next waits on it.
//! Local memory, never shared.

use super::HEARTBEAT_TIMEOUT_MS;

/// How long (ms of the caller's live clock, see [`super::LiveClock`]) a probed peer has to move
/// its heartbeat. A kick reaches a live peer's NAPI in well under a millisecond; the rest is
/// room for a guest whose vCPU the host did not run for a while (under TCG on a loaded host,
/// a few hundred ms). Shorter than [`HEARTBEAT_TIMEOUT_MS`]: a probe is asked only when the host
/// has just seen someone leave.
pub const PROBE_TIMEOUT_MS: u64 = 500;

/// A probed peer that has not answered is kicked again this often (ms): a kick can be lost
/// (the peer's vector masked while it resets its device).
pub const PROBE_REKICK_MS: u64 = 100;

const _: () = assert!(PROBE_TIMEOUT_MS <= HEARTBEAT_TIMEOUT_MS);

/// The question asked of one peer, if any.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::{Probe, ProbeState, PROBE_TIMEOUT_MS};
///
/// let mut probe = Probe::default();
/// assert_eq!(probe.check(7, 0), ProbeState::Idle);
/// // Asked at live time 1000 while the peer's heartbeat read 7: the caller kicks it.
/// assert!(probe.start(1_000, 7));
/// // Asking again while a question is open changes nothing (and kicks nobody).
/// assert!(!probe.start(1_050, 7));
/// assert_eq!(probe.check(7, 1_100), ProbeState::Waiting(100));
/// // The heartbeat moved: the peer is alive, the question is closed.
/// assert_eq!(probe.check(8, 1_120), ProbeState::Answered);
/// assert_eq!(probe.check(8, 1_130), ProbeState::Idle);
///
/// // A peer that never answers.
/// assert!(probe.start(2_000, 8));
/// assert_eq!(probe.check(8, 2_000 + PROBE_TIMEOUT_MS), ProbeState::Waiting(PROBE_TIMEOUT_MS));
/// assert_eq!(probe.check(8, 2_001 + PROBE_TIMEOUT_MS), ProbeState::Expired);
/// assert_eq!(probe.check(8, 2_002 + PROBE_TIMEOUT_MS), ProbeState::Idle);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Probe {
    /// When the question was asked (live ms) and the heartbeat the peer showed then.
    asked: Option<(u64, u32)>,
}

/// Where a [`Probe`] stands after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeState {
    /// No question open.
    Idle,
    /// Asked this many ms ago; no answer yet.
    Waiting(u64),
    /// The peer answered (its heartbeat moved); the question is closed.
    Answered,
    /// No answer within [`PROBE_TIMEOUT_MS`]: the peer is gone. The question is closed.
    Expired,
}

impl Probe {
    /// Asks the question at live time `now_ms` of a peer whose heartbeat reads `heartbeat`.
    /// Returns whether a new question was opened (then the caller kicks the peer); `false` if
    /// one was already open.
    pub fn start(&mut self, now_ms: u64, heartbeat: u32) -> bool {
        if self.asked.is_some() {
            return false;
        }
        self.asked = Some((now_ms, heartbeat));
        true
    }

    /// Looks at the peer's heartbeat (read once by the caller) at live time `now_ms`.
    pub fn check(&mut self, heartbeat: u32, now_ms: u64) -> ProbeState {
        let Some((asked_ms, beat)) = self.asked else {
            return ProbeState::Idle;
        };
        if heartbeat != beat {
            self.asked = None;
            return ProbeState::Answered;
        }
        let waited = now_ms.saturating_sub(asked_ms);
        if waited > PROBE_TIMEOUT_MS {
            self.asked = None;
            return ProbeState::Expired;
        }
        ProbeState::Waiting(waited)
    }

    /// Closes an open question without an answer (the link went down for another reason).
    pub fn cancel(&mut self) {
        self.asked = None;
    }
}
