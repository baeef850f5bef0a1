// SPDX-License-Identifier: GPL-2.0

//! `struct net_device_ops`: the [`Operations`] a network driver implements, and the
//! trampolines that call them from C, with the NAPI poll, the timer and the interrupt handler.
//!
//! [`Operations`] is a `#[vtable]` trait, as the kernel crate's `phy::Driver` and
//! `block::mq::Operations` are: the open/stop/transmit/poll/timer/interrupt methods are
//! required, the others optional, and an op table entry is set to its trampoline only if the
//! driver implements the method (`T::HAS_<METHOD>`); otherwise the core's default applies. The
//! ethtool callbacks, a trait of their own ([`Ethtool`]) with their table, are in
//! `ethtool.rs`.

use super::{
    bindings, device::Vector, Device, Ethtool, Napi, NapiPoll, Private, QueueStats, SkBuff,
};
use core::{cell::Cell, marker::PhantomData, mem::offset_of, ptr::NonNull};
use kernel::{
    error::{from_result, VTABLE_DEFAULT_ERROR},
    prelude::*,
};

/// Counters for `ndo_get_stats64` (a subset of `struct rtnl_link_stats64`).
#[derive(Default, Clone, Copy)]
pub struct Stats64 {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Received frames dropped.
    pub rx_dropped: u64,
    /// Frames to transmit dropped.
    pub tx_dropped: u64,
    /// Receive errors (bad descriptors).
    pub rx_errors: u64,
}

/// What `start_xmit` did with a frame.
pub enum Xmit {
    /// Taken (sent, queued, or dropped and counted).
    Done,
    /// Not taken: the queue is stopped and the stack retries the frame later.
    Busy(SkBuff),
}

/// A network driver's callbacks. All take the driver's data as `&self`.
///
/// Implement it with `#[vtable]` on the `impl` block. The first six methods are required;
/// of the others, only those implemented are offered to the core (each says what the core
/// does without it). The ethtool callbacks are the [`Ethtool`] trait's, in `ethtool.rs`; the
/// per-queue statistics the [`QueueStats`] trait's, in `qstats.rs`.
#[vtable]
pub trait Operations: Ethtool + QueueStats + Send + Sync + Sized + 'static {
    /// `ndo_open`: the interface goes up. NAPI is enabled before this is called, and disabled
    /// again if it fails.
    fn open(&self, dev: &Device) -> Result;
    /// `ndo_stop`: the interface goes down. NAPI is disabled after this returns (a poll may
    /// run until then).
    fn stop(&self, dev: &Device) -> Result;
    /// `ndo_start_xmit`, on the transmit queue [`SkBuff::queue_mapping`] names (below
    /// [`Device::queues`] when the stack chose it).
    fn start_xmit(&self, dev: &Device, skb: SkBuff) -> Xmit;
    /// The poll of NAPI context `q` (receive queue `q`, below [`Device::queues_max`]): receive
    /// up to `budget` frames and return how many; if fewer, complete
    /// the poll with `napi.complete_done`, which consumes `napi` (the count returned after
    /// completing is reported to NAPI as below the budget; a poll that did not complete is
    /// reported as having used the whole budget, so NAPI polls it again).
    fn poll(&self, dev: &Device, q: u32, napi: NapiPoll<'_>, budget: u32) -> u32;
    /// The device's timer fired (softirq context).
    fn timer(&self, dev: &Device);
    /// The device's interrupt vector `vector` (its index in [`Config::irqs`]) fired (hard
    /// interrupt context). Returns whether it was ours (a shared INTx line may belong to
    /// others).
    ///
    /// [`Config::irqs`]: super::Config::irqs
    fn interrupt(&self, dev: &Device, vector: u32) -> bool;

    /// The interrupts of [`Config::irqs`] were requested: let the device raise it (e.g. unmask
    /// it). Called before the device is registered. Without it nothing is done.
    ///
    /// [`Config::irqs`]: super::Config::irq
    fn irq_unmask(&self) {}
    /// The interrupts of [`Config::irqs`] are about to be freed (on unbind, or on an error path
    /// after it was requested): keep the device from raising it any more and acknowledge what
    /// it raised, so that no level-triggered line stays asserted with nobody to handle it.
    /// Without it nothing is done.
    ///
    /// [`Config::irqs`]: super::Config::irq
    fn irq_mask(&self) {}
    /// Whether the NAPI contexts get kernel threads, and at which nice value: `Some(nice)`
    /// makes each `open` create the missing threads (as writing 1 to the `threaded` sysfs
    /// attribute would, but leaving the contexts in softirq context) and set their nice value,
    /// so that a poll can move a context there ([`super::Napi::set_threaded`]). Without it
    /// (`None`), the threads are the administrator's business alone.
    fn napi_thread_nice(&self) -> Option<i32> {
        None
    }

    /// `ndo_change_mtu` (the core already checked `min_mtu..=max_mtu`). Without it the core
    /// sets the MTU itself.
    fn change_mtu(&self, _dev: &Device, _mtu: u32) -> Result {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ndo_get_stats64`. Without it the core reports the device's own (unused) counters.
    fn stats(&self, _dev: &Device) -> Stats64 {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
    /// `ndo_features_check`: may the frame to `dst` keep its checksum offload and its
    /// segmentation offload? What is refused is done in software by the stack first. Without
    /// it only the core's generic checks apply.
    fn offloads_for(&self, _dst: &[u8; 6]) -> (bool, bool) {
        kernel::build_error(VTABLE_DEFAULT_ERROR)
    }
}

/// Whether the stack is about to hand `start_xmit` more frames right away, so the driver may
/// defer telling the peer (`netdev_xmit_more`). Only meaningful inside `start_xmit`.
pub fn xmit_more() -> bool {
    // SAFETY: reads a per-CPU flag; `start_xmit` runs with preemption and bottom halves off.
    unsafe { bindings::netdev_xmit_more() }
}

/// The trampolines from C to [`Operations`], and the op tables pointing at them (this file and
/// `ethtool.rs`).
pub(super) struct Adapter<T: Operations>(PhantomData<T>);

impl<T: Operations> Adapter<T> {
    /// # Safety
    ///
    /// `dev` must be a device registered by `Registration<T>`.
    pub(super) unsafe fn data<'a>(dev: *mut bindings::net_device) -> (&'a Device, &'a T) {
        // SAFETY: by the function's safety requirement.
        unsafe { Device::from_registered(dev) }
    }

    /// # Safety
    ///
    /// Called by the networking core for a device of ours.
    unsafe extern "C" fn open(dev: *mut bindings::net_device) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        if let Some(nice) = data.napi_thread_nice() {
            // Without threads the contexts only stay in softirq context (`set_threaded`
            // refuses): worth a line, not a failed open.
            if let Err(e) = dev.napi_prepare_threads(nice) {
                kernel::pr_warn!("NAPI threads not created ({:?}): softirq only\n", e);
            }
        }
        // NAPI is enabled here, not by the driver: before its `open`, which may make interrupts
        // and timers schedule it, and disabled again if that fails, so a failed open leaves it
        // disabled as it found it (the next open would enable it twice: `BUG_ON`).
        dev.napi_enable();
        from_result(|| match data.open(dev) {
            Ok(()) => Ok(0),
            Err(e) => {
                dev.napi_disable();
                Err(e)
            }
        })
    }

    /// # Safety
    ///
    /// As `open`.
    unsafe extern "C" fn stop(dev: *mut bindings::net_device) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        let ret = from_result(|| data.stop(dev).map(|()| 0));
        // The core calls `stop` only after an `open` that succeeded, which left NAPI enabled,
        // and goes down whatever `stop` returns: NAPI is disabled once per successful open,
        // after the driver stopped feeding it.
        dev.napi_disable();
        ret
    }

    /// # Safety
    ///
    /// As `open`; `skb` is a valid buffer whose ownership passes to us.
    unsafe extern "C" fn start_xmit(
        skb: *mut bindings::sk_buff,
        dev: *mut bindings::net_device,
    ) -> bindings::netdev_tx_t {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        let Some(skb) = NonNull::new(skb) else {
            return bindings::netdev_tx_NETDEV_TX_OK;
        };
        // INVARIANT: the stack gave us this buffer.
        match data.start_xmit(dev, SkBuff(skb)) {
            Xmit::Done => bindings::netdev_tx_NETDEV_TX_OK,
            Xmit::Busy(skb) => {
                // The stack keeps ownership of a frame it gets back as busy.
                let _ = skb.into_raw();
                bindings::netdev_tx_NETDEV_TX_BUSY
            }
        }
    }

    /// # Safety
    ///
    /// As `open`; `stats` is valid for writes.
    unsafe extern "C" fn get_stats64(
        dev: *mut bindings::net_device,
        stats: *mut bindings::rtnl_link_stats64,
    ) {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        let s = data.stats(dev);
        // SAFETY: `stats` is valid for writes (caller).
        unsafe {
            (*stats).rx_packets = s.rx_packets;
            (*stats).rx_bytes = s.rx_bytes;
            (*stats).tx_packets = s.tx_packets;
            (*stats).tx_bytes = s.tx_bytes;
            (*stats).rx_dropped = s.rx_dropped;
            (*stats).tx_dropped = s.tx_dropped;
            (*stats).rx_errors = s.rx_errors;
        }
    }

    /// # Safety
    ///
    /// As `open`; called under RTNL.
    unsafe extern "C" fn change_mtu(dev: *mut bindings::net_device, mtu: i32) -> i32 {
        // SAFETY: by the function's safety requirement.
        let (dev, data) = unsafe { Self::data(dev) };
        from_result(|| {
            let mtu = u32::try_from(mtu).map_err(|_| EINVAL)?;
            data.change_mtu(dev, mtu)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by NAPI for a context added in `Registration::new`.
    pub(super) unsafe extern "C" fn poll(napi: *mut bindings::napi_struct, budget: i32) -> i32 {
        // SAFETY: `napi` is one of the contexts in the private area of one of our devices,
        // whose `dev` field NAPI set when it was added.
        let (dev, data) = unsafe { Self::data((*napi).dev) };
        // SAFETY: as above: the private area is a `Private<T>`.
        let first = unsafe { bindings::netdev_priv((*napi).dev) }
            .cast::<Private<T>>()
            .cast::<u8>()
            .wrapping_add(offset_of!(Private<T>, napi));
        // Which one: its offset in the array (contexts are `size_of::<napi_struct>()` apart).
        let q = ((napi as usize).wrapping_sub(first as usize) / size_of::<bindings::napi_struct>())
            as u32;
        // CAST: `Napi` is `repr(transparent)` over `Opaque<napi_struct>`.
        // SAFETY: valid during the poll.
        // INVARIANT: NAPI polls only contexts it added; the reference is handed on only inside
        // the `NapiPoll`, which completing the poll consumes, and ends with the poll anyway.
        let napi = unsafe { &*napi.cast::<Napi>() };
        let budget = budget.max(0) as u32;
        let completed = Cell::new(false);
        let work = data.poll(dev, q, NapiPoll::new(napi, budget, &completed), budget);
        // NAPI's rules: less than the budget once completed (NAPI would otherwise poll a
        // context it no longer owns again), and exactly the budget if not: `net_rx_action`
        // polls again only a context that used its whole budget, so one that returned less
        // without completing would stay scheduled and never be polled (`napi_disable` then
        // waits for it forever, under rtnl). Whatever the driver says it did.
        let work = if completed.get() {
            work.min(budget.saturating_sub(1))
        } else {
            budget
        };
        work as i32
    }

    /// # Safety
    ///
    /// Called by the timer core for the timer set up in `Registration::new`.
    pub(super) unsafe extern "C" fn timer(timer: *mut bindings::timer_list) {
        // SAFETY: the timer lives at this offset in a `Private<T>` (container_of).
        let private = unsafe {
            timer
                .cast::<u8>()
                .sub(offset_of!(Private<T>, timer))
                .cast::<Private<T>>()
        };
        // SAFETY: the private area belongs to a live device (the timer is cancelled before
        // the device is freed), and `dev` points back to it.
        let (dev, data) = unsafe { Self::data((*private).dev) };
        data.timer(dev);
    }

    /// The poll hrtimer ([`Device::poll_within_ns`]) fired: schedule the NAPI poll of every
    /// active queue pair.
    ///
    /// # Safety
    ///
    /// Called by the hrtimer core for the hrtimer of a `Private<T>` set up in
    /// `Registration::new`.
    pub(super) unsafe extern "C" fn poll_timer(
        timer: *mut bindings::hrtimer,
    ) -> bindings::hrtimer_restart {
        // SAFETY: the hrtimer lives at this offset in a `Private<T>` (container_of).
        let private = unsafe {
            timer
                .cast::<u8>()
                .sub(offset_of!(Private<T>, poll_timer))
                .cast::<Private<T>>()
        };
        // SAFETY: the private area belongs to a live device (the hrtimer is cancelled before
        // the device is freed), and `dev` points back to it. Scheduling a disabled NAPI
        // context does nothing.
        let dev = unsafe { Device::from_raw((*private).dev) };
        for q in 0..dev.queues() {
            dev.napi_schedule(q);
        }
        bindings::hrtimer_restart_HRTIMER_NORESTART
    }

    /// # Safety
    ///
    /// Called by the interrupt core for an interrupt requested in `Registration::new`, whose
    /// `dev_id` is a `Vector` in our device's private area.
    pub(super) unsafe extern "C" fn irq(
        _irq: i32,
        dev_id: *mut core::ffi::c_void,
    ) -> bindings::irqreturn {
        // SAFETY: `dev_id` is the vector the interrupt was requested for, inside the private
        // area of a device that is freed only after `free_irq` (see `Registration::drop`).
        let (dev, data, vector) = unsafe {
            let v = &*dev_id.cast::<Vector>();
            let (dev, data) = Self::data(v.dev);
            (dev, data, v.index)
        };
        if data.interrupt(dev, vector) {
            bindings::irqreturn_IRQ_HANDLED
        } else {
            bindings::irqreturn_IRQ_NONE
        }
    }

    /// # Safety
    ///
    /// As `open`; `skb` is a valid frame about to be transmitted (not ours yet).
    unsafe extern "C" fn features_check(
        skb: *mut bindings::sk_buff,
        dev: *mut bindings::net_device,
        features: bindings::netdev_features_t,
    ) -> bindings::netdev_features_t {
        // SAFETY: by the function's safety requirement.
        let (_, data) = unsafe { Self::data(dev) };
        let mut dst = [0xffu8; 6];
        // SAFETY: `skb` is valid; an Ethernet frame being transmitted has its header in the
        // linear part (checked: at least 6 bytes there).
        unsafe {
            if bindings::skb_headlen(skb) >= 6 {
                core::ptr::copy_nonoverlapping(bindings::ivnet_skb_data(skb), dst.as_mut_ptr(), 6);
            }
        }
        let (csum, gso) = data.offloads_for(&dst);
        // SAFETY: a pure computation on the feature bits.
        unsafe { bindings::ivnet_features_without(features, !csum, !gso) }
    }

    /// The `net_device_ops` of a `T`'s devices.
    pub(super) const NETDEV_OPS: bindings::net_device_ops = {
        // SAFETY: all-zero is a valid `net_device_ops` (no callbacks).
        let mut ops: bindings::net_device_ops = unsafe { core::mem::zeroed() };
        ops.ndo_open = Some(Self::open);
        ops.ndo_stop = Some(Self::stop);
        ops.ndo_start_xmit = Some(Self::start_xmit);
        ops.ndo_get_stats64 = if T::HAS_STATS {
            Some(Self::get_stats64)
        } else {
            None
        };
        ops.ndo_change_mtu = if T::HAS_CHANGE_MTU {
            Some(Self::change_mtu)
        } else {
            None
        };
        ops.ndo_features_check = if T::HAS_OFFLOADS_FOR {
            Some(Self::features_check)
        } else {
            None
        };
        ops
    };
}
