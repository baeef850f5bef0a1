// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the ring tests: small geometries and whole-frame push and pop.

#![allow(dead_code)]

use ivshmem_net_protocol::layout::{Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{Consumer, Desc, Producer};
use ivshmem_net_protocol::HeapRegion;

/// A geometry of two peers whose two rings start at offset 0, with `slots` descriptors and
/// `data` bytes each and no slack, so that a test region is just the rings.
pub fn small_geometry(slots: u32, data: u32) -> Geometry {
    let stride = RING_HDR_LEN + slots * DESC_LEN + data;
    Geometry {
        region_len: 2 * stride as u64,
        max_peers: 2,
        ring_slots: slots,
        ring_data: data,
        ring_stride: stride,
        ctrl_offset: 0,
        ctrl_stride: 0,
        rings_offset: 0,
    }
}

/// A zeroed region for `g`, with both sides of ring 0 -> 1 reset.
pub fn setup(g: &Geometry) -> (HeapRegion, Producer, Consumer) {
    let r = HeapRegion::new(g.region_len as usize);
    let mut p = Producer::new(g, 0, 1).unwrap();
    let mut c = Consumer::new(g, 0, 1).unwrap();
    p.reset(&r).unwrap();
    c.reset(&r).unwrap();
    (r, p, c)
}

/// Frame bytes that tell frames apart: `seq` and the offset in the frame, mixed.
pub fn pattern(seq: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) ^ (i >> 8)) as u8)
        .collect()
}

/// Reserves, copies and commits `frame` (not published); `Ok(None)` if the ring is full.
pub fn push<R: Region + ?Sized>(
    p: &mut Producer,
    r: &R,
    frame: &[u8],
) -> Result<Option<Desc>, Error> {
    let Some(at) = p.reserve(r, frame.len() as u32)? else {
        return Ok(None);
    };
    r.write(at, frame)?;
    let meta = Desc {
        flags: 1,
        gso_type: 4,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        hdr_len: 66,
        ..Desc::default()
    };
    p.commit(r, &meta).map(Some)
}

/// Peeks, checks the frame lies in the ring's data area, copies it out and pops it.
pub fn pop<R: Region + ?Sized>(c: &mut Consumer, r: &R) -> Result<Option<Vec<u8>>, Error> {
    let Some(d) = c.peek(r)? else {
        return Ok(None);
    };
    assert_in_data_area(c, &d);
    let mut buf = vec![0u8; d.len as usize];
    c.read_frame(r, &d, &mut buf)?;
    c.pop(&d);
    Ok(Some(buf))
}

/// Panics unless the frame of `d` lies inside the data area of `c`'s ring.
pub fn assert_in_data_area(c: &Consumer, d: &Desc) {
    let ring = c.ring();
    let start = ring.data_start();
    let end = start + ring.data_len() as usize;
    let off = c.frame_offset(d);
    assert!(d.len > 0, "{d:?}");
    assert!(
        off >= start && off + d.len as usize <= end,
        "frame {off}+{} outside data area {start}..{end}",
        d.len
    );
}
