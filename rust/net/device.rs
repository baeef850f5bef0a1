// SPDX-License-Identifier: GPL-2.0

//! `struct net_device`: [`Device`], what the driver may do with its device (carrier, queues,
//! MTU, NAPI scheduling, the polling timer), and [`Private`], the private area every device
//! of ours carries: a NAPI context per queue pair, timers, interrupt vectors and a pointer to
//! the driver data.

use super::{bindings, time};
use kernel::{prelude::*, types::Opaque};

/// A network device.
///
/// # Invariants
///
/// The wrapped `struct net_device` is allocated and valid while this reference exists (it is
/// only handed out by [`Registration`] and its callbacks).
///
/// [`Registration`]: super::Registration
#[repr(transparent)]
pub struct Device(Opaque<bindings::net_device>);

impl Device {
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct net_device` for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: *mut bindings::net_device) -> &'a Self {
        // CAST: `Device` is `repr(transparent)` over `Opaque<net_device>`.
        // SAFETY: valid for `'a` by the caller's guarantee.
        unsafe { &*ptr.cast() }
    }

    pub(super) fn as_raw(&self) -> *mut bindings::net_device {
        self.0.get()
    }

    /// A device registered by [`Registration<T>`] and its driver data, for the trampolines of
    /// its callbacks (here and in the netfilter hook's).
    ///
    /// # Safety
    ///
    /// `dev` must be a device registered by `Registration<T>`, valid during the callback.
    ///
    /// [`Registration<T>`]: super::Registration
    pub(crate) unsafe fn from_registered<'a, T>(
        dev: *mut bindings::net_device,
    ) -> (&'a Self, &'a T) {
        // SAFETY: the caller guarantees `dev` is ours and valid during the callback.
        let dev = unsafe { Self::from_raw(dev) };
        // SAFETY: `data` was set before registration and outlives the registration.
        let data = unsafe { &*(*dev.private::<T>()).data };
        (dev, data)
    }

    fn private<T>(&self) -> *mut Private<T> {
        // SAFETY: valid by the type invariant; every device handed out was allocated by
        // `Registration::<T>::new` with a `Private<T>` as its private area.
        unsafe { bindings::netdev_priv(self.as_raw()) }.cast()
    }

    /// Turns the carrier on (link up).
    pub fn carrier_on(&self) {
        // SAFETY: valid by the type invariant; callable from any context.
        unsafe { bindings::netif_carrier_on(self.as_raw()) }
    }

    /// Turns the carrier off (link down).
    pub fn carrier_off(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_carrier_off(self.as_raw()) }
    }

    /// Forgets every ARP and NDP entry through this device (`neigh_changeaddr`), for when a
    /// station behind it went away and its MAC with it: the next packet to its address asks
    /// again instead of going to a MAC nobody owns until the entry ages out (tens of seconds).
    /// Takes the neighbour tables' locks with bottom halves disabled: call it with none of the
    /// driver's locks held.
    pub fn neigh_flush(&self) {
        // SAFETY: valid by the type invariant; the helper only takes the tables' own locks.
        unsafe { bindings::ivnet_neigh_flush(self.as_raw()) }
    }

    /// Whether the carrier is on.
    pub fn carrier_ok(&self) -> bool {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_carrier_ok(self.as_raw()) }
    }

    /// Allows the stack to call `start_xmit` on every transmit queue.
    pub fn start_queues(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_tx_start_all_queues(self.as_raw()) }
    }

    /// Stops the stack from calling `start_xmit` on any transmit queue (interface down).
    pub fn stop_queues(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_tx_stop_all_queues(self.as_raw()) }
    }

    /// Stops the stack from calling `start_xmit` for transmit queue `q` (ring full); nothing
    /// for a queue the device does not have.
    pub fn stop_queue(&self, q: u32) {
        if let Some(q) = self.txq(q) {
            // SAFETY: as in `carrier_on`; `q` is below the allocated number of queues.
            unsafe { bindings::netif_stop_subqueue(self.as_raw(), q) }
        }
    }

    /// Lets stopped transmit queue `q` transmit again (and schedules it).
    pub fn wake_queue(&self, q: u32) {
        if let Some(q) = self.txq(q) {
            // SAFETY: as in `stop_queue`.
            unsafe { bindings::netif_wake_subqueue(self.as_raw(), q) }
        }
    }

    /// Whether transmit queue `q` is stopped (`false` for a queue the device does not have).
    pub fn queue_stopped(&self, q: u32) -> bool {
        match self.txq(q) {
            // SAFETY: as in `stop_queue`.
            Some(q) => unsafe { bindings::__netif_subqueue_stopped(self.as_raw(), q) },
            None => false,
        }
    }

    /// `q` as a queue index if the device has that many transmit queues allocated.
    fn txq(&self, q: u32) -> Option<u16> {
        if q < MAX_QUEUES {
            u16::try_from(q).ok()
        } else {
            None
        }
    }

    /// The number of active queue pairs (channels): the real number of transmit (and receive)
    /// queues, between 1 and [`Device::queues_max`].
    pub fn queues(&self) -> u32 {
        // SAFETY: valid by the type invariant; a `READ_ONCE` of the field.
        unsafe { bindings::ivnet_netdev_queues(self.as_raw()) }
    }

    /// The most queue pairs the device may have active: one NAPI context each
    /// ([`Config::queues_max`]).
    ///
    /// [`Config::queues_max`]: super::Config::queues_max
    pub fn queues_max(&self) -> u32 {
        // SAFETY: as in `napi`; set before registration, never changed.
        unsafe { (*self.private::<()>()).queues_max }
    }

    /// Sets the number of active queue pairs to `n` (`1..=queues_max`), with XPS (only once
    /// the device is registered: a socket whose packets came in on receive queue `q`, as
    /// [`super::SkBuff::record_rx_queue`] records, sends on transmit queue `q`; other senders
    /// on CPU `c` on queue `c % n`) and, while NAPI is enabled, each active queue pair tied to
    /// its NAPI context (netdev netlink's `queue-get`), the queues beyond `n` untied first.
    ///
    /// # Safety
    ///
    /// The device must be unregistered, or the caller must hold RTNL.
    pub(super) unsafe fn set_queues(&self, n: u32) -> Result {
        if n == 0 || n > self.queues_max() {
            return Err(EINVAL);
        }
        let private = self.private::<()>();
        // SAFETY: RTNL or an unregistered device (caller), which the field needs too (only
        // written under either); `napi` holds `queues_max` added NAPI contexts.
        let ret = unsafe {
            bindings::ivnet_netdev_set_queues(
                self.as_raw(),
                n,
                core::ptr::addr_of_mut!((*private).napi).cast(),
                (*private).napi_enabled,
            )
        };
        kernel::error::to_result(ret)
    }

    /// The current MTU.
    pub fn mtu(&self) -> u32 {
        // SAFETY: valid by the type invariant; a `READ_ONCE` of the field.
        unsafe { bindings::ivnet_netdev_mtu(self.as_raw()) }
    }

    /// Sets the MTU (from `Operations::change_mtu`, under RTNL).
    pub fn set_mtu(&self, mtu: u32) {
        // SAFETY: valid by the type invariant; a `WRITE_ONCE` of the field.
        unsafe { bindings::ivnet_netdev_set_mtu(self.as_raw(), mtu) }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0u8; 6];
        // SAFETY: `dev_addr` of an Ethernet device points to at least 6 valid bytes.
        let p = unsafe { bindings::ivnet_netdev_addr(self.as_raw()) };
        // SAFETY: as above; `mac` is a distinct local.
        unsafe { core::ptr::copy_nonoverlapping(p, mac.as_mut_ptr(), 6) };
        mac
    }

    /// The interface name (`ivshm0`).
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array inside the device.
        unsafe { CStr::from_char_ptr(bindings::ivnet_netdev_name(self.as_raw())) }
    }

    fn napi(&self, q: u32) -> Option<*mut bindings::napi_struct> {
        if q >= self.queues_max() {
            return None;
        }
        // SAFETY: the private area is a `Private<T>` for some `T`, whose fields but the last,
        // at the same offsets for every `T` (`repr(C)`), include the NAPI contexts; `q` is
        // below `queues_max`, at most `MAX_QUEUES`.
        Some(unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).napi[q as usize]) })
    }

    /// Schedules NAPI context `q`'s poll (from a timer, an interrupt, or `open`); nothing for
    /// a context the device does not have.
    pub fn napi_schedule(&self, q: u32) {
        if let Some(napi) = self.napi(q) {
            // SAFETY: the NAPI context was added in `Registration::new` and lives with the
            // device.
            unsafe { bindings::napi_schedule(napi) };
        }
    }

    /// Enables every NAPI context: only the `open` trampoline does (`ops.rs`), which the core
    /// calls only while the device is down, so NAPI is disabled then.
    /// The active queue pairs are tied to their NAPI contexts while they are enabled (netdev
    /// netlink's `queue-get` shows it).
    pub(super) fn napi_enable(&self) {
        let private = self.private::<()>();
        for q in 0..self.queues_max() {
            if let Some(napi) = self.napi(q) {
                // SAFETY: as in `napi_schedule`; NAPI is disabled (the caller is the `open`
                // trampoline, and the one place that enables it).
                unsafe { bindings::napi_enable(napi) };
            }
        }
        // SAFETY: the core calls `ndo_open` under RTNL, which tying the queues to the NAPI
        // contexts needs, and which guards the flag (only written here and in
        // `napi_disable`); the contexts belong to this device.
        unsafe {
            (*private).napi_enabled = true;
            bindings::ivnet_netdev_queues_napi(
                self.as_raw(),
                core::ptr::addr_of_mut!((*private).napi).cast(),
                self.queues(),
            );
        }
    }

    /// Gives every NAPI context its kernel thread with nice value `nice`, leaving the
    /// contexts where they are (see [`super::Operations::napi_thread_nice`]). Only the `open`
    /// trampoline calls it, under RTNL. May sleep.
    pub(super) fn napi_prepare_threads(&self, nice: i32) -> Result {
        // SAFETY: the core calls `ndo_open` under RTNL, which `dev_set_threaded` needs (the
        // `threaded` attribute takes it too); the device is registered.
        kernel::error::to_result(unsafe {
            bindings::ivnet_napi_prepare_threads(self.as_raw(), nice)
        })
    }

    /// Disables every NAPI context and waits for running polls to finish: only the `stop`
    /// trampoline does, and the `open` one if the driver's open fails (`ops.rs`), each after
    /// enabling them. May sleep.
    /// The queues are untied from them first.
    pub(super) fn napi_disable(&self) {
        let private = self.private::<()>();
        // SAFETY: both callers run under RTNL (`ndo_open`, `ndo_stop`), which untying the
        // queues needs and which guards the flag.
        unsafe {
            bindings::ivnet_netdev_queues_napi(self.as_raw(), core::ptr::null_mut(), 0);
            (*private).napi_enabled = false;
        }
        for q in 0..self.queues_max() {
            if let Some(napi) = self.napi(q) {
                // SAFETY: as in `napi_schedule`; NAPI is enabled (each caller enabled it, or
                // the core calls `stop` only after an `open` that did), and only these two
                // callers disable it.
                unsafe { bindings::napi_disable(napi) };
            }
        }
    }

    fn timer(&self) -> *mut bindings::timer_list {
        // SAFETY: as in `napi`; the timer is a field of the `repr(C)` private area before
        // `data`, so its offset does not depend on `T`.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).timer) }
    }

    /// The jiffies value `delay` (at least 1) jiffies from now.
    fn expiry(delay: usize) -> usize {
        time::jiffies().wrapping_add(delay.max(1))
    }

    /// Arms the device's timer to fire `Operations::timer` after `delay` jiffies.
    pub fn timer_arm(&self, delay: usize) {
        // SAFETY: the timer was set up in `Registration::new` and lives with the device.
        unsafe { bindings::mod_timer(self.timer(), Self::expiry(delay)) };
    }

    fn poll_timer(&self) -> *mut bindings::hrtimer {
        // SAFETY: as in `timer`.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).poll_timer) }
    }

    /// Makes sure the NAPI poll of every active queue pair is scheduled within `ns`
    /// nanoseconds (a high-resolution timer; already armed, it keeps its expiry). Any context.
    pub fn poll_within_ns(&self, ns: u64) {
        // SAFETY: the hrtimer was set up in `Registration::new` and lives with the device;
        // it is cancelled only once nothing can arm it any more (see `Netdev::drop`).
        unsafe { bindings::ivnet_hrtimer_arm_within(self.poll_timer(), ns) };
    }

    /// Like [`Device::poll_within_ns`], but an hrtimer armed for later is brought forward.
    pub fn poll_sooner_ns(&self, ns: u64) {
        // SAFETY: as in `poll_within_ns`.
        unsafe { bindings::ivnet_hrtimer_arm_sooner(self.poll_timer(), ns) };
    }

    /// Makes sure the device's timer fires within `delay` jiffies: arms it if it is idle, brings
    /// it forward if it is armed for later, leaves it if it fires sooner (`timer_reduce`).
    pub fn timer_arm_within(&self, delay: usize) {
        // SAFETY: as in `timer_arm`.
        unsafe { bindings::timer_reduce(self.timer(), Self::expiry(delay)) };
    }
}

/// The most queue pairs (channels) a device may have: transmit and receive queues allocated,
/// NAPI contexts and interrupt vectors at most.
pub const MAX_QUEUES: u32 = 8;

/// What an interrupt vector's handler gets as `dev_id`: the device and the vector's index.
#[repr(C)]
pub(super) struct Vector {
    pub(super) dev: *mut bindings::net_device,
    pub(super) index: u32,
}

/// The private area of every device: NAPI contexts, timers, the interrupt vectors' `dev_id`s
/// and a pointer to the driver's data. `repr(C)`, with the fields that do not depend on `T`
/// first, so `Device` can reach them without knowing `T`.
///
/// # Invariants
///
/// `dev` points back to the device; `napi[..queues_max]` are added to it (from
/// `Registration::new` until the device is freed) and the others zero; `napi_enabled` says
/// whether they are enabled and is only changed under RTNL.
#[repr(C)]
pub(super) struct Private<T> {
    pub(super) dev: *mut bindings::net_device,
    pub(super) timer: bindings::timer_list,
    /// Schedules the NAPI polls within microseconds ([`Device::poll_within_ns`]).
    pub(super) poll_timer: bindings::hrtimer,
    /// NAPI context `q` polls receive queue `q`.
    pub(super) napi: [bindings::napi_struct; MAX_QUEUES as usize],
    pub(super) napi_enabled: bool,
    pub(super) queues_max: u32,
    /// `dev_id` of interrupt vector `v`.
    pub(super) vectors: [Vector; MAX_QUEUES as usize],
    pub(super) data: *const T,
}
