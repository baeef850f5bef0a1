// SPDX-License-Identifier: GPL-2.0

//! Device-prefixed logging: `dev_info!`, `dev_warn!`, `dev_err!` over `_dev_info()` and
//! friends, formatting with Rust's `core::fmt` through the kernel's `%pA` specifier.

use super::{bindings, pci};
use core::fmt;

/// Log levels the macros below use.
#[derive(Clone, Copy)]
pub enum Level {
    /// `KERN_INFO`
    Info,
    /// `KERN_WARNING`
    Warn,
    /// `KERN_ERR`
    Err,
}

/// Prints `args` prefixed with the driver and device name (`ivshmem_net 0000:00:04.0: ...`).
pub fn dev_print(dev: &pci::Device, level: Level, args: fmt::Arguments<'_>) {
    let fmt = kernel::c_str!("%pA");
    let dev = dev.as_device_ptr();
    let args: *const fmt::Arguments<'_> = &args;
    // SAFETY: `dev` points to the live `struct device` of a bound PCI device (the invariant of
    // `pci::Device`); `fmt` is NUL-terminated and its one `%pA` consumes one pointer to a
    // `fmt::Arguments`, which `args` is and which outlives the call.
    unsafe {
        match level {
            Level::Info => bindings::_dev_info(dev, fmt.as_char_ptr(), args),
            Level::Warn => bindings::_dev_warn(dev, fmt.as_char_ptr(), args),
            Level::Err => bindings::_dev_err(dev, fmt.as_char_ptr(), args),
        }
    }
}

/// `dev_info!(dev, "fmt", args...)`; a newline is appended.
#[macro_export]
macro_rules! dev_info {
    ($dev:expr, $($arg:tt)*) => {
        $crate::ext::print::dev_print($dev, $crate::ext::print::Level::Info,
            format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `dev_warn!(dev, "fmt", args...)`; a newline is appended.
#[macro_export]
macro_rules! dev_warn {
    ($dev:expr, $($arg:tt)*) => {
        $crate::ext::print::dev_print($dev, $crate::ext::print::Level::Warn,
            format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `dev_err!(dev, "fmt", args...)`; a newline is appended.
#[macro_export]
macro_rules! dev_err {
    ($dev:expr, $($arg:tt)*) => {
        $crate::ext::print::dev_print($dev, $crate::ext::print::Level::Err,
            format_args!("{}\n", format_args!($($arg)*)))
    };
}
