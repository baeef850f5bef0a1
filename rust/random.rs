// SPDX-License-Identifier: GPL-2.0

//! The kernel's random number generator.

use super::bindings;

/// A random `u64` from `get_random_u64()`.
pub fn u64() -> u64 {
    // SAFETY: `get_random_u64` takes no arguments and may be called from any context.
    unsafe { bindings::get_random_u64() }
}

/// Fills `buf` with random bytes from `get_random_bytes()`.
pub fn fill(buf: &mut [u8]) {
    // SAFETY: `buf` is a valid, exclusively borrowed buffer of `buf.len()` bytes.
    unsafe { bindings::get_random_bytes(buf.as_mut_ptr().cast(), buf.len()) }
}
