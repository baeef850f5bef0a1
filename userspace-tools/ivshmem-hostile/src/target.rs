// SPDX-License-Identifier: GPL-2.0

//! What the storm aims at: the geometry read once at the start (the header may be garbage a
//! moment later, so it is never read again), the peers that were present then, and every ring.
//!
//! Attacks favour the present peers' control blocks and the rings between them, where the
//! guests will notice, but keep hitting empty ids too: a guest must not trust a peer that
//! appears out of nowhere either.

use ivshmem_net_protocol::layout::{hdr, Error, Geometry, Region, RING_HDR_LEN};
use ivshmem_net_protocol::link::ctrl;
use ivshmem_net_protocol::ring::Ring;

use crate::rng::Rng;

/// One ring and the peers at its ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAt {
    /// The producer's id.
    pub from: u32,
    /// The consumer's id.
    pub to: u32,
    /// Where it lives.
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

    /// Region offset of free-running data position `pos`.
    pub fn data(&self, pos: u32) -> usize {
        self.ring.data_start() + (pos & (self.ring.data_len() - 1)) as usize
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
    /// End of the last ring: nothing past it is used.
    pub used_end: usize,
}

impl Targets {
    /// Looks once at which peers are present in `r`, whose geometry is `g` (as
    /// `layout::read_geometry` returned it), and lays out every ring.
    pub fn new<R: Region + ?Sized>(r: &R, g: Geometry) -> Result<Self, Error> {
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
                rings.push(RingAt {
                    from,
                    to,
                    ring: Ring::new(&g, from, to)?,
                });
            }
        }
        let used_end = g.rings_offset as usize + g.rings() as usize * g.ring_stride as usize;
        if used_end > r.len() {
            return Err(Error::OutOfBounds);
        }
        Ok(Targets {
            geometry: g,
            live,
            rings,
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
    /// sometimes any.
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
        self.ring_of(from, to)
    }

    /// The ring `from -> to`; both below `max_peers` and distinct.
    pub fn ring_of(&self, from: u32, to: u32) -> RingAt {
        let idx = from * (self.geometry.max_peers - 1) + if to < from { to } else { to - 1 };
        self.rings[idx as usize]
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
        let t = Targets::new(&r, g).unwrap();
        assert_eq!(t.live, vec![1, 3]);
        assert_eq!(t.rings.len(), 12);
        for ra in &t.rings {
            assert_eq!(ra.ring.base(), g.ring_offset(ra.from, ra.to).unwrap());
            assert_eq!(t.ring_of(ra.from, ra.to), *ra);
        }
        for j in 0..4 {
            assert_eq!(t.ctrl(j), g.ctrl_offset(j).unwrap());
        }
        assert!(t.used_end <= r.len());
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            let ra = t.ring(&mut rng);
            assert_ne!(ra.from, ra.to);
            let p = t.peer(&mut rng);
            assert!(p < 4);
            assert_ne!(t.other(&mut rng, p), p);
        }
    }
}
