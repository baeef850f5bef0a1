// SPDX-License-Identifier: GPL-2.0

//! What a frame in a ring may be: Ethernet framing, the MTU and segmentation-offload limits a
//! ring's size allows, and the checks transparent mode makes on the IP header of a frame (its
//! destination, and whether its source is what the sending peer published).
//!
//! Pure functions of their arguments, shared like the rest of the protocol with the host
//! crate, where `tests/frame.rs` covers them.

use super::link::Addrs;

/// Ethernet header length.
pub const ETH_HLEN: u32 = 14;
/// Room for one VLAN tag on top of the MTU.
pub const VLAN_HLEN: u32 = 4;
/// Smallest MTU (IPv4's minimum).
pub const MIN_MTU: u32 = 68;
/// Largest MTU when the ring allows it.
pub const MAX_MTU: u32 = 65535;
/// MTU a new device starts with.
pub const DEFAULT_MTU: u32 = 1500;
/// Largest IP packet the stack hands over for segmentation offload.
pub const GSO_MAX: u32 = 65536;
/// Ethertype of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Ethertype of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;

/// The largest MTU a ring whose largest frame is `max_frame` bytes can carry.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{max_mtu, MAX_MTU};
/// assert_eq!(max_mtu(1518), 1500);
/// assert_eq!(max_mtu(1 << 20), MAX_MTU);
/// assert_eq!(max_mtu(10), 0);
/// ```
pub fn max_mtu(max_frame: u32) -> u32 {
    max_frame.saturating_sub(ETH_HLEN + VLAN_HLEN).min(MAX_MTU)
}

/// The largest segmentation-offload frame (IP packet) to accept from the stack: 64 KiB, or
/// less if the ring's largest frame is smaller.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::tso_max;
/// assert_eq!(tso_max(128 * 1024), 65536);
/// assert_eq!(tso_max(32 * 1024), 32 * 1024 - 19);
/// ```
pub fn tso_max(max_frame: u32) -> u32 {
    max_frame
        .saturating_sub(ETH_HLEN + VLAN_HLEN + 1)
        .min(GSO_MAX)
}

/// The largest frame the stack may hand us at `mtu`: MTU-sized, or a segmentation-offload
/// frame of up to [`tso_max`] bytes plus the Ethernet header; never more than the ring's
/// largest frame `max_frame`.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::max_len;
/// assert_eq!(max_len(1500, 256 * 1024), 65536 + 18);
/// assert_eq!(max_len(9000, 4096), 4096);
/// ```
pub fn max_len(mtu: u32, max_frame: u32) -> u32 {
    let mtu_frame = mtu.saturating_add(ETH_HLEN + VLAN_HLEN);
    let gso_frame = tso_max(max_frame) + ETH_HLEN + VLAN_HLEN;
    mtu_frame.max(gso_frame).min(max_frame)
}

/// Whether a frame of `len` bytes fits a receiver whose MTU is `mtu`: a plain frame with its
/// Ethernet header and one VLAN tag, or, for a segmentation-offload frame (`gso_size` given),
/// each of the segments it will be cut into.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::fits_mtu;
/// assert!(fits_mtu(1518, None, 1500));
/// assert!(!fits_mtu(1519, None, 1500));
/// assert!(fits_mtu(65000, Some(1448), 1500));
/// assert!(!fits_mtu(65000, Some(8948), 1500));
/// ```
pub fn fits_mtu(len: u32, gso_size: Option<u16>, mtu: u32) -> bool {
    match gso_size {
        Some(size) => u32::from(size) <= mtu,
        None => len <= mtu.saturating_add(ETH_HLEN + VLAN_HLEN),
    }
}

/// Smallest segment size (`gso_size`) of a segmentation-offload frame we accept: the
/// kernel's `TCP_MIN_GSO_SIZE` (`include/net/tcp.h`: `TCP_MIN_SND_MSS` 48 less
/// `MAX_TCP_OPTION_SPACE` 40), the smallest segment TCP makes and the one the stack's limits
/// are built on (`GSO_MAX_SEGS * TCP_MIN_GSO_SIZE >= GSO_MAX_SIZE`, asserted in
/// `virtio_net_hdr_to_skb`, which raises a smaller TCP `gso_size` to it and refuses 0).
pub const MIN_GSO_SIZE: u16 = 8;

/// What to do with a received frame, by its length and segmentation offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// Within our limits: take it.
    Accept,
    /// Without segmentation offload, longer than our MTU with an Ethernet header and one VLAN
    /// tag.
    OverMtu,
    /// With segmentation offload, longer than the largest such frame we advertise
    /// ([`max_len`]).
    OverGsoMax,
    /// With segmentation offload, a segment size below [`MIN_GSO_SIZE`] (0 included).
    GsoSizeTooSmall,
}

/// Whether to accept a received frame of `len` bytes, with segmentation-offload type
/// `gso_type` (0 for none) and segment size `gso_size`, on a device whose MTU is `mtu` and
/// whose ring carries frames of up to `max_frame` bytes. Anything but
/// [`RxVerdict::Accept`] is dropped and counted as oversize: larger than the stack would ever
/// have handed the sending peer for us, or cut into more segments than the stack allows.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{rx_verdict, RxVerdict};
/// let ring = 256 * 1024;
/// assert_eq!(rx_verdict(1518, 0, 0, 1500, ring), RxVerdict::Accept);
/// assert_eq!(rx_verdict(1519, 0, 0, 1500, ring), RxVerdict::OverMtu);
/// assert_eq!(rx_verdict(65536 + 18, 1, 1448, 1500, ring), RxVerdict::Accept);
/// assert_eq!(rx_verdict(65536 + 19, 1, 1448, 1500, ring), RxVerdict::OverGsoMax);
/// assert_eq!(rx_verdict(9000, 1, 0, 1500, ring), RxVerdict::GsoSizeTooSmall);
/// assert_eq!(rx_verdict(9000, 1, 7, 1500, ring), RxVerdict::GsoSizeTooSmall);
/// ```
pub fn rx_verdict(len: u32, gso_type: u8, gso_size: u16, mtu: u32, max_frame: u32) -> RxVerdict {
    if gso_type == 0 {
        if len > mtu.saturating_add(ETH_HLEN + VLAN_HLEN) {
            RxVerdict::OverMtu
        } else {
            RxVerdict::Accept
        }
    } else if len > max_len(mtu, max_frame) {
        RxVerdict::OverGsoMax
    } else if gso_size < MIN_GSO_SIZE {
        RxVerdict::GsoSizeTooSmall
    } else {
        RxVerdict::Accept
    }
}

/// The kernel's segmentation-offload type bits (`SKB_GSO_*` in `include/linux/skbuff.h`,
/// 6.12) that a packet the transparent-mode hook diverts may carry: the ones a descriptor
/// expresses. `rust/helpers/skbuff.c` checks at build time that the kernel's values are
/// these.
pub mod skb_gso {
    /// `SKB_GSO_TCPV4`.
    pub const TCPV4: u32 = 1 << 0;
    /// `SKB_GSO_TCP_ECN`.
    pub const TCP_ECN: u32 = 1 << 2;
    /// `SKB_GSO_TCPV6`.
    pub const TCPV6: u32 = 1 << 4;
    /// `SKB_GSO_UDP_L4`.
    pub const UDP_L4: u32 = 1 << 17;
    /// All of the above.
    pub const CARRIED: u32 = TCPV4 | TCP_ECN | TCPV6 | UDP_L4;
}

/// Whether the transparent-mode hook may put a packet into a ring, by whether it is
/// encapsulated (a tunnel's packet, whose offsets and offloads concern inner headers) and its
/// segmentation-offload type (the kernel's `SKB_GSO_*` bits; 0 without): only plain packets
/// with no offload or TCPv4, TCPv6 (with ECN) or UDP segmentation, what a descriptor says.
/// Anything else (tunnels, GRE, SCTP, ESP, fraglists, partial or untrusted offloads) takes
/// the regular interface, whose driver knows what to do with it.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{hook_can_carry, skb_gso};
/// assert!(hook_can_carry(false, 0));
/// assert!(hook_can_carry(false, skb_gso::TCPV4 | skb_gso::TCP_ECN));
/// assert!(!hook_can_carry(true, 0));
/// assert!(!hook_can_carry(false, skb_gso::TCPV4 | 1 << 10)); // with SKB_GSO_UDP_TUNNEL
/// ```
pub fn hook_can_carry(encapsulated: bool, gso_type: u32) -> bool {
    !encapsulated && gso_type & !skb_gso::CARRIED == 0
}

/// The IP version of a packet, as the hook that sees it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// The destination address of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpDst {
    /// An IPv4 destination.
    V4([u8; 4]),
    /// An IPv6 destination.
    V6([u8; 16]),
}

impl IpDst {
    /// The destination of the IP packet at the start of `head`, if it is a packet of
    /// `version` with a whole fixed header.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::frame::{IpDst, IpVersion};
    /// let mut v4 = [0u8; 20];
    /// v4[0] = 0x45;
    /// v4[16..20].copy_from_slice(&[10, 0, 0, 2]);
    /// assert_eq!(IpDst::of(IpVersion::V4, &v4), Some(IpDst::V4([10, 0, 0, 2])));
    /// assert_eq!(IpDst::of(IpVersion::V6, &v4), None);
    /// assert_eq!(IpDst::of(IpVersion::V4, &v4[..19]), None);
    /// ```
    pub fn of(version: IpVersion, head: &[u8]) -> Option<Self> {
        match version {
            IpVersion::V4 if head.len() >= 20 && head[0] >> 4 == 4 => {
                head.get(16..20)?.try_into().ok().map(IpDst::V4)
            }
            IpVersion::V6 if head.len() >= 40 && head[0] >> 4 == 6 => {
                head.get(24..40)?.try_into().ok().map(IpDst::V6)
            }
            _ => None,
        }
    }

    /// Whether this is one of the addresses in `a`.
    pub fn is_for(&self, a: &Addrs) -> bool {
        match self {
            IpDst::V4(v4) => a.v4 == Some(*v4),
            IpDst::V6(v6) => a.v6 == Some(*v6),
        }
    }
}

/// Whether the IP packet of `version` at the start of `head` comes from the address of its
/// version in `ours`: the only source a peer takes from us in transparent mode (see
/// [`from_published`]), so the only packets worth sending it. A packet from another address
/// of ours (a second address, or one the stack chose for a reply) must take the regular
/// interface, or the peer would drop it.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{from_ours, IpVersion};
/// use ivshmem_net_protocol::link::Addrs;
/// let ours = Addrs { mac: [2, 0, 0, 0, 0, 1], v4: Some([10, 0, 0, 1]), v6: None };
/// let mut p = [0u8; 20];
/// p[0] = 0x45;
/// p[12..16].copy_from_slice(&[10, 0, 0, 1]);
/// assert!(from_ours(IpVersion::V4, &p, &ours));
/// p[15] = 11;
/// assert!(!from_ours(IpVersion::V4, &p, &ours));
/// assert!(!from_ours(IpVersion::V6, &p, &ours));
/// ```
pub fn from_ours(version: IpVersion, head: &[u8], ours: &Addrs) -> bool {
    match version {
        IpVersion::V4 => {
            head.len() >= 20
                && head[0] >> 4 == 4
                && head.get(12..16) == ours.v4.as_ref().map(|v| &v[..])
        }
        IpVersion::V6 => {
            head.len() >= 40
                && head[0] >> 4 == 6
                && head.get(8..24) == ours.v6.as_ref().map(|v| &v[..])
        }
    }
}

/// Whether the Ethernet frame `f` carries an IPv4 or IPv6 packet whose source is one of the
/// addresses in `a` and whose source MAC is `a`'s: what a peer may send us in transparent
/// mode.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::from_published;
/// use ivshmem_net_protocol::link::Addrs;
/// let a = Addrs { mac: [2, 0, 0, 0, 0, 1], v4: Some([10, 0, 0, 1]), v6: None };
/// let mut f = [0u8; 34];
/// f[6..12].copy_from_slice(&a.mac);
/// f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
/// f[14] = 0x45;
/// f[26..30].copy_from_slice(&[10, 0, 0, 1]);
/// assert!(from_published(&f, &a));
/// f[29] = 9;
/// assert!(!from_published(&f, &a));
/// ```
pub fn from_published(f: &[u8], a: &Addrs) -> bool {
    if f.get(6..12) != Some(&a.mac[..]) {
        return false;
    }
    let ip = f.get(ETH_HLEN as usize..).unwrap_or(&[]);
    match f.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) {
        Some(ETH_P_IP) => {
            ip.len() >= 20 && ip[0] >> 4 == 4 && ip.get(12..16) == a.v4.as_ref().map(|v| &v[..])
        }
        Some(ETH_P_IPV6) => {
            ip.len() >= 40 && ip[0] >> 4 == 6 && ip.get(8..24) == a.v6.as_ref().map(|v| &v[..])
        }
        _ => false,
    }
}

/// The source address of the IPv4 or IPv6 packet in the Ethernet frame `f` when
/// [`from_published`] accepts it for `a` (so it is `a.v4` or `a.v6`).
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{published_source, IpDst};
/// use ivshmem_net_protocol::link::Addrs;
/// let a = Addrs { mac: [2, 0, 0, 0, 0, 1], v4: Some([10, 0, 0, 1]), v6: None };
/// let mut f = [0u8; 34];
/// f[6..12].copy_from_slice(&a.mac);
/// f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
/// f[14] = 0x45;
/// f[26..30].copy_from_slice(&[10, 0, 0, 1]);
/// assert_eq!(published_source(&f, &a), Some(IpDst::V4([10, 0, 0, 1])));
/// f[29] = 9;
/// assert_eq!(published_source(&f, &a), None);
/// ```
pub fn published_source(f: &[u8], a: &Addrs) -> Option<IpDst> {
    if !from_published(f, a) {
        return None;
    }
    match f.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) {
        Some(ETH_P_IP) => a.v4.map(IpDst::V4),
        Some(ETH_P_IPV6) => a.v6.map(IpDst::V6),
        _ => None,
    }
}

/// How many bytes of an IP packet [`may_cross`] looks at, at most: what the receive path has
/// in the linear part of a frame (256 bytes with the Ethernet header). The sending side cuts
/// its view to the same length, so both judge a packet the same.
pub const CROSS_WINDOW: usize = 256 - ETH_HLEN as usize;

/// IPv6 next-header values [`may_cross`] knows.
mod nexthdr {
    pub(super) const HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const ESP: u8 = 50;
    pub(super) const AH: u8 = 51;
    pub(super) const ICMPV6: u8 = 58;
    pub(super) const DEST: u8 = 60;
}

/// Whether the IP packet of `version` at the start of `ip` (its first [`CROSS_WINDOW`] bytes
/// are looked at) may pass between regular interfaces through shared memory: not when it is
/// link control that rewrites the receiver's view of its segment, which only the segment may
/// carry: ICMPv6 Neighbour Discovery (router solicitation and advertisement, neighbour
/// solicitation and advertisement, redirect: types 133 to 137, found by walking the
/// hop-by-hop, routing, destination-options, fragment and authentication headers) and IPv4
/// ICMP redirects (type 5). A packet whose headers cannot be read that far (truncated, too
/// long a header chain, a bad IPv4 header length, ESP, another IP version) is refused too. A
/// fragment other than the first carries no upper-layer header and may pass: the kernel
/// reassembles it only with its first fragment, which this judges.
///
/// The transparent-mode hook keeps such packets on the regular interface and the receive
/// path drops them from a peer, so a peer cannot rewrite our neighbour table (and with it the
/// hook's own check, [`Seen::may_send`]) through shared memory.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::{may_cross, IpVersion};
/// let mut p = [0u8; 48];
/// p[0] = 0x60;
/// p[6] = 58; // ICMPv6
/// p[40] = 128; // echo request
/// assert!(may_cross(IpVersion::V6, &p));
/// p[40] = 135; // neighbour solicitation
/// assert!(!may_cross(IpVersion::V6, &p));
/// assert!(!may_cross(IpVersion::V6, &p[..40]));
/// ```
pub fn may_cross(version: IpVersion, ip: &[u8]) -> bool {
    let ip = ip.get(..CROSS_WINDOW).unwrap_or(ip);
    match version {
        IpVersion::V4 => v4_may_cross(ip),
        IpVersion::V6 => v6_may_cross(ip),
    }
    .unwrap_or(false)
}

/// [`may_cross`] for IPv4; `None` where the header cannot be read.
fn v4_may_cross(ip: &[u8]) -> Option<bool> {
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if frag != 0 || ip[9] != 1 {
        // A later fragment, or not ICMP.
        return Some(true);
    }
    Some(*ip.get(ihl)? != 5)
}

/// [`may_cross`] for IPv6; `None` where the header chain cannot be read.
fn v6_may_cross(ip: &[u8]) -> Option<bool> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let mut next = ip[6];
    let mut off = 40usize;
    // Each step moves at least 8 bytes on, so this ends within the window.
    loop {
        let len = match next {
            nexthdr::HOP | nexthdr::ROUTING | nexthdr::DEST => {
                (usize::from(*ip.get(off + 1)?) + 1) * 8
            }
            nexthdr::AH => (usize::from(*ip.get(off + 1)?) + 2) * 4,
            nexthdr::FRAGMENT => {
                let f = ip.get(off..off + 8)?;
                if u16::from_be_bytes([f[2], f[3]]) & !7 != 0 {
                    // Not the first fragment: no upper-layer header here.
                    return Some(true);
                }
                8
            }
            nexthdr::ESP => return None,
            nexthdr::ICMPV6 => return Some(!(133..=137).contains(ip.get(off)?)),
            _ => return Some(true),
        };
        next = *ip.get(off)?;
        off += len;
    }
}

/// What our regular interface knows of an address a peer published: whether it is inside
/// one of the interface's prefixes, and the MAC a valid entry of its neighbour table (ARP,
/// NDP) maps it to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Inside one of the regular interface's prefixes.
    pub on_link: bool,
    /// The MAC of a valid neighbour entry for the address, if there is one.
    pub mac: Option<[u8; 6]>,
}

impl Seen {
    /// Whether a packet for the address may go to the peer that published it with MAC
    /// `published` (its route being direct, checked apart): the address is on-link and the
    /// regular interface resolved it, on the real segment, to that MAC. A peer thus receives
    /// only what the segment would deliver to the MAC it published; until the neighbour
    /// entry exists (the first packets resolve it) traffic stays on the regular interface.
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::frame::Seen;
    /// let m = [2, 0, 0, 0, 0, 1];
    /// assert!(Seen { on_link: true, mac: Some(m) }.may_send(&m));
    /// assert!(!Seen { on_link: true, mac: None }.may_send(&m));
    /// assert!(!Seen { on_link: true, mac: Some([2, 0, 0, 0, 0, 9]) }.may_send(&m));
    /// assert!(!Seen { on_link: false, mac: Some(m) }.may_send(&m));
    /// ```
    pub fn may_send(&self, published: &[u8; 6]) -> bool {
        self.on_link && self.mac == Some(*published)
    }

    /// Whether a frame from the peer that published the address with MAC `published` may be
    /// delivered as received on the regular interface with the address as its source: it is
    /// on-link, and no valid neighbour entry maps it to another MAC. (An address not yet
    /// resolved is accepted: the peer may answer before we ever sent it anything.)
    ///
    /// # Examples
    ///
    /// ```
    /// use ivshmem_net_protocol::frame::Seen;
    /// let m = [2, 0, 0, 0, 0, 1];
    /// assert!(Seen { on_link: true, mac: Some(m) }.may_accept(&m));
    /// assert!(Seen { on_link: true, mac: None }.may_accept(&m));
    /// assert!(!Seen { on_link: true, mac: Some([2, 0, 0, 0, 0, 9]) }.may_accept(&m));
    /// assert!(!Seen { on_link: false, mac: None }.may_accept(&m));
    /// ```
    pub fn may_accept(&self, published: &[u8; 6]) -> bool {
        self.on_link && self.mac.is_none_or(|m| m == *published)
    }
}

/// A MAC address as the low 48 bits of a `u64` (first byte lowest), for storing in an atomic.
///
/// # Examples
///
/// ```
/// use ivshmem_net_protocol::frame::mac_u64;
/// assert_eq!(mac_u64(&[1, 2, 3, 4, 5, 6]), 0x0605_0403_0201);
/// ```
pub fn mac_u64(m: &[u8; 6]) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}
