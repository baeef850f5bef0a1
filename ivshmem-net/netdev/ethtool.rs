// SPDX-License-Identifier: GPL-2.0

//! What `ethtool` and netdev netlink show of the device: driver information, the counters of
//! `ethtool -S` (from the one table in `stats.rs`), the ring and channel counts (`-g`, `-l`,
//! `-L`), and the per-queue statistics of `qstats-get`.

use super::{partition, VERSION};
use crate::dev_info;
use crate::ext::{
    errno::eopnotsupp,
    net::{Channels, Device, Ethtool, QueueStats, RingParam, RxQueueStats, TxQueueStats},
};
use crate::protocol::link::Link;
use core::sync::atomic::Ordering;
use kernel::{c_str, prelude::*, str::CStr};

/// Netdev netlink's per-queue statistics (`qstats-get`): each active queue pair reports the
/// packets and bytes of its channel, and its transmit queue's stops and wakes; the device's
/// base is the rest (channels no longer active, and everything not counted per queue), so
/// base plus queues equals what `stats` (`ip -s link`) and `ethtool -S` show, and stays
/// monotonic whatever `ethtool -L` does.
#[vtable]
impl QueueStats for super::Net {
    fn rx_queue_stats(&self, idx: u32, s: &mut RxQueueStats) {
        let q = self.stats.queue(idx);
        s.packets = Some(q.rx_packets.get());
        s.bytes = Some(q.rx_bytes.get());
    }

    fn tx_queue_stats(&self, idx: u32, s: &mut TxQueueStats) {
        let q = self.stats.queue(idx);
        s.packets = Some(q.tx_packets.get());
        s.bytes = Some(q.tx_bytes.get());
        s.stop = Some(q.tx_stops.get());
        s.wake = Some(q.tx_wakes.get());
    }

    fn base_stats(&self, rx: &mut RxQueueStats, tx: &mut TxQueueStats) {
        let g = &self.stats.global;
        // The active queues' counts are read before the totals: the base can only come out
        // larger (counts landing in between), never below zero.
        let (mut rp, mut rb, mut tp, mut tb, mut ts, mut tw) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        for c in 0..self.queues() {
            let q = self.stats.queue(c);
            rp += q.rx_packets.get();
            rb += q.rx_bytes.get();
            tp += q.tx_packets.get();
            tb += q.tx_bytes.get();
            ts += q.tx_stops.get();
            tw += q.tx_wakes.get();
        }
        rx.packets = Some(g.rx_packets.get().saturating_sub(rp));
        rx.bytes = Some(g.rx_bytes.get().saturating_sub(rb));
        rx.alloc_fail = Some(g.rx_drop_nomem.get());
        rx.hw_drops = Some(g.rx_drop_oversize.get() + g.rx_drop_error.get());
        tx.packets = Some(g.tx_packets.get().saturating_sub(tp));
        tx.bytes = Some(g.tx_bytes.get().saturating_sub(tb));
        tx.hw_drops =
            Some(g.tx_drop_no_peer.get() + g.tx_drop_too_big.get() + g.tx_drop_error.get());
        tx.hw_drop_errors = Some(g.tx_drop_error.get());
        tx.stop = Some(g.tx_queue_stops.get().saturating_sub(ts));
        tx.wake = Some(g.tx_queue_wakes.get().saturating_sub(tw));
    }
}

#[vtable]
impl Ethtool for super::Net {
    fn drvinfo(&self) -> (&CStr, &CStr, &CStr) {
        (c_str!("ivshmem_net"), VERSION, self.pdev.name())
    }

    fn stats_count(&self) -> usize {
        self.stats.count()
    }

    fn stat_name(&self, i: usize, name: &mut [u8]) {
        self.stats.name(i, name)
    }

    fn stat_values(&self, values: &mut [u64]) {
        self.stats.values(values)
    }

    fn ringparam(&self) -> RingParam {
        let slots = self.geometry.ring_slots;
        RingParam {
            rx_max: slots,
            rx: slots,
            tx_max: slots,
            tx: slots,
        }
    }

    fn channels(&self, dev: &Device) -> Channels {
        Channels {
            max: self.queues_max,
            count: dev.queues(),
        }
    }

    /// `ethtool -L combined N`: the device has `count` queue pairs already; every link is
    /// restarted with the new count (our `QUEUES` word first, then new epochs, so each peer
    /// resets its halves and both sides agree on the link's queue count when it comes up
    /// again), the pool split into `count` partitions. Frames in flight on the old rings are
    /// abandoned (TCP retransmits them).
    fn set_channels(&self, dev: &Device, count: u32) -> Result {
        if count == 0 || count > self.queues_max {
            return Err(EINVAL);
        }
        // Partitions for the new count before anything changes (they cannot fail below
        // `queues_max`, which `Pool::max_partitions` bounds).
        let mut pools = KVec::with_capacity(self.chans.len(), GFP_KERNEL)?;
        for c in 0..self.queues_max {
            pools.push(partition(&self.geometry, self.me, c, count)?, GFP_KERNEL)?;
        }
        let mut ctl = self.ctl.lock();
        ctl.own.set_queues(&self.shm, count).map_err(|_| EINVAL)?;
        self.queues.store(count, Ordering::Relaxed);
        for j in self.others() {
            // Down in every channel's masks and reset: no frame is in flight on any ring, so
            // the partitions can be replaced.
            self.reset_halves(j);
            let _ = ctl.own.bump_epoch(&self.shm, j);
            if let Some(link) = ctl.links.get_mut(j as usize) {
                *link = Link::default();
            }
        }
        for (ch, pool) in self.chans.iter().zip(pools) {
            ch.tx.lock().pool = pool;
        }
        let running = ctl.running;
        drop(ctl);
        dev_info!(&self.pdev, "{}: {} channels; relinking", dev.name(), count);
        if running {
            self.kick_all();
            // Queues stopped on a ring that is gone find room in the fresh partitions.
            self.tx_wake_all(dev);
            dev.timer_arm(1);
        }
        Ok(())
    }

    fn set_ringparam(&self, want: RingParam) -> core::result::Result<(), (Error, &'static CStr)> {
        let slots = self.geometry.ring_slots;
        if want.rx == slots && want.tx == slots {
            return Ok(());
        }
        Err((
            eopnotsupp(),
            c_str!(
                "ivshmem-net: the ring size is fixed by the shared region's layout (its size \
                 and max_peers, the same for every guest on it)"
            ),
        ))
    }
}
