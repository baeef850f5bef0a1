// SPDX-License-Identifier: GPL-2.0

//! The module parameters (declared in `rust/params.c`), checked once at load time.

use crate::ext::params as raw;
use crate::protocol::layout::{MAX_PEERS, MAX_QUEUES, MIN_PEERS};
use kernel::{prelude::*, str::CStr};

/// Longest timer interval: the heartbeat must advance at least every 100 ms.
const MAX_POLL_MS: u32 = 100;
/// Longest `poll_us`: beyond a millisecond the `poll_ms` timer does as well.
const MAX_POLL_US: u32 = 1000;

/// Validated module parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// `id=`: a fixed peer id, or `None` to pick one.
    pub(crate) id: Option<u32>,
    /// `max_peers=`.
    pub(crate) max_peers: u32,
    /// `poll_ms=`: timer interval while traffic flows.
    pub(crate) poll_ms: u32,
    /// `poll_idle_ms=`: longest timer interval when idle.
    pub(crate) poll_idle_ms: u32,
    /// `poll_us=`: while traffic flows, how soon (µs) to poll again after a poll that found
    /// nothing (up to 8 times later once frames were last found over a millisecond ago);
    /// 0: only the timer polls.
    pub(crate) poll_us: u32,
    /// `queues=`: channels wanted, `None` for one per online CPU (either way capped at probe
    /// by what the region allows).
    pub(crate) queues: Option<u32>,
    /// `rx_threads=`: receive polls under sustained load move to the NAPI threads.
    pub(crate) rx_threads: bool,
    /// `rx_spin=`, resolved at load (-1: whether the guest has one online CPU): receive
    /// contexts in their threads spin while traffic flows (`spin` in `netdev/rx.rs`).
    pub(crate) rx_spin: bool,
    /// `transparent=`: the regular interface of transparent mode, `None` when off.
    pub(crate) transparent: Option<&'static CStr>,
}

impl Params {
    /// Reads and checks the parameters; a bad one is named in the log and refused with
    /// `EINVAL`, so `insmod` fails before anything is bound.
    pub(crate) fn get() -> Result<Self> {
        let max_peers = raw::max_peers();
        if !(MIN_PEERS..=MAX_PEERS).contains(&max_peers) {
            pr_err!(
                "max_peers={} is out of range {}..={}\n",
                max_peers,
                MIN_PEERS,
                MAX_PEERS
            );
            return Err(EINVAL);
        }
        let id = match raw::id() {
            -1 => None,
            id if id >= 0 && (id as u32) < max_peers => Some(id as u32),
            id => {
                pr_err!(
                    "id={} is out of range: -1 (automatic) or 0..={} (max_peers={})\n",
                    id,
                    max_peers - 1,
                    max_peers
                );
                return Err(EINVAL);
            }
        };
        let poll_ms = raw::poll_ms();
        if !(1..=MAX_POLL_MS).contains(&poll_ms) {
            pr_err!("poll_ms={} is out of range 1..={}\n", poll_ms, MAX_POLL_MS);
            return Err(EINVAL);
        }
        let poll_idle_ms = raw::poll_idle_ms();
        if !(poll_ms..=MAX_POLL_MS).contains(&poll_idle_ms) {
            pr_err!(
                "poll_idle_ms={} is out of range poll_ms..={} ({}..={})\n",
                poll_idle_ms,
                MAX_POLL_MS,
                poll_ms,
                MAX_POLL_MS
            );
            return Err(EINVAL);
        }
        let poll_us = raw::poll_us();
        if poll_us > MAX_POLL_US {
            pr_err!("poll_us={} is out of range 0..={}\n", poll_us, MAX_POLL_US);
            return Err(EINVAL);
        }
        let queues = match raw::queues() {
            0 => None,
            q if q <= MAX_QUEUES => Some(q),
            q => {
                pr_err!(
                    "queues={} is out of range 0..={} (0: one per online CPU)\n",
                    q,
                    MAX_QUEUES
                );
                return Err(EINVAL);
            }
        };
        let rx_threads = match raw::rx_threads() {
            0 => false,
            1 => true,
            v => {
                pr_err!("rx_threads={} is out of range 0..=1\n", v);
                return Err(EINVAL);
            }
        };
        let rx_spin = match raw::rx_spin() {
            // A spinning vCPU never halts. On a guest with one vCPU it spins only when that
            // vCPU has nothing else to run; with several, the host CPU it takes may be one
            // its siblings need: two 2-vCPU guests on a 2-CPU host ran TCP at half the rate
            // with spinning (docs/benchmarks.md, Spinning while traffic flows).
            -1 => raw::online_cpus() == 1,
            0 => false,
            1 => true,
            v => {
                pr_err!(
                    "rx_spin={} is out of range -1..=1 (-1: only on a guest with one CPU)\n",
                    v
                );
                return Err(EINVAL);
            }
        };
        let name = raw::transparent();
        let transparent = match name.len() {
            0 => None,
            // IFNAMSIZ is 16 with the NUL.
            1..=15
                if !name
                    .as_bytes()
                    .iter()
                    .any(|&b| b == b'/' || b.is_ascii_whitespace()) =>
            {
                Some(name)
            }
            _ => {
                pr_err!(
                    "transparent={} is not an interface name (1..=15 characters, no '/' or \
                     spaces)\n",
                    name
                );
                return Err(EINVAL);
            }
        };
        Ok(Params {
            id,
            max_peers,
            poll_ms,
            poll_idle_ms,
            poll_us,
            queues,
            rx_threads,
            rx_spin,
            transparent,
        })
    }
}
