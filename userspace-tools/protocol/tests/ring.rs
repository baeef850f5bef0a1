// SPDX-License-Identifier: GPL-2.0
//! Unit tests of the frame ring: single and batched frames, full rings, padding, limits,
//! wrap-around of the free-running indices at 2^32, event indices, and a two-thread stress run.

mod common;

use common::*;
use ivshmem_net_protocol::layout::{Corrupt, Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{need_event, off, Consumer, Desc, Producer, Ring, FRAME_ALIGN};
use ivshmem_net_protocol::HeapRegion;
use std::sync::Arc;

const SLOTS: u32 = 16;
const DATA: u32 = 4096;

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
    let g = small_geometry(SLOTS, DATA);
    assert!(Ring::new(&g, 0, 1).is_ok());
    assert_eq!(Ring::new(&g, 0, 0), Err(Error::OutOfBounds));
    assert_eq!(Ring::new(&g, 0, 2), Err(Error::OutOfBounds));
    let bad = [
        Geometry {
            ring_slots: 12,
            ..g
        },
        Geometry { ring_slots: 0, ..g },
        Geometry {
            ring_data: 3000,
            ..g
        },
        Geometry {
            ring_data: 64,
            ring_stride: 1024,
            ..g
        },
        Geometry {
            ring_stride: g.ring_stride - 1,
            ..g
        },
    ];
    for b in bad {
        assert_eq!(Ring::new(&b, 0, 1), Err(Error::GeometryMismatch), "{b:?}");
    }
    let short = Geometry {
        region_len: g.region_len - 1,
        ..g
    };
    assert_eq!(Ring::new(&short, 1, 0), Err(Error::OutOfBounds));
    let ring = Ring::new(&g, 1, 0).unwrap();
    assert_eq!(ring.base(), g.ring_stride as usize);
    assert_eq!(
        ring.data_start(),
        ring.base() + (RING_HDR_LEN + SLOTS * DESC_LEN) as usize
    );
    assert_eq!(ring.max_frame(), DATA / 2);
}

#[test]
fn production_geometry_rings_are_independent() {
    let len = 4u64 << 20;
    let g = Geometry::new(len, 3).unwrap();
    let r = HeapRegion::new(len as usize);
    let mut pairs = Vec::new();
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
        let mut p = Producer::new(&g, from, to).unwrap();
        let mut c = Consumer::new(&g, from, to).unwrap();
        p.reset(&r).unwrap();
        c.reset(&r).unwrap();
        pairs.push((p, c));
    }
    let max = pairs[0].0.ring().max_frame();
    for (i, (p, _)) in pairs.iter_mut().enumerate() {
        for k in 0..3 {
            let frame = pattern(i as u32 * 10 + k, [max, max / 2, 100][k as usize]);
            push(p, &r, &frame).unwrap().unwrap();
        }
        p.publish(&r).unwrap();
    }
    for (i, (_, c)) in pairs.iter_mut().enumerate() {
        for k in 0..3 {
            let frame = pop(c, &r).unwrap().unwrap();
            assert_eq!(
                frame,
                pattern(i as u32 * 10 + k, [max, max / 2, 100][k as usize])
            );
        }
        assert_eq!(pop(c, &r).unwrap(), None);
    }
}

#[test]
fn single_frame_push_pop() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    assert_eq!(c.peek(&r), Ok(None));
    let frame = pattern(1, 60);
    let d = push(&mut p, &r, &frame).unwrap().unwrap();
    assert_eq!((d.pos, d.len), (0, 60));
    assert_eq!(p.publish(&r), Ok(0));
    assert_eq!(p.published(), 1);
    assert_eq!(c.pending(&r), Ok(1));
    let seen = c.peek(&r).unwrap().unwrap();
    assert_eq!(seen, d);
    assert_eq!(seen.gso_size, 1448);
    assert_eq!(c.frame_offset(&seen), c.ring().data_start());
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), frame);
    assert_eq!(c.peek(&r), Ok(None));
    assert_eq!(c.publish(&r), Ok(0));
    assert_eq!(r.load(off::CONS_IDX), Ok(1));
    assert_eq!(r.load(off::CONS_BYTES), Ok(64));
    assert_eq!(p.free_slots(&r), Ok(SLOTS));
    assert_eq!(p.free_bytes(&r), Ok(DATA));
    // The next frame starts at the next 64-byte boundary.
    let d = push(&mut p, &r, &pattern(2, 1)).unwrap().unwrap();
    assert_eq!(d.pos, 64);
}

#[test]
fn batch_is_invisible_until_published() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    for seq in 0..5 {
        push(&mut p, &r, &pattern(seq, 100 + seq)).unwrap().unwrap();
    }
    assert_eq!(p.index(), 5);
    assert_eq!(c.peek(&r), Ok(None));
    assert_eq!(r.load(off::PROD_IDX), Ok(0));
    // Uncommitted and unpublished frames still count against free space.
    assert_eq!(p.free_slots(&r), Ok(SLOTS - 5));
    assert_eq!(p.publish(&r), Ok(0));
    assert_eq!(c.pending(&r), Ok(5));
    for seq in 0..5 {
        assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(seq, 100 + seq));
    }
    // Popped but not published: the producer does not get the space back yet.
    assert_eq!(p.free_slots(&r), Ok(SLOTS - 5));
    assert_eq!(c.publish(&r), Ok(0));
    assert_eq!(p.free_slots(&r), Ok(SLOTS));
    assert_eq!(p.publish(&r), Ok(5));
}

#[test]
fn full_when_slots_run_out() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    for seq in 0..SLOTS {
        assert!(p.fits(&r, 1).unwrap());
        push(&mut p, &r, &pattern(seq, 1)).unwrap().unwrap();
    }
    assert_eq!(p.free_slots(&r), Ok(0));
    assert_eq!(p.free_bytes(&r), Ok(DATA - SLOTS * FRAME_ALIGN));
    assert!(!p.fits(&r, 1).unwrap());
    assert_eq!(p.reserve(&r, 1), Ok(None));
    p.publish(&r).unwrap();
    assert_eq!(p.reserve(&r, 1), Ok(None));
    pop(&mut c, &r).unwrap().unwrap();
    assert_eq!(p.reserve(&r, 1), Ok(None), "space returns only on publish");
    c.publish(&r).unwrap();
    assert!(p.reserve(&r, 1).unwrap().is_some());
}

#[test]
fn full_when_bytes_run_out() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    let max = p.ring().max_frame();
    push(&mut p, &r, &pattern(0, max)).unwrap().unwrap();
    push(&mut p, &r, &pattern(1, max)).unwrap().unwrap();
    assert_eq!(p.free_bytes(&r), Ok(0));
    assert_eq!(p.free_slots(&r), Ok(SLOTS - 2));
    assert_eq!(p.reserve(&r, 1), Ok(None));
    assert!(!p.has_room(&r, 1, 1).unwrap());
    assert!(p.has_room(&r, 1, 0).unwrap());
    p.publish(&r).unwrap();
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(0, max));
    c.publish(&r).unwrap();
    assert_eq!(p.free_bytes(&r), Ok(max));
    assert!(p.has_room(&r, SLOTS - 1, max).unwrap());
    assert!(!p.has_room(&r, SLOTS, max).unwrap());
    push(&mut p, &r, &pattern(2, max)).unwrap().unwrap();
}

#[test]
fn frame_that_would_wrap_skips_to_the_start() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    // Three frames end at 3 * 1024 + 64 = 3136; 1000 more bytes do not fit before 4096.
    for seq in 0..3 {
        push(&mut p, &r, &pattern(seq, 1024)).unwrap().unwrap();
    }
    let d = push(&mut p, &r, &pattern(3, 1)).unwrap().unwrap();
    assert_eq!(d.pos, 3072);
    p.publish(&r).unwrap();
    for _ in 0..4 {
        pop(&mut c, &r).unwrap().unwrap();
    }
    c.publish(&r).unwrap();
    assert_eq!(p.free_bytes(&r), Ok(DATA));
    let d = push(&mut p, &r, &pattern(4, 1000)).unwrap().unwrap();
    assert_eq!(d.pos, DATA, "skipped to the next lap");
    assert_eq!(p.free_bytes(&r), Ok(DATA - (DATA - 3136) - 1024));
    p.publish(&r).unwrap();
    let seen = c.peek(&r).unwrap().unwrap();
    assert_eq!(c.frame_offset(&seen), c.ring().data_start());
    assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(4, 1000));
}

#[test]
fn max_frame_fits_a_drained_ring_at_every_position() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    let max = p.ring().max_frame();
    for step in 0..(2 * DATA / FRAME_ALIGN) {
        // Move the position by one small frame, drain, then push the largest frame.
        push(&mut p, &r, &pattern(step, 1)).unwrap().unwrap();
        p.publish(&r).unwrap();
        pop(&mut c, &r).unwrap().unwrap();
        c.publish(&r).unwrap();
        assert!(p.fits(&r, max).unwrap());
        assert!(p.free_bytes(&r).unwrap() >= p.ring().max_footprint(max));
        push(&mut p, &r, &pattern(step, max)).unwrap().unwrap();
        p.publish(&r).unwrap();
        assert_eq!(pop(&mut c, &r).unwrap().unwrap(), pattern(step, max));
        c.publish(&r).unwrap();
    }
}

#[test]
fn bad_lengths_and_commit_without_reserve_are_errors() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, _) = setup(&g);
    let max = p.ring().max_frame();
    assert_eq!(p.reserve(&r, 0), Err(Error::BadFrameLen(0)));
    assert_eq!(p.reserve(&r, max + 1), Err(Error::BadFrameLen(max + 1)));
    assert_eq!(p.reserve(&r, u32::MAX), Err(Error::BadFrameLen(u32::MAX)));
    assert_eq!(p.fits(&r, 0), Err(Error::BadFrameLen(0)));
    assert_eq!(p.commit(&r, &Desc::default()), Err(Error::NotReserved));
    p.reserve(&r, max).unwrap().unwrap();
    p.commit(&r, &Desc::default()).unwrap();
    assert_eq!(p.commit(&r, &Desc::default()), Err(Error::NotReserved));
    assert_eq!(p.index(), 1);
}

#[test]
fn read_frame_needs_a_big_enough_buffer() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    push(&mut p, &r, &pattern(0, 10)).unwrap().unwrap();
    p.publish(&r).unwrap();
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
fn frame_range_is_the_frame_inside_the_data_area() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    // Frames at the start, after another, and after a skip to the start of the data area (the
    // third does not fit behind the second).
    let mut starts = Vec::new();
    for (seq, len) in [(3, 1500), (4, 1500), (5, DATA / 2)] {
        let want = pattern(seq, len);
        push(&mut p, &r, &want).unwrap().unwrap();
        p.publish(&r).unwrap();
        let d = c.peek(&r).unwrap().unwrap();
        let range = c.frame_range(&d).unwrap();
        assert_eq!(range.start, c.frame_offset(&d));
        assert_eq!(range.len(), len as usize);
        let data = c.ring().data_start()..c.ring().data_start() + DATA as usize;
        assert!(
            data.start <= range.start && range.end <= data.end,
            "{range:?} in {data:?}"
        );
        let mut got = vec![0u8; range.len()];
        r.read(range.start, &mut got).unwrap();
        assert_eq!(got, want);
        starts.push(range.start - data.start);
        c.pop(&d);
        c.publish(&r).unwrap();
    }
    assert_eq!(starts[0], 0);
    assert!(starts[1] >= 1500);
    assert_eq!(
        starts[2], 0,
        "the third frame should have skipped to the start"
    );
}

#[test]
fn frame_range_refuses_what_peek_never_returns() {
    let g = small_geometry(SLOTS, DATA);
    let (_r, _p, c) = setup(&g);
    for (pos, len) in [
        (0, 0),
        (0, DATA + 1),
        (DATA - 10, 11),
        (DATA - 1, u32::MAX),
        (u32::MAX, 2),
    ] {
        let d = Desc {
            pos,
            len,
            ..Desc::default()
        };
        assert_eq!(
            c.frame_range(&d),
            Err(Error::BadFrameLen(len)),
            "pos {pos} len {len}"
        );
    }
    let d = Desc {
        pos: 3 * DATA - 10,
        len: 10,
        ..Desc::default()
    };
    assert_eq!(
        c.frame_range(&d).unwrap(),
        c.ring().data_start() + DATA as usize - 10..c.ring().data_start() + DATA as usize
    );
}

/// Pushes and pops `frames` frames of varying lengths in bursts, checking every byte.
fn run_frames(r: &HeapRegion, p: &mut Producer, c: &mut Consumer, frames: u32) {
    let max = p.ring().max_frame();
    let (mut sent, mut got) = (0u32, 0u32);
    while got < frames {
        // A burst of up to five frames, published once.
        for _ in 0..5 {
            if sent == frames {
                break;
            }
            let len = 1 + (sent.wrapping_mul(2_654_435_761) % max);
            match push(p, r, &pattern(sent, len)).unwrap() {
                Some(_) => sent += 1,
                None => break,
            }
        }
        p.publish(r).unwrap();
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
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    run_frames(&r, &mut p, &mut c, 5000);
}

#[test]
fn indices_and_positions_wrap_at_u32_max() {
    let g = small_geometry(SLOTS, DATA);
    for (idx, bytes) in [
        (u32::MAX - 100, u32::MAX - 100_000),
        (u32::MAX - 3, 0u32.wrapping_sub(3 * DATA)),
        (u32::MAX, u32::MAX - 63),
        (u32::MAX - 2000, u32::MAX - 2000),
    ] {
        let (r, mut p, mut c) = setup(&g);
        p.reset_at(&r, idx, bytes).unwrap();
        c.reset_at(&r, idx, bytes).unwrap();
        assert_eq!(p.free_slots(&r), Ok(SLOTS));
        assert_eq!(p.free_bytes(&r), Ok(DATA));
        run_frames(&r, &mut p, &mut c, 4000);
        assert_eq!(c.index(), idx.wrapping_add(4000));
        assert!(c.index() < idx, "the index wrapped");
        assert!(
            r.load(off::PROD_BYTES).unwrap() < bytes,
            "the position wrapped"
        );
    }
}

#[test]
fn reset_zeroes_each_side_and_forgets_a_reservation() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    push(&mut p, &r, &pattern(0, 100)).unwrap().unwrap();
    p.publish(&r).unwrap();
    pop(&mut c, &r).unwrap().unwrap();
    c.publish(&r).unwrap();
    p.reserve(&r, 10).unwrap().unwrap();
    p.reset(&r).unwrap();
    c.reset(&r).unwrap();
    assert_eq!(p.commit(&r, &Desc::default()), Err(Error::NotReserved));
    for w in [
        off::PROD_IDX,
        off::PROD_BYTES,
        off::PROD_EVENT,
        off::CONS_IDX,
        off::CONS_BYTES,
        off::CONS_EVENT,
    ] {
        assert_eq!(r.load(w), Ok(0), "word {w:#x}");
    }
    assert_eq!((p.index(), c.index()), (0, 0));
    assert_eq!(push(&mut p, &r, &[1]).unwrap().unwrap().pos, 0);
}

#[test]
fn event_index_suppresses_and_delivers_kicks() {
    let g = small_geometry(SLOTS, DATA);
    let (r, mut p, mut c) = setup(&g);
    // After reset the consumer wants to hear about the first frame.
    push(&mut p, &r, &[1]).unwrap().unwrap();
    let old = p.publish(&r).unwrap();
    assert!(p.kick_needed(&r, old).unwrap());
    // It has not asked again: further publishes need no kick.
    push(&mut p, &r, &[2]).unwrap().unwrap();
    let old = p.publish(&r).unwrap();
    assert!(!p.kick_needed(&r, old).unwrap());
    // The consumer drains, asks to be told about anything new, and re-checks.
    while pop(&mut c, &r).unwrap().is_some() {}
    c.publish(&r).unwrap();
    c.set_event(&r, c.index()).unwrap();
    assert_eq!(c.pending(&r), Ok(0));
    assert_eq!(p.cons_event(&r), Ok(2));
    push(&mut p, &r, &[3]).unwrap().unwrap();
    push(&mut p, &r, &[4]).unwrap().unwrap();
    let old = p.publish(&r).unwrap();
    assert!(
        p.kick_needed(&r, old).unwrap(),
        "a batch crossing the event kicks once"
    );

    // TX completion the other way round: the producer waits for cons_idx to pass 3.
    p.set_event(&r, 3).unwrap();
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
    let g = small_geometry(SLOTS, DATA);
    fn corrupt<T>(k: Corrupt) -> Result<T, Error> {
        Err(Error::Corrupt(k))
    }

    // Consumer side.
    let (r, mut p, mut c) = setup(&g);
    r.store(off::PROD_IDX, SLOTS + 1).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdIdx));
    assert_eq!(c.pending(&r), corrupt(Corrupt::ProdIdx));
    r.store(off::PROD_IDX, u32::MAX).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdIdx));

    let honest = |r: &HeapRegion, p: &mut Producer, c: &mut Consumer| {
        p.reset(r).unwrap();
        c.reset(r).unwrap();
        push(p, r, &pattern(0, 100)).unwrap().unwrap();
        p.publish(r).unwrap();
    };
    let desc_at = |r: &HeapRegion, d: Desc| {
        r.write(RING_HDR_LEN as usize, &d.encode()).unwrap();
    };
    let good = Desc {
        pos: 0,
        len: 100,
        ..Desc::default()
    };
    honest(&r, &mut p, &mut c);
    assert_eq!(c.peek(&r).unwrap().map(|d| (d.pos, d.len)), Some((0, 100)));
    for (d, kind) in [
        (Desc { len: 0, ..good }, Corrupt::DescLen),
        (
            Desc {
                len: DATA / 2 + 1,
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
        (Desc { pos: 64, ..good }, Corrupt::DescPos),
        (Desc { pos: DATA, ..good }, Corrupt::DescPos),
        (
            Desc {
                pos: u32::MAX,
                ..good
            },
            Corrupt::DescPos,
        ),
        // Beyond the 128 bytes published.
        (Desc { len: 129, ..good }, Corrupt::DescPos),
    ] {
        honest(&r, &mut p, &mut c);
        desc_at(&r, d);
        assert_eq!(c.peek(&r), corrupt(kind), "{d:?}");
    }
    honest(&r, &mut p, &mut c);
    r.store(off::PROD_BYTES, DATA + 64).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdBytes));
    r.store(off::PROD_BYTES, u32::MAX).unwrap();
    assert_eq!(c.peek(&r), corrupt(Corrupt::ProdBytes));

    // Producer side.
    honest(&r, &mut p, &mut c);
    r.store(off::CONS_IDX, 2).unwrap();
    assert_eq!(p.fits(&r, 1), corrupt(Corrupt::ConsIdx));
    assert_eq!(p.free_slots(&r), corrupt(Corrupt::ConsIdx));
    // `reserve` goes by its last checked reading of the consumer while that leaves room, and
    // reports the corruption as soon as it has to look again.
    let mut pushed = 0;
    let err = loop {
        match push(&mut p, &r, &[7; 64]) {
            Ok(Some(_)) => pushed += 1,
            other => break other,
        }
        assert!(
            pushed <= SLOTS,
            "reserve never looked at the consumer again"
        );
    };
    assert_eq!(err, corrupt(Corrupt::ConsIdx), "after {pushed} frames");
    honest(&r, &mut p, &mut c);
    r.store(off::CONS_IDX, 1).unwrap();
    r.store(off::CONS_BYTES, 192).unwrap();
    assert_eq!(p.fits(&r, 1), corrupt(Corrupt::ConsBytes));
    r.store(off::CONS_BYTES, 0u32.wrapping_sub(DATA)).unwrap();
    assert_eq!(p.has_room(&r, 1, 1), corrupt(Corrupt::ConsBytes));
    // A consumer that is behind is fine; one that claims what was not published is not.
    r.store(off::CONS_IDX, 0).unwrap();
    r.store(off::CONS_BYTES, 0).unwrap();
    push(&mut p, &r, &[1]).unwrap().unwrap();
    assert_eq!(p.free_slots(&r), Ok(SLOTS - 2));
    r.store(off::CONS_IDX, 2).unwrap();
    assert_eq!(p.free_slots(&r), corrupt(Corrupt::ConsIdx));
}

#[test]
fn two_threads_stream_frames() {
    const FRAMES: u32 = 50_000;
    let g = small_geometry(64, 16 << 10);
    let r = Arc::new(HeapRegion::new(g.region_len as usize));
    let mut p = Producer::new(&g, 0, 1).unwrap();
    let mut c = Consumer::new(&g, 0, 1).unwrap();
    p.reset(&*r).unwrap();
    c.reset_at(&*r, 0, 0).unwrap();
    let max = p.ring().max_frame();
    let len = move |seq: u32| 1 + (seq.wrapping_mul(2_654_435_761) >> 7) % max;
    let pr = r.clone();
    let producer = std::thread::spawn(move || {
        let mut seq = 0;
        while seq < FRAMES {
            let mut burst = 0;
            while seq < FRAMES && burst < 8 {
                if push(&mut p, &*pr, &pattern(seq, len(seq)))
                    .unwrap()
                    .is_none()
                {
                    break;
                }
                seq += 1;
                burst += 1;
            }
            p.publish(&*pr).unwrap();
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
    let g = common::small_geometry(8, 4096);
    let (r, mut p, mut c) = common::setup(&g);
    assert_eq!(p.in_flight(&r), Ok(0));
    for seq in 0..3 {
        let off = p.reserve(&r, 100).unwrap().unwrap();
        r.write(off, &common::pattern(seq, 100)).unwrap();
        p.commit(&r, &Desc::default()).unwrap();
    }
    // Committed but unpublished frames are not in flight yet.
    assert_eq!(p.in_flight(&r), Ok(0));
    p.publish(&r).unwrap();
    assert_eq!(p.in_flight(&r), Ok(3));
    let d = c.peek(&r).unwrap().unwrap();
    c.pop(&d);
    c.publish(&r).unwrap();
    assert_eq!(p.in_flight(&r), Ok(2));
    // A consumer index ahead of what was published, or further back than the ring holds.
    let cons_idx = p.ring().base() + ivshmem_net_protocol::ring::off::CONS_IDX;
    for bad in [4u32, 3u32.wrapping_sub(9), 0x8000_0000] {
        r.store(cons_idx, bad).unwrap();
        assert_eq!(
            p.in_flight(&r),
            Err(Error::Corrupt(
                ivshmem_net_protocol::layout::Corrupt::ConsIdx
            )),
            "cons_idx {bad:#x}"
        );
    }
}
