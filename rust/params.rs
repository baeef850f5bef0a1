// SPDX-License-Identifier: GPL-2.0

//! Raw values of the module parameters declared in `params.c`. The driver validates them.

use super::bindings;

/// `id=`: the peer id to use, or -1 for automatic.
pub fn id() -> i32 {
    // SAFETY: reads a static `int` written only by the module loader, before init.
    unsafe { bindings::ivnet_param_id() }
}

/// `max_peers=`.
pub fn max_peers() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_max_peers() }
}

/// `poll_ms=`.
pub fn poll_ms() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_poll_ms() }
}

/// `poll_idle_ms=`.
pub fn poll_idle_ms() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_poll_idle_ms() }
}
