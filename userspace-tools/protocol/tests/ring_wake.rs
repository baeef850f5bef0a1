// SPDX-License-Identifier: GPL-2.0
//! Waking a stopped producer (TX completion): the event a producer arms with
//! `Producer::arm_wake` must make the consumer notify it exactly when there is room for what it
//! waits for, descriptors and data bytes alike, never before (a notification without room
//! leaves a stopped queue waiting for a timer, and lost if the consumer passed the event before
//! it could see it) and never not at all.

mod common;

use common::*;
use ivshmem_net_protocol::layout::{Geometry, Region};
use ivshmem_net_protocol::ring::{Consumer, Producer};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;

/// What the driver waits for before waking its queue: a quarter of the slots, and a quarter of
/// the data or room for the largest frame, whichever is more.
fn need(p: &Producer, len: u32) -> (u32, u32) {
    let ring = p.ring();
    (
        (ring.slots() / 4).max(1),
        ring.max_footprint(len).max(ring.data_len() / 4),
    )
}

/// Both sides of a fresh ring starting at index `idx` and data position `bytes`.
fn at(g: &Geometry, idx: u32, bytes: u32) -> (HeapRegion, Producer, Consumer) {
    let (r, mut p, mut c) = setup(g);
    p.reset_at(&r, idx, bytes).unwrap();
    c.reset_at(&r, idx, bytes).unwrap();
    (r, p, c)
}

/// Sends `lens` (as far as they fit), publishes, stops as a driver would (arms the wake for
/// frames of `max_len`), then consumes one frame at a time, publishing after each like a
/// consumer giving space back. Returns how many frames were consumed when the producer was
/// notified and whether it had room then; `None` if it had room at once. Panics if the ring
/// drained without a notification.
fn stop_and_drain(
    r: &HeapRegion,
    p: &mut Producer,
    c: &mut Consumer,
    lens: &[u32],
    max_len: u32,
) -> Option<(u32, bool)> {
    for (seq, &len) in lens.iter().enumerate() {
        if push(p, r, &pattern(seq as u32, len)).unwrap().is_none() {
            break;
        }
    }
    p.publish(r).unwrap();
    let (slots, bytes) = need(p, max_len);
    if p.arm_wake(r, slots, bytes).unwrap() {
        return None;
    }
    let mut consumed = 0;
    while pop(c, r).unwrap().is_some() {
        consumed += 1;
        let old = c.publish(r).unwrap();
        if c.kick_needed(r, old).unwrap() {
            return Some((consumed, p.has_room(r, slots, bytes).unwrap()));
        }
    }
    panic!("the ring drained ({consumed} frames) and the stopped producer was never notified");
}

/// Thirty frames of 64 bytes, one of half the data area less 64, then frames of 200 bytes
/// until the ring is full.
fn small_big_fill(max: u32) -> Vec<u32> {
    let mut lens = vec![64; 30];
    lens.push(max - 64);
    lens.extend([200; 64]);
    lens
}

#[test]
fn small_frames_then_a_big_one_wake_after_the_big_one() {
    let g = small_geometry(64, 16384);
    let (r, mut p, mut c) = at(&g, 0, 0);
    let max = p.ring().max_frame();
    // 55 frames in flight: 30 small, the big one, 24 of 200 bytes; 192 data bytes free.
    // Waking needs 16 slots (7 frames) and 4096 bytes free: the big one must go, the 31st
    // frame, although half the frames in flight went long before.
    let (consumed, room) = stop_and_drain(&r, &mut p, &mut c, &small_big_fill(max), 1500).unwrap();
    assert!(room, "notified after {consumed} frames without room");
    assert_eq!(consumed, 31, "notified as soon as the big frame went");
}

#[test]
fn many_small_frames_wake_by_slots() {
    let g = small_geometry(16, 65536);
    let (r, mut p, mut c) = at(&g, 0, 0);
    let (consumed, room) = stop_and_drain(&r, &mut p, &mut c, &[100; 16], 1500).unwrap();
    // Slots are what is short: a quarter of them back is four frames.
    assert_eq!((consumed, room), (4, true));
}

#[test]
fn a_consumer_past_the_event_before_it_was_set_left_room() {
    // The race `arm_wake` closes: the consumer moves past the event while the producer is
    // still working it out, so it never sees it; the producer's second look must find room.
    let g = small_geometry(64, 16384);
    let (r, mut p, mut c) = at(&g, 7, 4096);
    let max = p.ring().max_frame();
    for (seq, &len) in small_big_fill(max).iter().enumerate() {
        if push(&mut p, &r, &pattern(seq as u32, len))
            .unwrap()
            .is_none()
        {
            break;
        }
    }
    p.publish(&r).unwrap();
    let (slots, bytes) = need(&p, 1500);
    let cons_idx = r.load(p.ring().base() + 0x40).unwrap();
    let cons_bytes = r.load(p.ring().base() + 0x44).unwrap();
    assert!(!p.has_room(&r, slots, bytes).unwrap());
    let event = p.wake_event(cons_idx, cons_bytes, slots, bytes).unwrap();
    while c.index() != event.wrapping_add(1) {
        pop(&mut c, &r).unwrap().unwrap();
    }
    c.publish(&r).unwrap();
    p.set_event(&r, event).unwrap();
    assert!(p.has_room(&r, slots, bytes).unwrap());
}

fn lens() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(
        prop_oneof![1u32..=128, 129u32..=1600, 1601u32..=8192],
        1..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever frames are in flight, wherever the ring's positions stand (across the wrap at
    /// 2^32 too), a stopped producer is notified, and only once there is room.
    #[test]
    fn notified_once_there_is_room_never_before(
        slots in prop_oneof![Just(8u32), Just(16), Just(64)],
        data in prop_oneof![Just(4096u32), Just(16384)],
        start_idx in prop_oneof![Just(0u32), any::<u32>(), Just(u32::MAX - 20)],
        start_bytes in prop_oneof![Just(0u32), any::<u32>(), Just(u32::MAX - 3000)],
        lens in lens(),
        max_len in 64u32..=2048,
    ) {
        let g = small_geometry(slots, data);
        let (r, mut p, mut c) = at(&g, start_idx, start_bytes);
        let max = p.ring().max_frame();
        let lens: Vec<u32> = lens.into_iter().map(|l| l.min(max)).collect();
        if let Some((consumed, room)) =
            stop_and_drain(&r, &mut p, &mut c, &lens, max_len.min(max))
        {
            prop_assert!(room, "notified after {} frames without room", consumed);
        }
    }
}
