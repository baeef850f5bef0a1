// SPDX-License-Identifier: GPL-2.0

//! The receiving side of a ring: [`Consumer`].
//!
//! The consumer reads the descriptors the producer handed over and the frames they name in the
//! producer's pool (see *Ownership* in [`super`]), and writes only its own words of the ring
//! header, `cons_idx` and `cons_event`. Of the producer's words it reads `prod_idx` and
//! `prod_event`, each once into a local, and checks every descriptor before it hands it out.

use super::super::layout::{Corrupt, Error, Geometry, Region, DESC_LEN};
use super::{need_event, off, Desc, Ring, Span, FRAME_ALIGN};

/// The receiving side of a ring.
///
/// [`Consumer::peek`] returns the next frame's checked descriptor, the caller copies the frame
/// from [`Consumer::span`] (one or two pieces), [`Consumer::pop`] moves past it, and
/// [`Consumer::publish`] gives every popped frame back to the producer at once.
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
/// let mut rx = Consumer::new(&g, 0, 1, 0)?;
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
    /// `cons_idx` as last published.
    published_idx: u32,
    /// The producer's `prod_idx` as we last read and checked it. Frames below this index are
    /// taken without looking at the producer's word again, which it rewrites with every
    /// publication: reading it once per batch instead of once per frame keeps that cache line
    /// from bouncing between the two sides.
    seen_idx: u32,
}

impl Consumer {
    /// The consumer of ring `queue` from peer `from` to peer `to`, with all indices zero. Call
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
    /// let mut rx = Consumer::new(&g, 0, 1, 0)?;
    /// rx.reset(&region)?;
    /// assert_eq!(rx.pending(&region)?, 0);
    /// // The two halves of one ring.
    /// assert_eq!(rx.ring(), Producer::new(&g, 0, 1, 0)?.ring());
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    pub fn new(g: &Geometry, from: u32, to: u32, queue: u32) -> Result<Self, Error> {
        Ok(Consumer {
            ring: Ring::new(g, from, to, queue)?,
            idx: 0,
            published_idx: 0,
            seen_idx: 0,
        })
    }

    /// The ring this consumes from.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Zeroes the consumer's words in the region and our copies of them, when the link
    /// (re)starts.
    pub fn reset<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        self.reset_at(r, 0)
    }

    /// Like [`Consumer::reset`] but starting at index `idx`; see [`Producer::reset_at`].
    ///
    /// [`Producer::reset_at`]: super::Producer::reset_at
    #[doc(hidden)]
    pub fn reset_at<R: Region + ?Sized>(&mut self, r: &R, idx: u32) -> Result<(), Error> {
        self.idx = idx;
        self.published_idx = idx;
        self.seen_idx = idx;
        r.store(self.ring.word(off::CONS_EVENT), idx)?;
        r.store(self.ring.word(off::CONS_IDX), idx)
    }

    /// Descriptors popped so far (our `cons_idx`, including what is not yet published).
    #[inline]
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// Reads `prod_idx` once and returns how many descriptors it is ahead of us.
    #[inline]
    fn available<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        // Acquire: pairs with the release in `Producer::publish`, so the descriptors and frames
        // below this index are written before we read them.
        let prod_idx = r.load(self.ring.word(off::PROD_IDX))?;
        let avail = prod_idx.wrapping_sub(self.idx);
        if avail > self.ring.slots() {
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
    #[inline]
    pub fn pending<R: Region + ?Sized>(&self, r: &R) -> Result<u32, Error> {
        self.available(r)
    }

    /// The next frame's descriptor, read once and checked, or `Ok(None)` if the ring is empty.
    /// A descriptor that passes names a frame of 1 to [`Ring::max_frame`] bytes starting at a
    /// multiple of [`FRAME_ALIGN`] inside the sender's pool ([`Consumer::span`] says where it
    /// lies). Nothing else needs to hold: the sender can only point into its own pool.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if `prod_idx` or the descriptor are impossible; the ring is then
    /// unusable until both sides reset it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::layout::{Geometry, Region};
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 1)?;
    /// let (mut tx, mut rx) = (Producer::new(&g, 1, 0, 0)?, Consumer::new(&g, 1, 0, 0)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// for frame in [&b"first"[..], b"second"] {
    ///     let span = tx.reserve(&region, &pool, frame.len() as u32)?.expect("room");
    ///     span.write(&region, 0, frame)?;
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    ///
    /// let d = rx.peek(&region)?.expect("two frames");
    /// assert_eq!((d.pos, d.len), (0, 5));
    /// // Peeking again returns the same frame: only `pop` moves on.
    /// assert_eq!(rx.peek(&region)?, Some(d));
    /// let at = rx.span(&d)?.first();
    /// let mut first = [0u8; 5];
    /// region.read(at.start, &mut first)?;
    /// assert_eq!((at.start - g.pool_offset(1)?, &first), (0, b"first"));
    /// rx.pop();
    /// let d = rx.peek(&region)?.expect("one more");
    /// assert_eq!(d.pos, 64);
    /// let mut buf = [0u8; 16];
    /// assert_eq!(rx.read_frame(&region, &d, &mut buf)?, 6);
    /// assert_eq!(&buf[..6], b"second");
    /// rx.pop();
    /// assert_eq!(rx.peek(&region)?, None);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    #[inline]
    pub fn peek<R: Region + ?Sized>(&mut self, r: &R) -> Result<Option<Desc>, Error> {
        if self.seen_idx == self.idx {
            // Everything we knew of is consumed: read the producer's word again.
            let avail = self.available(r)?;
            if avail == 0 {
                return Ok(None);
            }
            self.seen_idx = self.idx.wrapping_add(avail);
        }
        let mut raw = [0u8; DESC_LEN as usize];
        r.read(self.ring.desc(self.idx), &mut raw)?;
        let d = Desc::decode(&raw);
        if d.len == 0 || d.len > self.ring.max_frame() {
            return Err(Error::Corrupt(Corrupt::DescLen));
        }
        if d.pos >= self.ring.pool_len() || !d.pos.is_multiple_of(FRAME_ALIGN) {
            return Err(Error::Corrupt(Corrupt::DescPos));
        }
        Ok(Some(d))
    }

    /// Where the frame of `d` (a descriptor [`Consumer::peek`] returned) lies in the region:
    /// one or two pieces inside the sender's pool. [`Error::BadFrameLen`] for a descriptor
    /// whose frame would not lie there (not one `peek` returned).
    #[inline]
    pub fn span(&self, d: &Desc) -> Result<Span, Error> {
        self.ring.span(d.pos, d.len)
    }

    /// Copies the frame of `d`, a descriptor [`Consumer::peek`] returned, into the start of
    /// `buf` and returns its length; [`Error::BadFrameLen`] if `buf` is shorter than the frame.
    #[inline]
    pub fn read_frame<R: Region + ?Sized>(
        &self,
        r: &R,
        d: &Desc,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        self.span(d)?.read(r, buf)
    }

    /// Moves past the frame [`Consumer::peek`] just returned. It goes back to the producer
    /// with the next [`Consumer::publish`], so the caller must be done with its bytes by then.
    #[inline]
    pub fn pop(&mut self) {
        self.idx = self.idx.wrapping_add(1);
    }

    /// Gives every popped frame back to the producer. Returns `cons_idx` as published before,
    /// for [`Consumer::kick_needed`].
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
    /// for _ in 0..2 {
    ///     tx.reserve(&region, &pool, 1000)?.expect("room");
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    /// rx.peek(&region)?.expect("a frame");
    /// rx.pop();
    /// // Popped is not yet given back: the producer sees it after `publish`.
    /// assert_eq!(tx.collect(&region)?, 0);
    /// assert_eq!(rx.publish(&region)?, 0);
    /// assert_eq!(tx.collect(&region)?, 1);
    /// assert_eq!(pool.reclaim([&tx]), 1024);
    /// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
    /// ```
    #[inline]
    pub fn publish<R: Region + ?Sized>(&mut self, r: &R) -> Result<u32, Error> {
        // Release: orders our reads of the popped frames and descriptors before the producer
        // can reuse them.
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
    /// use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
    /// use ivshmem_net_protocol::HeapRegion;
    ///
    /// let g = Geometry::new(4 << 20, 2)?;
    /// let region = HeapRegion::new(g.region_len as usize);
    /// let mut pool = Pool::new(&g, 0)?;
    /// let (mut tx, mut rx) = (Producer::new(&g, 0, 1, 0)?, Consumer::new(&g, 0, 1, 0)?);
    /// tx.reset(&region)?;
    /// rx.reset(&region)?;
    /// for _ in 0..2 {
    ///     tx.reserve(&region, &pool, 60)?.expect("room");
    ///     tx.commit(&region, &mut pool, &Desc::default())?;
    /// }
    /// tx.publish(&region)?;
    /// // The producer wants to hear once the consumer is past frame 1 (the second one).
    /// tx.set_event(&region, 1)?;
    /// let mut consume_one = |rx: &mut Consumer| -> Result<bool, _> {
    ///     rx.peek(&region)?.expect("a frame");
    ///     rx.pop();
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
