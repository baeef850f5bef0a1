// SPDX-License-Identifier: GPL-2.0

//! ivshmem-net: a network driver for QEMU's ivshmem device (PCI 1af4:1110).
//!
//! Guests on one host that share an ivshmem region exchange Ethernet frames through lock-free
//! rings in that memory instead of a virtual NIC and a host bridge.
//!
//! - [`driver`]: binding the PCI device, mapping its BARs, joining the shared region.
//! - [`netdev`]: the network device: transmit, NAPI receive, polling, links with peers.
//! - [`stats`]: the counters behind `ethtool -S`; [`params`]: the module parameters.
//! - [`protocol`]: the wire protocol, `core`-only safe Rust that the host crate
//!   `userspace-tools/protocol` compiles and tests too: the shared-memory [`protocol::layout`],
//!   the frame [`protocol::ring`], and the control blocks and handshake of [`protocol::link`].
//! - [`ext`]: the kernel support layer in `rust/`, the only code with `unsafe`.

// `try_pin_init!` of `netdev::Net` expands deeper than the default limit of 128.
#![recursion_limit = "256"]

#[path = "../rust/lib.rs"]
pub mod ext;

pub mod protocol;

mod driver;
mod netdev;
mod params;
mod ratelimit;
mod regs;
mod stats;

use kernel::prelude::*;

module! {
    type: IvshmemNetModule,
    name: "ivshmem_net",
    author: "ivshmem-net developers",
    description: "Network driver over QEMU ivshmem shared memory",
    license: "GPL",
}

struct IvshmemNetModule {
    _pci: ext::pci::Registration<driver::IvshmemNet>,
}

impl kernel::Module for IvshmemNetModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        // Refuse bad parameters before binding anything.
        params::Params::get()?;
        Ok(IvshmemNetModule {
            _pci: ext::pci::Registration::new(module)?,
        })
    }
}
