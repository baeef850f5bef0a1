// SPDX-License-Identifier: GPL-2.0

//! The sending side of a ring: [`Producer`].
//!
//! The producer writes the descriptor slots it owns and, through its [`Pool`], its own pool's
//! bytes (see *Ownership* in [`super`]), and of the ring header only its own words `prod_idx`
//! and `prod_event`. Of the consumer's words it reads `cons_idx` and `cons_event`, each once
//! into a local that is checked before use.

use super::super::layout::{Corrupt, Error, Geometry, Region, RING_SLOTS};
use super::{need_event, off, Desc, Pool, Ring, Span};

/// A reservation made by [`Producer::reserve`] and not yet committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reserved {
    /// Pool offset of the frame's first byte, and the pool serial its bytes start at (the
    /// pool's head when reserved: with a skipped partition tail, that tail's first byte).
    pos: u32,
    serial: u64,
    len: u32,
    /// The pool bytes the frame takes ([`Pool::needs`]).
    need: u32,
    /// Region offset of the pool (partition) it was reserved in.
    pool: usize,
}

/// The sending side of a ring.
///
/// Frames go in three steps: [`Producer::reserve`] finds room (a descriptor slot in the ring,
/// bytes in the [`Pool`]) and says where to copy the frame, [`Producer::commit`] takes the
/// bytes from the pool and writes the descriptor, and [`Producer::publish`] hands every
/// committed frame to the consumer at once. [`Producer::collect`] reads how far the consumer
/// got, and [`Pool::reclaim`] then takes the bytes back.
///
/// # Examples
///
/// One frame from peer 0 to peer 1 and back out:
///
/// ```
/// use ivshmem_net_protocol::layout::{Geometry, Region};
/// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// // Each side resets its half before the link comes up.
/// let mut pool = Pool::new(&g, 0)?;
/// let mut tx = Producer::new(&g, 0, 1, 0)?;
/// let mut rx = Consumer::new(&g, 0, 1, 0)?;
/// tx.reset(&region)?;
/// rx.reset(&region)?;
///
/// let frame = b"hello, peer";
/// let span = tx.reserve(&region, &pool, frame.len() as u32)?.expect("an empty ring has room");
/// span.write(&region, 0, frame)?;
/// tx.commit(&region, &mut pool, &Desc::default())?;
/// tx.publish(&region)?;
/// assert_eq!(tx.in_flight(&region)?, 1);
///
/// let d = rx.peek(&region)?.expect("one frame published");
/// let mut buf = [0u8; 64];
/// let n = rx.read_frame(&region, &d, &mut buf)?;
/// assert_eq!(&buf[..n], frame);
/// rx.pop();
/// rx.publish(&region)?;
/// assert_eq!(tx.in_flight(&region)?, 0);
/// assert_eq!(tx.collect(&region)?, 1);
/// assert_eq!(pool.reclaim([&tx]), 64);
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
///
/// # Storage
///
/// A producer keeps the low 32 bits of the pool serial of every frame in flight, one `u32` per
/// descriptor slot, in `S`: a `[u32; RING_SLOTS]` inside it by default (2 KiB), or storage of
/// the caller's ([`Producer::with_storage`]; the kernel driver keeps it on the heap, off its
/// stack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer<S = [u32; RING_SLOTS as usize]> {
    ring: Ring,
    /// Descriptors committed, published or not; our shadow of `prod_idx`.
    idx: u32,
    /// `prod_idx` as last published.
    published_idx: u32,
    /// The consumer's `cons_idx` as [`Producer::collect`] last read and checked it: never
    /// behind where it was before, never ahead of `published_idx`.
    cons: u32,
    reserved: Option<Reserved>,
    /// The pool serial of the first byte of the frame of each index in `[cons, idx)`, in slot
    /// `index & (slots - 1)`: the frames in flight, in increasing serial order. Only the low 32
    /// bits are kept (2 KiB rather than 4 for 512 slots: the driver keeps one per peer);
    /// [`Producer::start`] puts the rest back from `oldest`. At least `slots` long.
    starts: S,
    /// The whole serial of the frame at index `cons`, when `cons != idx`. Every frame in
    /// flight starts at most a pool length (below 2^31) after it.
    oldest: u64,
}

impl Producer {
    /// The producer of ring `queue` from peer `from` to peer `to`, with all indices zero. Call
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
    /// let mut tx = Producer::new(&g, 0, 1, 0)?;
    /// tx.reset(&region)?;
    /// assert_eq!(tx.free_slots(), g.ring_slots);
    /// assert_eq!(tx.ring().pool(), g.pool_offset(0)?);
    /// // There is no ring from a peer to itself, nor to a peer the region has no room for.
    /// assert_eq!(Producer::new(&g, 1, 1, 0), Err(Error::OutOfBounds));
    /// assert_eq!(Producer::new(&g, 0, 2, 0), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(g: &Geometry, from: u32, to: u32, queue: u32) -> Result<Self, Error> {
        Self::with_storage(g, from, to, queue, [0; RING_SLOTS as usize])
    }
}

impl<S: AsRef<[u32]> + AsMut<[u32]>> Producer<S> {
    /// Like [`Producer::new`], keeping the pool serials of the frames in flight in `starts`,
    /// which must hold at least `ring_slots` of them ([`Error::GeometryMismatch`] otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Producer;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let tx = Producer::with_storage(&g, 0, 1, 0, vec![0u32; g.ring_slots as usize])?;
    /// assert_eq!(tx.free_slots(), g.ring_slots);
    /// let short = vec![0u32; g.ring_slots as usize - 1];
    /// assert_eq!(Producer::with_storage(&g, 0, 1, 0, short).err(), Some(Error::GeometryMismatch));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with_storage(
        g: &Geometry,
        from: u32,
        to: u32,
        queue: u32,
        starts: S,
    ) -> Result<Self, Error> {
        let ring = Ring::new(g, from, to, queue)?;
        if starts.as_ref().len() < ring.slots() as usize {
            return Err(Error::GeometryMismatch);
        }
        Ok(Producer {
            ring,
            idx: 0,
            published_idx: 0,
            cons: 0,
            reserved: None,
            starts,
            oldest: 0,
        })
    }

    /// The ring this produces into.
    #[inline]
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Zeroes the producer's words in the region and our copies of them, when the link
    /// (re)starts, and drops every frame in flight: their pool bytes come back with the next
    /// [`Pool::reclaim`]. The consumer must reset its side before either uses the ring.
    pub fn reset<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.reset_at(r, 0)
    }

    /// Like [`Producer::reset`] but starting at index `idx`, so tests can start near the wrap
    /// at 2^32. The consumer must start at the same value.
    #[doc(hidden)]
    pub fn reset_at<R: Region + ?Sized>(&mut self, r: &R, idx: u32) -> Result<(), Error> {
        self.idx = idx;
        self.published_idx = idx;
        self.cons = idx;
        self.reserved = None;
        r.store(self.ring.word(off::PROD_EVENT), idx)?;
        r.store(self.ring.word(off::PROD_IDX), idx)
    }

    /// Drops every frame in flight (and a reservation) without touching the region, when the
    /// link goes down and the consumer will not give them back (it left, restarted, or broke
    /// the ring): their pool bytes come back with the next [`Pool::reclaim`]. The ring must be
    /// [`Producer::reset`] before it carries frames again.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut pool, mut tx) = (Pool::new(&g, 0)?, Producer::new(&g, 0, 1, 0)?);
    /// tx.reset(&region)?;
    /// tx.reserve(&region, &pool, 1500)?.expect("room");
    /// tx.commit(&region, &mut pool, &Desc::default())?;
    /// tx.publish(&region)?;
    /// // The peer left without consuming: its frame must not hold our pool.
    /// tx.abandon();
    /// assert_eq!((tx.oldest(), pool.reclaim([&tx])), (None, 1536));
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn abandon(&mut self) {
        self.cons = self.idx;
        self.published_idx = self.idx;
        self.reserved = None;
    }

    /// Descriptors committed so far (our `prod_idx`, including what is not yet published).
    #[inline]
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// `prod_idx` as last published.
    #[inline]
    pub fn published(&self) -> u32 {
        self.published_idx
    }

    /// The consumer's `cons_idx` as last collected.
    #[inline]
    pub fn consumed(&self) -> u32 {
        self.cons
    }

    /// Checks a `cons_idx` read from the ring: it may only have moved forward from where we
    /// last saw it, up to what we published.
    #[inline]
    fn check_cons(&self, cons_idx: u32) -> Result<u32, Error> {
        if cons_idx.wrapping_sub(self.cons) > self.published_idx.wrapping_sub(self.cons) {
            return Err(Error::Corrupt(Corrupt::ConsIdx));
        }
        Ok(cons_idx)
    }

    /// Reads the consumer's `cons_idx` once, checks it, and takes the frames before it out of
    /// flight; returns how many. Call [`Pool::reclaim`] afterwards to take their bytes back.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] (`ConsIdx`) if the consumer claims to be behind where it was, or
    /// past what we published: a hostile consumer cannot free bytes of frames it has not been
    /// given. Nothing changes then.
    #[inline]
    pub fn collect<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        // Acquire: pairs with the release in `Consumer::publish`, so the consumer's reads of the
        // frames it gave back happen before we reuse their bytes.
        let cons_idx = self.check_cons(r.load(self.ring.word(off::CONS_IDX))?)?;
        let n = cons_idx.wrapping_sub(self.cons);
        if n != 0 && cons_idx != self.idx {
            // Computed before `cons` moves: relative to the old oldest frame.
            self.oldest = self.start(cons_idx);
        }
        self.cons = cons_idx;
        Ok(n)
    }

    /// The pool serial of the oldest frame in flight on this ring (committed and not yet
    /// collected as consumed), if any.
    #[inline]
    pub fn oldest(&self) -> Option<u64> {
        (self.cons != self.idx).then_some(self.oldest)
    }

    /// The serial of the frame of index `idx`, one in `[cons, idx)`: its low 32 bits are
    /// stored, and it is at most a pool length after `oldest`.
    #[inline]
    fn start(&self, idx: u32) -> u64 {
        let slot = (idx & (self.ring.slots() - 1)) as usize;
        // `starts` holds at least `slots` (checked in `with_storage`): always `Some`.
        let low = self.starts.as_ref().get(slot).copied().unwrap_or(0);
        self.oldest + u64::from(low.wrapping_sub(self.oldest as u32))
    }

    /// Frames published and not yet consumed: `prod_idx - cons_idx`, with the consumer's
    /// `cons_idx` read once and checked like in [`Producer::collect`] (but not collected).
    #[inline]
    pub fn in_flight<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        let cons_idx = self.check_cons(r.load(self.ring.word(off::CONS_IDX))?)?;
        Ok(self.published_idx.wrapping_sub(cons_idx))
    }

    /// The consumer's `cons_idx` as it stands, unchecked: only for noticing that it moved
    /// (a sign that the consumer is alive), never for computing with.
    pub fn cons_idx_raw<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        r.load(self.ring.word(off::CONS_IDX))
    }

    /// Descriptor slots free for new frames as of the last [`Producer::collect`].
    #[inline]
    pub fn free_slots(&self) -> u32 {
        // `idx - cons <= slots`: `reserve` never hands out more.
        self.ring.slots() - self.idx.wrapping_sub(self.cons)
    }

    #[inline]
    fn check_len(&self, len: u32) -> Result<(), Error> {
        if len == 0 || len > self.ring.max_frame() {
            return Err(Error::BadFrameLen(len));
        }
        Ok(())
    }

    /// Finds room for a frame of `len` bytes: `Ok(Some(span))` is where the caller copies the
    /// frame (one or two pieces, [`Span::write`]) before [`Producer::commit`], `Ok(None)` means
    /// no room: no free descriptor slot (after reading `cons_idx` again), or not enough free
    /// bytes in `pool` (call [`Pool::reclaim`] after collecting every ring sharing it, and
    /// retry). A later `reserve` replaces an uncommitted reservation. `pool` is this ring's
    /// sender's whole pool or one partition of it ([`Pool::partition`]).
    ///
    /// # Errors
    ///
    /// [`Error::BadFrameLen`] for a length of zero or above [`Ring::max_frame`];
    /// [`Error::GeometryMismatch`] for a pool (partition) that is not inside this ring's
    /// sender's pool;
    /// [`Error::Corrupt`] if the consumer's `cons_idx` is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::{Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 0)?;
    /// let mut tx = Producer::new(&g, 0, 1, 0)?;
    /// tx.reset(&region)?;
    /// // Largest frames fill the pool...
    /// let max = tx.ring().max_frame();
    /// for _ in 0..pool.len() / max {
    ///     assert!(tx.reserve(&region, &pool, max)?.is_some());
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// // ...until the consumer gives bytes back.
    /// assert_eq!(tx.reserve(&region, &pool, pool.free() + 1)?, None);
    /// assert_eq!(tx.reserve(&region, &pool, 0), Err(Error::BadFrameLen(0)));
    /// assert_eq!(tx.reserve(&region, &pool, max + 1), Err(Error::BadFrameLen(max + 1)));
    /// assert_eq!(tx.reserve(&region, &Pool::new(&g, 1)?, 1), Err(Error::GeometryMismatch));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn reserve<R: Region + ?Sized>(
        &mut self,
        r: &R,
        pool: &Pool,
        len: u32,
    ) -> Result<Option<Span>, Error> {
        self.check_len(len)?;
        // The partition lies where it says in the sender's pool (whole pools: offset 0).
        let pool_end = u64::from(pool.offset()) + u64::from(pool.len());
        if pool.base().checked_sub(pool.offset() as usize) != Some(self.ring.pool())
            || pool_end > u64::from(self.ring.pool_len())
            || (pool.wraps() && pool.len() != self.ring.pool_len())
            || len > pool.max_frame()
        {
            return Err(Error::GeometryMismatch);
        }
        // The consumer only moves forward: read `cons_idx` only when our last reading of it
        // leaves no slot.
        if self.free_slots() == 0 {
            self.collect(r)?;
            if self.free_slots() == 0 {
                return Ok(None);
            }
        }
        let (pos, need) = pool.place(len);
        if need > pool.free() {
            return Ok(None);
        }
        let span = self.ring.span(pos, len)?;
        self.reserved = Some(Reserved {
            pos,
            serial: pool.head(),
            len,
            need,
            pool: pool.base(),
        });
        Ok(Some(span))
    }

    /// Takes the bytes of the frame reserved last from `pool`, writes its descriptor with
    /// `d`'s metadata (its `pos` and `len` are replaced by the reservation's), and takes the
    /// frame into the next [`Producer::publish`]. Returns the descriptor as written.
    ///
    /// # Errors
    ///
    /// [`Error::NotReserved`] without a reservation, or if `pool` handed out bytes since (to
    /// another ring): the reservation is dropped and the frame must be reserved again.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry, Region};
    /// use ivshmem_net_protocol::ring::{Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 0)?;
    /// let mut tx = Producer::new(&g, 0, 1, 0)?;
    /// tx.reset(&region)?;
    /// let span = tx.reserve(&region, &pool, 60)?.expect("room");
    /// span.write(&region, 0, &[0xab; 60])?;
    /// // The offload metadata is ours; position and length come from the reservation.
    /// let d = tx.commit(&region, &mut pool, &Desc { gso_size: 1400, len: 9999, ..Desc::default() })?;
    /// assert_eq!((d.pos, d.len, d.gso_size), (0, 60, 1400));
    /// assert_eq!((tx.index(), tx.published(), pool.used()), (1, 0, 64));
    /// assert_eq!(tx.commit(&region, &mut pool, &Desc::default()), Err(Error::NotReserved));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn commit<R: Region + ?Sized>(
        &mut self,
        r: &R,
        pool: &mut Pool,
        d: &Desc,
    ) -> Result<Desc, Error> {
        let res = self.reserved.take().ok_or(Error::NotReserved)?;
        if res.serial != pool.head() || pool.base() != res.pool {
            return Err(Error::NotReserved);
        }
        let d = Desc {
            pos: res.pos,
            len: res.len,
            ..*d
        };
        // Plain write: ordered before the consumer's reads by the release in `publish`.
        r.write(self.ring.desc(self.idx), &d.encode())?;
        pool.take(res.need);
        if self.cons == self.idx {
            self.oldest = res.serial;
        }
        let slot = (self.idx & (self.ring.slots() - 1)) as usize;
        if let Some(s) = self.starts.as_mut().get_mut(slot) {
            // The low 32 bits; see `start`.
            *s = res.serial as u32;
        }
        self.idx = self.idx.wrapping_add(1);
        Ok(d)
    }

    /// Hands every committed frame to the consumer. Returns `prod_idx` as published before, for
    /// [`Producer::kick_needed`].
    #[inline]
    pub fn publish<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        // Release: orders the frames' bytes and descriptors before it.
        r.store(self.ring.word(off::PROD_IDX), self.idx)?;
        let old = self.published_idx;
        self.published_idx = self.idx;
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
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 0)?;
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1, 0)?, Consumer::new(&g, 0, 1, 0)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// let mut send = |tx: &mut Producer| -> Result<bool, _> {
    ///     tx.reserve(&region, &pool, 60)?.expect("room");
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
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

    /// The index past which the consumer must get (as the `prod_event` to ask for) for this
    /// ring to leave `slots` descriptor slots free and hold no pool byte before serial
    /// `target` ([`Pool::wake_target`]), judged from the last [`Producer::collect`]: `None` if
    /// it does so already, or if no amount of consuming can free that many slots.
    ///
    /// The consumer notifies when its `cons_idx` passes the event, i.e. once frame
    /// `event` is consumed: never before this ring holds back nothing of what was asked. With
    /// several rings sharing a pool each is armed for its own part; the last one to get there
    /// notifies when there is room.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let (mut pool, mut tx) = (Pool::new(&g, 0)?, Producer::new(&g, 0, 1, 0)?);
    /// tx.reset(&region)?;
    /// // Eight small frames, then largest frames until the pool is full.
    /// for _ in 0..8 {
    ///     tx.reserve(&region, &pool, 64)?.expect("room");
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// let max = tx.ring().max_frame();
    /// while tx.reserve(&region, &pool, max)?.is_some() {
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// // A largest frame fits again only once the first large one (index 8) is consumed.
    /// let target = pool.wake_target(max);
    /// assert_eq!(tx.wake_event(0, target), Some(8));
    /// // Slots: a quarter of them come back with the first frame.
    /// assert_eq!(tx.wake_event(g.ring_slots - tx.index() + 1, pool.tail()), Some(0));
    /// assert_eq!(tx.wake_event(0, pool.tail()), None);
    /// assert_eq!(tx.wake_event(g.ring_slots + 1, pool.tail()), None);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn wake_event(&self, slots: u32, target: u64) -> Option<u32> {
        let ring_slots = self.ring.slots();
        if slots > ring_slots {
            return None;
        }
        let used = self.idx.wrapping_sub(self.cons);
        // Frames to consume for the slots.
        let for_slots = used.saturating_sub(ring_slots - slots);
        // Frames to consume until this ring's oldest frame starts at `target` or later: the
        // starts are increasing, so the first index at or past it is a binary search.
        let (mut lo, mut hi) = (0u32, used);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.start(self.cons.wrapping_add(mid)) >= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let frames = for_slots.max(lo);
        // The consumer notifies when its index moves past the event: after `frames` frames.
        (frames != 0).then(|| self.cons.wrapping_add(frames).wrapping_sub(1))
    }

    /// Asks the consumer to notify us once this ring leaves `slots` slots free and holds no
    /// pool byte before `target` (at the index [`Producer::wake_event`] finds), then collects
    /// again. Returns whether the ring holds back nothing now: if so, no notification may
    /// come, so the caller must not wait for one from this ring. A consumer that got past the
    /// event before it could see it did so by consuming, and the second look sees it; one that
    /// gets there later sees the event and notifies.
    ///
    /// With several rings sharing the pool, arm each of them (`slots` 0 for those that did not
    /// run out of slots), then [`Pool::reclaim`]: there is room if the pool has `bytes` free.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 0)?;
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1, 0)?, Consumer::new(&g, 0, 1, 0)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// let max = tx.ring().max_frame();
    /// while tx.reserve(&region, &pool, max)?.is_some() {
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    /// // Full: wait for room for one more.
    /// let target = pool.wake_target(max);
    /// assert!(!tx.arm_wake(&region, 0, target)?);
    /// // The consumer takes the first frame and is asked to notify.
    /// rx.peek(&region)?.expect("a frame");
    /// rx.pop();
    /// let old = rx.publish(&region)?;
    /// assert!(rx.kick_needed(&region, old)?);
    /// tx.collect(&region)?;
    /// pool.reclaim([&tx]);
    /// assert!(pool.fits(max));
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn arm_wake<R: Region + ?Sized>(
        &mut self,
        r: &R,
        slots: u32,
        target: u64,
    ) -> Result<bool, Error> {
        self.collect(r)?;
        let Some(event) = self.wake_event(slots, target) else {
            return Ok(true);
        };
        self.set_event(r, event)?;
        self.collect(r)?;
        Ok(self.wake_event(slots, target).is_none())
    }

    /// Asks the consumer to notify us once `cons_idx` passes `idx` (TX completion), then puts a
    /// full barrier before the caller looks at the consumer again, which it must before it
    /// relies on the notification.
    pub fn set_event<R: Region + ?Sized>(&mut self, r: &R, idx: u32) -> Result<(), Error> {
        r.store(self.ring.word(off::PROD_EVENT), idx)?;
        r.fence();
        Ok(())
    }
}
