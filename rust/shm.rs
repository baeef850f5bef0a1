// SPDX-License-Identifier: GPL-2.0

//! The shared-memory BAR, mapped write-back, with the bounds-checked accessor the layout code
//! uses ([`crate::protocol::layout::Region`]).
//!
//! Other VMs write this memory at any time. Nothing here trusts its contents: it only moves
//! words and bytes between the region and local variables, after checking every offset
//! against the mapping's length. Interpreting the values is the layout code's job.

use super::bindings;
use crate::protocol::layout::{check_range, Error, Region};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

/// A `memremap`ed BAR, unmapped on drop.
///
/// # Invariants
///
/// `addr` maps `len` bytes of ordinary (write-back) memory until this is dropped; `addr` is
/// page-aligned.
pub struct SharedMem {
    addr: NonNull<u8>,
    len: usize,
}

impl SharedMem {
    /// Wraps a mapping made by `memremap` (see [`super::pci::Device::memremap`]).
    ///
    /// # Safety
    ///
    /// `addr` must be the address `memremap` returned for a mapping of `len` bytes of ordinary
    /// memory, page-aligned, that nothing else unmaps: the result owns the mapping and unmaps
    /// it on drop.
    pub(crate) unsafe fn new(addr: NonNull<u8>, len: usize) -> Self {
        // INVARIANT: by the function's safety requirement.
        SharedMem { addr, len }
    }

    /// # Safety
    ///
    /// `off` must have been checked with `check_range(self.len, off, 4, true)`.
    unsafe fn word(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is 4-aligned and `off + 4 <= len` (caller), inside the mapping, which
        // lives as long as `&self`; shared words are only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.addr.as_ptr().add(off).cast()) }
    }
}

impl SharedMem {
    /// A pointer to the `len` bytes at `off`, after checking they are inside the mapping, for
    /// kernel functions that copy into or out of memory (see `net::SkBuff::copy_to`).
    pub(crate) fn range_ptr(&self, off: usize, len: usize) -> Result<*mut u8, Error> {
        check_range(self.len, off, len, false)?;
        // SAFETY: `off + len <= self.len` (checked), inside the mapping.
        Ok(unsafe { self.addr.as_ptr().add(off) })
    }
}

impl Region for SharedMem {
    fn len(&self) -> usize {
        self.len
    }

    fn load(&self, off: usize) -> Result<u32, Error> {
        check_range(self.len, off, 4, true)?;
        // SAFETY: checked above.
        Ok(unsafe { self.word(off) }.load(Ordering::Acquire))
    }

    fn store(&self, off: usize, val: u32) -> Result<(), Error> {
        check_range(self.len, off, 4, true)?;
        // SAFETY: checked above.
        unsafe { self.word(off) }.store(val, Ordering::Release);
        Ok(())
    }

    fn compare_exchange(&self, off: usize, cur: u32, new: u32) -> Result<Result<u32, u32>, Error> {
        check_range(self.len, off, 4, true)?;
        // SAFETY: checked above.
        Ok(unsafe { self.word(off) }.compare_exchange(
            cur,
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        ))
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), Error> {
        check_range(self.len, off, buf.len(), false)?;
        // SAFETY: the source range is inside the mapping (checked); `buf` is a distinct local
        // buffer. A peer writing the source concurrently can only change the bytes we copy.
        unsafe {
            core::ptr::copy_nonoverlapping(self.addr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<(), Error> {
        check_range(self.len, off, buf.len(), false)?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            core::ptr::copy_nonoverlapping(buf.as_ptr(), self.addr.as_ptr().add(off), buf.len())
        };
        Ok(())
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: mapped by `memremap`, by the type invariant, and unmapped only here.
        unsafe { bindings::memunmap(self.addr.as_ptr().cast()) }
    }
}

// SAFETY: the mapping is plain memory usable from any CPU; all access goes through atomics or
// byte copies of checked ranges.
unsafe impl Send for SharedMem {}
// SAFETY: as above.
unsafe impl Sync for SharedMem {}
