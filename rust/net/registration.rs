// SPDX-License-Identifier: GPL-2.0

//! Registering a network device: [`Config`] says how to set it up; [`Registration::new`]
//! allocates the `net_device`, sets up NAPI and the timer in its private area, requests its
//! interrupt and registers it, and dropping the [`Registration`] undoes all of that in reverse
//! (netfilter hooks first, see `netfilter.rs`). The driver's data lives in the registration.

use super::{bindings, netfilter, ops::Adapter, pci, Device, Operations, Private};
use core::ptr::NonNull;
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
    /// [`Operations::interrupt`]; freed before the device is unregistered.
    pub irq: Option<u32>,
}

/// A registered network device and the driver data its callbacks see; unregistered and freed
/// on drop.
///
/// # Invariants
///
/// `dev` was allocated by `alloc_etherdev_mqs` with a `Private<T>` pointing at `*data`, and is
/// registered.
pub struct Registration<T: Operations> {
    pub(in super::super) dev: NonNull<bindings::net_device>,
    irq: Option<u32>,
    /// Netfilter hooks calling back into this device, added by
    /// `Registration::add_post_routing_hooks` (`netfilter.rs`); unregistered first on drop.
    pub(in super::super) hooks: Option<netfilter::Hooks>,
    data: Pin<KBox<T>>,
}

impl<T: Operations> Registration<T> {
    /// Allocates `ivshm%d`, attaches `data`, and registers it. The device starts with its
    /// carrier off.
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
                // SAFETY: never registered; undo the NAPI add and free it.
                unsafe {
                    let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                    bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
                    bindings::free_netdev(raw);
                }
                return Err(Error::from_errno(ret));
            }
        }
        // SAFETY: fully set up above.
        let ret = unsafe { bindings::register_netdev(raw) };
        if ret != 0 {
            // SAFETY: never registered; free the interrupt requested above, undo the NAPI add
            // and free the device.
            unsafe {
                if let Some(irq) = cfg.irq {
                    bindings::free_irq(irq, raw.cast());
                }
                let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
                bindings::free_netdev(raw);
            }
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: allocated, pointing at `data`, registered.
        Ok(Registration {
            dev,
            irq: cfg.irq,
            hooks: None,
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
        // Hooks first: unregistering waits for running ones, after which none runs.
        drop(self.hooks.take());
        let raw = self.dev.as_ptr();
        // SAFETY: registered by the type invariant. `free_irq` waits for a running handler,
        // after which none runs. `timer_shutdown_sync` waits for a running
        // timer callback and keeps the timer from being armed again, so none runs while the
        // device goes away. `unregister_netdev` then closes the device (calling `stop`, which
        // disables NAPI); afterwards no callback runs, so the NAPI context can be removed and
        // the device freed before `data`.
        unsafe {
            if let Some(irq) = self.irq {
                bindings::free_irq(irq, raw.cast());
            }
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            bindings::timer_shutdown_sync(core::ptr::addr_of_mut!((*private).timer));
            bindings::unregister_netdev(raw);
            bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi));
            bindings::free_netdev(raw);
        }
    }
}

// SAFETY: the device may be used from any thread; `T` is `Send + Sync`.
unsafe impl<T: Operations> Send for Registration<T> {}
// SAFETY: as above.
unsafe impl<T: Operations> Sync for Registration<T> {}
