// SPDX-License-Identifier: GPL-2.0

//! The descriptor rings between peers and the transmit pools their frames live in.
//!
//! Like [`super::layout`], this file is compiled into the kernel module and into the host
//! crate. It uses `core` only, has no `unsafe`, and reaches shared memory only through a
//! [`Region`]. Every value the peer writes is read once into a local, checked, and only the local
//! is used afterwards; what cannot be right is reported as [`Error::Corrupt`], never trusted and
//! never a panic.
//!
//! # Layout
//!
//! Each peer `i` owns a *transmit pool*, [`Geometry::pool_len`] bytes at
//! [`Geometry::pool_offset`]`(i)`, where it writes every frame it sends, to whichever peer. Peer
//! `i` sends to peer `j` on queue `q` through the descriptor ring at
//! [`Geometry::ring_offset`]`(i, j, q)`; `i` is its producer, `j` its consumer. With
//! `S = ring_slots` (a power of two), offsets from the ring's base:
//!
//! ```text
//! 0x00        prod_idx    u32  producer  descriptors published, free-running
//! 0x08        prod_event  u32  producer  "tell me when cons_idx passes this" (TX completion)
//! 0x40        cons_idx    u32  consumer  descriptors consumed, free-running
//! 0x48        cons_event  u32  consumer  "kick me when prod_idx passes this"
//! 0x100       descriptors      producer  S of DESC_LEN (32) bytes; index k is in slot k & (S-1)
//! ```
//!
//! The producer's and the consumer's words are on separate cache lines (0x00 and 0x40) and
//! each is written by its side only; the rest of the 256-byte header is reserved (zero).
//! Indices are free-running `u32`s that wrap at 2^32, masked in one place ([`Ring`]'s private
//! `desc`).
//!
//! A descriptor (little-endian) is `pos: u32, len: u32, flags: u16, gso_type: u8, _: u8,
//! gso_size: u16, csum_start: u16, csum_offset: u16, hdr_len: u16`, then zeros to 32 bytes; see
//! [`Desc`]. Its frame is the `len` bytes at byte `pos` of the *sender's pool*
//! (`0 <= pos < pool_len`, a multiple of [`FRAME_ALIGN`]); a frame that runs past the pool's
//! end continues at its start, so it lies in one or two pieces ([`Span`]). A frame is 1 to
//! [`Ring::max_frame`] bytes long, at most half the pool.
//!
//! # Ownership
//!
//! - *Descriptors*: the producer owns the slots of indices `[prod_idx, cons_idx + S)`, writes
//!   them with plain copies and hands them over by advancing `prod_idx`; the consumer owns
//!   `[cons_idx, prod_idx)`, reads each once, and hands them back by advancing `cons_idx`.
//! - *Pool bytes*: only the pool's owner writes them. Its allocator ([`Pool`]) is private: it
//!   hands out the pool as one circular byte stream, each frame taking its length rounded up
//!   to [`FRAME_ALIGN`] from where the last one ended, and takes bytes back in the same order:
//!   its tail moves to the oldest frame still in flight over every ring that shares the pool
//!   (what each consumer has not yet given back, read from its `cons_idx`). Head, tail and the
//!   range of each frame in flight are never read back from shared memory, so a peer
//!   scribbling there changes nothing on the sender's side.
//! - The consumer reads the bytes a descriptor names while it owns the descriptor. It cannot
//!   check that they are what was sent: a sender can only point into its own pool, and a stale
//!   or overlapping range only spoils its own frames. What it checks is that the range lies in
//!   the sender's pool ([`Consumer::peek`]).
//!
//! # Memory ordering
//!
//! - [`Producer::publish`] stores `prod_idx` with release ordering: it orders the plain writes
//!   of the frames and descriptors before it. [`Consumer::peek`] loads `prod_idx` with acquire
//!   ordering before it reads the descriptor and before the caller copies the frame out.
//! - [`Consumer::publish`] stores `cons_idx` (release) after the caller finished copying frames
//!   out: it orders those reads before the producer may reuse the pool bytes and the slots.
//!   [`Producer::collect`] loads it (acquire) before [`Pool::reclaim`] hands the bytes out again.
//! - Notification suppression, as virtio's `VIRTIO_RING_F_EVENT_IDX`: the consumer stores
//!   `cons_event` and the producer, after publishing, loads it and kicks only if its publish
//!   crossed it ([`need_event`]). A store followed by a load of another word can be reordered
//!   even with release and acquire, which would lose a wake-up, so both sides put a full
//!   barrier ([`Region::fence`]) between them: [`Consumer::set_event`] after its store,
//!   [`Producer::kick_needed`] before its load. After `set_event` the consumer must look at the
//!   ring again ([`Consumer::pending`]) before it sleeps. The same holds the other way round
//!   for `prod_event` and TX completion ([`Producer::set_event`], [`Consumer::kick_needed`]).
//!
//! # Several queues
//!
//! The layout has `queues` rings per pair. A sender using `n > 1` transmit queues splits its
//! pool into `n` partitions ([`Pool::partition`], at most [`Pool::max_partitions`]): equal
//! parts, each a multiple of [`FRAME_ALIGN`] and at least twice a largest frame. The
//! allocator of partition `q` is shared by the rings `(i, *, q)`. A frame never wraps inside a
//! partition: one that would run past its end starts at its start, and the skipped bytes are
//! handed out with it ([`Pool::needs`]). The partition is the sender's private business:
//! receivers check only that a frame lies in the whole pool (where a frame may wrap, for a
//! sender with one queue, whose partition is the whole pool).
//!
//! [`Region`]: super::layout::Region
//! [`Region::fence`]: super::layout::Region::fence

use super::layout::{Error, Geometry, Region, DESC_LEN, RING_HDR_LEN, RING_SLOTS};
use core::ops::Range;

mod consumer;
mod pool;
mod producer;

pub use consumer::Consumer;
pub use pool::Pool;
pub use producer::Producer;

/// Offsets of the ring header's words from the ring's base.
pub mod off {
    /// Producer: descriptors published.
    pub const PROD_IDX: usize = 0x00;
    /// Producer: the consumer should notify once `cons_idx` passes this.
    pub const PROD_EVENT: usize = 0x08;
    /// Consumer: descriptors consumed.
    pub const CONS_IDX: usize = 0x40;
    /// Consumer: the producer should notify once `prod_idx` passes this.
    pub const CONS_EVENT: usize = 0x48;
}

/// Frame starts are aligned to this many bytes: a frame takes its length rounded up to this
/// from its sender's pool.
pub const FRAME_ALIGN: u32 = 64;

/// The pool bytes a frame of `len` bytes takes: `len` rounded up to [`FRAME_ALIGN`]
/// (saturating; only ever compared with what is free).
#[inline]
pub const fn footprint(len: u32) -> u32 {
    len.saturating_add(FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// Whether a side that moved its index from `old` to `new` must notify a peer that asked to be
/// told when the index passes `event`, i.e. whether `event` lies in `[old, new)`, modulo 2^32
/// (virtio's `vring_need_event` on `u32`).
#[inline]
pub const fn need_event(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One frame's descriptor. The fields after `len` carry the offload metadata with the meaning of
/// the same fields of `struct virtio_net_hdr`; the ring passes them through unchecked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Byte offset of the frame's first byte in the sender's pool.
    pub pos: u32,
    /// Frame length in bytes.
    pub len: u32,
    /// Offload flags.
    pub flags: u16,
    /// Segmentation offload type.
    pub gso_type: u8,
    /// Segment size for segmentation offload.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
    /// Length of the headers.
    pub hdr_len: u16,
}

impl Desc {
    /// The descriptor's 32 bytes as they are stored in the ring.
    #[inline]
    pub fn encode(&self) -> [u8; DESC_LEN as usize] {
        let [p0, p1, p2, p3] = self.pos.to_le_bytes();
        let [l0, l1, l2, l3] = self.len.to_le_bytes();
        let [f0, f1] = self.flags.to_le_bytes();
        let [g0, g1] = self.gso_size.to_le_bytes();
        let [s0, s1] = self.csum_start.to_le_bytes();
        let [o0, o1] = self.csum_offset.to_le_bytes();
        let [h0, h1] = self.hdr_len.to_le_bytes();
        [
            p0,
            p1,
            p2,
            p3,
            l0,
            l1,
            l2,
            l3,
            f0,
            f1,
            self.gso_type,
            0,
            g0,
            g1,
            s0,
            s1,
            o0,
            o1,
            h0,
            h1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ]
    }

    /// The descriptor stored as `b`; reserved bytes are ignored.
    #[inline]
    pub fn decode(b: &[u8; DESC_LEN as usize]) -> Self {
        let [p0, p1, p2, p3, l0, l1, l2, l3, f0, f1, gso_type, _, g0, g1, s0, s1, o0, o1, h0, h1, ..] =
            *b;
        Desc {
            pos: u32::from_le_bytes([p0, p1, p2, p3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            gso_type,
            gso_size: u16::from_le_bytes([g0, g1]),
            csum_start: u16::from_le_bytes([s0, s1]),
            csum_offset: u16::from_le_bytes([o0, o1]),
            hdr_len: u16::from_le_bytes([h0, h1]),
        }
    }
}

/// Where one ring and its sender's pool live in the region, and their dimensions.
///
/// # Invariants
///
/// `slots` is a power of two at most [`RING_SLOTS`]; `pool_len` is a nonzero multiple of
/// [`FRAME_ALIGN`]; the ring's header and descriptors fit between `base` and
/// `base + stride`, and both that and `[pool, pool + pool_len)` lie inside the region, in
/// ranges that fit in `usize`. So none of the offset computations below can overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    base: usize,
    slots: u32,
    desc_start: usize,
    pool: usize,
    pool_len: u32,
}

impl Ring {
    /// Ring `queue` carrying frames from peer `from` to peer `to` in a region of geometry `g`.
    /// Refuses a geometry whose rings and pools are not laid out as described in the module
    /// documentation.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry, MAX_FRAME};
    /// use ivshmem_net_protocol::ring::Ring;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let ring = Ring::new(&g, 1, 0, 0)?;
    /// assert_eq!(ring.base(), g.ring_offset(1, 0, 0)?);
    /// // Frames from 1 to 0 live in 1's pool.
    /// assert_eq!((ring.pool(), ring.pool_len()), (g.pool_offset(1)?, g.pool_len));
    /// assert_eq!(ring.max_frame(), MAX_FRAME);
    /// assert_eq!(Ring::new(&g, 1, 1, 0), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(g: &Geometry, from: u32, to: u32, queue: u32) -> Result<Self, Error> {
        let base = g.ring_offset(from, to, queue)?;
        let pool = g.pool_offset(from)?;
        let (slots, pool_len) = (g.ring_slots, g.pool_len);
        if !slots.is_power_of_two()
            || slots > RING_SLOTS
            || pool_len == 0
            || !pool_len.is_multiple_of(FRAME_ALIGN)
        {
            return Err(Error::GeometryMismatch);
        }
        let need = u64::from(RING_HDR_LEN) + u64::from(slots) * u64::from(DESC_LEN);
        if need > u64::from(g.ring_stride) {
            return Err(Error::GeometryMismatch);
        }
        let inside = |start: usize, len: u64| match (start as u64).checked_add(len) {
            Some(end) => end <= g.region_len && usize::try_from(end).is_ok(),
            None => false,
        };
        if !inside(base, u64::from(g.ring_stride)) || !inside(pool, u64::from(pool_len)) {
            return Err(Error::OutOfBounds);
        }
        // INVARIANT: checked above; `base + stride` fits in `usize`, so this sum does too.
        let desc_start = base + RING_HDR_LEN as usize;
        Ok(Ring {
            base,
            slots,
            desc_start,
            pool,
            pool_len,
        })
    }

    /// Descriptor slots.
    #[inline]
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Region offset of the ring's header.
    #[inline]
    pub fn base(&self) -> usize {
        self.base
    }

    /// Region offset of the sender's pool; it is [`Ring::pool_len`] bytes long.
    #[inline]
    pub fn pool(&self) -> usize {
        self.pool
    }

    /// Bytes of the sender's pool.
    #[inline]
    pub fn pool_len(&self) -> u32 {
        self.pool_len
    }

    /// Largest frame the ring carries: [`MAX_FRAME`](super::layout::MAX_FRAME), or half the
    /// pool if that is less, so that a largest frame always fits into a drained pool.
    #[inline]
    pub fn max_frame(&self) -> u32 {
        (self.pool_len / 2).min(super::layout::MAX_FRAME)
    }

    /// Region offset of header word `word` (one of [`off`]).
    #[inline]
    fn word(&self, word: usize) -> usize {
        // Cannot wrap: `word < RING_HDR_LEN` and the ring fits (type invariant).
        self.base.wrapping_add(word)
    }

    /// Region offset of the descriptor slot of free-running index `idx`.
    #[inline]
    fn desc(&self, idx: u32) -> usize {
        let slot = (idx & (self.slots - 1)) as usize;
        // Cannot wrap: the slot is below `slots` and the descriptors fit (type invariant).
        self.desc_start
            .wrapping_add(slot.wrapping_mul(DESC_LEN as usize))
    }

    /// Where the `len` bytes at pool offset `pos` lie in the region, or [`Error::BadFrameLen`]
    /// unless `pos` is inside the pool and `1 <= len <= max_frame` (so at most one wrap).
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Ring;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let ring = Ring::new(&g, 0, 1, 0)?;
    /// let (pool, end) = (ring.pool(), g.pool_len);
    /// // In one piece...
    /// let s = ring.span(64, 100)?;
    /// assert_eq!((s.first(), s.second()), (pool + 64..pool + 164, None));
    /// // ...or running over the pool's end and on from its start.
    /// let s = ring.span(end - 64, 100)?;
    /// assert_eq!(s.first(), pool + end as usize - 64..pool + end as usize);
    /// assert_eq!(s.second(), Some(pool..pool + 36));
    /// assert_eq!(ring.span(end, 1), Err(Error::BadFrameLen(1)));
    /// assert_eq!(ring.span(0, 0), Err(Error::BadFrameLen(0)));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn span(&self, pos: u32, len: u32) -> Result<Span, Error> {
        if pos >= self.pool_len || len == 0 || len > self.max_frame() {
            return Err(Error::BadFrameLen(len));
        }
        let room = self.pool_len - pos;
        let (head_len, tail_len) = if len > room {
            (room, len - room)
        } else {
            (len, 0)
        };
        // Cannot wrap: `pos < pool_len` and the pool fits (type invariant).
        Ok(Span {
            head: self.pool.wrapping_add(pos as usize),
            head_len,
            tail: self.pool,
            tail_len,
        })
    }
}

/// Where one frame lies in the region: one piece, or two when it runs past the end of its
/// sender's pool and continues at the start ([`Ring::span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    head: usize,
    head_len: u32,
    tail: usize,
    tail_len: u32,
}

impl Span {
    /// The frame's length in bytes.
    #[inline]
    pub fn len(&self) -> u32 {
        // Cannot overflow: both are at most `max_frame` together.
        self.head_len + self.tail_len
    }

    /// Never: a frame has at least one byte. For clippy's `len_without_is_empty`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region range of the frame's first piece.
    #[inline]
    pub fn first(&self) -> Range<usize> {
        self.head..self.head + self.head_len as usize
    }

    /// The region range of the frame's second piece, from the pool's start, if it wraps.
    #[inline]
    pub fn second(&self) -> Option<Range<usize>> {
        (self.tail_len != 0).then(|| self.tail..self.tail + self.tail_len as usize)
    }

    /// The region ranges holding frame bytes `[at, at + len)`: one or two, in frame order
    /// (the second empty if one does). [`Error::OutOfBounds`] if that is not inside the frame.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Ring;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let ring = Ring::new(&g, 0, 1, 0)?;
    /// let s = ring.span(g.pool_len - 64, 100)?;
    /// let [a, b] = s.pieces(60, 10)?;
    /// assert_eq!((a.len(), b.len()), (4, 6));
    /// assert_eq!(b.start, ring.pool());
    /// assert_eq!(s.pieces(90, 11), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn pieces(&self, at: u32, len: u32) -> Result<[Range<usize>; 2], Error> {
        let end = at.checked_add(len).ok_or(Error::OutOfBounds)?;
        if end > self.len() {
            return Err(Error::OutOfBounds);
        }
        let piece = |start: usize, plen: u32, from: u32| {
            // The part of `[at, end)` inside `[from, from + plen)`, as a region range.
            let lo = at.clamp(from, from + plen);
            let hi = end.clamp(from, from + plen);
            start + (lo - from) as usize..start + (hi - from) as usize
        };
        Ok([
            piece(self.head, self.head_len, 0),
            piece(self.tail, self.tail_len, self.head_len),
        ])
    }

    /// Copies `buf` into the frame at byte `at` (split over the two pieces as needed).
    #[inline]
    pub fn write<R: Region + ?Sized>(&self, r: &R, at: u32, buf: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(buf.len()).map_err(|_| Error::OutOfBounds)?;
        let [a, b] = self.pieces(at, len)?;
        let (x, y) = buf.split_at(a.len());
        r.write(a.start, x)?;
        if !y.is_empty() {
            r.write(b.start, y)?;
        }
        Ok(())
    }

    /// Copies the frame into the start of `buf` and returns its length;
    /// [`Error::BadFrameLen`] if `buf` is shorter than the frame.
    #[inline]
    pub fn read<R: Region + ?Sized>(&self, r: &R, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.len() as usize;
        let buf = buf.get_mut(..len).ok_or(Error::BadFrameLen(self.len()))?;
        let (x, y) = buf.split_at_mut(self.head_len as usize);
        r.read(self.head, x)?;
        if !y.is_empty() {
            r.read(self.tail, y)?;
        }
        Ok(len)
    }
}
