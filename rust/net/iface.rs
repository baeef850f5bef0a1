// SPDX-License-Identifier: GPL-2.0

//! Other network devices, for transparent mode: [`iface`] reads what a regular interface looks
//! like right now (index, MTU, state, MAC, first addresses), [`neighbour`] what it knows of
//! one address on its segment.

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

/// An IPv4 or IPv6 address, bytes in network order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAddr {
    /// IPv4.
    V4([u8; 4]),
    /// IPv6.
    V6([u8; 16]),
}

/// What [`neighbour`] found out about an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neighbour {
    /// The address is inside one of the device's prefixes (IPv4 address and mask, IPv6
    /// address and prefix length).
    pub on_link: bool,
    /// The MAC a valid entry (`NUD_VALID`: reachable, stale, delayed, probing, permanent) of
    /// the device's neighbour table (ARP or NDP) maps the address to.
    pub mac: Option<[u8; 6]>,
}

/// What the device with index `ifindex` in the initial namespace knows of `addr` now (under
/// RCU; may be stale a moment later). `ENODEV` if there is no such device. Any context
/// without `in_use`.
///
/// `in_use`: we are about to send by the entry, so treat it as sending through it does
/// (`neigh_event_send`): mark it used, which keeps it from being collected, and re-check a
/// stale one (DELAY, PROBE, then FAILED if its owner does not answer on the device); no MAC
/// if it cannot be sent through now. Takes the entry's lock with bottom halves disabled, as
/// the output path right after a post-routing hook does: not in hard interrupt context.
pub fn neighbour(ifindex: i32, addr: IpAddr, in_use: bool) -> Result<Neighbour> {
    // SAFETY: all-zero is a valid `ivnet_neigh`.
    let mut out: bindings::ivnet_neigh = unsafe { core::mem::zeroed() };
    let (ptr, len) = match &addr {
        IpAddr::V4(a) => (a.as_ptr(), a.len()),
        IpAddr::V6(a) => (a.as_ptr(), a.len()),
    };
    // SAFETY: `ptr` points to `len` bytes of `addr`, alive for the call; `out` is a local the
    // helper fills in.
    kernel::error::to_result(unsafe {
        bindings::ivnet_iface_neigh(ifindex, ptr, len as u32, in_use, &mut out)
    })?;
    Ok(Neighbour {
        on_link: out.on_link,
        mac: out.has_mac.then_some(out.mac),
    })
}
