// SPDX-License-Identifier: GPL-2.0

//! Transmit, under the `tx` lock: frames from `start_xmit` (and from transparent mode's hook)
//! are copied into the ring of the peer that owns the destination MAC (every peer whose link
//! is up, for broadcast and multicast), published in batches (`xmit_more`), and the peer is
//! kicked if its consumer asked for it. A full ring stops the queue until the peer has taken
//! a quarter of the ring, in doorbell mode with an event asking it to kick us then.

use super::{bit, Mac, Tx, WATCH_MS};
use crate::dev_warn;
use crate::ext::{
    net::{self, Device, Offload, SkBuff, Xmit},
    time,
};
use crate::protocol::frame::{self, ETH_HLEN};
use crate::protocol::layout::{self, Error as LayoutError, Region};
use crate::protocol::link::feature;
use crate::protocol::ring::{Desc, Ring};
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

/// The room a stopped queue waits for in `ring` before it wakes, with frames of up to `len`
/// bytes: a quarter of the descriptors, and a quarter of the data or a frame's worst footprint
/// if that is more (descriptors, data bytes).
fn wake_need(ring: &Ring, len: u32) -> (u32, u32) {
    (
        (ring.slots() / 4).max(1),
        ring.max_footprint(len).max(ring.data_len() / 4),
    )
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
        if matches!(verdict, Verdict::Busy) || !net::xmit_more() || dev.queue_stopped() {
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
        let res = p.prod.reserve(&self.shm, len).and_then(|off| match off {
            None => Ok(false),
            Some(off) => {
                self.shm.write(off, prefix)?;
                skb.copy_to(self.shm.region(), off + prefix.len())
                    .map_err(|_| LayoutError::OutOfBounds)?;
                p.prod.commit(&self.shm, meta)?;
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
                // Stop before the next frame can find the ring full.
                if !self.room(tx, j, len, false) {
                    tx.stopped_for |= bit(j);
                    self.stop_queue_full(dev);
                    if self.arm_tx_event(tx, j, len) {
                        tx.stopped_for &= !bit(j);
                        self.wake_queue(dev);
                    }
                }
                Verdict::Sent
            }
            Sent::Full => {
                tx.stopped_for |= bit(j);
                self.stop_queue_full(dev);
                global.tx_ring_full.inc();
                self.stats.peer(j).tx_ring_full.inc();
                if self.arm_tx_event(tx, j, len) {
                    // Room again already: let the stack retry at once.
                    tx.stopped_for &= !bit(j);
                    self.wake_queue(dev);
                }
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

    /// Queue stopped for `j`: in doorbell mode, asks `j` to kick us once it has consumed what
    /// frees the room [`Self::room`] wakes the queue for, descriptors and bytes alike, then looks
    /// again (so a kick cannot be lost, nor come before there is room: see
    /// [`crate::protocol::ring::Producer::arm_wake`]). Returns whether there is room already.
    fn arm_tx_event(&self, tx: &mut Tx, j: u32, len: u32) -> bool {
        if self.irq == Irq::None {
            return self.room(tx, j, len, true);
        }
        let Some(Some(p)) = tx.peers.get_mut(j as usize) else {
            return true;
        };
        let (slots, bytes) = wake_need(p.prod.ring(), len);
        // A corrupt consumer index shows up on the next send; here it just means "no room".
        p.prod.arm_wake(&self.shm, slots, bytes).unwrap_or(false)
    }

    /// Whether the ring to `j` has room for a frame of `len` bytes, or, with `wake`, for a
    /// quarter of the ring and such a frame (the hysteresis for waking the queue).
    fn room(&self, tx: &Tx, j: u32, len: u32, wake: bool) -> bool {
        let Some(Some(p)) = tx.peers.get(j as usize) else {
            return true;
        };
        let ring = p.prod.ring();
        let (slots, bytes) = if wake {
            wake_need(ring, len)
        } else {
            (1, ring.max_footprint(len))
        };
        // A corrupt consumer index shows up on the next send; here it just means "no room".
        p.prod.has_room(&self.shm, slots, bytes).unwrap_or(false)
    }

    /// Wakes the queue once every ring that stopped it has room again (or its link is gone).
    pub(super) fn tx_wake(&self, dev: &Device) {
        if !dev.queue_stopped() {
            return;
        }
        let len = self.max_len(dev);
        let mut tx = self.tx.lock();
        let mut still = 0;
        for j in self.others() {
            let b = bit(j);
            if tx.stopped_for & b != 0 && tx.up & b != 0 && !self.arm_tx_event(&mut tx, j, len) {
                still |= b;
            }
        }
        tx.stopped_for = still;
        if still == 0 {
            self.wake_queue(dev);
        }
    }

    /// Stops the transmit queue because a ring is (about to be) full, counting it
    /// (`tx_queue_stops`, the `stop` of the queue statistics) unless it was stopped already.
    fn stop_queue_full(&self, dev: &Device) {
        if !dev.queue_stopped() {
            self.stats.global.tx_queue_stops.inc();
        }
        dev.stop_queue();
    }

    /// Wakes the transmit queue, counting it (`tx_queue_wakes`) if it was stopped.
    fn wake_queue(&self, dev: &Device) {
        if dev.queue_stopped() {
            self.stats.global.tx_queue_wakes.inc();
        }
        dev.wake_queue();
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
