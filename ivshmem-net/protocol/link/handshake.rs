// SPDX-License-Identifier: GPL-2.0

//! The link state machine: what this peer does about its link with another, given what both
//! published ([`decide`], [`decide_with`]), and the clock and rules by which it judges whether
//! the other is still alive ([`LiveClock`], [`Liveness`]).
//!
//! Nothing here touches shared memory: the caller reads the peer's control block once
//! ([`super::read_peer`]) and performs the returned [`Action`] through its own control block
//! ([`super::Own`]) and ring halves. [`Link`] and [`LiveClock`] are this peer's local memory.

use super::{PeerState, PeerView};

/// A peer that has not changed its heartbeat for this long is treated as gone.
pub const HEARTBEAT_TIMEOUT_MS: u64 = 700;

/// Our looks at the peers (housekeeping) come at most this far apart while their liveness
/// is being judged: polling mode ticks at least every 100 ms (`poll_idle_ms` at most), doorbell
/// mode watches frames in flight every 50 ms. A longer gap means we ourselves were not running.
pub const MAX_LOOK_GAP_MS: u64 = 250;

/// The clock peers' liveness is judged by: real time, except that of a gap between our looks
/// longer than [`MAX_LOOK_GAP_MS`] only that much counts.
///
/// Such a gap is our own absence: this guest's vCPU was not scheduled, or the host (or the VM
/// it runs in) was paused, in which case the peers were not running either. Whatever a peer
/// did not do meanwhile (beat its heartbeat, consume our frames) proves nothing, so it is not
/// held against it; a peer that really died is still found [`HEARTBEAT_TIMEOUT_MS`] of our
/// own running time after its last sign of life. Local memory, never shared.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::{LiveClock, MAX_LOOK_GAP_MS};
///
/// let mut clock = LiveClock::default();
/// assert_eq!(clock.look(1_000), (0, None));
/// clock.expect_next(true);
/// assert_eq!(clock.look(1_100), (100, None));
/// clock.expect_next(true);
/// // We did not run for 10 s: only MAX_LOOK_GAP_MS of it counts against the peers.
/// assert_eq!(clock.look(11_100), (100 + MAX_LOOK_GAP_MS, Some(10_000)));
/// // A long gap nobody promised to fill (doorbell mode asleep) is no absence.
/// clock.expect_next(false);
/// assert_eq!(clock.look(20_000), (100 + 2 * MAX_LOOK_GAP_MS, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveClock {
    /// Real time (ms, caller's clock) of the previous look, if any.
    last_ms: Option<u64>,
    /// The live time at that look.
    live_ms: u64,
    /// Whether the previous look expected the next within [`MAX_LOOK_GAP_MS`].
    expected: bool,
}

impl LiveClock {
    /// A look at real time `now_ms`: returns the live time, and the length of the gap when
    /// it was an absence (a gap over [`MAX_LOOK_GAP_MS`] after a look that `expect_next`
    /// promised another within that). A gap nobody expected (doorbell mode asleep while all
    /// is quiet) is not an absence; the live clock advances by at most the same bound then,
    /// which nothing judged meanwhile can notice.
    pub fn look(&mut self, now_ms: u64) -> (u64, Option<u64>) {
        let gap = self.last_ms.map_or(0, |last| now_ms.saturating_sub(last));
        self.last_ms = Some(now_ms);
        self.live_ms = self.live_ms.saturating_add(gap.min(MAX_LOOK_GAP_MS));
        let absent = (self.expected && gap > MAX_LOOK_GAP_MS).then_some(gap);
        (self.live_ms, absent)
    }

    /// Says whether the look just taken promised the next within [`MAX_LOOK_GAP_MS`].
    pub fn expect_next(&mut self, soon: bool) {
        self.expected = soon;
    }
}

/// What this peer remembers about its link with one other peer (local memory, not shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    /// Whether the link is up (traffic flows).
    pub up: bool,
    /// The peer's heartbeat when we last saw it change.
    pub last_heartbeat: u32,
    /// When (in ms, caller's clock) we last saw the heartbeat (or a ring index, see
    /// [`Liveness::Heartbeat`]) change.
    pub last_change_ms: u64,
    /// The ring indices the peer writes, when we last looked ([`Liveness::Heartbeat`]).
    pub last_rings: [u32; 2],
    /// Whether we have ever seen the peer's heartbeat.
    pub seen: bool,
}

/// The one decision the link logic takes about a peer, given what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing changes.
    Stay,
    /// Reset our halves of the pair's rings, then acknowledge the peer's epoch (the value in
    /// the variant). The link stays or goes down until the peer acknowledges us.
    Resync(u32),
    /// Both sides are synced: start traffic.
    Up,
    /// Stop traffic: the peer left, stopped beating, or restarted the link. `Resync` follows
    /// on a later decision if the peer is still there.
    Down(DownReason),
}

/// Why a link went down (counted per peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The peer's state is not `Run`.
    Left,
    /// The peer's heartbeat did not change for [`HEARTBEAT_TIMEOUT_MS`].
    Silent,
    /// The peer changed its epoch (it restarted the link).
    Restarted,
    /// The peer's state word holds garbage.
    Garbage,
}

/// The link state machine: a pure function of what we remember (`link`), what we published
/// (`our_epoch`, `our_ack`), what the peer published (`peer`), and the time `now_ms`.
/// Updates the heartbeat bookkeeping in `link` and returns the action; the caller performs it
/// and records `up` accordingly.
///
/// # Examples
///
/// Two peers bring their link up, each doing what `decide` says about the other:
///
/// ```
/// use ivshmem_net_protocol::layout::{attach, Geometry};
/// use ivshmem_net_protocol::link::{decide, read_peer, Action, Link, Own, PeerState};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let mut peers = [Own::new(&g, 0)?, Own::new(&g, 1)?];
/// for p in &mut peers {
///     p.attach(&region, [2, 0, 0, 0, 0, p.id() as u8], 1500)?;
///     p.set_state(&region, PeerState::Run)?;
/// }
/// let mut links = [Link::default(); 2];
/// for now_ms in 0..3 {
///     for (me, (own, link)) in peers.iter_mut().zip(&mut links).enumerate() {
///         let (me, j) = (me as u32, 1 - me as u32);
///         let peer = read_peer(&region, &g, j, me)?;
///         let (epoch, ack) = (own.epoch(&region, j)?, own.acked(&region, j)?);
///         match decide(link, epoch, ack, &peer, now_ms) {
///             // (Resetting our halves of the two rings would come first.)
///             Action::Resync(e) => own.ack(&region, j, e)?,
///             Action::Up => link.up = true,
///             Action::Down(_) => link.up = false,
///             Action::Stay => {}
///         }
///     }
/// }
/// assert!(links[0].up && links[1].up);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
pub fn decide(
    link: &mut Link,
    our_epoch: u32,
    our_ack: u32,
    peer: &PeerView,
    now_ms: u64,
) -> Action {
    decide_with(
        link,
        our_epoch,
        our_ack,
        peer,
        now_ms,
        Liveness::Heartbeat { rings: [0; 2] },
    )
}

/// How [`decide_with`] tells a dead peer from a live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The peer beats its heartbeat all the time (polling mode): silent once neither it nor
    /// `rings` changed for [`HEARTBEAT_TIMEOUT_MS`]. `rings` are the indices the peer writes as
    /// it moves data with us (its consumer index on our ring, its producer index on its ring
    /// to us): a peer busy moving data whose timer runs late is alive.
    Heartbeat {
        /// The peer's consumer and producer indices, read raw (only compared).
        rings: [u32; 2],
    },
    /// The peer sleeps while idle (doorbell mode): the caller says whether frames it sent the
    /// peer have waited unconsumed for [`HEARTBEAT_TIMEOUT_MS`] (`stalled`).
    Progress {
        /// Frames are waiting and the peer has not consumed any for the timeout.
        stalled: bool,
    },
}

/// [`decide`], with the liveness rule of the peer's mode.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::{
///     decide_with, feature, Action, DownReason, Link, Liveness, PeerState, PeerView,
///     HEARTBEAT_TIMEOUT_MS,
/// };
///
/// // A linked peer whose heartbeat stands still.
/// let peer = PeerView {
///     state: Some(PeerState::Run),
///     heartbeat: 7,
///     epoch: 1,
///     ack: 1,
///     mac: [2, 0, 0, 0, 0, 1],
///     mtu: 1500,
///     features: feature::DOORBELL,
///     queues: 1,
///     vectors: 1,
/// };
/// let late = HEARTBEAT_TIMEOUT_MS + 1;
/// // Doorbell mode: it sleeps while idle, so only frames it leaves waiting count.
/// let mut link = Link { up: true, ..Link::default() };
/// let idle = Liveness::Progress { stalled: false };
/// assert_eq!(decide_with(&mut link, 1, 1, &peer, 0, idle), Action::Stay);
/// assert_eq!(decide_with(&mut link, 1, 1, &peer, late, idle), Action::Stay);
/// let stalled = Liveness::Progress { stalled: true };
/// let down = Action::Down(DownReason::Silent);
/// assert_eq!(decide_with(&mut link, 1, 1, &peer, late, stalled), down);
/// // Polling mode: the same silence is a dead peer.
/// let mut link = Link { up: true, ..Link::default() };
/// let polling = Liveness::Heartbeat { rings: [0; 2] };
/// assert_eq!(decide_with(&mut link, 1, 1, &peer, 0, polling), Action::Stay);
/// assert_eq!(decide_with(&mut link, 1, 1, &peer, late, polling), down);
/// ```
pub fn decide_with(
    link: &mut Link,
    our_epoch: u32,
    our_ack: u32,
    peer: &PeerView,
    now_ms: u64,
    liveness: Liveness,
) -> Action {
    let rings = match liveness {
        Liveness::Heartbeat { rings } => rings,
        Liveness::Progress { .. } => link.last_rings,
    };
    if !link.seen || peer.heartbeat != link.last_heartbeat || rings != link.last_rings {
        link.seen = true;
        link.last_heartbeat = peer.heartbeat;
        link.last_rings = rings;
        link.last_change_ms = now_ms;
    }
    let silent = match liveness {
        Liveness::Heartbeat { .. } => {
            now_ms.saturating_sub(link.last_change_ms) > HEARTBEAT_TIMEOUT_MS
        }
        Liveness::Progress { stalled } => stalled,
    };
    let reason = match peer.state {
        None => Some(DownReason::Garbage),
        Some(PeerState::Run) if silent => Some(DownReason::Silent),
        Some(PeerState::Run) => None,
        Some(_) => Some(DownReason::Left),
    };
    if let Some(reason) = reason {
        return if link.up {
            Action::Down(reason)
        } else {
            Action::Stay
        };
    }
    if our_ack != peer.epoch {
        // The peer (re)started its side: whatever we had is stale.
        return if link.up {
            Action::Down(DownReason::Restarted)
        } else {
            Action::Resync(peer.epoch)
        };
    }
    let synced = peer.ack == our_epoch;
    match (link.up, synced) {
        (false, true) => Action::Up,
        // We restarted our side (bumped our epoch) and the peer has not caught up yet.
        (true, false) => Action::Down(DownReason::Restarted),
        _ => Action::Stay,
    }
}
