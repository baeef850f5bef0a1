// SPDX-License-Identifier: GPL-2.0

//! Links with the peers, under the `ctl` lock (taking `peers`, each channel's `tx` and `rx`,
//! and `transparent` one at a time, never nested): the timer's housekeeping beats our heartbeat, repairs what someone
//! overwrote, runs the handshake of [`crate::protocol::link`] with every peer, restarts links
//! the data path gave up on, judges liveness, kicks peers that owe us an answer and sets the
//! carrier.

use super::{bit, Ctl, Mac, AUDIT_MS, NO_DOORBELL, WATCH_MS};
use crate::ext::{net::Device, time};
use crate::protocol::layout::{self, Error as LayoutError};
use crate::protocol::link::{
    self, feature, Action, DownReason, Liveness, PeerState, ProbeState, PROBE_REKICK_MS,
};
use crate::regs::{self, device_type, Irq};
use crate::{dev_info, dev_warn};
use core::sync::atomic::Ordering;

/// How often a peer that owes us an answer is kicked again while we wait, in ms: one whose
/// control block is garbage or disagrees with ours about the interrupt mode (so that it repairs
/// it), or one in `Run` that has not yet acknowledged our epoch (a kick may have been lost, or
/// it slept through a restart).
const REKICK_MS: u64 = 500;
/// Doorbell mode: frames that have waited this long (ms) without the peer consuming any get
/// the peer kicked again, well before [`link::HEARTBEAT_TIMEOUT_MS`] declares it dead. An
/// interrupt can be lost (a peer's MSI-X vector masked while it resets its device, a server
/// restarting); this turns such a loss into a short delay instead of a link reset.
const WAKE_AGAIN_MS: u64 = 200;

/// Polling mode: a frame that comes after a quiet of `T` waits for the next tick at most
/// `T / IDLE_SHARE` (within `poll_ms..=poll_idle_ms`), see [`idle_interval_ms`].
const IDLE_SHARE: u64 = 8;

/// Polling mode: the timer interval after `quiet_ms` without traffic: `poll_ms` at first,
/// then an eighth of the quiet, up to `poll_idle_ms`. Every tick wakes an idle guest, which
/// under TCG costs its QEMU some 0.3-0.6 ms of host CPU; a frame that breaks a quiet waits
/// for the next tick, so the longer the quiet, the less a few milliseconds more matter. The
/// interval reaches 64 ms (the default `poll_idle_ms`) after 512 ms of quiet, some 45 ticks
/// in; doubling per tick got to 4 ms in 3 ticks and then woke the guest 250 times a second.
/// The wake-up is the cost, not the work: a tick that skipped both the housekeeping and the
/// NAPI poll cost an idle guest as much (docs/benchmarks.md#idle-polling-guest).
fn idle_interval_ms(quiet_ms: u64, poll_ms: u32, poll_idle_ms: u32) -> u32 {
    let share = u32::try_from(quiet_ms / IDLE_SHARE).unwrap_or(u32::MAX);
    share.clamp(poll_ms, poll_idle_ms.max(poll_ms))
}

impl super::Net {
    /// The timer: housekeeping, then the next tick. In polling mode it ticks every `poll_ms`
    /// while the data path is busy, backing off to `poll_idle_ms` ([`idle_interval_ms`]),
    /// and schedules the NAPI poll each time; in doorbell mode it runs only while something
    /// needs watching or auditing.
    pub(super) fn tick(&self, dev: &Device) {
        let now = time::now_ms();
        if self.interrupts() {
            // Doorbell mode: the watch is over unless this look finds something to watch, and
            // it is cleared before the look, never after: frames published before the look
            // (by `flush`, under the `tx` lock that the look takes too) are seen by it, and
            // whoever publishes after finds `watching` clear and arms the timer itself.
            // Clearing it after the look could undo the flag of a `flush` in between, whose
            // frames the look missed, and leave them unwatched.
            self.watching.store(false, Ordering::Relaxed);
        }
        let later = self.housekeeping(dev, now);
        let running = self.running.load(Ordering::Relaxed);
        let next = if !self.interrupts() {
            let busy = self.busy.swap(false, Ordering::Relaxed) || self.any_stopped();
            let mut ctl = self.ctl.lock();
            if busy {
                ctl.busy_ms = now;
            }
            Some(idle_interval_ms(
                now.saturating_sub(ctl.busy_ms),
                self.params.poll_ms,
                self.params.poll_idle_ms,
            ))
        } else {
            // Doorbell mode: all quiet (`None`) sleeps until a peer kicks us.
            if later == Some(WATCH_MS) {
                self.watching.store(true, Ordering::Relaxed);
            }
            later
        };
        if running {
            self.tx_wake_all(dev);
            for c in 0..self.queues() {
                self.schedule_poll(dev, c);
            }
        }
        match next {
            // Doorbell mode: someone may have armed the timer while this ran (a `flush`
            // starting a watch, a broken ring): keep it if it fires sooner.
            Some(ms) if self.interrupts() => dev.timer_arm_within(time::ms_to_jiffies(ms)),
            Some(ms) => dev.timer_arm(time::ms_to_jiffies(ms)),
            None => {}
        }
    }

    /// Doorbell mode: interrupts peer `j` through the doorbell id it published (its
    /// IVPosition; the device drops a doorbell to an id that is not connected). Slot ids and
    /// IVPositions differ: QEMU's ivshmem cannot take an id back after a disconnect, so the
    /// server never reuses one while slot ids are reused.
    pub(super) fn kick(&self, j: u32) {
        self.kick_vector(j, 0);
    }

    /// Doorbell mode: kicks `j` about the rings of channel `c`, on the vector of its that
    /// serves them ([`link::kick_vector`]).
    pub(super) fn kick_chan(&self, j: u32, c: u32) {
        let vectors = self
            .peer_vectors
            .get(j as usize)
            .map_or(1, |v| v.load(Ordering::Relaxed));
        self.kick_vector(j, link::kick_vector(c, vectors));
    }

    /// The epoch of `j` we acknowledged (see [`super::Net::acks`]).
    pub(super) fn acked(&self, j: u32) -> u32 {
        self.acks
            .get(j as usize)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Doorbell mode: interrupts vector `vector` of peer `j`.
    fn kick_vector(&self, j: u32, vector: u32) {
        if self.irq == Irq::None {
            return;
        }
        let Some(cached) = self.doorbells.get(j as usize) else {
            return;
        };
        let id = match link::peer_doorbell(&self.shm, &self.geometry, j) {
            Some(id) => {
                cached.store(id, Ordering::Relaxed);
                id
            }
            None => match cached.load(Ordering::Relaxed) {
                NO_DOORBELL => return,
                id => id,
            },
        };
        if self
            .regs
            .write32(regs::DOORBELL, id << 16 | (vector & 0xffff))
            .is_ok()
        {
            self.stats.global.doorbells_sent.inc();
        }
    }

    /// Doorbell mode: tells every other peer to look at the control blocks (our state or an
    /// epoch changed).
    pub(super) fn kick_all(&self) {
        for j in self.others() {
            self.kick(j);
        }
    }

    /// Whether a ring error on peer `j`'s link comes from the peer restarting the link (its
    /// epoch moved past what we acknowledged) rather than from corruption.
    fn peer_restarted(&self, j: u32, acked: u32) -> bool {
        match link::read_peer(&self.shm, &self.geometry, j, self.me) {
            Ok(view) => view.epoch != acked || view.state != Some(PeerState::Run),
            Err(_) => false,
        }
    }

    /// The data path found peer `j`'s ring unusable (`e`): it has already stopped using it;
    /// count, warn (rate-limited) and have the timer restart the link, unless the peer is
    /// restarting it anyway.
    pub(super) fn ring_broken(&self, dev: &Device, j: u32, acked: u32, e: LayoutError) {
        if self.peer_restarted(j, acked) {
            return;
        }
        self.stats.global.rx_bad_desc.inc();
        self.stats.peer(j).bad_desc.inc();
        self.reset_req.fetch_or(bit(j), Ordering::Relaxed);
        // In doorbell mode the timer may be asleep: the restart must not wait for a kick.
        dev.timer_arm(1);
        if let Some(missed) = self.logs.ring.check(time::now_ms()) {
            dev_warn!(
                &self.pdev,
                "{}: peer {} broke the ring protocol ({:?}); resetting the link{}",
                dev.name(),
                j,
                e,
                missed
            );
        }
    }

    /// Beats our heartbeat, repairs what someone overwrote, restarts links the data path gave
    /// up on, runs the handshake with every peer and sets the carrier. Returns when the timer
    /// must look again in doorbell mode: [`WATCH_MS`] while something needs watching,
    /// [`AUDIT_MS`] while something is wrong (see there), or never (`None`; also when the
    /// interface is down).
    pub(super) fn housekeeping(&self, dev: &Device, now: u64) -> Option<u32> {
        let mut ctl = self.ctl.lock();
        let _ = ctl.own.beat(&self.shm);
        let (live, absent) = ctl.clock.look(now);
        if absent.is_some() {
            self.stats.global.own_stalls.inc();
        }
        // Polling mode: the timer ticks at least every `poll_idle_ms` whatever happens.
        ctl.clock.expect_next(!self.interrupts());
        self.repair(&mut ctl, dev);
        if !ctl.running {
            return None;
        }
        if let Some(name) = self.params.transparent {
            self.publish_regular(&mut ctl, dev, name);
        }
        let reset = self.reset_req.swap(0, Ordering::Relaxed);
        // Doorbell mode: the host's ivshmem-server saw a client leave. It may have been one of
        // ours, asleep as far as we can tell: ask every linked peer for a sign of life.
        let mut probe = false;
        if self.interrupts() {
            if let Ok(departures) = layout::departures(&self.shm) {
                probe = departures != ctl.departures;
                ctl.departures = departures;
            }
        }
        let (mut watch, mut audit) = (false, false);
        for j in self.others() {
            if reset & bit(j) != 0 {
                self.restart(&mut ctl, dev, j, "reset");
            }
            let (w, a) = self.manage(&mut ctl, dev, j, now, live, probe);
            watch |= w;
            audit |= a;
        }
        let any_up = ctl.links.iter().any(|l| l.up);
        if any_up && !dev.carrier_ok() {
            dev.carrier_on();
            // Address resolutions begun while nobody was there spent their probes on a dead
            // carrier, and one of them would fail the first frames sent now: start afresh.
            ctl.neigh_stale = true;
        } else if !any_up && dev.carrier_ok() {
            dev.carrier_off();
        }
        let stale = core::mem::take(&mut ctl.neigh_stale);
        let next = if watch || self.any_stopped() {
            Some(WATCH_MS)
        } else if audit || !any_up {
            Some(AUDIT_MS)
        } else {
            None
        };
        if next == Some(WATCH_MS) {
            ctl.clock.expect_next(true);
        }
        drop(ctl);
        if stale {
            dev.neigh_flush();
        }
        next
    }

    /// One step of the handshake with `j` (see [`crate::protocol::link`]). Returns whether the
    /// link needs watching (a handshake under way, frames in flight or a sign of life asked
    /// for) and whether something is wrong with the peer that needs an audit now and then
    /// ([`AUDIT_MS`]). `now` is real time (ms), `live` the [`link::LiveClock`]'s time the
    /// peer's liveness is judged by; `probe` asks a linked peer for a sign of life
    /// ([`link::Probe`]).
    fn manage(
        &self,
        ctl: &mut Ctl,
        dev: &Device,
        j: u32,
        now: u64,
        live: u64,
        probe: bool,
    ) -> (bool, bool) {
        let Ok(mut view) = link::read_peer(&self.shm, &self.geometry, j, self.me) else {
            return (false, false);
        };
        let mismatch = view.state == Some(PeerState::Run)
            && (view.features ^ self.features) & feature::DOORBELL != 0;
        if mismatch {
            // A polling peer and a doorbell peer cannot serve each other: treat it as absent.
            if ctl.mismatch_logged & bit(j) == 0 {
                ctl.mismatch_logged |= bit(j);
                // Rate-limited too: a scribbling peer can flip the bit at will.
                if let Some(missed) = self.logs.link.check(now) {
                    dev_warn!(
                        &self.pdev,
                        "{}: peer {} uses {} and we use {}: not linking (give every guest on \
                         a region the same ivshmem device type){}",
                        dev.name(),
                        j,
                        device_type(view.features & feature::DOORBELL != 0),
                        device_type(self.irq != Irq::None),
                        missed
                    );
                }
            }
            view.state = Some(PeerState::Ready);
        } else {
            ctl.mismatch_logged &= !bit(j);
        }
        let (Ok(our_epoch), Ok(our_ack)) =
            (ctl.own.epoch(&self.shm, j), ctl.own.acked(&self.shm, j))
        else {
            return (false, false);
        };
        let was_up = ctl.links.get(j as usize).is_some_and(|l| l.up);
        let mut asked = None;
        let (liveness, waiting) = if self.irq == Irq::None {
            // Polling mode: a peer that beats its heartbeat looks alive, yet one that leaves
            // our frames unconsumed holds our transmit pool, which every peer's frames share:
            // once they are what keeps the queue stopped, traffic to every peer waits for it.
            // It is restarted after the liveness timeout without consuming any (its frames
            // dropped, the handshake brings it back); one that consumes, however slowly, or
            // whose unconsumed frames hold up nobody, keeps its link.
            let stalled = self
                .waiting_ms(j, live)
                .is_some_and(|ms| ms > link::HEARTBEAT_TIMEOUT_MS);
            if was_up && stalled && self.holds_queue(dev, j) {
                self.stats.global.pool_hog_resets.inc();
                // Not linked again at once: it would hold the pool again with the next frame
                // it gets (a broadcast will do).
                let hold_ms = ctl.holds.get_mut(j as usize).map_or(0, |h| h.reset(now));
                if let Some(missed) = self.logs.ring.check(now) {
                    dev_warn!(
                        &self.pdev,
                        "{}: peer {} left our frames unconsumed for over {} ms while they held \
                         our transmit queue (every peer's traffic) stopped; resetting the link, \
                         held down for {} ms{}",
                        dev.name(),
                        j,
                        link::HEARTBEAT_TIMEOUT_MS,
                        hold_ms,
                        missed
                    );
                }
                self.restart(ctl, dev, j, "unconsumed");
                return (true, false);
            }
            (
                Liveness::Heartbeat {
                    rings: self.ring_indices(j),
                },
                None,
            )
        } else {
            let waiting = self.waiting_ms(j, live);
            let mut stalled = waiting.is_some_and(|ms| ms > link::HEARTBEAT_TIMEOUT_MS);
            if let Some(p) = ctl.probes.get_mut(j as usize) {
                if !was_up {
                    p.cancel();
                } else if probe && p.start(live, view.heartbeat) {
                    self.stats.global.departure_probes.inc();
                    self.kick(j);
                    if let Some(last) = ctl.rekick_ms.get_mut(j as usize) {
                        *last = now;
                    }
                }
                match p.check(view.heartbeat, live) {
                    ProbeState::Waiting(ms) => asked = Some(ms),
                    ProbeState::Expired => stalled = true,
                    ProbeState::Idle | ProbeState::Answered => {}
                }
            }
            (Liveness::Progress { stalled }, waiting)
        };
        let in_flight = waiting.is_some() || asked.is_some();
        let Some(link) = ctl.links.get_mut(j as usize) else {
            return (false, false);
        };
        let action = link::decide_with(link, our_epoch, our_ack, &view, live, liveness);
        let watch = in_flight || (!link.up && view.state == Some(PeerState::Run));
        if view.state.is_some() {
            ctl.garbage &= !bit(j);
        }
        match action {
            Action::Stay => {
                if link.up {
                    // The peer may change its MTU while up.
                    if let Some(p) = self.peers.lock().peers.get_mut(j as usize) {
                        p.mtu = view.mtu;
                    }
                }
            }
            Action::Resync(epoch) => {
                self.reset_halves(j);
                if let Some(a) = self.acks.get(j as usize) {
                    a.store(epoch, Ordering::Relaxed);
                }
                let _ = ctl.own.ack(&self.shm, j, epoch);
                self.kick(j);
            }
            // Held down after holding our pool: the handshake is done, the link waits (the
            // watch looks again).
            Action::Up if !ctl.holds.get(j as usize).map_or(true, |h| h.allows(now)) => {}
            Action::Up => {
                link.up = true;
                // The queue count of the link, fixed while it is up: the peer's `QUEUES`
                // from the same view that brought it up.
                let k = link::link_queues(self.queues(), view.queues);
                if let Some(v) = self.peer_vectors.get(j as usize) {
                    v.store(view.vectors, Ordering::Relaxed);
                }
                // The channels first: transmit finds the peer in `peers` only once its rings
                // take frames.
                for (_, ch) in self.active().take(k as usize) {
                    ch.tx.lock().up |= bit(j);
                    let mut rx = ch.rx.lock();
                    if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                        p.features = view.features;
                    }
                    rx.up |= bit(j);
                }
                let mut peers = self.peers.lock();
                if let Some(p) = peers.peers.get_mut(j as usize) {
                    if p.mac != view.mac && p.mac != [0; 6] {
                        ctl.neigh_stale = true;
                    }
                    p.mac = view.mac;
                    p.mtu = view.mtu;
                    p.features = view.features;
                    p.queues = k;
                }
                self.claim_mac(dev, &mut peers, j, view.mac, dev.mac());
                peers.up |= bit(j);
                drop(peers);
                self.log_link(dev, j, Some(view.mac), "");
            }
            Action::Down(reason) => {
                link.up = false;
                // Its MAC claim stays: it belongs to its seat, not its link (`claim_mac`).
                // Gone, or nothing it published can be trusted: its MAC may never come back.
                ctl.neigh_stale |= reason != DownReason::Restarted;
                if matches!(reason, DownReason::Garbage | DownReason::Silent) {
                    // Nothing the peer published can be trusted, or it stopped answering:
                    // start the link afresh (our halves reset, so nothing we sent counts as
                    // waiting any more; a new epoch, so the peer resets its halves too) and
                    // keep waking it until it answers.
                    self.reset_halves(j);
                    let _ = ctl.own.bump_epoch(&self.shm, j);
                    if reason == DownReason::Garbage {
                        ctl.garbage |= bit(j);
                    }
                    ctl.rekick_ms[j as usize] = 0;
                } else {
                    self.link_down(j);
                }
                let why = match reason {
                    DownReason::Left => "left",
                    DownReason::Restarted => "restarted",
                    DownReason::Garbage => "garbage",
                    DownReason::Silent => "silent",
                };
                let (counter, global) = if reason == DownReason::Silent {
                    (
                        &self.stats.peer(j).heartbeat_losses,
                        &self.stats.global.heartbeat_losses,
                    )
                } else {
                    (&self.stats.peer(j).resets, &self.stats.global.peer_resets)
                };
                counter.inc();
                global.inc();
                self.log_link(dev, j, None, why);
            }
        }
        // A peer that owes us an answer may be asleep (doorbell mode), and may not know that
        // anything is wrong: kick it again now and then.
        let up = ctl.links.get(j as usize).is_some_and(|l| l.up);
        let unanswered = !up
            && view.state == Some(PeerState::Run)
            && ctl.own.epoch(&self.shm, j).is_ok_and(|e| e != view.ack);
        let suspicious = unanswered || mismatch || ctl.garbage & bit(j) != 0;
        if up && asked.is_some_and(|ms| ms >= PROBE_REKICK_MS) {
            self.kick_again(ctl, j, now, PROBE_REKICK_MS);
        }
        if up
            && waiting.is_some_and(|ms| ms >= WAKE_AGAIN_MS)
            && self.kick_again(ctl, j, now, WAKE_AGAIN_MS)
        {
            self.stats.global.doorbells_repeated.inc();
        }
        if suspicious {
            self.kick_again(ctl, j, now, REKICK_MS);
        }
        if self.params.transparent.is_some() {
            let accepted = if ctl.links.get(j as usize).is_some_and(|l| l.up) {
                let published = link::read_addrs(&self.shm, &self.geometry, j);
                self.update_peer_addrs(dev, j, published.map(|p| p.addrs), &ctl.published);
                self.acceptance(j, published)
            } else {
                self.withdraw(j);
                link::Accepted::default()
            };
            let _ = ctl.own.accept(&self.shm, j, accepted);
        }
        (watch, suspicious)
    }

    /// Kicks `j` if its last kick (`Ctl::rekick_ms`) is at least `every` ms old at real time
    /// `now`; returns whether it did.
    fn kick_again(&self, ctl: &mut Ctl, j: u32, now: u64, every: u64) -> bool {
        let Some(last) = ctl.rekick_ms.get_mut(j as usize) else {
            return false;
        };
        if now.saturating_sub(*last) < every {
            return false;
        }
        *last = now;
        self.kick(j);
        true
    }

    /// What `j` consumes (in doorbell mode its only sign of life, in polling mode whether it
    /// holds the transmit queue): how long (ms of the [`link::LiveClock`] time `now`) the
    /// oldest frames we sent it have waited while it consumed none, or `None` when nothing is
    /// in flight.
    fn waiting_ms(&self, j: u32, now: u64) -> Option<u64> {
        // The longest wait over the link's rings.
        let mut longest = None;
        for ch in self.chans.iter() {
            let mut tx = ch.tx.lock();
            let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
                continue;
            };
            let n = p.prod.in_flight(&self.shm).unwrap_or(0);
            let cons = p.prod.published().wrapping_sub(n);
            if n == 0 || cons != p.last_cons || !p.was_waiting {
                p.cons_change_ms = now;
            }
            p.last_cons = cons;
            p.was_waiting = n > 0;
            if n > 0 {
                longest = longest.max(Some(now.saturating_sub(p.cons_change_ms)));
            }
        }
        longest
    }

    /// The indices peer `j` writes as it moves data with us, read raw (only compared: a sign
    /// of life when they change): its consumer index on our ring, its producer index on its.
    fn ring_indices(&self, j: u32) -> [u32; 2] {
        // Summed over the link's rings: the indices only move forward, so the sums change
        // whenever one of them does.
        let (mut cons, mut prod) = (0u32, 0u32);
        for ch in self.chans.iter() {
            if let Some(Some(p)) = ch.tx.lock().rings.get(j as usize) {
                cons = cons.wrapping_add(p.prod.cons_idx_raw(&self.shm).unwrap_or(0));
            }
            if let Some(Some(p)) = ch.rx.lock().peers.get(j as usize) {
                prod = prod.wrapping_add(p.cons.prod_idx_raw(&self.shm).unwrap_or(0));
            }
        }
        [cons, prod]
    }

    /// Resets our halves of the rings with `j` (producer to it, consumer from it). The link
    /// must be down in both masks.
    pub(super) fn reset_halves(&self, j: u32) {
        self.peers.lock().up &= !bit(j);
        for ch in self.chans.iter() {
            let mut tx = ch.tx.lock();
            tx.up &= !bit(j);
            tx.stopped_for &= !bit(j);
            if let Some(Some(p)) = tx.rings.get_mut(j as usize) {
                let _ = p.prod.reset(&self.shm);
            }
            drop(tx);
            let mut rx = ch.rx.lock();
            rx.up &= !bit(j);
            if let Some(Some(p)) = rx.peers.get_mut(j as usize) {
                let _ = p.cons.reset(&self.shm);
            }
        }
        self.withdraw(j);
    }

    /// Stops traffic with `j` in both directions. What we sent it and it did not consume is
    /// dropped: it shares our pool with every other peer's frames, and a peer that went away
    /// must not hold it (the ring is reset before the link comes up again).
    pub(super) fn link_down(&self, j: u32) {
        self.peers.lock().up &= !bit(j);
        for ch in self.chans.iter() {
            let mut tx = ch.tx.lock();
            tx.up &= !bit(j);
            tx.stopped_for &= !bit(j);
            if let Some(Some(p)) = tx.rings.get_mut(j as usize) {
                p.prod.abandon();
            }
            drop(tx);
            ch.rx.lock().up &= !bit(j);
        }
        self.withdraw(j);
    }

    /// Restarts our side of the link with `j`: reset our halves, then bump our epoch so the
    /// peer resets its halves too before traffic resumes.
    fn restart(&self, ctl: &mut Ctl, dev: &Device, j: u32, why: &str) {
        self.reset_halves(j);
        let _ = ctl.own.bump_epoch(&self.shm, j);
        self.kick(j);
        if let Some(link) = ctl.links.get_mut(j as usize) {
            if link.up {
                link.up = false;
                self.log_link(dev, j, None, why);
            }
        }
        self.stats.global.peer_resets.inc();
        self.stats.peer(j).resets.inc();
    }

    /// Logs a link of ours to `j` going up (with the peer's MAC) or down (with the reason),
    /// rate-limited: a hostile peer can make a link flap as fast as it likes.
    fn log_link(&self, dev: &Device, j: u32, up: Option<[u8; 6]>, why: &str) {
        let Some(missed) = self.logs.link.check(time::now_ms()) else {
            return;
        };
        match up {
            Some(mac) => dev_info!(
                &self.pdev,
                "{}: link to peer {} ({}) up{}",
                dev.name(),
                j,
                Mac(mac),
                missed
            ),
            None => dev_info!(
                &self.pdev,
                "{}: link to peer {} down ({}){}",
                dev.name(),
                j,
                why,
                missed
            ),
        }
    }

    /// Puts back what someone overwrote of our control block, of the region header, or of our
    /// slot word (see [`link::Own::repair`], [`layout::repair_header`], [`layout::reclaim_slot`]).
    /// While we are attached, nobody else may write those, so a difference is a peer
    /// misbehaving; it is counted and logged (rate-limited).
    fn repair(&self, ctl: &mut Ctl, dev: &Device) {
        let own = ctl.own.repair(&self.shm).unwrap_or(0);
        let header = layout::repair_header(&self.shm, &self.attached).unwrap_or(0);
        let slot = layout::reclaim_slot(&self.shm, &self.geometry, self.me, self.shm.token())
            .map_or(0, u32::from);
        let fixed = own + header + slot;
        if fixed == 0 {
            return;
        }
        self.stats.global.region_repairs.add(u64::from(fixed));
        if let Some(missed) = self.logs.repair.check(time::now_ms()) {
            dev_warn!(
                &self.pdev,
                "{}: someone overwrote {} words of our control block, {} of the region header \
                 and {} of our slot; restored{}",
                dev.name(),
                own,
                header,
                slot,
                missed
            );
        }
    }

    /// Schedules the NAPI poll of channel `c`, unless its context is held (polling again at
    /// once by itself, see `spin` in rx.rs): scheduling it would only mark it missed, and keep
    /// it from completing when it lets go (`release`).
    fn schedule_poll(&self, dev: &Device, c: u32) {
        if !self
            .chan(c)
            .is_some_and(|ch| ch.held.load(Ordering::Relaxed))
        {
            dev.napi_schedule(c);
        }
    }

    /// A doorbell interrupt on `vector` (the `interrupt` operation): schedules the NAPI
    /// contexts of the channels the vector serves, or, while the interface is down, has the
    /// timer beat the heartbeat. Returns whether the interrupt was ours.
    pub(super) fn doorbell(&self, dev: &Device, vector: u32) -> bool {
        match self.irq {
            Irq::None | Irq::Polled => return false,
            // A shared line: ours only if the device says so (reading clears it).
            Irq::Intx => {
                if self.regs.read32(regs::INTR_STATUS).map_or(true, |s| s == 0) {
                    return false;
                }
            }
            Irq::Msix => {}
        }
        self.stats.global.doorbells_received.inc();
        if self.running.load(Ordering::Relaxed) {
            // Vector `v` serves channels `v`, `v + vectors`, ...
            let step = self.vectors.max(1) as usize;
            for c in (vector..self.queues()).step_by(step) {
                self.schedule_poll(dev, c);
            }
        } else {
            // Interface down: no NAPI, but a peer may be asking whether we are alive (a
            // joining guest probing slots): one timer tick beats the heartbeat.
            dev.timer_arm(1);
        }
        true
    }
}
