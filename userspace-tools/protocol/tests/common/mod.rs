// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the ring tests: small geometries and whole-frame push and pop.

#![allow(dead_code)]

use ivshmem_net_protocol::layout::{Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::HeapRegion;

/// A geometry of `peers` peers (one queue) whose rings start at offset 0, with `slots`
/// descriptors each and pools of `pool` bytes right after them, and no slack, so that a test
/// region is just the rings and the pools.
pub fn geometry(peers: u32, slots: u32, pool: u32) -> Geometry {
    geometry_queues(peers, 1, slots, pool)
}

/// [`geometry`] with `queues` rings per ordered pair.
pub fn geometry_queues(peers: u32, queues: u32, slots: u32, pool: u32) -> Geometry {
    let stride = RING_HDR_LEN + slots * DESC_LEN;
    let rings = peers * (peers - 1) * queues * stride;
    Geometry {
        region_len: u64::from(rings) + u64::from(peers) * u64::from(pool),
        max_peers: peers,
        ring_slots: slots,
        queues,
        ring_stride: stride,
        ctrl_offset: 0,
        ctrl_stride: 0,
        rings_offset: 0,
        pools_offset: rings,
        pool_len: pool,
    }
}

/// [`geometry`] for two peers.
pub fn small_geometry(slots: u32, pool: u32) -> Geometry {
    geometry(2, slots, pool)
}

/// The sending side of ring 0 -> 1: peer 0's pool and its producer.
pub struct Tx {
    pub pool: Pool,
    pub p: Producer,
}

/// A zeroed region for `g`, with both sides of ring 0 -> 1 reset.
pub fn setup(g: &Geometry) -> (HeapRegion, Tx, Consumer) {
    let r = HeapRegion::new(g.region_len as usize);
    let mut p = Producer::new(g, 0, 1, 0).unwrap();
    let mut c = Consumer::new(g, 0, 1, 0).unwrap();
    p.reset(&r).unwrap();
    c.reset(&r).unwrap();
    let pool = Pool::new(g, 0).unwrap();
    (r, Tx { pool, p }, c)
}

/// Frame bytes that tell frames apart: `seq` and the offset in the frame, mixed.
pub fn pattern(seq: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) ^ (i >> 8)) as u8)
        .collect()
}

/// The offload metadata every pushed frame carries.
pub fn meta() -> Desc {
    Desc {
        flags: 1,
        gso_type: 4,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        hdr_len: 66,
        ..Desc::default()
    }
}

/// Reserves, copies and commits `frame` (not published), collecting and reclaiming once if
/// there is no room at first; `Ok(None)` if there is none even then.
pub fn push<R: Region + ?Sized>(tx: &mut Tx, r: &R, frame: &[u8]) -> Result<Option<Desc>, Error> {
    let len = frame.len() as u32;
    let span = match tx.p.reserve(r, &tx.pool, len)? {
        Some(s) => s,
        None => {
            tx.p.collect(r)?;
            tx.pool.reclaim([&tx.p]);
            match tx.p.reserve(r, &tx.pool, len)? {
                Some(s) => s,
                None => return Ok(None),
            }
        }
    };
    span.write(r, 0, frame)?;
    tx.p.commit(r, &mut tx.pool, &meta()).map(Some)
}

/// Peeks, checks the frame lies in the sender's pool, copies it out and pops it.
pub fn pop<R: Region + ?Sized>(c: &mut Consumer, r: &R) -> Result<Option<Vec<u8>>, Error> {
    let Some(d) = c.peek(r)? else {
        return Ok(None);
    };
    assert_in_pool(c, &d);
    let mut buf = vec![0u8; d.len as usize];
    c.read_frame(r, &d, &mut buf)?;
    c.pop();
    Ok(Some(buf))
}

/// Panics unless the frame of `d` lies inside the pool of `c`'s sender, in one piece or two.
pub fn assert_in_pool(c: &Consumer, d: &Desc) {
    let ring = c.ring();
    let pool = ring.pool()..ring.pool() + ring.pool_len() as usize;
    let s = c.span(d).expect("peek returned it");
    assert_eq!(s.len(), d.len);
    for piece in [Some(s.first()), s.second()].into_iter().flatten() {
        assert!(
            !piece.is_empty() && pool.start <= piece.start && piece.end <= pool.end,
            "{piece:?} of {d:?} outside pool {pool:?}"
        );
    }
    if let Some(second) = s.second() {
        assert_eq!(s.first().end, pool.end);
        assert_eq!(second.start, pool.start);
    }
}
