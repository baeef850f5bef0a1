// SPDX-License-Identifier: GPL-2.0

//! The kernel support layer in `rust/`: what 6.12's `kernel` crate lacks and ivshmem-net needs.
//!
//! Safe, RfL-style wrappers over bindings generated at build time from `bindings_helper.h`
//! (see `gen-bindings.sh`), with C helpers in `helpers/`. This directory is the only place in
//! the module with `unsafe`; the driver in `ivshmem-net/` is written against these types.
//!
//! The driver crate mounts it as `crate::ext` (`#[path = "../rust/lib.rs"] pub mod ext;`), so
//! `ext` in a path and "the kernel support layer in `rust/`" in prose name the same thing.

pub mod bindings;
pub mod errno;
pub mod io;
pub mod net;
pub mod netfilter;
pub mod params;
pub mod pci;
pub mod print;
pub mod random;
pub mod shm;
pub mod sync;
pub mod time;
