// SPDX-License-Identifier: GPL-2.0

//! The network device `ivshm%d`: transmit into the ring of the destination peer, receive from
//! every peer's ring through NAPI, and a timer that beats our heartbeat, runs the link
//! handshake with each peer ([`crate::link`]) and, without interrupts, drives the polling.
//!
//! # Who touches what
//!
//! | state                      | lock  | used by                                            |
//! |----------------------------|-------|----------------------------------------------------|
//! | our control block, links   | `ctl` | timer (softirq), open/stop/change_mtu (process)    |
//! | producers (us -> j), MACs  | `tx`  | `start_xmit`, TX wake (NAPI, timer), link changes  |
//! | consumers (j -> us)        | `rx`  | NAPI poll, link changes                            |
//! | counters, reset requests   | none  | atomics                                            |
//! | transparent-mode peer table| `tp`  | timer (links), netfilter hook, NAPI poll (checks)  |
//!
//! The locks nest only as `ctl` before `rx`, `tx` or `tp`, `rx` before `tx` (a frame handed
//! to the stack under `rx` may make it transmit, e.g. a TCP ACK) and `rx` before `tp`;
//! nothing takes `ctl` or `rx` while holding `tx` or `tp`, the netfilter hook releases `tp`
//! before it takes `tx`, and the link code takes `tx`, `rx` and `tp` one after the other,
//! never nested. Lockdep checks this in `make test-reliability`. All three disable bottom halves,
//! since process context shares them with softirqs. A ring half is reset only while its link is down in the
//! `tx`/`rx` masks, so the data path never sees a half-reset ring.
//!
//! Everything a peer wrote is read once and checked by the ring and link code. When it cannot
//! be right, the data path stops using that peer's rings at once, counts it, logs at most once
//! a second, and asks the timer to restart the link; the peer then has to go through the
//! handshake again. Nothing a peer writes can make us loop, panic, or touch memory outside
//! the ring in question.

use crate::ext::{
    errno::eopnotsupp,
    io::IoMem,
    net::{self, Device, Napi, Offload, Operations, RingParam, SkBuff, Stats64, Xmit},
    netfilter::{self, PostRoutingHook, Proto},
    pci,
    shm::SharedMem,
    sync::SpinLockBh,
    time,
};
use crate::layout::{self, Attached, Error as LayoutError, Geometry, Region, MAX_PEERS};
use crate::link::{
    self, feature, Action, Addrs, DownReason, Link, LiveClock, Liveness, Own, PeerState,
};
use crate::params::Params;
use crate::ratelimit::Ratelimit;
use crate::ring::{Consumer, Desc, Producer};
use crate::stats::Stats;
use crate::{dev_info, dev_warn, new_spinlock_bh};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use kernel::{c_str, prelude::*, types::ARef};

/// Ethernet header length.
pub(crate) const ETH_HLEN: u32 = 14;
/// Room for one VLAN tag on top of the MTU.
const VLAN_HLEN: u32 = 4;
/// Smallest MTU (IPv4's minimum).
pub(crate) const MIN_MTU: u32 = 68;
/// Largest MTU when the ring allows it.
const MAX_MTU: u32 = 65535;
/// MTU a new device starts with.
pub(crate) const DEFAULT_MTU: u32 = 1500;
/// Received frames between two publications of the consumer index (gives space back early).
const PUBLISH_EVERY: u32 = 16;
/// In doorbell mode, how often the timer looks at links while something is pending (a
/// handshake, frames in flight, a stopped queue); it is not armed at all when all is quiet.
const WATCH_MS: u32 = 50;

/// Bytes of a received frame copied into the socket buffer's linear part; the rest goes into
/// page fragments. Holds the Ethernet, IP and TCP headers the stack (and transparent mode's
/// source check) reads first; `virtio_net_hdr_to_skb` pulls more if an offload needs it.
const RX_HEAD: u32 = 256;
/// In doorbell mode, how often the timer audits the region while something is wrong but
/// nothing needs watching closely (no carrier, or a peer whose control block is garbage or
/// does not answer): it repairs what someone overwrote and wakes the peers concerned, which may
/// be asleep with as little idea as we have that anything happened. A healthy idle pair is
/// never woken.
const AUDIT_MS: u32 = 1000;
/// How often a peer that owes us an answer is kicked again while we wait, in ms: one whose
/// control block is garbage or disagrees with ours about the interrupt mode (so that it repairs
/// it), or one in `Run` that has not yet acknowledged our epoch (a kick may have been lost, or
/// it slept through a restart).
const REKICK_MS: u64 = 500;
/// Doorbell mode: frames that have waited this long (ms) without the peer consuming any get
/// the peer kicked again, well before [`link::HEARTBEAT_TIMEOUT_MS`] declares it dead. An
/// interrupt can be lost (a peer's MSI-X vector masked while it resets its device, a server
/// restarting); this turns such a loss into a short delay instead of a link reset.
const WAKE_AGAIN_MS: u64 = 200;
/// No doorbell id known for a peer.
const NO_DOORBELL: u32 = u32::MAX;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is to be filled.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u16 = 1;
/// Ethertypes of the packets transparent mode carries.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// [`Net::tp_mac`]: the MAC in the low 48 bits is valid.
const TP_MAC_VALID: u64 = 1 << 48;
/// Driver version reported by `ethtool -i`.
const VERSION: &CStr = c_str!("0.1.0");

/// The largest MTU a ring whose largest frame is `max_frame` bytes can carry.
pub(crate) fn max_mtu(max_frame: u32) -> u32 {
    max_frame.saturating_sub(ETH_HLEN + VLAN_HLEN).min(MAX_MTU)
}

/// BAR0 registers (QEMU docs/specs/ivshmem-spec.rst).
pub(crate) mod reg {
    /// INTx only: interrupt mask (bit 0 enables).
    pub(crate) const INTR_MASK: usize = 0x00;
    /// INTx only: interrupt status, cleared by reading.
    pub(crate) const INTR_STATUS: usize = 0x04;
    /// This peer's id; valid with ivshmem-doorbell only.
    pub(crate) const IVPOSITION: usize = 0x08;
    /// Write `(peer << 16) | vector` to interrupt `peer`.
    pub(crate) const DOORBELL: usize = 0x0c;
}

/// How the device interrupts us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Irq {
    /// ivshmem-plain: no interrupts, a timer polls.
    None,
    /// ivshmem-doorbell with an MSI-X vector.
    Msix,
    /// ivshmem-doorbell on a (possibly shared) INTx line.
    Intx,
    /// ivshmem-doorbell without a usable interrupt (no MSI-X, no INTx line routed): we ring
    /// the peers' doorbells like any doorbell peer, but poll from the timer ourselves.
    Polled,
}

/// The largest segmentation-offload frame (IP packet) to accept from the stack: 64 KiB, or
/// less if the ring's largest frame is smaller.
pub(crate) fn tso_max(max_frame: u32) -> u32 {
    max_frame
        .saturating_sub(ETH_HLEN + VLAN_HLEN + 1)
        .min(65536)
}

fn mode_name(doorbell: bool) -> &'static str {
    if doorbell {
        "ivshmem-doorbell"
    } else {
        "ivshmem-plain"
    }
}

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

/// The IP addresses of an [`Addrs`], printed as `10.0.0.1 fd00:0:0:0:0:0:0:1` (or `-`).
struct Ips<'a>(&'a Addrs);

impl fmt::Display for Ips<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.v4 {
            Some(a) => write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3])?,
            None => write!(f, "-")?,
        }
        match self.0.v6 {
            Some(a) => {
                for (k, w) in a.chunks_exact(2).enumerate() {
                    let sep = if k == 0 { " " } else { ":" };
                    write!(f, "{}{:x}", sep, u16::from_be_bytes([w[0], w[1]]))?;
                }
                Ok(())
            }
            None => write!(f, " -"),
        }
    }
}

/// Our producer of the ring to peer `j`, and what we know of `j` for transmitting.
struct TxPeer {
    prod: Producer,
    /// The peer's MAC, MTU and feature bits, copied from its control block (used only in
    /// comparisons).
    mac: [u8; 6],
    mtu: u32,
    features: u32,
    /// The peer's epoch we acknowledged: a ring error while the peer's epoch differs is the
    /// peer restarting, not corruption.
    ack: u32,
    /// Doorbell mode liveness: the peer's consumer index when it last moved, and when (on
    /// the [`LiveClock`]).
    last_cons: u32,
    cons_change_ms: u64,
    /// Whether frames were in flight when we last looked: frames found in flight after a
    /// look that found none were published since, and their wait starts now, however long
    /// ago that look was (the timer may have slept).
    was_waiting: bool,
}

/// Transmit state, under the `tx` lock.
struct Tx {
    /// Indexed by peer id; `None` for our own id.
    peers: KVec<Option<TxPeer>>,
    /// Peers whose links carry traffic.
    up: u64,
    /// Peers whose full ring stopped the queue.
    stopped_for: u64,
    /// Peers with committed frames not yet published (batching with `xmit_more`).
    unpublished: u64,
}

/// Our consumer of the ring from peer `j`.
struct RxPeer {
    cons: Consumer,
    /// The peer's feature bits when the link came up: offloads it may use.
    features: u32,
    /// See [`TxPeer::ack`].
    ack: u32,
}

/// Receive state, under the `rx` lock.
struct Rx {
    /// Indexed by peer id; `None` for our own id.
    peers: KVec<Option<RxPeer>>,
    /// Peers whose links carry traffic.
    up: u64,
    /// Where the next poll starts, so that one busy peer cannot starve the others.
    next: u32,
    /// Doorbell mode: we asked every peer not to kick us (someone is busy polling us).
    quiet: bool,
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
    /// Current timer interval.
    interval_ms: u32,
    /// Peers in the other interrupt mode whom we told the log about.
    mismatch_logged: u64,
    /// Peers whose control block turned to garbage while their link was up: kept watched and
    /// kicked until it is valid again.
    garbage: u64,
    /// When each peer was last kicked for an answer ([`REKICK_MS`]), in ms.
    rekick_ms: [u64; MAX_PEERS as usize],
    /// Transparent mode: what we last published of our regular interface.
    tp_published: Addrs,
    /// A peer went away or came back with another MAC: the stack's neighbour entries through
    /// us may name a MAC nobody owns (flushed after housekeeping, outside this lock).
    neigh_stale: bool,
}

/// Transparent mode: the peers whose regular addresses we send to through the rings, under
/// the `tp` lock.
struct Tp {
    /// Indexed by peer id: the addresses peer `j` published, checked and not claimed by
    /// another peer first; `None` while its link is down or it published nothing usable.
    peers: KVec<Option<Addrs>>,
    /// Peers whose claim we refused (an address another peer or we hold) and logged.
    refused_logged: u64,
}

/// A destination address of a packet seen by the netfilter hook.
#[derive(Clone, Copy)]
enum IpDst {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl IpDst {
    /// The destination of the IP packet at the start of `head`, if it is one of `proto`.
    fn of(proto: Proto, head: &[u8]) -> Option<Self> {
        match proto {
            Proto::Ipv4 if head.len() >= 20 && head[0] >> 4 == 4 => {
                head.get(16..20)?.try_into().ok().map(IpDst::V4)
            }
            Proto::Ipv6 if head.len() >= 40 && head[0] >> 4 == 6 => {
                head.get(24..40)?.try_into().ok().map(IpDst::V6)
            }
            _ => None,
        }
    }

    fn is_for(&self, a: &Addrs) -> bool {
        match self {
            IpDst::V4(v4) => a.v4 == Some(*v4),
            IpDst::V6(v6) => a.v6 == Some(*v6),
        }
    }
}

/// Whether the Ethernet frame `f` carries an IPv4 or IPv6 packet whose source is one of the
/// addresses in `a` and whose source MAC is `a`'s: what a peer may send us in transparent
/// mode.
fn from_published(f: &[u8], a: &Addrs) -> bool {
    if f.get(6..12) != Some(&a.mac[..]) {
        return false;
    }
    let ip = f.get(ETH_HLEN as usize..).unwrap_or(&[]);
    match f.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) {
        Some(ETH_P_IP) => {
            ip.len() >= 20 && ip[0] >> 4 == 4 && ip.get(12..16) == a.v4.as_ref().map(|v| &v[..])
        }
        Some(ETH_P_IPV6) => {
            ip.len() >= 40 && ip[0] >> 4 == 6 && ip.get(8..24) == a.v6.as_ref().map(|v| &v[..])
        }
        _ => false,
    }
}

fn mac_u64(m: &[u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

/// What the receive path does with a frame in transparent mode.
enum TpRx {
    /// Not for our regular interface: ours as usual.
    No,
    /// For our regular interface (ifindex), from the sending peer's published addresses.
    Deliver(i32),
    /// For our regular interface, but not from the sender's published addresses.
    Refuse,
}

/// What happened to one frame sent to one peer.
enum Sent {
    Ok,
    Full,
    TooBig,
    Unsupported,
    Broken,
}

/// What became of a frame handed to `start_xmit`.
enum Verdict {
    /// In a ring (or in every ring, for a broadcast).
    Sent,
    /// The destination ring is full: the queue is stopped, the stack keeps the frame.
    Busy,
    /// Dropped, counted by the given global counter (if any).
    Dropped(Option<fn(&crate::stats::Global) -> &crate::stats::Counter>),
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
    shm: SharedMem,
    regs: IoMem,
    irq: Irq,
    /// Our feature bits as published.
    features: u32,
    geometry: Geometry,
    /// The header as we attached to it, for repairing it.
    attached: Attached,
    me: u32,
    token: u32,
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
    /// Doorbell mode: the timer is armed to fire within [`WATCH_MS`] (frames in flight are
    /// being watched); an audit ([`AUDIT_MS`]) does not count.
    watching: AtomicBool,
    /// The interface is up (a copy of `Ctl::running` the interrupt handler can read).
    running: AtomicBool,
    /// Transparent mode: our regular interface's MAC with [`TP_MAC_VALID`] while it is up
    /// and we publish it (0: off), and its ifindex; read by the hook and the NAPI poll.
    tp_mac: AtomicU64,
    tp_ifindex: AtomicI32,
    #[pin]
    ctl: SpinLockBh<Ctl>,
    #[pin]
    tx: SpinLockBh<Tx>,
    #[pin]
    rx: SpinLockBh<Rx>,
    #[pin]
    tp: SpinLockBh<Tp>,
}

impl Net {
    /// The device data for peer `me` (slot claimed with `token`, control block `own` attached
    /// and `Ready`) in the region `shm`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shm: SharedMem,
        regs: IoMem,
        irq: Irq,
        attached: Attached,
        own: Own,
        token: u32,
        params: Params,
        pdev: ARef<pci::Device>,
    ) -> Result<impl PinInit<Self, Error>> {
        let me = own.id();
        let geometry = attached.geometry;
        let n = geometry.max_peers;
        let mut tx_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut rx_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut links = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        let mut tp_peers = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for j in 0..n {
            links.push(Link::default(), GFP_KERNEL)?;
            tp_peers.push(None, GFP_KERNEL)?;
            if j == me {
                tx_peers.push(None, GFP_KERNEL)?;
                rx_peers.push(None, GFP_KERNEL)?;
                continue;
            }
            let prod = Producer::new(&geometry, me, j).map_err(|_| EINVAL)?;
            let cons = Consumer::new(&geometry, j, me).map_err(|_| EINVAL)?;
            tx_peers.push(
                Some(TxPeer {
                    prod,
                    mac: [0; 6],
                    mtu: 0,
                    features: 0,
                    ack: 0,
                    last_cons: 0,
                    cons_change_ms: 0,
                    was_waiting: false,
                }),
                GFP_KERNEL,
            )?;
            rx_peers.push(
                Some(RxPeer {
                    cons,
                    features: 0,
                    ack: 0,
                }),
                GFP_KERNEL,
            )?;
        }
        let stats = Stats::new(n, me)?;
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
            token,
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
            watching: AtomicBool::new(false),
            running: AtomicBool::new(false),
            tp_mac: AtomicU64::new(0),
            tp_ifindex: AtomicI32::new(0),
            ctl <- new_spinlock_bh!(
                Ctl {
                    own,
                    links,
                    clock: LiveClock::default(),
                    running: false,
                    interval_ms: params.poll_ms,
                    mismatch_logged: 0,
                    garbage: 0,
                    rekick_ms: [0; MAX_PEERS as usize],
                    neigh_stale: false,
                    tp_published: Addrs::default(),
                },
                "ivshmem_net::ctl"
            ),
            tx <- new_spinlock_bh!(
                Tx {
                    peers: tx_peers,
                    up: 0,
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
            tp <- new_spinlock_bh!(
                Tp {
                    peers: tp_peers,
                    refused_logged: 0,
                },
                "ivshmem_net::tp"
            ),
        }? Error))
    }

    /// Whether interrupts wake us (else the timer polls).
    fn interrupts(&self) -> bool {
        matches!(self.irq, Irq::Msix | Irq::Intx)
    }

    /// Our peer id.
    pub(crate) fn id(&self) -> u32 {
        self.me
    }

    /// Doorbell mode: interrupts peer `j` through the doorbell id it published (its
    /// IVPosition; the device drops a doorbell to an id that is not connected). Slot ids and
    /// IVPositions differ: QEMU's ivshmem cannot take an id back after a disconnect, so the
    /// server never reuses one while slot ids are reused.
    fn kick(&self, j: u32) {
        if self.irq == Irq::None {
            return;
        }
        let Some(cached) = self.doorbells.get(j as usize) else {
            return;
        };
        let id = match link::peer_doorbell(&self.shm, &self.geometry, j) {
            Some(id) => {
                cached.store(id, Ordering::Relaxed);
                id
            }
            None => match cached.load(Ordering::Relaxed) {
                NO_DOORBELL => return,
                id => id,
            },
        };
        if self.regs.write32(reg::DOORBELL, id << 16).is_ok() {
            self.stats.global.doorbells_sent.inc();
        }
    }

    /// Doorbell mode: tells every other peer to look at the control blocks (our state or an
    /// epoch changed).
    fn kick_all(&self) {
        for j in self.others() {
            self.kick(j);
        }
    }

    /// Ids of the other peers.
    fn others(&self) -> impl Iterator<Item = u32> {
        let me = self.me;
        (0..self.geometry.max_peers).filter(move |&j| j != me)
    }

    /// Largest frame we send or accept at the current MTU, capped at what the ring carries.
    /// Largest frame the stack may hand us: MTU-sized, or a segmentation-offload frame of up
    /// to [`tso_max`] bytes plus the Ethernet header; capped at what the ring carries.
    fn max_len(&self, dev: &Device) -> u32 {
        let mtu_frame = dev.mtu() + ETH_HLEN + VLAN_HLEN;
        let gso_frame = tso_max(self.geometry_max_frame()) + ETH_HLEN + VLAN_HLEN;
        mtu_frame.max(gso_frame).min(self.geometry_max_frame())
    }

    fn geometry_max_frame(&self) -> u32 {
        self.geometry.ring_data / 2
    }

    /// Whether a ring error on peer `j`'s link comes from the peer restarting the link (its
    /// epoch moved past what we acknowledged) rather than from corruption.
    fn peer_restarted(&self, j: u32, acked: u32) -> bool {
        match link::read_peer(&self.shm, &self.geometry, j, self.me) {
            Ok(view) => view.epoch != acked || view.state != Some(PeerState::Run),
            Err(_) => false,
        }
    }

    /// The data path found peer `j`'s ring unusable (`e`): it has already stopped using it;
    /// count, warn (rate-limited) and have the timer restart the link, unless the peer is
    /// restarting it anyway.
    fn ring_broken(&self, dev: &Device, j: u32, acked: u32, e: LayoutError) {
        if self.peer_restarted(j, acked) {
            return;
        }
        self.stats.global.rx_bad_desc.inc();
        self.stats.peer(j).bad_desc.inc();
        self.reset_req.fetch_or(bit(j), Ordering::Relaxed);
        // In doorbell mode the timer may be asleep: the restart must not wait for a kick.
        dev.timer_arm(1);
        if let Some(missed) = self.logs.ring.check(time::now_ms()) {
            dev_warn!(
                &self.pdev,
                "{}: peer {} broke the ring protocol ({:?}); resetting the link{}",
                dev.name(),
                j,
                e,
                missed
            );
        }
    }

    /// Copies the frame of `skb` (described by `meta`), behind the link-layer header
    /// `prefix` if the packet has none yet, into the ring to peer `j`; the caller publishes
    /// ([`Net::flush`]).
    fn send(
        &self,
        dev: &Device,
        tx: &mut Tx,
        j: u32,
        skb: &SkBuff,
        meta: &Desc,
        prefix: &[u8],
    ) -> Sent {
        let len = skb.len().saturating_add(prefix.len() as u32);
        let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
            return Sent::Broken;
        };
        let needs_csum = meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
        let fits_mtu = if meta.gso_type != 0 {
            // A segmentation-offload frame: its segments must fit the peer's MTU.
            u32::from(meta.gso_size) <= p.mtu
        } else {
            len <= p.mtu.saturating_add(ETH_HLEN + VLAN_HLEN)
        };
        if !fits_mtu || len > p.prod.ring().max_frame() {
            return Sent::TooBig;
        }
        if (needs_csum && p.features & feature::CSUM == 0)
            || (meta.gso_type != 0 && p.features & feature::GSO == 0)
        {
            // `offloads_for` keeps such frames from us; only a race with a link change
            // gets here.
            return Sent::Unsupported;
        }
        let res = p.prod.reserve(&self.shm, len).and_then(|off| match off {
            None => Ok(false),
            Some(off) => {
                self.shm.write(off, prefix)?;
                skb.copy_to(&self.shm, off + prefix.len())
                    .map_err(|_| LayoutError::OutOfBounds)?;
                p.prod.commit(&self.shm, meta)?;
                Ok(true)
            }
        });
        match res {
            Ok(true) => {
                tx.unpublished |= bit(j);
                let peer = self.stats.peer(j);
                peer.tx_packets.inc();
                peer.tx_bytes.add(len.into());
                self.stats.global.tx_packets.inc();
                self.stats.global.tx_bytes.add(len.into());
                Sent::Ok
            }
            Ok(false) => Sent::Full,
            Err(e) => {
                let acked = p.ack;
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, acked, e);
                Sent::Broken
            }
        }
    }

    /// Puts one frame into the ring(s) it is for; the caller publishes.
    fn xmit_one(&self, dev: &Device, tx: &mut Tx, skb: &mut SkBuff) -> Verdict {
        if skb.len() < ETH_HLEN
            || (skb.head().len() < ETH_HLEN as usize && skb.linearize().is_err())
        {
            return Verdict::Dropped(Some(|g| &g.tx_drop_error));
        }
        let Ok(o) = skb.offload() else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_error));
        };
        let meta = Desc {
            flags: o.flags.into(),
            gso_type: o.gso_type,
            gso_size: o.gso_size,
            csum_start: o.csum_start,
            csum_offset: o.csum_offset,
            hdr_len: o.hdr_len,
            ..Desc::default()
        };
        let skb = &*skb;
        let global = &self.stats.global;
        let mut dst = [0u8; 6];
        dst.copy_from_slice(skb.head().get(..6).unwrap_or(&[0; 6]));

        if dst[0] & 1 != 0 {
            // Broadcast and multicast: a copy to every peer whose link is up. A full ring
            // loses its copy rather than stopping everybody's traffic.
            let mut sent = false;
            for j in self.others() {
                if tx.up & bit(j) == 0 {
                    continue;
                }
                match self.send(dev, tx, j, skb, &meta, &[]) {
                    Sent::Ok => sent = true,
                    Sent::Full => {
                        global.tx_ring_full.inc();
                        self.stats.peer(j).tx_ring_full.inc();
                    }
                    Sent::TooBig => global.tx_drop_too_big.inc(),
                    Sent::Unsupported => global.tx_drop_error.inc(),
                    Sent::Broken => {}
                }
            }
            return if sent {
                Verdict::Sent
            } else {
                Verdict::Dropped(Some(|g| &g.tx_drop_no_peer))
            };
        }

        let owner = self.others().find(|&j| {
            tx.up & bit(j) != 0 && matches!(tx.peers.get(j as usize), Some(Some(p)) if p.mac == dst)
        });
        let Some(j) = owner else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_no_peer));
        };
        let len = self.max_len(dev);
        match self.send(dev, tx, j, skb, &meta, &[]) {
            Sent::Ok => {
                // Stop before the next frame can find the ring full.
                if !self.room(tx, j, len, false) {
                    tx.stopped_for |= bit(j);
                    dev.stop_queue();
                    if self.arm_tx_event(tx, j, len) {
                        tx.stopped_for &= !bit(j);
                        dev.wake_queue();
                    }
                }
                Verdict::Sent
            }
            Sent::Full => {
                tx.stopped_for |= bit(j);
                dev.stop_queue();
                global.tx_ring_full.inc();
                self.stats.peer(j).tx_ring_full.inc();
                if self.arm_tx_event(tx, j, len) {
                    // Room again already: let the stack retry at once.
                    tx.stopped_for &= !bit(j);
                    dev.wake_queue();
                }
                Verdict::Busy
            }
            Sent::TooBig => Verdict::Dropped(Some(|g| &g.tx_drop_too_big)),
            Sent::Unsupported | Sent::Broken => Verdict::Dropped(Some(|g| &g.tx_drop_error)),
        }
    }

    /// Publishes every committed frame, kicking each peer whose consumer asked for it. In
    /// doorbell mode, makes sure the timer watches the frames (a dead peer never consumes
    /// them, and nobody else would notice).
    fn flush(&self, dev: &Device, tx: &mut Tx) {
        if tx.unpublished != 0 && self.interrupts() && !self.watching.swap(true, Ordering::Relaxed)
        {
            dev.timer_arm(time::ms_to_jiffies(WATCH_MS));
        }
        let pending = core::mem::take(&mut tx.unpublished);
        for j in self.others().filter(|&j| pending & bit(j) != 0) {
            let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
                continue;
            };
            let Ok(old) = p.prod.publish(&self.shm) else {
                continue;
            };
            if self.irq != Irq::None {
                match p.prod.kick_needed(&self.shm, old) {
                    Ok(true) => self.kick(j),
                    Ok(false) => self.stats.global.kicks_suppressed.inc(),
                    Err(_) => {}
                }
            }
        }
    }

    /// Doorbell mode, queue stopped for `j`: asks `j` to kick us once it has consumed half of
    /// what is in flight, then looks again (so a kick cannot be lost). Returns whether there
    /// is room already.
    fn arm_tx_event(&self, tx: &mut Tx, j: u32, len: u32) -> bool {
        if self.irq != Irq::None {
            if let Some(Some(p)) = tx.peers.get_mut(j as usize) {
                if let Ok(n) = p.prod.in_flight(&self.shm) {
                    let cons = p.prod.published().wrapping_sub(n);
                    let _ = p.prod.set_event(&self.shm, cons.wrapping_add(n / 2));
                }
            }
        }
        self.room(tx, j, len, true)
    }

    /// Whether the ring to `j` has room for a frame of `len` bytes, or, with `wake`, for a
    /// quarter of the ring and such a frame (the hysteresis for waking the queue).
    fn room(&self, tx: &Tx, j: u32, len: u32, wake: bool) -> bool {
        let Some(Some(p)) = tx.peers.get(j as usize) else {
            return true;
        };
        let ring = p.prod.ring();
        let bytes = ring.max_footprint(len);
        let (slots, bytes) = if wake {
            ((ring.slots() / 4).max(1), bytes.max(ring.data_len() / 4))
        } else {
            (1, bytes)
        };
        // A corrupt consumer index shows up on the next send; here it just means "no room".
        p.prod.has_room(&self.shm, slots, bytes).unwrap_or(false)
    }

    /// Wakes the queue once every ring that stopped it has room again (or its link is gone).
    fn tx_wake(&self, dev: &Device) {
        if !dev.queue_stopped() {
            return;
        }
        let len = self.max_len(dev);
        let mut tx = self.tx.lock();
        let mut still = 0;
        for j in self.others() {
            let b = bit(j);
            if tx.stopped_for & b != 0 && tx.up & b != 0 && !self.arm_tx_event(&mut tx, j, len) {
                still |= b;
            }
        }
        tx.stopped_for = still;
        if still == 0 {
            dev.wake_queue();
        }
    }

    /// Receives up to `budget` frames from peer `j`; returns how many it took off the ring.
    fn receive(&self, dev: &Device, napi: &Napi, rx: &mut Rx, j: u32, budget: u32) -> u32 {
        let Some(Some(p)) = rx.peers.get_mut(j as usize) else {
            return 0;
        };
        let (global, peer) = (&self.stats.global, self.stats.peer(j));
        let mut done = 0;
        let mut unpublished = 0;
        let mut broken = None;
        while done < budget {
            let d = match p.cons.peek(&self.shm) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            done += 1;
            let offload = Offload {
                flags: d.flags as u8,
                gso_type: d.gso_type,
                hdr_len: d.hdr_len,
                gso_size: d.gso_size,
                csum_start: d.csum_start,
                csum_offset: d.csum_offset,
            };
            let claimed = (if offload.flags != 0 { feature::CSUM } else { 0 })
                | (if offload.gso_type != 0 {
                    feature::GSO
                } else {
                    0
                });
            if d.len < ETH_HLEN || d.flags > 0xff || claimed & !p.features != 0 {
                // A runt frame, or an offload the peer did not announce: drop, count.
                global.rx_bad_desc.inc();
                peer.bad_desc.inc();
            } else if let Some(mut skb) = napi.alloc_rx_skb(d.len, RX_HEAD) {
                let shm = &self.shm;
                if let Err(e) = skb.fill(|at, piece| p.cons.read_frame_part(shm, &d, at, piece)) {
                    broken = Some(e);
                    break;
                }
                let regular = self.tp_rx_target(j, skb.head());
                if offload != Offload::default() && skb.set_offload(&offload).is_err() {
                    // Metadata that does not match the frame: never trusted.
                    global.rx_bad_desc.inc();
                    peer.bad_desc.inc();
                } else {
                    match regular {
                        TpRx::No => {
                            skb.eth_type_trans(dev);
                            napi.gro_receive(skb);
                        }
                        TpRx::Deliver(ifindex) => {
                            // Straight to the stack, not through our GRO list: the regular
                            // device is looked up under RCU and must not outlive that.
                            if skb.receive_on(napi, ifindex).is_ok() {
                                global.transparent_rx_packets.inc();
                            } else {
                                global.transparent_rx_dropped.inc();
                            }
                        }
                        TpRx::Refuse => {
                            drop(skb);
                            global.transparent_rx_dropped.inc();
                        }
                    }
                    global.rx_packets.inc();
                    global.rx_bytes.add(d.len.into());
                    peer.rx_packets.inc();
                    peer.rx_bytes.add(d.len.into());
                }
            } else {
                global.rx_drop_nomem.inc();
            }
            p.cons.pop(&d);
            unpublished += 1;
            if unpublished == PUBLISH_EVERY {
                self.give_back(&mut p.cons, j);
                unpublished = 0;
            }
        }
        if unpublished > 0 {
            self.give_back(&mut p.cons, j);
        }
        if let Some(e) = broken {
            let acked = p.ack;
            rx.up &= !bit(j);
            self.ring_broken(dev, j, acked, e);
        }
        done
    }

    /// Publishes our consumer index, kicking the producer if it waits for the space.
    fn give_back(&self, cons: &mut Consumer, j: u32) {
        let Ok(old) = cons.publish(&self.shm) else {
            return;
        };
        if self.irq != Irq::None && cons.kick_needed(&self.shm, old) == Ok(true) {
            self.kick(j);
        }
    }

    /// Doorbell mode, before NAPI sleeps: asks every peer to kick us on its next frame, then
    /// looks again. Returns whether a frame arrived meanwhile (poll again).
    fn arm_rx_events(&self) -> bool {
        let mut rx = self.rx.lock();
        rx.quiet = false;
        let up = rx.up;
        let mut more = false;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                let idx = p.cons.index();
                let _ = p.cons.set_event(&self.shm, idx);
                // A broken ring also means poll again: the poll counts it and resets the link.
                more |= p.cons.pending(&self.shm).map_or(true, |n| n > 0);
            }
        }
        more
    }

    /// Doorbell mode, while we keep being polled (socket busy polling): asks every peer not
    /// to kick us, with an event index it cannot reach. The poll that ends the busy polling
    /// completes NAPI and re-arms the events with [`Net::arm_rx_events`], which looks at the
    /// rings again after, so no frame is left without a kick.
    fn quiet_rx_events(&self) {
        let mut rx = self.rx.lock();
        if rx.quiet {
            return;
        }
        rx.quiet = true;
        let up = rx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                let never = p.cons.index().wrapping_add(2 * p.cons.ring().slots());
                let _ = p.cons.set_event(&self.shm, never);
            }
        }
    }

    /// Doorbell mode liveness of `j`: how long (ms of the [`LiveClock`] time `now`) the oldest
    /// frames we sent it have waited while it consumed none, or `None` when nothing is in
    /// flight.
    fn waiting_ms(&self, j: u32, now: u64) -> Option<u64> {
        let mut tx = self.tx.lock();
        let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
            return None;
        };
        let n = p.prod.in_flight(&self.shm).unwrap_or(0);
        let cons = p.prod.published().wrapping_sub(n);
        if n == 0 || cons != p.last_cons || !p.was_waiting {
            p.cons_change_ms = now;
        }
        p.last_cons = cons;
        p.was_waiting = n > 0;
        (n > 0).then(|| now.saturating_sub(p.cons_change_ms))
    }

    /// The indices peer `j` writes as it moves data with us, read raw (only compared: a sign
    /// of life when they change): its consumer index on our ring, its producer index on its.
    fn ring_indices(&self, j: u32) -> [u32; 2] {
        let cons = match self.tx.lock().peers.get(j as usize) {
            Some(Some(p)) => p.prod.cons_idx_raw(&self.shm).unwrap_or(0),
            _ => 0,
        };
        let prod = match self.rx.lock().peers.get(j as usize) {
            Some(Some(p)) => p.cons.prod_idx_raw(&self.shm).unwrap_or(0),
            _ => 0,
        };
        [cons, prod]
    }

    /// Resets our halves of the rings with `j` (producer to it, consumer from it). The link
    /// must be down in both masks.
    fn reset_halves(&self, j: u32) {
        let mut tx = self.tx.lock();
        tx.up &= !bit(j);
        tx.stopped_for &= !bit(j);
        if let Some(Some(p)) = tx.peers.get_mut(j as usize) {
            let _ = p.prod.reset(&self.shm);
        }
        drop(tx);
        let mut rx = self.rx.lock();
        rx.up &= !bit(j);
        if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
            let _ = p.cons.reset(&self.shm);
        }
        drop(rx);
        self.tp_forget(j);
    }

    /// Stops traffic with `j` in both directions.
    fn link_down(&self, j: u32) {
        let mut tx = self.tx.lock();
        tx.up &= !bit(j);
        tx.stopped_for &= !bit(j);
        drop(tx);
        self.rx.lock().up &= !bit(j);
        self.tp_forget(j);
    }

    /// Restarts our side of the link with `j`: reset our halves, then bump our epoch so the
    /// peer resets its halves too before traffic resumes.
    fn restart(&self, ctl: &mut Ctl, dev: &Device, j: u32, why: &str) {
        self.reset_halves(j);
        let _ = ctl.own.bump_epoch(&self.shm, j);
        self.kick(j);
        if let Some(link) = ctl.links.get_mut(j as usize) {
            if link.up {
                link.up = false;
                self.log_link(dev, j, None, why);
            }
        }
        self.stats.global.peer_resets.inc();
        self.stats.peer(j).resets.inc();
    }

    /// Logs a link of ours to `j` going up (with the peer's MAC) or down (with the reason),
    /// rate-limited: a hostile peer can make a link flap as fast as it likes.
    fn log_link(&self, dev: &Device, j: u32, up: Option<[u8; 6]>, why: &str) {
        let Some(missed) = self.logs.link.check(time::now_ms()) else {
            return;
        };
        match up {
            Some(mac) => dev_info!(
                &self.pdev,
                "{}: link to peer {} ({}) up{}",
                dev.name(),
                j,
                Mac(mac),
                missed
            ),
            None => dev_info!(
                &self.pdev,
                "{}: link to peer {} down ({}){}",
                dev.name(),
                j,
                why,
                missed
            ),
        }
    }

    /// Puts back what someone overwrote of our control block, of the region header, or of our
    /// slot word (see [`Own::repair`], [`layout::repair_header`], [`layout::reclaim_slot`]).
    /// While we are attached, nobody else may write those, so a difference is a peer
    /// misbehaving; it is counted and logged (rate-limited).
    fn repair(&self, ctl: &mut Ctl, dev: &Device) {
        let own = ctl.own.repair(&self.shm).unwrap_or(0);
        let header = layout::repair_header(&self.shm, &self.attached).unwrap_or(0);
        let slot = layout::reclaim_slot(&self.shm, &self.geometry, self.me, self.token)
            .map_or(0, u32::from);
        let fixed = own + header + slot;
        if fixed == 0 {
            return;
        }
        self.stats.global.region_repairs.add(u64::from(fixed));
        if let Some(missed) = self.logs.repair.check(time::now_ms()) {
            dev_warn!(
                &self.pdev,
                "{}: someone overwrote {} words of our control block, {} of the region header \
                 and {} of our slot; restored{}",
                dev.name(),
                own,
                header,
                slot,
                missed
            );
        }
    }

    /// One step of the handshake with `j` (see [`crate::link`]). Returns whether the link
    /// needs watching (a handshake under way, or frames in flight) and whether something is
    /// wrong with the peer that needs an audit now and then ([`AUDIT_MS`]). `now` is real
    /// time (ms), `live` the [`LiveClock`]'s time the peer's liveness is judged by.
    fn manage(&self, ctl: &mut Ctl, dev: &Device, j: u32, now: u64, live: u64) -> (bool, bool) {
        let Ok(mut view) = link::read_peer(&self.shm, &self.geometry, j, self.me) else {
            return (false, false);
        };
        let mismatch = view.state == Some(PeerState::Run)
            && (view.features ^ self.features) & feature::DOORBELL != 0;
        if mismatch {
            // A polling peer and a doorbell peer cannot serve each other: treat it as absent.
            if ctl.mismatch_logged & bit(j) == 0 {
                ctl.mismatch_logged |= bit(j);
                // Rate-limited too: a scribbling peer can flip the bit at will.
                if let Some(missed) = self.logs.link.check(now) {
                    dev_warn!(
                        &self.pdev,
                        "{}: peer {} uses {} and we use {}: not linking (give every guest on \
                         a region the same ivshmem device type){}",
                        dev.name(),
                        j,
                        mode_name(view.features & feature::DOORBELL != 0),
                        mode_name(self.irq != Irq::None),
                        missed
                    );
                }
            }
            view.state = Some(PeerState::Ready);
        } else {
            ctl.mismatch_logged &= !bit(j);
        }
        let (Ok(our_epoch), Ok(our_ack)) =
            (ctl.own.epoch(&self.shm, j), ctl.own.acked(&self.shm, j))
        else {
            return (false, false);
        };
        let (liveness, waiting) = if self.irq == Irq::None {
            (
                Liveness::Heartbeat {
                    rings: self.ring_indices(j),
                },
                None,
            )
        } else {
            let waiting = self.waiting_ms(j, live);
            let stalled = waiting.is_some_and(|ms| ms > link::HEARTBEAT_TIMEOUT_MS);
            (Liveness::Progress { stalled }, waiting)
        };
        let in_flight = waiting.is_some();
        let Some(link) = ctl.links.get_mut(j as usize) else {
            return (false, false);
        };
        let action = link::decide_with(link, our_epoch, our_ack, &view, live, liveness);
        let watch = in_flight || (!link.up && view.state == Some(PeerState::Run));
        if view.state.is_some() {
            ctl.garbage &= !bit(j);
        }
        match action {
            Action::Stay => {
                if link.up {
                    // The peer may change its MTU while up.
                    if let Some(Some(p)) = self.tx.lock().peers.get_mut(j as usize) {
                        p.mtu = view.mtu;
                    }
                }
            }
            Action::Resync(epoch) => {
                self.reset_halves(j);
                if let Some(Some(p)) = self.tx.lock().peers.get_mut(j as usize) {
                    p.ack = epoch;
                }
                if let Some(Some(p)) = self.rx.lock().peers.get_mut(j as usize) {
                    p.ack = epoch;
                }
                let _ = ctl.own.ack(&self.shm, j, epoch);
                self.kick(j);
            }
            Action::Up => {
                link.up = true;
                let mut tx = self.tx.lock();
                if let Some(Some(p)) = tx.peers.get_mut(j as usize) {
                    if p.mac != view.mac && p.mac != [0; 6] {
                        ctl.neigh_stale = true;
                    }
                    p.mac = view.mac;
                    p.mtu = view.mtu;
                    p.features = view.features;
                }
                tx.up |= bit(j);
                drop(tx);
                let mut rx = self.rx.lock();
                if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                    p.features = view.features;
                }
                rx.up |= bit(j);
                drop(rx);
                self.log_link(dev, j, Some(view.mac), "");
            }
            Action::Down(reason) => {
                link.up = false;
                // Gone, or nothing it published can be trusted: its MAC may never come back.
                ctl.neigh_stale |= reason != DownReason::Restarted;
                if matches!(reason, DownReason::Garbage | DownReason::Silent) {
                    // Nothing the peer published can be trusted, or it stopped answering:
                    // start the link afresh (our halves reset, so nothing we sent counts as
                    // waiting any more; a new epoch, so the peer resets its halves too) and
                    // keep waking it until it answers.
                    self.reset_halves(j);
                    let _ = ctl.own.bump_epoch(&self.shm, j);
                    if reason == DownReason::Garbage {
                        ctl.garbage |= bit(j);
                    }
                    ctl.rekick_ms[j as usize] = 0;
                } else {
                    self.link_down(j);
                }
                let why = match reason {
                    DownReason::Left => "left",
                    DownReason::Restarted => "restarted",
                    DownReason::Garbage => "garbage",
                    DownReason::Silent => "silent",
                };
                let (counter, global) = if reason == DownReason::Silent {
                    (
                        &self.stats.peer(j).heartbeat_losses,
                        &self.stats.global.heartbeat_losses,
                    )
                } else {
                    (&self.stats.peer(j).resets, &self.stats.global.peer_resets)
                };
                counter.inc();
                global.inc();
                self.log_link(dev, j, None, why);
            }
        }
        // A peer that owes us an answer may be asleep (doorbell mode), and may not know that
        // anything is wrong: kick it again now and then.
        let up = ctl.links.get(j as usize).is_some_and(|l| l.up);
        let unanswered = !up
            && view.state == Some(PeerState::Run)
            && ctl.own.epoch(&self.shm, j).is_ok_and(|e| e != view.ack);
        let suspicious = unanswered || mismatch || ctl.garbage & bit(j) != 0;
        if up && waiting.is_some_and(|ms| ms >= WAKE_AGAIN_MS) {
            if let Some(last) = ctl.rekick_ms.get_mut(j as usize) {
                if now.saturating_sub(*last) >= WAKE_AGAIN_MS {
                    *last = now;
                    self.stats.global.doorbells_repeated.inc();
                    self.kick(j);
                }
            }
        }
        if suspicious {
            if let Some(last) = ctl.rekick_ms.get_mut(j as usize) {
                if now.saturating_sub(*last) >= REKICK_MS {
                    *last = now;
                    self.kick(j);
                }
            }
        }
        if self.params.transparent.is_some() {
            if ctl.links.get(j as usize).is_some_and(|l| l.up) {
                let addrs = link::read_addrs(&self.shm, &self.geometry, j);
                self.tp_update(dev, j, addrs, &ctl.tp_published);
            } else {
                self.tp_forget(j);
            }
        }
        (watch, suspicious)
    }

    /// Transparent mode: reads our regular interface `name` and publishes its addresses
    /// when they changed (none while it is missing or down), kicking the peers so they look.
    fn tp_publish(&self, ctl: &mut Ctl, dev: &Device, name: &CStr) {
        let (now, ifindex) = match net::iface(name) {
            Ok(i) if i.up => (
                Addrs {
                    mac: i.mac,
                    v4: i.v4,
                    v6: i.v6,
                }
                .sanitized(),
                i.ifindex,
            ),
            Ok(i) => (Addrs::default(), i.ifindex),
            Err(_) => (Addrs::default(), 0),
        };
        self.tp_ifindex.store(ifindex, Ordering::Relaxed);
        let mac = if now.is_empty() {
            0
        } else {
            mac_u64(&now.mac) | TP_MAC_VALID
        };
        self.tp_mac.store(mac, Ordering::Relaxed);
        if now == ctl.tp_published {
            return;
        }
        if ctl.own.publish_addrs(&self.shm, &now).is_err() {
            return;
        }
        ctl.tp_published = now;
        if now.is_empty() {
            dev_info!(
                &self.pdev,
                "{}: transparent: {} has no usable address (missing, down or unaddressed): \
                 nothing published",
                dev.name(),
                name
            );
        } else {
            dev_info!(
                &self.pdev,
                "{}: transparent: publishing {} ({} {})",
                dev.name(),
                name,
                Mac(now.mac),
                Ips(&now)
            );
        }
        self.kick_all();
    }

    /// Transparent mode: peer `j`'s link is up and it published `addrs` (`None`: nothing
    /// usable). The first claim of an address wins: a peer claiming one that another peer
    /// holds in the table, or one of ours, gets no entry (logged once until it stops).
    fn tp_update(&self, dev: &Device, j: u32, addrs: Option<Addrs>, ours: &Addrs) {
        let mut tp = self.tp.lock();
        let conflict = addrs.is_some_and(|a| {
            a.overlaps(ours)
                || tp
                    .peers
                    .iter()
                    .enumerate()
                    .any(|(k, e)| k != j as usize && e.is_some_and(|e| e.overlaps(&a)))
        });
        let new = if conflict {
            if tp.refused_logged & bit(j) == 0 {
                tp.refused_logged |= bit(j);
                if let Some(missed) = self.logs.link.check(time::now_ms()) {
                    dev_warn!(
                        &self.pdev,
                        "{}: transparent: peer {} claims an address we or another peer hold; \
                         not sending to it through shared memory{}",
                        dev.name(),
                        j,
                        missed
                    );
                }
            }
            None
        } else {
            tp.refused_logged &= !bit(j);
            addrs
        };
        let Some(slot) = tp.peers.get_mut(j as usize) else {
            return;
        };
        if *slot != new {
            *slot = new;
            // Rate-limited with the link lines: a peer can change what it publishes at will.
            let Some(missed) = self.logs.link.check(time::now_ms()) else {
                return;
            };
            match new {
                Some(a) => dev_info!(
                    &self.pdev,
                    "{}: transparent: peer {} is {} {}{}",
                    dev.name(),
                    j,
                    Mac(a.mac),
                    Ips(&a),
                    missed
                ),
                None => dev_info!(
                    &self.pdev,
                    "{}: transparent: peer {} withdrawn{}",
                    dev.name(),
                    j,
                    missed
                ),
            }
        }
    }

    /// Transparent mode: stop sending to peer `j` through the rings (its link went down).
    fn tp_forget(&self, j: u32) {
        let mut tp = self.tp.lock();
        if let Some(slot) = tp.peers.get_mut(j as usize) {
            if slot.take().is_some() {
                drop(tp);
                if let Some(missed) = self.logs.link.check(time::now_ms()) {
                    dev_info!(
                        &self.pdev,
                        "transparent: peer {} withdrawn (link down){}",
                        j,
                        missed
                    );
                }
            }
        }
    }

    /// Transparent mode: what to do with frame `f` received from peer `j`.
    fn tp_rx_target(&self, j: u32, f: &[u8]) -> TpRx {
        let ours = self.tp_mac.load(Ordering::Relaxed);
        let Some(dst) = f.get(..6).and_then(|d| <[u8; 6]>::try_from(d).ok()) else {
            return TpRx::No;
        };
        if ours & TP_MAC_VALID == 0 || mac_u64(&dst) != ours & !TP_MAC_VALID {
            return TpRx::No;
        }
        let tp = self.tp.lock();
        match tp.peers.get(j as usize) {
            Some(Some(a)) if from_published(f, a) => {
                TpRx::Deliver(self.tp_ifindex.load(Ordering::Relaxed))
            }
            _ => TpRx::Refuse,
        }
    }

    /// Beats our heartbeat, repairs what someone overwrote, restarts links the data path gave
    /// up on, runs the handshake with every peer and sets the carrier. Returns when the timer
    /// must look again in doorbell mode: [`WATCH_MS`] while something needs watching,
    /// [`AUDIT_MS`] while something is wrong (see there), or never (`None`; also when the
    /// interface is down).
    fn housekeeping(&self, dev: &Device, now: u64) -> Option<u32> {
        let mut ctl = self.ctl.lock();
        let _ = ctl.own.beat(&self.shm);
        let (live, absent) = ctl.clock.look(now);
        if absent.is_some() {
            self.stats.global.own_stalls.inc();
        }
        // Polling mode: the timer ticks at least every `poll_idle_ms` whatever happens.
        ctl.clock.expect_next(!self.interrupts());
        self.repair(&mut ctl, dev);
        if !ctl.running {
            return None;
        }
        if let Some(name) = self.params.transparent {
            self.tp_publish(&mut ctl, dev, name);
        }
        let reset = self.reset_req.swap(0, Ordering::Relaxed);
        let (mut watch, mut audit) = (false, false);
        for j in self.others() {
            if reset & bit(j) != 0 {
                self.restart(&mut ctl, dev, j, "reset");
            }
            let (w, a) = self.manage(&mut ctl, dev, j, now, live);
            watch |= w;
            audit |= a;
        }
        let any_up = ctl.links.iter().any(|l| l.up);
        if any_up && !dev.carrier_ok() {
            dev.carrier_on();
            // Address resolutions begun while nobody was there spent their probes on a dead
            // carrier, and one of them would fail the first frames sent now: start afresh.
            ctl.neigh_stale = true;
        } else if !any_up && dev.carrier_ok() {
            dev.carrier_off();
        }
        let stale = core::mem::take(&mut ctl.neigh_stale);
        let next = if watch || dev.queue_stopped() {
            Some(WATCH_MS)
        } else if audit || !any_up {
            Some(AUDIT_MS)
        } else {
            None
        };
        if next == Some(WATCH_MS) {
            ctl.clock.expect_next(true);
        }
        drop(ctl);
        if stale {
            dev.neigh_flush();
        }
        next
    }
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
        if let Err(e) = crate::layout::release_slot(&self.shm, &self.geometry, self.me, self.token)
        {
            dev_warn!(&self.pdev, "peer slot {} not released: {:?}", self.me, e);
        }
    }
}

#[vtable]
impl Operations for Net {
    fn open(&self, dev: &Device) -> Result {
        // Fresh rings with every peer: reset our halves and bump our epochs, so every peer
        // resets its halves before traffic flows again.
        dev.napi_enable();
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
        ctl.interval_ms = self.params.poll_ms;
        drop(ctl);
        self.kick_all();
        dev.start_queue();
        dev.timer_arm(1);
        Ok(())
    }

    fn stop(&self, dev: &Device) -> Result {
        let mut ctl = self.ctl.lock();
        ctl.running = false;
        self.running.store(false, Ordering::Relaxed);
        let _ = ctl.own.set_state(&self.shm, PeerState::Ready);
        if ctl.tp_published != Addrs::default() {
            ctl.tp_published = Addrs::default();
            let _ = ctl.own.publish_addrs(&self.shm, &Addrs::default());
        }
        self.tp_mac.store(0, Ordering::Relaxed);
        for j in self.others() {
            if let Some(link) = ctl.links.get_mut(j as usize) {
                link.up = false;
            }
            self.link_down(j);
        }
        drop(ctl);
        self.kick_all();
        dev.carrier_off();
        dev.napi_disable();
        dev.stop_queue();
        Ok(())
    }

    fn start_xmit(&self, dev: &Device, mut skb: SkBuff) -> Xmit {
        let global = &self.stats.global;
        let mut tx = self.tx.lock();
        let verdict = self.xmit_one(dev, &mut tx, &mut skb);
        // Publish the batch unless the stack promises more frames right away. A frame handed
        // back as busy ends the batch: what is committed must reach the peer, or its space
        // would never come back.
        if matches!(verdict, Verdict::Busy) || !net::xmit_more() || dev.queue_stopped() {
            self.flush(dev, &mut tx);
        }
        drop(tx);
        match verdict {
            Verdict::Sent => {
                skb.consume();
                Xmit::Done
            }
            Verdict::Busy => Xmit::Busy(skb),
            Verdict::Dropped(counter) => {
                if let Some(c) = counter {
                    c(global).inc();
                }
                Xmit::Done
            }
        }
    }

    fn poll(&self, dev: &Device, napi: &Napi, budget: u32) -> u32 {
        self.stats.global.rx_polls.inc();
        if self.interrupts() {
            // Kicks also announce link changes: look at the links, at most once a ms.
            let now = time::now_ms();
            if self.last_manage_ms.swap(now, Ordering::Relaxed) != now {
                match self.housekeeping(dev, now) {
                    // Something to watch: make sure the timer looks soon (earlier than an
                    // audit it may be armed for).
                    Some(WATCH_MS) => {
                        if !self.watching.swap(true, Ordering::Relaxed) {
                            dev.timer_arm(time::ms_to_jiffies(WATCH_MS));
                        }
                    }
                    // Something to audit: make sure the timer looks by then, without putting
                    // off a watch it may be armed for.
                    Some(ms) => dev.timer_arm_within(time::ms_to_jiffies(ms)),
                    None => {}
                }
            }
        }
        let n = self.geometry.max_peers;
        let mut done = 0;
        let mut rx = self.rx.lock();
        let start = rx.next % n;
        for k in 0..n {
            let j = (start + k) % n;
            if rx.up & bit(j) == 0 {
                continue;
            }
            done += self.receive(dev, napi, &mut rx, j, budget - done);
            if done >= budget {
                rx.next = (j + 1) % n;
                break;
            }
        }
        drop(rx);
        if done > 0 {
            self.busy.store(true, Ordering::Relaxed);
        }
        self.tx_wake(dev);
        if done < budget {
            let completed = napi.complete_done(done);
            if self.interrupts() {
                if !completed {
                    // Busy polling (or work noted meanwhile): we will be polled again, so a
                    // kick would only cost both sides an interrupt.
                    self.quiet_rx_events();
                } else if self.arm_rx_events() {
                    // A frame slipped in before the peer could see our event: poll again.
                    dev.napi_schedule();
                }
            }
        }
        done
    }

    fn timer(&self, dev: &Device) {
        let now = time::now_ms();
        let later = self.housekeeping(dev, now);
        let running = self.running.load(Ordering::Relaxed);
        let next = if !self.interrupts() {
            let busy = self.busy.swap(false, Ordering::Relaxed) || dev.queue_stopped();
            let mut ctl = self.ctl.lock();
            ctl.interval_ms = if busy {
                self.params.poll_ms
            } else {
                ctl.interval_ms
                    .saturating_mul(2)
                    .min(self.params.poll_idle_ms)
            };
            Some(ctl.interval_ms)
        } else {
            // Doorbell mode: all quiet (`None`) sleeps until a peer kicks us.
            self.watching
                .store(later == Some(WATCH_MS), Ordering::Relaxed);
            later
        };
        if running {
            self.tx_wake(dev);
            dev.napi_schedule();
        }
        if let Some(ms) = next {
            dev.timer_arm(time::ms_to_jiffies(ms));
        }
    }

    fn offloads_for(&self, dst: &[u8; 6]) -> (bool, bool) {
        let tx = self.tx.lock();
        let mut all = feature::CSUM | feature::GSO;
        for j in self.others().filter(|&j| tx.up & bit(j) != 0) {
            if let Some(Some(p)) = tx.peers.get(j as usize) {
                if dst[0] & 1 != 0 || p.mac == *dst {
                    all &= p.features;
                }
            }
        }
        (all & feature::CSUM != 0, all & feature::GSO != 0)
    }

    fn interrupt(&self, dev: &Device) -> bool {
        match self.irq {
            Irq::None | Irq::Polled => return false,
            // A shared line: ours only if the device says so (reading clears it).
            Irq::Intx => {
                if self.regs.read32(reg::INTR_STATUS).map_or(true, |s| s == 0) {
                    return false;
                }
            }
            Irq::Msix => {}
        }
        self.stats.global.doorbells_received.inc();
        if self.running.load(Ordering::Relaxed) {
            dev.napi_schedule();
        } else {
            // Interface down: no NAPI, but a peer may be asking whether we are alive (a
            // joining guest probing slots): one timer tick beats the heartbeat.
            dev.timer_arm(1);
        }
        true
    }

    fn change_mtu(&self, dev: &Device, mtu: u32) -> Result {
        if mtu > max_mtu(self.geometry_max_frame()) {
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
            rx_dropped: g.rx_drop_nomem.get(),
            tx_dropped: g.tx_drop_no_peer.get() + g.tx_drop_too_big.get() + g.tx_drop_error.get(),
            rx_errors: g.rx_bad_desc.get(),
        }
    }

    fn drvinfo(&self) -> (&CStr, &CStr, &CStr) {
        (c_str!("ivshmem_net"), VERSION, self.pdev.name())
    }

    fn stats_count(&self) -> usize {
        self.stats.count()
    }

    fn stat_name(&self, i: usize, name: &mut [u8]) {
        self.stats.name(i, name)
    }

    fn stat_values(&self, values: &mut [u64]) {
        self.stats.values(values)
    }

    fn ringparam(&self) -> RingParam {
        let slots = self.geometry.ring_slots;
        RingParam {
            rx_max: slots,
            rx: slots,
            tx_max: slots,
            tx: slots,
        }
    }

    fn set_ringparam(&self, want: RingParam) -> core::result::Result<(), (Error, &'static CStr)> {
        let slots = self.geometry.ring_slots;
        if want.rx == slots && want.tx == slots {
            return Ok(());
        }
        Err((
            eopnotsupp(),
            c_str!(
                "ivshmem-net: the ring size is fixed by the shared region's layout (its size \
                 and max_peers, the same for every guest on it)"
            ),
        ))
    }
}

impl PostRoutingHook for Net {
    /// Transparent mode: a packet routed out of our regular interface to an address a peer
    /// published goes through that peer's ring instead, with the Ethernet header the regular
    /// interface would have given it; anything that cannot go that way right now takes the
    /// normal path.
    fn post_routing(
        &self,
        dev: &Device,
        skb: &SkBuff,
        state: &netfilter::State,
    ) -> netfilter::Verdict {
        use netfilter::Verdict::{Accept, Consumed};
        let ours = self.tp_mac.load(Ordering::Relaxed);
        if ours & TP_MAC_VALID == 0
            || state.out_ifindex() != self.tp_ifindex.load(Ordering::Relaxed)
        {
            return Accept;
        }
        let Some(proto) = state.proto() else {
            return Accept;
        };
        let Some(dst) = IpDst::of(proto, skb.head()) else {
            return Accept;
        };
        let peer = {
            let tp = self.tp.lock();
            self.others().find_map(|j| match tp.peers.get(j as usize) {
                Some(Some(a)) if dst.is_for(a) => Some((j, a.mac)),
                _ => None,
            })
        };
        let Some((j, peer_mac)) = peer else {
            return Accept;
        };
        let global = &self.stats.global;
        let fallback = || {
            global.transparent_fallbacks.inc();
            Accept
        };
        let Ok(o) = skb.offload_behind(ETH_HLEN as u16) else {
            return fallback();
        };
        if o.gso_type == 0 && skb.len() > state.out_mtu() {
            // The stack fragments it for the regular interface.
            return fallback();
        }
        let meta = Desc {
            flags: o.flags.into(),
            gso_type: o.gso_type,
            gso_size: o.gso_size,
            csum_start: o.csum_start,
            csum_offset: o.csum_offset,
            hdr_len: o.hdr_len,
            ..Desc::default()
        };
        let our_mac = (ours & !TP_MAC_VALID).to_le_bytes();
        let ethertype = match proto {
            Proto::Ipv4 => ETH_P_IP,
            Proto::Ipv6 => ETH_P_IPV6,
        }
        .to_be_bytes();
        let mut hdr = [0u8; ETH_HLEN as usize];
        hdr[..6].copy_from_slice(&peer_mac);
        hdr[6..12].copy_from_slice(&our_mac[..6]);
        hdr[12..].copy_from_slice(&ethertype);
        let mut tx = self.tx.lock();
        if tx.up & bit(j) == 0 {
            return fallback();
        }
        let sent = self.send(dev, &mut tx, j, skb, &meta, &hdr);
        self.flush(dev, &mut tx);
        drop(tx);
        match sent {
            Sent::Ok => {
                global.transparent_tx_packets.inc();
                Consumed
            }
            _ => fallback(),
        }
    }
}
