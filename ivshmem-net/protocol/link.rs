// SPDX-License-Identifier: GPL-2.0

//! Per-peer control blocks and the link handshake between two peers.
//!
//! Like `layout.rs` and `ring.rs`, this file is compiled into the kernel module and into the
//! host crate, uses `core` only, and reaches shared memory only through [`Region`].
//!
//! # Control block of peer `i` (at `Geometry::ctrl_offset(i)`; every byte written by `i` only)
//!
//! | offset        | field                                                              |
//! |---------------|--------------------------------------------------------------------|
//! | 0x00          | state: [`PeerState`]                                               |
//! | 0x04          | heartbeat: incremented by the owner at least every 100 ms          |
//! | 0x08          | MTU                                                                |
//! | 0x0c          | feature bits                                                       |
//! | 0x10, 0x14    | MAC address, bytes 0-3 and 4-5 (little-endian)                     |
//! | 0x18          | doorbell id: the owner's IVPosition (doorbell mode), for kicking it |
//! | 0x1c          | queues: the owner's active channel count (see *Several queues*)    |
//! | 0x20          | vectors: doorbell mode, how many interrupt vectors the owner listens on |
//! | 0x40 + 4 * j  | `epoch[j]`: the owner's epoch of its link with peer `j`            |
//! | 0x140 + 4 * j | `ack[j]`: the epoch of `j`'s side of the link the owner has synced |
//! | 0x300         | transparent mode: sequence word (odd while being rewritten, 0: never) |
//! | 0x304         | transparent mode: which addresses follow ([`addr_flags`])          |
//! | 0x308, 0x30c  | transparent mode: the regular interface's MAC (as at 0x10)         |
//! | 0x310         | transparent mode: its IPv4 address (bytes in network order)        |
//! | 0x314..0x324  | transparent mode: its IPv6 address (bytes in network order)        |
//! | 0x400 + 4 * j | transparent mode: `accept_v4[j]`, the sequence word of `j`'s block whose IPv4 claim the owner accepts (0: none) |
//! | 0x500 + 4 * j | transparent mode: `accept_v6[j]`, the same for `j`'s IPv6 claim      |
//!
//! The transparent block (see [`Addrs`]) is written only by its owner, as a sequence lock:
//! sequence made odd, fields, sequence made even again. A reader that sees the same even,
//! non-zero sequence before and after reading the fields has a consistent copy.
//!
//! A claim is used only where both ends agree on it. The receiver `i` of `j`'s frames writes
//! into `accept_v4[j]` / `accept_v6[j]` the sequence word of the block of `j`'s that it read,
//! checked and would take frames from (the address is on-link for `i`, and no neighbour entry
//! of `i`'s gives it to another MAC), 0 otherwise ([`Own::accept`]); `j` sends through the
//! rings to `i`'s address only while `i`'s word for the packet's IP version equals the
//! sequence word `j` itself last published ([`read_accepted`], [`Accepted::covers`]). Any
//! disagreement between the two ends, or a block republished since, therefore falls back to
//! the regular interface instead of losing frames. The words are only a courtesy between
//! honest peers: a receiver still checks every frame, since any peer can write them.
//!
//! # Several queues
//!
//! A peer moves frames on `n` *channels* (transmit queue, receive queue and, in doorbell
//! mode, interrupt vector `c`), `1 <= n <= Geometry::queues`, and publishes `n` in its
//! `queues` word ([`Own::set_queues`]). The link between `i` and `j` carries
//! [`link_queues`]`(n_i, n_j)` = `min(n_i, n_j)` of them, fixed when it comes up: ring
//! `(i -> j, q)` carries channel `q` for `q` below it, and transmit queue `t` of `i` sends to `j`
//! on ring [`ring_for`]`(t, k)` = `t % k`. A peer that changes `n` writes the word first and
//! then restarts every link ([`Own::bump_epoch`]); [`read_peer`] reads the epoch before the
//! `queues` word, so whoever sees the new epoch sees the new count.
//!
//! In doorbell mode the `vectors` word says how many interrupt vectors the owner listens on
//! ([`Own::set_vectors`]); a kick for channel `c` goes to its vector [`kick_vector`]`(c,
//! vectors)` = `c % vectors`.
//!
//! Both words are read once and sanitised ([`PeerView::queues`], [`PeerView::vectors`]): a
//! value outside `1..=Geometry::queues` (queues) or `1..=MAX_QUEUES` (vectors) reads as 1, the
//! word's value for a layout-v2 peer that predates it (0). A peer that writes garbage there
//! only limits itself to one channel.
//!
//! # The handshake
//!
//! The link between `i` and `j` uses two rings, `i -> j` and `j -> i`; `i` owns the producer
//! half of the first and the consumer half of the second. Before `i` touches them it resets
//! its halves, and only then acknowledges `j`'s current epoch by writing `ack[j]`. The link is
//! up on `i`'s side exactly when `j` is in [`PeerState::Run`], `i.ack[j] == j.epoch[i]`, and
//! `j.ack[i] == i.epoch[j]`: both sides have reset their halves for the current pair of
//! epochs, so both rings start empty and neither side can see the other's stale indices.
//!
//! Either side restarts the link by bumping its own `epoch[j]` (after resetting its halves):
//! the other side's acknowledgement no longer matches, so it takes the link down, resets its
//! halves and acknowledges the new epoch. A peer that loads, unloads, is killed, or stops
//! beating for [`HEARTBEAT_TIMEOUT_MS`] ends up here too, so recovery needs no action from
//! anybody else.

use super::layout::{Error, Geometry, Region, MAX_PEERS, MAX_QUEUES};

mod addrs;
mod handshake;
mod hold;
mod probe;

use addrs::addr_words;
pub use addrs::{addr_flags, read_accepted, read_addrs, Accepted, Addrs, Published};
pub use handshake::{
    decide, decide_with, Action, DownReason, Link, LiveClock, Liveness, HEARTBEAT_TIMEOUT_MS,
    MAX_LOOK_GAP_MS,
};
pub use hold::{HoldDown, HOLD_DOWN_FORGIVE_MS, HOLD_DOWN_MAX_MS, HOLD_DOWN_MIN_MS};
pub use probe::{Probe, ProbeState, PROBE_REKICK_MS, PROBE_TIMEOUT_MS};

/// Byte offsets inside a control block.
pub mod ctrl {
    /// See the table in the module documentation.
    pub const STATE: usize = 0x00;
    /// See the table in the module documentation.
    pub const HEARTBEAT: usize = 0x04;
    /// See the table in the module documentation.
    pub const MTU: usize = 0x08;
    /// See the table in the module documentation.
    pub const FEATURES: usize = 0x0c;
    /// See the table in the module documentation.
    pub const MAC_LO: usize = 0x10;
    /// See the table in the module documentation.
    pub const MAC_HI: usize = 0x14;
    /// See the table in the module documentation.
    pub const DOORBELL_ID: usize = 0x18;
    /// The owner's active channel count (see *Several queues* in the module documentation).
    pub const QUEUES: usize = 0x1c;
    /// Doorbell mode: how many interrupt vectors the owner listens on.
    pub const VECTORS: usize = 0x20;
    /// `epoch[j]` is at `EPOCH + 4 * j`.
    pub const EPOCH: usize = 0x40;
    /// `ack[j]` is at `ACK + 4 * j`.
    pub const ACK: usize = 0x140;
    /// Transparent mode: the sequence word of the address block.
    pub const TP_SEQ: usize = 0x300;
    /// Transparent mode: [`super::addr_flags`].
    pub const TP_FLAGS: usize = 0x304;
    /// Transparent mode: the regular interface's MAC, bytes 0-3 and 4-5 (little-endian).
    pub const TP_MAC_LO: usize = 0x308;
    /// See [`TP_MAC_LO`].
    pub const TP_MAC_HI: usize = 0x30c;
    /// Transparent mode: the IPv4 address, 4 bytes in network order.
    pub const TP_V4: usize = 0x310;
    /// Transparent mode: the IPv6 address, 16 bytes in network order.
    pub const TP_V6: usize = 0x314;
    /// Transparent mode: `accept_v4[j]` is at `TP_ACCEPT_V4 + 4 * j` (see the module
    /// documentation).
    pub const TP_ACCEPT_V4: usize = 0x400;
    /// Transparent mode: `accept_v6[j]` is at `TP_ACCEPT_V6 + 4 * j`.
    pub const TP_ACCEPT_V6: usize = 0x500;
}

/// Feature bits in a control block's `features` word.
pub mod feature {
    /// The peer uses ivshmem-doorbell: it sleeps until kicked and only beats its heartbeat
    /// while busy. Peers of both kinds do not link (a polling peer would find the other
    /// silent, and could not kick it).
    pub const DOORBELL: u32 = 1 << 0;
    /// The peer accepts frames whose checksum is left to fill in (descriptor flag
    /// `NEEDS_CSUM` with `csum_start`/`csum_offset`).
    pub const CSUM: u32 = 1 << 1;
    /// The peer accepts segmentation-offload frames (descriptor `gso_type`, `gso_size`,
    /// `hdr_len`), up to 64 KiB.
    pub const GSO: u32 = 1 << 2;
    /// Transparent mode: the peer publishes the addresses of one regular interface
    /// ([`super::Addrs`]) and takes frames for them through the rings.
    pub const TRANSPARENT: u32 = 1 << 3;
}

/// A peer's state as published in its control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Not attached (never was, or detached cleanly).
    Reset = 0,
    /// Attaching: control block being filled in.
    Init = 1,
    /// Attached, interface down: keeps beating, carries no traffic.
    Ready = 2,
    /// Interface up: carries traffic.
    Run = 3,
}

impl TryFrom<u32> for PeerState {
    type Error = Error;

    fn try_from(v: u32) -> Result<Self, Error> {
        match v {
            0 => Ok(PeerState::Reset),
            1 => Ok(PeerState::Init),
            2 => Ok(PeerState::Ready),
            3 => Ok(PeerState::Run),
            _ => Err(Error::BadState(v)),
        }
    }
}

/// What this peer read of peer `j`'s control block, once, for one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    /// The peer's state; `None` if the word held garbage.
    pub state: Option<PeerState>,
    /// The peer's heartbeat counter.
    pub heartbeat: u32,
    /// `j.epoch[me]`.
    pub epoch: u32,
    /// `j.ack[me]`.
    pub ack: u32,
    /// The peer's MAC address.
    pub mac: [u8; 6],
    /// The peer's MTU.
    pub mtu: u32,
    /// The peer's feature bits ([`feature`]).
    pub features: u32,
    /// The peer's active channel count, `1..=Geometry::queues` (anything else read as 1).
    pub queues: u32,
    /// Doorbell mode: how many interrupt vectors the peer listens on, `1..=MAX_QUEUES`
    /// (anything else read as 1).
    pub vectors: u32,
}

/// This peer's own control block, written only through this type.
///
/// Every peer can write the whole region, so this type never reads its own words back: it
/// keeps a copy of every word it wrote and works from those copies. [`Own::repair`] puts them
/// back when something else overwrote them.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{attach, Geometry, Region};
/// use ivshmem_net_protocol::link::{ctrl, read_peer, Own, PeerState};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let mut own = Own::new(&g, 0)?;
/// own.attach(&region, [2, 0, 0, 0, 0, 1], 1500)?;
/// own.set_state(&region, PeerState::Run)?;
/// // Peer 1 reads what peer 0 published.
/// let seen = read_peer(&region, &g, 0, 1)?;
/// assert_eq!(seen.state, Some(PeerState::Run));
/// assert_eq!((seen.mac, seen.mtu), ([2, 0, 0, 0, 0, 1], 1500));
/// assert_eq!(seen.epoch, own.epoch(&region, 1)?);
/// // Another peer scribbles on our block; we put back what we wrote.
/// region.store(g.ctrl_offset(0)? + ctrl::MTU, 9000)?;
/// assert_eq!(own.repair(&region)?, 1);
/// assert_eq!(read_peer(&region, &g, 0, 1)?.mtu, 1500);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Own {
    base: usize,
    id: u32,
    max_peers: u32,
    /// The region's rings per pair (`Geometry::queues`): the most channels we may publish.
    max_queues: u32,
    state: u32,
    heartbeat: u32,
    mtu: u32,
    features: u32,
    mac: [u32; 2],
    doorbell_id: u32,
    queues: u32,
    vectors: u32,
    epochs: [u32; MAX_PEERS as usize],
    acks: [u32; MAX_PEERS as usize],
    tp_seq: u32,
    /// The addresses last published with [`Own::publish_addrs`].
    tp_addrs: Addrs,
    /// What we accept of each peer's claims ([`Own::accept`]).
    tp_accepted: [Accepted; MAX_PEERS as usize],
}

impl Own {
    /// The control block of peer `id` in a region of geometry `g`.
    pub fn new(g: &Geometry, id: u32) -> Result<Self, Error> {
        if g.max_peers > MAX_PEERS {
            return Err(Error::BadMaxPeers(g.max_peers));
        }
        Ok(Own {
            base: g.ctrl_offset(id)?,
            id,
            max_peers: g.max_peers,
            max_queues: g.queues.min(MAX_QUEUES),
            state: PeerState::Reset as u32,
            heartbeat: 0,
            mtu: 0,
            features: 0,
            mac: [0; 2],
            doorbell_id: 0,
            queues: 1,
            vectors: 1,
            epochs: [0; MAX_PEERS as usize],
            acks: [0; MAX_PEERS as usize],
            tp_seq: 0,
            tp_addrs: Addrs::default(),
            tp_accepted: [Accepted::default(); MAX_PEERS as usize],
        })
    }

    /// This peer's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Fills in the block for a fresh attach: state `Init`, epochs bumped past whatever a
    /// previous incarnation left (read once each, so every peer renegotiates),
    /// acknowledgements cleared.
    pub fn attach<R: Region + ?Sized>(
        &mut self,
        r: &R,
        mac: [u8; 6],
        mtu: u32,
    ) -> Result<(), Error> {
        self.set_state(r, PeerState::Init)?;
        for j in 0..self.max_peers as usize {
            let old = r.load(self.base + ctrl::EPOCH + 4 * j)?;
            self.epochs[j] = next_epoch(old);
            self.acks[j] = 0;
            r.store(self.base + ctrl::EPOCH + 4 * j, self.epochs[j])?;
            r.store(self.base + ctrl::ACK + 4 * j, 0)?;
            // Nor are its acceptances: we accept nothing until we have looked.
            self.tp_accepted[j] = Accepted::default();
            r.store(self.base + ctrl::TP_ACCEPT_V4 + 4 * j, 0)?;
            r.store(self.base + ctrl::TP_ACCEPT_V6 + 4 * j, 0)?;
        }
        self.mac = [
            u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
            u32::from_le_bytes([mac[4], mac[5], 0, 0]),
        ];
        r.store(self.base + ctrl::MAC_LO, self.mac[0])?;
        r.store(self.base + ctrl::MAC_HI, self.mac[1])?;
        self.set_mtu(r, mtu)?;
        self.set_features(r, 0)?;
        // What `set_queues` and `set_vectors` last published (1 and 1 until they are called).
        r.store(self.base + ctrl::QUEUES, self.queues)?;
        r.store(self.base + ctrl::VECTORS, self.vectors)?;
        // A previous incarnation's addresses are not ours: start with none published.
        self.tp_seq = r.load(self.base + ctrl::TP_SEQ)?;
        self.publish_addrs(r, &Addrs::default())?;
        self.heartbeat = r.load(self.base + ctrl::HEARTBEAT)?;
        self.beat(r)
    }

    /// Publishes `state`.
    pub fn set_state<R: Region + ?Sized>(&mut self, r: &R, state: PeerState) -> Result<(), Error> {
        self.state = state as u32;
        r.store(self.base + ctrl::STATE, self.state)
    }

    /// Publishes our feature bits ([`feature`]).
    pub fn set_features<R: Region + ?Sized>(&mut self, r: &R, features: u32) -> Result<(), Error> {
        self.features = features;
        r.store(self.base + ctrl::FEATURES, features)
    }

    /// Publishes the id other peers ring our doorbell with (our IVPosition).
    pub fn set_doorbell_id<R: Region + ?Sized>(&mut self, r: &R, id: u32) -> Result<(), Error> {
        self.doorbell_id = id;
        r.store(self.base + ctrl::DOORBELL_ID, id)
    }

    /// Publishes our active channel count `n` (see *Several queues* in the module
    /// documentation). Links that are up keep the count they came up with: restart them
    /// ([`Own::bump_epoch`]) after this for a new count to take effect. [`Own::attach`] keeps
    /// what this last published.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] unless `1 <= n <= Geometry::queues`; nothing is written then.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{attach, Error, Geometry};
    /// use ivshmem_net_protocol::link::{read_peer, Own};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(16 << 20, 8)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// attach(&region, g, 1, || false)?;
    /// let mut own = Own::new(&g, 0)?;
    /// own.attach(&region, [2, 0, 0, 0, 0, 1], 1500)?;
    /// assert_eq!(read_peer(&region, &g, 0, 1)?.queues, 1);
    /// own.set_queues(&region, 2)?;
    /// assert_eq!((own.queues(), read_peer(&region, &g, 0, 1)?.queues), (2, 2));
    /// assert_eq!(own.set_queues(&region, 0), Err(Error::OutOfBounds));
    /// assert_eq!(own.set_queues(&region, g.queues + 1), Err(Error::OutOfBounds));
    /// assert_eq!(own.queues(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn set_queues<R: Region + ?Sized>(&mut self, r: &R, n: u32) -> Result<(), Error> {
        if !(1..=self.max_queues).contains(&n) {
            return Err(Error::OutOfBounds);
        }
        self.queues = n;
        r.store(self.base + ctrl::QUEUES, n)
    }

    /// Our active channel count, as we last published it.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// Publishes how many interrupt vectors we listen on (doorbell mode): peers kick channel
    /// `c` on our vector `c % vectors` ([`kick_vector`]).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] unless `1 <= vectors <= MAX_QUEUES`; nothing is written then.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{attach, Error, Geometry};
    /// use ivshmem_net_protocol::link::{read_peer, Own};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(16 << 20, 8)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// attach(&region, g, 1, || false)?;
    /// let mut own = Own::new(&g, 3)?;
    /// own.attach(&region, [2, 0, 0, 0, 0, 4], 1500)?;
    /// own.set_vectors(&region, 2)?;
    /// assert_eq!((own.vectors(), read_peer(&region, &g, 3, 0)?.vectors), (2, 2));
    /// assert_eq!(own.set_vectors(&region, 9), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn set_vectors<R: Region + ?Sized>(&mut self, r: &R, vectors: u32) -> Result<(), Error> {
        if !(1..=MAX_QUEUES).contains(&vectors) {
            return Err(Error::OutOfBounds);
        }
        self.vectors = vectors;
        r.store(self.base + ctrl::VECTORS, vectors)
    }

    /// How many interrupt vectors we listen on, as we last published it.
    pub fn vectors(&self) -> u32 {
        self.vectors
    }

    /// Publishes the addresses of our regular interface for transparent mode (none: an empty
    /// [`Addrs`]), as the sequence-lock writer described in the module documentation.
    pub fn publish_addrs<R: Region + ?Sized>(&mut self, r: &R, a: &Addrs) -> Result<(), Error> {
        self.tp_addrs = *a;
        // Odd: readers ignore the block until it is even again.
        self.tp_seq = self.tp_seq.wrapping_add(1) | 1;
        r.store(self.base + ctrl::TP_SEQ, self.tp_seq)?;
        for (off, val) in addr_words(a) {
            r.store(self.base + off, val)?;
        }
        // Even and never 0 again: the block is consistent.
        self.tp_seq = match self.tp_seq.wrapping_add(1) {
            0 => 2,
            n => n,
        };
        r.store(self.base + ctrl::TP_SEQ, self.tp_seq)
    }

    /// The sequence word of our last publication ([`Own::publish_addrs`]): what a peer that
    /// accepts our claim writes into its `accept_v4`/`accept_v6` word for us.
    pub fn published_seq(&self) -> u32 {
        self.tp_seq
    }

    /// Publishes which of peer `j`'s claims we accept (see the module documentation); only
    /// words that change are written.
    pub fn accept<R: Region + ?Sized>(&mut self, r: &R, j: u32, a: Accepted) -> Result<(), Error> {
        let i = self.peer_index(j)?;
        let old = self.tp_accepted[i];
        self.tp_accepted[i] = a;
        if old.v4 != a.v4 {
            r.store(self.base + ctrl::TP_ACCEPT_V4 + 4 * i, a.v4)?;
        }
        if old.v6 != a.v6 {
            r.store(self.base + ctrl::TP_ACCEPT_V6 + 4 * i, a.v6)?;
        }
        Ok(())
    }

    /// What we accept of peer `j`'s claims, as we last wrote it.
    pub fn accepted(&self, j: u32) -> Result<Accepted, Error> {
        Ok(self.tp_accepted[self.peer_index(j)?])
    }

    /// Publishes a new MTU.
    pub fn set_mtu<R: Region + ?Sized>(&mut self, r: &R, mtu: u32) -> Result<(), Error> {
        self.mtu = mtu;
        r.store(self.base + ctrl::MTU, mtu)
    }

    /// Advances the heartbeat.
    pub fn beat<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.heartbeat = self.heartbeat.wrapping_add(1);
        r.store(self.base + ctrl::HEARTBEAT, self.heartbeat)
    }

    /// Our epoch of the link with `j`, as we last wrote it.
    pub fn epoch<R: Region + ?Sized>(&self, _r: &R, j: u32) -> Result<u32, Error> {
        Ok(self.epochs[self.peer_index(j)?])
    }

    /// Restarts our side of the link with `j`: call after resetting our halves of its rings.
    pub fn bump_epoch<R: Region + ?Sized>(&mut self, r: &R, j: u32) -> Result<(), Error> {
        let i = self.peer_index(j)?;
        self.epochs[i] = next_epoch(self.epochs[i]);
        r.store(self.base + ctrl::EPOCH + 4 * i, self.epochs[i])
    }

    /// Acknowledges `j`'s epoch `epoch`: call after resetting our halves of its rings.
    pub fn ack<R: Region + ?Sized>(&mut self, r: &R, j: u32, epoch: u32) -> Result<(), Error> {
        let i = self.peer_index(j)?;
        self.acks[i] = epoch;
        r.store(self.base + ctrl::ACK + 4 * i, epoch)
    }

    /// What we acknowledged of `j`, as we last wrote it.
    pub fn acked<R: Region + ?Sized>(&self, _r: &R, j: u32) -> Result<u32, Error> {
        Ok(self.acks[self.peer_index(j)?])
    }

    /// Detaches: state `Reset`. The epochs stay, so a later attach bumps them again.
    pub fn detach<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.set_state(r, PeerState::Reset)
    }

    /// Puts back every word of the block that no longer holds what we last wrote there
    /// (another peer scribbled on it) and returns how many did not. Each word is read once.
    /// The heartbeat is left alone: peers only watch it move, and the next beat rewrites it.
    /// A damaged address block is published again whole (a new sequence number), so that no
    /// reader can take a mix of old and new words for consistent.
    pub fn repair<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        let mut addr_fixed = u32::from(r.load(self.base + ctrl::TP_SEQ)? != self.tp_seq);
        for (off, val) in addr_words(&self.tp_addrs) {
            addr_fixed += u32::from(r.load(self.base + off)? != val);
        }
        if addr_fixed != 0 {
            let a = self.tp_addrs;
            self.publish_addrs(r, &a)?;
        }
        let mut fixed = addr_fixed;
        let mut check = |off: usize, val: u32| -> Result<(), Error> {
            if r.load(self.base + off)? != val {
                r.store(self.base + off, val)?;
                fixed += 1;
            }
            Ok(())
        };
        check(ctrl::STATE, self.state)?;
        check(ctrl::MTU, self.mtu)?;
        check(ctrl::FEATURES, self.features)?;
        check(ctrl::MAC_LO, self.mac[0])?;
        check(ctrl::MAC_HI, self.mac[1])?;
        check(ctrl::DOORBELL_ID, self.doorbell_id)?;
        check(ctrl::QUEUES, self.queues)?;
        check(ctrl::VECTORS, self.vectors)?;
        for j in 0..self.max_peers as usize {
            check(ctrl::EPOCH + 4 * j, self.epochs[j])?;
            check(ctrl::ACK + 4 * j, self.acks[j])?;
            check(ctrl::TP_ACCEPT_V4 + 4 * j, self.tp_accepted[j].v4)?;
            check(ctrl::TP_ACCEPT_V6 + 4 * j, self.tp_accepted[j].v6)?;
        }
        Ok(fixed)
    }

    fn peer_index(&self, j: u32) -> Result<usize, Error> {
        if j >= self.max_peers || j == self.id {
            return Err(Error::OutOfBounds);
        }
        Ok(j as usize)
    }
}

/// The doorbell id peer `j` published (its IVPosition), read once; `None` unless `j` says it
/// is in doorbell mode and the id fits the doorbell register's 16-bit peer field.
pub fn peer_doorbell<R: Region + ?Sized>(r: &R, g: &Geometry, j: u32) -> Option<u32> {
    let base = g.ctrl_offset(j).ok()?;
    let features = r.load(base + ctrl::FEATURES).ok()?;
    let id = r.load(base + ctrl::DOORBELL_ID).ok()?;
    (features & feature::DOORBELL != 0 && id <= 0xffff).then_some(id)
}

/// The epoch after `e`; never 0, which means "nothing acknowledged yet".
pub fn next_epoch(e: u32) -> u32 {
    match e.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// Reads what peer `j`'s control block says to peer `me`, each word once.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{Error, Geometry, Region};
/// use ivshmem_net_protocol::link::{ctrl, read_peer, PeerState};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// let state = g.ctrl_offset(1)? + ctrl::STATE;
/// region.store(state, PeerState::Ready as u32)?;
/// assert_eq!(read_peer(&region, &g, 1, 0)?.state, Some(PeerState::Ready));
/// // Garbage is read as such, not trusted.
/// region.store(state, 77)?;
/// assert_eq!(read_peer(&region, &g, 1, 0)?.state, None);
/// assert_eq!(read_peer(&region, &g, 0, 0), Err(Error::OutOfBounds));
/// // A layout-v2 peer that predates the queue count left 0 there: one queue, one vector.
/// let v = read_peer(&region, &g, 1, 0)?;
/// assert_eq!((v.queues, v.vectors), (1, 1));
/// // More queues than the region has rings for: garbage, one queue.
/// region.store(g.ctrl_offset(1)? + ctrl::QUEUES, g.queues + 1)?;
/// assert_eq!(read_peer(&region, &g, 1, 0)?.queues, 1);
/// region.store(g.ctrl_offset(1)? + ctrl::QUEUES, g.queues)?;
/// assert_eq!(read_peer(&region, &g, 1, 0)?.queues, g.queues);
/// # Ok::<(), Error>(())
/// ```
pub fn read_peer<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    j: u32,
    me: u32,
) -> Result<PeerView, Error> {
    if j == me || me >= g.max_peers {
        return Err(Error::OutOfBounds);
    }
    let base = g.ctrl_offset(j)?;
    let lo = r.load(base + ctrl::MAC_LO)?.to_le_bytes();
    let hi = r.load(base + ctrl::MAC_HI)?.to_le_bytes();
    let state = PeerState::try_from(r.load(base + ctrl::STATE)?).ok();
    let heartbeat = r.load(base + ctrl::HEARTBEAT)?;
    // The epoch before the queue count (both acquire): the owner writes its new count before
    // it bumps its epochs, so a view with the new epoch has the new count.
    let epoch = r.load(base + ctrl::EPOCH + 4 * me as usize)?;
    let ack = r.load(base + ctrl::ACK + 4 * me as usize)?;
    let queues = r.load(base + ctrl::QUEUES)?;
    let vectors = r.load(base + ctrl::VECTORS)?;
    Ok(PeerView {
        state,
        heartbeat,
        epoch,
        ack,
        mac: [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]],
        mtu: r.load(base + ctrl::MTU)?,
        features: r.load(base + ctrl::FEATURES)?,
        queues: if (1..=g.queues.min(MAX_QUEUES)).contains(&queues) {
            queues
        } else {
            1
        },
        vectors: if (1..=MAX_QUEUES).contains(&vectors) {
            vectors
        } else {
            1
        },
    })
}

/// The channel count of a link: the smaller of ours and the peer's ([`PeerView::queues`]),
/// and at least 1. See *Several queues* in the module documentation.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::link_queues;
/// assert_eq!(link_queues(2, 1), 1);
/// assert_eq!(link_queues(2, 4), 2);
/// assert_eq!(link_queues(0, 4), 1);
/// ```
pub fn link_queues(ours: u32, theirs: u32) -> u32 {
    ours.min(theirs).max(1)
}

/// The ring (queue) of a link with `link_queues` channels that our transmit queue `tx_queue`
/// sends on: `tx_queue % link_queues` (0 for a count of 0, which [`link_queues`] never gives).
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::ring_for;
/// assert_eq!((ring_for(0, 2), ring_for(1, 2), ring_for(3, 2)), (0, 1, 1));
/// assert_eq!((ring_for(1, 1), ring_for(5, 0)), (0, 0));
/// ```
pub fn ring_for(tx_queue: u32, link_queues: u32) -> u32 {
    tx_queue.checked_rem(link_queues).unwrap_or(0)
}

/// The peer's interrupt vector a kick for channel `channel` goes to, when it listens on
/// `vectors` of them ([`PeerView::vectors`]): `channel % vectors` (0 for 0 vectors, which
/// [`read_peer`] never gives).
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::link::kick_vector;
/// assert_eq!((kick_vector(0, 2), kick_vector(1, 2), kick_vector(2, 2)), (0, 1, 0));
/// assert_eq!((kick_vector(1, 1), kick_vector(3, 0)), (0, 0));
/// ```
pub fn kick_vector(channel: u32, vectors: u32) -> u32 {
    channel.checked_rem(vectors).unwrap_or(0)
}
