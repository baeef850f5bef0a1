// SPDX-License-Identifier: GPL-2.0
//! A sender's pool in partitions, one per transmit queue (issue 19): where the partitions lie
//! and how many a region allows, frames that skip a partition's tail instead of wrapping,
//! a largest frame fitting a drained partition wherever its head is, queues that fill and
//! drain independently, waking a stopped queue, the errors of mixing partitions up, and a
//! hostile consumer on one queue's ring that cannot make the producer hand out a byte
//! outside that queue's partition.

mod common;

use common::*;
use ivshmem_net_protocol::layout::{Corrupt, Error, Geometry, Region};
use ivshmem_net_protocol::ring::{footprint, off, Consumer, Desc, Pool, Producer, FRAME_ALIGN};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;

const MAX: u32 = 128 << 10;

/// Two queues from peer 0 to peer 1, on partitions 0 and 1 of a pool of two smallest
/// partitions plus `slack` bytes.
fn two_queues(
    slack: u32,
) -> (
    Geometry,
    HeapRegion,
    [Pool; 2],
    [Producer; 2],
    [Consumer; 2],
) {
    let g = geometry_queues(2, 2, 16, 2 * 2 * footprint(MAX) + slack);
    let r = HeapRegion::new(g.region_len as usize);
    let pools = [0, 1].map(|q| Pool::partition(&g, 0, q, 2).unwrap());
    let tx = [0, 1].map(|q| {
        let mut p = Producer::new(&g, 0, 1, q).unwrap();
        p.reset(&r).unwrap();
        p
    });
    let rx = [0, 1].map(|q| {
        let mut c = Consumer::new(&g, 0, 1, q).unwrap();
        c.reset(&r).unwrap();
        c
    });
    (g, r, pools, tx, rx)
}

fn send(r: &HeapRegion, pool: &mut Pool, tx: &mut Producer, seq: u32, len: u32) -> Option<Desc> {
    let span = tx.reserve(r, pool, len).unwrap()?;
    span.write(r, 0, &pattern(seq, len)).unwrap();
    let d = tx.commit(r, pool, &meta()).unwrap();
    tx.publish(r).unwrap();
    Some(d)
}

#[test]
fn partitions_tile_the_pool_and_max_partitions_is_the_largest_that_holds_two_frames() {
    for len in [4u64 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20, 256 << 20] {
        for peers in [2, 3, 4, 8, 16] {
            let Ok(g) = Geometry::new(len, peers) else {
                continue;
            };
            let n = Pool::max_partitions(&g);
            assert!(
                (1..=g.queues).contains(&n),
                "{len} {peers}: {n} of {}",
                g.queues
            );
            let whole = Pool::new(&g, 0).unwrap();
            assert_eq!(Pool::partition(&g, 0, 0, 1).unwrap(), whole);
            for count in 2..=n {
                let parts: Vec<Pool> = (0..count)
                    .map(|q| Pool::partition(&g, peers - 1, q, count).unwrap())
                    .collect();
                let pool_at = g.pool_offset(peers - 1).unwrap();
                let mut end = 0;
                for p in &parts {
                    assert_eq!(p.offset(), end);
                    assert_eq!(p.base(), pool_at + p.offset() as usize);
                    assert_eq!(p.len() % FRAME_ALIGN, 0);
                    assert!(p.len() >= 2 * footprint(p.max_frame()));
                    assert_eq!(p.max_frame(), whole.max_frame());
                    assert!(!p.wraps());
                    end += p.len();
                }
                assert!(end <= g.pool_len && g.pool_len - end < count * FRAME_ALIGN);
            }
            // One more would not hold two largest frames each, or there are no more rings.
            let more = n + 1;
            let short = (g.pool_len / more) & !(FRAME_ALIGN - 1) < 2 * footprint(whole.max_frame());
            assert!(n == g.queues || short, "{len} {peers}: {n}");
            assert_eq!(Pool::partition(&g, 0, 0, more), Err(Error::OutOfBounds));
        }
    }
    let g = Geometry::new(32 << 20, 8).unwrap();
    assert_eq!((g.queues, Pool::max_partitions(&g)), (4, 4));
    assert_eq!(Pool::partition(&g, 0, 0, 0), Err(Error::OutOfBounds));
    assert_eq!(Pool::partition(&g, 0, 4, 4), Err(Error::OutOfBounds));
}

#[test]
fn a_frame_that_would_run_past_the_partition_end_starts_at_its_start() {
    let (_, r, mut pools, mut tx, mut rx) = two_queues(0);
    let plen = pools[1].len();
    // Frames of 100 KiB on queue 1: the third would cross the partition's end (300 > 256 KiB).
    let len = 100 << 10;
    let a = send(&r, &mut pools[1], &mut tx[1], 0, len).unwrap();
    let b = send(&r, &mut pools[1], &mut tx[1], 1, len).unwrap();
    assert_eq!((a.pos, b.pos), (plen, plen + footprint(len)));
    // No room: it needs the partition's tail and its own footprint.
    let tail = plen - 2 * footprint(len);
    assert_eq!(pools[1].needs(len), tail + footprint(len));
    assert!(send(&r, &mut pools[1], &mut tx[1], 2, len).is_none());
    // The receiver takes the first frame: now it fits, at the partition's start.
    assert_eq!(pop(&mut rx[1], &r).unwrap(), Some(pattern(0, len)));
    rx[1].publish(&r).unwrap();
    tx[1].collect(&r).unwrap();
    assert_eq!(pools[1].reclaim([&tx[1]]), footprint(len));
    let c = send(&r, &mut pools[1], &mut tx[1], 2, len).unwrap();
    assert_eq!(c.pos, plen);
    assert_eq!(pools[1].used(), footprint(len) + tail + footprint(len));
    // Its span is one piece inside the partition; the receiver reads it whole.
    assert_eq!(pop(&mut rx[1], &r).unwrap(), Some(pattern(1, len)));
    assert_eq!(pop(&mut rx[1], &r).unwrap(), Some(pattern(2, len)));
    rx[1].publish(&r).unwrap();
    tx[1].collect(&r).unwrap();
    // The skipped tail came back with the frame after it.
    pools[1].reclaim([&tx[1]]);
    assert_eq!(pools[1].free(), plen);
    // Queue 0 was never touched.
    assert_eq!((pools[0].used(), pools[0].head()), (0, 0));
}

#[test]
fn a_largest_frame_fits_a_drained_partition_at_every_head_position() {
    let (g, r, _, _, _) = two_queues(3 * FRAME_ALIGN);
    let max = Pool::partition(&g, 0, 1, 2).unwrap().max_frame();
    let plen = Pool::partition(&g, 0, 1, 2).unwrap().len();
    for at in (0..plen)
        .step_by(FRAME_ALIGN as usize * 97)
        .chain([plen - FRAME_ALIGN])
    {
        for (len, lap) in [(1, 0), (max / 2 + 1, 1), (max, 1 << 20)] {
            // At `at` in the partition, after `lap` laps of it.
            let serial = u64::from(at) + lap * u64::from(plen);
            let mut pool = Pool::partition(&g, 0, 1, 2).unwrap().starting_at(serial);
            let mut tx = Producer::new(&g, 0, 1, 1).unwrap();
            tx.reset(&r).unwrap();
            assert!(pool.fits(len), "{len} at {at}");
            let d = send(&r, &mut pool, &mut tx, at, len).expect("a drained partition takes it");
            assert!(d.pos >= pool.offset() && d.pos + len <= pool.offset() + plen);
        }
    }
}

#[test]
fn queues_fill_and_drain_independently() {
    let (_, r, mut pools, mut tx, mut rx) = two_queues(0);
    // Queue 0 fills its partition with 64 KiB frames; queue 1 is unaffected.
    let mut n0 = 0;
    while send(&r, &mut pools[0], &mut tx[0], n0, 64 << 10).is_some() {
        n0 += 1;
    }
    assert!(n0 >= 3 && !pools[0].fits(64 << 10));
    for seq in 0..100 {
        let d = send(&r, &mut pools[1], &mut tx[1], 1000 + seq, 1500).unwrap();
        assert!(d.pos >= pools[1].offset());
        assert_eq!(
            pop(&mut rx[1], &r).unwrap(),
            Some(pattern(1000 + seq, 1500))
        );
        rx[1].publish(&r).unwrap();
        tx[1].collect(&r).unwrap();
        pools[1].reclaim([&tx[1]]);
    }
    for seq in 0..n0 {
        let got = pop(&mut rx[0], &r).unwrap().unwrap();
        assert_eq!(got, pattern(seq, 64 << 10));
    }
    rx[0].publish(&r).unwrap();
    tx[0].collect(&r).unwrap();
    pools[0].reclaim([&tx[0]]);
    assert_eq!(pools[0].free(), pools[0].len());
}

#[test]
fn a_stopped_queue_is_woken_when_what_the_frame_needs_is_free() {
    let (_, r, mut pools, mut tx, mut rx) = two_queues(0);
    let len = 100 << 10;
    for seq in 0..2 {
        send(&r, &mut pools[1], &mut tx[1], seq, len).unwrap();
    }
    // Stopped: wait for what the third frame needs (the tail it skips and itself).
    assert!(!pools[1].fits(len));
    let target = pools[1].wake_target(pools[1].needs(len));
    assert!(!tx[1].arm_wake(&r, 0, target).unwrap());
    // The consumer takes the first frame: it must notify, and then the frame fits.
    pop(&mut rx[1], &r).unwrap().unwrap();
    let old = rx[1].publish(&r).unwrap();
    assert!(rx[1].kick_needed(&r, old).unwrap());
    tx[1].collect(&r).unwrap();
    pools[1].reclaim([&tx[1]]);
    assert!(pools[1].tail() >= target && pools[1].fits(len));
    assert!(send(&r, &mut pools[1], &mut tx[1], 2, len).is_some());
}

#[test]
fn partitions_of_another_sender_or_reservation_are_refused() {
    let (g, r, mut pools, mut tx, _) = two_queues(0);
    let theirs = Pool::partition(&g, 1, 1, 2).unwrap();
    assert_eq!(tx[1].reserve(&r, &theirs, 64), Err(Error::GeometryMismatch));
    // Reserved in partition 1, committed against partition 0: refused, nothing taken.
    tx[1].reserve(&r, &pools[1], 64).unwrap().unwrap();
    assert_eq!(
        tx[1].commit(&r, &mut pools[0], &meta()),
        Err(Error::NotReserved)
    );
    assert_eq!((pools[0].used(), pools[1].used()), (0, 0));
    // A ring may use another queue's partition (a transmit queue above the link's count
    // shares a channel): its frames still lie in that partition.
    let d = send(&r, &mut pools[0], &mut tx[1], 0, 64).unwrap();
    assert_eq!(d.pos, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Push(u32),
    Publish,
    Consume,
    /// The consumer of queue 1's ring writes anything into its index, then we collect and
    /// reclaim.
    ConsIdx(u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![1..=MAX, (MAX - 200)..=MAX, 1..=2048u32].prop_map(Op::Push),
        2 => Just(Op::Publish),
        2 => Just(Op::Consume),
        2 => (prop_oneof![any::<u32>(), 0..16u32], any::<bool>())
            .prop_map(|(v, rel)| Op::ConsIdx(v, rel)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the consumer of queue 1's ring writes into its index, every reservation of
    /// queue 1 lies in its partition in one piece and never over a frame not yet published,
    /// the bytes of unpublished frames stay held, and queue 0's frame is untouched.
    #[test]
    fn a_hostile_consumer_cannot_move_a_queue_out_of_its_partition(
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let (g, r, mut pools, mut tx, mut rx) = two_queues(FRAME_ALIGN);
        // Queue 0 holds a frame the whole time.
        send(&r, &mut pools[0], &mut tx[0], 9999, 4000).unwrap();
        let ring = *tx[1].ring();
        let part = pools[1].base()..pools[1].base() + pools[1].len() as usize;
        let mut unpublished: Vec<std::ops::Range<usize>> = Vec::new();
        for (seq, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push(len) => match tx[1].reserve(&r, &pools[1], len) {
                    Ok(Some(span)) => {
                        prop_assert_eq!(span.second(), None);
                        let s = span.first();
                        prop_assert!(part.start <= s.start && s.end <= part.end, "{:?} outside {:?}", s, part);
                        for u in &unpublished {
                            prop_assert!(s.end <= u.start || u.end <= s.start, "{:?} over {:?}", s, u);
                        }
                        span.write(&r, 0, &pattern(seq as u32, len)).unwrap();
                        tx[1].commit(&r, &mut pools[1], &Desc::default()).unwrap();
                        unpublished.push(s.start..s.start + footprint(len) as usize);
                    }
                    Ok(None) => {}
                    Err(Error::Corrupt(Corrupt::ConsIdx)) => {}
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                },
                Op::Publish => {
                    tx[1].publish(&r).unwrap();
                    unpublished.clear();
                }
                Op::Consume => {
                    if let Ok(Some(d)) = rx[1].peek(&r) {
                        assert_in_pool(&rx[1], &d);
                        rx[1].pop();
                    }
                    rx[1].publish(&r).unwrap();
                }
                Op::ConsIdx(v, relative) => {
                    let w = ring.base() + off::CONS_IDX;
                    let v = if relative { r.load(w).unwrap().wrapping_add(v) } else { v };
                    r.store(w, v).unwrap();
                    match tx[1].collect(&r) {
                        Ok(n) => prop_assert!(n <= g.ring_slots),
                        Err(Error::Corrupt(Corrupt::ConsIdx)) => {}
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                    pools[1].reclaim([&tx[1]]);
                    let held: usize = unpublished.iter().map(|u| u.len()).sum();
                    prop_assert!(pools[1].used() as usize >= held);
                }
            }
        }
        // Queue 0's frame is intact and its partition untouched by queue 1.
        prop_assert_eq!(pools[0].used(), footprint(4000));
        prop_assert_eq!(pop(&mut rx[0], &r).unwrap(), Some(pattern(9999, 4000)));
    }
}
