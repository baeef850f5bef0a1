// SPDX-License-Identifier: GPL-2.0

//! The ivshmem-net wire protocol: how peers lay out a shared region, move frames through it and
//! bring links up and down.
//!
//! Everything two peers agree on lives here, and nothing else does:
//!
//! - [`layout`]: the region's header, its geometry (where the control blocks and rings are),
//!   setting it up or joining it ([`layout::attach`]), claiming a peer id
//!   ([`layout::claim_slot`]), and the [`layout::Region`] trait every access goes through.
//! - [`ring`]: the single-producer, single-consumer frame ring between two peers, with its
//!   memory ordering and event-index notification suppression.
//! - [`link`]: each peer's control block and the link handshake, a pure function of what both
//!   sides published ([`link::decide_with`]).
//! - [`frame`]: what a frame may be: Ethernet framing, the MTU and offload limits a ring
//!   allows, and transparent mode's checks of a frame's IP addresses.
//!
//! # Rules
//!
//! - `core` only: no `std`, `alloc` or `kernel`, so the same source builds in both places below.
//! - No `unsafe`. Shared memory is reached only through a [`layout::Region`], a bounds-checked
//!   accessor implemented over the kernel's mapping of BAR2 (`rust/shm.rs`) and, in the host
//!   crate, over ordinary memory (`HeapRegion`) and over an `mmap` of a region file
//!   (`MmapRegion`).
//! - Compiled twice: into the kernel module (`crate::protocol`, declared in
//!   `ivshmem-net/ivshmem_net.rs`) and, by `#[path]`, into the host crate `ivshmem-net-protocol`
//!   (`userspace-tools/protocol`), where it is unit-, property-, hostile-peer- and loom-tested
//!   and where its doc examples run. The files refer to each other as `super::layout` and so on
//!   (those in `layout/`, `link/` and `ring/` as `super::super::layout`), which works at both
//!   places.
//! - Everything a peer writes is hostile: each word is read once into a local, checked against
//!   what it can legitimately be, and only the local is used afterwards. What cannot be right is
//!   an [`layout::Error`], never trusted and never a panic.

pub mod frame;
pub mod layout;
pub mod link;
pub mod ring;
