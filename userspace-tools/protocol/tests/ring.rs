// SPDX-License-Identifier: GPL-2.0
//! Unit tests of the descriptor ring and its sender's pool: single and batched frames, full
//! rings and full pools, frames wrapping at the pool's end, limits, wrap-around of the
//! free-running indices at 2^32, event indices, and a two-thread stress run.

mod common;

use common::*;
use ivshmem_net_protocol::layout::{Corrupt, Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{
    footprint, need_event, off, Consumer, Desc, Pool, Producer, Ring, FRAME_ALIGN,
};
use ivshmem_net_protocol::HeapRegion;
use std::sync::Arc;

const SLOTS: u32 = 16;
const POOL: u32 = 4096;

#[test]
fn desc_encodes_little_endian_and_round_trips() {
    let d = Desc {
        pos: 0x0403_0201,
        len: 0x0807_0605,
        flags: 0x0a09,
        gso_type: 0x0b,
        gso_size: 0x0e0d,
        csum_start: 0x100f,
        csum_offset: 0x1211,
        hdr_len: 0x1413,
    };
    let b = d.encode();
    assert_eq!(b.len(), DESC_LEN as usize);
    assert_eq!(
        &b[..20],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 13, 14, 15, 16, 17, 18, 19, 20]
    );
    assert!(b[20..].iter().all(|&x| x == 0));
    assert_eq!(Desc::decode(&b), d);
    // Reserved bytes are ignored when decoding.
    let mut dirty = b;
    dirty[11] = 0xff;
    dirty[31] = 0xff;
    assert_eq!(Desc::decode(&dirty), d);
}

#[test]
fn need_event_is_virtio_semantics_on_u32() {
    // Kick exactly when the event lies in [old, new).
    assert!(need_event(5, 6, 5));
    assert!(!need_event(6, 6, 5));
    assert!(!need_event(4, 6, 5));
    assert!(need_event(7, 10, 5));
    assert!(!need_event(10, 10, 5));
    // Across the wrap.
    assert!(need_event(u32::MAX, 1, u32::MAX - 1));
    assert!(need_event(0, 1, u32::MAX - 1));
    assert!(!need_event(1, 1, u32::MAX - 1));
    // No movement never kicks.
    assert!(!need_event(3, 3, 3));
}

#[test]
fn geometry_is_checked() {
    let g = small_geometry(SLOTS, POOL);
    assert!(Ring::new(&g, 0, 1, 0).is_ok());
    assert_eq!(Ring::new(&g, 0, 0, 0), Err(Error::OutOfBounds));
    assert_eq!(Ring::new(&g, 0, 2, 0), Err(Error::OutOfBounds));
    assert_eq!(Ring::new(&g, 0, 1, 1), Err(Error::OutOfBounds));
    let bad = [
        Geometry {
            ring_slots: 12,
            ..g
        },
        Geometry { ring_slots: 0, ..g },
        Geometry {
            ring_slots: 1024,
            ring_stride: RING_HDR_LEN + 1024 * DESC_LEN,
            ..g
        },
        Geometry {
            pool_len: 4000,
            ..g
        },
        Geometry { pool_len: 0, ..g },
        Geometry {
            ring_stride: g.ring_stride - 1,
            ..g
        },
    ];
    for b in bad {
        assert_eq!(
            Ring::new(&b, 0, 1, 0),
            Err(Error::GeometryMismatch),
            "{b:?}"
        );
    }
    // Peer 1's pool ends the region: one byte less and its rings are refused.
    let short = Geometry {
        region_len: g.region_len - 1,
        ..g
    };
    assert_eq!(Ring::new(&short, 1, 0, 0), Err(Error::OutOfBounds));
    assert!(Ring::new(&short, 0, 1, 0).is_ok());
    let ring = Ring::new(&g, 1, 0, 0).unwrap();
    assert_eq!(ring.base(), g.ring_stride as usize);
    assert_eq!(ring.pool(), g.pools_offset as usize + POOL as usize);
    assert_eq!(ring.max_frame(), POOL / 2);
}

#[test]
fn production_geometry_rings_are_independent() {
    // Three peers, frames both ways and from one sender to two receivers at once: what each
    // receives is exactly what was sent to it, whatever else shares the pools.
    let len = 4u64 << 20;
    let g = Geometry::new(len, 3).unwrap();
    let r = HeapRegion::new(len as usize);
    let mut pools: Vec<Pool> = (0..3).map(|i| Pool::new(&g, i).unwrap()).collect();
    let mut pairs = Vec::new();
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
        let mut p = Producer::new(&g, from, to, 0).unwrap();
        let mut c = Consumer::new(&g, from, to, 0).unwrap();
        p.reset(&r).unwrap();
        c.reset(&r).unwrap();
        pairs.push((from, p, c));
    }
    let max = pairs[0].1.ring().max_frame();
    let lens = [max, max / 2, 100];
    for k in 0..3 {
        for (i, (from, p, _)) in pairs.iter_mut().enumerate() {
            let pool = &mut pools[*from as usize];
            let frame = pattern(i as u32 * 10 + k, lens[k as usize]);
            let span = p.reserve(&r, pool, frame.len() as u32).unwrap().unwrap();
            span.write(&r, 0, &frame).unwrap();
            p.commit(&r, pool, &meta()).unwrap();
            p.publish(&r).unwrap();
        }
    }
    for (i, (_, _, c)) in pairs.iter_mut().enumerate() {
        for k in 0..3 {
            let frame = pop(c, &r).unwrap().unwrap();
            assert_eq!(frame, pattern(i as u32 * 10 + k, lens[k as usize]));
        }
        assert_eq!(pop(c, &r).unwrap(), None);
    }
}

#[test]
fn single_frame_push_pop() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    assert_eq!(c.peek(&r), Ok(None));
    let frame = pattern(1, 60);
    let d = push(&mut tx, &r, &frame).unwrap().unwrap();
    assert_eq!((d.pos, d.len), (0, 60));
    assert_eq!(tx.pool.used(), 64);
    assert_eq!(tx.p.publish(&r), Ok(0));
    assert_eq!(tx.p.published(), 1);
    assert_eq!(c.pending(&r), Ok(1));
    let seen = c.peek(&r).unwrap().unwrap();
    assert_eq!(seen, d);
    assert_eq!(seen.gso_size, 1448);
    assert_eq!(c.span(&seen).unwrap().first().start, c.ring().pool());
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), frame);
    assert_eq!(c.peek(&r), Ok(None));
    assert_eq!(c.publish(&r), Ok(0));
    assert_eq!(r.load(off::CONS_IDX), Ok(1));
    assert_eq!(tx.p.collect(&r), Ok(1));
    assert_eq!(tx.p.free_slots(), SLOTS);
    assert_eq!(tx.pool.reclaim([&tx.p]), 64);
    assert_eq!(tx.pool.free(), POOL);
    // The next frame starts at the next 64-byte boundary.
    let d = push(&mut tx, &r, &pattern(2, 1)).unwrap().unwrap();
    assert_eq!(d.pos, 64);
}

#[test]
fn batch_is_invisible_until_published() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    for seq in 0..5 {
        push(&mut tx, &r, &pattern(seq, 100 + seq))
            .unwrap()
            .unwrap();
    }
    assert_eq!(tx.p.index(), 5);
    assert_eq!(c.peek(&r), Ok(None));
    assert_eq!(r.load(off::PROD_IDX), Ok(0));
    // Committed and unpublished frames hold slots and pool bytes.
    assert_eq!(tx.p.free_slots(), SLOTS - 5);
    assert_eq!(tx.pool.used(), 5 * 128);
    assert_eq!(tx.p.publish(&r), Ok(0));
    assert_eq!(c.pending(&r), Ok(5));
    for seq in 0..5 {
        assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(seq, 100 + seq));
    }
    // Popped but not published: the producer does not get the space back yet.
    assert_eq!(tx.p.collect(&r), Ok(0));
    assert_eq!(tx.pool.reclaim([&tx.p]), 0);
    assert_eq!(c.publish(&r), Ok(0));
    assert_eq!(tx.p.collect(&r), Ok(5));
    assert_eq!(tx.p.free_slots(), SLOTS);
    assert_eq!(tx.pool.reclaim([&tx.p]), 5 * 128);
    assert_eq!(tx.p.publish(&r), Ok(5));
}

#[test]
fn full_when_slots_run_out() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    for seq in 0..SLOTS {
        push(&mut tx, &r, &pattern(seq, 1)).unwrap().unwrap();
    }
    assert_eq!(tx.p.free_slots(), 0);
    assert_eq!(tx.pool.free(), POOL - SLOTS * FRAME_ALIGN);
    assert_eq!(tx.p.reserve(&r, &tx.pool, 1), Ok(None));
    tx.p.publish(&r).unwrap();
    assert_eq!(tx.p.reserve(&r, &tx.pool, 1), Ok(None));
    pop(&mut c, &r).unwrap().unwrap();
    assert_eq!(
        tx.p.reserve(&r, &tx.pool, 1),
        Ok(None),
        "space returns only on publish"
    );
    c.publish(&r).unwrap();
    // `reserve` reads the consumer again by itself when it runs out of slots.
    assert!(tx.p.reserve(&r, &tx.pool, 1).unwrap().is_some());
    assert_eq!(tx.p.free_slots(), 1);
}

#[test]
fn full_when_the_pool_runs_out() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    let max = tx.p.ring().max_frame();
    push(&mut tx, &r, &pattern(0, max)).unwrap().unwrap();
    push(&mut tx, &r, &pattern(1, max)).unwrap().unwrap();
    assert_eq!(tx.pool.free(), 0);
    assert_eq!(tx.p.free_slots(), SLOTS - 2);
    assert_eq!(tx.p.reserve(&r, &tx.pool, 1), Ok(None));
    assert!(!tx.pool.fits(1));
    tx.p.publish(&r).unwrap();
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(0, max));
    c.publish(&r).unwrap();
    // The pool learns of it only through a collect and a reclaim.
    assert_eq!(tx.p.reserve(&r, &tx.pool, 1), Ok(None));
    tx.p.collect(&r).unwrap();
    assert_eq!(tx.pool.reclaim([&tx.p]), max);
    assert!(tx.pool.fits(max) && !tx.pool.fits(max + 1));
    push(&mut tx, &r, &pattern(2, max)).unwrap().unwrap();
}

#[test]
fn frame_that_reaches_the_pool_end_wraps_to_its_start() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    // Three frames end at 3 * 1024 + 64 = 3136; the next 1000 bytes run 40 past the end.
    for seq in 0..3 {
        push(&mut tx, &r, &pattern(seq, 1024)).unwrap().unwrap();
    }
    let d = push(&mut tx, &r, &pattern(3, 1)).unwrap().unwrap();
    assert_eq!(d.pos, 3072);
    tx.p.publish(&r).unwrap();
    for _ in 0..4 {
        pop(&mut c, &r).unwrap().unwrap();
    }
    c.publish(&r).unwrap();
    tx.p.collect(&r).unwrap();
    tx.pool.reclaim([&tx.p]);
    assert_eq!(tx.pool.free(), POOL);
    let d = push(&mut tx, &r, &pattern(4, 1000)).unwrap().unwrap();
    assert_eq!(d.pos, 3136, "no skip: the frame wraps");
    // It costs its size rounded up to 64, nothing more.
    assert_eq!(tx.pool.used(), 1024);
    tx.p.publish(&r).unwrap();
    let seen = c.peek(&r).unwrap().unwrap();
    let span = c.span(&seen).unwrap();
    let pool = c.ring().pool();
    assert_eq!(span.first(), pool + 3136..pool + POOL as usize);
    assert_eq!(span.second(), Some(pool..pool + 40));
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(4, 1000));
    // The next frame starts behind the wrapped one.
    let d = push(&mut tx, &r, &pattern(5, 10)).unwrap().unwrap();
    assert_eq!(d.pos, 64);
}

#[test]
fn max_frame_fits_a_drained_pool_at_every_position() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    let max = tx.p.ring().max_frame();
    for step in 0..(2 * POOL / FRAME_ALIGN) {
        // Move the position by one small frame, drain, then push the largest frame.
        push(&mut tx, &r, &pattern(step, 1)).unwrap().unwrap();
        tx.p.publish(&r).unwrap();
        pop(&mut c, &r).unwrap().unwrap();
        c.publish(&r).unwrap();
        tx.p.collect(&r).unwrap();
        tx.pool.reclaim([&tx.p]);
        assert!(tx.pool.fits(max));
        assert!(tx.pool.free() >= footprint(max));
        push(&mut tx, &r, &pattern(step, max)).unwrap().unwrap();
        tx.p.publish(&r).unwrap();
        assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(step, max));
        c.publish(&r).unwrap();
    }
}

#[test]
fn bad_lengths_pools_and_commit_without_reserve_are_errors() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, _) = setup(&g);
    let max = tx.p.ring().max_frame();
    let pool = &mut tx.pool;
    assert_eq!(tx.p.reserve(&r, pool, 0), Err(Error::BadFrameLen(0)));
    assert_eq!(
        tx.p.reserve(&r, pool, max + 1),
        Err(Error::BadFrameLen(max + 1))
    );
    assert_eq!(
        tx.p.reserve(&r, pool, u32::MAX),
        Err(Error::BadFrameLen(u32::MAX))
    );
    // Only the sender's own pool.
    let other = Pool::new(&g, 1).unwrap();
    assert_eq!(tx.p.reserve(&r, &other, 1), Err(Error::GeometryMismatch));
    assert_eq!(
        tx.p.commit(&r, pool, &Desc::default()),
        Err(Error::NotReserved)
    );
    tx.p.reserve(&r, pool, max).unwrap().unwrap();
    tx.p.commit(&r, pool, &Desc::default()).unwrap();
    assert_eq!(
        tx.p.commit(&r, pool, &Desc::default()),
        Err(Error::NotReserved)
    );
    assert_eq!(tx.p.index(), 1);
    // A reservation the pool moved past (another ring committed in between) is void.
    tx.p.reserve(&r, pool, 10).unwrap().unwrap();
    let mut p2 = tx.p.clone();
    p2.reserve(&r, pool, 10).unwrap().unwrap();
    p2.commit(&r, pool, &Desc::default()).unwrap();
    assert_eq!(
        tx.p.commit(&r, pool, &Desc::default()),
        Err(Error::NotReserved)
    );
    assert_eq!(tx.p.index(), 1);
}

#[test]
fn read_frame_needs_a_big_enough_buffer() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    push(&mut tx, &r, &pattern(0, 10)).unwrap().unwrap();
    tx.p.publish(&r).unwrap();
    let d = c.peek(&r).unwrap().unwrap();
    assert_eq!(
        c.read_frame(&r, &d, &mut [0u8; 9]),
        Err(Error::BadFrameLen(10))
    );
    let mut buf = [0u8; 64];
    assert_eq!(c.read_frame(&r, &d, &mut buf), Ok(10));
    assert_eq!(&buf[..10], &pattern(0, 10)[..]);
}

#[test]
fn span_pieces_split_at_the_pool_end() {
    let g = small_geometry(SLOTS, POOL);
    let (r, _, _) = setup(&g);
    let ring = Ring::new(&g, 0, 1, 0).unwrap();
    let pool = ring.pool();
    let s = ring.span(POOL - 128, 1000).unwrap();
    assert_eq!(s.len(), 1000);
    let [a, b] = s.pieces(0, 1000).unwrap();
    assert_eq!((a, b), (pool + 3968..pool + 4096, pool..pool + 872));
    let [a, b] = s.pieces(200, 10).unwrap();
    assert_eq!((a.len(), b), (0, pool + 72..pool + 82));
    let [a, b] = s.pieces(0, 128).unwrap();
    assert_eq!((a, b.len()), (pool + 3968..pool + 4096, 0));
    assert_eq!(s.pieces(1000, 1), Err(Error::OutOfBounds));
    assert_eq!(s.pieces(u32::MAX, 2), Err(Error::OutOfBounds));
    // Written in pieces, read back whole.
    let want = pattern(9, 1000);
    s.write(&r, 0, &want[..300]).unwrap();
    s.write(&r, 300, &want[300..]).unwrap();
    let mut got = vec![0u8; 1000];
    assert_eq!(s.read(&r, &mut got), Ok(1000));
    assert_eq!(got, want);
    assert_eq!(s.write(&r, 999, &[1, 2]), Err(Error::OutOfBounds));
}

#[test]
fn span_refuses_what_peek_never_returns() {
    let g = small_geometry(SLOTS, POOL);
    let (_r, _tx, c) = setup(&g);
    for (pos, len) in [
        (0, 0),
        (0, POOL / 2 + 1),
        (POOL, 1),
        (POOL - 1, u32::MAX),
        (u32::MAX, 2),
    ] {
        let d = Desc {
            pos,
            len,
            ..Desc::default()
        };
        assert_eq!(
            c.span(&d),
            Err(Error::BadFrameLen(len)),
            "pos {pos} len {len}"
        );
    }
}

/// Pushes and pops `frames` frames of varying lengths in bursts, checking every byte.
fn run_frames(r: &HeapRegion, tx: &mut Tx, c: &mut Consumer, frames: u32) {
    let max = tx.p.ring().max_frame();
    let (mut sent, mut got) = (0u32, 0u32);
    while got < frames {
        // A burst of up to five frames, published once.
        for _ in 0..5 {
            if sent == frames {
                break;
            }
            let len = 1 + (sent.wrapping_mul(2_654_435_761) % max);
            match push(tx, r, &pattern(sent, len)).unwrap() {
                Some(_) => sent += 1,
                None => break,
            }
        }
        tx.p.publish(r).unwrap();
        // Consume up to three, then publish.
        for _ in 0..3 {
            let Some(frame) = pop(c, r).unwrap() else {
                break;
            };
            let len = 1 + (got.wrapping_mul(2_654_435_761) % max);
            assert_eq!(frame, pattern(got, len), "frame {got}");
            got += 1;
        }
        c.publish(r).unwrap();
    }
    assert_eq!(c.peek(r), Ok(None));
}

#[test]
fn data_integrity_over_many_laps() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    run_frames(&r, &mut tx, &mut c, 5000);
    assert!(
        tx.pool.head() > 100 * u64::from(POOL),
        "many laps of the pool"
    );
}

#[test]
fn indices_wrap_at_u32_max() {
    let g = small_geometry(SLOTS, POOL);
    for idx in [u32::MAX - 100, u32::MAX - 3, u32::MAX, u32::MAX - 2000] {
        let (r, mut tx, mut c) = setup(&g);
        tx.p.reset_at(&r, idx).unwrap();
        c.reset_at(&r, idx).unwrap();
        assert_eq!(tx.p.free_slots(), SLOTS);
        run_frames(&r, &mut tx, &mut c, 4000);
        assert_eq!(c.index(), idx.wrapping_add(4000));
        assert!(c.index() < idx, "the index wrapped");
    }
}

#[test]
fn reset_zeroes_each_side_forgets_a_reservation_and_frees_the_pool() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    push(&mut tx, &r, &pattern(0, 100)).unwrap().unwrap();
    tx.p.publish(&r).unwrap();
    pop(&mut c, &r).unwrap().unwrap();
    c.publish(&r).unwrap();
    push(&mut tx, &r, &pattern(1, 100)).unwrap().unwrap();
    tx.p.publish(&r).unwrap();
    tx.p.reserve(&r, &tx.pool, 10).unwrap().unwrap();
    assert_eq!(tx.pool.used(), 256);
    tx.p.reset(&r).unwrap();
    c.reset(&r).unwrap();
    assert_eq!(
        tx.p.commit(&r, &mut tx.pool, &Desc::default()),
        Err(Error::NotReserved)
    );
    for w in [
        off::PROD_IDX,
        off::PROD_EVENT,
        off::CONS_IDX,
        off::CONS_EVENT,
    ] {
        assert_eq!(r.load(w), Ok(0), "word {w:#x}");
    }
    assert_eq!((tx.p.index(), c.index(), tx.p.oldest()), (0, 0, None));
    // The unconsumed frame's bytes come back: the link went down.
    assert_eq!(tx.pool.reclaim([&tx.p]), 256);
    // The pool goes on where it was; the ring starts over.
    let d = push(&mut tx, &r, &[1]).unwrap().unwrap();
    assert_eq!(d.pos, 256);
    tx.p.publish(&r).unwrap();
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), vec![1]);
}

#[test]
fn event_index_suppresses_and_delivers_kicks() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    // After reset the consumer wants to hear about the first frame.
    push(&mut tx, &r, &[1]).unwrap().unwrap();
    let old = tx.p.publish(&r).unwrap();
    assert!(tx.p.kick_needed(&r, old).unwrap());
    // It has not asked again: further publishes need no kick.
    push(&mut tx, &r, &[2]).unwrap().unwrap();
    let old = tx.p.publish(&r).unwrap();
    assert!(!tx.p.kick_needed(&r, old).unwrap());
    // The consumer drains, asks to be told about anything new, and re-checks.
    while pop(&mut c, &r).unwrap().is_some() {}
    c.publish(&r).unwrap();
    c.set_event(&r, c.index()).unwrap();
    assert_eq!(c.pending(&r), Ok(0));
    assert_eq!(tx.p.cons_event(&r), Ok(2));
    push(&mut tx, &r, &[3]).unwrap().unwrap();
    push(&mut tx, &r, &[4]).unwrap().unwrap();
    let old = tx.p.publish(&r).unwrap();
    assert!(
        tx.p.kick_needed(&r, old).unwrap(),
        "a batch crossing the event kicks once"
    );

    // TX completion the other way round: the producer waits for cons_idx to pass 3.
    tx.p.set_event(&r, 3).unwrap();
    assert_eq!(c.prod_event(&r), Ok(3));
    pop(&mut c, &r).unwrap().unwrap();
    let old = c.publish(&r).unwrap();
    assert!(!c.kick_needed(&r, old).unwrap());
    pop(&mut c, &r).unwrap().unwrap();
    let old = c.publish(&r).unwrap();
    assert!(c.kick_needed(&r, old).unwrap());
}

#[test]
fn impossible_peer_values_are_reported() {
    let g = small_geometry(SLOTS, POOL);
    fn corrupt<T>(k: Corrupt) -> Result<T, Error> {
        Err(Error::Corrupt(k))
    }

    // Consumer side.
    let (r, mut tx, mut c) = setup(&g);
    r.store(off::PROD_IDX, SLOTS + 1).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdIdx));
    assert_eq!(c.pending(&r), corrupt(Corrupt::ProdIdx));
    r.store(off::PROD_IDX, u32::MAX).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdIdx));

    let honest = |r: &HeapRegion, tx: &mut Tx, c: &mut Consumer| {
        tx.p.reset(r).unwrap();
        c.reset(r).unwrap();
        push(tx, r, &pattern(0, 100)).unwrap().unwrap();
        tx.p.publish(r).unwrap();
    };
    let desc_at = |r: &HeapRegion, d: Desc| {
        r.write(RING_HDR_LEN as usize, &d.encode()).unwrap();
    };
    honest(&r, &mut tx, &mut c);
    let good = c.peek(&r).unwrap().unwrap();
    assert_eq!(good.len, 100);
    for (d, kind) in [
        (Desc { len: 0, ..good }, Corrupt::DescLen),
        (
            Desc {
                len: POOL / 2 + 1,
                ..good
            },
            Corrupt::DescLen,
        ),
        (
            Desc {
                len: u32::MAX,
                ..good
            },
            Corrupt::DescLen,
        ),
        (Desc { pos: 32, ..good }, Corrupt::DescPos),
        (Desc { pos: 65, ..good }, Corrupt::DescPos),
        (Desc { pos: POOL, ..good }, Corrupt::DescPos),
        (
            Desc {
                pos: u32::MAX,
                ..good
            },
            Corrupt::DescPos,
        ),
    ] {
        honest(&r, &mut tx, &mut c);
        desc_at(&r, d);
        assert_eq!(c.peek(&r), corrupt(kind), "{d:?}");
    }
    // Anything else inside the pool passes: stale or overlapping ranges only spoil the
    // sender's own frames.
    for d in [
        Desc { pos: 64, ..good },
        Desc {
            pos: POOL - 64,
            len: POOL / 2,
            ..good
        },
    ] {
        honest(&r, &mut tx, &mut c);
        desc_at(&r, d);
        let seen = c.peek(&r).unwrap().unwrap();
        assert_eq!((seen.pos, seen.len), (d.pos, d.len));
        assert_in_pool(&c, &seen);
    }

    // Producer side.
    honest(&r, &mut tx, &mut c);
    r.store(off::CONS_IDX, 2).unwrap();
    assert_eq!(tx.p.collect(&r), corrupt(Corrupt::ConsIdx));
    assert_eq!(tx.p.in_flight(&r), corrupt(Corrupt::ConsIdx));
    // Nothing was taken out of flight.
    let oldest = tx.p.oldest();
    assert_eq!(tx.p.consumed(), 0);
    assert_eq!(tx.p.collect(&r), corrupt(Corrupt::ConsIdx));
    assert!(oldest.is_some() && tx.p.oldest() == oldest);
    // `reserve` goes by its last checked reading of the consumer while that leaves a slot,
    // and reports the corruption as soon as it has to look again.
    let mut pushed = 0;
    let err = loop {
        match tx.p.reserve(&r, &tx.pool, 64) {
            Ok(Some(_)) => {
                tx.p.commit(&r, &mut tx.pool, &meta()).unwrap();
                pushed += 1
            }
            other => break other,
        }
        assert!(
            pushed <= SLOTS,
            "reserve never looked at the consumer again"
        );
    };
    assert_eq!(err, corrupt(Corrupt::ConsIdx), "after {pushed} frames");
    // A consumer that moves back is as impossible as one ahead.
    honest(&r, &mut tx, &mut c);
    pop(&mut c, &r).unwrap().unwrap();
    c.publish(&r).unwrap();
    assert_eq!(tx.p.collect(&r), Ok(1));
    r.store(off::CONS_IDX, 0).unwrap();
    assert_eq!(tx.p.collect(&r), corrupt(Corrupt::ConsIdx));
    r.store(off::CONS_IDX, 1).unwrap();
    assert_eq!(tx.p.collect(&r), Ok(0));
}

#[test]
fn two_threads_stream_frames() {
    const FRAMES: u32 = 50_000;
    let g = small_geometry(64, 16 << 10);
    let r = Arc::new(HeapRegion::new(g.region_len as usize));
    let (_, mut tx, mut c) = setup(&g);
    tx.p.reset(&*r).unwrap();
    c.reset(&*r).unwrap();
    let max = tx.p.ring().max_frame();
    let len = move |seq: u32| 1 + (seq.wrapping_mul(2_654_435_761) >> 7) % max;
    let pr = r.clone();
    let producer = std::thread::spawn(move || {
        let mut seq = 0;
        while seq < FRAMES {
            let mut burst = 0;
            while seq < FRAMES && burst < 8 {
                if push(&mut tx, &*pr, &pattern(seq, len(seq)))
                    .unwrap()
                    .is_none()
                {
                    break;
                }
                seq += 1;
                burst += 1;
            }
            tx.p.publish(&*pr).unwrap();
            if burst == 0 {
                std::thread::yield_now();
            }
        }
    });
    let mut seq = 0;
    while seq < FRAMES {
        let mut n = 0;
        while let Some(frame) = pop(&mut c, &*r).unwrap() {
            assert_eq!(frame, pattern(seq, len(seq)), "frame {seq}");
            seq += 1;
            n += 1;
            if n == 16 {
                break;
            }
        }
        c.publish(&*r).unwrap();
        if n == 0 {
            std::thread::yield_now();
        }
    }
    producer.join().unwrap();
    assert_eq!(c.peek(&*r), Ok(None));
}

#[test]
fn in_flight_counts_published_unconsumed_and_rejects_impossible_cons_idx() {
    let g = small_geometry(8, 4096);
    let (r, mut tx, mut c) = setup(&g);
    assert_eq!(tx.p.in_flight(&r), Ok(0));
    for seq in 0..3 {
        push(&mut tx, &r, &pattern(seq, 100)).unwrap().unwrap();
    }
    // Committed but unpublished frames are not in flight yet.
    assert_eq!(tx.p.in_flight(&r), Ok(0));
    tx.p.publish(&r).unwrap();
    assert_eq!(tx.p.in_flight(&r), Ok(3));
    pop(&mut c, &r).unwrap().unwrap();
    c.publish(&r).unwrap();
    assert_eq!(tx.p.in_flight(&r), Ok(2));
    // A consumer index ahead of what was published, or further back than the ring holds.
    let cons_idx = tx.p.ring().base() + off::CONS_IDX;
    for bad in [4u32, 3u32.wrapping_sub(9), 0x8000_0000] {
        r.store(cons_idx, bad).unwrap();
        assert_eq!(
            tx.p.in_flight(&r),
            Err(Error::Corrupt(Corrupt::ConsIdx)),
            "cons_idx {bad:#x}"
        );
    }
}
