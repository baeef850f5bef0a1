// SPDX-License-Identifier: GPL-2.0

//! Receive, in NAPI context `c` under channel `c`'s `rx` lock: frames are taken off ring `c` of
//! every peer whose link has more than `c` queues into
//! socket buffers (a linear head and page fragments), checked against what the peer announced,
//! handed to GRO (or, in transparent mode, to the regular interface), and their space given
//! back to the peer every few frames. In doorbell mode the poll asks the peers for a kick on
//! their next frame before NAPI sleeps, or not to kick while a socket busy-polls us or the
//! context spins. While traffic flows, a context in its thread spins (polls again at once)
//! in both modes: see `spin`.

use super::{bit, transparent::Target, Chan, Rx, WATCH_MS};
use crate::ext::{
    net::{Device, Napi, NapiPoll, Offload},
    time,
};
use crate::protocol::frame::{self, RxVerdict, ETH_HLEN};
use crate::protocol::link::feature;
use crate::protocol::ring::Consumer;
use crate::regs::Irq;
use core::sync::atomic::Ordering;
use kernel::error::code::E2BIG;

/// Received frames between two publications of the consumer index (gives space back early).
const PUBLISH_EVERY: u32 = 16;
/// Bytes of a received frame copied into the socket buffer's linear part; the rest goes into
/// page fragments. Holds the Ethernet, IP and TCP headers the stack (and transparent mode's
/// source check) reads first; `virtio_net_hdr_to_skb` pulls more if an offload needs it.
const RX_HEAD: u32 = 256;
/// How long (ms, on the jiffies clock: 2 to 3 ms) after the last frame found or sent traffic
/// is taken to be flowing ([`super::Net::note_traffic`]): a context spins that long
/// ([`super::Net::spin`]), and in polling mode the poll hrtimer keeps following up polls that
/// find nothing before leaving polling to the timer ([`super::Net::keep_polling`]).
const LINGER_MS: u64 = 2;
/// Polling mode: while lingering, polls that find nothing are followed up `poll_us` later
/// for the first millisecond after frames were last found (an answer under TCG takes some
/// 50-150 µs), then twice as late per further millisecond, up to this many doublings
/// (`8 * poll_us`). A guest that only sends (a UDP flood's sender) finds nothing in its
/// polls: without the backoff its hrtimer interrupted it every `poll_us` (50,000 times a
/// second at 20 µs, each an emulated timer reprogramming under TCG) for as long as it sent.
/// Time, not a count of empty polls: a socket busy polling us makes many within microseconds.
/// The clock is jiffies: "per millisecond" holds at HZ=1000 (the test kernel's); at HZ=250 the
/// gap goes from `poll_us` to `8 * poll_us` after the first jiffy.
const MAX_GAP_SHIFT: u64 = 3;

/// What a poll (or a send) that asks for the next poll found, for
/// [`super::Net::keep_polling`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Frames: more may follow at once.
    Frames,
    /// Nothing: we have just sent some, and an answer may follow.
    Sent,
    /// Nothing.
    Nothing,
}

/// A context held this long (ms, on the jiffies clock: 2 to 3 ms) is let go by the next poll
/// after which another task wants the CPU ([`super::Net::release`]).
const SPIN_SLICE_MS: u64 = 2;
/// A context in softirq context moves to its thread to spin once traffic has been flowing
/// (lingering without a break) this long (ms, on the jiffies clock).
const SPIN_MOVE_MS: u64 = 10;
/// No context spins for this long (ms) after a socket busy polled one.
const BUSY_POLL_HOLD_MS: u64 = 1000;

/// `rx_threads`: the window (ms, on the jiffies clock) over which a context's received
/// frames are counted.
const WINDOW_MS: u64 = 10;
/// `rx_threads`: a context that received more frames than this in a window in softirq
/// context (30,000 frames/s, more than its application can take under emulation and a
/// fraction of a flood's) moves to its thread...
const THREAD_ABOVE_FRAMES: u64 = 300;
/// ...and so does one that received more bytes than this (1 MiB in 10 ms, about 840 Mbit/s:
/// a TCP stream, whose large frames are few).
const THREAD_ABOVE_BYTES: u64 = 1 << 20;
/// `rx_threads`: a context that we moved comes back to softirq context (where a lone frame
/// is received sooner, without waking a thread) after a window with fewer frames than this
/// (10,000 frames/s, several times a request/response exchange's rate under TCG)...
const SOFTIRQ_BELOW_FRAMES: u64 = 100;
/// ...and fewer bytes than this (256 KiB in 10 ms, about 210 Mbit/s).
const SOFTIRQ_BELOW_BYTES: u64 = 256 << 10;
/// The first frame a poll takes from a ring goes to the stack at once (`Napi::receive_now`)
/// rather than through GRO if it is no GSO frame and at most this many bytes past the
/// Ethernet header: GRO merges nothing that small (a 1-byte TCP request is 53 bytes, a pure
/// ACK 52) but costs a round of lookups per frame, dear under emulation, and a lone request
/// waits for them. Later frames of the poll (a burst of ACKs) still go through GRO, whose
/// list hands them to the stack together.
const RECEIVE_NOW_MAX: u32 = 128;

/// `rx_threads`: the nice value of the NAPI threads. The lowest priority: while an
/// application that reads what we receive can run, it runs first; frames wait in the ring,
/// whose being full stops the sender's queue, instead of being received only to be dropped at
/// a full socket (receive livelock). Spare CPU time still goes to the poll at once.
pub(super) const RX_THREAD_NICE: i32 = 19;

impl super::Net {
    /// The poll of NAPI context `c`: in doorbell mode, NAPI 0 looks at the links first
    /// (kicks announce link changes too, on vector 0); then up to `budget` frames from ring
    /// `c` of the peers whose links are up on channel `c`, starting
    /// where the last poll stopped; then, if the rings ran dry, NAPI completes and the peers
    /// are asked to kick us on their next frame.
    pub(super) fn napi_poll(&self, dev: &Device, c: u32, napi: NapiPoll<'_>, budget: u32) -> u32 {
        self.stats.global.rx_polls.inc();
        if napi.in_busy_poll() {
            self.stats.global.rx_busy_polls.inc();
            // A socket polls us itself: leave the context free for it (see `spin`).
            self.busy_polled_ms
                .store(time::now_ms().max(1), Ordering::Relaxed);
        }
        let Some(ch) = self.chan(c) else {
            // Never scheduled: NAPI contexts beyond our channels are not polled.
            let _ = napi.complete_done(0);
            return 0;
        };
        if self.interrupts() && c == 0 {
            // Kicks also announce link changes: look at the links, at most once a ms.
            let now = time::now_ms();
            if self.last_manage_ms.swap(now, Ordering::Relaxed) != now {
                match self.housekeeping(dev, now) {
                    // Something to watch: make sure the timer looks soon (earlier than an
                    // audit it may be armed for, without putting off a sooner expiry such as
                    // a broken ring's).
                    Some(WATCH_MS) => {
                        if !self.watching.swap(true, Ordering::Relaxed) {
                            dev.timer_arm_within(time::ms_to_jiffies(WATCH_MS));
                        }
                    }
                    // Something to audit: make sure the timer looks by then, without putting
                    // off a watch it may be armed for.
                    Some(ms) => dev.timer_arm_within(time::ms_to_jiffies(ms)),
                    None => {}
                }
            }
        }
        // Moving to the thread: this poll completes (one frame short of its budget) so that
        // the next scheduling wakes the thread.
        let moving = budget > 1 && self.place_poll(&napi, ch);
        let take = if moving { budget - 1 } else { budget };
        let n = self.geometry.max_peers;
        let mut done = 0;
        let mut rx = ch.rx.lock();
        let start = rx.next % n;
        for k in 0..n {
            let j = (start + k) % n;
            if rx.up & bit(j) == 0 {
                continue;
            }
            done += self.receive(dev, &napi, &mut rx, c, j, take - done);
            if done >= take {
                rx.next = (j + 1) % n;
                break;
            }
        }
        drop(rx);
        if done > 0 {
            self.busy.store(true, Ordering::Relaxed);
            self.count_poll(&napi, ch, c);
        }
        // A held context: NAPI polls it again at once (the poll reports its whole budget
        // without completing). Polling mode holds one while polls keep finding frames, rather
        // than after an hrtimer costing an emulated timer reprogramming per poll; doorbell
        // mode only in its thread (in softirq context it completes after each poll and waits
        // for a kick). In both, a poll that finds nothing holds it while it spins (`spin`).
        // Otherwise the poll completes: polling mode leaves the rest to the hrtimer's linger,
        // doorbell mode asks the peers for a kick.
        let now = time::now_ms();
        if self.interrupts() && done > 0 {
            self.note_traffic(Found::Frames, now);
        }
        let spin = done == 0 && !moving && self.spin(ch, now);
        if !moving {
            self.spin_move(ch, now);
        }
        let held = !moving
            && (spin || (done > 0 && (!self.interrupts() || ch.threaded.load(Ordering::Relaxed))));
        let released = held && self.release(&napi, ch, done, now);
        let again = held && !released;
        if !again {
            ch.held.store(false, Ordering::Relaxed);
            if done == 0 {
                self.leave_thread(&napi, ch, now);
            }
        } else if self.interrupts() {
            // Doorbell mode: we look again at once, so the peers need not kick us.
            self.quiet_rx_events(ch);
        }
        if released && !self.interrupts() {
            // The next look comes late enough for the task we let run to reach its receive
            // (and busy poll us, if it does) first.
            dev.poll_within_ns(u64::from(self.params.poll_us) * 1000 << MAX_GAP_SHIFT);
        }
        if !self.interrupts() {
            let found = if done > 0 {
                Found::Frames
            } else {
                Found::Nothing
            };
            self.keep_polling(dev, found, !again);
        }
        self.tx_wake(dev, c);
        if done < budget && !again {
            let completed = napi.complete_done(done);
            if moving && completed {
                // Traffic keeps coming (the last window was busy): the thread takes it on.
                dev.napi_schedule(c);
            } else if self.interrupts() {
                if !completed {
                    // Busy polling (or work noted meanwhile): we will be polled again, so a
                    // kick would only cost both sides an interrupt.
                    self.quiet_rx_events(ch);
                } else if self.arm_rx_events(ch) {
                    // A frame slipped in before the peer could see our event: poll again.
                    dev.napi_schedule(c);
                }
            }
        }
        done
    }

    /// Whether contexts spin (`spin`): `rx_spin`, which needs their threads (`rx_threads`)
    /// and, in polling mode, the linger of `poll_us` (`keep_polling`).
    fn spins(&self) -> bool {
        self.params.rx_spin
            && self.params.rx_threads
            && (self.interrupts() || self.params.poll_us != 0)
    }

    /// Whether traffic is taken to flow at `now` (jiffies ms; see `note_traffic`).
    fn lingering(&self, now: u64) -> bool {
        now <= self.linger_until_ms.load(Ordering::Relaxed)
    }

    /// Whether a socket busy polled us within [`BUSY_POLL_HOLD_MS`] of `now`.
    fn busy_polled(&self, now: u64) -> bool {
        let busy = self.busy_polled_ms.load(Ordering::Relaxed);
        busy != 0 && now.wrapping_sub(busy) < BUSY_POLL_HOLD_MS
    }

    /// A poll of channel `ch` that found nothing: whether it spins, that is NAPI polls again
    /// at once instead of leaving the next look to the poll hrtimer (polling mode) or to a
    /// peer's kick (doorbell mode, which asks the peers not to kick meanwhile).
    ///
    /// Under emulation either is dear. Each hrtimer expiry has the guest program the emulated
    /// local APIC timer, and QEMU's main loop wakes to arm and then to fire it (about 4
    /// wake-ups per expiry: a TCP stream's sender woke it 19,000 times a second, a quarter of
    /// a host CPU taken from the vCPUs). Each kick is an emulated MMIO write on the sender and
    /// an eventfd, a main-loop wake-up and an interrupt on the receiver. A spinning context
    /// costs none of that and sees an answer at once. It spins only:
    /// - while lingering (frames found or sent within [`LINGER_MS`]): an idle guest halts;
    /// - in the context's own thread, at nice 19 ([`RX_THREAD_NICE`]): it gets the CPU only
    ///   when nothing else wants it. A context in softirq context that would spin is moved to
    ///   its thread ([`super::Net::spin_move`]);
    /// - unless a socket busy polled us within [`BUSY_POLL_HOLD_MS`]: a busy poller can only
    ///   poll a context nobody holds, and while we spun it would wait out its whole
    ///   `busy_read` for nothing ([`super::Net::release`] lets it in now and then, to be
    ///   noticed).
    fn spin(&self, ch: &Chan, now: u64) -> bool {
        if !self.spins()
            || !self.lingering(now)
            || self.busy_polled(now)
            || !ch.threaded.load(Ordering::Relaxed)
        {
            return false;
        }
        self.stats.global.rx_spins.inc();
        true
    }

    /// At the end of a poll of channel `ch`'s context, in softirq context: asks its next poll
    /// to move it to its thread ([`super::Net::place_poll`]) if it would spin there, that is
    /// once traffic has kept flowing for [`SPIN_MOVE_MS`] (not for a lone exchange: a ping a
    /// second would move it to and fro) and no socket busy polls us.
    fn spin_move(&self, ch: &Chan, now: u64) {
        if !self.spins() || ch.threaded.load(Ordering::Relaxed) {
            return;
        }
        if self.lingering(now)
            && now.wrapping_sub(self.linger_since_ms.load(Ordering::Relaxed)) >= SPIN_MOVE_MS
            && !self.busy_polled(now)
        {
            ch.move_due.store(true, Ordering::Relaxed);
        }
    }

    /// A poll of channel `ch` that would have NAPI poll it again at once (it found frames,
    /// or it spins): whether it completes instead, leaving the next look to the hrtimer or
    /// a kick. Once the context has been held for [`SPIN_SLICE_MS`], the first such poll
    /// after which another task wants the CPU (typically one this poll woke with data: its
    /// frames are handed over from GRO first, so that the wake-up happens now) completes: if
    /// that task is a socket that busy polls us, it finds the context free, polls it, and is
    /// noticed ([`BUSY_POLL_HOLD_MS`]). Otherwise it would busy poll a context we hold, in
    /// vain for its whole `busy_read`. Notes whether the context stays held, and since when.
    fn release(&self, napi: &Napi, ch: &Chan, done: u32, now: u64) -> bool {
        let due = ch.held.load(Ordering::Relaxed)
            && now.wrapping_sub(ch.held_since_ms.load(Ordering::Relaxed)) >= SPIN_SLICE_MS;
        if due && done > 0 {
            napi.flush_gro();
        }
        let release = due && napi.need_resched();
        if release {
            ch.held.store(false, Ordering::Relaxed);
        } else if !ch.held.swap(true, Ordering::Relaxed) {
            ch.held_since_ms.store(now, Ordering::Relaxed);
        }
        release
    }

    /// A poll that found nothing and completes: once the linger is over, a context in its
    /// thread comes back to softirq context, where the next look (the timer's, a kick's)
    /// wakes no thread (an idle polling guest's looks cost less there).
    fn leave_thread(&self, napi: &Napi, ch: &Chan, now: u64) {
        if !self.spins() || !ch.threaded.load(Ordering::Relaxed) || self.lingering(now) {
            return;
        }
        ch.threaded.store(false, Ordering::Relaxed);
        if napi.set_threaded(false) {
            self.stats.global.rx_to_softirq.inc();
        }
    }

    /// `rx_threads`, at the start of a poll of channel `ch`'s context: moves it to its kernel
    /// thread if the last window asked for it ([`THREAD_ABOVE_FRAMES`],
    /// [`THREAD_ABOVE_BYTES`]). Returns whether it moved (this poll must complete for the move
    /// to take effect).
    fn place_poll(&self, napi: &Napi, ch: &Chan) -> bool {
        if !self.params.rx_threads
            || ch.threaded.load(Ordering::Relaxed)
            || !ch.move_due.swap(false, Ordering::Relaxed)
        {
            return false;
        }
        if !napi.set_threaded(true) {
            // No thread, or the administrator made the device threaded: nothing to move.
            return false;
        }
        ch.threaded.store(true, Ordering::Relaxed);
        self.stats.global.rx_to_thread.inc();
        true
    }

    /// `rx_threads`, at the end of a poll of channel `c` that received frames: a window that
    /// is over decides where the context polls next, from what its receive queue's counters
    /// moved in it: to its thread after more than [`THREAD_ABOVE_FRAMES`] or
    /// [`THREAD_ABOVE_BYTES`] in softirq context (the move is made by the next poll,
    /// [`super::Net::place_poll`]), back after fewer than [`SOFTIRQ_BELOW_FRAMES`] and
    /// [`SOFTIRQ_BELOW_BYTES`] in the thread. The gap between the two keeps a load near
    /// either from moving it to and fro.
    fn count_poll(&self, napi: &Napi, ch: &Chan, c: u32) {
        if !self.params.rx_threads {
            return;
        }
        let now = time::now_ms();
        if now.wrapping_sub(ch.window_start_ms.load(Ordering::Relaxed)) < WINDOW_MS {
            return;
        }
        let queue = self.stats.queue(c);
        let (packets, bytes) = (queue.rx_packets.get(), queue.rx_bytes.get());
        let frames = packets.wrapping_sub(ch.window_packets.swap(packets, Ordering::Relaxed));
        let bytes_in = bytes.wrapping_sub(ch.window_bytes.swap(bytes, Ordering::Relaxed));
        ch.window_start_ms.store(now, Ordering::Relaxed);
        if ch.threaded.load(Ordering::Relaxed) {
            // Not while traffic keeps flowing (it may be spinning): `leave_thread` moves it
            // back when the linger ends.
            let lingering = self.spins() && self.lingering(now);
            if !lingering && frames < SOFTIRQ_BELOW_FRAMES && bytes_in < SOFTIRQ_BELOW_BYTES {
                ch.threaded.store(false, Ordering::Relaxed);
                if napi.set_threaded(false) {
                    self.stats.global.rx_to_softirq.inc();
                }
            }
        } else if frames > THREAD_ABOVE_FRAMES || bytes_in > THREAD_ABOVE_BYTES {
            ch.move_due.store(true, Ordering::Relaxed);
        }
    }

    /// Polling mode with `poll_us`: traffic is flowing (this poll took frames, or we just sent
    /// some and an answer may follow), so poll again within microseconds rather than at the
    /// next timer tick, and keep doing so for [`LINGER_MS`] after the last frame; then only
    /// the timer polls (every `poll_ms`, backing off to `poll_idle_ms`), so an idle guest
    /// pays no more than before. The linger is measured in time, not in polls: a socket busy
    /// polling us runs many empty polls within microseconds, and counting those would end the
    /// linger just before that socket goes to sleep waiting for an answer. `arm` is false
    /// when NAPI polls again by itself (a poll that found frames did not complete): the
    /// linger is noted, the hrtimer left alone.
    ///
    /// The follow-ups come `poll_us` apart, later once frames were last found some
    /// milliseconds ago ([`MAX_GAP_SHIFT`]); a send keeps the pace. While a transmit queue is
    /// stopped we wait for room that the peer frees by consuming: `stop_for` brings the first
    /// look forward to `poll_us`, and the follow-ups keep coming after the linger too, at the
    /// slowest pace, until the queue wakes.
    ///
    /// A send after the linger ended (the first in a while: a request, a ping) also brings
    /// the timer back to `poll_ms`, so that an answer that takes longer than the linger is
    /// not left to an interval grown long in the quiet before.
    pub(super) fn keep_polling(&self, dev: &Device, found: Found, arm: bool) {
        let us = u64::from(self.params.poll_us);
        if us == 0 {
            return;
        }
        let now = time::now_ms();
        let lingering = self.note_traffic(found, now);
        match found {
            Found::Nothing if !lingering && !self.any_stopped() => return,
            Found::Sent if !lingering => {
                self.busy.store(true, Ordering::Relaxed);
                dev.timer_arm_within(time::ms_to_jiffies(self.params.poll_ms));
            }
            _ => {}
        }
        if !arm {
            // NAPI polls again by itself.
            return;
        }
        let quiet_ms = now.saturating_sub(self.found_ms.load(Ordering::Relaxed));
        // Waiting for room after the linger: at the slowest pace (a peer that stopped
        // consuming is reset after HEARTBEAT_TIMEOUT_MS).
        let shift = if !lingering && self.any_stopped() {
            MAX_GAP_SHIFT
        } else {
            quiet_ms.min(MAX_GAP_SHIFT)
        };
        dev.poll_within_ns((us * 1000) << shift);
    }

    /// Notes what a poll found or that we sent, at `now` (jiffies ms): frames and sends
    /// extend the linger to [`LINGER_MS`] from now (and one that starts it notes when).
    /// Returns whether we were lingering before. The jiffies clock: reading it costs nothing,
    /// unlike a clocksource under emulation, and a linger of milliseconds needs no finer one.
    pub(super) fn note_traffic(&self, found: Found, now: u64) -> bool {
        let lingering = self.lingering(now);
        if found == Found::Nothing {
            return lingering;
        }
        if !lingering {
            self.linger_since_ms.store(now, Ordering::Relaxed);
        }
        // Written once a millisecond at most: every send and poll comes here, from every CPU.
        if found == Found::Frames && self.found_ms.load(Ordering::Relaxed) != now {
            self.found_ms.store(now, Ordering::Relaxed);
        }
        if self.linger_until_ms.load(Ordering::Relaxed) != now + LINGER_MS {
            self.linger_until_ms
                .store(now + LINGER_MS, Ordering::Relaxed);
        }
        lingering
    }

    /// Receives up to `budget` frames from ring `c` of peer `j`; returns how many it took off
    /// the ring.
    fn receive(&self, dev: &Device, napi: &Napi, rx: &mut Rx, c: u32, j: u32, budget: u32) -> u32 {
        let Some(Some(p)) = rx.peers.get_mut(j as usize) else {
            return 0;
        };
        let (global, peer) = (&self.stats.global, self.stats.peer(j));
        let queue = self.stats.queue(c);
        // Our MTU (not the peer's) and the largest frame we advertise bound what we take.
        let (mtu, max_frame) = (dev.mtu(), self.max_frame());
        let mut done = 0;
        let mut unpublished = 0;
        let mut broken = None;
        while done < budget {
            let d = match p.cons.peek(&self.shm) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            };
            done += 1;
            let offload = Offload {
                flags: d.flags as u8,
                gso_type: d.gso_type,
                hdr_len: d.hdr_len,
                gso_size: d.gso_size,
                csum_start: d.csum_start,
                csum_offset: d.csum_offset,
            };
            let claimed = (if offload.flags != 0 { feature::CSUM } else { 0 })
                | (if offload.gso_type != 0 {
                    feature::GSO
                } else {
                    0
                });
            let skb = if d.len < ETH_HLEN || d.flags > 0xff || claimed & !p.features != 0 {
                // A runt frame, or an offload the peer did not announce: drop, count.
                global.rx_bad_desc.inc();
                peer.bad_desc.inc();
                None
            } else if frame::rx_verdict(d.len, d.gso_type, d.gso_size, mtu, max_frame)
                != RxVerdict::Accept
            {
                // Longer than we take, or cut into absurdly small segments: a frame the
                // stack never gave the peer for us. Only the frame is dropped; the ring is
                // fine.
                global.rx_drop_oversize.inc();
                peer.rx_drop_oversize.inc();
                queue.rx_drops.inc();
                None
            } else {
                match napi.alloc_rx_skb(d.len, RX_HEAD) {
                    Ok(skb) => Some(skb),
                    // More than a head and MAX_SKB_FRAGS pages (the check above keeps such
                    // frames from here).
                    Err(e) if e == E2BIG => {
                        global.rx_drop_oversize.inc();
                        peer.rx_drop_oversize.inc();
                        queue.rx_drops.inc();
                        None
                    }
                    Err(_) => {
                        global.rx_drop_nomem.inc();
                        queue.rx_drops.inc();
                        None
                    }
                }
            };
            // Copied whole into the buffer from where the frame lies in the sender's pool, in
            // one piece or two. The ranges are inside the pool, so inside the mapping: a failed
            // copy would be ours, not the peer's, and costs only the frame.
            let filled = skb.map(|skb| {
                p.cons.span(&d).map(|span| {
                    let second = span.second().unwrap_or(0..0);
                    skb.fill_pieces(self.shm.region(), span.first(), second)
                })
            });
            let skb = match filled {
                None => None,
                Some(Err(e)) => {
                    broken = Some(e);
                    break;
                }
                Some(Ok(Ok(skb))) => Some(skb),
                Some(Ok(Err(_))) => {
                    global.rx_drop_error.inc();
                    queue.rx_drops.inc();
                    None
                }
            };
            if let Some(mut skb) = skb {
                let regular = self.regular_target(j, skb.head());
                if offload != Offload::default() && skb.set_offload(&offload).is_err() {
                    // Metadata that does not match the frame: never trusted.
                    global.rx_bad_desc.inc();
                    peer.bad_desc.inc();
                } else {
                    match regular {
                        Target::Ours => {
                            // The socket it reaches answers on our transmit queue `c` (XPS by
                            // receive queue), so on ring `c` of the link, which the peer polls
                            // on the CPU it sends ring `c`'s frames from.
                            skb.record_rx_queue(c);
                            if skb.eth_type_trans(dev).is_ok() {
                                if done == 1
                                    && offload.gso_size == 0
                                    && skb.len() <= RECEIVE_NOW_MAX
                                {
                                    napi.receive_now(skb);
                                } else {
                                    napi.gro_receive(skb);
                                }
                            } else {
                                // Shorter than its Ethernet header (the runt check above keeps
                                // such frames from here).
                                global.rx_bad_desc.inc();
                                peer.bad_desc.inc();
                            }
                        }
                        Target::Deliver(ifindex) => {
                            // Straight to the stack, not through our GRO list: the regular
                            // device is looked up under RCU and must not outlive that.
                            if skb.receive_on(napi, ifindex).is_ok() {
                                global.transparent_rx_packets.inc();
                            } else {
                                global.transparent_rx_dropped.inc();
                            }
                        }
                        Target::Refuse => {
                            drop(skb);
                            global.transparent_rx_dropped.inc();
                        }
                    }
                    // Device totals before the queue's (see `send`).
                    global.rx_packets.inc();
                    global.rx_bytes.add(d.len.into());
                    queue.rx_packets.inc();
                    queue.rx_bytes.add(d.len.into());
                    peer.rx_packets.inc();
                    peer.rx_bytes.add(d.len.into());
                }
            }
            p.cons.pop();
            unpublished += 1;
            if unpublished == PUBLISH_EVERY {
                self.give_back(&mut p.cons, c, j);
                unpublished = 0;
            }
        }
        if unpublished > 0 {
            self.give_back(&mut p.cons, c, j);
        }
        if let Some(e) = broken {
            rx.up &= !bit(j);
            self.ring_broken(dev, j, self.acked(j), e);
        }
        done
    }

    /// Publishes our consumer index on ring `c` from `j`, kicking the producer (on the
    /// vector serving its channel `c`) if it waits for the space.
    fn give_back(&self, cons: &mut Consumer, c: u32, j: u32) {
        let Ok(old) = cons.publish(&self.shm) else {
            return;
        };
        if self.irq != Irq::None && cons.kick_needed(&self.shm, old) == Ok(true) {
            self.kick_chan(j, c);
        }
    }

    /// Doorbell mode, before NAPI sleeps: asks every peer to kick us on its next frame, then
    /// looks again. Returns whether a frame arrived meanwhile (poll again).
    fn arm_rx_events(&self, ch: &Chan) -> bool {
        let mut rx = ch.rx.lock();
        rx.quiet = false;
        let up = rx.up;
        let mut more = false;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                let idx = p.cons.index();
                let _ = p.cons.set_event(&self.shm, idx);
                // A broken ring also means poll again: the poll counts it and resets the link.
                more |= p.cons.pending(&self.shm).map_or(true, |n| n > 0);
            }
        }
        more
    }

    /// Doorbell mode, while we keep being polled (socket busy polling): asks every peer not
    /// to kick us, with an event index it cannot reach. The poll that ends the busy polling
    /// completes NAPI and re-arms the events with [`super::Net::arm_rx_events`], which looks at the
    /// rings again after, so no frame is left without a kick.
    fn quiet_rx_events(&self, ch: &Chan) {
        let mut rx = ch.rx.lock();
        if rx.quiet {
            return;
        }
        rx.quiet = true;
        let up = rx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                let never = p.cons.index().wrapping_add(2 * p.cons.ring().slots());
                let _ = p.cons.set_event(&self.shm, never);
            }
        }
    }
}
