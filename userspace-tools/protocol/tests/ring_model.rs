// SPDX-License-Identifier: GPL-2.0
//! Property test of the rings and their shared pool against a model: peer 0 sends to peers 1
//! and 2 from one pool, in random sequences of reserve and commit, publish, pop, consumer
//! publish and collect-and-reclaim, with ring indices starting anywhere (near the wrap at 2^32
//! too). Every popped frame equals the pushed one, in order per ring; the producer accepts a
//! frame exactly when the model, which does its arithmetic on unbounded integers, says it fits,
//! at the pool offset the model says; and no reservation ever covers a byte of a frame its
//! consumer has not given back.
//!
//! The same with the pool in partitions (issue 19): peer 0 sends on 2 or 3 queues, the rings
//! of queue `q` (to peers 1 and 2) taking frames from partition `q`. Every frame lies inside
//! its partition in one piece (one that would run past the partition's end starts at its
//! start, the skipped bytes handed out with it), no two frames in flight share a byte over the
//! whole pool, and once drained every partition has all its bytes back.

mod common;

use common::*;
use ivshmem_net_protocol::layout::Region;
use ivshmem_net_protocol::ring::{footprint, off, Consumer, Pool, Producer, FRAME_ALIGN};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone)]
enum Op {
    /// A frame of `.1` bytes on ring `.0` (to peer `1 + .0 / queues` on queue `.0 % queues`).
    Push(usize, u32),
    Publish(usize),
    Pop(usize),
    ConsPublish(usize),
    /// Collect every ring, reclaim every partition.
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

fn ops(rings: usize, max: u32, n: usize) -> impl Strategy<Value = Vec<Op>> {
    let ring = 0..rings;
    prop::collection::vec(
        prop_oneof![
            5 => (ring.clone(), len(max)).prop_map(|(d, l)| Op::Push(d, l)),
            2 => ring.clone().prop_map(Op::Publish),
            3 => ring.clone().prop_map(Op::Pop),
            2 => ring.prop_map(Op::ConsPublish),
            2 => Just(Op::Reclaim),
        ],
        1..n,
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

/// The model of one partition's allocator: serials as unbounded integers.
struct PartModel {
    head: u64,
    tail: u64,
}

struct Side {
    p: Producer,
    c: Consumer,
}

/// Who holds each `FRAME_ALIGN` granule of the whole pool: (partition, serial) of the frame
/// on it, or `None`. Frames start on a granule and own their footprint.
fn mark(owners: &mut [Option<(usize, u64)>], pos: u32, len: u32, who: Option<(usize, u64)>) {
    let n = owners.len();
    let first = (pos / FRAME_ALIGN) as usize;
    for k in 0..(footprint(len) / FRAME_ALIGN) as usize {
        owners[(first + k) % n] = who;
    }
}

/// Runs `ops` on `queues` queues from peer 0 to peers 1 and 2 (ring `k` is to peer
/// `1 + k / queues` on queue `k % queues`), each queue on its partition of `queues`.
fn check(queues: u32, slots: u32, pool_len: u32, (idx, serial): (u32, u64), ops: Vec<Op>) {
    let g = geometry_queues(3, queues, slots, pool_len);
    assert!(Pool::max_partitions(&g) >= queues);
    let r = HeapRegion::new(g.region_len as usize);
    let count = queues as usize;
    let mut pools: Vec<Pool> = (0..queues)
        .map(|q| {
            Pool::partition(&g, 0, q, queues)
                .unwrap()
                .starting_at(serial)
        })
        .collect();
    let plen = pools[0].len();
    assert!(pools
        .iter()
        .all(|p| p.len() == plen && p.len() % FRAME_ALIGN == 0));
    let mut sides: Vec<Side> = (0..2 * queues)
        .map(|k| {
            let (to, q) = (1 + k / queues, k % queues);
            let mut p = Producer::new(&g, 0, to, q).unwrap();
            let mut c = Consumer::new(&g, 0, to, q).unwrap();
            p.reset_at(&r, idx).unwrap();
            c.reset_at(&r, idx).unwrap();
            Side { p, c }
        })
        .collect();
    let serial = serial & !u64::from(FRAME_ALIGN - 1);
    let mut parts: Vec<PartModel> = (0..count)
        .map(|_| PartModel {
            head: serial,
            tail: serial,
        })
        .collect();
    let mut rings: Vec<RingModel> = (0..2 * count).map(|_| RingModel::default()).collect();
    for ring in &mut rings {
        ring.prod_idx = idx.into();
        ring.cons_published = idx.into();
        ring.cons_seen = idx.into();
    }
    let mut seq = 0u32;
    // Granules of frames not yet given back by their consumer.
    let mut owners = vec![None; (pool_len / FRAME_ALIGN) as usize];
    let mut pos_of = HashMap::new();
    let max = sides[0].p.ring().max_frame();
    let pool_base = sides[0].p.ring().pool();
    for op in ops {
        match op {
            Op::Push(k, len) => {
                let q = k % count;
                let ring = &mut rings[k];
                // `reserve` reads the consumer again when it has no slot left.
                if ring.prod_idx - ring.cons_seen == slots as u64 {
                    ring.cons_seen = ring.cons_published;
                    ring.held.drain(..ring.returned.len());
                    ring.returned.clear();
                }
                let slot_free = ring.prod_idx - ring.cons_seen < slots as u64;
                let foot = footprint(len) as u64;
                let part = &mut parts[q];
                let at = part.head % plen as u64;
                // A partition of several never wraps a frame: it skips to its start.
                let (at, need) = if count == 1 || at + foot <= plen as u64 {
                    (at, foot)
                } else {
                    (0, plen as u64 - at + foot)
                };
                let fits = slot_free && need <= plen as u64 - (part.head - part.tail);
                let frame = pattern(seq, len);
                let side = &mut sides[k];
                let got = side.p.reserve(&r, &pools[q], len).unwrap();
                assert_eq!(got.is_some(), fits, "{len} bytes on ring {k}");
                assert_eq!(pools[q].needs(len) as u64, need);
                assert_eq!(
                    side.p.consumed() as u64 & 0xffff_ffff,
                    ring.cons_seen & 0xffff_ffff
                );
                let Some(span) = got else { continue };
                let pos = q as u32 * plen + at as u32;
                assert_eq!(span.first().start, pool_base + pos as usize);
                if count > 1 {
                    // Inside the partition, in one piece.
                    assert_eq!(span.second(), None);
                    assert!(
                        at + len as u64 <= plen as u64,
                        "{len} bytes at {at} of {plen}"
                    );
                }
                // Never a byte of a frame still in flight, in any partition.
                let first = (pos / FRAME_ALIGN) as usize;
                for g in 0..(foot / FRAME_ALIGN as u64) as usize {
                    let g = (first + g) % owners.len();
                    assert_eq!(owners[g], None, "granule {g} handed out twice");
                }
                span.write(&r, 0, &frame).unwrap();
                let desc = side.p.commit(&r, &mut pools[q], &meta()).unwrap();
                assert_eq!((desc.pos, desc.len), (pos, len));
                mark(&mut owners, pos, len, Some((q, part.head)));
                pos_of.insert((q, part.head), (pos, len));
                ring.committed.push_back((part.head, frame));
                ring.held.push_back(part.head);
                ring.prod_idx += 1;
                part.head += need;
                seq += 1;
            }
            Op::Publish(k) => {
                sides[k].p.publish(&r).unwrap();
                let ring = &mut rings[k];
                ring.published.extend(ring.committed.drain(..));
                let prod = sides[k].p.ring().base() + off::PROD_IDX;
                assert_eq!(r.load(prod).unwrap() as u64, ring.prod_idx & 0xffff_ffff);
            }
            Op::Pop(k) => {
                let got = pop(&mut sides[k].c, &r).unwrap();
                let ring = &mut rings[k];
                match (got, ring.published.pop_front()) {
                    (None, None) => {}
                    (Some(frame), Some((serial, want))) => {
                        assert_eq!(frame, want);
                        ring.popped.push_back(serial);
                    }
                    (got, want) => panic!("popped {got:?}, model {want:?}"),
                }
            }
            Op::ConsPublish(k) => {
                sides[k].c.publish(&r).unwrap();
                let q = k % count;
                let ring = &mut rings[k];
                ring.cons_published += ring.popped.len() as u64;
                for serial in ring.popped.drain(..) {
                    let (pos, len) = pos_of[&(q, serial)];
                    mark(&mut owners, pos, len, None);
                    ring.returned.push_back(serial);
                }
            }
            Op::Reclaim => {
                for (side, ring) in sides.iter_mut().zip(&mut rings) {
                    let n = side.p.collect(&r).unwrap();
                    assert_eq!(n as usize, ring.returned.len());
                    ring.cons_seen = ring.cons_published;
                    ring.held.drain(..ring.returned.len());
                    ring.returned.clear();
                }
                for (q, (pool, part)) in pools.iter_mut().zip(&mut parts).enumerate() {
                    let of_q = |k: &usize| k % count == q;
                    let oldest = (0..2 * count)
                        .filter(of_q)
                        .filter_map(|k| rings[k].held.front())
                        .min();
                    let tail = oldest.copied().unwrap_or(part.head);
                    let freed = pool.reclaim((0..2 * count).filter(of_q).map(|k| &sides[k].p));
                    assert_eq!(freed as u64, tail - part.tail);
                    part.tail = tail;
                }
            }
        }
        for (pool, part) in pools.iter().zip(&parts) {
            assert_eq!((pool.head(), pool.tail()), (part.head, part.tail));
        }
        for (side, ring) in sides.iter().zip(&rings) {
            assert_eq!(side.c.pending(&r).unwrap() as usize, ring.published.len());
            assert_eq!(
                side.p.free_slots() as u64,
                slots as u64 - (ring.prod_idx - ring.cons_seen)
            );
        }
    }
    // Drain: everything committed comes out, in order, and then every partition is empty.
    for (side, ring) in sides.iter_mut().zip(&mut rings) {
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
    for (q, pool) in pools.iter_mut().enumerate() {
        pool.reclaim(
            (0..2 * count)
                .filter(|k| k % count == q)
                .map(|k| &sides[k].p),
        );
        assert_eq!(pool.free(), plen);
        assert!(pool.fits(max));
    }
}

/// A pool of `count` partitions that each just hold two largest frames, plus `slack` bytes.
fn partitioned_pool(count: u32, slack: u32) -> u32 {
    count * 2 * footprint(128 << 10) + slack
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_model_small(start in start(), ops in ops(2, 128, 400)) {
        check(1, 4, 256, start, ops);
    }

    #[test]
    fn pool_matches_model_medium(start in start(), ops in ops(2, 2048, 400)) {
        check(1, 16, 4096, start, ops);
    }

    #[test]
    fn pool_matches_model_many_slots(start in start(), ops in ops(2, 512, 400)) {
        check(1, 64, 1024, start, ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn partitions_match_model_two(start in start(), ops in ops(4, 128 << 10, 300)) {
        check(2, 8, partitioned_pool(2, 4096 + 64), start, ops);
    }

    #[test]
    fn partitions_match_model_three(start in start(), ops in ops(6, 128 << 10, 300)) {
        check(3, 4, partitioned_pool(3, 3 * 64), start, ops);
    }
}
