// SPDX-License-Identifier: GPL-2.0

//! Counters: monotonic, never cleared, updated without locks. One table per kind (device,
//! peer, channel) drives both the `ethtool -S` names and values, so they cannot drift apart.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// A monotonic event or byte counter.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Device-wide counters.
#[derive(Default)]
pub(crate) struct Global {
    pub(crate) tx_packets: Counter,
    pub(crate) tx_bytes: Counter,
    pub(crate) rx_packets: Counter,
    pub(crate) rx_bytes: Counter,
    /// Transmit found the destination ring full (queue stopped, or a broadcast copy dropped).
    pub(crate) tx_ring_full: Counter,
    /// Times the transmit queue was stopped because a ring was (about to be) full.
    pub(crate) tx_queue_stops: Counter,
    /// Times the transmit queue was woken again.
    pub(crate) tx_queue_wakes: Counter,
    /// Unicast to a MAC no peer with a running link owns, or nobody to broadcast to.
    pub(crate) tx_drop_no_peer: Counter,
    /// Frame longer than the destination peer's MTU allows.
    pub(crate) tx_drop_too_big: Counter,
    /// Frame that could not be linearised or is shorter than an Ethernet header.
    pub(crate) tx_drop_error: Counter,
    /// Received frame dropped for lack of a socket buffer.
    pub(crate) rx_drop_nomem: Counter,
    /// Received frame dropped as longer than we take (our MTU without segmentation offload,
    /// the offload maximum we advertise with it) or with a segment size below the stack's
    /// minimum ([`crate::protocol::frame::rx_verdict`]).
    pub(crate) rx_drop_oversize: Counter,
    /// Received frame dropped because copying it out of the ring into its buffer failed (its
    /// range outside our mapping: never expected, the ring checks keep frames inside).
    pub(crate) rx_drop_error: Counter,
    /// NAPI polls.
    pub(crate) rx_polls: Counter,
    /// Polls that found nothing and polled again at once (the context spins in its thread
    /// while traffic flows), also counted in `rx_polls`.
    pub(crate) rx_spins: Counter,
    /// Polls made by a socket busy polling us (`net.core.busy_read`, `SO_BUSY_POLL`), also
    /// counted in `rx_polls`.
    pub(crate) rx_busy_polls: Counter,
    /// Impossible ring indices or descriptors written by a peer, or runt frames.
    pub(crate) rx_bad_desc: Counter,
    /// Links taken down because the peer left, restarted, or broke the protocol.
    pub(crate) peer_resets: Counter,
    /// Links taken down because the peer's heartbeat stopped.
    pub(crate) heartbeat_losses: Counter,
    /// `rx_threads`: times a receive queue's NAPI context moved to its kernel thread (its
    /// polls kept using their whole budget).
    pub(crate) rx_to_thread: Counter,
    /// `rx_threads`: times it came back to softirq context.
    pub(crate) rx_to_softirq: Counter,
    /// Polling mode: links restarted because frames we sent the peer stayed unconsumed for
    /// the liveness timeout while they kept the transmit queue stopped (the pool they hold is
    /// every peer's); also counted in `peer_resets`. Doorbell mode counts such a peer in
    /// `heartbeat_losses`.
    pub(crate) pool_hog_resets: Counter,
    /// Our own housekeeping came over 250 ms late (this guest or its host was not running):
    /// that stretch was not held against the peers' liveness
    /// ([`crate::protocol::link::LiveClock`]).
    pub(crate) own_stalls: Counter,
    /// Doorbell mode: interrupts sent to peers.
    pub(crate) doorbells_sent: Counter,
    /// Doorbell mode: interrupts received.
    pub(crate) doorbells_received: Counter,
    /// Doorbell mode: publications that needed no interrupt (the other side was awake).
    pub(crate) kicks_suppressed: Counter,
    /// Doorbell mode: kicks repeated because frames waited unconsumed (a lost interrupt).
    pub(crate) doorbells_repeated: Counter,
    /// Doorbell mode: linked peers asked for a sign of life because the host's ivshmem-server
    /// saw a client leave ([`crate::protocol::link::Probe`]); those that gave none count in
    /// `heartbeat_losses`.
    pub(crate) departure_probes: Counter,
    /// Peers whose link came up with a MAC another peer (or we) held first: they get no
    /// unicast for it (the first claim wins).
    pub(crate) peer_mac_conflicts: Counter,
    /// Words of our control block, the region header or our slot that someone else
    /// overwrote, restored by us.
    pub(crate) region_repairs: Counter,
    /// Transparent mode: packets for a peer's regular address sent through its ring instead
    /// of the regular interface.
    pub(crate) transparent_tx_packets: Counter,
    /// Transparent mode: frames from a peer delivered as if received on the regular
    /// interface.
    pub(crate) transparent_rx_packets: Counter,
    /// Transparent mode: packets for a peer's regular address left to the regular interface
    /// (ring full, link going down, too big, an offload the ring cannot express, or from
    /// another address of ours than the one we publish, which the peer would drop).
    pub(crate) transparent_fallbacks: Counter,
    /// Transparent mode: frames for the regular interface dropped: not from the sending
    /// peer's published addresses, from one that is off-link or that the regular interface's
    /// neighbour table gives to another MAC, or the regular interface is gone or down.
    pub(crate) transparent_rx_dropped: Counter,
    /// Transparent mode: packets for a peer's published address left to the regular
    /// interface because the claim did not hold for them: their route has a gateway or an
    /// IPsec transform, or the address is off-link or not (yet) resolved by the regular
    /// interface to the MAC the peer published.
    pub(crate) transparent_unverified: Counter,
    /// Transparent mode: packets for a peer's published address left to the regular
    /// interface because the peer does not accept our claim for their IP version (it would
    /// drop them: our address is off-link for it, or its neighbour table gives our address to
    /// another MAC, or it has not read what we published yet).
    pub(crate) transparent_unaccepted: Counter,
    /// Transparent mode: times a peer's addresses moved from the regular interface into
    /// shared memory (its link came up with a claim we took, or came back up with the claim
    /// it kept).
    pub(crate) transparent_to_shm: Counter,
    /// Transparent mode: times a peer's addresses moved from shared memory back to the
    /// regular interface (its link went down, it left, or its claim was withdrawn or
    /// refused).
    pub(crate) transparent_to_regular: Counter,
}

/// Counters of the link with one peer.
#[derive(Default)]
pub(crate) struct Peer {
    pub(crate) tx_packets: Counter,
    pub(crate) tx_bytes: Counter,
    pub(crate) rx_packets: Counter,
    pub(crate) rx_bytes: Counter,
    pub(crate) tx_ring_full: Counter,
    pub(crate) rx_drop_oversize: Counter,
    pub(crate) bad_desc: Counter,
    pub(crate) resets: Counter,
    pub(crate) heartbeat_losses: Counter,
}

/// Counters of one channel (queue pair): its transmit queue's frames and stops, its receive
/// queue's frames and drops.
#[derive(Default)]
pub(crate) struct Queue {
    /// Frames (and bytes) the stack handed to transmit queue `c` that went into a ring.
    pub(crate) tx_packets: Counter,
    pub(crate) tx_bytes: Counter,
    /// Times transmit queue `c` stopped itself because a channel's pool or ring was full, and
    /// was woken again (also counted in the global `tx_queue_stops`/`tx_queue_wakes`).
    pub(crate) tx_stops: Counter,
    pub(crate) tx_wakes: Counter,
    /// Frames (and bytes) NAPI context `c` took off the rings `c` and handed on.
    pub(crate) rx_packets: Counter,
    pub(crate) rx_bytes: Counter,
    /// Frames NAPI context `c` dropped (no buffer, oversize, copy failed: also in the global
    /// `rx_drop_*`).
    pub(crate) rx_drops: Counter,
}

type Field<S> = (&'static str, fn(&S) -> &Counter);

/// `ethtool -S` names (`tx_queue<c>_packets`: the part before the channel number, the part
/// after) and values of each channel's counters, shown for every channel the device may
/// have (`ethtool -l`'s maximum), active or not.
const QUEUE: &[(&str, &str, fn(&Queue) -> &Counter)] = &[
    ("tx_queue", "_packets", |s| &s.tx_packets),
    ("tx_queue", "_bytes", |s| &s.tx_bytes),
    ("tx_queue", "_stops", |s| &s.tx_stops),
    ("tx_queue", "_wakes", |s| &s.tx_wakes),
    ("rx_queue", "_packets", |s| &s.rx_packets),
    ("rx_queue", "_bytes", |s| &s.rx_bytes),
    ("rx_queue", "_drops", |s| &s.rx_drops),
];

/// `ethtool -S` names and values of the device-wide counters, in order.
const GLOBAL: &[Field<Global>] = &[
    ("tx_packets", |s| &s.tx_packets),
    ("tx_bytes", |s| &s.tx_bytes),
    ("rx_packets", |s| &s.rx_packets),
    ("rx_bytes", |s| &s.rx_bytes),
    ("tx_ring_full", |s| &s.tx_ring_full),
    ("tx_queue_stops", |s| &s.tx_queue_stops),
    ("tx_queue_wakes", |s| &s.tx_queue_wakes),
    ("tx_drop_no_peer", |s| &s.tx_drop_no_peer),
    ("tx_drop_too_big", |s| &s.tx_drop_too_big),
    ("tx_drop_error", |s| &s.tx_drop_error),
    ("rx_drop_nomem", |s| &s.rx_drop_nomem),
    ("rx_drop_oversize", |s| &s.rx_drop_oversize),
    ("rx_drop_error", |s| &s.rx_drop_error),
    ("rx_polls", |s| &s.rx_polls),
    ("rx_spins", |s| &s.rx_spins),
    ("rx_busy_polls", |s| &s.rx_busy_polls),
    ("rx_to_thread", |s| &s.rx_to_thread),
    ("rx_to_softirq", |s| &s.rx_to_softirq),
    ("rx_bad_desc", |s| &s.rx_bad_desc),
    ("peer_resets", |s| &s.peer_resets),
    ("heartbeat_losses", |s| &s.heartbeat_losses),
    ("pool_hog_resets", |s| &s.pool_hog_resets),
    ("own_stalls", |s| &s.own_stalls),
    ("doorbells_sent", |s| &s.doorbells_sent),
    ("doorbells_received", |s| &s.doorbells_received),
    ("kicks_suppressed", |s| &s.kicks_suppressed),
    ("doorbells_repeated", |s| &s.doorbells_repeated),
    ("departure_probes", |s| &s.departure_probes),
    ("peer_mac_conflicts", |s| &s.peer_mac_conflicts),
    ("region_repairs", |s| &s.region_repairs),
    ("transparent_tx_packets", |s| &s.transparent_tx_packets),
    ("transparent_rx_packets", |s| &s.transparent_rx_packets),
    ("transparent_fallbacks", |s| &s.transparent_fallbacks),
    ("transparent_rx_dropped", |s| &s.transparent_rx_dropped),
    ("transparent_unverified", |s| &s.transparent_unverified),
    ("transparent_unaccepted", |s| &s.transparent_unaccepted),
    ("transparent_to_shm", |s| &s.transparent_to_shm),
    ("transparent_to_regular", |s| &s.transparent_to_regular),
];

/// `ethtool -S` name suffixes (after `peer<j>_`) and values of each peer's counters.
const PEER: &[Field<Peer>] = &[
    ("tx_packets", |s| &s.tx_packets),
    ("tx_bytes", |s| &s.tx_bytes),
    ("rx_packets", |s| &s.rx_packets),
    ("rx_bytes", |s| &s.rx_bytes),
    ("tx_ring_full", |s| &s.tx_ring_full),
    ("rx_drop_oversize", |s| &s.rx_drop_oversize),
    ("bad_desc", |s| &s.bad_desc),
    ("resets", |s| &s.resets),
    ("heartbeat_losses", |s| &s.heartbeat_losses),
];

/// All counters of one device: the global ones, then one set per other peer.
pub(crate) struct Stats {
    pub(crate) global: Global,
    /// Indexed by peer id; our own id's entry exists but is never reported.
    peers: KVec<Peer>,
    spare: Peer,
    /// Indexed by channel.
    queues: KVec<Queue>,
    spare_queue: Queue,
    me: u32,
}

impl Stats {
    /// Counters for a device that is peer `me` of `max_peers`.
    pub(crate) fn new(max_peers: u32, me: u32, queues: u32) -> Result<Self> {
        let mut peers = KVec::with_capacity(max_peers as usize, GFP_KERNEL)?;
        for _ in 0..max_peers {
            peers.push(Peer::default(), GFP_KERNEL)?;
        }
        let mut qs = KVec::with_capacity(queues as usize, GFP_KERNEL)?;
        for _ in 0..queues {
            qs.push(Queue::default(), GFP_KERNEL)?;
        }
        Ok(Stats {
            global: Global::default(),
            peers,
            spare: Peer::default(),
            queues: qs,
            spare_queue: Queue::default(),
            me,
        })
    }

    /// The counters of channel `c` (beyond the device's channels, a spare set that is never
    /// reported).
    pub(crate) fn queue(&self, c: u32) -> &Queue {
        self.queues.get(c as usize).unwrap_or(&self.spare_queue)
    }

    /// The counters of the link with peer `j` (our own id and unknown ids get a spare set
    /// that is never reported, so callers need no special case).
    pub(crate) fn peer(&self, j: u32) -> &Peer {
        self.peers
            .get(j as usize)
            .filter(|_| j != self.me)
            .unwrap_or(&self.spare)
    }

    /// The peers that are reported, in order.
    fn reported(&self) -> impl Iterator<Item = (u32, &Peer)> {
        let me = self.me;
        self.peers
            .iter()
            .enumerate()
            .filter(move |(j, _)| *j as u32 != me)
            .map(|(j, p)| (j as u32, p))
    }

    /// Number of `ethtool -S` counters.
    pub(crate) fn count(&self) -> usize {
        GLOBAL.len() + (self.peers.len() - 1) * PEER.len() + self.queues.len() * QUEUE.len()
    }

    /// Writes the name of counter `i` into `out` (truncated; the caller NUL-pads).
    pub(crate) fn name(&self, i: usize, out: &mut [u8]) {
        let mut w = ByteWriter { buf: out, len: 0 };
        if let Some((name, _)) = GLOBAL.get(i) {
            let _ = w.write_str(name);
            return;
        }
        let k = i - GLOBAL.len();
        let peers = (self.peers.len() - 1) * PEER.len();
        if k < peers {
            if let Some((j, _)) = self.reported().nth(k / PEER.len()) {
                let _ = write!(w, "peer{}_{}", j, PEER[k % PEER.len()].0);
            }
            return;
        }
        let k = k - peers;
        if let Some((pre, post, _)) = QUEUE.get(k % QUEUE.len()) {
            let _ = write!(w, "{}{}{}", pre, k / QUEUE.len(), post);
        }
    }

    /// All values, in name order; `out` has room for [`Stats::count`].
    pub(crate) fn values(&self, out: &mut [u64]) {
        let global = GLOBAL.iter().map(|(_, f)| f(&self.global).get());
        let peers = self
            .reported()
            .flat_map(|(_, p)| PEER.iter().map(move |(_, f)| f(p).get()));
        let queues = self
            .queues
            .iter()
            .flat_map(|q| QUEUE.iter().map(move |(_, _, f)| f(q).get()));
        for (slot, v) in out
            .iter_mut()
            .zip(Iterator::chain(Iterator::chain(global, peers), queues))
        {
            *slot = v;
        }
    }
}

/// Formats into a fixed byte buffer, dropping what does not fit.
struct ByteWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
