// SPDX-License-Identifier: GPL-2.0

//! Transparent mode: the addresses of its regular interface a peer publishes in its control
//! block (written by its owner as a sequence lock, [`super::Own::publish_addrs`]), and the
//! acceptance each receiver writes back for them. Read once, checked, then used.

use super::super::frame::IpVersion;
use super::super::layout::{Geometry, Region, MAX_PEERS};
use super::{ctrl, feature};

/// Which addresses a transparent block carries (its `TP_FLAGS` word).
pub mod addr_flags {
    /// The MAC and IPv4 address are valid.
    pub const V4: u32 = 1 << 0;
    /// The MAC and IPv6 address are valid.
    pub const V6: u32 = 1 << 1;
}

/// The addresses of a peer's regular interface, published in its control block for
/// transparent mode: frames for these go through the rings instead of that interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Addrs {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// Its first IPv4 address, if any.
    pub v4: Option<[u8; 4]>,
    /// Its first global IPv6 address, if any.
    pub v6: Option<[u8; 16]>,
}

impl Addrs {
    /// Whether there is no IP address to route by.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// These addresses with every one a peer must not claim removed: a MAC that is zero or
    /// multicast removes everything; an IPv4 address that is 0.0.0.0/8, loopback, multicast,
    /// reserved or broadcast, and an IPv6 address that is unspecified, loopback, multicast,
    /// link-local or IPv4-mapped, are dropped. What is left can only ever steer our own
    /// frames, never anybody else's.
    pub fn sanitized(self) -> Addrs {
        if self.mac == [0; 6] || self.mac[0] & 1 != 0 {
            return Addrs::default();
        }
        let v4 = self.v4.filter(|a| !matches!(a[0], 0 | 127 | 224..=255));
        let v6 = self.v6.filter(|a| {
            let zero_prefix = a[..10].iter().all(|&b| b == 0);
            let mapped = zero_prefix && a[10] == 0xff && a[11] == 0xff;
            let unspec_or_loop = a[..15].iter().all(|&b| b == 0) && a[15] <= 1;
            let multicast = a[0] == 0xff;
            let link_local = a[0] == 0xfe && a[1] & 0xc0 == 0x80;
            !(mapped || unspec_or_loop || multicast || link_local)
        });
        Addrs {
            mac: self.mac,
            v4,
            v6,
        }
        .nonempty_or_default()
    }

    fn nonempty_or_default(self) -> Addrs {
        if self.is_empty() {
            Addrs::default()
        } else {
            self
        }
    }

    /// Whether `self` and `other` claim an address in common (MAC, IPv4 or IPv6).
    pub fn overlaps(&self, other: &Addrs) -> bool {
        (!self.is_empty() && !other.is_empty() && self.mac == other.mac)
            || (self.v4.is_some() && self.v4 == other.v4)
            || (self.v6.is_some() && self.v6 == other.v6)
    }
}

/// What a peer published in its transparent block, read once and consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The addresses, [`Addrs::sanitized`] and not empty.
    pub addrs: Addrs,
    /// The block's sequence word when it held them (even, never 0): what a receiver that
    /// accepts them writes into its `accept_v4`/`accept_v6` word for the peer.
    pub seq: u32,
}

/// Reads peer `j`'s transparent block, once, as a sequence-lock reader: `None` when `j` does
/// not announce [`feature::TRANSPARENT`], has never published, is rewriting the block, or
/// published nothing usable (see [`Addrs::sanitized`]).
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::layout::{attach, Geometry};
/// use ivshmem_net_protocol::link::{feature, read_addrs, Addrs, Own};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let mut own = Own::new(&g, 0)?;
/// own.attach(&region, [2, 0, 0, 0, 0, 1], 1500)?;
/// own.set_features(&region, feature::TRANSPARENT)?;
/// let a = Addrs { mac: [2, 0, 0, 0, 0, 9], v4: Some([10, 0, 0, 1]), v6: None };
/// own.publish_addrs(&region, &a)?;
/// let p = read_addrs(&region, &g, 0).expect("published");
/// assert_eq!((p.addrs, p.seq), (a, own.published_seq()));
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
pub fn read_addrs<R: Region + ?Sized>(r: &R, g: &Geometry, j: u32) -> Option<Published> {
    let base = g.ctrl_offset(j).ok()?;
    if r.load(base + ctrl::FEATURES).ok()? & feature::TRANSPARENT == 0 {
        return None;
    }
    let seq = r.load(base + ctrl::TP_SEQ).ok()?;
    if seq == 0 || seq & 1 != 0 {
        return None;
    }
    let flags = r.load(base + ctrl::TP_FLAGS).ok()?;
    let lo = r.load(base + ctrl::TP_MAC_LO).ok()?.to_le_bytes();
    let hi = r.load(base + ctrl::TP_MAC_HI).ok()?.to_le_bytes();
    let v4 = r.load(base + ctrl::TP_V4).ok()?.to_le_bytes();
    let mut v6 = [0u8; 16];
    for (k, chunk) in v6.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&r.load(base + ctrl::TP_V6 + 4 * k).ok()?.to_le_bytes());
    }
    if r.load(base + ctrl::TP_SEQ).ok()? != seq {
        return None;
    }
    let a = Addrs {
        mac: [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]],
        v4: (flags & addr_flags::V4 != 0).then_some(v4),
        v6: (flags & addr_flags::V6 != 0).then_some(v6),
    }
    .sanitized();
    (!a.is_empty()).then_some(Published { addrs: a, seq })
}

/// Which claims of one peer the owner of a control block accepts: for each IP version, the
/// sequence word of the peer's transparent block it accepted (0: none). See the module
/// documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// `accept_v4[j]`.
    pub v4: u32,
    /// `accept_v6[j]`.
    pub v6: u32,
}

impl Accepted {
    /// Whether this accepts the claim for IP version `version` of the block its peer
    /// published with sequence word `seq` (0, or an odd word, is never accepted).
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::frame::IpVersion;
    /// use ivshmem_net_protocol::link::Accepted;
    /// let a = Accepted { v4: 6, v6: 0 };
    /// assert!(a.covers(6, IpVersion::V4));
    /// assert!(!a.covers(6, IpVersion::V6));
    /// assert!(!a.covers(8, IpVersion::V4));
    /// assert!(!Accepted::default().covers(0, IpVersion::V4));
    /// ```
    pub fn covers(&self, seq: u32, version: IpVersion) -> bool {
        let word = match version {
            IpVersion::V4 => self.v4,
            IpVersion::V6 => self.v6,
        };
        seq != 0 && seq & 1 == 0 && word == seq
    }
}

/// Reads, once, which claims of peer `me` peer `k` accepts (its `accept_v4[me]` and
/// `accept_v6[me]`). Anything unreadable reads as nothing accepted.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::IpVersion;
/// use ivshmem_net_protocol::layout::{attach, Geometry};
/// use ivshmem_net_protocol::link::{read_accepted, Accepted, Own};
/// use ivshmem_net_protocol::HeapRegion;
///
/// let g = Geometry::new(4 << 20, 2)?;
/// let region = HeapRegion::new(g.region_len as usize);
/// attach(&region, g, 1, || false)?;
/// let mut own = Own::new(&g, 1)?;
/// own.attach(&region, [2, 0, 0, 0, 0, 2], 1500)?;
/// assert_eq!(read_accepted(&region, &g, 1, 0), Accepted::default());
/// // Peer 1 accepts the IPv4 claim of peer 0's block with sequence word 4.
/// own.accept(&region, 0, Accepted { v4: 4, v6: 0 })?;
/// assert!(read_accepted(&region, &g, 1, 0).covers(4, IpVersion::V4));
/// # Ok::<(), ivshmem_net_protocol::layout::Error>(())
/// ```
pub fn read_accepted<R: Region + ?Sized>(r: &R, g: &Geometry, k: u32, me: u32) -> Accepted {
    let Ok(base) = g.ctrl_offset(k) else {
        return Accepted::default();
    };
    if me >= g.max_peers || me >= MAX_PEERS {
        return Accepted::default();
    }
    let word = |off: usize| r.load(base + off + 4 * me as usize).unwrap_or(0);
    Accepted {
        v4: word(ctrl::TP_ACCEPT_V4),
        v6: word(ctrl::TP_ACCEPT_V6),
    }
}

/// The words of a transparent-mode address block but its sequence word, as
/// (offset in the control block, value).
pub(super) fn addr_words(a: &Addrs) -> [(usize, u32); 8] {
    let flags = if a.v4.is_some() { addr_flags::V4 } else { 0 }
        | if a.v6.is_some() { addr_flags::V6 } else { 0 };
    let (m, v4, v6) = (a.mac, a.v4.unwrap_or_default(), a.v6.unwrap_or_default());
    let v6w =
        |k: usize| u32::from_le_bytes([v6[4 * k], v6[4 * k + 1], v6[4 * k + 2], v6[4 * k + 3]]);
    [
        (ctrl::TP_FLAGS, flags),
        (
            ctrl::TP_MAC_LO,
            u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
        ),
        (ctrl::TP_MAC_HI, u32::from_le_bytes([m[4], m[5], 0, 0])),
        (ctrl::TP_V4, u32::from_le_bytes(v4)),
        (ctrl::TP_V6, v6w(0)),
        (ctrl::TP_V6 + 4, v6w(1)),
        (ctrl::TP_V6 + 8, v6w(2)),
        (ctrl::TP_V6 + 12, v6w(3)),
    ]
}
