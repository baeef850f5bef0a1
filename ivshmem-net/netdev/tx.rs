// SPDX-License-Identifier: GPL-2.0

//! Transmit, under a channel's `tx` lock: a frame from `start_xmit` on transmit queue `t`
//! (and from transparent mode's hook) goes to the peer that owns the destination MAC (every
//! peer whose link is up, for broadcast and multicast), on ring `c = t % k` of a link of `k`
//! queues: it is copied into partition `c` of our transmit pool and described in that ring,
//! published in batches (`xmit_more`), and the peer is kicked on the vector serving channel
//! `c` if its consumer asked for it. A full partition or ring stops queue `t` until a quarter
//! of the partition (and of that ring's descriptors) is free again, in doorbell mode with
//! events asking the peers holding it to kick us then; channel `c`'s reclaim wakes the queues
//! it stopped. What we know of the peers (MACs, MTUs, offloads, queue counts) is read under
//! the `peers` lock, released before the channel's is taken.

use super::{bit, rx::Found, Chan, Mac, Peers, Tx, WATCH_MS};
use crate::dev_warn;
use crate::ext::{
    net::{self, Device, Offload, SkBuff, Xmit},
    time,
};
use crate::protocol::frame::{self, ETH_HLEN};
use crate::protocol::layout::MAX_QUEUES;
use crate::protocol::layout::{self, Error as LayoutError};
use crate::protocol::link::{self, feature};
use crate::protocol::ring::{Desc, Pool};
use crate::regs::Irq;
use crate::stats::{Counter, Global};
use core::sync::atomic::Ordering;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is to be filled.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u16 = 1;

/// What happened to one frame sent to one peer.
pub(super) enum Sent {
    Ok,
    Full,
    TooBig,
    Unsupported,
    Broken,
}

/// What became of a frame handed to `start_xmit`.
enum Verdict {
    /// In a ring (or in every ring, for a broadcast).
    Sent,
    /// The destination ring is full: the queue is stopped, the stack keeps the frame.
    Busy,
    /// Dropped, counted by the given global counter (if any).
    Dropped(Option<fn(&Global) -> &Counter>),
}

/// The room a stopped queue waits for before it wakes, with frames of up to `len` bytes and
/// rings of `slots` descriptors: a quarter of the descriptors of the ring that ran out of them,
/// and a quarter of the partition or what a frame needs there if that is more (descriptors,
/// partition bytes; a frame never wraps inside a partition of several, so it may need the
/// partition's tail too: [`Pool::needs`]).
fn wake_need(slots: u32, pool: &Pool, len: u32) -> (u32, u32) {
    ((slots / 4).max(1), pool.needs(len).max(pool.len() / 4))
}

/// The ring descriptor's offload fields for a frame whose socket buffer carries `o`.
pub(super) fn desc_of(o: &Offload) -> Desc {
    Desc {
        flags: o.flags.into(),
        gso_type: o.gso_type,
        gso_size: o.gso_size,
        csum_start: o.csum_start,
        csum_offset: o.csum_offset,
        hdr_len: o.hdr_len,
        ..Desc::default()
    }
}

/// Where a frame for peer `j` goes: what we know of `j` (copied out of the `peers` lock).
#[derive(Clone, Copy)]
pub(super) struct Dest {
    pub(super) j: u32,
    mtu: u32,
    features: u32,
    /// The link's queue count.
    queues: u32,
}

impl super::Net {
    /// `start_xmit` on transmit queue `t`: puts `skb` into the ring(s) it is for and publishes
    /// the batch.
    pub(super) fn xmit(&self, dev: &Device, mut skb: SkBuff) -> Xmit {
        let global = &self.stats.global;
        let t = skb.queue_mapping().min(MAX_QUEUES - 1);
        let verdict = self.xmit_one(dev, t, &mut skb);
        // Publish the batch unless the stack promises more frames right away. A frame handed
        // back as busy ends the batch: what is committed must reach the peer, or its space
        // would never come back.
        if matches!(verdict, Verdict::Busy) || !net::xmit_more() || dev.queue_stopped(t) {
            self.flush_pending(dev, t);
        }
        match verdict {
            Verdict::Sent => {
                skb.consume();
                Xmit::Done
            }
            Verdict::Busy => Xmit::Busy(skb),
            Verdict::Dropped(counter) => {
                if let Some(c) = counter {
                    c(global).inc();
                }
                Xmit::Done
            }
        }
    }

    /// Publishes what transmit queue `t` committed on any channel in its batch.
    fn flush_pending(&self, dev: &Device, t: u32) {
        let Some(pending) = self.pending.get(t as usize) else {
            return;
        };
        let chans = pending.swap(0, Ordering::Relaxed);
        for (c, ch) in self.chans.iter().enumerate() {
            if chans & (1 << c) != 0 {
                self.flush(dev, &mut ch.tx.lock(), c as u32);
            }
        }
    }

    /// What we know of peer `j` for sending, if its link is up.
    pub(super) fn dest(&self, j: u32) -> Option<Dest> {
        let peers = self.peers.lock();
        if peers.up & bit(j) == 0 {
            return None;
        }
        peers.peers.get(j as usize).map(|p| Dest {
            j,
            mtu: p.mtu,
            features: p.features,
            queues: p.queues,
        })
    }

    /// What we know for sending of the peer that gets unicast for `mac`, if its link is up:
    /// only the first claimant of a MAC does (`claim_mac`). One look under the `peers` lock.
    fn owner_of(&self, mac: &[u8; 6]) -> Option<Dest> {
        let peers = self.peers.lock();
        let owners = peers.up & peers.mac_owner;
        self.others().find_map(|j| {
            let p = peers.peers.get(j as usize)?;
            (owners & bit(j) != 0 && p.mac == *mac).then_some(Dest {
                j,
                mtu: p.mtu,
                features: p.features,
                queues: p.queues,
            })
        })
    }

    /// The channel transmit queue `t` uses to reach `d` ([`link::ring_for`]).
    pub(super) fn chan_for(&self, t: u32, d: &Dest) -> (u32, Option<&Chan>) {
        let c = link::ring_for(t, d.queues);
        (c, self.chan(c))
    }

    /// Copies the frame of `skb` (described by `meta`), behind the link-layer header
    /// `prefix` if the packet has none yet, into ring `c` to `d` (channel `c`'s `tx`, locked by
    /// the caller), for transmit queue `t`'s counters; the caller publishes
    /// ([`super::Net::flush`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        dev: &Device,
        tx: &mut Tx,
        t: u32,
        d: &Dest,
        skb: &SkBuff,
        meta: &Desc,
        prefix: &[u8],
    ) -> Sent {
        let j = d.j;
        let len = skb.len().saturating_add(prefix.len() as u32);
        if tx.up & bit(j) == 0 {
            return Sent::Broken;
        }
        let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
            return Sent::Broken;
        };
        let needs_csum = meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
        let gso_size = (meta.gso_type != 0).then_some(meta.gso_size);
        if !frame::fits_mtu(len, gso_size, d.mtu) || len > p.prod.ring().max_frame() {
            return Sent::TooBig;
        }
        if (needs_csum && d.features & feature::CSUM == 0)
            || (meta.gso_type != 0 && d.features & feature::GSO == 0)
        {
            // `offloads_for` keeps such frames from us; only a race with a link change
            // gets here.
            return Sent::Unsupported;
        }
        let mut span = p.prod.reserve(&self.shm, &tx.pool, len);
        if matches!(span, Ok(None)) {
            // No room as far as we know: take back what the peers consumed, and look again.
            self.reclaim(dev, tx);
            span = match tx.rings.get_mut(j as usize) {
                Some(Some(p)) if tx.up & bit(j) != 0 => p.prod.reserve(&self.shm, &tx.pool, len),
                _ => return Sent::Broken,
            };
        }
        let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
            return Sent::Broken;
        };
        let res = span.and_then(|span| match span {
            None => Ok(false),
            Some(span) => {
                span.write(&self.shm, 0, prefix)?;
                // The frame's bytes behind the prefix, in one piece or two (the second from
                // the pool's start).
                let [a, b] = span.pieces(prefix.len() as u32, skb.len())?;
                let region = self.shm.region();
                skb.copy_bits_to(0, region, a.start, a.len())
                    .map_err(|_| LayoutError::OutOfBounds)?;
                if !b.is_empty() {
                    skb.copy_bits_to(a.len() as u32, region, b.start, b.len())
                        .map_err(|_| LayoutError::OutOfBounds)?;
                }
                p.prod.commit(&self.shm, &mut tx.pool, meta)?;
                Ok(true)
            }
        });
        match res {
            Ok(true) => {
                tx.unpublished |= bit(j);
                let peer = self.stats.peer(j);
                peer.tx_packets.inc();
                peer.tx_bytes.add(len.into());
                // Device totals before the queue's: qstats' base (totals minus queues) is
                // read queues first, so it never sees a queue ahead of the totals.
                self.stats.global.tx_packets.inc();
                self.stats.global.tx_bytes.add(len.into());
                let q = self.stats.queue(t);
                q.tx_packets.inc();
                q.tx_bytes.add(len.into());
                Sent::Ok
            }
            Ok(false) => Sent::Full,
            Err(e) => {
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, self.acked(j), e);
                Sent::Broken
            }
        }
    }

    /// Puts one frame from transmit queue `t` into the ring(s) it is for; the caller
    /// publishes ([`Self::flush_pending`]).
    fn xmit_one(&self, dev: &Device, t: u32, skb: &mut SkBuff) -> Verdict {
        if skb.len() < ETH_HLEN
            || (skb.head().len() < ETH_HLEN as usize && skb.linearize().is_err())
        {
            return Verdict::Dropped(Some(|g| &g.tx_drop_error));
        }
        let Ok(o) = skb.offload() else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_error));
        };
        let meta = desc_of(&o);
        let skb = &*skb;
        let global = &self.stats.global;
        let mut dst = [0u8; 6];
        dst.copy_from_slice(skb.head().get(..6).unwrap_or(&[0; 6]));
        let pending = self.pending.get(t as usize);

        if dst[0] & 1 != 0 {
            // Broadcast and multicast: a copy to every peer whose link is up. A full ring
            // loses its copy rather than stopping everybody's traffic.
            let up = self.peers.lock().up;
            let mut sent = false;
            for j in self.others().filter(|&j| up & bit(j) != 0) {
                let Some(d) = self.dest(j) else {
                    continue;
                };
                let (c, Some(ch)) = self.chan_for(t, &d) else {
                    continue;
                };
                let mut tx = ch.tx.lock();
                match self.send(dev, &mut tx, t, &d, skb, &meta, &[]) {
                    Sent::Ok => {
                        sent = true;
                        if let Some(p) = pending {
                            p.fetch_or(1 << c, Ordering::Relaxed);
                        }
                    }
                    Sent::Full => {
                        global.tx_ring_full.inc();
                        self.stats.peer(j).tx_ring_full.inc();
                    }
                    Sent::TooBig => global.tx_drop_too_big.inc(),
                    Sent::Unsupported => global.tx_drop_error.inc(),
                    Sent::Broken => {}
                }
            }
            return if sent {
                Verdict::Sent
            } else {
                Verdict::Dropped(Some(|g| &g.tx_drop_no_peer))
            };
        }

        let Some(d) = self.owner_of(&dst) else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_no_peer));
        };
        let (c, Some(ch)) = self.chan_for(t, &d) else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_no_peer));
        };
        let j = d.j;
        let len = self.max_len(dev);
        let mut tx = ch.tx.lock();
        if tx.up & bit(j) == 0 {
            // The link went down (or is being restarted) since we looked.
            return Verdict::Dropped(Some(|g| &g.tx_drop_no_peer));
        }
        let verdict = match self.send(dev, &mut tx, t, &d, skb, &meta, &[]) {
            Sent::Ok => {
                if let Some(p) = pending {
                    p.fetch_or(1 << c, Ordering::Relaxed);
                }
                // Stop before the next frame can find the pool or the ring full.
                if !self.room(dev, &mut tx, Some(j), len, false) {
                    self.stop_for(dev, &mut tx, ch, c, t, j);
                }
                Verdict::Sent
            }
            Sent::Full => {
                self.stop_for(dev, &mut tx, ch, c, t, j);
                global.tx_ring_full.inc();
                self.stats.peer(j).tx_ring_full.inc();
                Verdict::Busy
            }
            Sent::TooBig => Verdict::Dropped(Some(|g| &g.tx_drop_too_big)),
            Sent::Unsupported | Sent::Broken => Verdict::Dropped(Some(|g| &g.tx_drop_error)),
        };
        drop(tx);
        verdict
    }

    /// Publishes every frame committed on channel `c` (`tx` its state), kicking each peer
    /// whose consumer asked for it on the vector serving the channel. In doorbell mode, makes
    /// sure the timer watches the frames (a dead peer never consumes them, and nobody else
    /// would notice).
    pub(super) fn flush(&self, dev: &Device, tx: &mut Tx, c: u32) {
        if tx.unpublished != 0 && self.interrupts() && !self.watching.swap(true, Ordering::Relaxed)
        {
            // Within, not at: a broken ring may have asked for the next jiffy (`ring_broken`).
            dev.timer_arm_within(time::ms_to_jiffies(WATCH_MS));
        }
        let pending = core::mem::take(&mut tx.unpublished);
        if pending != 0 && self.interrupts() {
            // An answer may follow: a context may spin for it (`spin` in rx.rs).
            self.note_traffic(Found::Sent, time::now_ms());
        } else if pending != 0 {
            // Polling mode: an answer to what we publish may follow within microseconds.
            // Every context polling again at once will see the answer without the hrtimer.
            let held = self.active().all(|(_, ch)| ch.held.load(Ordering::Relaxed));
            self.keep_polling(dev, Found::Sent, !held);
        }
        for j in self.others().filter(|&j| pending & bit(j) != 0) {
            let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
                continue;
            };
            let Ok(old) = p.prod.publish(&self.shm) else {
                continue;
            };
            if self.irq != Irq::None {
                match p.prod.kick_needed(&self.shm, old) {
                    Ok(true) => self.kick_chan(j, c),
                    Ok(false) => self.stats.global.kicks_suppressed.inc(),
                    Err(_) => {}
                }
            }
        }
    }

    /// Takes back the pool bytes of every frame the peers consumed on this channel: reads
    /// each linked peer's consumer index once
    /// ([`crate::protocol::ring::Producer::collect`]; an impossible one breaks that link),
    /// then moves the partition's tail past everything no ring holds any more. Rings of links
    /// that are down but not yet reset keep what they hold. Returns the bytes that came back.
    pub(super) fn reclaim(&self, dev: &Device, tx: &mut Tx) -> u32 {
        let up = tx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
                continue;
            };
            if let Err(e) = p.prod.collect(&self.shm) {
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, self.acked(j), e);
            }
        }
        tx.pool.reclaim(tx.rings.iter().flatten().map(|p| &p.prod))
    }

    /// Whether the partition has room for a frame of `len` bytes and the ring to `j` a
    /// descriptor for it, or, with `wake`, [`wake_need`] of both (the hysteresis for waking
    /// the queues; `j` none if no ring ran out of descriptors). Reclaims if what we knew was
    /// not enough.
    fn room(&self, dev: &Device, tx: &mut Tx, j: Option<u32>, len: u32, wake: bool) -> bool {
        let enough = |tx: &Tx| {
            let (slots, bytes) = if wake {
                wake_need(self.geometry.ring_slots, &tx.pool, len)
            } else {
                (1, tx.pool.needs(len))
            };
            tx.pool.free() >= bytes
                && j.is_none_or(|j| match tx.rings.get(j as usize) {
                    Some(Some(p)) => p.prod.free_slots() >= slots,
                    _ => true,
                })
        };
        if enough(tx) {
            return true;
        }
        self.reclaim(dev, tx);
        enough(tx)
    }

    /// Whether frames sent to `j` are what keeps a stopped queue stopped, on some channel:
    /// its ring there lacks the descriptors the queues wait for (they stopped for them), or the
    /// channel's partition lacks the room they wait for and `j`'s oldest frame in flight there
    /// is the oldest of all, which the partition's tail cannot pass
    /// ([`crate::protocol::ring::Pool::reclaim`]). Takes back what the peers consumed first,
    /// so that only what they still hold counts.
    pub(super) fn holds_queue(&self, dev: &Device, j: u32) -> bool {
        let len = self.max_len(dev);
        self.chans.iter().any(|ch| {
            if ch.stopped.load(Ordering::Relaxed) == 0 {
                return false;
            }
            let mut tx = ch.tx.lock();
            let (slots, bytes) = wake_need(self.geometry.ring_slots, &tx.pool, len);
            self.reclaim(dev, &mut tx);
            let Some(Some(p)) = tx.rings.get(j as usize).filter(|_| tx.up & bit(j) != 0) else {
                return false;
            };
            if tx.stopped_for & bit(j) != 0 && p.prod.free_slots() < slots {
                return true;
            }
            let oldest = tx
                .rings
                .iter()
                .flatten()
                .filter_map(|p| p.prod.oldest())
                .min();
            tx.pool.free() < bytes && oldest.is_some() && p.prod.oldest() == oldest
        })
    }

    /// Queues stopped on this channel: in doorbell mode, asks every linked peer holding back
    /// the room [`Self::room`] wakes them for (partition bytes, and descriptors of the rings
    /// in `stopped_for`) to kick us once it no longer does, then looks again (so a kick cannot
    /// be lost: see [`crate::protocol::ring::Producer::arm_wake`]). Returns whether there is
    /// room already.
    fn arm_tx_event(&self, dev: &Device, tx: &mut Tx, len: u32) -> bool {
        let slots_full = tx.stopped_for & tx.up;
        if self.irq == Irq::None {
            return self.room_for_all(dev, tx, len);
        }
        let (slots, bytes) = wake_need(self.geometry.ring_slots, &tx.pool, len);
        let target = tx.pool.wake_target(bytes);
        let up = tx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            let Some(Some(p)) = tx.rings.get_mut(j as usize) else {
                continue;
            };
            let want = if slots_full & bit(j) != 0 { slots } else { 0 };
            if let Err(e) = p.prod.arm_wake(&self.shm, want, target) {
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, self.acked(j), e);
            }
        }
        self.room_for_all(dev, tx, len)
    }

    /// [`Self::room`] to wake the queues, for the partition and every ring in `stopped_for`.
    fn room_for_all(&self, dev: &Device, tx: &mut Tx, len: u32) -> bool {
        if !self.room(dev, tx, None, len, true) {
            return false;
        }
        let full = tx.stopped_for & tx.up;
        self.others()
            .filter(|&j| full & bit(j) != 0)
            .all(|j| self.room(dev, tx, Some(j), len, true))
    }

    /// Wakes the transmit queues stopped on channel `c` once its partition and every ring
    /// that stopped them have room again (or their link is gone).
    pub(super) fn tx_wake(&self, dev: &Device, c: u32) {
        let Some(ch) = self.chan(c) else {
            return;
        };
        if ch.stopped.load(Ordering::Relaxed) == 0 {
            return;
        }
        let len = self.max_len(dev);
        let mut tx = ch.tx.lock();
        if tx.stopped != 0 && self.arm_tx_event(dev, &mut tx, len) {
            self.wake_queues(dev, &mut tx, ch);
        }
    }

    /// [`Self::tx_wake`] for every channel.
    pub(super) fn tx_wake_all(&self, dev: &Device) {
        for c in 0..self.queues_max {
            self.tx_wake(dev, c);
        }
    }

    /// Whether any transmit queue is stopped.
    pub(super) fn any_stopped(&self) -> bool {
        self.chans
            .iter()
            .any(|ch| ch.stopped.load(Ordering::Relaxed) != 0)
    }

    /// Stops transmit queue `t` because channel `c`'s partition or its ring to `j` is (about
    /// to be) full, and arms the wake-up; if there is room again already, lets the stack retry
    /// at once.
    fn stop_for(&self, dev: &Device, tx: &mut Tx, ch: &Chan, c: u32, t: u32, j: u32) {
        // The ring's descriptors count only if they are what ran out.
        if matches!(tx.rings.get(j as usize), Some(Some(p)) if p.prod.free_slots() == 0) {
            tx.stopped_for |= bit(j);
        }
        if !dev.queue_stopped(t) {
            self.stats.global.tx_queue_stops.inc();
            self.stats.queue(t).tx_stops.inc();
        }
        dev.stop_queue(t);
        tx.stopped |= 1 << t;
        ch.stopped.store(tx.stopped, Ordering::Relaxed);
        // Let everything committed reach the peers first: frames that are not published
        // cannot be consumed, and would hold the room we wait for.
        self.flush(dev, tx, c);
        if !self.interrupts() && self.params.poll_us != 0 {
            // Polling mode: look for that room in `poll_us`, even if the hrtimer was armed
            // for later (the follow-ups back off while nothing is received).
            dev.poll_sooner_ns(u64::from(self.params.poll_us) * 1000);
        }
        if self.arm_tx_event(dev, tx, self.max_len(dev)) {
            self.wake_queues(dev, tx, ch);
        }
    }

    /// Wakes the transmit queues stopped on this channel, counting each that was stopped
    /// (`tx_queue_wakes`).
    fn wake_queues(&self, dev: &Device, tx: &mut Tx, ch: &Chan) {
        let stopped = core::mem::take(&mut tx.stopped);
        tx.stopped_for = 0;
        ch.stopped.store(0, Ordering::Relaxed);
        for t in (0..MAX_QUEUES).filter(|&t| stopped & (1 << t) != 0) {
            if dev.queue_stopped(t) {
                self.stats.global.tx_queue_wakes.inc();
                self.stats.queue(t).tx_wakes.inc();
            }
            dev.wake_queue(t);
        }
    }

    /// Largest frame we send or accept at the current MTU ([`frame::max_len`]).
    fn max_len(&self, dev: &Device) -> u32 {
        frame::max_len(dev.mtu(), self.max_frame())
    }

    /// The offloads (checksum, segmentation) every peer a frame to `dst` goes to accepts.
    pub(super) fn offloads_to(&self, dst: &[u8; 6]) -> (bool, bool) {
        let peers = self.peers.lock();
        let mut all = feature::CSUM | feature::GSO;
        for j in self.others().filter(|&j| peers.up & bit(j) != 0) {
            if let Some(p) = peers.peers.get(j as usize) {
                if dst[0] & 1 != 0 || (p.mac == *dst && peers.mac_owner & bit(j) != 0) {
                    all &= p.features;
                }
            }
        }
        (all & feature::CSUM != 0, all & feature::GSO != 0)
    }

    /// The link with `j` came up with the MAC `mac`: `j` gets unicast for it unless another
    /// peer holds it already (the first claim wins, as for transparent mode's addresses), or
    /// it is ours (`own`). A peer copying another's MAC would otherwise receive traffic meant
    /// for it. A refused claim is logged (rate-limited) and counted once.
    ///
    /// A claim belongs to the holder's seat (its slot, claimed with its token), not to its
    /// link: it is kept while the holder's link is down, whatever the reason (it left, went
    /// silent, or someone wrote garbage into its control block, which every peer can), and
    /// ends only once its slot word no longer holds the token it had when its link came up
    /// (freed on unload, or taken over by staleness) while its link is down. So a refused
    /// claimant gets nothing by restarting its link while the holder is merely down.
    pub(super) fn claim_mac(
        &self,
        dev: &Device,
        tx: &mut Peers,
        j: u32,
        mac: [u8; 6],
        own: [u8; 6],
    ) {
        // Whatever `j` held before (a restart with a new MAC) is given up first.
        tx.mac_owner &= !bit(j);
        // The seat `j` claims from: its slot word now (0 if unreadable, which no holder has).
        let seat = layout::slot_token(&self.shm, &self.geometry, j).unwrap_or(0);
        if let Some(p) = tx.peers.get_mut(j as usize) {
            p.seat = seat;
        }
        self.release_vacated(tx);
        let holder = self.mac_holder(tx, j, mac, own);
        match holder {
            None => {
                tx.mac_owner |= bit(j);
                tx.mac_refused &= !bit(j);
            }
            Some(_) if tx.mac_refused & bit(j) != 0 => {}
            Some(h) => {
                tx.mac_refused |= bit(j);
                self.stats.global.peer_mac_conflicts.inc();
                if let Some(missed) = self.logs.link.check(time::now_ms()) {
                    match h {
                        Some(k) => dev_warn!(
                            &self.pdev,
                            "{}: peer {} claims MAC {}, which peer {} holds: no unicast to \
                             peer {}{}",
                            dev.name(),
                            j,
                            Mac(mac),
                            k,
                            j,
                            missed
                        ),
                        None => dev_warn!(
                            &self.pdev,
                            "{}: peer {} claims our own MAC {}: no unicast to it{}",
                            dev.name(),
                            j,
                            Mac(mac),
                            missed
                        ),
                    }
                }
            }
        }
    }

    /// Ends the MAC claims of holders whose link is down and whose seat changed hands (their
    /// slot word is not the token it held when their link came up): they unloaded, or a
    /// staleness takeover gave their id to someone else.
    fn release_vacated(&self, tx: &mut Peers) {
        for k in self.others() {
            let b = bit(k);
            if tx.mac_owner & b == 0 || tx.up & b != 0 {
                continue;
            }
            let Some(p) = tx.peers.get(k as usize) else {
                continue;
            };
            let now = layout::slot_token(&self.shm, &self.geometry, k);
            if !matches!(now, Ok(t) if t == p.seat) {
                tx.mac_owner &= !b;
                tx.mac_refused &= !b;
            }
        }
    }

    /// Who holds `mac` against peer `j`: `Some(Some(k))` another peer whose claim came first,
    /// `Some(None)` us, `None` nobody.
    fn mac_holder(&self, tx: &Peers, j: u32, mac: [u8; 6], own: [u8; 6]) -> Option<Option<u32>> {
        if mac == own {
            return Some(None);
        }
        self.others()
            .find(|&k| {
                k != j
                    && tx.mac_owner & bit(k) != 0
                    && matches!(tx.peers.get(k as usize), Some(p) if p.mac == mac)
            })
            .map(Some)
    }
}
