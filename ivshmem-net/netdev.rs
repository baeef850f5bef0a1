// SPDX-License-Identifier: GPL-2.0

//! The network device `ivshm%d`: transmit into the ring of the destination peer, receive from
//! every peer's ring through NAPI, and a timer that beats our heartbeat, runs the link
//! handshake with each peer ([`crate::protocol::link`]) and, without interrupts, drives the
//! polling.
//!
//! This file holds [`Net`], its state and the net-device operations, which only dispatch; the
//! work is continued in one file per concern, each an `impl super::Net`:
//!
//! - [`tx`]: `start_xmit`, copying frames into the rings, publishing and kicking, stopping and
//!   waking the queues.
//! - [`rx`]: the NAPI polls, taking frames off the rings, giving space back, receive events.
//! - [`links`]: the timer, housekeeping, the link handshake with each peer, resets, repairs,
//!   kicks and liveness.
//! - [`transparent`]: transparent mode: the peer table, the checks of what peers publish, and
//!   the netfilter hook that diverts packets of the regular interface.
//! - [`ethtool`]: what `ethtool` and netdev netlink show (`-i`, `-S`, `-g`, `-l`/`-L`, and the
//!   per-queue statistics of `qstats-get`), as `Ethtool` and `QueueStats` of `Net`.
//!
//! # Channels
//!
//! A channel `c` (below the active count `n`, `queues=` or one per online CPU, changed by
//! `ethtool -L`) is transmit queue `c`, receive queue `c`, NAPI context `c` and, in doorbell
//! mode, interrupt vector `c % vectors`. A link's queue count `k` is the smaller of our `n` and
//! the peer's (its `QUEUES` word) when the link comes up; ring `(i -> j, q)` carries channel
//! `q < k`. Transmit queue `t` sends to a peer on ring `t % k` from partition `t % k` of our
//! pool, under that channel's `tx` lock; NAPI context `c` receives from ring `c` of every
//! peer whose link has more than `c` queues, under channel `c`'s `rx` lock.
//!
//! # Who touches what
//!
//! | state                          | lock          | used by                                  |
//! |--------------------------------|---------------|------------------------------------------|
//! | our control block, links       | `ctl`         | timer (softirq), open/stop/change_mtu    |
//! | peers' MACs, MTUs, queue counts| `peers`       | `start_xmit`, offloads, links            |
//! | channel c: partition c, rings c to peers, stopped queues | `tx` (of c) | `start_xmit`, TX wake (NAPI c, timer), links |
//! | channel c: rings c from peers  | `rx` (of c)   | NAPI poll c, link changes                |
//! | transparent-mode peer table    | `transparent` | timer (links), netfilter hook, NAPI poll |
//! | counters, reset requests, acks | none          | atomics                                  |
//!
//! The locks nest only as `ctl` before `peers`, a `tx`, an `rx` or `transparent`, an `rx`
//! before `peers` or a `tx` (a frame handed to the stack under `rx` may make it transmit, e.g.
//! a TCP ACK) and an `rx` before `transparent`; nothing takes `ctl` or an `rx` while holding
//! `peers`, a `tx` or `transparent`; transmit releases `peers` before it takes a `tx`, and
//! never holds two channels' locks at once; the netfilter hook releases `transparent` before
//! it takes `peers` or a `tx`; the link code takes `peers`, each channel's `tx` and `rx`, and
//! `transparent` one after the other, never nested. (All channels' `tx` locks are one lockdep
//! class, as are their `rx` locks: none is ever taken inside another of its class.) Lockdep
//! checks this in `make test-reliability`. All of them disable bottom halves, since process
//! context shares them with softirqs. A ring half is reset only while its link is down in its
//! channel's `tx`/`rx` masks, so the data path never sees a half-reset ring.
//!
//! Everything a peer wrote is read once and checked by the ring and link code. When it cannot
//! be right, the data path stops using that peer's rings at once, counts it, logs at most once
//! a second, and asks the timer to restart the link; the peer then has to go through the
//! handshake again. Nothing a peer writes can make us loop, panic, or touch memory outside
//! the ring in question.

mod ethtool;
mod links;
mod rx;
use rx::RX_THREAD_NICE;
mod transparent;
mod tx;

use crate::ext::{
    io::IoMem,
    net::{Device, NapiPoll, Operations, SkBuff, Stats64, Xmit},
    netfilter::{self, PostRoutingHook},
    pci,
    shm::SharedMem,
    sync::SpinLockBh,
};
use crate::params::Params;
use crate::protocol::frame;
use crate::protocol::layout::{self, Attached, Claimed, Geometry, MAX_PEERS, MAX_QUEUES};
use crate::protocol::link::{
    feature, Accepted, Addrs, HoldDown, Link, LiveClock, Own, PeerState, Probe,
};
use crate::protocol::ring::{Consumer, Pool, Producer};
use crate::ratelimit::Ratelimit;
use crate::regs::{self, Irq};
use crate::stats::Stats;
use crate::{dev_warn, new_spinlock_bh};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use kernel::{c_str, prelude::*, types::ARef};

/// In doorbell mode, how often the timer looks at links while something is pending (a
/// handshake, frames in flight, a stopped queue); it is not armed at all when all is quiet.
const WATCH_MS: u32 = 50;
/// In doorbell mode, how often the timer audits the region while something is wrong but
/// nothing needs watching closely (no carrier, or a peer whose control block is garbage or
/// does not answer): it repairs what someone overwrote and wakes the peers concerned, which may
/// be asleep with as little idea as we have that anything happened. A healthy idle pair is
/// never woken.
const AUDIT_MS: u32 = 1000;
/// No doorbell id known for a peer.
const NO_DOORBELL: u32 = u32::MAX;
/// Driver version reported by `ethtool -i`.
const VERSION: &CStr = c_str!("0.1.0");

/// The bit of peer `j` in a set of peers (`u64`; 0 for an id beyond 63).
fn bit(j: u32) -> u64 {
    1u64.checked_shl(j).unwrap_or(0)
}

/// A MAC address, printed as `xx:xx:xx:xx:xx:xx`.
pub(crate) struct Mac(pub(crate) [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Where a producer keeps the pool serials of its frames in flight: on the heap (2 KiB per
/// peer), not in the producer, which is built on the probe's stack.
struct Starts(KVec<u32>);

impl AsRef<[u32]> for Starts {
    fn as_ref(&self) -> &[u32] {
        &self.0
    }
}

impl AsMut<[u32]> for Starts {
    fn as_mut(&mut self) -> &mut [u32] {
        &mut self.0
    }
}

/// What we know of peer `j` for transmitting, whatever the channel: copied from its control
/// block when its link came up.
#[derive(Clone, Copy, Default)]
struct TxPeer {
    /// The peer's MAC, MTU and feature bits (used only in comparisons).
    mac: [u8; 6],
    mtu: u32,
    features: u32,
    /// The link's queue count: the smaller of ours and the peer's `QUEUES` when the link
    /// came up ([`link::link_queues`]). Ring `c` of the link carries channel `c`, `c` below it.
    queues: u32,
    /// The word in the peer's slot when its link last came up: its seat's token. A MAC
    /// claim belongs to the seat (see [`Net::claim_mac`]).
    seat: u32,
}

/// The peers as transmit sees them, under the `peers` lock.
struct Peers {
    /// Indexed by peer id (our own entry unused).
    peers: KVec<TxPeer>,
    /// Peers whose links carry traffic.
    up: u64,
    /// Peers whose MAC we send unicast to: the first to claim it while no other peer held it
    /// (see [`Net::claim_mac`]); kept while the peer's link is down, for as long as its seat
    /// (slot word) holds the token it had when the link came up.
    mac_owner: u64,
    /// Peers whose link came up with a MAC another peer (or we) held first: no unicast for
    /// them (logged and counted once per claim).
    mac_refused: u64,
}

/// Our producer of ring `c` to peer `j`, with its liveness watch.
struct TxRing {
    prod: Producer<Starts>,
    /// The peer's consumer index when it last moved, and when (on the [`LiveClock`]): its
    /// liveness in doorbell mode, whether it holds a transmit queue in polling mode.
    last_cons: u32,
    cons_change_ms: u64,
    /// Whether frames were in flight when we last looked: frames found in flight after a
    /// look that found none were published since, and their wait starts now, however long
    /// ago that look was (the timer may have slept).
    was_waiting: bool,
}

/// Transmit state of channel `c`, under its `tx` lock.
struct Tx {
    /// Partition `c` of our transmit pool (the whole pool with one channel): every frame on
    /// a ring `c`, to whichever peer, is written there.
    pool: Pool,
    /// Ring `c` to each peer, indexed by peer id; `None` for our own id.
    rings: KVec<Option<TxRing>>,
    /// Peers whose links carry traffic on this channel (up, and `c` below the link's queue
    /// count).
    up: u64,
    /// Transmit queues (bit `t`) that stopped themselves because this channel's pool or one
    /// of its rings was full; its reclaim wakes exactly those.
    stopped: u32,
    /// Peers whose full ring stopped a queue (out of descriptor slots).
    stopped_for: u64,
    /// Peers with committed frames not yet published (batching with `xmit_more`).
    unpublished: u64,
}

/// Our consumer of ring `c` from peer `j`.
struct RxPeer {
    cons: Consumer,
    /// The peer's feature bits when the link came up: offloads it may use.
    features: u32,
}

/// Receive state of channel `c`, under its `rx` lock.
struct Rx {
    /// Ring `c` from each peer, indexed by peer id; `None` for our own id.
    peers: KVec<Option<RxPeer>>,
    /// Peers whose links carry traffic on this channel.
    up: u64,
    /// Where the next poll starts, so that one busy peer cannot starve the others.
    next: u32,
    /// Doorbell mode: we asked every peer not to kick us (someone is busy polling us).
    quiet: bool,
}

/// Channel `c`: transmit queues `t` with `t % k == c` for a link of `k` queues send on ring `c`
/// of that link; NAPI context `c` receives from ring `c` of every link.
#[pin_data]
struct Chan {
    #[pin]
    tx: SpinLockBh<Tx>,
    #[pin]
    rx: SpinLockBh<Rx>,
    /// `Tx::stopped`, readable without the lock (written under it): whether a wake-up is due.
    stopped: AtomicU32,
    /// Where NAPI context `c` polls (`rx_threads`, see `place_poll` in `rx.rs`), written only
    /// by its poll: when the current window started (jiffies ms)...
    window_start_ms: AtomicU64,
    /// ...its receive queue's packet and byte counters then...
    window_packets: AtomicU64,
    window_bytes: AtomicU64,
    /// ...whether the last window asks for the move to its kernel thread...
    move_due: AtomicBool,
    /// ...and whether we moved it there.
    threaded: AtomicBool,
    /// Whether context `c` is held, its last poll having asked to be polled again at once
    /// (it found frames, or it spins: `spin` in `rx.rs`), so that a send needs no hrtimer to
    /// look for the answer, and a timer or a kick need not schedule it...
    held: AtomicBool,
    /// ...and since when (jiffies ms).
    held_since_ms: AtomicU64,
}

/// Control state, under the `ctl` lock.
struct Ctl {
    own: Own,
    /// Indexed by peer id.
    links: KVec<Link>,
    /// What the peers' liveness is judged by: real time without our own absences.
    clock: LiveClock,
    /// Whether the interface is up (we are in `Run`).
    running: bool,
    /// Polling mode: when (ms, jiffies clock) a tick last found the data path busy; the
    /// timer's interval grows with the quiet since ([`idle_interval_ms`]).
    busy_ms: u64,
    /// Peers in the other interrupt mode whom we told the log about.
    mismatch_logged: u64,
    /// Peers whose control block turned to garbage while their link was up: kept watched and
    /// kicked until it is valid again.
    garbage: u64,
    /// When each peer was last kicked for an answer (`links::REKICK_MS`), in ms.
    rekick_ms: [u64; MAX_PEERS as usize],
    /// Polling mode: how long each peer's link stays down after it was reset for holding our
    /// transmit pool ([`crate::protocol::link::HoldDown`]).
    holds: [HoldDown; MAX_PEERS as usize],
    /// Doorbell mode: the header's `departures` word when we last looked (see
    /// `protocol::link::Probe`).
    departures: u32,
    /// Doorbell mode: the sign of life asked of each linked peer since `departures` changed.
    probes: [Probe; MAX_PEERS as usize],
    /// Transparent mode: what we last published of our regular interface.
    published: Addrs,
    /// A peer went away or came back with another MAC: the stack's neighbour entries through
    /// us may name a MAC nobody owns (flushed after housekeeping, outside this lock).
    neigh_stale: bool,
}

/// Rate limits of the messages a peer can provoke at will.
struct Logs {
    /// Ring protocol violations (once a second).
    ring: Ratelimit,
    /// Link up/down (a burst of 10 per 5 s: a flapping link must not flood the log).
    link: Ratelimit,
    /// Repairs of our control block, the header or our slot (once a second).
    repair: Ratelimit,
}

/// The driver data of one `ivshm` device.
#[pin_data(PinnedDrop)]
pub(crate) struct Net {
    /// The region, with our slot in it: released when this goes (see [`Claimed`]).
    shm: Claimed<SharedMem>,
    regs: IoMem,
    irq: Irq,
    /// Our feature bits as published.
    features: u32,
    geometry: Geometry,
    /// The header as we attached to it, for repairing it.
    attached: Attached,
    me: u32,
    params: Params,
    pdev: ARef<pci::Device>,
    stats: Stats,
    /// The data path saw work since the last timer tick (poll fast).
    busy: AtomicBool,
    /// Peers whose link the data path wants restarted (set of ids).
    reset_req: AtomicU64,
    /// Doorbell id of each peer as last read valid from its control block ([`NO_DOORBELL`]
    /// if never), so that a peer whose block was scribbled on can still be woken to repair it.
    doorbells: [AtomicU32; MAX_PEERS as usize],
    /// Rate limits of the messages a peer can provoke.
    logs: Logs,
    /// Doorbell mode: when the NAPI poll last looked at the links, in ms.
    last_manage_ms: AtomicU64,
    /// Until when (jiffies ms) traffic is taken to flow (`note_traffic` in `rx.rs`): contexts
    /// spin, and in polling mode polls that find nothing are still followed up within
    /// `poll_us` before polling is left to the timer (see `keep_polling`).
    linger_until_ms: AtomicU64,
    /// Polling mode: when (jiffies ms) a poll last found frames; the longer ago, the later
    /// polls that find nothing are followed up (see `keep_polling`).
    found_ms: AtomicU64,
    /// When (jiffies ms) the current linger began (frames found or sent after the last
    /// linger had ended; `note_traffic` in `rx.rs`).
    linger_since_ms: AtomicU64,
    /// When (jiffies ms, 0 for never) a socket last busy polled one of our NAPI contexts; no
    /// context spins for a while after (see `spin` in `rx.rs`).
    busy_polled_ms: AtomicU64,
    /// Doorbell mode: the timer is armed to fire within [`WATCH_MS`] (frames in flight are
    /// being watched); an audit ([`AUDIT_MS`]) does not count.
    watching: AtomicBool,
    /// The interface is up (a copy of `Ctl::running` the interrupt handler can read).
    running: AtomicBool,
    /// Transparent mode: our regular interface's MAC with [`transparent::MAC_VALID`] while it
    /// is up and we publish it (0: off), and its ifindex; read by the hook and the NAPI poll.
    regular_mac: AtomicU64,
    regular_ifindex: AtomicI32,
    /// The channels, `queues_max` of them; the first [`Net::queues`] are active.
    chans: KVec<Pin<KBox<Chan>>>,
    /// Active channels (`n`, `1..=queues_max`), as published in our control block.
    queues: AtomicU32,
    /// The most channels we may have: `queues=`'s cap (8, the layout's queues, the pool
    /// partitions the pool allows).
    queues_max: u32,
    /// Doorbell mode: the interrupt vectors we listen on (published as `VECTORS`); vector `v`
    /// serves the channels `c` with `c % vectors == v`.
    vectors: u32,
    /// The epoch of each peer we acknowledged: a ring error while the peer's epoch differs is
    /// the peer restarting, not corruption.
    acks: [AtomicU32; MAX_PEERS as usize],
    /// Doorbell mode: the vectors each peer listens on (its `VECTORS` when its link came up).
    peer_vectors: [AtomicU32; MAX_PEERS as usize],
    /// Per transmit queue: the channels holding frames it committed without publishing them
    /// (`xmit_more`), published at the end of its batch. Only the queue's own `start_xmit`
    /// touches its entry (the stack serialises a queue's transmits).
    pending: [AtomicU32; MAX_QUEUES as usize],
    #[pin]
    ctl: SpinLockBh<Ctl>,
    #[pin]
    peers: SpinLockBh<Peers>,
    #[pin]
    transparent: SpinLockBh<transparent::Peers>,
}

impl Net {
    /// The device data for peer `own.id()` (its slot claimed in `shm`, control block `own`
    /// attached and `Ready`). Whether this fails or the data is dropped later, `shm` takes our
    /// place in the region with it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shm: Claimed<SharedMem>,
        regs: IoMem,
        irq: Irq,
        attached: Attached,
        own: Own,
        params: Params,
        pdev: ARef<pci::Device>,
        counts: Queues,
    ) -> Result<impl PinInit<Self, Error>> {
        let me = own.id();
        let geometry = attached.geometry;
        let n = geometry.max_peers;
        let mut links = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut tx_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut transparent_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut transparent_seats = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for _ in 0..n {
            links.push(Link::default(), GFP_KERNEL)?;
            tx_peers.push(TxPeer::default(), GFP_KERNEL)?;
            transparent_peers.push(None, GFP_KERNEL)?;
            transparent_seats.push(0, GFP_KERNEL)?;
        }
        let mut chans = KVec::with_capacity(counts.max as usize, GFP_KERNEL)?;
        for c in 0..counts.max {
            chans.push(Self::new_chan(&geometry, me, c, counts)?, GFP_KERNEL)?;
        }
        let stats = Stats::new(n, me, counts.max)?;
        // Departures before we came are none of our business.
        let departures = layout::departures(&shm).unwrap_or(0);
        let features = feature::CSUM
            | feature::GSO
            | if irq == Irq::None {
                0
            } else {
                feature::DOORBELL
            }
            | if params.transparent.is_some() {
                feature::TRANSPARENT
            } else {
                0
            };
        Ok(try_pin_init!(Net {
            shm,
            regs,
            irq,
            features,
            geometry,
            attached,
            me,
            params,
            pdev,
            stats,
            busy: AtomicBool::new(false),
            reset_req: AtomicU64::new(0),
            doorbells: [const { AtomicU32::new(NO_DOORBELL) }; MAX_PEERS as usize],
            logs: Logs {
                ring: Ratelimit::new(1000, 1),
                link: Ratelimit::new(5000, 10),
                repair: Ratelimit::new(1000, 1),
            },
            last_manage_ms: AtomicU64::new(0),
            linger_until_ms: AtomicU64::new(0),
            found_ms: AtomicU64::new(0),
            linger_since_ms: AtomicU64::new(0),
            busy_polled_ms: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            running: AtomicBool::new(false),
            regular_mac: AtomicU64::new(0),
            regular_ifindex: AtomicI32::new(0),
            ctl <- new_spinlock_bh!(
                Ctl {
                    own,
                    links,
                    clock: LiveClock::default(),
                    running: false,
                    busy_ms: 0,
                    mismatch_logged: 0,
                    garbage: 0,
                    rekick_ms: [0; MAX_PEERS as usize],
                holds: [HoldDown::default(); MAX_PEERS as usize],
                    departures,
                    probes: [Probe::default(); MAX_PEERS as usize],
                    neigh_stale: false,
                    published: Addrs::default(),
                },
                "ivshmem_net::ctl"
            ),
            chans,
            queues: AtomicU32::new(counts.active),
            queues_max: counts.max,
            vectors: counts.vectors,
            acks: [const { AtomicU32::new(0) }; MAX_PEERS as usize],
            peer_vectors: [const { AtomicU32::new(1) }; MAX_PEERS as usize],
            pending: [const { AtomicU32::new(0) }; MAX_QUEUES as usize],
            peers <- new_spinlock_bh!(
                Peers {
                    peers: tx_peers,
                    up: 0,
                    mac_owner: 0,
                    mac_refused: 0,
                },
                "ivshmem_net::peers"
            ),
            transparent <- new_spinlock_bh!(
                transparent::Peers {
                    addrs: transparent_peers,
                    seats: transparent_seats,
                    down: 0,
                    refused_logged: 0,
                    ours: Addrs::default(),
                    ours_seq: 0,
                },
                "ivshmem_net::transparent"
            ),
        }? Error))
    }

    /// Whether interrupts wake us (else the timer polls).
    pub(super) fn interrupts(&self) -> bool {
        matches!(self.irq, Irq::Msix | Irq::Intx)
    }

    /// Our peer id.
    pub(crate) fn id(&self) -> u32 {
        self.me
    }

    /// The largest frame the rings carry (see `protocol::ring::Ring::max_frame`): the same
    /// for every ring of the region, since every pool has the same length.
    pub(super) fn max_frame(&self) -> u32 {
        (self.geometry.pool_len / 2).min(layout::MAX_FRAME)
    }

    /// Ids of the other peers.
    pub(super) fn others(&self) -> impl Iterator<Item = u32> {
        let me = self.me;
        (0..self.geometry.max_peers).filter(move |&j| j != me)
    }

    /// The active channel count `n`.
    pub(super) fn queues(&self) -> u32 {
        self.queues.load(Ordering::Relaxed)
    }

    /// Channel `c` (`None` beyond `queues_max`).
    fn chan(&self, c: u32) -> Option<&Chan> {
        self.chans.get(c as usize).map(|c| &**c)
    }

    /// The active channels with their index.
    fn active(&self) -> impl Iterator<Item = (u32, &Chan)> {
        let n = self.queues() as usize;
        self.chans
            .iter()
            .take(n)
            .enumerate()
            .map(|(c, ch)| (c as u32, &**ch))
    }

    /// Channel `c` of peer `me`, its pool partitioned for `queues.active` channels (channels
    /// beyond them are idle until `ethtool -L` activates them: no link is up on them).
    fn new_chan(g: &Geometry, me: u32, c: u32, queues: Queues) -> Result<Pin<KBox<Chan>>> {
        let n = g.max_peers;
        let mut rings = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut rx_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for j in 0..n {
            if j == me {
                rings.push(None, GFP_KERNEL)?;
                rx_peers.push(None, GFP_KERNEL)?;
                continue;
            }
            let starts = Starts(KVec::from_elem(0, g.ring_slots as usize, GFP_KERNEL)?);
            let prod = Producer::with_storage(g, me, j, c, starts).map_err(|_| EINVAL)?;
            let cons = Consumer::new(g, j, me, c).map_err(|_| EINVAL)?;
            rings.push(
                Some(TxRing {
                    prod,
                    last_cons: 0,
                    cons_change_ms: 0,
                    was_waiting: false,
                }),
                GFP_KERNEL,
            )?;
            rx_peers.push(Some(RxPeer { cons, features: 0 }), GFP_KERNEL)?;
        }
        let pool = partition(g, me, c, queues.active)?;
        KBox::pin_init(
            pin_init!(Chan {
                tx <- new_spinlock_bh!(
                    Tx {
                        pool,
                        rings,
                        up: 0,
                        stopped: 0,
                        stopped_for: 0,
                        unpublished: 0,
                    },
                    "ivshmem_net::tx"
                ),
                rx <- new_spinlock_bh!(
                    Rx {
                        peers: rx_peers,
                        up: 0,
                        next: 0,
                        quiet: false,
                    },
                    "ivshmem_net::rx"
                ),
                stopped: AtomicU32::new(0),
                window_start_ms: AtomicU64::new(0),
                window_packets: AtomicU64::new(0),
                window_bytes: AtomicU64::new(0),
                move_due: AtomicBool::new(false),
                held: AtomicBool::new(false),
                held_since_ms: AtomicU64::new(0),
                threaded: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
    }
}

/// Partition `c` of peer `me`'s pool split for `n` channels; an idle channel (`c >= n`) gets
/// the partition `c % n`, which it never writes (no link is up on it).
fn partition(g: &Geometry, me: u32, c: u32, n: u32) -> Result<Pool> {
    let n = n.max(1);
    Pool::partition(g, me, c % n, n).map_err(|_| EINVAL)
}

/// How many channels a device has: active, most, and the doorbell vectors serving them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queues {
    /// Active at first (`queues=`, or one per online CPU), `1..=max`.
    pub(crate) active: u32,
    /// The most `ethtool -L` may ask for.
    pub(crate) max: u32,
    /// Doorbell mode: interrupt vectors we listen on (1 without MSI-X or interrupts).
    pub(crate) vectors: u32,
}

#[pinned_drop]
impl PinnedDrop for Net {
    fn drop(self: Pin<&mut Self>) {
        // The device is unregistered, its interrupt freed and its timer shut down: say goodbye
        // in the region.
        let mut ctl = self.ctl.lock();
        let _ = ctl.own.detach(&self.shm);
        drop(ctl);
        self.kick_all();
        if let Err(e) = self.shm.release() {
            dev_warn!(&self.pdev, "peer slot {} not released: {:?}", self.me, e);
        }
    }
}

#[vtable]
impl Operations for Net {
    fn open(&self, dev: &Device) -> Result {
        // Fresh rings with every peer: reset our halves and bump our epochs, so every peer
        // resets its halves before traffic flows again. (NAPI is enabled by now: see
        // `net::Operations::open`.)
        let mut ctl = self.ctl.lock();
        for j in self.others() {
            self.reset_halves(j);
            let _ = ctl.own.bump_epoch(&self.shm, j);
            if let Some(link) = ctl.links.get_mut(j as usize) {
                *link = Link::default();
            }
        }
        ctl.own
            .set_state(&self.shm, PeerState::Run)
            .map_err(|_| EIO)?;
        ctl.running = true;
        self.running.store(true, Ordering::Relaxed);
        let now = crate::ext::time::now_ms();
        for (c, ch) in self.chans.iter().enumerate() {
            // Enabling NAPI put every context back in softirq context; its first window
            // starts now.
            let queue = self.stats.queue(c as u32);
            ch.move_due.store(false, Ordering::Relaxed);
            ch.threaded.store(false, Ordering::Relaxed);
            ch.held.store(false, Ordering::Relaxed);
            ch.window_start_ms.store(now, Ordering::Relaxed);
            ch.window_packets
                .store(queue.rx_packets.get(), Ordering::Relaxed);
            ch.window_bytes
                .store(queue.rx_bytes.get(), Ordering::Relaxed);
        }
        ctl.busy_ms = now;
        drop(ctl);
        self.kick_all();
        dev.start_queues();
        dev.timer_arm(1);
        Ok(())
    }

    fn stop(&self, dev: &Device) -> Result {
        let mut ctl = self.ctl.lock();
        ctl.running = false;
        self.running.store(false, Ordering::Relaxed);
        let _ = ctl.own.set_state(&self.shm, PeerState::Ready);
        if ctl.published != Addrs::default() {
            ctl.published = Addrs::default();
            let _ = ctl.own.publish_addrs(&self.shm, &Addrs::default());
            let mut peers = self.transparent.lock();
            peers.ours = Addrs::default();
            peers.ours_seq = ctl.own.published_seq();
        }
        self.regular_mac.store(0, Ordering::Relaxed);
        for j in self.others() {
            if let Some(link) = ctl.links.get_mut(j as usize) {
                link.up = false;
            }
            // Nothing reaches our regular interface through the rings while we are down.
            let _ = ctl.own.accept(&self.shm, j, Accepted::default());
            self.link_down(j);
        }
        drop(ctl);
        self.kick_all();
        dev.carrier_off();
        dev.stop_queues();
        // NAPI is disabled after this returns: see `net::Operations::stop`.
        Ok(())
    }

    fn start_xmit(&self, dev: &Device, skb: SkBuff) -> Xmit {
        self.xmit(dev, skb)
    }

    fn poll(&self, dev: &Device, q: u32, napi: NapiPoll<'_>, budget: u32) -> u32 {
        self.napi_poll(dev, q, napi, budget)
    }

    fn timer(&self, dev: &Device) {
        self.tick(dev)
    }

    fn offloads_for(&self, dst: &[u8; 6]) -> (bool, bool) {
        self.offloads_to(dst)
    }

    fn napi_thread_nice(&self) -> Option<i32> {
        self.params.rx_threads.then_some(RX_THREAD_NICE)
    }

    fn interrupt(&self, dev: &Device, vector: u32) -> bool {
        self.doorbell(dev, vector)
    }

    fn irq_unmask(&self) {
        if self.irq == Irq::Intx {
            // Bit 0 of IntrMask lets a doorbell assert the line; a doorbell that came while it
            // was masked asserts it now, and the handler (in place) acknowledges it.
            let _ = self.regs.write32(regs::INTR_MASK, regs::INTR_ENABLE);
        }
    }

    fn irq_mask(&self) {
        if self.irq == Irq::Intx {
            // Masked, the device keeps the line low whatever the peers ring; reading the
            // status clears what was raised, so nothing is left pending for a later unmask.
            let _ = self.regs.write32(regs::INTR_MASK, 0);
            let _ = self.regs.read32(regs::INTR_STATUS);
        }
    }

    fn change_mtu(&self, dev: &Device, mtu: u32) -> Result {
        if mtu > frame::max_mtu(self.max_frame()) {
            return Err(EINVAL);
        }
        dev.set_mtu(mtu);
        let mut ctl = self.ctl.lock();
        ctl.own.set_mtu(&self.shm, mtu).map_err(|_| EIO)?;
        drop(ctl);
        // Peers read our MTU when they look at the links: have them look now.
        self.kick_all();
        Ok(())
    }

    fn stats(&self, _dev: &Device) -> Stats64 {
        let g = &self.stats.global;
        Stats64 {
            rx_packets: g.rx_packets.get(),
            rx_bytes: g.rx_bytes.get(),
            tx_packets: g.tx_packets.get(),
            tx_bytes: g.tx_bytes.get(),
            rx_dropped: g.rx_drop_nomem.get() + g.rx_drop_oversize.get() + g.rx_drop_error.get(),
            tx_dropped: g.tx_drop_no_peer.get() + g.tx_drop_too_big.get() + g.tx_drop_error.get(),
            rx_errors: g.rx_bad_desc.get(),
        }
    }
}

impl PostRoutingHook for Net {
    /// Transparent mode: packets for a peer's regular address go through its ring
    /// ([`Net::divert`]).
    fn post_routing(&self, dev: &Device, pkt: &netfilter::HookPacket<'_>) -> netfilter::Verdict {
        self.divert(dev, pkt)
    }
}
