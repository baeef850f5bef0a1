// SPDX-License-Identifier: GPL-2.0

//! `struct net_device`: [`Device`], what the driver may do with its device (carrier, queue,
//! MTU, NAPI scheduling, the polling timer), and [`Private`], the private area every device
//! of ours carries: NAPI context, timer and a pointer to the driver data.

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

    /// Allows the stack to call `start_xmit`.
    pub fn start_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_start_queue(self.as_raw()) }
    }

    /// Stops the stack from calling `start_xmit` (ring full).
    pub fn stop_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_stop_queue(self.as_raw()) }
    }

    /// Lets a stopped queue transmit again (and schedules it).
    pub fn wake_queue(&self) {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_wake_queue(self.as_raw()) }
    }

    /// Whether the queue is stopped.
    pub fn queue_stopped(&self) -> bool {
        // SAFETY: as in `carrier_on`.
        unsafe { bindings::netif_queue_stopped(self.as_raw()) }
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

    fn napi(&self) -> *mut bindings::napi_struct {
        // SAFETY: the private area is a `Private<T>` for some `T`, whose first field, at the
        // same offset for every `T` (`repr(C)`), is the NAPI context.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).napi) }
    }

    /// Schedules the NAPI poll (from a timer, an interrupt, or `open`).
    pub fn napi_schedule(&self) {
        // SAFETY: the NAPI context was added in `Registration::new` and lives with the device.
        unsafe { bindings::napi_schedule(self.napi()) };
    }

    /// Enables NAPI: only the `open` trampoline does (`ops.rs`), which the core calls only
    /// while the device is down, so NAPI is disabled then.
    /// The queue pair is tied to the NAPI context while it is enabled (netdev netlink's
    /// `queue-get` shows it).
    pub(super) fn napi_enable(&self) {
        // SAFETY: as in `napi_schedule`; NAPI is disabled (the caller is the `open` trampoline,
        // and the one place that enables it). The core calls `ndo_open` under RTNL, which
        // tying the queues to it needs; the NAPI context belongs to this device.
        unsafe {
            bindings::napi_enable(self.napi());
            bindings::ivnet_netdev_queues_napi(self.as_raw(), self.napi());
        }
    }

    /// Disables NAPI and waits for a running poll to finish: only the `stop` trampoline does,
    /// and the `open` one if the driver's open fails (`ops.rs`), each after enabling it. May
    /// sleep.
    /// The queues are untied from it first.
    pub(super) fn napi_disable(&self) {
        // SAFETY: as in `napi_schedule`; NAPI is enabled (each caller enabled it, or the core
        // calls `stop` only after an `open` that did), and only these two callers disable it.
        // Both run under RTNL (`ndo_open`, `ndo_stop`), which untying the queues needs.
        unsafe {
            bindings::ivnet_netdev_queues_napi(self.as_raw(), core::ptr::null_mut());
            bindings::napi_disable(self.napi());
        }
    }

    fn timer(&self) -> *mut bindings::timer_list {
        // SAFETY: as in `napi`; the timer is the second field of the `repr(C)` private area
        // and its offset does not depend on `T`.
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
        // SAFETY: as in `napi`; the hrtimer is the third field of the `repr(C)` private area
        // and its offset does not depend on `T`.
        unsafe { core::ptr::addr_of_mut!((*self.private::<()>()).poll_timer) }
    }

    /// Makes sure the NAPI poll is scheduled within `ns` nanoseconds (a high-resolution
    /// timer; already armed, it keeps its expiry). Any context.
    pub fn poll_within_ns(&self, ns: u64) {
        // SAFETY: the hrtimer was set up in `Registration::new` and lives with the device;
        // it is cancelled only once nothing can arm it any more (see `Netdev::drop`).
        unsafe { bindings::ivnet_hrtimer_arm_within(self.poll_timer(), ns) };
    }

    /// Makes sure the device's timer fires within `delay` jiffies: arms it if it is idle, brings
    /// it forward if it is armed for later, leaves it if it fires sooner (`timer_reduce`).
    pub fn timer_arm_within(&self, delay: usize) {
        // SAFETY: as in `timer_arm`.
        unsafe { bindings::timer_reduce(self.timer(), Self::expiry(delay)) };
    }
}

/// The private area of every device: NAPI context, timer, and a pointer to the driver's data.
/// `repr(C)`, with the fields that do not depend on `T` first, so `Device` can reach them
/// without knowing `T`.
#[repr(C)]
pub(super) struct Private<T> {
    pub(super) napi: bindings::napi_struct,
    pub(super) timer: bindings::timer_list,
    /// Schedules the NAPI poll within microseconds ([`Device::poll_within_ns`]).
    pub(super) poll_timer: bindings::hrtimer,
    pub(super) data: *const T,
}
