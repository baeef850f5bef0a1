// SPDX-License-Identifier: GPL-2.0

//! Shared-memory layout of an ivshmem-net region, version 2.
//!
//! Part of the protocol (see `mod.rs`), so compiled twice: into the kernel module and into the
//! `ivshmem-net-protocol` host crate, where it is unit- and property-tested.
//! It uses `core` only and never touches memory directly: every access goes through a
//! [`Region`], a bounds-checked accessor implemented once over the kernel's mapping of BAR2
//! (`rust/shm.rs`) and once over an `mmap` of the region file (userspace).
//!
//! # The region at a glance
//!
//! ```text
//! 0x0000  header (4 KiB)            written by the initialising peer, then read-only,
//!                                   except `state` (CAS by any peer) and the peer slots
//! 0x1000  control block of peer 0   (CTRL_STRIDE bytes each, written only by its owner)
//!   ...   control block of peer max_peers-1
//! rings   descriptor rings: `queues` per ordered pair (i -> j, q), `ring_stride` bytes each
//! pools   one transmit pool per peer, `pool_len` bytes each: the frame data peer i sends
//! ```
//!
//! Version 2 puts the memory where the traffic is: a peer's frames to every other peer come
//! from its one pool (see `ring.rs`), so a peer with one busy link can use all of it, while the
//! descriptor rings of the pairs that stay idle cost 16 KiB each. The rings take at most an
//! eighth of the region (see [`Geometry::new`]).
//!
//! # Header (all fields little-endian u32)
//!
//! | offset | field            | writer                                              |
//! |--------|------------------|-----------------------------------------------------|
//! | 0x00   | magic `IVNT`     | initialiser                                         |
//! | 0x04   | state            | CAS by any peer: phase (low 2 bits) + attempt count |
//! | 0x08   | layout version   | initialiser                                         |
//! | 0x0c   | header length    | initialiser                                         |
//! | 0x10   | region size, low | initialiser                                         |
//! | 0x14   | region size, high| initialiser                                         |
//! | 0x18   | max peers        | initialiser                                         |
//! | 0x1c   | ring slots       | initialiser (descriptors per ring, power of two)    |
//! | 0x20   | pool length      | initialiser (bytes of each peer's transmit pool, 4 KiB multiple) |
//! | 0x24   | ring stride      | initialiser                                         |
//! | 0x28   | control offset   | initialiser                                         |
//! | 0x2c   | control stride   | initialiser                                         |
//! | 0x30   | rings offset     | initialiser                                         |
//! | 0x34   | pools offset     | initialiser                                         |
//! | 0x38   | nonce, low       | initialiser: random, names this incarnation         |
//! | 0x3c   | nonce, high      | initialiser                                         |
//! | 0x40   | departures       | the host's ivshmem-server: +1 when a client leaves (see *Departures*) |
//! | 0x44   | queues           | initialiser (descriptor rings per ordered pair, 1, 2, 4 or 8) |
//! | 0x100  | peer slot `i`    | 0 = free, else owner's token: CAS by claimants, cleared by owner (4 bytes each, `i < MAX_PEERS`; see *Peer ids*) |
//!
//! A peer never trusts the header: it reads each field once, checks it against what it computed
//! itself from the region size and its `max_peers`, and refuses the region on any difference.
//!
//! # Departures
//!
//! A guest that dies (its QEMU killed, the host's OOM killer) leaves its control block saying
//! `Run`. In polling mode its heartbeat stops and the others notice within
//! [`super::link::HEARTBEAT_TIMEOUT_MS`]; in doorbell mode nobody looks while all is quiet, so
//! a dead peer would be noticed only when frames sent to it stay unconsumed. The host's
//! ivshmem-server sees a client leave at once (its socket closes): it adds one to the header's
//! `departures` word ([`departures`]) and then rings vector 0 of every client still connected.
//! A peer that finds the word changed asks every peer it is linked with for a sign of life
//! (kicks it and waits for its heartbeat to move), and takes down the links of those that give
//! none. The word says only "someone left", never who: any peer can write it, and a change
//! costs each reader one round of kicks, so a forged change gains a peer nothing. QEMU's own
//! ivshmem-server does not write it; with it, a dead peer is found as before.
//!
//! # Peer ids
//!
//! A peer's id `i` (which names its control block and its rings) is owned through slot word `i`
//! of the header. Each claimant picks a nonzero random *token*; [`claim_slot`] moves a slot from
//! 0 to the token with a compare-and-swap, and [`release_slot`] moves it back from the token to 0.
//! A peer that dies without releasing leaves its token behind; its id is recovered by
//! *staleness*: a claimant samples the slot word and the owner's control-block heartbeat and
//! state, waits longer than [`super::link::HEARTBEAT_TIMEOUT_MS`] ([`STALE_WAIT_MS`]), samples
//! again, and if nothing changed takes the slot over with a compare-and-swap from the old token
//! to its own. Any value in a slot word other than 0, garbage included, is an owner's token.

mod slots;

pub use slots::{
    claim_seat, claim_slot, reclaim_slot, release_slot, slot_token, Claim, Claimed, STALE_WAIT_MS,
};

/// `IVNT`, little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"IVNT");
/// The layout version this file describes.
pub const VERSION: u32 = 2;

/// Smallest region the layout accepts.
pub const MIN_REGION_LEN: u64 = 4 << 20;
/// Largest region the layout uses; the rest of a larger BAR is ignored.
pub const MAX_REGION_LEN: u64 = 1 << 30;
/// Fewest and most peers a region can be set up for.
pub const MIN_PEERS: u32 = 2;
/// See [`MIN_PEERS`].
pub const MAX_PEERS: u32 = 64;
/// Peers a region is set up for unless told otherwise.
pub const DEFAULT_MAX_PEERS: u32 = 8;

/// Length of the header.
pub const HEADER_LEN: u32 = 4096;
/// Bytes reserved for each peer's control block.
pub const CTRL_STRIDE: u32 = 4096;
/// Bytes of a ring's index area (producer and consumer cache lines) before its descriptors.
pub const RING_HDR_LEN: u32 = 256;
/// Bytes per descriptor.
pub const DESC_LEN: u32 = 32;
/// Descriptors per ring: a power of two, the same at every region size. 512 frames of 1500
/// bytes (750 KiB) in flight to one peer keep a TCP stream going; more would only cost ring
/// memory in every idle pair.
pub const RING_SLOTS: u32 = 512;
/// Most descriptor rings per ordered pair (transmit queues, one per vCPU; issue 19).
pub const MAX_QUEUES: u32 = 8;
/// Largest frame a ring carries when its sender's pool is large enough: a 64 KiB segmentation
/// offload frame with its headers, or a 65535-byte MTU, with room to spare.
pub const MAX_FRAME: u32 = 128 << 10;
/// Smallest pool the layout accepts: two largest frames, so a largest frame always fits into a
/// drained pool and one can be consumed while the next is written.
pub const MIN_POOL: u32 = 2 * MAX_FRAME;
/// Pools are this long a multiple of, and start at such a boundary.
pub const POOL_ALIGN: u32 = 4096;

/// Header field offsets.
pub mod hdr {
    /// See the table in the module documentation.
    pub const MAGIC: usize = 0x00;
    /// See the table in the module documentation.
    pub const STATE: usize = 0x04;
    /// See the table in the module documentation.
    pub const VERSION: usize = 0x08;
    /// See the table in the module documentation.
    pub const HEADER_LEN: usize = 0x0c;
    /// See the table in the module documentation.
    pub const SIZE_LO: usize = 0x10;
    /// See the table in the module documentation.
    pub const SIZE_HI: usize = 0x14;
    /// See the table in the module documentation.
    pub const MAX_PEERS: usize = 0x18;
    /// See the table in the module documentation.
    pub const RING_SLOTS: usize = 0x1c;
    /// See the table in the module documentation.
    pub const POOL_LEN: usize = 0x20;
    /// See the table in the module documentation.
    pub const RING_STRIDE: usize = 0x24;
    /// See the table in the module documentation.
    pub const CTRL_OFFSET: usize = 0x28;
    /// See the table in the module documentation.
    pub const CTRL_STRIDE: usize = 0x2c;
    /// See the table in the module documentation.
    pub const RINGS_OFFSET: usize = 0x30;
    /// See the table in the module documentation.
    pub const POOLS_OFFSET: usize = 0x34;
    /// See the table in the module documentation.
    pub const NONCE_LO: usize = 0x38;
    /// See the table in the module documentation.
    pub const NONCE_HI: usize = 0x3c;
    /// See the table in the module documentation and [`super::departures`].
    pub const DEPARTURES: usize = 0x40;
    /// See the table in the module documentation.
    pub const QUEUES: usize = 0x44;
    /// First peer-slot word; slot `i` is at `PEER_SLOTS + 4 * i`.
    pub const PEER_SLOTS: usize = 0x100;
}

/// Phases of the header's state word (its low two bits); the upper 30 bits count
/// initialisation attempts so that a stalled initialiser can be taken over without ABA.
pub mod phase {
    /// All zero: nobody has touched the region.
    pub const EMPTY: u32 = 0;
    /// A peer is writing the header.
    pub const INITIALISING: u32 = 1;
    /// The header is valid.
    pub const READY: u32 = 2;
}

/// What can go wrong with a region. Every variant is a value, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// An access fell outside the region or its section.
    OutOfBounds,
    /// An atomic access was not 4-byte aligned.
    Misaligned,
    /// The region is smaller than [`MIN_REGION_LEN`].
    TooSmall {
        /// The region's length in bytes.
        len: u64,
    },
    /// `max_peers` outside `MIN_PEERS..=MAX_PEERS`.
    BadMaxPeers(u32),
    /// The header's magic is not [`MAGIC`] although its state says it is ready.
    BadMagic(u32),
    /// The region was set up by a peer with another layout version.
    BadVersion(u32),
    /// The region's geometry differs from the one this peer computed.
    GeometryMismatch,
    /// The state word holds a phase that does not exist.
    BadState(u32),
    /// Another peer has been initialising the region for longer than we wait, and taking
    /// over failed too; or the region's state word kept changing under our compare-and-swap
    /// for as long as we wait.
    InitStalled,
    /// The peer on the other side of a ring published something the ring protocol cannot
    /// produce; what exactly is in the [`Corrupt`].
    Corrupt(Corrupt),
    /// A frame length of zero, or longer than the ring's largest frame (see
    /// [`super::ring::Ring::max_frame`]).
    BadFrameLen(u32),
    /// A frame was committed to a ring without a successful reservation first.
    NotReserved,
    /// A peer id at or above the region's `max_peers` was asked for (the id is in the variant).
    BadPeerId(u32),
    /// A claim token of 0 was passed to [`claim_slot`] or [`release_slot`]; 0 marks a free slot.
    ZeroToken,
    /// The requested peer id (in the variant) is held by a peer that is still alive: its slot
    /// word, heartbeat or state changed while we waited.
    SlotTaken(u32),
    /// Every peer id is held by a live peer: no slot was free, and none stayed unchanged
    /// across the staleness wait.
    NoFreeSlot,
    /// [`release_slot`] found the slot of this peer id (in the variant) no longer holding our
    /// token: another peer presumed us dead and took it over (or the region was reinitialised).
    /// The slot was left untouched. Worth a warning, not a reason to fail an unload.
    SlotLost(u32),
}

/// What a peer got wrong in a ring (see `ring.rs`). Every case is detected from values read
/// once out of shared memory and is reported, never trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// The producer's descriptor index is behind ours or more than a ring ahead of it.
    ProdIdx,
    /// A descriptor's length is zero or longer than the ring's largest frame.
    DescLen,
    /// A descriptor's frame does not start inside the sender's pool at a multiple of
    /// [`super::ring::FRAME_ALIGN`].
    DescPos,
    /// The consumer's descriptor index is ahead of what we published or behind where it was.
    ConsIdx,
}

/// Bounds-checked access to a shared region. Implementations check every offset and length
/// against [`Region::len`] and return [`Error::OutOfBounds`] rather than touching memory outside.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{Error, Region};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let r = HeapRegion::new(4096);
/// r.store(8, 0xdead_beef)?;
/// assert_eq!(r.load(8)?, 0xdead_beef);
/// assert_eq!(r.compare_exchange(8, 0xdead_beef, 1)?, Ok(0xdead_beef));
/// assert_eq!(r.compare_exchange(8, 0xdead_beef, 2)?, Err(1));
/// r.write(100, b"frame")?;
/// let mut buf = [0u8; 5];
/// r.read(100, &mut buf)?;
/// assert_eq!(&buf, b"frame");
/// // Outside the region or misaligned is an error, never a stray access or a panic.
/// assert_eq!(r.load(4096), Err(Error::OutOfBounds));
/// assert_eq!(r.load(2), Err(Error::Misaligned));
/// assert_eq!(r.write(4094, b"abc"), Err(Error::OutOfBounds));
/// assert_eq!(r.read(usize::MAX, &mut buf), Err(Error::OutOfBounds));
/// # Ok::<(), Error>(())
/// ```
pub trait Region {
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Atomic load of the u32 at `off` with acquire ordering.
    fn load(&self, off: usize) -> Result<u32, Error>;
    /// Atomic store of `val` at `off` with release ordering.
    fn store(&self, off: usize, val: u32) -> Result<(), Error>;
    /// Atomic compare-and-exchange (acquire-release) at `off`: `Ok(Ok(old))` when the word held
    /// `current` and now holds `new`, `Ok(Err(actual))` when it held `actual` instead.
    fn compare_exchange(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, Error>;
    /// Copies `buf.len()` bytes starting at `off` out of the region.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error>;
    /// Copies `buf` into the region at `off`.
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error>;
    /// Full memory barrier: every access before it is ordered before every access after it,
    /// stores before loads included, which acquire and release alone do not give. The event
    /// index handshake of the rings needs it (a store of our event followed by a load of the
    /// peer's index must not be reordered). The default is a sequentially consistent fence of
    /// the CPU, the same for the kernel's mapping and an `mmap`; model checkers override it.
    fn fence(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// A shared reference to a region is the region: lets a [`Claimed`] (or anything else that
/// owns a region) wrap a borrowed one.
impl<R: Region + ?Sized> Region for &R {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        (**self).load(off)
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        (**self).store(off, val)
    }
    fn compare_exchange(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> Result<Result<u32, u32>, Error> {
        (**self).compare_exchange(off, current, new)
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        (**self).read(off, buf)
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        (**self).write(off, buf)
    }
    fn fence(&self) {
        (**self).fence()
    }
}

/// Checks that `[off, off + len)` lies inside a region of `region_len` bytes, and for atomics
/// that `off` is 4-aligned. Shared by every [`Region`] implementation so they cannot disagree.
#[inline]
pub fn check_range(region_len: usize, off: usize, len: usize, atomic: bool) -> Result<(), Error> {
    if atomic && !off.is_multiple_of(4) {
        return Err(Error::Misaligned);
    }
    match off.checked_add(len) {
        Some(end) if end <= region_len => Ok(()),
        _ => Err(Error::OutOfBounds),
    }
}

/// Where everything lives in a region: derived only from the region's length and `max_peers`,
/// so every peer computes the same geometry and can check the header against it.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{Error, Geometry, RING_SLOTS};
///
/// let g = Geometry::new(16 << 20, 8)?;
/// // Two descriptor rings per ordered pair fit into an eighth of 16 MiB, four would not.
/// assert_eq!((g.queues, g.rings()), (2, 112));
/// assert_eq!(g.ring_slots, RING_SLOTS);
/// // Queue q of pair (i, j) follows queue q - 1; pair (0, 2) follows pair (0, 1).
/// assert_eq!(g.ring_offset(0, 1, 1)? - g.ring_offset(0, 1, 0)?, g.ring_stride as usize);
/// assert_eq!(g.ring_offset(0, 2, 0)? - g.ring_offset(0, 1, 1)?, g.ring_stride as usize);
/// assert!(g.ring_offset(7, 6, 1)? + g.ring_stride as usize <= g.pools_offset as usize);
/// assert_eq!(g.ring_offset(1, 1, 0), Err(Error::OutOfBounds));
/// assert_eq!(g.ring_offset(0, 1, 2), Err(Error::OutOfBounds));
/// // The rest is one pool per peer, 1.77 MiB each, the last one ending inside the region.
/// assert_eq!(g.pool_len, 1_859_584);
/// assert_eq!(g.pool_offset(1)? - g.pool_offset(0)?, g.pool_len as usize);
/// assert!(g.pool_offset(7)? as u64 + u64::from(g.pool_len) <= g.region_len);
/// // The same inputs give every peer the same geometry.
/// assert_eq!(Geometry::new(16 << 20, 8)?, g);
/// assert_eq!(Geometry::new(1 << 20, 4), Err(Error::TooSmall { len: 1 << 20 }));
/// assert_eq!(Geometry::new(4 << 20, 16), Err(Error::TooSmall { len: 4 << 20 }));
/// assert_eq!(Geometry::new(64 << 20, 65), Err(Error::BadMaxPeers(65)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of the region the layout uses.
    pub region_len: u64,
    /// Peer ids are `0..max_peers`.
    pub max_peers: u32,
    /// Descriptors per ring (a power of two, at most [`RING_SLOTS`]).
    pub ring_slots: u32,
    /// Descriptor rings per ordered pair.
    pub queues: u32,
    /// Bytes from one ring to the next.
    pub ring_stride: u32,
    /// Offset of peer 0's control block.
    pub ctrl_offset: u32,
    /// Bytes from one control block to the next.
    pub ctrl_stride: u32,
    /// Offset of the first ring.
    pub rings_offset: u32,
    /// Offset of peer 0's transmit pool.
    pub pools_offset: u32,
    /// Bytes of each peer's transmit pool (and from one pool to the next).
    pub pool_len: u32,
}

const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl Geometry {
    /// Computes the geometry for a region of `len` bytes shared by up to `max_peers` peers.
    ///
    /// Every ring has [`RING_SLOTS`] descriptors. `queues` is the largest power of two up to
    /// [`MAX_QUEUES`] whose rings (`max_peers * (max_peers - 1) * queues` of them) take at most
    /// an eighth of the region, and at least 1. What is left after the header, the control
    /// blocks and the rings is split evenly into one pool per peer, rounded down to
    /// [`POOL_ALIGN`]; a pool smaller than [`MIN_POOL`] is [`Error::TooSmall`].
    pub fn new(len: u64, max_peers: u32) -> Result<Self, Error> {
        if len < MIN_REGION_LEN {
            return Err(Error::TooSmall { len });
        }
        if !(MIN_PEERS..=MAX_PEERS).contains(&max_peers) {
            return Err(Error::BadMaxPeers(max_peers));
        }
        let region_len = if len > MAX_REGION_LEN {
            MAX_REGION_LEN
        } else {
            len
        };
        let ctrl_offset = HEADER_LEN as u64;
        let rings_offset = align_up(ctrl_offset + max_peers as u64 * CTRL_STRIDE as u64, 4096);
        let stride = RING_HDR_LEN as u64 + RING_SLOTS as u64 * DESC_LEN as u64;
        let pairs = max_peers as u64 * (max_peers as u64 - 1);
        let mut queues = MAX_QUEUES as u64;
        while queues > 1 && pairs * queues * stride > region_len / 8 {
            queues /= 2;
        }
        let pools_offset = align_up(rings_offset + pairs * queues * stride, POOL_ALIGN as u64);
        let pool_len =
            (region_len.saturating_sub(pools_offset) / max_peers as u64) & !(POOL_ALIGN as u64 - 1);
        if pool_len < MIN_POOL as u64 {
            return Err(Error::TooSmall { len });
        }
        // All below 1 GiB (`MAX_REGION_LEN`): the casts cannot truncate.
        Ok(Geometry {
            region_len,
            max_peers,
            ring_slots: RING_SLOTS,
            queues: queues as u32,
            ring_stride: stride as u32,
            ctrl_offset: ctrl_offset as u32,
            ctrl_stride: CTRL_STRIDE,
            rings_offset: rings_offset as u32,
            pools_offset: pools_offset as u32,
            pool_len: pool_len as u32,
        })
    }

    /// Number of rings: `queues` per ordered pair of distinct peers.
    pub fn rings(&self) -> u32 {
        self.max_peers * (self.max_peers - 1) * self.queues
    }

    /// Offset of ring `queue` carrying frames from peer `from` to peer `to`.
    pub fn ring_offset(&self, from: u32, to: u32, queue: u32) -> Result<usize, Error> {
        if from >= self.max_peers || to >= self.max_peers || from == to || queue >= self.queues {
            return Err(Error::OutOfBounds);
        }
        let pair =
            from as u64 * (self.max_peers as u64 - 1) + if to < from { to } else { to - 1 } as u64;
        let idx = pair * self.queues as u64 + queue as u64;
        usize::try_from(self.rings_offset as u64 + idx * self.ring_stride as u64)
            .map_err(|_| Error::OutOfBounds)
    }

    /// Offset of peer `id`'s transmit pool; it is [`Geometry::pool_len`] bytes long.
    pub fn pool_offset(&self, id: u32) -> Result<usize, Error> {
        if id >= self.max_peers {
            return Err(Error::OutOfBounds);
        }
        usize::try_from(self.pools_offset as u64 + id as u64 * self.pool_len as u64)
            .map_err(|_| Error::OutOfBounds)
    }

    /// Offset of peer `id`'s control block.
    pub fn ctrl_offset(&self, id: u32) -> Result<usize, Error> {
        if id >= self.max_peers {
            return Err(Error::OutOfBounds);
        }
        Ok(self.ctrl_offset as usize + id as usize * self.ctrl_stride as usize)
    }

    fn fields(&self) -> [(usize, u32); 12] {
        [
            (hdr::HEADER_LEN, HEADER_LEN),
            (hdr::SIZE_LO, self.region_len as u32),
            (hdr::SIZE_HI, (self.region_len >> 32) as u32),
            (hdr::MAX_PEERS, self.max_peers),
            (hdr::RING_SLOTS, self.ring_slots),
            (hdr::POOL_LEN, self.pool_len),
            (hdr::RING_STRIDE, self.ring_stride),
            (hdr::CTRL_OFFSET, self.ctrl_offset),
            (hdr::CTRL_STRIDE, self.ctrl_stride),
            (hdr::RINGS_OFFSET, self.rings_offset),
            (hdr::POOLS_OFFSET, self.pools_offset),
            (hdr::QUEUES, self.queues),
        ]
    }
}

/// How this peer came to use the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// We found it empty (or stalled) and wrote the header.
    Initialised,
    /// Another peer had set it up; we checked the header against our geometry.
    Joined,
}

/// The result of [`attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The geometry in force.
    pub geometry: Geometry,
    /// Random value the initialiser wrote; the same for every peer of this incarnation.
    pub nonce: u64,
    /// Whether we initialised or joined.
    pub how: Attach,
    /// The header's state word as it stood once the header was ready.
    pub state: u32,
}

/// Sets up or joins the region.
///
/// The first peer moves the state word from `EMPTY` to `INITIALISING` with a compare-and-swap,
/// writes the header and publishes it by storing `READY` (release). Every other peer waits while
/// the state is `INITIALISING`, calling `wait` between looks (it returns `false` once it has
/// waited long enough; then the initialiser is presumed dead and the region is taken over by
/// another compare-and-swap that bumps the attempt count). A compare-and-swap that loses its
/// race also waits, and once `wait` says it waited long enough that is [`Error::InitStalled`]:
/// a writer flipping the state word cannot keep a probing peer here. A `READY` header is
/// checked field by field against `geometry`; any difference is an error and the region is
/// left untouched.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{attach, Attach, Error, Geometry};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// // The first peer finds the region empty and writes the header...
/// let first = attach(&region, g, 0x1234, || false)?;
/// assert_eq!(first.how, Attach::Initialised);
/// // ...the next checks it against its own geometry and joins the same incarnation.
/// let second = attach(&region, g, 0x5678, || false)?;
/// assert_eq!((second.how, second.nonce), (Attach::Joined, 0x1234));
/// // A peer set up for three peers computes another geometry and is refused.
/// let other = Geometry::new(4 << 20, 3)?;
/// assert_eq!(attach(&region, other, 1, || false), Err(Error::GeometryMismatch));
/// # Ok::<(), Error>(())
/// ```
pub fn attach<R: Region + ?Sized>(
    r: &R,
    geometry: Geometry,
    nonce: u64,
    mut wait: impl FnMut() -> bool,
) -> Result<Attached, Error> {
    if (r.len() as u64) < geometry.region_len {
        return Err(Error::OutOfBounds);
    }
    // Bounded: each pass either returns or waits, and `wait` bounds the waiting. A lost race
    // for the state word waits too: an honest peer wins it once, but a writer that flips the
    // word between our look and our swap could otherwise keep us here forever.
    let mut stalled = false;
    loop {
        let state = r.load(hdr::STATE)?;
        let attempt = state >> 2;
        match state & 3 {
            phase::EMPTY | phase::INITIALISING if state & 3 == phase::EMPTY || stalled => {
                let mine = ((attempt.wrapping_add(1)) << 2) | phase::INITIALISING;
                if r.compare_exchange(hdr::STATE, state, mine)?.is_err() {
                    if !wait() {
                        return Err(Error::InitStalled);
                    }
                    stalled = false;
                    continue;
                }
                initialise(r, &geometry, nonce)?;
                let ready = (mine & !3) | phase::READY;
                return match r.compare_exchange(hdr::STATE, mine, ready)? {
                    Ok(_) => Ok(Attached {
                        geometry,
                        nonce,
                        how: Attach::Initialised,
                        state: ready,
                    }),
                    // Someone presumed us dead and took over: let them finish.
                    Err(_) => Err(Error::InitStalled),
                };
            }
            phase::INITIALISING => {
                if !wait() {
                    stalled = true;
                }
            }
            phase::READY => return join(r, geometry, state),
            _ => return Err(Error::BadState(state)),
        }
    }
}

fn initialise<R: Region + ?Sized>(r: &R, g: &Geometry, nonce: u64) -> Result<(), Error> {
    r.store(hdr::MAGIC, MAGIC)?;
    r.store(hdr::VERSION, VERSION)?;
    for (off, val) in g.fields() {
        r.store(off, val)?;
    }
    r.store(hdr::NONCE_LO, nonce as u32)?;
    r.store(hdr::NONCE_HI, (nonce >> 32) as u32)?;
    for i in 0..MAX_PEERS as usize {
        r.store(hdr::PEER_SLOTS + 4 * i, 0)?;
    }
    Ok(())
}

/// Whether the header names this protocol (magic) at our layout version.
fn check_ident<R: Region + ?Sized>(r: &R) -> Result<(), Error> {
    let magic = r.load(hdr::MAGIC)?;
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    let version = r.load(hdr::VERSION)?;
    if version != VERSION {
        return Err(Error::BadVersion(version));
    }
    Ok(())
}

fn join<R: Region + ?Sized>(r: &R, geometry: Geometry, state: u32) -> Result<Attached, Error> {
    check_ident(r)?;
    for (off, val) in geometry.fields() {
        if r.load(off)? != val {
            return Err(Error::GeometryMismatch);
        }
    }
    let nonce = r.load(hdr::NONCE_LO)? as u64 | (r.load(hdr::NONCE_HI)? as u64) << 32;
    Ok(Attached {
        geometry,
        nonce,
        how: Attach::Joined,
        state,
    })
}

/// Puts back every header word that no longer holds what it held when we attached (a peer
/// scribbled on it) and returns how many did not. Only a peer attached to the region calls
/// this: while any peer is attached the header never legitimately changes, so the copy in `a`
/// is the truth. The peer slot words are not covered; see [`reclaim_slot`].
pub fn repair_header<R: Region + ?Sized>(r: &R, a: &Attached) -> Result<u32, Error> {
    let mut fixed = 0;
    let mut check = |off: usize, val: u32| -> Result<(), Error> {
        if r.load(off)? != val {
            r.store(off, val)?;
            fixed += 1;
        }
        Ok(())
    };
    check(hdr::MAGIC, MAGIC)?;
    check(hdr::VERSION, VERSION)?;
    for (off, val) in a.geometry.fields() {
        check(off, val)?;
    }
    check(hdr::NONCE_LO, a.nonce as u32)?;
    check(hdr::NONCE_HI, (a.nonce >> 32) as u32)?;
    // Last: a joining peer reads the other words only once this says READY.
    check(hdr::STATE, a.state)?;
    Ok(fixed)
}

/// The header's `departures` word: how many clients the host's ivshmem-server has seen leave
/// (see *Departures* in the module documentation). Read once; only a change means anything, so
/// callers keep the value they saw last and compare.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{departures, hdr, Region};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let r = HeapRegion::new(4096);
/// let seen = departures(&r)?;
/// // The server, as a client of its disconnects: one more departure.
/// r.store(hdr::DEPARTURES, seen.wrapping_add(1))?;
/// assert_ne!(departures(&r)?, seen);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
pub fn departures<R: Region + ?Sized>(r: &R) -> Result<u32, Error> {
    r.load(hdr::DEPARTURES)
}

/// Reads the geometry another peer wrote into a `READY` header, checking that it is one this
/// layout could have produced (used by tools that inspect a region without joining it).
pub fn read_geometry<R: Region + ?Sized>(r: &R) -> Result<Geometry, Error> {
    let state = r.load(hdr::STATE)?;
    if state & 3 != phase::READY {
        return Err(Error::BadState(state));
    }
    check_ident(r)?;
    let len = r.load(hdr::SIZE_LO)? as u64 | (r.load(hdr::SIZE_HI)? as u64) << 32;
    let g = Geometry::new(len, r.load(hdr::MAX_PEERS)?)?;
    for (off, val) in g.fields() {
        if r.load(off)? != val {
            return Err(Error::GeometryMismatch);
        }
    }
    Ok(g)
}
