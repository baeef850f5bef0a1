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
//!
//! [`Region`]: super::layout::Region
//! [`Region::fence`]: super::layout::Region::fence

use super::layout::{Error, Geometry, DESC_LEN, RING_HDR_LEN};

mod consumer;
mod producer;

pub use consumer::Consumer;
pub use producer::Producer;

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
