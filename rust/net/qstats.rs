// SPDX-License-Identifier: GPL-2.0

//! `struct netdev_stat_ops`: per-queue statistics over netdev netlink (`qstats-get`), the
//! [`QueueStats`] callbacks a network driver may implement, the trampolines that call them
//! from C, and their op table. A device gets the table only if the driver implements at
//! least one method, and each entry only if it implements that one (`T::HAS_<METHOD>`).
//!
//! The core hands the callbacks structures whose fields are undefined (all ones): a driver
//! reports only what it counts. Here a driver fills in [`RxQueueStats`] and [`TxQueueStats`],
//! whose fields are `None` until set, and the trampoline copies only those it set.

use super::{bindings, ops::Adapter, Operations};
use kernel::{error::VTABLE_DEFAULT_ERROR, prelude::*};

/// Per-queue statistics of a network driver; all optional.
///
/// Implement it with `#[vtable]` on the `impl` block (an empty `impl` offers none). The
/// device's totals are `base_stats` plus the sum over its active queues, and monitoring tools
/// compare them with `ndo_get_stats64` ([`super::Operations::stats`]): report from the same
/// counters, and keep them monotonic.
#[vtable]
pub trait QueueStats {
    /// Receive queue `idx` (below the device's real number of receive queues).
    fn rx_queue_stats(&self, _idx: u32, _stats: &mut RxQueueStats) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// Transmit queue `idx` (below the device's real number of transmit queues).
    fn tx_queue_stats(&self, _idx: u32, _stats: &mut TxQueueStats) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// What belongs to no active queue (the history of queues gone, traffic outside them).
    /// Only what is set here is reported for the whole device: set to 0 what the queues
    /// count in full. Without it the core reports no device totals.
    fn base_stats(&self, _rx: &mut RxQueueStats, _tx: &mut TxQueueStats) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
}

/// Receive statistics of a queue (`struct netdev_queue_stats_rx`); `None`: not counted.
#[derive(Default, Clone, Copy)]
pub struct RxQueueStats {
    /// Frames received.
    pub packets: Option<u64>,
    /// Bytes received.
    pub bytes: Option<u64>,
    /// Frames dropped for want of a buffer.
    pub alloc_fail: Option<u64>,
    /// Frames the device dropped (before the stack saw them).
    pub hw_drops: Option<u64>,
    /// Frames whose checksum the sender vouched for (`CHECKSUM_UNNECESSARY`).
    pub csum_unnecessary: Option<u64>,
    /// Frames handed up with no checksum information (`CHECKSUM_NONE`).
    pub csum_none: Option<u64>,
}

/// Transmit statistics of a queue (`struct netdev_queue_stats_tx`); `None`: not counted.
#[derive(Default, Clone, Copy)]
pub struct TxQueueStats {
    /// Frames sent.
    pub packets: Option<u64>,
    /// Bytes sent.
    pub bytes: Option<u64>,
    /// Frames the device dropped.
    pub hw_drops: Option<u64>,
    /// Of those, frames dropped for an error.
    pub hw_drop_errors: Option<u64>,
    /// Frames whose checksum was left to the device (`CHECKSUM_PARTIAL`).
    pub needs_csum: Option<u64>,
    /// Segmentation-offload frames sent (as one frame).
    pub hw_gso_packets: Option<u64>,
    /// Bytes of those.
    pub hw_gso_bytes: Option<u64>,
    /// Times the queue was stopped because it was full.
    pub stop: Option<u64>,
    /// Times it was woken again.
    pub wake: Option<u64>,
}

impl RxQueueStats {
    /// Copies what was set into the core's structure.
    fn write(&self, c: &mut bindings::netdev_queue_stats_rx) {
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut c.packets, self.packets);
        set(&mut c.bytes, self.bytes);
        set(&mut c.alloc_fail, self.alloc_fail);
        set(&mut c.hw_drops, self.hw_drops);
        set(&mut c.csum_unnecessary, self.csum_unnecessary);
        set(&mut c.csum_none, self.csum_none);
    }
}

impl TxQueueStats {
    /// Copies what was set into the core's structure.
    fn write(&self, c: &mut bindings::netdev_queue_stats_tx) {
        let set = |dst: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut c.packets, self.packets);
        set(&mut c.bytes, self.bytes);
        set(&mut c.hw_drops, self.hw_drops);
        set(&mut c.hw_drop_errors, self.hw_drop_errors);
        set(&mut c.needs_csum, self.needs_csum);
        set(&mut c.hw_gso_packets, self.hw_gso_packets);
        set(&mut c.hw_gso_bytes, self.hw_gso_bytes);
        set(&mut c.stop, self.stop);
        set(&mut c.wake, self.wake);
    }
}

impl<T: Operations> Adapter<T> {
    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `stats` is valid for writes.
    unsafe extern "C" fn get_queue_stats_rx(
        dev: *mut bindings::net_device,
        idx: i32,
        stats: *mut bindings::netdev_queue_stats_rx,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let mut s = RxQueueStats::default();
        data.rx_queue_stats(idx as u32, &mut s);
        // SAFETY: `stats` is valid for writes and not aliased during the call (caller).
        s.write(unsafe { &mut *stats });
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `stats` is valid for writes.
    unsafe extern "C" fn get_queue_stats_tx(
        dev: *mut bindings::net_device,
        idx: i32,
        stats: *mut bindings::netdev_queue_stats_tx,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let mut s = TxQueueStats::default();
        data.tx_queue_stats(idx as u32, &mut s);
        // SAFETY: `stats` is valid for writes and not aliased during the call (caller).
        s.write(unsafe { &mut *stats });
    }

    /// # Safety
    ///
    /// As `Adapter::open` (`ops.rs`); `rx` and `tx` are valid for writes.
    unsafe extern "C" fn get_base_stats(
        dev: *mut bindings::net_device,
        rx: *mut bindings::netdev_queue_stats_rx,
        tx: *mut bindings::netdev_queue_stats_tx,
    ) {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let (mut r, mut t) = (RxQueueStats::default(), TxQueueStats::default());
        data.base_stats(&mut r, &mut t);
        // SAFETY: `rx` and `tx` are valid for writes, distinct, and not aliased during the
        // call (caller).
        unsafe {
            r.write(&mut *rx);
            t.write(&mut *tx);
        }
    }

    /// Whether a `T`'s devices get [`Self::STAT_OPS`].
    pub(super) const HAS_STAT_OPS: bool =
        T::HAS_RX_QUEUE_STATS || T::HAS_TX_QUEUE_STATS || T::HAS_BASE_STATS;

    /// The `netdev_stat_ops` of a `T`'s devices (used only if [`Self::HAS_STAT_OPS`]).
    pub(super) const STAT_OPS: bindings::netdev_stat_ops = {
        // SAFETY: all-zero is a valid `netdev_stat_ops` (no callbacks).
        let mut ops: bindings::netdev_stat_ops = unsafe { core::mem::zeroed() };
        ops.get_queue_stats_rx = if T::HAS_RX_QUEUE_STATS {
            Some(Self::get_queue_stats_rx)
        } else {
            None
        };
        ops.get_queue_stats_tx = if T::HAS_TX_QUEUE_STATS {
            Some(Self::get_queue_stats_tx)
        } else {
            None
        };
        ops.get_base_stats = if T::HAS_BASE_STATS {
            Some(Self::get_base_stats)
        } else {
            None
        };
        ops
    };
}
