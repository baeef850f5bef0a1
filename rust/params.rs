// SPDX-License-Identifier: GPL-2.0

//! Raw values of the module parameters declared in `params.c`. The driver validates them.

use super::bindings;
use kernel::str::CStr;

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

/// `poll_us=`.
pub fn poll_us() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_poll_us() }
}

/// `poll_idle_ms=`.
pub fn poll_idle_ms() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_poll_idle_ms() }
}

/// `queues=` (0: automatic).
pub fn queues() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_queues() }
}

/// `rx_threads=` (0 or 1).
pub fn rx_threads() -> u32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_rx_threads() }
}

/// `rx_spin=` (-1, 0 or 1).
pub fn rx_spin() -> i32 {
    // SAFETY: as in `id`.
    unsafe { bindings::ivnet_param_rx_spin() }
}

/// The number of online CPUs now (the default of `queues=` and of `rx_spin=`).
pub fn online_cpus() -> u32 {
    // SAFETY: reads the online CPU mask's weight; any context.
    unsafe { bindings::ivnet_online_cpus() }
}

/// `transparent=`: the interface name (empty: off).
pub fn transparent() -> &'static CStr {
    // SAFETY: a static string (or the empty literal) written only by the module loader,
    // before init, and freed only after the module is gone (`charp`, permission 0444: never
    // changed at runtime).
    unsafe { CStr::from_char_ptr(bindings::ivnet_param_transparent()) }
}
