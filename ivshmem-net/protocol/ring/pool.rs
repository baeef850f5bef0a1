// SPDX-License-Identifier: GPL-2.0

//! A sender's allocator over its transmit pool: [`Pool`].
//!
//! The pool is handed out as one circular byte stream (see *Ownership* in [`super`]). Every
//! byte ever handed out has a *serial*, its position in that stream counted from the pool's
//! reset (a `u64`: at 100 Gbit/s it wraps after 46 years). A frame of `len` bytes takes the
//! serials `[head, head + footprint(len))`; the tail is the serial of the oldest byte still in
//! flight. Each [`Producer`] keeps the first serial of every frame it has in flight, so the
//! oldest byte in flight over all rings sharing the pool is the smallest of their oldest
//! frames ([`Pool::reclaim`]). None of this state is in shared memory.

use super::super::layout::{Error, Geometry, MAX_FRAME};
use super::{footprint, Producer, Ring, FRAME_ALIGN};

/// A sender's private allocator over its transmit pool, shared by its rings of one transmit
/// queue.
///
/// # Invariants
///
/// `tail <= head <= tail + len`, `head_pos == head % len` (kept without a division), and
/// `len` is a nonzero multiple of [`super::FRAME_ALIGN`].
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
    base: usize,
    len: u32,
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
        // Checks the pool as a ring would see it: the ring to any other peer has it.
        let other = if sender == 0 { 1 } else { 0 };
        if sender >= g.max_peers {
            return Err(Error::OutOfBounds);
        }
        let ring = Ring::new(g, sender, other, 0)?;
        // INVARIANT: `Ring::new` checked the pool; empty.
        Ok(Pool {
            base: ring.pool(),
            len: ring.pool_len(),
            head_pos: 0,
            head: 0,
            tail: 0,
        })
    }

    /// Like [`Pool::new`] but as if `serial` bytes (rounded down to [`FRAME_ALIGN`]) had been
    /// handed out and taken back already, so tests can cross serials that matter (2^32:
    /// producers keep the low 32 bits).
    #[doc(hidden)]
    pub fn starting_at(g: &Geometry, sender: u32, serial: u64) -> Result<Self, Error> {
        let serial = serial & !u64::from(FRAME_ALIGN - 1);
        let mut pool = Self::new(g, sender)?;
        // INVARIANT: empty, and `head_pos == head % len`.
        pool.head = serial;
        pool.tail = serial;
        // `checked_rem`: no division-by-zero panic path in the module (`len` is nonzero anyway).
        pool.head_pos = serial.checked_rem(u64::from(pool.len)).unwrap_or(0) as u32;
        Ok(pool)
    }

    /// Region offset of the pool.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Bytes of the pool.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Never: a pool has bytes. For clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in flight (handed out and not yet reclaimed).
    pub fn used(&self) -> u32 {
        // At most `len` (type invariant).
        (self.head - self.tail) as u32
    }

    /// Bytes free for new frames.
    pub fn free(&self) -> u32 {
        self.len - self.used()
    }

    /// Largest frame the pool takes (as [`Ring::max_frame`] of its rings).
    pub fn max_frame(&self) -> u32 {
        (self.len / 2).min(MAX_FRAME)
    }

    /// Serial of the next byte to hand out.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Serial of the oldest byte in flight (or [`Pool::head`] when none is).
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Pool offset where the next frame starts.
    pub(super) fn head_pos(&self) -> u32 {
        self.head_pos
    }

    /// Whether a frame of `len` bytes fits now.
    pub fn fits(&self, len: u32) -> bool {
        footprint(len) <= self.free()
    }

    /// Hands out the next `foot` bytes (a footprint that [`Pool::fits`]).
    pub(super) fn take(&mut self, foot: u32) {
        let foot = foot.min(self.free());
        self.head += u64::from(foot);
        // No overflow: `head_pos < len` and `foot <= len`, both below 2^31.
        let pos = self.head_pos + foot;
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
    /// [`Producer::arm_wake`] waits for. At or below [`Pool::tail`] if they are free now.
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
