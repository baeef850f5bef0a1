// SPDX-License-Identifier: GPL-2.0

//! Registering a network device: [`Config`] says how to set it up; [`Registration::new`]
//! allocates the `net_device` with its queues, sets up a NAPI context per queue pair and the
//! timers in its private area, requests its interrupt vectors and registers it, and dropping the [`Registration`] undoes all of that in reverse
//! (netfilter hooks first, see `netfilter.rs`). The driver's data lives in the registration.

use super::{
    bindings, device::MAX_QUEUES, netfilter, ops::Adapter, pci, Device, Operations, Private,
};
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
    /// Queue pairs (channels) the device may have active, `1..=MAX_QUEUES`: one NAPI context
    /// each ([`Operations::poll`] gets its index).
    ///
    /// [`Operations::poll`]: super::Operations::poll
    pub queues_max: u32,
    /// Queue pairs active at first, `1..=queues_max` (`ethtool -L` changes it later, through
    /// [`super::Ethtool::set_channels`]).
    pub queues: u32,
    /// Interrupt vectors to request before registering (at most `MAX_QUEUES`; shared, named
    /// after the driver), vector `v` calling [`Operations::interrupt`] with `v`. NAPI context
    /// `q` is reported as served by vector `q % irqs.len()`. [`Operations::irq_unmask`] is
    /// called once all are requested, [`Operations::irq_mask`] before they are freed (before
    /// the device is unregistered, or on an error path).
    ///
    /// [`Operations::interrupt`]: super::Operations::interrupt
    /// [`Operations::irq_unmask`]: super::Operations::irq_unmask
    /// [`Operations::irq_mask`]: super::Operations::irq_mask
    pub irqs: KVec<u32>,
    /// Give vector `v` the `v`-th online CPU as its affinity (hint), wrapping (MSI-X vectors;
    /// not for a shared INTx line).
    pub irq_affinity: bool,
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
/// since: its interrupts requested, its registration. Dropping it undoes all of that in
/// reverse on every path, the error paths of [`Registration::new`] included: let the driver
/// silence the device ([`Operations::irq_mask`]) and free the interrupts, shut the timer down
/// (the interrupt handler may have armed it: after a failed `register_netdev` too),
/// unregister, remove NAPI, free the device.
///
/// # Invariants
///
/// `dev` was allocated by `alloc_etherdev_mqs` with a `Private<T>` private area whose timers
/// and NAPI contexts are set up and whose `data` points at a `T` that outlives this value.
/// `irqs[v]` was requested with the private area's `vectors[v]` as its `dev_id` (and given
/// an affinity hint if `hints`); `registered` says whether `register_netdev` succeeded.
struct Netdev<T: Operations> {
    dev: NonNull<bindings::net_device>,
    irqs: KVec<u32>,
    hints: bool,
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
            if !self.irqs.is_empty() {
                (*(*private).data).irq_mask();
            }
            for (v, &irq) in self.irqs.iter().enumerate() {
                if self.hints {
                    bindings::ivnet_irq_clear_affinity_hint(irq);
                }
                bindings::free_irq(irq, core::ptr::addr_of_mut!((*private).vectors[v]).cast());
            }
            bindings::timer_shutdown_sync(core::ptr::addr_of_mut!((*private).timer));
            if self.registered {
                bindings::unregister_netdev(raw);
            }
            // Only the NAPI poll, `start_xmit`, the timer and the interrupt handler arm the
            // poll hrtimer, and none of them runs any more: cancel waits for a running
            // expiry (whose `napi_schedule` found NAPI disabled), after which it never fires.
            bindings::hrtimer_cancel(core::ptr::addr_of_mut!((*private).poll_timer));
            for q in 0..((*private).queues_max as usize).min(MAX_QUEUES as usize) {
                bindings::netif_napi_del(core::ptr::addr_of_mut!((*private).napi[q]));
            }
            bindings::free_netdev(raw);
        }
    }
}

impl<T: Operations> Registration<T> {
    /// Allocates `ivshm%d`, attaches `data`, and registers it. The device starts with its
    /// carrier off. Whatever fails, what was done is undone (see `Netdev`).
    pub fn new(parent: &pci::Device, data: impl PinInit<T, Error>, cfg: &Config) -> Result<Self> {
        if cfg.queues_max == 0
            || cfg.queues_max > MAX_QUEUES
            || cfg.queues == 0
            || cfg.queues > cfg.queues_max
            || cfg.irqs.len() > MAX_QUEUES as usize
        {
            return Err(EINVAL);
        }
        let data = KBox::pin_init(data, GFP_KERNEL)?;
        // SAFETY: plain allocation; `MAX_QUEUES` transmit and receive queues, of which
        // `cfg.queues` are made real below.
        let dev = unsafe {
            bindings::alloc_etherdev_mqs(size_of::<Private<T>>() as i32, MAX_QUEUES, MAX_QUEUES)
        };
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        let raw = dev.as_ptr();
        // SAFETY: `raw` is a fresh, unregistered device; its private area is zeroed and sized
        // for `Private<T>`; the ops tables are 'static consts; `parent` is a live device.
        unsafe {
            let private = bindings::netdev_priv(raw).cast::<Private<T>>();
            // INVARIANT: `dev` points back, `napi[..queues_max]` are added just below, the
            // others stay zeroed; NAPI is disabled.
            (*private).dev = raw;
            (*private).data = &*data;
            (*private).queues_max = cfg.queues_max;
            (*private).napi_enabled = false;
            for (v, vector) in (*private).vectors.iter_mut().enumerate() {
                vector.dev = raw;
                vector.index = v as u32;
            }
            bindings::ivnet_timer_setup(
                core::ptr::addr_of_mut!((*private).timer),
                Some(Adapter::<T>::timer),
            );
            bindings::ivnet_hrtimer_setup(
                core::ptr::addr_of_mut!((*private).poll_timer),
                Some(Adapter::<T>::poll_timer),
            );
            for q in 0..cfg.queues_max as usize {
                bindings::netif_napi_add_weight(
                    raw,
                    core::ptr::addr_of_mut!((*private).napi[q]),
                    Some(Adapter::<T>::poll),
                    64,
                );
            }
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
            irqs: KVec::with_capacity(cfg.irqs.len(), GFP_KERNEL)?,
            hints: cfg.irq_affinity,
            registered: false,
            _t: PhantomData,
        };
        // SAFETY: valid: allocated above, freed only by `netdev`.
        let device = unsafe { Device::from_raw(raw) };
        // SAFETY: not registered yet; `cfg.queues` was checked against `queues_max`.
        unsafe { device.set_queues(cfg.queues)? };
        for (v, &irq) in cfg.irqs.iter().enumerate() {
            // SAFETY: the device is fully set up, so the handler may run from now on (NAPI is
            // not enabled yet, so scheduling it does nothing); the name is static; `dev_id`,
            // vector `v`'s entry in the private area, lives as long as the device, which
            // `netdev` frees only after freeing the interrupt.
            let ret = unsafe {
                let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                bindings::request_irq(
                    irq,
                    Some(Adapter::<T>::irq),
                    bindings::IRQF_SHARED as _,
                    c"ivshmem_net".as_ptr().cast(),
                    core::ptr::addr_of_mut!((*private).vectors[v]).cast(),
                )
            };
            if ret != 0 {
                return Err(Error::from_errno(ret));
            }
            // INVARIANT: requested with `vectors[v]` as `dev_id`. The capacity was reserved
            // above, so this does not allocate; if it failed all the same, the vector is
            // freed here, as `netdev` does not know it.
            if let Err(e) = netdev.irqs.push(irq, GFP_KERNEL) {
                // SAFETY: requested just above with this `dev_id`; nothing else frees it.
                unsafe {
                    let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                    bindings::free_irq(irq, core::ptr::addr_of_mut!((*private).vectors[v]).cast());
                }
                return Err(e.into());
            }
            if cfg.irq_affinity {
                // SAFETY: `irq` is requested (the hint is cleared before it is freed). A
                // hint that does not take leaves the interrupt where it is: not an error.
                let _ = unsafe { bindings::ivnet_irq_set_affinity_hint(irq, v as u32) };
            }
        }
        if !cfg.irqs.is_empty() {
            for q in 0..cfg.queues_max as usize {
                let irq = cfg.irqs[q % cfg.irqs.len()];
                // SAFETY: the NAPI context was added above and stays until `netdev` is
                // dropped; this only records the number for netdev netlink's napi-get.
                unsafe {
                    let private = bindings::netdev_priv(raw).cast::<Private<T>>();
                    bindings::ivnet_napi_set_irq(
                        core::ptr::addr_of_mut!((*private).napi[q]),
                        irq as i32,
                    );
                }
            }
            // The handlers are in place: the device may raise the interrupts now.
            data.irq_unmask();
        }
        // SAFETY: fully set up above.
        let ret = unsafe { bindings::register_netdev(raw) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        netdev.registered = true;
        // XPS now that it is registered (see `Device::set_queues`).
        // SAFETY: RTNL is held around the call; the count was set above.
        let ret = unsafe {
            bindings::rtnl_lock();
            let ret = device.set_queues(device.queues());
            bindings::rtnl_unlock();
            ret
        };
        ret?;
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
