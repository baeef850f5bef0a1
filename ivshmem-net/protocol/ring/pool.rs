// SPDX-License-Identifier: GPL-2.0

//! A sender's allocator over its transmit pool, or over one partition of it: [`Pool`].
//!
//! The pool is handed out as one circular byte stream (see *Ownership* in [`super`]). Every
//! byte ever handed out has a *serial*, its position in that stream counted from the pool's
//! reset (a `u64`: at 100 Gbit/s it wraps after 46 years). A frame of `len` bytes takes the
//! serials `[head, head + footprint(len))`; the tail is the serial of the oldest byte still in
//! flight. Each [`Producer`] keeps the first serial of every frame it has in flight, so the
//! oldest byte in flight over all rings sharing the pool is the smallest of their oldest
//! frames ([`Pool::reclaim`]). None of this state is in shared memory.
//!
//! # Partitions
//!
//! With several transmit queues, each queue has an allocator over its own part of the pool
//! ([`Pool::partition`]): `count` equal parts, each a multiple of [`FRAME_ALIGN`]. A receiver
//! wraps a frame only at the end of the whole pool, so a frame never wraps inside a
//! partition: one that would run past the partition's end starts at the partition's start
//! instead, and the bytes it skipped are handed out with it (they come back when it does). A
//! partition is at least twice the footprint of a largest frame ([`Pool::max_partitions`]), so
//! a drained partition always takes one. With `count == 1` the partition is the whole pool,
//! exactly [`Pool::new`], and frames wrap at its end as before.

use super::super::layout::{Error, Geometry, MAX_QUEUES};
use super::{footprint, Producer, Ring, FRAME_ALIGN};

/// A sender's private allocator over its transmit pool or one partition of it, shared by its
/// rings of one transmit queue.
///
/// # Invariants
///
/// `tail <= head <= tail + len`, `head_pos == head % len` (kept without a division), and
/// `len` is a nonzero multiple of [`super::FRAME_ALIGN`]. `[offset, offset + len)` lies in the
/// sender's pool, which starts at region offset `base - offset`. Unless `wraps`, `len` is at
/// least twice the footprint of [`Pool::max_frame`].
///
/// # Examples
///
/// Frames to two peers from one pool; the bytes come back once both consumers are past them:
///
/// ```
/// use ivshmem_net_protocol::layout::{Geometry, Region};
/// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 3)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// let mut pool = Pool::new(&g, 0)?;
/// let mut to1 = Producer::new(&g, 0, 1, 0)?;
/// let mut to2 = Producer::new(&g, 0, 2, 0)?;
/// let mut rx1 = Consumer::new(&g, 0, 1, 0)?;
/// for side in [&mut to1, &mut to2] {
///     side.reset(&region)?;
/// }
/// rx1.reset(&region)?;
/// for p in [&mut to1, &mut to2] {
///     let span = p.reserve(&region, &pool, 1000)?.expect("room");
///     span.write(&region, 0, &[7; 1000])?;
///     p.commit(&region, &mut pool, &Desc::default())?;
///     p.publish(&region)?;
/// }
/// assert_eq!(pool.used(), 2 * 1024);
/// // Peer 1 consumes its frame: the oldest frame in flight is gone, its bytes come back.
/// let d = rx1.peek(&region)?.expect("a frame");
/// rx1.pop();
/// rx1.publish(&region)?;
/// to1.collect(&region)?;
/// to2.collect(&region)?;
/// assert_eq!(pool.reclaim([&to1, &to2]), 1024);
/// assert_eq!(pool.used(), 1024);
/// // Peer 2 never consumes: its link goes down and the reset drops what it held.
/// to2.reset(&region)?;
/// assert_eq!(pool.reclaim([&to1, &to2]), 1024);
/// assert_eq!(pool.free(), pool.len());
/// # let _ = d;
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Region offset of the partition (of the whole pool when `wraps`).
    base: usize,
    /// Pool offset of the partition.
    offset: u32,
    len: u32,
    /// Whether frames may run past the end and on from the start (a whole pool); a partition
    /// of several never wraps a frame.
    wraps: bool,
    /// The largest frame of the pool's rings ([`Ring::max_frame`]).
    max_frame: u32,
    head_pos: u32,
    head: u64,
    tail: u64,
}

impl Pool {
    /// The allocator over peer `sender`'s whole pool (one transmit queue), empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Pool;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let pool = Pool::new(&g, 1)?;
    /// assert_eq!((pool.base(), pool.len(), pool.free()), (g.pool_offset(1)?, g.pool_len, g.pool_len));
    /// assert_eq!(Pool::new(&g, 2), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(g: &Geometry, sender: u32) -> Result<Self, Error> {
        let ring = Self::ring_of(g, sender)?;
        // INVARIANT: `Ring::new` checked the pool; empty; the whole pool, so it may wrap.
        Ok(Pool {
            base: ring.pool(),
            offset: 0,
            len: ring.pool_len(),
            wraps: true,
            max_frame: ring.max_frame(),
            head_pos: 0,
            head: 0,
            tail: 0,
        })
    }

    /// A ring whose sender's pool is `sender`'s (any ring from `sender` has it), which checked
    /// the pool's place in the region.
    fn ring_of(g: &Geometry, sender: u32) -> Result<Ring, Error> {
        if sender >= g.max_peers {
            return Err(Error::OutOfBounds);
        }
        let other = if sender == 0 { 1 } else { 0 };
        Ring::new(g, sender, other, 0)
    }

    /// Bytes of each of `count` partitions of a pool of `pool_len` bytes, rounded down to
    /// [`FRAME_ALIGN`] (the rest of the pool, less than `count * FRAME_ALIGN`, is unused).
    fn partition_len(pool_len: u32, count: u32) -> u32 {
        pool_len.checked_div(count).unwrap_or(0) & !(FRAME_ALIGN - 1)
    }

    /// The most partitions a pool of a region of geometry `g` can be split into ([`Pool::partition`]): the largest count up to `g.queues` (and
    /// [`MAX_QUEUES`]) whose partitions each hold twice the footprint of a largest frame, at
    /// least 1 (the whole pool). A driver caps its transmit queue count at this.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::Pool;
    ///
    /// // 16 MiB, 8 peers: 1.77 MiB pools, 2 queues of rings; each half holds 7 largest frames.
    /// let g = Geometry::new(16 << 20, 8)?;
    /// assert_eq!((g.queues, Pool::max_partitions(&g)), (2, 2));
    /// // 4 MiB, 2 peers: 8 queues of rings, but a 1.9 MiB pool holds 7 parts of 256 KiB.
    /// let g = Geometry::new(4 << 20, 2)?;
    /// assert_eq!((g.queues, Pool::max_partitions(&g)), (8, 7));
    /// // 4 MiB, 8 peers: a 392 KiB pool is one partition.
    /// assert_eq!(Pool::max_partitions(&Geometry::new(4 << 20, 8)?), 1);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn max_partitions(g: &Geometry) -> u32 {
        let Ok(ring) = Self::ring_of(g, 0) else {
            return 1;
        };
        let need = 2 * u64::from(footprint(ring.max_frame()));
        let mut count = g.queues.min(MAX_QUEUES);
        while count > 1 && u64::from(Self::partition_len(ring.pool_len(), count)) < need {
            count -= 1;
        }
        count.max(1)
    }

    /// The allocator over partition `index` of `count` equal partitions of peer `sender`'s
    /// pool, empty (see *Partitions* in the module documentation). `count == 1` is exactly
    /// [`Pool::new`]. The producers of ring `q` use partition `q`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] for a sender outside the region, `count` 0 or above
    /// [`Pool::max_partitions`], or `index >= count`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Error, Geometry};
    /// use ivshmem_net_protocol::ring::Pool;
    ///
    /// let g = Geometry::new(16 << 20, 8)?;
    /// let (p0, p1) = (Pool::partition(&g, 3, 0, 2)?, Pool::partition(&g, 3, 1, 2)?);
    /// assert_eq!((p0.offset(), p0.len()), (0, g.pool_len / 2));
    /// assert_eq!((p1.offset(), p1.base()), (g.pool_len / 2, g.pool_offset(3)? + g.pool_len as usize / 2));
    /// assert_eq!(Pool::partition(&g, 3, 0, 1)?, Pool::new(&g, 3)?);
    /// assert_eq!(Pool::partition(&g, 3, 2, 2), Err(Error::OutOfBounds));
    /// assert_eq!(Pool::partition(&g, 3, 0, 3), Err(Error::OutOfBounds));
    /// assert_eq!(Pool::partition(&g, 8, 0, 2), Err(Error::OutOfBounds));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn partition(g: &Geometry, sender: u32, index: u32, count: u32) -> Result<Self, Error> {
        if count == 1 && index == 0 {
            return Self::new(g, sender);
        }
        if count == 0 || index >= count || count > Self::max_partitions(g) {
            return Err(Error::OutOfBounds);
        }
        let ring = Self::ring_of(g, sender)?;
        let len = Self::partition_len(ring.pool_len(), count);
        let offset = index * len;
        // INVARIANT: `len` is a multiple of `FRAME_ALIGN`, nonzero and at least twice a largest
        // frame's footprint (`max_partitions`); `index < count`, so the partition ends at
        // most at `count * len <= pool_len`, inside the pool `Ring::new` checked. Empty.
        Ok(Pool {
            base: ring.pool() + offset as usize,
            offset,
            len,
            wraps: false,
            max_frame: ring.max_frame(),
            head_pos: 0,
            head: 0,
            tail: 0,
        })
    }

    /// This allocator, empty, as if `serial` bytes (rounded down to [`FRAME_ALIGN`]) had been
    /// handed out and taken back already, so tests can cross serials that matter (2^32:
    /// producers keep the low 32 bits).
    #[doc(hidden)]
    pub fn starting_at(mut self, serial: u64) -> Self {
        let serial = serial & !u64::from(FRAME_ALIGN - 1);
        // INVARIANT: empty, and `head_pos == head % len`.
        self.head = serial;
        self.tail = serial;
        // `checked_rem`: no division-by-zero panic path in the module (`len` is nonzero anyway).
        self.head_pos = serial.checked_rem(u64::from(self.len)).unwrap_or(0) as u32;
        self
    }

    /// Region offset of the pool (of the partition).
    #[inline]
    pub fn base(&self) -> usize {
        self.base
    }

    /// Offset of the partition in the sender's pool (0 for the whole pool).
    #[inline]
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Bytes of the pool (of the partition).
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether frames may wrap at the end of this pool: it is the whole pool, not one of
    /// several partitions.
    #[inline]
    pub fn wraps(&self) -> bool {
        self.wraps
    }

    /// Never: a pool has bytes. For clippy's `len_without_is_empty`.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in flight (handed out and not yet reclaimed).
    #[inline]
    pub fn used(&self) -> u32 {
        // At most `len` (type invariant).
        (self.head - self.tail) as u32
    }

    /// Bytes free for new frames.
    #[inline]
    pub fn free(&self) -> u32 {
        self.len - self.used()
    }

    /// Largest frame the pool takes: [`Ring::max_frame`] of its rings.
    #[inline]
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Serial of the next byte to hand out.
    #[inline]
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Serial of the oldest byte in flight (or [`Pool::head`] when none is).
    #[inline]
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Where a frame of `len` bytes goes if reserved now, and the bytes it takes: `(pos, need)`,
    /// `pos` its offset in the sender's whole pool (what its descriptor says). `need` is its
    /// footprint, plus, in a partition of several, the partition's tail it skips when it does
    /// not fit before the partition's end.
    #[inline]
    pub(super) fn place(&self, len: u32) -> (u32, u32) {
        let foot = footprint(len);
        // `head_pos < len`: no underflow.
        let room = self.len - self.head_pos;
        if self.wraps || foot <= room {
            (self.offset + self.head_pos, foot)
        } else {
            (self.offset, room.saturating_add(foot))
        }
    }

    /// The bytes a frame of `len` bytes takes if reserved now (see [`Pool::fits`]): its
    /// footprint, plus in a partition of several the tail it skips to start at the
    /// partition's start. What [`Pool::wake_target`] is asked for when the frame did not fit.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::Geometry;
    /// use ivshmem_net_protocol::ring::{footprint, Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(16 << 20, 8)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::partition(&g, 0, 1, 2)?;
    /// let mut tx = Producer::new(&g, 0, 1, 1)?;
    /// tx.reset(&region)?;
    /// // Fill the partition up to 1000 bytes before its end.
    /// let big = footprint(60_000);
    /// let n = (pool.len() - 1000) / big;
    /// for _ in 0..n {
    ///     tx.reserve(&region, &pool, 60_000)?.expect("room");
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// let left = pool.len() - n * big;
    /// assert!(pool.free() == left && left < big);
    /// // A small frame fits before the end; a large one would skip the tail and needs more
    /// // than is free.
    /// assert_eq!(pool.needs(100), 128);
    /// assert_eq!(pool.needs(60_000), left + big);
    /// assert!(pool.fits(100) && !pool.fits(60_000));
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    #[inline]
    pub fn needs(&self, len: u32) -> u32 {
        self.place(len).1
    }

    /// Whether a frame of `len` bytes fits now ([`Pool::needs`] at most [`Pool::free`]).
    #[inline]
    pub fn fits(&self, len: u32) -> bool {
        self.needs(len) <= self.free()
    }

    /// Hands out the next `need` bytes (a [`Pool::needs`] that [`Pool::fits`]).
    #[inline]
    pub(super) fn take(&mut self, need: u32) {
        let need = need.min(self.free());
        self.head += u64::from(need);
        // No overflow: `head_pos < len` and `need <= len`, both below 2^31.
        let pos = self.head_pos + need;
        self.head_pos = if pos >= self.len { pos - self.len } else { pos };
    }

    /// Moves the tail to the oldest frame still in flight on any of `producers` (every ring
    /// that takes frames from this pool), as each last [`Producer::collect`]ed, and returns how
    /// many bytes came back. The tail never moves back, and never past the head.
    ///
    /// A producer reset drops its frames ([`Producer::reset`]); so a dead or slow consumer
    /// holds pool bytes only until its link is reset.
    pub fn reclaim<'a, S, I>(&mut self, producers: I) -> u32
    where
        S: AsRef<[u32]> + AsMut<[u32]> + 'a,
        I: IntoIterator<Item = &'a Producer<S>>,
    {
        let oldest = producers
            .into_iter()
            .filter_map(Producer::oldest)
            .min()
            .unwrap_or(self.head);
        let tail = oldest.clamp(self.tail, self.head);
        let freed = tail - self.tail;
        self.tail = tail;
        // At most `len` (type invariant).
        freed as u32
    }

    /// The tail serial at which `bytes` are free (at most the whole pool): what
    /// [`Producer::arm_wake`] waits for. At or below [`Pool::tail`] if they are free now. For a
    /// frame that did not fit, ask for at least [`Pool::needs`] of it: the head stays where it
    /// is until then, so the frame fits once the tail gets there.
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
    /// while tx.reserve(&region, &pool, 64 << 10)?.is_some() {
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// // Room for another 64 KiB once the tail is 64 KiB further than the pool allows now.
    /// let target = pool.wake_target(64 << 10);
    /// assert_eq!(target, pool.head() + (64 << 10) - u64::from(pool.len()));
    /// assert!(target > pool.tail());
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn wake_target(&self, bytes: u32) -> u64 {
        (self.head + u64::from(bytes.min(self.len))).saturating_sub(u64::from(self.len))
    }
}
