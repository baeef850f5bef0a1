// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-hostile`: a hostile peer for the VM tests. It maps a live ivshmem-net region file
//! and, for a given time, writes garbage into it while guests use it: random bytes anywhere
//! (header, control blocks, ring indices, descriptors, frame data), and crafted values aimed at
//! each check a peer makes (indices a ring ahead or behind, descriptors out of their data area,
//! offload fields past the frame, a forged control block claiming RUN, a wrong magic, ...).
//!
//! The guests must survive (no crash, no hang, no warning splat) and recover once it stops.
//! The tool is only a writer: it judges nothing, it reports what it wrote.
//!
//! - [`cli`]: the command line.
//! - [`rng`]: the seedable generator every choice comes from, so a seed reproduces a storm.
//! - [`target`]: the geometry read once at the start, the peers present then, every ring.
//! - [`attack`]: the attack kinds.
//! - [`storm`]: pacing, modes, counts, the summary.
//! - [`peer`]: a peer played by the protocol, for the two below.
//! - [`forge`]: `--forge-mac-of`, a forger that links with the peers under another's MAC.
//! - [`hog`]: `--hog`, a peer that links and beats but never consumes what it is sent.

pub mod attack;
pub mod cli;
pub mod forge;
pub mod hog;
pub mod peer;
pub mod rng;
pub mod storm;
pub mod target;
