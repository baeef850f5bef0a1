// SPDX-License-Identifier: GPL-2.0

//! What the storm aims at: the geometry read once at the start (the header may be garbage a
//! moment later, so it is never read again), the peers that were present then, every ring of
//! every queue, and every sender's transmit pool.
//!
//! Attacks favour the present peers' control blocks and the rings between them, where the
//! guests will notice, but keep hitting empty ids too: a guest must not trust a peer that
//! appears out of nowhere either. Rings are aimed at on every queue, or on one (`--queue`).

use ivshmem_net_protocol::layout::{hdr, Error, Geometry, Region, RING_HDR_LEN};
use ivshmem_net_protocol::link::ctrl;
use ivshmem_net_protocol::ring::Ring;
use std::ops::Range;

use crate::rng::Rng;

/// One ring, the peers at its ends and its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAt {
    /// The producer's id (whose pool the ring's frames live in).
    pub from: u32,
    /// The consumer's id.
    pub to: u32,
    /// The queue.
    pub queue: u32,
    /// Where it and its sender's pool live.
    pub ring: Ring,
}

impl RingAt {
    /// Region offset of header word `word` (one of `ring::off`).
    pub fn word(&self, word: usize) -> usize {
        self.ring.base() + word
    }

    /// Region offset of the descriptor slot of free-running index `idx`.
    pub fn desc(&self, idx: u32) -> usize {
        let slot = (idx & (self.ring.slots() - 1)) as usize;
        self.ring.base()
            + RING_HDR_LEN as usize
            + slot * ivshmem_net_protocol::layout::DESC_LEN as usize
    }

    /// Region range of the sender's pool.
    pub fn pool(&self) -> Range<usize> {
        self.ring.pool()..self.ring.pool() + self.ring.pool_len() as usize
    }
}

/// The storm's map of the region.
#[derive(Debug, Clone)]
pub struct Targets {
    /// The geometry as read at the start.
    pub geometry: Geometry,
    /// Ids whose slot word or control-block state was nonzero at the start.
    pub live: Vec<u32>,
    /// Every ring, in `Geometry::ring_offset` order.
    pub rings: Vec<RingAt>,
    /// The only queue aimed at, if one was chosen.
    pub queue: Option<u32>,
    /// End of the last pool: nothing past it is used.
    pub used_end: usize,
}

impl Targets {
    /// Looks once at which peers are present in `r`, whose geometry is `g` (as
    /// `layout::read_geometry` returned it), and lays out every ring. With `queue`, rings are
    /// aimed at on that queue only; [`Error::OutOfBounds`] if the region has no such queue.
    pub fn new<R: Region + ?Sized>(r: &R, g: Geometry, queue: Option<u32>) -> Result<Self, Error> {
        if queue.is_some_and(|q| q >= g.queues) {
            return Err(Error::OutOfBounds);
        }
        let mut live = Vec::new();
        for j in 0..g.max_peers {
            let slot = r.load(hdr::PEER_SLOTS + 4 * j as usize)?;
            let state = r.load(g.ctrl_offset(j)? + ctrl::STATE)?;
            if slot != 0 || state != 0 {
                live.push(j);
            }
        }
        let mut rings = Vec::new();
        for from in 0..g.max_peers {
            for to in (0..g.max_peers).filter(|&to| to != from) {
                for q in 0..g.queues {
                    rings.push(RingAt {
                        from,
                        to,
                        queue: q,
                        ring: Ring::new(&g, from, to, q)?,
                    });
                }
            }
        }
        let used_end = g.pool_offset(g.max_peers - 1)? + g.pool_len as usize;
        if used_end > r.len() {
            return Err(Error::OutOfBounds);
        }
        Ok(Targets {
            geometry: g,
            live,
            rings,
            queue,
            used_end,
        })
    }

    /// A peer id: one that was present three times in four (if any was), else any id.
    pub fn peer(&self, rng: &mut Rng) -> u32 {
        if !self.live.is_empty() && rng.chance(3, 4) {
            rng.pick(&self.live)
        } else {
            rng.below32(self.geometry.max_peers)
        }
    }

    /// A peer id other than `not`, chosen like [`Targets::peer`].
    pub fn other(&self, rng: &mut Rng, not: u32) -> u32 {
        for _ in 0..4 {
            let j = self.peer(rng);
            if j != not {
                return j;
            }
        }
        // `max_peers >= 2`, so one of `not ± 1` is a valid other id.
        (not + 1) % self.geometry.max_peers
    }

    /// A ring: mostly one between two present peers, sometimes one with a single present end,
    /// sometimes any; on the chosen queue, or any.
    pub fn ring(&self, rng: &mut Rng) -> RingAt {
        let n = self.geometry.max_peers;
        let (from, to) = match rng.below32(10) {
            0..=6 if self.live.len() >= 2 => {
                let from = rng.pick(&self.live);
                let others: Vec<u32> = self.live.iter().copied().filter(|&j| j != from).collect();
                (from, rng.pick(&others))
            }
            7..=8 if !self.live.is_empty() => {
                let a = rng.pick(&self.live);
                let b = self.other(rng, a);
                if rng.chance(1, 2) {
                    (a, b)
                } else {
                    (b, a)
                }
            }
            _ => {
                let from = rng.below32(n);
                (from, self.other(rng, from))
            }
        };
        let queue = match self.queue {
            Some(q) => q,
            None => rng.below32(self.geometry.queues),
        };
        self.ring_of(from, to, queue)
    }

    /// The ring `from -> to` of `queue`; both ids below `max_peers` and distinct, the queue
    /// below `queues`.
    pub fn ring_of(&self, from: u32, to: u32, queue: u32) -> RingAt {
        let pair = from * (self.geometry.max_peers - 1) + if to < from { to } else { to - 1 };
        self.rings[(pair * self.geometry.queues + queue) as usize]
    }

    /// Region offset of peer `j`'s control block; `j` below `max_peers`.
    pub fn ctrl(&self, j: u32) -> usize {
        self.geometry.ctrl_offset as usize + j as usize * self.geometry.ctrl_stride as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivshmem_net_protocol::layout::attach;
    use ivshmem_net_protocol::HeapRegion;

    #[test]
    fn rings_match_the_layout_and_live_peers_are_found() {
        let r = HeapRegion::new(4 << 20);
        let g = Geometry::new(4 << 20, 4).unwrap();
        attach(&r, g, 1, || false).unwrap();
        r.store(hdr::PEER_SLOTS + 4, 0x55).unwrap();
        r.store(g.ctrl_offset(3).unwrap() + ctrl::STATE, 2).unwrap();
        let t = Targets::new(&r, g, None).unwrap();
        assert_eq!(t.live, vec![1, 3]);
        assert_eq!(t.rings.len() as u32, 12 * g.queues);
        assert!(g.queues > 1, "the test wants several queues: {g:?}");
        for ra in &t.rings {
            assert_eq!(
                ra.ring.base(),
                g.ring_offset(ra.from, ra.to, ra.queue).unwrap()
            );
            assert_eq!(ra.pool().start, g.pool_offset(ra.from).unwrap());
            assert_eq!(t.ring_of(ra.from, ra.to, ra.queue), *ra);
        }
        for j in 0..4 {
            assert_eq!(t.ctrl(j), g.ctrl_offset(j).unwrap());
        }
        assert_eq!(t.used_end, g.pool_offset(3).unwrap() + g.pool_len as usize);
        assert!(t.used_end <= r.len());
        let mut rng = Rng::new(9);
        let mut queues = vec![0; g.queues as usize];
        for _ in 0..1000 {
            let ra = t.ring(&mut rng);
            assert_ne!(ra.from, ra.to);
            queues[ra.queue as usize] += 1;
            let p = t.peer(&mut rng);
            assert!(p < 4);
            assert_ne!(t.other(&mut rng, p), p);
        }
        assert!(
            queues.iter().all(|&n| n > 100),
            "every queue is aimed at: {queues:?}"
        );
        // One queue only, when asked; none the region does not have.
        let t = Targets::new(&r, g, Some(1)).unwrap();
        assert!((0..200).all(|_| t.ring(&mut rng).queue == 1));
        assert!(Targets::new(&r, g, Some(g.queues)).is_err());
    }
}
