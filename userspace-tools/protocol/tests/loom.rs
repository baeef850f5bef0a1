// SPDX-License-Identifier: GPL-2.0
//! Loom models of the ring: a producer and a consumer thread on a tiny ring, every
//! interleaving (up to two preemptions) and every value the memory model lets a load see.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom`.
//!
//! Two regions stand in for shared memory. [`Mode::Words`] keeps frame and descriptor bytes in
//! relaxed atomic words, as `HeapRegion` does, and checks that the consumer sees exactly the
//! bytes written: any ordering the ring leaves out shows up as a stale byte. [`Mode::Cells`]
//! keeps them in loom's `UnsafeCell`s, which makes every frame and descriptor access a tracked
//! plain access: loom fails the model on any pair of accesses not ordered by the ring's
//! acquire and release, i.e. on any data race, torn descriptor or early reuse.

#![cfg(loom)]

use ivshmem_net_protocol::layout::{check_range, Error, Geometry, Region, DESC_LEN, RING_HDR_LEN};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{fence, AtomicU32, Ordering};
use loom::sync::{Arc, Notify};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Words,
    Cells,
}

/// `UnsafeCell`s shared between loom threads.
struct Cells(Vec<UnsafeCell<u8>>);

// SAFETY: only used under loom, which checks every access to the cells for races and fails the
// model on one instead of letting it happen unobserved.
unsafe impl Sync for Cells {}

/// A region whose header words are loom atomics; the rest is bytes as `mode` says.
struct LoomRegion {
    words: Vec<AtomicU32>,
    cells: Cells,
    mode: Mode,
    /// With `false`, `fence` does nothing: for checking that the model catches the lost
    /// wake-up the fence prevents.
    fence: bool,
}

impl LoomRegion {
    fn new(len: usize, mode: Mode, fence: bool) -> Self {
        LoomRegion {
            words: (0..len.div_ceil(4)).map(|_| AtomicU32::new(0)).collect(),
            cells: Cells((0..len).map(|_| UnsafeCell::new(0)).collect()),
            mode,
            fence,
        }
    }
}

impl Region for LoomRegion {
    fn len(&self) -> usize {
        self.words.len() * 4
    }
    fn load(&self, off: usize) -> Result<u32, Error> {
        check_range(self.len(), off, 4, true)?;
        Ok(self.words[off / 4].load(Ordering::Acquire))
    }
    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        check_range(self.len(), off, 4, true)?;
        self.words[off / 4].store(val, Ordering::Release);
        Ok(())
    }
    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        check_range(self.len(), off, 4, true)?;
        Ok(self.words[off / 4].compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire))
    }
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        match self.mode {
            Mode::Words => {
                // One relaxed load per word touched: a plain copy, like the kernel's memcpy.
                let mut i = 0;
                while i < buf.len() {
                    let at = off + i;
                    let word = self.words[at / 4].load(Ordering::Relaxed).to_le_bytes();
                    let n = (4 - at % 4).min(buf.len() - i);
                    buf[i..i + n].copy_from_slice(&word[at % 4..at % 4 + n]);
                    i += n;
                }
            }
            Mode::Cells => {
                for (b, cell) in buf.iter_mut().zip(&self.cells.0[off..]) {
                    // SAFETY: loom checks this read against every other access of the cell.
                    *b = cell.with(|p| unsafe { *p });
                }
            }
        }
        Ok(())
    }
    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        check_range(self.len(), off, buf.len(), false)?;
        match self.mode {
            Mode::Words => {
                // Relaxed: whole words with one store, the odd bytes by read-modify-write.
                let mut i = 0;
                while i < buf.len() {
                    let at = off + i;
                    let word = &self.words[at / 4];
                    if at.is_multiple_of(4) && i + 4 <= buf.len() {
                        let v = u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                        word.store(v, Ordering::Relaxed);
                        i += 4;
                    } else {
                        let (shift, b) = ((at % 4) * 8, buf[i] as u32);
                        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            Some((v & !(0xff << shift)) | (b << shift))
                        });
                        i += 1;
                    }
                }
            }
            Mode::Cells => {
                for (&b, cell) in buf.iter().zip(&self.cells.0[off..]) {
                    // SAFETY: loom checks this write against every other access of the cell.
                    cell.with_mut(|p| unsafe { *p = b });
                }
            }
        }
        Ok(())
    }
    fn fence(&self) {
        if self.fence {
            fence(Ordering::SeqCst);
        }
    }
}

/// One ring at offset 0 with four slots, then the sender's 256-byte pool (peer 1's rings and
/// pool are not there: only ring 0 -> 1 is used).
fn tiny() -> Geometry {
    let stride = RING_HDR_LEN + 4 * DESC_LEN;
    Geometry {
        region_len: (stride + 256) as u64,
        max_peers: 2,
        ring_slots: 4,
        queues: 1,
        ring_stride: stride,
        ctrl_offset: 0,
        ctrl_stride: 0,
        rings_offset: 0,
        pools_offset: stride,
        pool_len: 256,
    }
}

fn frame(seq: u8, len: u32) -> Vec<u8> {
    (0..len as u8).map(|i| seq.wrapping_mul(37) ^ i).collect()
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

/// Frames of 100, 40 and 100 bytes, the first two published together. They take 128 and 64
/// bytes of the 256-byte pool; the third runs from 192 over the pool's end into the first
/// frame's bytes: the producer must wait until the consumer gave those back.
const LENS: [u32; 3] = [100, 40, 100];

fn stream(mode: Mode) {
    builder().check(move || {
        let g = tiny();
        let r = Arc::new(LoomRegion::new(g.region_len as usize, mode, true));
        let mut pool = Pool::new(&g, 0).unwrap();
        let mut p = Producer::new(&g, 0, 1, 0).unwrap();
        let mut c = Consumer::new(&g, 0, 1, 0).unwrap();
        p.reset(&*r).unwrap();
        c.reset(&*r).unwrap();

        let pr = r.clone();
        let producer = loom::thread::spawn(move || {
            for (seq, &len) in LENS.iter().enumerate() {
                let span = loop {
                    match p.reserve(&*pr, &pool, len).unwrap() {
                        Some(span) => break span,
                        None => {
                            p.collect(&*pr).unwrap();
                            if pool.reclaim([&p]) == 0 {
                                loom::thread::yield_now();
                            }
                        }
                    }
                };
                if seq == 2 {
                    assert!(span.second().is_some(), "the third frame wraps");
                }
                span.write(&*pr, 0, &frame(seq as u8, len)).unwrap();
                p.commit(
                    &*pr,
                    &mut pool,
                    &Desc {
                        flags: seq as u16,
                        ..Desc::default()
                    },
                )
                .unwrap();
                if seq != 0 {
                    p.publish(&*pr).unwrap();
                }
            }
        });

        for (seq, &len) in LENS.iter().enumerate() {
            let d = loop {
                match c.peek(&*r).unwrap() {
                    Some(d) => break d,
                    None => loom::thread::yield_now(),
                }
            };
            assert_eq!((d.len, d.flags), (len, seq as u16));
            let mut buf = vec![0; len as usize];
            c.read_frame(&*r, &d, &mut buf).unwrap();
            assert_eq!(buf, frame(seq as u8, len));
            c.pop();
            c.publish(&*r).unwrap();
        }
        producer.join().unwrap();
        assert_eq!(c.peek(&*r).unwrap(), None);
    });
}

#[test]
fn stream_bytes_in_atomic_words() {
    stream(Mode::Words);
}

#[test]
fn stream_without_data_races() {
    stream(Mode::Cells);
}

/// The event-index handshake: the consumer sleeps only after asking for a kick and looking
/// again, the producer kicks only when its publish crossed the consumer's event. A lost
/// wake-up leaves the consumer waiting forever, which loom reports as a deadlock.
fn wakeups(fence: bool) {
    builder().check(move || {
        let g = tiny();
        // Leaked rather than shared through `Arc`s, so that the deadlock panic of the variant
        // without fences unwinds without dropping loom objects (which would abort).
        let r: &'static LoomRegion = Box::leak(Box::new(LoomRegion::new(
            g.region_len as usize,
            Mode::Cells,
            fence,
        )));
        let irq: &'static Notify = Box::leak(Box::new(Notify::new()));
        let mut pool = Pool::new(&g, 0).unwrap();
        let mut p = Producer::new(&g, 0, 1, 0).unwrap();
        let mut c = Consumer::new(&g, 0, 1, 0).unwrap();
        p.reset(r).unwrap();
        c.reset(r).unwrap();
        // The consumer starts asleep, having asked for a kick on the first frame.
        c.set_event(r, 0).unwrap();

        let producer = loom::thread::spawn(move || {
            for seq in 0..2u8 {
                let span = p.reserve(r, &pool, 8).unwrap().unwrap();
                span.write(r, 0, &frame(seq, 8)).unwrap();
                p.commit(r, &mut pool, &Desc::default()).unwrap();
                let old = p.publish(r).unwrap();
                if p.kick_needed(r, old).unwrap() {
                    irq.notify();
                }
            }
        });

        let mut got = 0u8;
        while got < 2 {
            irq.wait();
            loop {
                while let Some(d) = c.peek(r).unwrap() {
                    let mut buf = [0; 8];
                    c.read_frame(r, &d, &mut buf).unwrap();
                    assert_eq!(buf[..], frame(got, 8)[..]);
                    c.pop();
                    got += 1;
                }
                c.publish(r).unwrap();
                if got == 2 {
                    break;
                }
                c.set_event(r, c.index()).unwrap();
                if c.pending(r).unwrap() == 0 {
                    break;
                }
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn no_lost_wakeups() {
    wakeups(true);
}

/// Shows the model is strong enough to matter: without the fences the wake-up can be lost.
#[test]
#[should_panic(expected = "deadlock")]
fn lost_wakeup_without_fence() {
    wakeups(false);
}
