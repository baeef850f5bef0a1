// SPDX-License-Identifier: GPL-2.0

//! The ivshmem-net wire protocol on the host: the very source the kernel module compiles, plus
//! regions to run it on.
//!
//! [`layout`], [`ring`], [`link`] and [`frame`] are `ivshmem-net/protocol/`, included here by path (its
//! `mod.rs` documents the protocol as a whole and its rules: `core` only, no `unsafe`, every
//! peer-written word read once and checked). This crate adds two [`layout::Region`]
//! implementations: [`HeapRegion`], plain memory for tests and examples, and [`MmapRegion`], a
//! shared mapping of a region file.
//!
//! # Examples
//!
//! ```
//! use ivshmem_net_protocol::layout::{attach, Attach, Geometry};
//! use ivshmem_net_protocol::HeapRegion;
//!
//! let g = Geometry::new(4 << 20, 2)?;
//! let region = HeapRegion::new(g.region_len as usize);
//! let a = attach(&region, g, 0x1234, || false)?;
//! assert_eq!(a.how, Attach::Initialised);
//! # Ok::<(), ivshmem_net_protocol::layout::Error>(())
//! ```

#[path = "../../../ivshmem-net/protocol/mod.rs"]
mod protocol;
mod region;

pub use protocol::{frame, layout, link, ring};
pub use region::{HeapRegion, MmapRegion};
