// SPDX-License-Identifier: GPL-2.0
//! Property test of the rings and their shared pool against a model: peer 0 sends to peers 1
//! and 2 from one pool, in random sequences of reserve and commit, publish, pop, consumer
//! publish and collect-and-reclaim, with ring indices starting anywhere (near the wrap at 2^32
//! too). Every popped frame equals the pushed one, in order per ring; the producer accepts a
//! frame exactly when the model, which does its arithmetic on unbounded integers, says it fits,
//! at the pool offset the model says; and no reservation ever covers a byte of a frame its
//! consumer has not given back.

mod common;

use common::*;
use ivshmem_net_protocol::layout::Region;
use ivshmem_net_protocol::ring::{footprint, off, Consumer, Pool, Producer, FRAME_ALIGN};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    Push(usize, u32),
    Publish(usize),
    Pop(usize),
    ConsPublish(usize),
    Reclaim,
}

/// Lengths biased to the interesting ones: tiny, around the alignment, and near the maximum.
fn len(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        1..=8u32,
        (FRAME_ALIGN - 2)..=(FRAME_ALIGN + 2),
        1..=max,
        (max - 70)..=max,
    ]
}

fn ops(max: u32) -> impl Strategy<Value = Vec<Op>> {
    let dest = 0..2usize;
    prop::collection::vec(
        prop_oneof![
            5 => (dest.clone(), len(max)).prop_map(|(d, l)| Op::Push(d, l)),
            2 => dest.clone().prop_map(Op::Publish),
            3 => dest.clone().prop_map(Op::Pop),
            2 => dest.prop_map(Op::ConsPublish),
            2 => Just(Op::Reclaim),
        ],
        1..400,
    )
}

/// Where the ring indices and the pool's serials start: anywhere, and near the wraps at 2^32
/// (indices are `u32`; producers keep the low 32 bits of serials).
fn start() -> impl Strategy<Value = (u32, u64)> {
    (
        prop_oneof![Just(0), any::<u32>(), (u32::MAX - 40)..=u32::MAX],
        prop_oneof![
            Just(0u64),
            (1u64 << 32) - 20_000..(1u64 << 32),
            (5u64 << 32) - 3000..(5u64 << 32) + 10,
            0..u64::MAX / 2,
        ],
    )
}

/// The model of one ring: frames as queues, indices as unbounded integers.
#[derive(Default)]
struct RingModel {
    /// Committed, not published: (pool serial, bytes).
    committed: VecDeque<(u64, Vec<u8>)>,
    /// Published, not popped.
    published: VecDeque<(u64, Vec<u8>)>,
    /// Popped, not given back.
    popped: VecDeque<u64>,
    /// Given back by the consumer, not yet collected by the producer (serials).
    returned: VecDeque<u64>,
    /// Committed and not collected, in order (serials): what holds the pool.
    held: VecDeque<u64>,
    prod_idx: u64,
    cons_published: u64,
    cons_seen: u64,
}

struct Model {
    rings: [RingModel; 2],
    head: u64,
    tail: u64,
    seq: u32,
}

struct Side {
    p: Producer,
    c: Consumer,
}

/// Who holds each pool byte: the serial of the frame on it, or `None`.
fn mark(owners: &mut [Option<u64>], pos: u32, len: u32, serial: Option<u64>) {
    let n = owners.len() as u32;
    for i in 0..len {
        owners[((pos + i) % n) as usize] = serial;
    }
}

fn check(slots: u32, pool_len: u32, (idx, serial): (u32, u64), ops: Vec<Op>) {
    let g = geometry(3, slots, pool_len);
    let r = HeapRegion::new(g.region_len as usize);
    let mut pool = Pool::starting_at(&g, 0, serial).unwrap();
    let mut sides: Vec<Side> = [1, 2]
        .into_iter()
        .map(|to| {
            let mut p = Producer::new(&g, 0, to, 0).unwrap();
            let mut c = Consumer::new(&g, 0, to, 0).unwrap();
            p.reset_at(&r, idx).unwrap();
            c.reset_at(&r, idx).unwrap();
            Side { p, c }
        })
        .collect();
    let serial = serial & !u64::from(FRAME_ALIGN - 1);
    let mut m = Model {
        rings: Default::default(),
        head: serial,
        tail: serial,
        seq: 0,
    };
    for ring in &mut m.rings {
        ring.prod_idx = idx.into();
        ring.cons_published = idx.into();
        ring.cons_seen = idx.into();
    }
    // Bytes of frames not yet given back by their consumer, by pool offset.
    let mut owners = vec![None; pool_len as usize];
    let mut pos_of = std::collections::HashMap::new();
    let max = sides[0].p.ring().max_frame();
    for op in ops {
        match op {
            Op::Push(d, len) => {
                let ring = &mut m.rings[d];
                // `reserve` reads the consumer again when it has no slot left.
                if ring.prod_idx - ring.cons_seen == slots as u64 {
                    ring.cons_seen = ring.cons_published;
                    ring.held.drain(..ring.returned.len());
                    ring.returned.clear();
                }
                let slot_free = ring.prod_idx - ring.cons_seen < slots as u64;
                let foot = footprint(len) as u64;
                let fits = slot_free && foot <= pool_len as u64 - (m.head - m.tail);
                let frame = pattern(m.seq, len);
                let side = &mut sides[d];
                let got = side.p.reserve(&r, &pool, len).unwrap();
                assert_eq!(got.is_some(), fits, "{len} bytes to {d}");
                assert_eq!(
                    side.p.consumed() as u64 & 0xffff_ffff,
                    ring.cons_seen & 0xffff_ffff
                );
                let Some(span) = got else { continue };
                let pos = (m.head % pool_len as u64) as u32;
                assert_eq!(span.first().start, pool.base() + pos as usize);
                // Never a byte of a frame still in flight.
                for i in 0..len {
                    let at = ((pos + i) % pool_len) as usize;
                    assert_eq!(owners[at], None, "byte {at} handed out twice");
                }
                span.write(&r, 0, &frame).unwrap();
                let desc = side.p.commit(&r, &mut pool, &meta()).unwrap();
                assert_eq!((desc.pos, desc.len), (pos, len));
                mark(&mut owners, pos, len, Some(m.head));
                pos_of.insert(m.head, (pos, len));
                ring.committed.push_back((m.head, frame));
                ring.held.push_back(m.head);
                ring.prod_idx += 1;
                m.head += foot;
                m.seq += 1;
            }
            Op::Publish(d) => {
                sides[d].p.publish(&r).unwrap();
                let ring = &mut m.rings[d];
                ring.published.extend(ring.committed.drain(..));
                let prod = sides[d].p.ring().base() + off::PROD_IDX;
                assert_eq!(r.load(prod).unwrap() as u64, ring.prod_idx & 0xffff_ffff);
            }
            Op::Pop(d) => {
                let got = pop(&mut sides[d].c, &r).unwrap();
                let ring = &mut m.rings[d];
                match (got, ring.published.pop_front()) {
                    (None, None) => {}
                    (Some(frame), Some((serial, want))) => {
                        assert_eq!(frame, want);
                        ring.popped.push_back(serial);
                    }
                    (got, want) => panic!("popped {got:?}, model {want:?}"),
                }
            }
            Op::ConsPublish(d) => {
                sides[d].c.publish(&r).unwrap();
                let ring = &mut m.rings[d];
                ring.cons_published += ring.popped.len() as u64;
                for serial in ring.popped.drain(..) {
                    let (pos, len) = pos_of[&serial];
                    mark(&mut owners, pos, len, None);
                    ring.returned.push_back(serial);
                }
            }
            Op::Reclaim => {
                for (side, ring) in sides.iter_mut().zip(&mut m.rings) {
                    let n = side.p.collect(&r).unwrap();
                    assert_eq!(n as usize, ring.returned.len());
                    ring.cons_seen = ring.cons_published;
                    ring.held.drain(..ring.returned.len());
                    ring.returned.clear();
                }
                let oldest = m.rings.iter().filter_map(|x| x.held.front()).min();
                let tail = oldest.copied().unwrap_or(m.head);
                let freed = pool.reclaim(sides.iter().map(|s| &s.p));
                assert_eq!(freed as u64, tail - m.tail);
                m.tail = tail;
            }
        }
        assert_eq!((pool.head(), pool.tail()), (m.head, m.tail));
        for (side, ring) in sides.iter().zip(&m.rings) {
            assert_eq!(side.c.pending(&r).unwrap() as usize, ring.published.len());
            assert_eq!(
                side.p.free_slots() as u64,
                slots as u64 - (ring.prod_idx - ring.cons_seen)
            );
        }
    }
    // Drain: everything committed comes out, in order, and then the pool is empty again.
    for (side, ring) in sides.iter_mut().zip(&mut m.rings) {
        side.p.publish(&r).unwrap();
        ring.published.extend(ring.committed.drain(..));
        while let Some((_, want)) = ring.published.pop_front() {
            assert_eq!(pop(&mut side.c, &r).unwrap(), Some(want));
        }
        assert_eq!(pop(&mut side.c, &r).unwrap(), None);
        side.c.publish(&r).unwrap();
        side.p.collect(&r).unwrap();
        assert_eq!(side.p.free_slots(), slots);
    }
    pool.reclaim(sides.iter().map(|s| &s.p));
    assert_eq!(pool.free(), pool_len);
    assert!(pool.fits(max));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_model_small(start in start(), ops in ops(128)) {
        check(4, 256, start, ops);
    }

    #[test]
    fn pool_matches_model_medium(start in start(), ops in ops(2048)) {
        check(16, 4096, start, ops);
    }

    #[test]
    fn pool_matches_model_many_slots(start in start(), ops in ops(512)) {
        check(64, 1024, start, ops);
    }
}
