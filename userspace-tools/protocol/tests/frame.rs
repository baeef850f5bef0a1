// SPDX-License-Identifier: GPL-2.0

//! The pure frame helpers the driver uses for MTU limits and transparent mode's checks
//! (`ivshmem-net/protocol/frame.rs`).

use ivshmem_net_protocol::frame::{
    fits_mtu, from_ours, from_published, hook_can_carry, mac_u64, max_len, max_mtu, may_cross,
    published_source, rx_verdict, skb_gso, tso_max, IpDst, IpVersion, RxVerdict, Seen,
    CROSS_WINDOW, ETH_HLEN, MAX_MTU, MIN_GSO_SIZE, MIN_MTU, VLAN_HLEN,
};
use ivshmem_net_protocol::link::Addrs;
use proptest::prelude::*;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

fn addrs() -> Addrs {
    Addrs {
        mac: MAC,
        v4: Some([10, 0, 0, 7]),
        v6: Some([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]),
    }
}

/// An Ethernet frame from `mac` carrying a minimal IPv4 header with source `src`.
fn v4_frame(mac: [u8; 6], src: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20];
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[26..30].copy_from_slice(&src);
    f
}

/// An Ethernet frame from `mac` carrying a minimal IPv6 header with source `src`.
fn v6_frame(mac: [u8; 6], src: [u8; 16]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40];
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    f[14] = 0x60;
    f[22..38].copy_from_slice(&src);
    f
}

#[test]
fn mtu_limits_follow_the_ring() {
    // 32 MiB, 8 peers: 256 KiB of ring data, frames up to half of it.
    assert_eq!(max_mtu(128 * 1024), MAX_MTU);
    assert_eq!(max_mtu(1500 + ETH_HLEN + VLAN_HLEN), 1500);
    assert_eq!(max_mtu(0), 0);
    assert!(max_mtu(4096) >= MIN_MTU);
    assert_eq!(tso_max(128 * 1024), 65536);
    assert_eq!(tso_max(0), 0);
}

proptest! {
    /// Whatever the MTU and ring, the largest frame fits the ring, holds an MTU-sized frame
    /// where the ring allows one, and holds the largest offload frame with its headers.
    #[test]
    fn max_len_fits_ring_and_mtu(mtu in 0u32..=MAX_MTU, max_frame in 0u32..(1 << 24)) {
        let len = max_len(mtu, max_frame);
        prop_assert!(len <= max_frame);
        prop_assert_eq!(len == max_frame, mtu + 18 >= max_frame || tso_max(max_frame) + 18 >= max_frame);
        if mtu <= max_mtu(max_frame) {
            prop_assert!(len >= mtu + ETH_HLEN + VLAN_HLEN);
        }
        prop_assert!(tso_max(max_frame) + ETH_HLEN + VLAN_HLEN <= len.max(ETH_HLEN + VLAN_HLEN));
    }

    /// No input makes the address checks panic or read outside the frame.
    #[test]
    fn address_checks_take_any_bytes(f in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = from_published(&f, &addrs());
        let _ = IpDst::of(IpVersion::V4, &f);
        let _ = IpDst::of(IpVersion::V6, &f);
    }
}

#[test]
fn destination_of_ipv4_and_ipv6_packets() {
    let mut v4 = [0u8; 20];
    v4[0] = 0x45;
    v4[16..20].copy_from_slice(&[10, 0, 0, 7]);
    let d = IpDst::of(IpVersion::V4, &v4).expect("an IPv4 header");
    assert!(d.is_for(&addrs()));
    // A version nibble that does not match what the hook was told: not an address.
    assert_eq!(IpDst::of(IpVersion::V6, &v4), None);
    v4[0] = 0x65;
    assert_eq!(IpDst::of(IpVersion::V4, &v4), None);

    let mut v6 = [0u8; 40];
    v6[0] = 0x60;
    v6[24..40].copy_from_slice(&addrs().v6.unwrap_or_default());
    let d = IpDst::of(IpVersion::V6, &v6).expect("an IPv6 header");
    assert!(d.is_for(&addrs()));
    assert!(!IpDst::V4([10, 0, 0, 8]).is_for(&addrs()));
    assert_eq!(IpDst::of(IpVersion::V6, &v6[..39]), None);
}

#[test]
fn only_the_published_source_and_mac_pass() {
    let a = addrs();
    assert!(from_published(&v4_frame(MAC, [10, 0, 0, 7]), &a));
    assert!(from_published(&v6_frame(MAC, a.v6.unwrap_or_default()), &a));
    // Another source address, another MAC, a truncated header, another ethertype.
    assert!(!from_published(&v4_frame(MAC, [10, 0, 0, 8]), &a));
    assert!(!from_published(
        &v4_frame([2, 0, 0, 0, 0, 9], [10, 0, 0, 7]),
        &a
    ));
    assert!(!from_published(&v4_frame(MAC, [10, 0, 0, 7])[..33], &a));
    let mut arp = v4_frame(MAC, [10, 0, 0, 7]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert!(!from_published(&arp, &a));
    // A peer that published no IPv6 address sends no IPv6.
    let v4_only = Addrs { v6: None, ..a };
    assert!(!from_published(
        &v6_frame(MAC, a.v6.unwrap_or_default()),
        &v4_only
    ));
}

/// What we send a peer is what it takes from us: a packet from our published address of its
/// version passes `from_ours` exactly when, framed, it passes the peer's `from_published`.
#[test]
fn we_send_only_what_the_peer_takes() {
    let ours = addrs();
    let v6 = ours.v6.unwrap_or_default();
    let second6 = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x17];
    for (frame, version) in [
        (v4_frame(MAC, [10, 0, 0, 7]), IpVersion::V4),
        (v4_frame(MAC, [10, 0, 0, 17]), IpVersion::V4),
        (v6_frame(MAC, v6), IpVersion::V6),
        (v6_frame(MAC, second6), IpVersion::V6),
    ] {
        let ip = &frame[ETH_HLEN as usize..];
        assert_eq!(
            from_ours(version, ip, &ours),
            from_published(&frame, &ours),
            "{frame:?}"
        );
    }
    assert!(from_ours(
        IpVersion::V4,
        &v4_frame(MAC, [10, 0, 0, 7])[14..],
        &ours
    ));
    assert!(!from_ours(
        IpVersion::V4,
        &v4_frame(MAC, [10, 0, 0, 17])[14..],
        &ours
    ));
    // Nothing published of that version, a truncated header, the other version's header.
    let v4_only = Addrs { v6: None, ..ours };
    assert!(!from_ours(
        IpVersion::V6,
        &v6_frame(MAC, v6)[14..],
        &v4_only
    ));
    assert!(!from_ours(
        IpVersion::V4,
        &v4_frame(MAC, [10, 0, 0, 7])[14..33],
        &ours
    ));
    assert!(!from_ours(
        IpVersion::V6,
        &v4_frame(MAC, [10, 0, 0, 7])[14..],
        &ours
    ));
}

/// Every `SKB_GSO_*` bit of 6.12 (`include/linux/skbuff.h`): the hook carries a packet only
/// with the four a descriptor expresses, and never an encapsulated one.
#[test]
fn the_hook_leaves_tunnels_and_unexpressible_offloads_to_the_regular_interface() {
    let kernel_bits = [
        ("TCPV4", 1 << 0, true),
        ("DODGY", 1 << 1, false),
        ("TCP_ECN", 1 << 2, true),
        ("TCP_FIXEDID", 1 << 3, false),
        ("TCPV6", 1 << 4, true),
        ("FCOE", 1 << 5, false),
        ("GRE", 1 << 6, false),
        ("GRE_CSUM", 1 << 7, false),
        ("IPXIP4", 1 << 8, false),
        ("IPXIP6", 1 << 9, false),
        ("UDP_TUNNEL", 1 << 10, false),
        ("UDP_TUNNEL_CSUM", 1 << 11, false),
        ("PARTIAL", 1 << 12, false),
        ("TUNNEL_REMCSUM", 1 << 13, false),
        ("SCTP", 1 << 14, false),
        ("ESP", 1 << 15, false),
        ("UDP", 1 << 16, false),
        ("UDP_L4", 1 << 17, true),
        ("FRAGLIST", 1 << 18, false),
    ];
    assert!(hook_can_carry(false, 0));
    assert!(!hook_can_carry(true, 0));
    for (name, bit, carried) in kernel_bits {
        assert_eq!(hook_can_carry(false, bit), carried, "{name}");
        assert!(!hook_can_carry(true, bit), "encapsulated {name}");
        // With TCPv4 (an inner TCP stream in a tunnel, say): only if the bit itself is carried.
        assert_eq!(
            hook_can_carry(false, skb_gso::TCPV4 | bit),
            carried,
            "TCPV4 | {name}"
        );
    }
    assert!(hook_can_carry(false, skb_gso::TCPV6 | skb_gso::TCP_ECN));
    assert_eq!(
        skb_gso::CARRIED,
        kernel_bits.iter().filter(|k| k.2).fold(0, |m, k| m | k.1)
    );
}

#[test]
fn the_published_source_is_the_one_the_frame_carries() {
    let a = addrs();
    let v6 = a.v6.unwrap_or_default();
    assert_eq!(
        published_source(&v4_frame(MAC, [10, 0, 0, 7]), &a),
        Some(IpDst::V4([10, 0, 0, 7]))
    );
    assert_eq!(
        published_source(&v6_frame(MAC, v6), &a),
        Some(IpDst::V6(v6))
    );
    assert_eq!(published_source(&v4_frame(MAC, [10, 0, 0, 8]), &a), None);
    assert_eq!(
        published_source(&v6_frame([2, 0, 0, 0, 0, 9], v6), &a),
        None
    );
}

/// Every combination of what the regular interface knows of a claimed address: a packet
/// goes to the claimant only for an on-link address resolved to exactly its MAC; its frames
/// are taken from an on-link address no entry gives to someone else.
#[test]
fn a_claim_holds_only_as_far_as_the_segment_agrees() {
    let other = [0x02, 0, 0, 0, 0, 0x99];
    for on_link in [false, true] {
        for mac in [None, Some(MAC), Some(other)] {
            let s = Seen { on_link, mac };
            assert_eq!(s.may_send(&MAC), on_link && mac == Some(MAC), "{s:?}");
            assert_eq!(s.may_accept(&MAC), on_link && mac != Some(other), "{s:?}");
            // Whatever may be sent to may also answer.
            assert!(!s.may_send(&MAC) || s.may_accept(&MAC), "{s:?}");
        }
    }
    assert_eq!(
        Seen::default(),
        Seen {
            on_link: false,
            mac: None
        }
    );
    assert!(!Seen::default().may_send(&MAC) && !Seen::default().may_accept(&MAC));
}

#[test]
fn segments_and_plain_frames_against_the_peer_mtu() {
    assert!(fits_mtu(1500 + ETH_HLEN + VLAN_HLEN, None, 1500));
    assert!(!fits_mtu(1500 + ETH_HLEN + VLAN_HLEN + 1, None, 1500));
    // An offload frame is judged by its segments, not its length.
    assert!(fits_mtu(65536, Some(1448), 1500));
    assert!(!fits_mtu(100, Some(1501), 1500));
    // A peer that has not told us its MTU (0) takes nothing.
    assert!(!fits_mtu(64, None, 0));
    assert!(!fits_mtu(64, Some(1), 0));
    assert!(fits_mtu(u32::MAX, None, u32::MAX));
}

/// Ring data areas: 32 MiB over 8 peers (ring data ~4 MiB, frames up to half of it), 2 peers,
/// and small rings whose largest frame is below 64 KiB.
const MAX_FRAMES: [u32; 4] = [256 * 1024, 8 << 20, 32 * 1024, 4096];

#[test]
fn received_plain_frames_stop_at_our_mtu() {
    for max_frame in MAX_FRAMES {
        for mtu in [MIN_MTU, 1500, 9000, MAX_MTU] {
            let limit = mtu + ETH_HLEN + VLAN_HLEN;
            assert_eq!(
                rx_verdict(ETH_HLEN, 0, 0, mtu, max_frame),
                RxVerdict::Accept
            );
            assert_eq!(rx_verdict(limit, 0, 0, mtu, max_frame), RxVerdict::Accept);
            assert_eq!(
                rx_verdict(limit + 1, 0, 0, mtu, max_frame),
                RxVerdict::OverMtu
            );
            assert_eq!(
                rx_verdict(max_frame, 0, 0, mtu, max_frame) == RxVerdict::Accept,
                max_frame <= limit
            );
            // gso_size means nothing without a gso type.
            assert_eq!(
                rx_verdict(limit, 0, 0xffff, mtu, max_frame),
                RxVerdict::Accept
            );
        }
    }
    assert_eq!(
        rx_verdict(u32::MAX, 0, 0, u32::MAX, u32::MAX),
        RxVerdict::Accept
    );
}

#[test]
fn received_gso_frames_stop_at_what_we_advertise() {
    for max_frame in MAX_FRAMES {
        for mtu in [MIN_MTU, 1500, 9000, MAX_MTU] {
            let limit = max_len(mtu, max_frame);
            // Never more than a 64 KiB packet with its headers, nor than the ring carries.
            assert!(limit <= 65536 + ETH_HLEN + VLAN_HLEN);
            assert!(limit <= max_frame);
            for gso_type in [1, 3, 4, 5, 0x81] {
                assert_eq!(
                    rx_verdict(limit, gso_type, 1448, mtu, max_frame),
                    RxVerdict::Accept
                );
                assert_eq!(
                    rx_verdict(limit + 1, gso_type, 1448, mtu, max_frame),
                    RxVerdict::OverGsoMax
                );
            }
        }
    }
    // What the stack hands us at MTU 1500 on the default ring: 64 KiB packets.
    assert_eq!(
        rx_verdict(65536 + ETH_HLEN, 1, 1448, 1500, 256 * 1024),
        RxVerdict::Accept
    );
    assert_eq!(
        rx_verdict(128 * 1024, 1, 1448, 1500, 256 * 1024),
        RxVerdict::OverGsoMax
    );
}

#[test]
fn received_gso_frames_need_a_real_segment_size() {
    assert_eq!(MIN_GSO_SIZE, 8);
    for gso_size in 0..MIN_GSO_SIZE {
        assert_eq!(
            rx_verdict(9000, 1, gso_size, 1500, 256 * 1024),
            RxVerdict::GsoSizeTooSmall
        );
        assert_eq!(
            rx_verdict(100, 4, gso_size, 1500, 256 * 1024),
            RxVerdict::GsoSizeTooSmall
        );
    }
    for gso_size in [MIN_GSO_SIZE, 536, 1448, 0xffff] {
        assert_eq!(
            rx_verdict(9000, 1, gso_size, 1500, 256 * 1024),
            RxVerdict::Accept
        );
    }
    // Too long counts before too small.
    assert_eq!(
        rx_verdict(1 << 20, 1, 0, 1500, 8 << 20),
        RxVerdict::OverGsoMax
    );
}

proptest! {
    /// Whatever a peer writes, an accepted frame is at most what we advertise: our MTU's
    /// frame without offload, 64 KiB with headers (and at most the ring's frame) with it.
    #[test]
    fn accepted_frames_are_bounded(
        len in any::<u32>(), gso_type in any::<u8>(), gso_size in any::<u16>(),
        mtu in MIN_MTU..=MAX_MTU, max_frame in 64u32..(16 << 20),
    ) {
        if rx_verdict(len, gso_type, gso_size, mtu, max_frame) == RxVerdict::Accept {
            if gso_type == 0 {
                prop_assert!(len <= mtu + ETH_HLEN + VLAN_HLEN);
            } else {
                prop_assert!(len <= (65536 + ETH_HLEN + VLAN_HLEN).min(max_frame));
                prop_assert!(gso_size >= MIN_GSO_SIZE);
            }
        }
    }
}

#[test]
fn mac_packs_into_the_low_48_bits() {
    assert_eq!(mac_u64(&MAC) >> 48, 0);
    assert_eq!(mac_u64(&MAC).to_le_bytes()[..6], MAC);
}

/// An IPv6 packet: the fixed header, then each `(next header value, header bytes)` in turn
/// (each header's first byte is set to the next one's value), then `upper` (upper-layer bytes)
/// whose protocol is `proto`.
fn v6_chain(ext: &[(u8, Vec<u8>)], proto: u8, upper: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[7] = 255;
    let mut next_at = 6;
    for (nh, h) in ext {
        p[next_at] = *nh;
        next_at = p.len();
        p.extend_from_slice(h);
    }
    p[next_at] = proto;
    p.extend_from_slice(upper);
    p
}

/// An ICMPv6 message of `ty` (type, code, checksum, 20 bytes of body).
fn icmp6(ty: u8) -> Vec<u8> {
    let mut m = vec![0u8; 24];
    m[0] = ty;
    m
}

/// An extension header of `len` bytes (a multiple of 8) whose length byte says so, for the
/// hop-by-hop, routing and destination-options headers.
fn opts(len: usize) -> Vec<u8> {
    let mut h = vec![0u8; len];
    h[1] = (len / 8 - 1) as u8;
    h
}

/// A fragment header at fragment offset `offset` (in 8-byte units), more fragments following.
fn frag(offset: u16) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[2..4].copy_from_slice(&((offset << 3) | 1).to_be_bytes());
    h
}

/// An authentication header with `words` 32-bit words of ICV after its 12 fixed bytes.
fn ah(words: usize) -> Vec<u8> {
    let mut h = vec![0u8; 12 + 4 * words];
    h[1] = (words + 1) as u8;
    h
}

#[test]
fn neighbour_discovery_never_crosses() {
    for ty in 0..=255u8 {
        let p = v6_chain(&[], 58, &icmp6(ty));
        assert_eq!(
            may_cross(IpVersion::V6, &p),
            !(133..=137).contains(&ty),
            "type {ty}"
        );
    }
    // Other upper layers pass whatever their first byte.
    for proto in [6u8, 17, 59, 132] {
        assert!(may_cross(IpVersion::V6, &v6_chain(&[], proto, &icmp6(135))));
    }
    // Another version, or a packet shorter than the fixed header: refused.
    let p = v6_chain(&[], 58, &icmp6(128));
    assert!(!may_cross(IpVersion::V6, &p[..39]));
    let mut v4 = p.clone();
    v4[0] = 0x45;
    assert!(!may_cross(IpVersion::V6, &v4));
}

#[test]
fn neighbour_discovery_is_found_behind_extension_headers() {
    let chains: Vec<Vec<(u8, Vec<u8>)>> = vec![
        vec![(0, opts(8))],
        vec![(0, opts(8)), (60, opts(16)), (43, opts(24))],
        vec![(51, ah(3))],
        vec![(0, opts(8)), (51, ah(1)), (60, opts(8))],
        // A first fragment (offset 0): the upper-layer header is in it.
        vec![(44, frag(0))],
        vec![(0, opts(8)), (44, frag(0)), (60, opts(8))],
    ];
    for c in &chains {
        for ty in 133..=137 {
            let p = v6_chain(c, 58, &icmp6(ty));
            assert!(!may_cross(IpVersion::V6, &p), "type {ty} behind {c:?}");
        }
        assert!(may_cross(IpVersion::V6, &v6_chain(c, 58, &icmp6(128))));
        assert!(may_cross(IpVersion::V6, &v6_chain(c, 17, &[0u8; 8])));
        // Cut anywhere before the ICMPv6 type: what cannot be read is refused.
        let p = v6_chain(c, 58, &icmp6(128));
        let type_at = p.len() - 24;
        for n in 0..=type_at {
            assert!(!may_cross(IpVersion::V6, &p[..n]), "cut at {n} of {c:?}");
        }
    }
}

#[test]
fn later_fragments_pass_esp_and_long_chains_do_not() {
    // A later fragment has no upper-layer header: its first bytes are data.
    let p = v6_chain(&[(44, frag(1))], 58, &icmp6(135));
    assert!(may_cross(IpVersion::V6, &p));
    let p = v6_chain(&[(0, opts(8)), (44, frag(100))], 58, &[]);
    assert!(may_cross(IpVersion::V6, &p));
    // A fragment header cut short.
    let p = v6_chain(&[(44, frag(1))], 58, &[]);
    assert!(!may_cross(IpVersion::V6, &p[..45]));
    // ESP hides what follows.
    assert!(!may_cross(IpVersion::V6, &v6_chain(&[], 50, &[0u8; 64])));
    // A chain whose upper-layer header lies beyond the window is refused, even if whole.
    let long = v6_chain(&[(0, opts(8)), (60, opts(2048))], 58, &icmp6(128));
    assert!(long.len() > CROSS_WINDOW);
    assert!(!may_cross(IpVersion::V6, &long));
    // The ICMPv6 type at the window's last whole 8 bytes is read; one header further on, not.
    let room = (CROSS_WINDOW - 40 - 1) / 8 * 8;
    let fits = v6_chain(&[(60, opts(room))], 58, &icmp6(128));
    assert!(fits.len() - 24 < CROSS_WINDOW);
    assert!(may_cross(IpVersion::V6, &fits));
    let over = v6_chain(&[(60, opts(room + 8))], 58, &icmp6(128));
    assert!(over.len() - 24 >= CROSS_WINDOW);
    assert!(!may_cross(IpVersion::V6, &over));
}

/// An IPv4 packet with `opt_words` words of options, protocol `proto`, fragment field `frag`
/// (flags and offset) and payload `upper`.
fn v4_packet(opt_words: u8, proto: u8, frag: u16, upper: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 4 * usize::from(opt_words)];
    p[0] = 0x40 | (5 + opt_words);
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p.extend_from_slice(upper);
    p
}

#[test]
fn icmp_redirects_never_cross() {
    for opt_words in [0u8, 1, 10] {
        for ty in 0..=255u8 {
            let p = v4_packet(opt_words, 1, 0, &[ty, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(may_cross(IpVersion::V4, &p), ty != 5, "type {ty}");
        }
        // A first fragment (more fragments, offset 0) is judged; later ones pass.
        let redirect = [5u8, 1, 0, 0, 10, 0, 0, 9];
        assert!(!may_cross(
            IpVersion::V4,
            &v4_packet(opt_words, 1, 0x2000, &redirect)
        ));
        assert!(may_cross(
            IpVersion::V4,
            &v4_packet(opt_words, 1, 0x2001, &redirect)
        ));
        assert!(may_cross(
            IpVersion::V4,
            &v4_packet(opt_words, 1, 0x0010, &redirect)
        ));
        // Not ICMP.
        assert!(may_cross(
            IpVersion::V4,
            &v4_packet(opt_words, 17, 0, &redirect)
        ));
        // Without the ICMP type, or cut inside the header: refused.
        let p = v4_packet(opt_words, 1, 0, &redirect);
        let type_at = 20 + 4 * usize::from(opt_words);
        for n in 0..=type_at {
            assert!(!may_cross(IpVersion::V4, &p[..n]), "cut at {n}");
        }
    }
    // A header length below 20 bytes, or another version.
    let mut p = v4_packet(0, 1, 0, &[8, 0, 0, 0]);
    p[0] = 0x44;
    assert!(!may_cross(IpVersion::V4, &p));
    p[0] = 0x65;
    assert!(!may_cross(IpVersion::V4, &p));
}

proptest! {
    /// Any bytes: no panic, and only the window counts.
    #[test]
    fn may_cross_looks_only_at_its_window(p in proptest::collection::vec(any::<u8>(), 0..600),
                                          v6 in any::<bool>()) {
        let v = if v6 { IpVersion::V6 } else { IpVersion::V4 };
        let cut = &p[..p.len().min(CROSS_WINDOW)];
        prop_assert_eq!(may_cross(v, &p), may_cross(v, cut));
    }

    /// Whatever comes after an ND message or a redirect, it is refused.
    #[test]
    fn nd_and_redirects_refused_whatever_follows(ty in 133u8..=137,
                                                 tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut p = v6_chain(&[(0, opts(8)), (44, frag(0))], 58, &[ty]);
        p.extend_from_slice(&tail);
        prop_assert!(!may_cross(IpVersion::V6, &p));
        let mut q = v4_packet(0, 1, 0, &[5]);
        q.extend_from_slice(&tail);
        prop_assert!(!may_cross(IpVersion::V4, &q));
    }
}
