// SPDX-License-Identifier: GPL-2.0

//! Shared pieces of the `ivnet-rr` and `ring-bench` binaries: self-checking test frames and
//! latency summaries.

pub mod frame;
pub mod stats;
