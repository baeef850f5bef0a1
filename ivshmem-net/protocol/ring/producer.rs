// SPDX-License-Identifier: GPL-2.0

//! The sending side of a ring: [`Producer`].
//!
//! The producer writes the descriptor slots and data bytes it owns (see *Ownership* in
//! [`super`]) with plain copies, and of the ring header only its own words `prod_idx`,
//! `prod_bytes` and `prod_event`. Of the consumer's words it reads `cons_idx`, `cons_bytes` and
//! `cons_event`, each once into a local that is checked before use.

use super::super::layout::{Corrupt, Error, Geometry, Region};
use super::{need_event, off, Desc, Ring, FRAME_ALIGN};

/// A reservation made by [`Producer::reserve`] and not yet committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    pos: u32,
    len: u32,
    end: u32,
}

/// How many [`Mark`]s a producer keeps.
const MARKS: usize = 32;
/// A mark is taken each time a frame's end crosses a multiple of the data area divided by this:
/// at most `MARK_SPAN + 1` marks fall in what can be in flight, well below [`MARKS`].
const MARK_SPAN: u32 = 16;

/// Where the data position stood after a committed frame: once the consumer's `cons_idx`
/// reaches `idx`, its `cons_bytes` is `bytes`. Taken sparsely ([`MARK_SPAN`]), for
/// [`Producer::wake_event`]; `valid` is false for the empty marks of a fresh ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    idx: u32,
    bytes: u32,
    valid: bool,
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
    /// The last [`MARKS`] marks, the newest at `next_mark - 1` (modulo [`MARKS`]).
    marks: [Mark; MARKS],
    next_mark: usize,
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
            marks: [Mark::default(); MARKS],
            next_mark: 0,
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
        self.marks = [Mark::default(); MARKS];
        self.next_mark = 0;
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
    /// [`Error::Corrupt`] if the consumer's published indices are impossible.
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
        // A power of two (`data_len` is one, at least `MIN_DATA`), at least 8.
        let span = self.ring.data_len / MARK_SPAN;
        if res.end / span != self.bytes / span {
            if let Some(m) = self.marks.get_mut(self.next_mark % MARKS) {
                *m = Mark {
                    idx: self.idx,
                    bytes: res.end,
                    valid: true,
                };
            }
            self.next_mark = (self.next_mark + 1) % MARKS;
        }
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

    /// Where a producer that waits for `slots` free descriptors and `bytes` free data bytes
    /// asks to be woken ([`Producer::set_event`]), the consumer being at `cons_idx` and
    /// `cons_bytes` (as checked by the caller): the index whose consumption frees both, so
    /// that the notification never comes before there is room. `None` if there is room
    /// already, or if no amount of consuming can make that much room.
    ///
    /// Descriptors free up one per frame; data bytes by each frame's footprint, which differ:
    /// the index of the last frame that must go for the bytes is found from the marks taken at
    /// commit, a little late at worst (by less than a sixteenth of the data area and one
    /// frame), never early. Frames committed but not yet published count as in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Desc, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut tx = Producer::new(&g, 0, 1)?;
    /// tx.reset(&region)?;
    /// // Eight small frames, then one of half the data area.
    /// for len in [64, 64, 64, 64, 64, 64, 64, 64, tx.ring().max_frame()] {
    ///     tx.reserve(&region, len)?.expect("room");
    ///     tx.commit(&region, &Desc::default())?;
    /// }
    /// // A quarter of the slots come back with the first frame, but three quarters of the
    /// // data only once the big one went: that is the frame to be woken after (index 8).
    /// let (slots, data) = (g.ring_slots, g.ring_data);
    /// assert_eq!(tx.wake_event(0, 0, slots - 8, 0), Some(0));
    /// assert_eq!(tx.wake_event(0, 0, 1, data * 3 / 4), Some(8));
    /// assert_eq!(tx.wake_event(0, 0, 1, 1), None);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn wake_event(
        &self,
        cons_idx: u32,
        cons_bytes: u32,
        slots: u32,
        bytes: u32,
    ) -> Option<u32> {
        let (ring_slots, data_len) = (self.ring.slots, self.ring.data_len);
        if slots > ring_slots || bytes > data_len {
            return None;
        }
        // In flight, committed frames included (the caller checked these against the ring).
        let used = self.idx.wrapping_sub(cons_idx);
        let used_bytes = self.bytes.wrapping_sub(cons_bytes);
        // Frames to consume for the slots, and bytes the consumer must move past.
        let for_slots = used.saturating_sub(ring_slots - slots);
        let for_bytes = used_bytes.saturating_sub(data_len - bytes);
        if for_slots == 0 && for_bytes == 0 {
            return None;
        }
        // The earliest mark past which enough bytes are free; all of it in flight if none.
        let frames_for_bytes = if for_bytes == 0 {
            0
        } else {
            self.marks
                .iter()
                .filter(|m| m.valid)
                .map(|m| {
                    (
                        m.idx.wrapping_sub(cons_idx),
                        m.bytes.wrapping_sub(cons_bytes),
                    )
                })
                .filter(|&(k, b)| k != 0 && k <= used && b <= used_bytes && b >= for_bytes)
                .map(|(k, _)| k)
                .min()
                .unwrap_or(used)
        };
        let frames = for_slots.max(frames_for_bytes);
        // The consumer notifies when its index moves past the event: after `frames` frames.
        Some(cons_idx.wrapping_add(frames).wrapping_sub(1))
    }

    /// Asks the consumer to notify us once `slots` descriptors and `bytes` data bytes are free
    /// (at the index [`Producer::wake_event`] finds), then looks again. Returns whether that
    /// much is free now: if so, no notification may come, so the caller must not wait for one.
    /// A consumer that got past the event before it could see it made the room by doing so,
    /// and the second look sees it; one that gets there later sees the event and notifies.
    pub fn arm_wake<R: Region + ?Sized>(
        &mut self,
        r: &R,
        slots: u32,
        bytes: u32,
    ) -> Result<bool, Error> {
        let cons_idx = r.load(self.ring.word(off::CONS_IDX))?;
        let cons_bytes = r.load(self.ring.word(off::CONS_BYTES))?;
        // Checks them: `wake_event` relies on the consumer being inside the ring.
        let free = self.free_from(cons_idx, cons_bytes)?;
        if free.slots >= slots && free.bytes >= bytes {
            return Ok(true);
        }
        let Some(event) = self.wake_event(cons_idx, cons_bytes, slots, bytes) else {
            return Ok(false);
        };
        self.set_event(r, event)?;
        self.has_room(r, slots, bytes)
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
