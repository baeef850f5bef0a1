// SPDX-License-Identifier: GPL-2.0

//! Sleeping and the jiffies clock.

use super::bindings;

/// Sleeps for at least `ms` milliseconds. Must be called from process context.
pub fn msleep(ms: u32) {
    // SAFETY: `msleep` has no preconditions beyond a context that may sleep, which callers of
    // this function (probe, remove, workqueues) provide.
    unsafe { bindings::msleep(ms) }
}

/// The jiffies clock now.
pub fn jiffies() -> usize {
    // SAFETY: `jiffies` is a kernel variable read without locks by design; on 64-bit it is
    // the whole `jiffies_64`.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(bindings::jiffies)) }
}

/// Milliseconds since boot, from the jiffies clock (monotonic, tick resolution).
pub fn now_ms() -> u64 {
    // SAFETY: a pure conversion.
    unsafe { bindings::jiffies64_to_msecs(jiffies() as u64) }
}

/// `ms` milliseconds in jiffies, rounded up.
pub fn ms_to_jiffies(ms: u32) -> usize {
    // SAFETY: a pure conversion.
    unsafe { bindings::__msecs_to_jiffies(ms) as usize }
}
