// SPDX-License-Identifier: GPL-2.0

//! The single-producer, single-consumer frame ring between two peers.
//!
//! Like [`super::layout`], this file is compiled into the kernel module and into the host
//! crate. It uses `core` only, has no `unsafe`, and reaches shared memory only through a
//! [`Region`]. Every value the peer writes is read once into a local, checked, and only the local
//! is used afterwards; what cannot be right is reported as [`Error::Corrupt`], never trusted and
//! never a panic.
//!
//! # Layout
//!
//! Peer `i` sends to peer `j` through the ring at [`Geometry::ring_offset`]`(i, j)`; `i` is its
//! producer, `j` its consumer. With `S = ring_slots` and `D = ring_data` (both powers of two),
//! offsets from the ring's base:
//!
//! ```text
//! 0x00        prod_idx    u32  producer  descriptors published, free-running
//! 0x04        prod_bytes  u32  producer  data position after the last published frame
//! 0x08        prod_event  u32  producer  "tell me when cons_idx passes this" (TX completion)
//! 0x40        cons_idx    u32  consumer  descriptors consumed, free-running
//! 0x44        cons_bytes  u32  consumer  data position after the last consumed frame
//! 0x48        cons_event  u32  consumer  "kick me when prod_idx passes this"
//! 0x100       descriptors      producer  S of DESC_LEN (32) bytes; index k is in slot k & (S-1)
//! 0x100+32*S  data             producer  D bytes; position p is at byte p & (D-1)
//! ```
//!
//! The producer's and the consumer's words are on separate cache lines (0x00 and 0x40) and
//! each is written by its side only; the rest of the 256-byte header is reserved (zero).
//! Indices and byte positions are free-running `u32`s that wrap at 2^32 and are masked in one
//! place each ([`Ring`]'s private offset helpers).
//!
//! A descriptor (little-endian) is `pos: u32, len: u32, flags: u16, gso_type: u8, _: u8,
//! gso_size: u16, csum_start: u16, csum_offset: u16, hdr_len: u16`, then zeros to 32 bytes; see
//! [`Desc`]. Its frame is the `len` bytes at data position `pos`. A frame never wraps around
//! the end of the data area: when it would, the producer skips to the next multiple of `D`.
//! Frames start 64-byte aligned: the position after a frame is its end rounded up to 64. A frame
//! is 1 to `D / 2` bytes long, so the largest frame always fits into a drained ring.
//!
//! # Ownership
//!
//! The producer owns descriptor slots `[cons_idx, cons_idx + S)` that are not yet published,
//! i.e. indices `[prod_idx, cons_idx + S)`, and the data bytes `[prod_bytes, cons_bytes + D)`;
//! it writes those with plain copies and then hands them over by advancing `prod_idx` and
//! `prod_bytes`. The consumer owns descriptors `[cons_idx, prod_idx)` and data
//! `[cons_bytes, prod_bytes)`, reads them, and hands them back by advancing `cons_idx` and
//! `cons_bytes`. Each side keeps shadow copies of its own words and never reads them back from
//! shared memory, so a peer scribbling over them changes nothing on our side.
//!
//! # Memory ordering
//!
//! - [`Producer::publish`] stores `prod_bytes` and then `prod_idx`, each with release ordering:
//!   they order the plain writes of the frames and descriptors before them. [`Consumer::peek`]
//!   loads `prod_idx` with acquire ordering before it reads the descriptor and before the caller
//!   copies the frame out, and then loads `prod_bytes` (acquire), which is therefore at least as
//!   new as the value that went with that `prod_idx`.
//! - [`Consumer::publish`] stores `cons_bytes` and then `cons_idx` (release) after the caller
//!   finished copying frames out: they order those reads before the producer may overwrite the
//!   space. [`Producer::reserve`] loads both (acquire) before handing out space for reuse.
//! - Notification suppression, as virtio's `VIRTIO_RING_F_EVENT_IDX`: the consumer stores
//!   `cons_event` and the producer, after publishing, loads it and kicks only if its publish
//!   crossed it ([`need_event`]). A store followed by a load of another word can be reordered
//!   even with release and acquire, which would lose a wake-up, so both sides put a full
//!   barrier ([`Region::fence`]) between them: [`Consumer::set_event`] after its store,
//!   [`Producer::kick_needed`] before its load. After `set_event` the consumer must look at the
//!   ring again ([`Consumer::pending`]) before it sleeps. The same holds the other way round
//!   for `prod_event` and TX completion ([`Producer::set_event`], [`Consumer::kick_needed`]).

use super::layout::{Corrupt, Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};

/// Offsets of the ring header's words from the ring's base.
pub mod off {
    /// Producer: descriptors published.
    pub const PROD_IDX: usize = 0x00;
    /// Producer: data position after the last published frame.
    pub const PROD_BYTES: usize = 0x04;
    /// Producer: the consumer should notify once `cons_idx` passes this.
    pub const PROD_EVENT: usize = 0x08;
    /// Consumer: descriptors consumed.
    pub const CONS_IDX: usize = 0x40;
    /// Consumer: data position after the last consumed frame.
    pub const CONS_BYTES: usize = 0x44;
    /// Consumer: the producer should notify once `prod_idx` passes this.
    pub const CONS_EVENT: usize = 0x48;
}

/// Frame starts are aligned to this many bytes.
pub const FRAME_ALIGN: u32 = 64;

/// Smallest data area a ring accepts: the largest frame is half of it and at least
/// [`FRAME_ALIGN`] bytes.
pub const MIN_DATA: u32 = 2 * FRAME_ALIGN;

/// Rounds a free-running position up to [`FRAME_ALIGN`]; wraps at 2^32 like the positions.
const fn align_frame(pos: u32) -> u32 {
    pos.wrapping_add(FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// Whether a side that moved its index from `old` to `new` must notify a peer that asked to be
/// told when the index passes `event`, i.e. whether `event` lies in `[old, new)`, modulo 2^32
/// (virtio's `vring_need_event` on `u32`).
pub const fn need_event(event: u32, new: u32, old: u32) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One frame's descriptor. The fields after `len` carry the offload metadata with the meaning of
/// the same fields of `struct virtio_net_hdr`; the ring passes them through unchecked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Free-running data position of the frame's first byte.
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

/// Where one ring lives in the region, and its dimensions.
///
/// # Invariants
///
/// `slots` and `data_len` are powers of two, `data_len >= MIN_DATA`, and the ring's header,
/// descriptors and data area fit between `base` and `base + stride <= region_len`, a range that
/// fits in `usize`. So none of the offset computations below can overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    base: usize,
    slots: u32,
    data_len: u32,
    desc_start: usize,
    data_start: usize,
}

impl Ring {
    /// The ring carrying frames from peer `from` to peer `to` in a region of geometry `g`.
    /// Refuses a geometry whose rings are not laid out as described in the module documentation.
    pub fn new(g: &Geometry, from: u32, to: u32) -> Result<Self, Error> {
        let base = g.ring_offset(from, to)?;
        let (slots, data_len) = (g.ring_slots, g.ring_data);
        if !slots.is_power_of_two() || !data_len.is_power_of_two() || data_len < MIN_DATA {
            return Err(Error::GeometryMismatch);
        }
        let descs = u64::from(slots) * u64::from(DESC_LEN);
        let need = u64::from(RING_HDR_LEN) + descs + u64::from(data_len);
        if need > u64::from(g.ring_stride) {
            return Err(Error::GeometryMismatch);
        }
        let end = (base as u64).checked_add(u64::from(g.ring_stride));
        match end {
            Some(end) if end <= g.region_len && usize::try_from(end).is_ok() => {}
            _ => return Err(Error::OutOfBounds),
        }
        // INVARIANT: checked above; `base + stride` fits in `usize`, so these sums do too.
        let desc_start = base + RING_HDR_LEN as usize;
        let data_start = desc_start + descs as usize;
        Ok(Ring {
            base,
            slots,
            data_len,
            desc_start,
            data_start,
        })
    }

    /// Descriptor slots.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes of the data area.
    pub fn data_len(&self) -> u32 {
        self.data_len
    }

    /// Largest frame the ring carries: half its data area.
    pub fn max_frame(&self) -> u32 {
        self.data_len / 2
    }

    /// Region offset of the ring's header.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Region offset of the ring's data area; it is [`Ring::data_len`] bytes long.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// The most data bytes a frame of `len` bytes can take up, padding to the end of the data
    /// area and alignment included; for keeping a queue stopped until that much is free.
    pub fn max_footprint(&self, len: u32) -> u32 {
        // At most `len - 1` bytes of padding, in whole FRAME_ALIGN units, plus the frame rounded
        // up to FRAME_ALIGN. Saturating: the caller only compares it with what is free.
        let frame = len.saturating_add(FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1);
        frame.saturating_mul(2).saturating_sub(FRAME_ALIGN)
    }

    /// Region offset of header word `word` (one of [`off`]).
    fn word(&self, word: usize) -> usize {
        // Cannot wrap: `word < RING_HDR_LEN` and the ring fits (type invariant).
        self.base.wrapping_add(word)
    }

    /// Region offset of the descriptor slot of free-running index `idx`.
    fn desc(&self, idx: u32) -> usize {
        let slot = (idx & (self.slots - 1)) as usize;
        // Cannot wrap: the slot is below `slots` and the descriptors fit (type invariant).
        self.desc_start
            .wrapping_add(slot.wrapping_mul(DESC_LEN as usize))
    }

    /// Region offset of free-running data position `pos`.
    fn data(&self, pos: u32) -> usize {
        // Cannot wrap: the masked position is below `data_len` and the data fits (invariant).
        self.data_start
            .wrapping_add((pos & (self.data_len - 1)) as usize)
    }

    /// Where a frame of `len` bytes goes when the last one ended at `pos`: its start, skipping
    /// to the next multiple of `data_len` if it would not fit before it, and the position after
    /// it. Needs `len <= data_len`.
    fn place(&self, pos: u32, len: u32) -> (u32, u32) {
        let room = self.data_len - (pos & (self.data_len - 1));
        let start = if len > room {
            pos.wrapping_add(room)
        } else {
            pos
        };
        (start, align_frame(start.wrapping_add(len)))
    }
}

/// A reservation made by [`Producer::reserve`] and not yet committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    pos: u32,
    len: u32,
    end: u32,
}

/// Free descriptor slots and data bytes as the producer sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Free {
    slots: u32,
    bytes: u32,
}

/// The sending side of a ring.
///
/// Frames go in three steps: [`Producer::reserve`] finds room and says where to copy the frame,
/// [`Producer::commit`] writes its descriptor, and [`Producer::publish`] hands every committed
/// frame to the consumer at once.
///
/// # Examples
///
/// One frame from peer 0 to peer 1 and back out:
///
/// ```
/// use ivshmem_net_protocol::layout::{Geometry, Region};
/// use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// // Each side resets its half before the link comes up.
/// let mut tx = Producer::new(&g, 0, 1)?;
/// let mut rx = Consumer::new(&g, 0, 1)?;
/// tx.reset(&region)?;
/// rx.reset(&region)?;
///
/// let frame = b"hello, peer";
/// let at = tx.reserve(&region, frame.len() as u32)?.expect("an empty ring has room");
/// region.write(at, frame)?;
/// tx.commit(&region, &Desc::default())?;
/// tx.publish(&region)?;
/// assert_eq!(tx.in_flight(&region)?, 1);
///
/// let d = rx.peek(&region)?.expect("one frame published");
/// let mut buf = [0u8; 64];
/// let n = rx.read_frame(&region, &d, &mut buf)?;
/// assert_eq!(&buf[..n], frame);
/// rx.pop(&d);
/// rx.publish(&region)?;
/// assert_eq!(tx.in_flight(&region)?, 0);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    ring: Ring,
    /// Descriptors committed, published or not; our shadow of `prod_idx`.
    idx: u32,
    /// Data position after the last committed frame; our shadow of `prod_bytes`.
    bytes: u32,
    /// `prod_idx` and `prod_bytes` as last published.
    published_idx: u32,
    published_bytes: u32,
    reserved: Option<Reserved>,
    /// The consumer's `cons_idx` and `cons_bytes` as [`Producer::reserve`] last read and
    /// checked them: while they leave room, it does not read the consumer's words again (the
    /// room they show can only be less than the real one).
    seen_idx: u32,
    seen_bytes: u32,
}

impl Producer {
    /// The producer of the ring from peer `from` to peer `to`, with all indices zero. Call
    /// [`Producer::reset`] to write them to the region.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Producer;
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut tx = Producer::new(&g, 0, 1)?;
    /// tx.reset(&region)?;
    /// assert_eq!(tx.free_slots(&region)?, g.ring_slots);
    /// assert_eq!(tx.ring().max_frame(), g.ring_data / 2);
    /// // There is no ring from a peer to itself, nor to a peer the region has no room for.
    /// assert_eq!(Producer::new(&g, 1, 1), Err(Error::OutOfBounds));
    /// assert_eq!(Producer::new(&g, 0, 2), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(g: &Geometry, from: u32, to: u32) -> Result<Self, Error> {
        Ok(Producer {
            ring: Ring::new(g, from, to)?,
            idx: 0,
            bytes: 0,
            published_idx: 0,
            published_bytes: 0,
            reserved: None,
            seen_idx: 0,
            seen_bytes: 0,
        })
    }

    /// The ring this produces into.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Zeroes the producer's words in the region and our copies of them, when the link
    /// (re)starts. The consumer must reset its side before either uses the ring.
    pub fn reset<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.reset_at(r, 0, 0)
    }

    /// Like [`Producer::reset`] but starting at index `idx` and data position `bytes` (rounded
    /// down to [`FRAME_ALIGN`]), so tests can start near the wrap at 2^32. The consumer must
    /// start at the same values.
    #[doc(hidden)]
    pub fn reset_at<R: Region + ?Sized>(
        &mut self,
        r: &R,
        idx: u32,
        bytes: u32,
    ) -> Result<(), Error> {
        let bytes = bytes & !(FRAME_ALIGN - 1);
        self.idx = idx;
        self.bytes = bytes;
        self.published_idx = idx;
        self.published_bytes = bytes;
        self.reserved = None;
        self.seen_idx = idx;
        self.seen_bytes = bytes;
        r.store(self.ring.word(off::PROD_EVENT), idx)?;
        r.store(self.ring.word(off::PROD_BYTES), bytes)?;
        r.store(self.ring.word(off::PROD_IDX), idx)
    }

    /// Descriptors committed so far (our `prod_idx`, including what is not yet published).
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// `prod_idx` as last published.
    pub fn published(&self) -> u32 {
        self.published_idx
    }

    /// Reads the consumer's `cons_idx` and `cons_bytes` once each and works out what is free.
    fn free<R: Region + ?Sized>(&self, r: &R) -> Result<Free, Error> {
        // Acquire: pairs with the release in `Consumer::publish`, so the consumer's reads of the
        // space it gave back happen before we overwrite it.
        let cons_idx = r.load(self.ring.word(off::CONS_IDX))?;
        let cons_bytes = r.load(self.ring.word(off::CONS_BYTES))?;
        self.free_from(cons_idx, cons_bytes)
    }

    /// What is free if the consumer is at `cons_idx` and `cons_bytes`, or
    /// [`Error::Corrupt`] if it cannot be there.
    fn free_from(&self, cons_idx: u32, cons_bytes: u32) -> Result<Free, Error> {
        // The consumer can only be in [committed - slots, published]; `unpublished` is at most
        // `slots` because `reserve` never hands out more.
        let unpublished = self.idx.wrapping_sub(self.published_idx);
        let used = self
            .published_idx
            .wrapping_sub(cons_idx)
            .checked_add(unpublished)
            .filter(|&used| used <= self.ring.slots)
            .ok_or(Error::Corrupt(Corrupt::ConsIdx))?;
        let unpublished = self.bytes.wrapping_sub(self.published_bytes);
        let used_bytes = self
            .published_bytes
            .wrapping_sub(cons_bytes)
            .checked_add(unpublished)
            .filter(|&used| used <= self.ring.data_len)
            .ok_or(Error::Corrupt(Corrupt::ConsBytes))?;
        Ok(Free {
            slots: self.ring.slots - used,
            bytes: self.ring.data_len - used_bytes,
        })
    }

    /// Frames published and not yet consumed: `prod_idx - cons_idx`, with the consumer's
    /// `cons_idx` read once and checked like in [`Producer::reserve`].
    pub fn in_flight<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        let cons_idx = r.load(self.ring.word(off::CONS_IDX))?;
        let n = self.published_idx.wrapping_sub(cons_idx);
        if n > self.ring.slots {
            return Err(Error::Corrupt(Corrupt::ConsIdx));
        }
        Ok(n)
    }

    /// The consumer's `cons_idx` as it stands, unchecked: only for noticing that it moved
    /// (a sign that the consumer is alive), never for computing with.
    pub fn cons_idx_raw<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        r.load(self.ring.word(off::CONS_IDX))
    }

    /// Descriptor slots free for new frames.
    pub fn free_slots<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        Ok(self.free(r)?.slots)
    }

    /// Data bytes free for new frames, padding and alignment included.
    pub fn free_bytes<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        Ok(self.free(r)?.bytes)
    }

    /// Whether at least `slots` descriptors and `bytes` data bytes are free, for waking a stopped
    /// queue with some hysteresis (use [`Ring::max_footprint`] to turn frames into bytes).
    pub fn has_room<R: Region + ?Sized>(
        &self,
        r: &R,
        slots: u32,
        bytes: u32,
    ) -> Result<bool, Error> {
        let free = self.free(r)?;
        Ok(free.slots >= slots && free.bytes >= bytes)
    }

    /// Whether [`Producer::reserve`] of a frame of `len` bytes would succeed now.
    pub fn fits<R: Region + ?Sized>(&self, r: &R, len: u32) -> Result<bool, Error> {
        self.check_len(len)?;
        let free = self.free(r)?;
        let (_, end) = self.ring.place(self.bytes, len);
        Ok(free.slots > 0 && end.wrapping_sub(self.bytes) <= free.bytes)
    }

    fn check_len(&self, len: u32) -> Result<(), Error> {
        if len == 0 || len > self.ring.max_frame() {
            return Err(Error::BadFrameLen(len));
        }
        Ok(())
    }

    /// Finds room for a frame of `len` bytes: `Ok(Some(offset))` is the region offset where the
    /// caller copies the frame before [`Producer::commit`], `Ok(None)` means the ring is full
    /// (no free descriptor or not enough data bytes). A later `reserve` replaces an uncommitted
    /// reservation.
    ///
    /// # Errors
    ///
    /// [`Error::BadFrameLen`] for a length of zero or above [`Ring::max_frame`];
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::{Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut tx = Producer::new(&g, 0, 1)?;
    /// tx.reset(&region)?;
    /// // Two frames of half the data area each fill it...
    /// let max = tx.ring().max_frame();
    /// for _ in 0..2 {
    ///     assert!(tx.reserve(&region, max)?.is_some());
    ///     tx.commit(&region, &Desc::default())?;
    /// }
    /// // ...until the consumer gives space back.
    /// assert_eq!(tx.reserve(&region, 1)?, None);
    /// assert_eq!(tx.reserve(&region, 0), Err(Error::BadFrameLen(0)));
    /// assert_eq!(tx.reserve(&region, max + 1), Err(Error::BadFrameLen(max + 1)));
    /// # Ok::<(), Error>(())
    /// ```
    /// [`Error::Corrupt`] if the consumer's published indices are impossible.
    pub fn reserve<R: Region + ?Sized>(&mut self, r: &R, len: u32) -> Result<Option<usize>, Error> {
        self.check_len(len)?;
        let (pos, end) = self.ring.place(self.bytes, len);
        // `end - bytes` is at most `2 * data_len - FRAME_ALIGN`, no wrap: `len <= data_len / 2`.
        let fits = |free: Free| free.slots > 0 && end.wrapping_sub(self.bytes) <= free.bytes;
        // The consumer only moves forward: what our last reading of it leaves free is free.
        if !self
            .free_from(self.seen_idx, self.seen_bytes)
            .is_ok_and(fits)
        {
            let cons_idx = r.load(self.ring.word(off::CONS_IDX))?;
            let cons_bytes = r.load(self.ring.word(off::CONS_BYTES))?;
            let free = self.free_from(cons_idx, cons_bytes)?;
            self.seen_idx = cons_idx;
            self.seen_bytes = cons_bytes;
            if !fits(free) {
                return Ok(None);
            }
        }
        self.reserved = Some(Reserved { pos, len, end });
        Ok(Some(self.ring.data(pos)))
    }

    /// Writes the descriptor of the frame reserved last, with `d`'s metadata (its `pos` and
    /// `len` are replaced by the reservation's), and takes the frame into the next
    /// [`Producer::publish`]. Returns the descriptor as written.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry, Region};
    /// use ivshmem_net_protocol::ring::{Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut tx = Producer::new(&g, 0, 1)?;
    /// tx.reset(&region)?;
    /// let at = tx.reserve(&region, 60)?.expect("room");
    /// region.write(at, &[0xab; 60])?;
    /// // The offload metadata is ours; position and length come from the reservation.
    /// let d = tx.commit(&region, &Desc { gso_size: 1400, len: 9999, ..Desc::default() })?;
    /// assert_eq!((d.pos, d.len, d.gso_size), (0, 60, 1400));
    /// assert_eq!(tx.index(), 1);
    /// assert_eq!(tx.published(), 0);
    /// assert_eq!(tx.commit(&region, &Desc::default()), Err(Error::NotReserved));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn commit<R: Region + ?Sized>(&mut self, r: &R, d: &Desc) -> Result<Desc, Error> {
        let res = self.reserved.ok_or(Error::NotReserved)?;
        let d = Desc {
            pos: res.pos,
            len: res.len,
            ..*d
        };
        // Plain write: ordered before the consumer's reads by the release in `publish`.
        r.write(self.ring.desc(self.idx), &d.encode())?;
        self.reserved = None;
        self.idx = self.idx.wrapping_add(1);
        self.bytes = res.end;
        Ok(d)
    }

    /// Hands every committed frame to the consumer. Returns `prod_idx` as published before, for
    /// [`Producer::kick_needed`].
    pub fn publish<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        // Release, bytes first: orders the frames' data and descriptors before both, and lets a
        // consumer that sees the new `prod_idx` see a `prod_bytes` covering its frames.
        r.store(self.ring.word(off::PROD_BYTES), self.bytes)?;
        r.store(self.ring.word(off::PROD_IDX), self.idx)?;
        let old = self.published_idx;
        self.published_idx = self.idx;
        self.published_bytes = self.bytes;
        Ok(old)
    }

    /// The consumer's `cons_event`: it wants a kick once `prod_idx` passes this.
    pub fn cons_event<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        r.load(self.ring.word(off::CONS_EVENT))
    }

    /// Whether the publish that moved `prod_idx` from `old` to [`Producer::published`] must kick
    /// the consumer. Puts a full barrier between that publish and reading `cons_event`, so that
    /// either we see the consumer's latest event or it sees our `prod_idx` when it looks again.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1)?, Consumer::new(&g, 0, 1)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// let mut send = |tx: &mut Producer| -> Result<bool, _> {
    ///     tx.reserve(&region, 60)?.expect("room");
    ///     tx.commit(&region, &Desc::default())?;
    ///     let old = tx.publish(&region)?;
    ///     tx.kick_needed(&region, old)
    /// };
    /// // The consumer asks for a kick when anything new arrives, and looks once more.
    /// rx.set_event(&region, rx.index())?;
    /// assert_eq!(rx.pending(&region)?, 0);
    /// assert!(send(&mut tx)?);
    /// // It has not asked again (it is busy receiving): no kick for the next frame.
    /// assert!(!send(&mut tx)?);
    /// assert_eq!(rx.pending(&region)?, 2);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn kick_needed<R: Region + ?Sized>(&self, r: &R, old: u32) -> Result<bool, Error> {
        r.fence();
        Ok(need_event(self.cons_event(r)?, self.published_idx, old))
    }

    /// Asks the consumer to notify us once `cons_idx` passes `idx` (TX completion), then puts a
    /// full barrier before the caller looks at the free space again, which it must before it
    /// relies on the notification.
    pub fn set_event<R: Region + ?Sized>(&mut self, r: &R, idx: u32) -> Result<(), Error> {
        r.store(self.ring.word(off::PROD_EVENT), idx)?;
        r.fence();
        Ok(())
    }
}

/// The receiving side of a ring.
///
/// [`Consumer::peek`] returns the next frame's checked descriptor, the caller copies the frame
/// from [`Consumer::frame_offset`], [`Consumer::pop`] moves past it, and
/// [`Consumer::publish`] gives every popped frame's space back to the producer at once.
///
/// # Examples
///
/// A producer that claims more than the ring holds is caught, not trusted:
///
/// ```
/// use ivshmem_net_protocol::layout::{Corrupt, Error, Geometry, Region};
/// use ivshmem_net_protocol::ring::{off, Consumer};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// let mut rx = Consumer::new(&g, 0, 1)?;
/// rx.reset(&region)?;
/// assert_eq!(rx.peek(&region)?, None);
/// region.store(rx.ring().base() + off::PROD_IDX, g.ring_slots + 1)?;
/// assert_eq!(rx.peek(&region), Err(Error::Corrupt(Corrupt::ProdIdx)));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    ring: Ring,
    /// Descriptors popped, published or not; our shadow of `cons_idx`.
    idx: u32,
    /// Data position after the last popped frame; our shadow of `cons_bytes`.
    bytes: u32,
    /// `cons_idx` as last published.
    published_idx: u32,
    /// The producer's `prod_idx` and `prod_bytes` as we last read and checked them. Frames
    /// below this index are taken from these copies without looking at the producer's words
    /// again, which it rewrites with every publication: reading them once per batch instead of
    /// once per frame keeps that cache line from bouncing between the two sides.
    seen_idx: u32,
    seen_bytes: u32,
}

impl Consumer {
    /// The consumer of the ring from peer `from` to peer `to`, with all indices zero. Call
    /// [`Consumer::reset`] to write them to the region.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Consumer, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut rx = Consumer::new(&g, 0, 1)?;
    /// rx.reset(&region)?;
    /// assert_eq!(rx.pending(&region)?, 0);
    /// // The two halves of one ring.
    /// assert_eq!(rx.ring(), Producer::new(&g, 0, 1)?.ring());
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn new(g: &Geometry, from: u32, to: u32) -> Result<Self, Error> {
        Ok(Consumer {
            ring: Ring::new(g, from, to)?,
            idx: 0,
            bytes: 0,
            published_idx: 0,
            seen_idx: 0,
            seen_bytes: 0,
        })
    }

    /// The ring this consumes from.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Zeroes the consumer's words in the region and our copies of them, when the link
    /// (re)starts.
    pub fn reset<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.reset_at(r, 0, 0)
    }

    /// Like [`Consumer::reset`] but starting at index `idx` and data position `bytes` (rounded
    /// down to [`FRAME_ALIGN`]); see [`Producer::reset_at`].
    #[doc(hidden)]
    pub fn reset_at<R: Region + ?Sized>(
        &mut self,
        r: &R,
        idx: u32,
        bytes: u32,
    ) -> Result<(), Error> {
        let bytes = bytes & !(FRAME_ALIGN - 1);
        self.idx = idx;
        self.bytes = bytes;
        self.published_idx = idx;
        self.seen_idx = idx;
        self.seen_bytes = bytes;
        r.store(self.ring.word(off::CONS_EVENT), idx)?;
        r.store(self.ring.word(off::CONS_BYTES), bytes)?;
        r.store(self.ring.word(off::CONS_IDX), idx)
    }

    /// Descriptors popped so far (our `cons_idx`, including what is not yet published).
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// Reads `prod_idx` once and returns how many descriptors it is ahead of us.
    fn available<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        // Acquire: pairs with the release in `Producer::publish`, so the descriptors and frames
        // below this index are written before we read them.
        let prod_idx = r.load(self.ring.word(off::PROD_IDX))?;
        let avail = prod_idx.wrapping_sub(self.idx);
        if avail > self.ring.slots {
            return Err(Error::Corrupt(Corrupt::ProdIdx));
        }
        Ok(avail)
    }

    /// The producer's `prod_idx` as it stands, unchecked: only for noticing that it moved
    /// (a sign that the producer is alive), never for computing with.
    pub fn prod_idx_raw<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        r.load(self.ring.word(off::PROD_IDX))
    }

    /// Frames published and not yet popped.
    pub fn pending<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        self.available(r)
    }

    /// The next frame's descriptor, read once and checked, or `Ok(None)` if the ring is empty.
    /// A descriptor that passes describes a frame inside this ring's data area, published by
    /// the producer and not overlapping any frame still unconsumed.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if `prod_idx`, `prod_bytes` or the descriptor are impossible; the ring
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Geometry, Region};
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut tx, mut rx) = (Producer::new(&g, 1, 0)?, Consumer::new(&g, 1, 0)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// for frame in [&b"first"[..], b"second"] {
    ///     let at = tx.reserve(&region, frame.len() as u32)?.expect("room");
    ///     region.write(at, frame)?;
    ///     tx.commit(&region, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    ///
    /// let d = rx.peek(&region)?.expect("two frames");
    /// assert_eq!(d.len, 5);
    /// // Peeking again returns the same frame: only `pop` moves on.
    /// assert_eq!(rx.peek(&region)?, Some(d));
    /// let mut head = [0u8; 3];
    /// rx.read_frame_part(&region, &d, 2, &mut head)?;
    /// assert_eq!(&head, b"rst");
    /// rx.pop(&d);
    /// let d = rx.peek(&region)?.expect("one more");
    /// let mut buf = [0u8; 16];
    /// assert_eq!(rx.read_frame(&region, &d, &mut buf)?, 6);
    /// assert_eq!(&buf[..6], b"second");
    /// rx.pop(&d);
    /// assert_eq!(rx.peek(&region)?, None);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    /// is then unusable until both sides reset it.
    pub fn peek<R: Region + ?Sized>(&mut self, r: &R) -> Result<Option<Desc>, Error> {
        if self.seen_idx == self.idx {
            // Everything we knew of is consumed: read the producer's words again.
            let avail = self.available(r)?;
            if avail == 0 {
                return Ok(None);
            }
            // Acquire, after `prod_idx`: at least the value published with it.
            let prod_bytes = r.load(self.ring.word(off::PROD_BYTES))?;
            if prod_bytes.wrapping_sub(self.bytes) > self.ring.data_len {
                return Err(Error::Corrupt(Corrupt::ProdBytes));
            }
            self.seen_idx = self.idx.wrapping_add(avail);
            self.seen_bytes = prod_bytes;
        }
        let mut raw = [0u8; DESC_LEN as usize];
        r.read(self.ring.desc(self.idx), &mut raw)?;
        let d = Desc::decode(&raw);
        // At most `data_len` (checked when read; `bytes` only moves towards `seen_bytes`).
        let published = self.seen_bytes.wrapping_sub(self.bytes);
        if d.len == 0 || d.len > self.ring.max_frame() {
            return Err(Error::Corrupt(Corrupt::DescLen));
        }
        let mask = self.ring.data_len - 1;
        // The frame starts where the last one ended, or at the next multiple of `data_len`
        // when the producer skipped the rest of the data area.
        let skip = self.ring.data_len - (self.bytes & mask);
        let start = d.pos.wrapping_sub(self.bytes);
        let offset = d.pos & mask;
        if (start != 0 && (start != skip || skip == self.ring.data_len))
            || d.len > self.ring.data_len - offset
        {
            return Err(Error::Corrupt(Corrupt::DescPos));
        }
        // No wrap: `start < data_len` and `len <= data_len / 2`, both at most 2^31.
        let end = align_frame(d.pos.wrapping_add(d.len));
        if end.wrapping_sub(self.bytes) > published {
            return Err(Error::Corrupt(Corrupt::DescPos));
        }
        Ok(Some(d))
    }

    /// Region offset of the frame of `d`, a descriptor [`Consumer::peek`] returned; the frame is
    /// `d.len` bytes long and inside the ring's data area.
    pub fn frame_offset(&self, d: &Desc) -> usize {
        self.ring.data(d.pos)
    }

    /// Copies the frame of `d`, a descriptor [`Consumer::peek`] returned, into the start of
    /// `buf` and returns its length; [`Error::BadFrameLen`] if `buf` is shorter than the frame.
    pub fn read_frame<R: Region + ?Sized>(
        &self,
        r: &R,
        d: &Desc,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let len = d.len as usize;
        let buf = buf.get_mut(..len).ok_or(Error::BadFrameLen(d.len))?;
        r.read(self.frame_offset(d), buf)?;
        Ok(len)
    }

    /// Copies `buf.len()` bytes of the frame of `d` (a descriptor [`Consumer::peek`] returned)
    /// from byte `at` of the frame into `buf`: one piece of a frame received into several
    /// buffers. [`Error::BadFrameLen`] if the piece does not lie within the frame.
    pub fn read_frame_part<R: Region + ?Sized>(
        &self,
        r: &R,
        d: &Desc,
        at: usize,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        match at.checked_add(buf.len()) {
            Some(end) if end <= d.len as usize => r.read(self.frame_offset(d) + at, buf),
            _ => Err(Error::BadFrameLen(d.len)),
        }
    }

    /// Moves past the frame of `d`, the descriptor [`Consumer::peek`] just returned. Its space
    /// goes back to the producer with the next [`Consumer::publish`], so the caller must be done
    /// with the frame's bytes by then.
    pub fn pop(&mut self, d: &Desc) {
        self.idx = self.idx.wrapping_add(1);
        self.bytes = align_frame(d.pos.wrapping_add(d.len));
    }

    /// Gives the space of every popped frame back to the producer. Returns `cons_idx` as
    /// published before, for [`Consumer::kick_needed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1)?, Consumer::new(&g, 0, 1)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// let max = tx.ring().max_frame();
    /// for _ in 0..2 {
    ///     tx.reserve(&region, max)?.expect("room");
    ///     tx.commit(&region, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    /// assert!(!tx.fits(&region, max)?);
    /// let d = rx.peek(&region)?.expect("a frame");
    /// rx.pop(&d);
    /// // Popped is not yet given back: the producer sees the space after `publish`.
    /// assert!(!tx.fits(&region, max)?);
    /// assert_eq!(rx.publish(&region)?, 0);
    /// assert!(tx.fits(&region, max)?);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn publish<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        // Release, bytes first: orders our reads of the popped frames and descriptors before the
        // producer can see their space as free.
        r.store(self.ring.word(off::CONS_BYTES), self.bytes)?;
        r.store(self.ring.word(off::CONS_IDX), self.idx)?;
        let old = self.published_idx;
        self.published_idx = self.idx;
        Ok(old)
    }

    /// Asks the producer to kick us once `prod_idx` passes `idx` (usually [`Consumer::index`]:
    /// "when there is anything new"), then puts a full barrier before the caller looks at the
    /// ring again with [`Consumer::pending`], which it must before it sleeps.
    pub fn set_event<R: Region + ?Sized>(&mut self, r: &R, idx: u32) -> Result<(), Error> {
        r.store(self.ring.word(off::CONS_EVENT), idx)?;
        r.fence();
        Ok(())
    }

    /// The producer's `prod_event`: it wants to hear once `cons_idx` passes this.
    pub fn prod_event<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        r.load(self.ring.word(off::PROD_EVENT))
    }

    /// Whether the publish that moved `cons_idx` from `old` to its current value must notify the
    /// producer (TX completion), with a full barrier between that publish and reading
    /// `prod_event`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1)?, Consumer::new(&g, 0, 1)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// for _ in 0..2 {
    ///     tx.reserve(&region, 60)?.expect("room");
    ///     tx.commit(&region, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    /// // The producer wants to hear once the consumer is past frame 1 (the second one).
    /// tx.set_event(&region, 1)?;
    /// let mut consume_one = |rx: &mut Consumer| -> Result<bool, _> {
    ///     let d = rx.peek(&region)?.expect("a frame");
    ///     rx.pop(&d);
    ///     let old = rx.publish(&region)?;
    ///     rx.kick_needed(&region, old)
    /// };
    /// assert!(!consume_one(&mut rx)?);
    /// assert!(consume_one(&mut rx)?);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn kick_needed<R: Region + ?Sized>(&self, r: &R, old: u32) -> Result<bool, Error> {
        r.fence();
        Ok(need_event(self.prod_event(r)?, self.published_idx, old))
    }
}
