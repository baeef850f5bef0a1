// SPDX-License-Identifier: GPL-2.0
//! Waking a stopped producer (TX completion): the events a producer arms with
//! `Producer::arm_wake` on every ring sharing its pool must make a consumer notify it when
//! there is room for what it waits for, pool bytes and descriptors alike: never lost (a
//! consumer that passed the event before it could see it made the room, and the producer's
//! second look sees it) and, with one ring, never before there is room (a notification without
//! room leaves a stopped queue waiting for a timer). With several rings every one that holds
//! back the room is armed; each notifies once it no longer does, and the one that makes the
//! room notifies exactly then.

mod common;

use common::*;
use ivshmem_net_protocol::layout::Geometry;
use ivshmem_net_protocol::ring::{footprint, Consumer, Pool, Producer};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;

/// What the driver waits for before waking its queue: a quarter of the slots of the ring that
/// ran out of them (`slots`), and a quarter of the pool or room for the largest frame,
/// whichever is more.
fn need(pool: &Pool, slots: u32, len: u32) -> (u32, u32) {
    ((slots / 4).max(1), footprint(len).max(pool.len() / 4))
}

struct Sender {
    pool: Pool,
    rings: Vec<(Producer, Consumer)>,
}

/// Peer 0 with rings to `rings` peers (1, 2, ...), their indices starting at `idx`.
fn sender(g: &Geometry, r: &HeapRegion, rings: u32, idx: u32) -> Sender {
    let rings = (1..=rings)
        .map(|to| {
            let mut p = Producer::new(g, 0, to, 0).unwrap();
            let mut c = Consumer::new(g, 0, to, 0).unwrap();
            p.reset_at(r, idx).unwrap();
            c.reset_at(r, idx).unwrap();
            (p, c)
        })
        .collect();
    Sender {
        pool: Pool::new(g, 0).unwrap(),
        rings,
    }
}

/// Whether there is room now: `bytes` in the pool and, on ring `full` (if any), `slots` free
/// slots, after collecting every ring (on copies: nothing changes).
fn room(s: &Sender, r: &HeapRegion, full: Option<usize>, slots: u32, bytes: u32) -> bool {
    let mut pool = s.pool.clone();
    let mut ps: Vec<Producer> = s.rings.iter().map(|(p, _)| p.clone()).collect();
    for p in &mut ps {
        p.collect(r).unwrap();
    }
    pool.reclaim(&ps);
    pool.free() >= bytes && full.is_none_or(|k| ps[k].free_slots() >= slots)
}

/// The driver's arming: every ring, for its part (slots only on the one that ran out), then
/// a reclaim. Returns whether there is room already.
fn arm(s: &mut Sender, r: &HeapRegion, full: Option<usize>, slots: u32, bytes: u32) -> bool {
    let target = s.pool.wake_target(bytes);
    let mut clear = true;
    for (k, (p, _)) in s.rings.iter_mut().enumerate() {
        let want = if Some(k) == full { slots } else { 0 };
        clear &= p.arm_wake(r, want, target).unwrap();
    }
    s.pool.reclaim(s.rings.iter().map(|(p, _)| p));
    let ok = s.pool.free() >= bytes && full.is_none_or(|k| s.rings[k].0.free_slots() >= slots);
    assert!(
        !clear || ok,
        "every ring says it holds nothing back, yet no room"
    );
    ok
}

/// Sends `frames` (ring, length) as far as they fit, publishes, stops as a driver would for
/// frames of `max_len`, then lets the consumers take one frame at a time in the order
/// `turns` gives (publishing after each). Every notification re-arms, as the driver's
/// `tx_wake` does. Returns the frames consumed when the producer found room, and whether a
/// notification came exactly then; `None` if there was room at once. Panics if every ring
/// drained without the producer finding room, or if room appeared and nobody said so.
fn stop_and_drain(
    s: &mut Sender,
    r: &HeapRegion,
    frames: &[(usize, u32)],
    turns: &[usize],
    max_len: u32,
) -> Option<u32> {
    let mut full = None;
    for (seq, &(k, len)) in frames.iter().enumerate() {
        let (p, _) = &mut s.rings[k];
        let span = match p.reserve(r, &s.pool, len).unwrap() {
            Some(span) => span,
            None => {
                if p.free_slots() == 0 {
                    full = Some(k);
                }
                break;
            }
        };
        span.write(r, 0, &pattern(seq as u32, len)).unwrap();
        p.commit(r, &mut s.pool, &meta()).unwrap();
    }
    for (p, _) in &mut s.rings {
        p.publish(r).unwrap();
    }
    let slots_total = s.rings[0].0.ring().slots();
    let (slots, bytes) = need(&s.pool, slots_total, max_len);
    if arm(s, r, full, slots, bytes) {
        return None;
    }
    let mut consumed = 0;
    let mut turn = turns.iter().cycle();
    loop {
        // The next consumer with anything to take.
        let Some(k) = (0..s.rings.len())
            .map(|_| *turn.next().unwrap() % s.rings.len())
            .find(|&k| s.rings[k].1.pending(r).unwrap() > 0)
            .or_else(|| (0..s.rings.len()).find(|&k| s.rings[k].1.pending(r).unwrap() > 0))
        else {
            panic!("all {consumed} frames consumed and the stopped producer never found room");
        };
        let c = &mut s.rings[k].1;
        pop(c, r).unwrap().unwrap();
        consumed += 1;
        let old = c.publish(r).unwrap();
        let notified = c.kick_needed(r, old).unwrap();
        let now = room(s, r, full, slots, bytes);
        if now {
            assert!(
                notified,
                "room after {consumed} frames, and no notification"
            );
        }
        if notified {
            if s.rings.len() == 1 {
                assert!(now, "notified after {consumed} frames without room");
            }
            if arm(s, r, full, slots, bytes) {
                return Some(consumed);
            }
        }
    }
}

/// Thirty frames of 64 bytes, one of `big`, then frames of 200 bytes until the pool is full.
fn small_big_fill(big: u32) -> Vec<(usize, u32)> {
    let mut lens = vec![(0, 64); 30];
    lens.push((0, big));
    lens.extend([(0, 200); 200]);
    lens
}

#[test]
fn small_frames_then_a_big_one_wake_after_the_big_one() {
    let g = small_geometry(256, 16384);
    let r = HeapRegion::new(g.region_len as usize);
    let mut s = sender(&g, &r, 1, 0);
    // The pool holds 30 * 64 + 8192 + 31 * 256 bytes; a quarter of the pool (4096) is free
    // only once the big frame, the 31st, has gone, although its 30 predecessors went before.
    let consumed = stop_and_drain(&mut s, &r, &small_big_fill(8192), &[0], 1500).unwrap();
    assert_eq!(consumed, 31, "notified as soon as the big frame went");
}

#[test]
fn many_small_frames_wake_by_slots() {
    let g = small_geometry(16, 65536);
    let r = HeapRegion::new(g.region_len as usize);
    let mut s = sender(&g, &r, 1, 0);
    let consumed = stop_and_drain(&mut s, &r, &[(0, 100); 17], &[0], 1500).unwrap();
    // Slots are what is short: a quarter of them back is four frames.
    assert_eq!(consumed, 4);
}

#[test]
fn two_rings_wake_when_the_slow_one_lets_go() {
    // Ring 0's frames are older: the pool's room comes back only once both consumers are past
    // enough of their frames, and it is the second of them that notifies.
    let g = geometry(3, 64, 16384);
    let r = HeapRegion::new(g.region_len as usize);
    let mut s = sender(&g, &r, 2, 0);
    let mut frames: Vec<(usize, u32)> = vec![(0, 1000); 8];
    frames.extend([(1, 1000); 8]);
    // Only ring 1 consumes at first: nothing comes back while ring 0 holds the oldest bytes.
    let consumed = stop_and_drain(&mut s, &r, &frames, &[1, 1, 1, 1, 1, 1, 1, 1, 0], 1500);
    assert!(consumed.unwrap() > 8);
}

#[test]
fn a_consumer_past_the_event_before_it_was_set_left_room() {
    // The race `arm_wake` closes: the consumer moves past the event while the producer is
    // still working it out, so it never sees it; the producer's second look must find room.
    let g = small_geometry(64, 16384);
    let r = HeapRegion::new(g.region_len as usize);
    let mut s = sender(&g, &r, 1, 7);
    let (p, c) = &mut s.rings[0];
    for (seq, &(_, len)) in small_big_fill(8192).iter().enumerate() {
        let Some(span) = p.reserve(&r, &s.pool, len).unwrap() else {
            break;
        };
        span.write(&r, 0, &pattern(seq as u32, len)).unwrap();
        p.commit(&r, &mut s.pool, &meta()).unwrap();
    }
    p.publish(&r).unwrap();
    let target = s.pool.wake_target(4096);
    let event = p.wake_event(0, target).unwrap();
    while c.index() != event.wrapping_add(1) {
        pop(c, &r).unwrap().unwrap();
    }
    c.publish(&r).unwrap();
    p.set_event(&r, event).unwrap();
    p.collect(&r).unwrap();
    assert_eq!(p.wake_event(0, target), None);
    s.pool.reclaim([&*p]);
    assert!(s.pool.free() >= 4096);
}

fn frames(rings: usize) -> impl Strategy<Value = Vec<(usize, u32)>> {
    prop::collection::vec(
        (
            0..rings,
            prop_oneof![1u32..=128, 129u32..=1600, 1601u32..=8192],
        ),
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever frames are in flight on one ring, wherever its indices stand (across the wrap
    /// at 2^32 too), a stopped producer is notified, and only once there is room.
    #[test]
    fn one_ring_notified_once_there_is_room_never_before(
        slots in prop_oneof![Just(8u32), Just(16), Just(64)],
        pool in prop_oneof![Just(4096u32), Just(16384)],
        idx in prop_oneof![Just(0u32), any::<u32>(), Just(u32::MAX - 20)],
        frames in frames(1),
        max_len in 64u32..=2048,
    ) {
        let g = small_geometry(slots, pool);
        let r = HeapRegion::new(g.region_len as usize);
        let mut s = sender(&g, &r, 1, idx);
        let max = s.rings[0].0.ring().max_frame();
        let frames: Vec<_> = frames.into_iter().map(|(k, l)| (k, l.min(max))).collect();
        stop_and_drain(&mut s, &r, &frames, &[0], max_len.min(max));
    }

    /// The same with three rings sharing the pool, consumed in any order: never lost, and
    /// the notification comes when the room does.
    #[test]
    fn three_rings_notified_when_there_is_room(
        slots in prop_oneof![Just(8u32), Just(64)],
        pool in prop_oneof![Just(4096u32), Just(16384)],
        idx in prop_oneof![Just(0u32), any::<u32>(), Just(u32::MAX - 20)],
        frames in frames(3),
        turns in prop::collection::vec(0..3usize, 1..20),
        max_len in 64u32..=2048,
    ) {
        let g = geometry(4, slots, pool);
        let r = HeapRegion::new(g.region_len as usize);
        let mut s = sender(&g, &r, 3, idx);
        let max = s.rings[0].0.ring().max_frame();
        let frames: Vec<_> = frames.into_iter().map(|(k, l)| (k, l.min(max))).collect();
        stop_and_drain(&mut s, &r, &frames, &turns, max_len.min(max));
    }
}
