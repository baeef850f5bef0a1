// SPDX-License-Identifier: GPL-2.0

//! Registering a network device: [`Config`] says how to set it up; [`Registration::new`]
//! allocates the `net_device`, sets up NAPI and the timer in its private area, requests its
//! interrupt and registers it, and dropping the [`Registration`] undoes all of that in reverse
//! (netfilter hooks first, see `netfilter.rs`). The driver's data lives in the registration.

use super::{bindings, netfilter, ops::Adapter, pci, Device, Operations, Private};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::prelude::*;

/// How to set up the device.
pub struct Config {
    /// MAC address.
    pub mac: [u8; 6],
    /// MTU range and initial MTU.
    pub min_mtu: u32,
    /// See `min_mtu`.
    pub max_mtu: u32,
    /// See `min_mtu`.
    pub mtu: u32,
    /// Offer checksum and segmentation offloads (SG, HW_CSUM, TSO, TSO6), with frames up to
    /// this many bytes; `None` for none.
    pub tso_max: Option<u32>,
    /// An interrupt to request before registering (shared, named after the driver), calling
    /// [`Operations::interrupt`]. [`Operations::irq_unmask`] is called once it is requested,
    /// [`Operations::irq_mask`] before it is freed (before the device is unregistered, or on
    /// an error path).
    pub irq: Option<u32>,
}

/// A registered network device and the driver data its callbacks see; unregistered and freed
/// on drop.
///
/// # Invariants
///
/// `dev` was allocated by `alloc_etherdev_mqs` with a `Private<T>` pointing at `*data`, and is
/// registered; `_netdev` owns it (and tears it down on drop, before `data` goes).
pub struct Registration<T: Operations> {
    pub(in super::super) dev: NonNull<bindings::net_device>,
    /// Netfilter hooks calling back into this device, added by
    /// `Registration::add_post_routing_hooks` (`netfilter.rs`); unregistered first on drop.
    pub(in super::super) hooks: Option<netfilter::Hooks>,
    /// Declared before `data`: the device goes before the data its callbacks use.
    _netdev: Netdev<T>,
    data: Pin<KBox<T>>,
}

/// A `net_device` allocated and set up by [`Registration::new`], and what was done to it
/// since: its interrupt requested, its registration. Dropping it undoes all of that in
/// reverse on every path, the error paths of [`Registration::new`] included: let the driver
/// silence the device ([`Operations::irq_mask`]) and free the interrupt, shut the timer down
/// (the interrupt handler may have armed it: after a failed `register_netdev` too),
/// unregister, remove NAPI, free the device.
///
/// # Invariants
///
/// `dev` was allocated by `alloc_etherdev_mqs` with a `Private<T>` private area whose timer
/// and NAPI context are set up and whose `data` points at a `T` that outlives this value.
/// `irq`, if set, was requested with `dev` as its `dev_id`; `registered` says whether
/// `register_netdev` succeeded.
struct Netdev<T: Operations> {
    dev: NonNull<bindings::net_device>,
    irq: Option<u32>,
    registered: bool,
    _t: PhantomData<T>,
}

impl<T: Operations> Drop for Netdev<T> {
    fn drop(&mut self) {
        let raw = self.dev.as_ptr();
        // The driver silences the device before its interrupt is freed (a level-triggered
        // line left asserted would be nobody's). `free_irq` waits for a running handler,
        // after which none runs. `timer_shutdown_sync` then waits for a running timer
        // callback and makes any later arming a no-op (a NAPI poll still running until
        // `unregister_netdev` may try), so none runs while the device goes away.
        // `unregister_netdev` closes a registered device (calling `stop`, which disables
        // NAPI); then no callback runs, so the NAPI context can be removed and the device
        // freed before the data.
        // SAFETY: by the type invariant the private area is a set-up `Private<T>` whose
        // `data` is still alive; the order above keeps every callback away from both.
        unsafe {
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            if let Some(irq) = self.irq {
                (*(*private).data).irq_mask();
                bindings::free_irq(irq, raw.cast());
            }
            bindings::timer_shutdown_sync(core::ptr::addr_of_mut!((*private).timer));
            if self.registered {
                bindings::unregister_netdev(raw);
            }
            // Only the NAPI poll, `start_xmit`, the timer and the interrupt handler arm the
            // poll hrtimer, and none of them runs any more: cancel waits for a running
            // expiry (whose `napi_schedule` found NAPI disabled), after which it never fires.
            bindings::hrtimer_cancel(core::ptr::addr_of_mut!((*private).poll_timer));
            bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
            bindings::free_netdev(raw);
        }
    }
}

impl<T: Operations> Registration<T> {
    /// Allocates `ivshm%d`, attaches `data`, and registers it. The device starts with its
    /// carrier off. Whatever fails, what was done is undone (see `Netdev`).
    pub fn new(parent: &pci::Device, data: impl PinInit<T, Error>, cfg: &Config) -> Result<Self> {
        let data = KBox::pin_init(data, GFP_KERNEL)?;
        // SAFETY: plain allocation; one TX and one RX queue.
        let dev = unsafe { bindings::alloc_etherdev_mqs(size_of::<Private<T>>() as i32, 1, 1) };
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        let raw = dev.as_ptr();
        // SAFETY: `raw` is a fresh, unregistered device; its private area is zeroed and sized
        // for `Private<T>`; the ops tables are 'static consts; `parent` is a live device.
        unsafe {
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            (*private).data = &*data;
            bindings::ivnet_timer_setup(
                core::ptr::addr_of_mut!((*private).timer),
                Some(Adapter::<T>::timer),
            );
            bindings::ivnet_hrtimer_setup(
                core::ptr::addr_of_mut!((*private).poll_timer),
                Some(Adapter::<T>::poll_timer),
            );
            bindings::netif_napi_add_weight(
                raw,
                core::ptr::addr_of_mut!((*private).napi),
                Some(Adapter::<T>::poll),
                64,
            );
            let name = b"ivshm%d\0";
            core::ptr::copy_nonoverlapping(
                name.as_ptr().cast(),
                (*raw).name.as_mut_ptr(),
                name.len(),
            );
            bindings::ivnet_netdev_setup(
                raw,
                parent.as_device_ptr(),
                &Adapter::<T>::NETDEV_OPS,
                &Adapter::<T>::ETHTOOL_OPS,
                if Adapter::<T>::HAS_STAT_OPS {
                    &Adapter::<T>::STAT_OPS
                } else {
                    core::ptr::null()
                },
                cfg.min_mtu,
                cfg.max_mtu,
                cfg.mtu,
            );
            bindings::dev_addr_set(raw, cfg.mac.as_ptr());
            if let Some(max) = cfg.tso_max {
                bindings::ivnet_netdev_set_offloads(raw, max);
            }
            bindings::netif_carrier_off(raw);
        }
        // INVARIANT: set up above, `data` pointing at `*data`, which is dropped after this
        // (a local declared before it, then a field declared after it); nothing requested yet.
        let mut netdev = Netdev::<T> {
            dev,
            irq: None,
            registered: false,
            _t: PhantomData,
        };
        if let Some(irq) = cfg.irq {
            // SAFETY: the device is fully set up, so the handler may run from now on (NAPI is
            // not enabled yet, so scheduling it does nothing); the name is static.
            let ret = unsafe {
                bindings::request_irq(
                    irq,
                    Some(Adapter::<T>::irq),
                    bindings::IRQF_SHARED as _,
                    c"ivshmem_net".as_ptr().cast(),
                    raw.cast(),
                )
            };
            if ret != 0 {
                return Err(Error::from_errno(ret));
            }
            // INVARIANT: requested with `dev` as `dev_id`.
            netdev.irq = Some(irq);
            // SAFETY: the NAPI context was added above and stays until `netdev` is dropped;
            // this only records the number for netdev netlink's napi-get.
            unsafe {
                let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                bindings::ivnet_napi_set_irq(core::ptr::addr_of_mut!((*private).napi), irq as i32);
            }
            // The handler is in place: the device may raise the interrupt now.
            data.irq_unmask();
        }
        // SAFETY: fully set up above.
        let ret = unsafe { bindings::register_netdev(raw) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        netdev.registered = true;
        // INVARIANT: allocated, pointing at `data`, registered, owned by `netdev`.
        Ok(Registration {
            dev,
            hooks: None,
            _netdev: netdev,
            data,
        })
    }
    /// The device.
    pub fn device(&self) -> &Device {
        // SAFETY: valid by the type invariant for as long as `self`.
        unsafe { Device::from_raw(self.dev.as_ptr()) }
    }

    /// The driver data.
    pub fn data(&self) -> &T {
        &self.data
    }
}

impl<T: Operations> Drop for Registration<T> {
    fn drop(&mut self) {
        // Hooks first: unregistering waits for running ones, after which none runs. The
        // device then goes with `netdev` (see `Netdev`), before `data`.
        drop(self.hooks.take());
    }
}

// SAFETY: the device may be used from any thread; `T` is `Send + Sync`.
unsafe impl<T: Operations> Send for Registration<T> {}
// SAFETY: as above.
unsafe impl<T: Operations> Sync for Registration<T> {}
