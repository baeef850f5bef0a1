// SPDX-License-Identifier: GPL-2.0
//! Property test of the ring against a model: random sequences of push, publish, pop and
//! consumer publish, starting anywhere (near the wrap at 2^32 too). Every popped frame equals
//! the pushed one, in order, and the producer accepts a frame exactly when the model, which
//! does its arithmetic on unbounded `u64` positions, says it fits.

mod common;

use common::*;
use ivshmem_net_protocol::layout::Region;
use ivshmem_net_protocol::ring::{off, FRAME_ALIGN};
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    Push(u32),
    Publish,
    Pop,
    ConsPublish,
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
    prop::collection::vec(
        prop_oneof![
            4 => len(max).prop_map(Op::Push),
            2 => Just(Op::Publish),
            3 => Just(Op::Pop),
            2 => Just(Op::ConsPublish),
        ],
        1..300,
    )
}

fn start() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        Just((0, 0)),
        (any::<u32>(), any::<u32>()),
        ((u32::MAX - 40)..=u32::MAX, (u32::MAX - 8192)..=u32::MAX),
    ]
}

/// The model: frames as queues, positions as unbounded integers.
#[derive(Default)]
struct Model {
    /// Committed, not published.
    committed: VecDeque<(u64, Vec<u8>)>,
    /// Published, not popped.
    published: VecDeque<(u64, Vec<u8>)>,
    /// End positions of popped frames whose space the consumer has not published yet.
    popped: VecDeque<u64>,
    /// Descriptors committed and the position after the last committed frame.
    prod_idx: u64,
    prod_bytes: u64,
    /// What the consumer has published.
    cons_idx: u64,
    cons_bytes: u64,
    seq: u32,
}

impl Model {
    /// Where a frame of `len` would go, if it fits.
    fn place(&self, len: u32, slots: u32, data: u32) -> Option<(u64, u64)> {
        let (len, data) = (len as u64, data as u64);
        let offset = self.prod_bytes % data;
        let start = if offset + len > data {
            self.prod_bytes - offset + data
        } else {
            self.prod_bytes
        };
        let end = (start + len).div_ceil(FRAME_ALIGN as u64) * FRAME_ALIGN as u64;
        let slot_free = self.prod_idx - self.cons_idx < slots as u64;
        (slot_free && end - self.cons_bytes <= data).then_some((start, end))
    }
}

fn check(slots: u32, data: u32, (idx, bytes): (u32, u32), ops: Vec<Op>) {
    let g = small_geometry(slots, data);
    let (r, mut p, mut c) = setup(&g);
    let bytes = bytes & !(FRAME_ALIGN - 1);
    p.reset_at(&r, idx, bytes).unwrap();
    c.reset_at(&r, idx, bytes).unwrap();
    // The model's counters start where the ring's do and never wrap.
    let mut m = Model {
        prod_idx: idx as u64,
        cons_idx: idx as u64,
        prod_bytes: bytes as u64,
        cons_bytes: bytes as u64,
        ..Model::default()
    };
    let at = |x: u64| x as u32;
    for op in ops {
        match op {
            Op::Push(len) => {
                let want = m.place(len, slots, data);
                assert_eq!(p.fits(&r, len).unwrap(), want.is_some());
                let frame = pattern(m.seq, len);
                let got = push(&mut p, &r, &frame).unwrap();
                match (got, want) {
                    (None, None) => {}
                    (Some(d), Some((start, end))) => {
                        assert_eq!(d.pos, at(start));
                        assert_eq!(d.len, len);
                        let footprint = p.ring().max_footprint(len) as u64;
                        assert!(
                            end - m.prod_bytes <= footprint,
                            "{len} took more than {footprint}"
                        );
                        m.committed.push_back((end, frame));
                        m.prod_idx += 1;
                        m.prod_bytes = end;
                        m.seq += 1;
                    }
                    (got, want) => panic!("ring {got:?} model {want:?} for {len} bytes"),
                }
            }
            Op::Publish => {
                p.publish(&r).unwrap();
                m.published.extend(m.committed.drain(..));
                assert_eq!(r.load(off::PROD_IDX).unwrap(), at(m.prod_idx));
            }
            Op::Pop => {
                let got = pop(&mut c, &r).unwrap();
                match (got, m.published.pop_front()) {
                    (None, None) => {}
                    (Some(frame), Some((end, want))) => {
                        assert_eq!(frame, want);
                        m.popped.push_back(end);
                    }
                    (got, want) => panic!("popped {got:?}, model {want:?}"),
                }
            }
            Op::ConsPublish => {
                c.publish(&r).unwrap();
                m.cons_idx += m.popped.len() as u64;
                if let Some(&end) = m.popped.back() {
                    m.cons_bytes = end;
                }
                m.popped.clear();
            }
        }
        let used = m.prod_idx - m.cons_idx;
        assert_eq!(p.free_slots(&r).unwrap() as u64, slots as u64 - used);
        let used_bytes = m.prod_bytes - m.cons_bytes;
        assert_eq!(p.free_bytes(&r).unwrap() as u64, data as u64 - used_bytes);
        assert_eq!(c.pending(&r).unwrap() as usize, m.published.len());
    }
    // Drain: everything committed comes out, in order, and then the ring is empty again.
    p.publish(&r).unwrap();
    m.published.extend(m.committed.drain(..));
    while let Some((_, want)) = m.published.pop_front() {
        assert_eq!(pop(&mut c, &r).unwrap(), Some(want));
    }
    assert_eq!(pop(&mut c, &r).unwrap(), None);
    c.publish(&r).unwrap();
    assert_eq!(p.free_slots(&r).unwrap(), slots);
    assert_eq!(p.free_bytes(&r).unwrap(), data);
    assert!(p.fits(&r, p.ring().max_frame()).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ring_matches_model_small(start in start(), ops in ops(128)) {
        check(4, 256, start, ops);
    }

    #[test]
    fn ring_matches_model_medium(start in start(), ops in ops(2048)) {
        check(16, 4096, start, ops);
    }

    #[test]
    fn ring_matches_model_many_slots(start in start(), ops in ops(512)) {
        check(64, 1024, start, ops);
    }
}
