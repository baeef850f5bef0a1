// SPDX-License-Identifier: GPL-2.0

//! PCI drivers: the device, its BARs, and driver registration.
//!
//! A driver implements [`Driver`]; a [`Registration`] registers it with the PCI core and
//! unregisters it on drop. The device's resources are RAII guards ([`Enabled`], [`BarRegion`],
//! [`IoMem`](super::io::IoMem), [`SharedMem`](super::shm::SharedMem)) that the driver keeps
//! in its per-device data, so unbinding releases them in reverse order by dropping that data.

use super::{bindings, io::IoMem, shm::SharedMem};
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    error::{from_result, to_result},
    prelude::*,
    types::{ARef, AlwaysRefCounted, Opaque},
    ThisModule,
};

/// A PCI device.
///
/// # Invariants
///
/// The wrapped `struct pci_dev` is valid for as long as this reference exists (the PCI core
/// guarantees it during probe/remove; [`ARef<Device>`] holds a reference count otherwise).
#[repr(transparent)]
pub struct Device(Opaque<bindings::pci_dev>);

impl Device {
    /// Creates a reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct pci_dev` that stays valid for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::pci_dev) -> &'a Self {
        // CAST: `Device` is `repr(transparent)` over `Opaque<pci_dev>`, which has the layout
        // of `pci_dev`.
        // SAFETY: valid for `'a` by the caller's guarantee.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn as_raw(&self) -> *mut bindings::pci_dev {
        self.0.get()
    }

    /// The embedded `struct device`, for logging.
    pub(crate) fn as_device_ptr(&self) -> *mut bindings::device {
        // SAFETY: `self.as_raw()` is valid by the type invariant; only the field's address is
        // taken.
        unsafe { core::ptr::addr_of_mut!((*self.as_raw()).dev) }
    }

    /// Vendor ID.
    pub fn vendor_id(&self) -> u16 {
        // SAFETY: valid by the type invariant; `vendor` is set before probe and never changes.
        unsafe { (*self.as_raw()).vendor }
    }

    /// Device ID.
    pub fn device_id(&self) -> u16 {
        // SAFETY: as in `vendor_id`.
        unsafe { (*self.as_raw()).device }
    }

    /// Revision ID.
    pub fn revision(&self) -> u8 {
        // SAFETY: as in `vendor_id`.
        unsafe { (*self.as_raw()).revision }
    }

    /// The device's name on the PCI bus (`0000:00:04.0`), as used for `ethtool -i`'s bus-info.
    pub fn name(&self) -> &CStr {
        // SAFETY: `pci_name` returns the device's NUL-terminated name, which lives as long as
        // the device.
        unsafe { CStr::from_char_ptr(bindings::ivnet_pci_name(self.as_raw())) }
    }

    /// Length of BAR `bar` in bytes; 0 if the device does not implement it.
    pub fn resource_len(&self, bar: u32) -> u64 {
        if bar >= 6 {
            return 0;
        }
        // SAFETY: valid by the type invariant, and `bar` is a standard BAR number.
        unsafe { bindings::ivnet_pci_resource_len(self.as_raw(), bar as i32) }
    }

    /// Whether BAR `bar` is a memory (as opposed to I/O port) BAR.
    pub fn resource_is_mem(&self, bar: u32) -> bool {
        if bar >= 6 {
            return false;
        }
        // SAFETY: as in `resource_len`.
        let flags = unsafe { bindings::ivnet_pci_resource_flags(self.as_raw(), bar as i32) };
        flags & bindings::IORESOURCE_MEM as usize != 0
    }

    fn resource_start(&self, bar: u32) -> u64 {
        // SAFETY: as in `resource_len`; callers pass bar < 6.
        unsafe { bindings::ivnet_pci_resource_start(self.as_raw(), bar as i32) }
    }

    /// Enables the device (`pci_enable_device`) until the returned guard is dropped.
    pub fn enable(&self) -> Result<Enabled> {
        // SAFETY: valid by the type invariant.
        to_result(unsafe { bindings::pci_enable_device(self.as_raw()) })?;
        Ok(Enabled(self.into()))
    }

    /// Claims BAR `bar` for `name` (`pci_request_region`) until the guard is dropped.
    pub fn request_region(&self, bar: u32, name: &'static CStr) -> Result<BarRegion> {
        if bar >= 6 || self.resource_len(bar) == 0 {
            return Err(ENODEV);
        }
        // SAFETY: valid by the type invariant; `name` is 'static as the resource keeps it.
        to_result(unsafe {
            bindings::pci_request_region(self.as_raw(), bar as i32, name.as_char_ptr())
        })?;
        Ok(BarRegion {
            dev: self.into(),
            bar,
        })
    }

    /// Maps memory BAR `bar` uncached for register access (`pci_iomap`).
    pub fn iomap(&self, bar: u32) -> Result<IoMem> {
        let len = self.resource_len(bar);
        if len == 0 || !self.resource_is_mem(bar) {
            return Err(ENODEV);
        }
        // SAFETY: valid by the type invariant; `bar` exists (checked above); 0 maps it whole.
        let addr = unsafe { bindings::pci_iomap(self.as_raw(), bar as i32, 0) };
        let addr = NonNull::new(addr).ok_or(ENOMEM)?;
        // SAFETY: `pci_iomap` just mapped all `len` bytes of BAR `bar` of `self` at `addr`, and
        // only the `IoMem` made here unmaps it.
        Ok(unsafe { IoMem::new(self.into(), addr, len as usize) })
    }

    /// Allocates between `min` and `max` interrupt vectors: MSI-X if the device has it, else
    /// (with `min == 1`) its INTx line. Enables bus mastering, which MSI-X needs.
    pub fn alloc_irq_vectors(&self, min: u32, max: u32) -> Result<IrqVectors> {
        let flags = bindings::PCI_IRQ_MSIX | bindings::PCI_IRQ_INTX;
        // SAFETY: valid by the type invariant; the device is enabled (probe).
        let n = unsafe {
            bindings::pci_set_master(self.as_raw());
            bindings::pci_alloc_irq_vectors(self.as_raw(), min, max, flags)
        };
        let count = u32::try_from(n).map_err(|_| Error::from_errno(n))?;
        Ok(IrqVectors {
            dev: self.into(),
            count,
        })
    }

    /// Maps memory BAR `bar` as ordinary write-back memory (`memremap(MEMREMAP_WB)`), as shared
    /// memory should be: it is RAM on the host, not device registers.
    pub fn memremap(&self, bar: u32) -> Result<SharedMem> {
        let len = self.resource_len(bar);
        if len == 0 || !self.resource_is_mem(bar) {
            return Err(ENODEV);
        }
        let len = usize::try_from(len).map_err(|_| EINVAL)?;
        // SAFETY: the range is the device's own BAR, claimed by the caller's `BarRegion`.
        let addr = unsafe {
            bindings::memremap(self.resource_start(bar), len, bindings::MEMREMAP_WB as _)
        };
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(ENOMEM)?;
        // SAFETY: `memremap` just mapped the `len` bytes write-back at `addr` (page-aligned,
        // as the BAR is), and only the `SharedMem` made here unmaps it.
        Ok(unsafe { SharedMem::new(addr, len) })
    }
}

// SAFETY: `pci_dev_get`/`pci_dev_put` keep the device alive while a reference count is held.
unsafe impl AlwaysRefCounted for Device {
    fn inc_ref(&self) {
        // SAFETY: valid by the type invariant.
        unsafe { bindings::pci_dev_get(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: the caller owns a reference count on `obj`.
        unsafe { bindings::pci_dev_put(obj.cast().as_ptr()) }
    }
}

// SAFETY: a `struct pci_dev` may be used from any thread; the C API does its own locking.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

/// The device is enabled while this exists.
pub struct Enabled(ARef<Device>);

impl Drop for Enabled {
    fn drop(&mut self) {
        // SAFETY: `pci_enable_device` succeeded when this guard was made.
        unsafe { bindings::pci_disable_device(self.0.as_raw()) }
    }
}

/// Interrupt vectors allocated with `pci_alloc_irq_vectors`, freed on drop. Whoever requested
/// an interrupt on one of them must free it first.
pub struct IrqVectors {
    dev: ARef<Device>,
    count: u32,
}

impl IrqVectors {
    /// How many vectors were allocated.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether they are MSI-X vectors (else a legacy INTx line, possibly shared).
    pub fn is_msix(&self) -> bool {
        // SAFETY: valid by `Device`'s type invariant; reads one bit field.
        unsafe { bindings::ivnet_pci_msix_enabled(self.dev.as_raw()) }
    }

    /// The Linux interrupt number of vector `n`.
    pub fn irq(&self, n: u32) -> Result<u32> {
        if n >= self.count {
            return Err(EINVAL);
        }
        // SAFETY: valid device with `count` vectors allocated; `n` is in range.
        let irq = unsafe { bindings::pci_irq_vector(self.dev.as_raw(), n) };
        u32::try_from(irq).map_err(|_| Error::from_errno(irq))
    }
}

impl Drop for IrqVectors {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_irq_vectors` on this device.
        unsafe { bindings::pci_free_irq_vectors(self.dev.as_raw()) }
    }
}

/// A claimed BAR, released on drop.
pub struct BarRegion {
    dev: ARef<Device>,
    bar: u32,
}

impl Drop for BarRegion {
    fn drop(&mut self) {
        // SAFETY: `pci_request_region` succeeded for this BAR when the guard was made.
        unsafe { bindings::pci_release_region(self.dev.as_raw(), self.bar as i32) }
    }
}

/// One entry of a device ID table.
pub type DeviceId = bindings::pci_device_id;

/// `PCI_ANY_ID`.
pub const ANY_ID: u32 = !0;

/// The entry matching `vendor:device` with any subsystem.
pub const fn device_id(vendor: u32, device: u32) -> DeviceId {
    bindings::pci_device_id {
        vendor,
        device,
        subvendor: ANY_ID,
        subdevice: ANY_ID,
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: 0,
    }
}

/// The all-zero entry that ends a table.
pub const fn end_of_table() -> DeviceId {
    bindings::pci_device_id {
        vendor: 0,
        device: 0,
        subvendor: 0,
        subdevice: 0,
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: 0,
    }
}

/// Declares a zero-terminated PCI ID table and exports it as
/// `__mod_pci__<module>_device_table`, so that modpost writes `pci:v...d...` aliases into
/// `modinfo` (udev autoloading), as `MODULE_DEVICE_TABLE(pci, ...)` does in C.
#[macro_export]
macro_rules! pci_device_table {
    ($name:ident, $module:literal, [$(($vendor:expr, $device:expr)),+ $(,)?]) => {
        #[export_name = concat!("__mod_pci__", $module, "_device_table")]
        static $name: [$crate::ext::pci::DeviceId; [$($vendor),+].len() + 1] = [
            $($crate::ext::pci::device_id($vendor, $device),)+
            $crate::ext::pci::end_of_table(),
        ];
    };
}

/// A PCI driver.
pub trait Driver: Sized + Send + Sync + 'static {
    /// Driver name, shown in sysfs and `ethtool -i`.
    const NAME: &'static CStr;
    /// Devices to bind: a zero-terminated table from [`pci_device_table!`].
    const ID_TABLE: &'static [DeviceId];

    /// Binds `dev`. The returned data lives until the device is unbound; dropping it must
    /// release everything probe acquired.
    fn probe(dev: &Device, id: &DeviceId) -> Result<Pin<KBox<Self>>>;
}

struct Adapter<T: Driver>(PhantomData<T>);

impl<T: Driver> Adapter<T> {
    /// # Safety
    ///
    /// Called by the PCI core with a valid device and the matching entry of `T::ID_TABLE`.
    unsafe extern "C" fn probe_callback(
        pdev: *mut bindings::pci_dev,
        id: *const bindings::pci_device_id,
    ) -> kernel::ffi::c_int {
        from_result(|| {
            // SAFETY: the PCI core keeps `pdev` valid for the whole probe callback.
            let dev = unsafe { Device::from_raw(pdev) };
            // SAFETY: `id` points into `T::ID_TABLE`, which is 'static.
            let id = unsafe { &*id };
            let data = T::probe(dev, id)?;
            // SAFETY: ownership moves to the device's driver data and comes back, pinned, in
            // `remove_callback`; nothing moves it in between.
            let ptr = KBox::into_raw(unsafe { Pin::into_inner_unchecked(data) });
            // SAFETY: `pdev` is valid; the driver data is ours while the device is bound.
            unsafe { bindings::pci_set_drvdata(pdev, ptr.cast()) };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the PCI core with a device whose probe succeeded.
    unsafe extern "C" fn remove_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: `pdev` is valid during remove.
        let ptr = unsafe { bindings::pci_get_drvdata(pdev) }.cast::<T>();
        if !ptr.is_null() {
            // SAFETY: `ptr` came from `KBox::into_raw` in `probe_callback` and is reclaimed
            // exactly once, here; the data was pinned, and is dropped in place.
            drop(unsafe { Pin::new_unchecked(KBox::from_raw(ptr)) });
            // SAFETY: as above.
            unsafe { bindings::pci_set_drvdata(pdev, core::ptr::null_mut()) };
        }
    }
}

/// A registered PCI driver; unregistered (unbinding every device) on drop.
///
/// # Invariants
///
/// `drv` was registered with `__pci_register_driver` and stays at its address until dropped.
pub struct Registration<T: Driver> {
    drv: Pin<KBox<Opaque<bindings::pci_driver>>>,
    _t: PhantomData<T>,
}

impl<T: Driver> Registration<T> {
    /// Registers `T` for `module`.
    pub fn new(module: &'static ThisModule) -> Result<Self> {
        if T::ID_TABLE.last().map(|e| e.vendor) != Some(0) {
            return Err(EINVAL);
        }
        let drv = KBox::pin(Opaque::<bindings::pci_driver>::uninit(), GFP_KERNEL)?;
        let raw = drv.get();
        // SAFETY: `raw` is a fresh allocation of the right size; all-zero is a valid
        // `pci_driver` (null pointers, no callbacks), then the fields we use are filled in.
        unsafe {
            raw.write(core::mem::zeroed());
            (*raw).name = T::NAME.as_char_ptr();
            (*raw).id_table = T::ID_TABLE.as_ptr();
            (*raw).probe = Some(Adapter::<T>::probe_callback);
            (*raw).remove = Some(Adapter::<T>::remove_callback);
        }
        // SAFETY: `raw` is initialised and pinned in its box for as long as it is registered;
        // `module` is this module. CAST: the kernel crate's and our bindings of `struct module`
        // are the same C type.
        to_result(unsafe {
            bindings::__pci_register_driver(raw, module.as_ptr().cast(), T::NAME.as_char_ptr())
        })?;
        // INVARIANT: registered above.
        Ok(Registration {
            drv,
            _t: PhantomData,
        })
    }
}

impl<T: Driver> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered, by the type invariant.
        unsafe { bindings::pci_unregister_driver(self.drv.get()) }
    }
}

// SAFETY: after registration the PCI core owns the `pci_driver` contents and does its own
// locking; `Registration` only passes its address back to `pci_unregister_driver`.
unsafe impl<T: Driver> Send for Registration<T> {}
// SAFETY: `&Registration` allows nothing.
unsafe impl<T: Driver> Sync for Registration<T> {}
