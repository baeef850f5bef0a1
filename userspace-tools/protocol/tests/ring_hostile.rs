// SPDX-License-Identifier: GPL-2.0
//! Hostile-peer property tests: between our operations the peer writes whatever it likes into
//! the words and descriptors it owns (and, as a sender, its pool). Our side must never panic,
//! never hand out a frame outside the sender's pool or a reservation outside our own, never
//! write outside what it owns, never let a consumer's word free the bytes of a frame not yet
//! published, and report what it cannot accept as `Error::Corrupt`.

mod common;

use common::*;
use ivshmem_net_protocol::layout::{Corrupt, Error, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{footprint, off, Desc};
use ivshmem_net_protocol::HeapRegion;
use proptest::prelude::*;

/// A view of a region through which only the `allowed` ranges (start, end) may be written.
struct Guard<'a> {
    inner: &'a HeapRegion,
    allowed: Vec<(usize, usize)>,
}

impl Guard<'_> {
    fn check(&self, off: usize, len: usize) {
        assert!(
            self.allowed
                .iter()
                .any(|&(start, end)| start <= off && off + len <= end),
            "write of {len} bytes at {off:#x} outside {:x?}",
            self.allowed
        );
    }
}

impl Region for Guard<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        self.inner.load(off)
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        self.check(off, 4);
        self.inner.store(off, val)
    }
    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        self.check(off, 4);
        self.inner.compare_exchange(off, cur, new)
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.read(off, buf)
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        self.check(off, buf.len());
        self.inner.write(off, buf)
    }
}

const SLOTS: u32 = 8;
const POOL: u32 = 1024;

/// A value the peer writes: anything, or a small step from what is there (which gets past the
/// first checks far more often).
#[derive(Debug, Clone)]
enum Val {
    Any(u32),
    Step(i16),
}

impl Val {
    fn apply(&self, cur: u32) -> u32 {
        match *self {
            Val::Any(v) => v,
            Val::Step(d) => cur.wrapping_add(d as i32 as u32),
        }
    }
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<u32>().prop_map(Val::Any),
        (-3i16..=3).prop_map(Val::Step),
        any::<i16>().prop_map(Val::Step),
    ]
}

#[derive(Debug, Clone)]
enum ConsOp {
    /// The peer behaves: pushes a frame and maybe publishes.
    Push(u32, bool),
    Peek,
    Publish,
    ProdIdx(Val),
    /// A descriptor of the peer's making in slot `.0`: position and length relative to what
    /// is there, other bytes anything.
    Desc(u32, Val, Val, [u8; 12]),
    RawDesc(u32, [u8; 32]),
}

fn cons_op() -> impl Strategy<Value = ConsOp> {
    prop_oneof![
        3 => (1..=POOL / 2, any::<bool>()).prop_map(|(l, p)| ConsOp::Push(l, p)),
        4 => Just(ConsOp::Peek),
        2 => Just(ConsOp::Publish),
        1 => val().prop_map(ConsOp::ProdIdx),
        2 => (0..SLOTS, val(), val(), any::<[u8; 12]>())
            .prop_map(|(s, p, l, m)| ConsOp::Desc(s, p, l, m)),
        1 => (0..SLOTS, any::<[u8; 32]>()).prop_map(|(s, b)| ConsOp::RawDesc(s, b)),
    ]
}

#[derive(Debug, Clone)]
enum ProdOp {
    Push(u32),
    Publish,
    /// The peer behaves: consumes a frame and publishes.
    Consume,
    ConsIdx(Val),
    /// The consumer gives back what it likes, collected and reclaimed at once.
    ConsIdxReclaim(Val),
}

fn prod_op() -> impl Strategy<Value = ProdOp> {
    prop_oneof![
        4 => (1..=POOL / 2).prop_map(ProdOp::Push),
        2 => Just(ProdOp::Publish),
        2 => Just(ProdOp::Consume),
        1 => val().prop_map(ProdOp::ConsIdx),
        1 => val().prop_map(ProdOp::ConsIdxReclaim),
    ]
}

fn start() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), any::<u32>(), (u32::MAX - 8)..=u32::MAX]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn consumer_survives_hostile_producer(
        idx in start(),
        ops in prop::collection::vec(cons_op(), 1..200),
    ) {
        let g = small_geometry(SLOTS, POOL);
        let (r, mut tx, mut c) = setup(&g);
        tx.p.reset_at(&r, idx).unwrap();
        c.reset_at(&r, idx).unwrap();
        let ring = *c.ring();
        let words = |w: usize| ring.base() + w;
        let mine = Guard {
            inner: &r,
            allowed: vec![(words(off::CONS_IDX), words(off::CONS_EVENT) + 4)],
        };
        let desc = |slot: u32| ring.base() + (RING_HDR_LEN + slot * DESC_LEN) as usize;
        let mut seq = 0;
        for op in ops {
            match op {
                ConsOp::Push(len, publish) => {
                    // The honest producer may itself find the ring full or, once the peer's
                    // own words are garbage, publish on top of them: both are fine here.
                    if let Ok(Some(_)) = push(&mut tx, &r, &pattern(seq, len)) {
                        seq += 1;
                    }
                    if publish {
                        tx.p.publish(&r).unwrap();
                    }
                }
                ConsOp::Peek => match c.peek(&mine) {
                    Ok(Some(d)) => {
                        assert_in_pool(&c, &d);
                        prop_assert!(d.len <= ring.max_frame());
                        let mut buf = vec![0; d.len as usize];
                        prop_assert_eq!(c.read_frame(&mine, &d, &mut buf), Ok(buf.len()));
                        c.pop();
                    }
                    Ok(None) => {}
                    Err(Error::Corrupt(Corrupt::ProdIdx | Corrupt::DescLen | Corrupt::DescPos)) => {}
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                },
                ConsOp::Publish => {
                    c.publish(&mine).unwrap();
                    // Also exercise the other read-only paths.
                    let _ = c.pending(&mine);
                    let _ = c.kick_needed(&mine, 0).unwrap();
                }
                ConsOp::ProdIdx(v) => {
                    let w = words(off::PROD_IDX);
                    r.store(w, v.apply(r.load(w).unwrap())).unwrap();
                }
                ConsOp::Desc(slot, pos, len, rest) => {
                    let mut raw = [0; 32];
                    r.read(desc(slot), &mut raw).unwrap();
                    let d = Desc::decode(&raw);
                    let d = Desc { pos: pos.apply(d.pos), len: len.apply(d.len), ..d };
                    let mut raw = d.encode();
                    raw[8..20].copy_from_slice(&rest);
                    r.write(desc(slot), &raw).unwrap();
                }
                ConsOp::RawDesc(slot, raw) => r.write(desc(slot), &raw).unwrap(),
            }
        }
    }

    #[test]
    fn producer_survives_hostile_consumer(
        idx in start(),
        ops in prop::collection::vec(prod_op(), 1..200),
    ) {
        let g = small_geometry(SLOTS, POOL);
        let (r, mut tx, mut c) = setup(&g);
        tx.p.reset_at(&r, idx).unwrap();
        c.reset_at(&r, idx).unwrap();
        let ring = *tx.p.ring();
        let words = |w: usize| ring.base() + w;
        let pool = ring.pool()..ring.pool() + ring.pool_len() as usize;
        let mine = Guard {
            inner: &r,
            allowed: vec![
                (words(off::PROD_IDX), words(off::PROD_EVENT) + 4),
                (ring.base() + RING_HDR_LEN as usize, ring.base() + g.ring_stride as usize),
                (pool.start, pool.end),
            ],
        };
        // Pool offsets and lengths of the frames committed and not yet published: whatever
        // the consumer writes, no reservation may touch them.
        let mut unpublished: Vec<(u32, u32)> = Vec::new();
        let overlaps = |a: (u32, u32), b: (u32, u32)| {
            let n = POOL;
            (0..a.1).any(|i| {
                let x = (a.0 + i) % n;
                (0..b.1).any(|k| (b.0 + k) % n == x)
            })
        };
        for (seq, op) in ops.into_iter().enumerate() {
            match op {
                ProdOp::Push(len) => match tx.p.reserve(&mine, &tx.pool, len) {
                    Ok(Some(span)) => {
                        for piece in [Some(span.first()), span.second()].into_iter().flatten() {
                            prop_assert!(
                                pool.start <= piece.start && piece.end <= pool.end,
                                "{:?} outside {:?}", piece, pool
                            );
                        }
                        let at = (span.first().start - pool.start) as u32;
                        for &u in &unpublished {
                            prop_assert!(!overlaps((at, len), u), "{:?} over unpublished {:?}", (at, len), u);
                        }
                        span.write(&mine, 0, &pattern(seq as u32, len)).unwrap();
                        let d = tx.p.commit(&mine, &mut tx.pool, &Desc::default()).unwrap();
                        prop_assert_eq!((d.pos, d.len), (at, len));
                        unpublished.push((at, footprint(len)));
                    }
                    Ok(None) => {}
                    Err(Error::Corrupt(Corrupt::ConsIdx)) => {}
                    Err(e) => prop_assert!(false, "unexpected {:?}", e),
                },
                ProdOp::Publish => {
                    let old = tx.p.publish(&mine).unwrap();
                    let _ = tx.p.kick_needed(&mine, old).unwrap();
                    unpublished.clear();
                    match tx.p.in_flight(&mine) {
                        Ok(n) => prop_assert!(n <= SLOTS),
                        Err(Error::Corrupt(Corrupt::ConsIdx)) => {}
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                }
                ProdOp::Consume => {
                    // The honest consumer pops what it can; the peer's garbage may stop it.
                    if let Ok(Some(d)) = c.peek(&r) {
                        assert_in_pool(&c, &d);
                        c.pop();
                    }
                    c.publish(&r).unwrap();
                }
                ProdOp::ConsIdx(v) => {
                    let w = words(off::CONS_IDX);
                    r.store(w, v.apply(r.load(w).unwrap())).unwrap();
                }
                ProdOp::ConsIdxReclaim(v) => {
                    let w = words(off::CONS_IDX);
                    r.store(w, v.apply(r.load(w).unwrap())).unwrap();
                    match tx.p.collect(&mine) {
                        Ok(n) => prop_assert!(n <= SLOTS),
                        Err(Error::Corrupt(Corrupt::ConsIdx)) => {}
                        Err(e) => prop_assert!(false, "unexpected {:?}", e),
                    }
                    tx.pool.reclaim([&tx.p]);
                    // Whatever the consumer said, the unpublished frames still hold the pool.
                    let held: u32 = unpublished.iter().map(|u| u.1).sum();
                    prop_assert!(tx.pool.used() >= held);
                }
            }
        }
    }
}

/// Without hostility the same operations never report corruption (so the checks above are not
/// trivially satisfied by a ring that always says `Corrupt`).
#[test]
fn honest_peers_never_see_corruption() {
    let g = small_geometry(SLOTS, POOL);
    let (r, mut tx, mut c) = setup(&g);
    let mut frames = 0;
    for seq in 0..5000u32 {
        let len = 1 + seq.wrapping_mul(2_654_435_761) % (POOL / 2);
        push(&mut tx, &r, &pattern(seq, len)).unwrap();
        if seq % 3 == 0 {
            tx.p.publish(&r).unwrap();
        }
        if seq % 2 == 0 {
            while pop(&mut c, &r).unwrap().is_some() {
                frames += 1;
            }
            c.publish(&r).unwrap();
        }
    }
    assert!(frames > 1000);
}
