// SPDX-License-Identifier: GPL-2.0

//! Other network devices, for transparent mode: [`iface`] reads what a regular interface looks
//! like right now (index, MTU, state, MAC, first addresses).

use super::bindings;
use kernel::prelude::*;

/// What [`iface`] found out about a regular interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iface {
    /// Its index.
    pub ifindex: i32,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is up and running.
    pub up: bool,
    /// Its MAC address (zero if it is not Ethernet).
    pub mac: [u8; 6],
    /// Its first IPv4 address.
    pub v4: Option<[u8; 4]>,
    /// Its first usable global IPv6 address.
    pub v6: Option<[u8; 16]>,
}

/// Looks up the interface called `name` in the initial namespace and reads its index, MTU,
/// state, MAC, first IPv4 address and first global IPv6 address (under RCU and the IPv6
/// device's lock; a snapshot that may be stale a moment later). `ENODEV` if there is none.
/// Any context.
pub fn iface(name: &CStr) -> Result<Iface> {
    // SAFETY: all-zero is a valid `ivnet_iface`.
    let mut out: bindings::ivnet_iface = unsafe { core::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated; `out` is a local the helper fills in.
    kernel::error::to_result(unsafe { bindings::ivnet_iface_read(name.as_char_ptr(), &mut out) })?;
    Ok(Iface {
        ifindex: out.ifindex,
        mtu: out.mtu,
        up: out.up,
        mac: out.mac,
        v4: out.has_v4.then_some(out.v4),
        v6: out.has_v6.then_some(out.v6),
    })
}
