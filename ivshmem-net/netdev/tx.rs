// SPDX-License-Identifier: GPL-2.0

//! Transmit, under the `tx` lock: frames from `start_xmit` (and from transparent mode's hook)
//! are copied into our transmit pool and described in the ring of the peer that owns the
//! destination MAC (every peer whose link is up, for broadcast and multicast), published in
//! batches (`xmit_more`), and the peer is kicked if its consumer asked for it. A full pool or
//! ring stops the queue until a quarter of the pool (and of that ring's descriptors) is free
//! again, in doorbell mode with events asking the peers holding it to kick us then.

use super::{bit, Mac, Tx, WATCH_MS};
use crate::dev_warn;
use crate::ext::{
    net::{self, Device, Offload, SkBuff, Xmit},
    time,
};
use crate::protocol::frame::{self, ETH_HLEN};
use crate::protocol::layout::{self, Error as LayoutError};
use crate::protocol::link::feature;
use crate::protocol::ring::{footprint, Desc};
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
/// and a quarter of the pool or a frame's footprint if that is more (descriptors, pool bytes).
fn wake_need(slots: u32, pool: u32, len: u32) -> (u32, u32) {
    ((slots / 4).max(1), footprint(len).max(pool / 4))
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

impl super::Net {
    /// `start_xmit`: puts `skb` into the ring(s) it is for and publishes the batch.
    pub(super) fn xmit(&self, dev: &Device, mut skb: SkBuff) -> Xmit {
        let global = &self.stats.global;
        let mut tx = self.tx.lock();
        let verdict = self.xmit_one(dev, &mut tx, &mut skb);
        // Publish the batch unless the stack promises more frames right away. A frame handed
        // back as busy ends the batch: what is committed must reach the peer, or its space
        // would never come back.
        if matches!(verdict, Verdict::Busy) || !net::xmit_more() || dev.queue_stopped(0) {
            self.flush(dev, &mut tx);
        }
        drop(tx);
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

    /// Copies the frame of `skb` (described by `meta`), behind the link-layer header
    /// `prefix` if the packet has none yet, into the ring to peer `j`; the caller publishes
    /// ([`super::Net::flush`]).
    pub(super) fn send(
        &self,
        dev: &Device,
        tx: &mut Tx,
        j: u32,
        skb: &SkBuff,
        meta: &Desc,
        prefix: &[u8],
    ) -> Sent {
        let len = skb.len().saturating_add(prefix.len() as u32);
        let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
            return Sent::Broken;
        };
        let needs_csum = meta.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0;
        let gso_size = (meta.gso_type != 0).then_some(meta.gso_size);
        if !frame::fits_mtu(len, gso_size, p.mtu) || len > p.prod.ring().max_frame() {
            return Sent::TooBig;
        }
        if (needs_csum && p.features & feature::CSUM == 0)
            || (meta.gso_type != 0 && p.features & feature::GSO == 0)
        {
            // `offloads_for` keeps such frames from us; only a race with a link change
            // gets here.
            return Sent::Unsupported;
        }
        let mut span = p.prod.reserve(&self.shm, &tx.pool, len);
        if matches!(span, Ok(None)) {
            // No room as far as we know: take back what the peers consumed, and look again.
            self.reclaim(dev, tx);
            span = match tx.peers.get_mut(j as usize) {
                Some(Some(p)) if tx.up & bit(j) != 0 => p.prod.reserve(&self.shm, &tx.pool, len),
                _ => return Sent::Broken,
            };
        }
        let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
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
                self.stats.global.tx_packets.inc();
                self.stats.global.tx_bytes.add(len.into());
                Sent::Ok
            }
            Ok(false) => Sent::Full,
            Err(e) => {
                let acked = p.ack;
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, acked, e);
                Sent::Broken
            }
        }
    }

    /// Puts one frame into the ring(s) it is for; the caller publishes.
    fn xmit_one(&self, dev: &Device, tx: &mut Tx, skb: &mut SkBuff) -> Verdict {
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

        if dst[0] & 1 != 0 {
            // Broadcast and multicast: a copy to every peer whose link is up. A full ring
            // loses its copy rather than stopping everybody's traffic.
            let mut sent = false;
            for j in self.others() {
                if tx.up & bit(j) == 0 {
                    continue;
                }
                match self.send(dev, tx, j, skb, &meta, &[]) {
                    Sent::Ok => sent = true,
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

        // Only the first claimant of a MAC gets unicast for it (`claim_mac`).
        let owners = tx.up & tx.mac_owner;
        let owner = self.others().find(|&j| {
            owners & bit(j) != 0
                && matches!(tx.peers.get(j as usize), Some(Some(p)) if p.mac == dst)
        });
        let Some(j) = owner else {
            return Verdict::Dropped(Some(|g| &g.tx_drop_no_peer));
        };
        let len = self.max_len(dev);
        match self.send(dev, tx, j, skb, &meta, &[]) {
            Sent::Ok => {
                // Stop before the next frame can find the pool or the ring full.
                if !self.room(dev, tx, Some(j), len, false) {
                    self.stop_for(dev, tx, j);
                }
                Verdict::Sent
            }
            Sent::Full => {
                self.stop_for(dev, tx, j);
                global.tx_ring_full.inc();
                self.stats.peer(j).tx_ring_full.inc();
                Verdict::Busy
            }
            Sent::TooBig => Verdict::Dropped(Some(|g| &g.tx_drop_too_big)),
            Sent::Unsupported | Sent::Broken => Verdict::Dropped(Some(|g| &g.tx_drop_error)),
        }
    }

    /// Publishes every committed frame, kicking each peer whose consumer asked for it. In
    /// doorbell mode, makes sure the timer watches the frames (a dead peer never consumes
    /// them, and nobody else would notice).
    pub(super) fn flush(&self, dev: &Device, tx: &mut Tx) {
        if tx.unpublished != 0 && self.interrupts() && !self.watching.swap(true, Ordering::Relaxed)
        {
            // Within, not at: a broken ring may have asked for the next jiffy (`ring_broken`).
            dev.timer_arm_within(time::ms_to_jiffies(WATCH_MS));
        }
        let pending = core::mem::take(&mut tx.unpublished);
        if pending != 0 && !self.interrupts() {
            // Polling mode: an answer to what we publish may follow within microseconds.
            self.keep_polling(dev, true);
        }
        for j in self.others().filter(|&j| pending & bit(j) != 0) {
            let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
                continue;
            };
            let Ok(old) = p.prod.publish(&self.shm) else {
                continue;
            };
            if self.irq != Irq::None {
                match p.prod.kick_needed(&self.shm, old) {
                    Ok(true) => self.kick(j),
                    Ok(false) => self.stats.global.kicks_suppressed.inc(),
                    Err(_) => {}
                }
            }
        }
    }

    /// Takes back the pool bytes of every frame the peers consumed: reads each linked peer's
    /// consumer index once ([`crate::protocol::ring::Producer::collect`]; an impossible one
    /// breaks that link), then moves the pool's tail past everything no ring holds any more.
    /// Rings of links that are down but not yet reset keep what they hold. Returns the bytes
    /// that came back.
    pub(super) fn reclaim(&self, dev: &Device, tx: &mut Tx) -> u32 {
        let up = tx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
                continue;
            };
            if let Err(e) = p.prod.collect(&self.shm) {
                let acked = p.ack;
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, acked, e);
            }
        }
        tx.pool.reclaim(tx.peers.iter().flatten().map(|p| &p.prod))
    }

    /// Whether the pool has room for a frame of `len` bytes and the ring to `j` a descriptor
    /// for it, or, with `wake`, [`wake_need`] of both (the hysteresis for waking the queue; `j`
    /// none if no ring ran out of descriptors). Reclaims if what we knew was not enough.
    fn room(&self, dev: &Device, tx: &mut Tx, j: Option<u32>, len: u32, wake: bool) -> bool {
        let (slots, bytes) = if wake {
            wake_need(self.geometry.ring_slots, tx.pool.len(), len)
        } else {
            (1, footprint(len))
        };
        let enough = |tx: &Tx| {
            tx.pool.free() >= bytes
                && j.is_none_or(|j| match tx.peers.get(j as usize) {
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

    /// Whether frames sent to `j` are what keeps the stopped queue stopped: its ring lacks
    /// the descriptors the queue waits for (it stopped for them), or the pool lacks the room
    /// the queue waits for and `j`'s oldest frame in flight is the oldest of all, which the
    /// pool's tail cannot pass ([`crate::protocol::ring::Pool::reclaim`]). Takes back what
    /// the peers consumed first, so that only what they still hold counts.
    pub(super) fn holds_queue(&self, dev: &Device, j: u32) -> bool {
        if !dev.queue_stopped(0) {
            return false;
        }
        let mut tx = self.tx.lock();
        let (slots, bytes) = wake_need(self.geometry.ring_slots, tx.pool.len(), self.max_len(dev));
        self.reclaim(dev, &mut tx);
        let Some(Some(p)) = tx.peers.get(j as usize).filter(|_| tx.up & bit(j) != 0) else {
            return false;
        };
        if tx.stopped_for & bit(j) != 0 && p.prod.free_slots() < slots {
            return true;
        }
        let oldest = tx
            .peers
            .iter()
            .flatten()
            .filter_map(|p| p.prod.oldest())
            .min();
        tx.pool.free() < bytes && oldest.is_some() && p.prod.oldest() == oldest
    }

    /// Queue stopped: in doorbell mode, asks every linked peer holding back the room
    /// [`Self::room`] wakes the queue for (pool bytes, and descriptors of the rings in
    /// `stopped_for`) to kick us once it no longer does, then looks again (so a kick cannot be
    /// lost: see [`crate::protocol::ring::Producer::arm_wake`]). Returns whether there is room
    /// already.
    fn arm_tx_event(&self, dev: &Device, tx: &mut Tx, len: u32) -> bool {
        let slots_full = tx.stopped_for & tx.up;
        if self.irq == Irq::None {
            return self.room_for_all(dev, tx, len);
        }
        let (slots, bytes) = wake_need(self.geometry.ring_slots, tx.pool.len(), len);
        let target = tx.pool.wake_target(bytes);
        let up = tx.up;
        for j in self.others().filter(|&j| up & bit(j) != 0) {
            let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
                continue;
            };
            let want = if slots_full & bit(j) != 0 { slots } else { 0 };
            if let Err(e) = p.prod.arm_wake(&self.shm, want, target) {
                let acked = p.ack;
                tx.up &= !bit(j);
                tx.unpublished &= !bit(j);
                self.ring_broken(dev, j, acked, e);
            }
        }
        self.room_for_all(dev, tx, len)
    }

    /// [`Self::room`] to wake the queue, for the pool and every ring in `stopped_for`.
    fn room_for_all(&self, dev: &Device, tx: &mut Tx, len: u32) -> bool {
        if !self.room(dev, tx, None, len, true) {
            return false;
        }
        let full = tx.stopped_for & tx.up;
        self.others()
            .filter(|&j| full & bit(j) != 0)
            .all(|j| self.room(dev, tx, Some(j), len, true))
    }

    /// Wakes the queue once the pool and every ring that stopped it have room again (or their
    /// link is gone).
    pub(super) fn tx_wake(&self, dev: &Device) {
        if !dev.queue_stopped(0) {
            return;
        }
        let len = self.max_len(dev);
        let mut tx = self.tx.lock();
        if self.arm_tx_event(dev, &mut tx, len) {
            tx.stopped_for = 0;
            self.wake_queue(dev);
        }
    }

    /// Stops the queue because the pool or the ring to `j` is (about to be) full, and arms the
    /// wake-up; if there is room again already, lets the stack retry at once.
    fn stop_for(&self, dev: &Device, tx: &mut Tx, j: u32) {
        // The ring's descriptors count only if they are what ran out.
        if matches!(tx.peers.get(j as usize), Some(Some(p)) if p.prod.free_slots() == 0) {
            tx.stopped_for |= bit(j);
        }
        self.stop_queue_full(dev);
        // Let everything committed reach the peers first: frames that are not published
        // cannot be consumed, and would hold the room we wait for.
        self.flush(dev, tx);
        if self.arm_tx_event(dev, tx, self.max_len(dev)) {
            tx.stopped_for = 0;
            self.wake_queue(dev);
        }
    }

    /// Stops the transmit queue because a ring is (about to be) full, counting it
    /// (`tx_queue_stops`, the `stop` of the queue statistics) unless it was stopped already.
    fn stop_queue_full(&self, dev: &Device) {
        if !dev.queue_stopped(0) {
            self.stats.global.tx_queue_stops.inc();
        }
        dev.stop_queue(0);
    }

    /// Wakes the transmit queue, counting it (`tx_queue_wakes`) if it was stopped.
    fn wake_queue(&self, dev: &Device) {
        if dev.queue_stopped(0) {
            self.stats.global.tx_queue_wakes.inc();
        }
        dev.wake_queue(0);
    }

    /// Largest frame we send or accept at the current MTU ([`frame::max_len`]).
    fn max_len(&self, dev: &Device) -> u32 {
        frame::max_len(dev.mtu(), self.max_frame())
    }

    /// The offloads (checksum, segmentation) every peer a frame to `dst` goes to accepts.
    pub(super) fn offloads_to(&self, dst: &[u8; 6]) -> (bool, bool) {
        let tx = self.tx.lock();
        let mut all = feature::CSUM | feature::GSO;
        for j in self.others().filter(|&j| tx.up & bit(j) != 0) {
            if let Some(Some(p)) = tx.peers.get(j as usize) {
                if dst[0] & 1 != 0 || (p.mac == *dst && tx.mac_owner & bit(j) != 0) {
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
    pub(super) fn claim_mac(&self, dev: &Device, tx: &mut Tx, j: u32, mac: [u8; 6], own: [u8; 6]) {
        // Whatever `j` held before (a restart with a new MAC) is given up first.
        tx.mac_owner &= !bit(j);
        // The seat `j` claims from: its slot word now (0 if unreadable, which no holder has).
        let seat = layout::slot_token(&self.shm, &self.geometry, j).unwrap_or(0);
        if let Some(Some(p)) = tx.peers.get_mut(j as usize) {
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
    fn release_vacated(&self, tx: &mut Tx) {
        for k in self.others() {
            let b = bit(k);
            if tx.mac_owner & b == 0 || tx.up & b != 0 {
                continue;
            }
            let Some(Some(p)) = tx.peers.get(k as usize) else {
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
    fn mac_holder(&self, tx: &Tx, j: u32, mac: [u8; 6], own: [u8; 6]) -> Option<Option<u32>> {
        if mac == own {
            return Some(None);
        }
        self.others()
            .find(|&k| {
                k != j
                    && tx.mac_owner & bit(k) != 0
                    && matches!(tx.peers.get(k as usize), Some(Some(p)) if p.mac == mac)
            })
            .map(Some)
    }
}
