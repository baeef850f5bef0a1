// SPDX-License-Identifier: GPL-2.0

//! Register access to a mapped memory BAR (`pci_iomap`), bounds-checked.

use super::{bindings, pci};
use core::ptr::NonNull;
use kernel::{prelude::*, types::ARef};

/// An `__iomem` mapping of a BAR, unmapped on drop.
///
/// # Invariants
///
/// `addr` maps `len` bytes of a BAR of `dev` until this is dropped.
pub struct IoMem {
    dev: ARef<pci::Device>,
    addr: NonNull<core::ffi::c_void>,
    len: usize,
}

impl IoMem {
    /// Wraps a mapping made by `pci_iomap` (see [`pci::Device::iomap`]).
    ///
    /// # Safety
    ///
    /// `addr` must be the address `pci_iomap` returned for a BAR of `dev` that is `len` bytes
    /// long, and nothing else may unmap it: the result owns the mapping and unmaps it on drop.
    pub(crate) unsafe fn new(
        dev: ARef<pci::Device>,
        addr: NonNull<core::ffi::c_void>,
        len: usize,
    ) -> Self {
        // INVARIANT: by the function's safety requirement.
        IoMem { dev, addr, len }
    }

    fn checked(&self, off: usize) -> Result<*mut core::ffi::c_void> {
        if off % 4 != 0 || off.checked_add(4).map_or(true, |end| end > self.len) {
            return Err(EINVAL);
        }
        // SAFETY: `off + 4 <= len`, so the result stays inside the mapping.
        Ok(unsafe { self.addr.as_ptr().cast::<u8>().add(off).cast() })
    }

    /// Reads the 32-bit register at `off`.
    pub fn read32(&self, off: usize) -> Result<u32> {
        let p = self.checked(off)?;
        // SAFETY: `p` is an aligned register inside the mapping (checked).
        Ok(unsafe { bindings::ioread32(p) })
    }

    /// Writes the 32-bit register at `off`.
    pub fn write32(&self, off: usize, val: u32) -> Result {
        let p = self.checked(off)?;
        // SAFETY: as in `read32`.
        unsafe { bindings::iowrite32(val, p) };
        Ok(())
    }
}

impl Drop for IoMem {
    fn drop(&mut self) {
        // SAFETY: mapped by `pci_iomap` on this device, by the type invariant.
        unsafe { bindings::pci_iounmap(self.dev.as_raw(), self.addr.as_ptr()) }
    }
}

// SAFETY: MMIO accessors may be called from any thread.
unsafe impl Send for IoMem {}
// SAFETY: as above; each access is a single `ioread32`/`iowrite32`.
unsafe impl Sync for IoMem {}
