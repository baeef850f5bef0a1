// SPDX-License-Identifier: GPL-2.0

//! Sleeping and the jiffies clock.

use super::bindings;

/// Sleeps for at least `ms` milliseconds. Must be called from process context.
pub fn msleep(ms: u32) {
    // SAFETY: `msleep` has no preconditions beyond a context that may sleep, which callers of
    // this function (probe, remove, workqueues) provide.
    unsafe { bindings::msleep(ms) }
}
