// SPDX-License-Identifier: GPL-2.0
//! Tests of the region header: geometry, initialise/join, refusals, concurrent attach.

use ivshmem_net_protocol::layout::*;
use ivshmem_net_protocol::HeapRegion;
use std::sync::{Arc, Barrier};

const MIB: u64 = 1 << 20;

#[test]
fn geometry_fits_every_supported_size() {
    for shift in 22..=30 {
        for peers in [2, 3, 8, 16, 64] {
            let len = 1u64 << shift;
            let g = match Geometry::new(len, peers) {
                Ok(g) => g,
                Err(Error::TooSmall { .. }) if peers > DEFAULT_MAX_PEERS => continue,
                Err(e) => panic!("{len} bytes, {peers} peers: {e:?}"),
            };
            assert_eq!(g.ring_slots, RING_SLOTS);
            assert!(g.queues.is_power_of_two() && g.queues <= MAX_QUEUES);
            // The rings take at most an eighth of the region, unless one queue already does.
            let rings = u64::from(g.rings()) * u64::from(g.ring_stride);
            assert!(g.queues == 1 || rings <= g.region_len / 8, "{len}/{peers}");
            // And the next power of two would not have fitted.
            assert!(
                g.queues == MAX_QUEUES || 2 * rings > g.region_len / 8,
                "{len}/{peers}"
            );
            assert!(g.pool_len >= MIN_POOL && g.pool_len % POOL_ALIGN == 0);
            assert_eq!(g.pools_offset % POOL_ALIGN, 0);
            let last =
                g.ring_offset(peers - 1, peers - 2, g.queues - 1).unwrap() + g.ring_stride as usize;
            assert!(
                last <= g.pools_offset as usize,
                "{len}/{peers}: rings end at {last}"
            );
            let end = g.pool_offset(peers - 1).unwrap() as u64 + u64::from(g.pool_len);
            assert!(end <= g.region_len, "{len}/{peers}: pools end at {end}");
            // Less than a pool's alignment per peer is left over.
            assert!(g.region_len - end < u64::from(peers) * u64::from(POOL_ALIGN) + 4096);
            assert!(
                g.ctrl_offset(peers - 1).unwrap() + CTRL_STRIDE as usize <= g.rings_offset as usize
            );
        }
    }
}

#[test]
fn geometry_at_the_sizes_the_issue_names() {
    // (region, max_peers) -> (queues, pool length): 16 MiB and 8 peers gives every sender
    // 1.77 MiB where version 1 gave each ring 256 KiB.
    for (len, peers, queues, pool) in [
        (16 * MIB, 8, 2, 1_859_584),
        (32 * MIB, 8, 4, 3_723_264),
        (64 * MIB, 8, 8, 7_450_624),
        (4 * MIB, 2, 8, 1_957_888),
    ] {
        let g = Geometry::new(len, peers).unwrap();
        assert_eq!((g.queues, g.pool_len), (queues, pool), "{len}/{peers}");
    }
}

#[test]
fn ring_offsets_are_distinct_and_checked() {
    let g = Geometry::new(16 * MIB, 4).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..4 {
        for j in 0..4 {
            for q in 0..g.queues {
                if i == j {
                    assert_eq!(g.ring_offset(i, j, q), Err(Error::OutOfBounds));
                } else {
                    let off = g.ring_offset(i, j, q).unwrap();
                    assert!(off >= g.rings_offset as usize);
                    assert!(seen.insert(off));
                }
            }
        }
    }
    assert_eq!(seen.len() as u32, g.rings());
    assert_eq!(g.ring_offset(4, 0, 0), Err(Error::OutOfBounds));
    assert_eq!(g.ring_offset(0, 1, g.queues), Err(Error::OutOfBounds));
    assert_eq!(g.ctrl_offset(4), Err(Error::OutOfBounds));
    assert_eq!(g.pool_offset(4), Err(Error::OutOfBounds));
    let pools: Vec<_> = (0..4).map(|i| g.pool_offset(i).unwrap()).collect();
    assert!(pools.windows(2).all(|w| w[1] - w[0] == g.pool_len as usize));
}

#[test]
fn refuses_small_regions_and_bad_peer_counts() {
    assert_eq!(Geometry::new(4096, 8), Err(Error::TooSmall { len: 4096 }));
    assert_eq!(Geometry::new(16 * MIB, 1), Err(Error::BadMaxPeers(1)));
    assert_eq!(Geometry::new(16 * MIB, 65), Err(Error::BadMaxPeers(65)));
    // Larger than the maximum: only the first GiB is used.
    assert_eq!(
        Geometry::new(4 << 30, 8).unwrap().region_len,
        MAX_REGION_LEN
    );
}

#[test]
fn first_initialises_second_joins_with_same_nonce() {
    let r = HeapRegion::new(4 * MIB as usize);
    let g = Geometry::new(4 * MIB, 8).unwrap();
    let a = attach(&r, g, 0x1234_5678_9abc_def0, || panic!("no wait expected")).unwrap();
    assert_eq!(a.how, Attach::Initialised);
    let b = attach(&r, g, 42, || panic!("no wait expected")).unwrap();
    assert_eq!(b.how, Attach::Joined);
    assert_eq!(b.nonce, 0x1234_5678_9abc_def0);
    assert_eq!(read_geometry(&r), Ok(g));
}

#[test]
fn scribbled_header_is_repaired_by_an_attached_peer() {
    let r = HeapRegion::new(4 * MIB as usize);
    let g = Geometry::new(4 * MIB, 8).unwrap();
    let a = attach(&r, g, 0x1234_5678_9abc_def0, || true).unwrap();
    let b = attach(&r, g, 1, || true).unwrap();
    assert_eq!(repair_header(&r, &b).unwrap(), 0);
    for (off, val) in [
        (hdr::MAGIC, 0),
        (hdr::VERSION, 1),
        (hdr::MAX_PEERS, 1000),
        (hdr::POOL_LEN, 4096),
        (hdr::POOLS_OFFSET, 0),
        (hdr::QUEUES, 3),
        (hdr::NONCE_HI, 5),
        (hdr::STATE, 0),
    ] {
        r.store(off, val).unwrap();
    }
    assert!(read_geometry(&r).is_err());
    // Either peer's copy restores the same header: they attached to the same one.
    assert_eq!(repair_header(&r, &a).unwrap(), 8);
    assert_eq!(repair_header(&r, &b).unwrap(), 0);
    assert_eq!(read_geometry(&r), Ok(g));
    let c = attach(&r, g, 9, || panic!("no wait expected")).unwrap();
    assert_eq!((c.how, c.nonce), (Attach::Joined, a.nonce));
}

#[test]
fn refuses_other_version_and_geometry_and_leaves_region_alone() {
    let r = HeapRegion::new(16 * MIB as usize);
    let g = Geometry::new(16 * MIB, 8).unwrap();
    attach(&r, g, 7, || true).unwrap();
    let mut before = vec![0u8; 4096];
    r.read(0, &mut before).unwrap();

    let other = Geometry::new(16 * MIB, 4).unwrap();
    assert_eq!(attach(&r, other, 1, || true), Err(Error::GeometryMismatch));
    // A region a version-1 peer set up (or a version-3 one) is refused, untouched.
    r.store(hdr::VERSION, 1).unwrap();
    assert_eq!(attach(&r, g, 1, || true), Err(Error::BadVersion(1)));
    assert_eq!(read_geometry(&r), Err(Error::BadVersion(1)));
    r.store(hdr::VERSION, 3).unwrap();
    assert_eq!(attach(&r, g, 1, || true), Err(Error::BadVersion(3)));
    r.store(hdr::VERSION, VERSION).unwrap();
    r.store(hdr::MAGIC, 0xdead_beef).unwrap();
    assert_eq!(attach(&r, g, 1, || true), Err(Error::BadMagic(0xdead_beef)));
    r.store(hdr::MAGIC, MAGIC).unwrap();

    let mut after = vec![0u8; 4096];
    r.read(0, &mut after).unwrap();
    assert_eq!(before, after);
}

#[test]
fn garbage_state_is_an_error_not_a_panic() {
    let r = HeapRegion::new(4 * MIB as usize);
    let g = Geometry::new(4 * MIB, 8).unwrap();
    r.store(hdr::STATE, 0xffff_ffff).unwrap();
    assert_eq!(attach(&r, g, 1, || true), Err(Error::BadState(0xffff_ffff)));
}

#[test]
fn stalled_initialiser_is_taken_over() {
    let r = HeapRegion::new(4 * MIB as usize);
    let g = Geometry::new(4 * MIB, 8).unwrap();
    // A peer began initialising and died.
    r.store(hdr::STATE, (5 << 2) | phase::INITIALISING).unwrap();
    let mut waits = 0;
    let a = attach(&r, g, 99, || {
        waits += 1;
        waits < 3
    })
    .unwrap();
    assert_eq!(a.how, Attach::Initialised);
    assert_eq!(waits, 3);
    assert_eq!(r.load(hdr::STATE).unwrap(), (6 << 2) | phase::READY);
}

#[test]
fn concurrent_attach_has_exactly_one_initialiser() {
    for _ in 0..50 {
        let r = Arc::new(HeapRegion::new(4 * MIB as usize));
        let g = Geometry::new(4 * MIB, 8).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let (r, barrier) = (r.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    attach(&*r, g, 100 + i, || {
                        std::thread::yield_now();
                        true
                    })
                    .unwrap()
                })
            })
            .collect();
        let res: Vec<Attached> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let inits: Vec<_> = res
            .iter()
            .filter(|a| a.how == Attach::Initialised)
            .collect();
        assert_eq!(inits.len(), 1);
        assert!(res.iter().all(|a| a.nonce == inits[0].nonce));
    }
}

#[test]
fn accessor_rejects_out_of_bounds_and_misaligned() {
    let r = HeapRegion::new(4096);
    assert_eq!(r.load(4096), Err(Error::OutOfBounds));
    assert_eq!(r.load(2), Err(Error::Misaligned));
    assert_eq!(r.store(usize::MAX - 3, 1), Err(Error::OutOfBounds));
    let mut buf = [0u8; 8];
    assert_eq!(r.read(4090, &mut buf), Err(Error::OutOfBounds));
    assert_eq!(r.write(usize::MAX, &buf), Err(Error::OutOfBounds));
    r.write(4088, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    r.read(4088, &mut buf).unwrap();
    assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
}

/// A region whose state word always changes between our look and our compare-and-swap, as if a
/// writer flipped it at will: every swap of the state word fails.
struct FlippedState {
    inner: HeapRegion,
    swaps: std::sync::atomic::AtomicU32,
}

impl Region for FlippedState {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        self.inner.load(off)
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        self.inner.store(off, val)
    }
    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        if off == hdr::STATE {
            // The writer got in first: the word moved on to the next (empty) attempt.
            self.swaps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let moved = cur.wrapping_add(4) & !3;
            self.inner.store(off, moved)?;
            return Ok(Err(moved));
        }
        self.inner.compare_exchange(off, cur, new)
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.read(off, buf)
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        self.inner.write(off, buf)
    }
}

/// Runs `f` on a thread and waits at most `secs` for it: a hung attach fails the test instead
/// of hanging the suite.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .expect("attach did not return: a writer flipping the state word holds it forever")
}

#[test]
fn state_word_flipped_under_every_swap_gives_up() {
    let g = Geometry::new(4 * MIB, 2).unwrap();
    let (res, waits, swaps) = within(10, move || {
        let r = FlippedState {
            inner: HeapRegion::new(g.region_len as usize),
            swaps: Default::default(),
        };
        let mut waits = 0;
        let res = attach(&r, g, 1, || {
            waits += 1;
            waits < 20
        });
        (res, waits, r.swaps.into_inner())
    });
    // Every lost race waited (backed off), and the waiting ran out: given up, not looping.
    assert_eq!(res, Err(Error::InitStalled));
    assert_eq!(waits, 20);
    assert_eq!(swaps, 20);
}

#[test]
fn thread_flipping_the_state_word_cannot_hold_attach() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let g = Geometry::new(4 * MIB, 2).unwrap();
    let region = Arc::new(HeapRegion::new(g.region_len as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (region, stop) = (region.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Empty, then initialising, each time under a new attempt number.
                n = n.wrapping_add(1);
                let _ = region.store(hdr::STATE, (n << 2) | (n & 1));
            }
        })
    };
    let r = region.clone();
    let res = within(20, move || {
        let mut waits = 0;
        attach(&*r, g, 2, || {
            waits += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
            waits < 200
        })
    });
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    // Whatever the interleaving, it returned (within the waits, not the 20 s of `within`):
    // initialised in a gap the flipper left, or given up on a word that would not hold still.
    assert!(
        matches!(
            res,
            Ok(_) | Err(Error::InitStalled) | Err(Error::BadMagic(_))
        ),
        "{res:?}"
    );
}
