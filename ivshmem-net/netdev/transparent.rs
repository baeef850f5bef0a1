// SPDX-License-Identifier: GPL-2.0

//! Transparent mode (`transparent=<ifname>`), under the `transparent` lock (released before
//! the hook takes `tx`): we publish the MAC and addresses of our regular interface in our
//! control block, keep a table of what each linked peer published (checked, first claim
//! wins), divert packets routed out of the regular interface straight to a peer's address
//! into that peer's ring (a netfilter `POST_ROUTING` hook), and hand frames a peer sends from
//! its published addresses to our regular interface as if received there.
//!
//! What a peer publishes is only a claim: a packet goes to it only while its route is direct
//! (no gateway, no IPsec transform) and the regular interface itself puts the address on-link
//! and resolved it to the MAC the peer published ([`Seen::may_send`]); a frame from it is
//! delivered only from an on-link address no neighbour entry gives to another MAC
//! ([`Seen::may_accept`]). Both ends say which claims they accept ([`link::Accepted`]): a
//! packet goes to a peer only if that peer accepts our claim for its IP version, so where
//! the two ends judge an address differently traffic stays on the regular interface instead
//! of being dropped. A claim belongs to the peer's seat, as its MAC does: it is kept (and
//! nobody else's overlapping claim taken) while the peer's link is down, and ends when the
//! peer leaves its seat. Neighbour discovery and ICMP redirects never pass through shared
//! memory, either way ([`may_cross`]): they would let a peer rewrite the neighbour table those
//! checks read.

use super::{
    bit,
    tx::{desc_of, Sent},
    Ctl, Mac,
};
use crate::ext::{
    net::{self, Device},
    netfilter::{self, Proto},
    time,
};
use crate::protocol::frame::{
    from_ours, hook_can_carry, mac_u64, may_cross, published_source, IpDst, IpVersion, Seen,
    ETH_HLEN, ETH_P_IP, ETH_P_IPV6,
};
use crate::protocol::layout;
use crate::protocol::link::{self, Accepted, Addrs, Published};
use crate::{dev_info, dev_warn};
use core::fmt;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// [`super::Net::regular_mac`]: the MAC in the low 48 bits is valid.
pub(super) const MAC_VALID: u64 = 1 << 48;

/// The peers whose regular addresses we send to through the rings.
pub(super) struct Peers {
    /// Indexed by peer id: the addresses peer `j` published, checked and not claimed by
    /// another peer first; `None` if it published nothing usable, or left the seat it
    /// claimed them from.
    pub(super) addrs: KVec<Option<Addrs>>,
    /// Indexed by peer id: the slot word (seat token) peer `j` held when its claim was taken
    /// ([`layout::slot_token`]); its claim lasts while the slot holds it.
    pub(super) seats: KVec<u32>,
    /// Peers whose claim is kept while their link is down: nothing goes to them through the
    /// rings, and nobody else can claim their addresses meanwhile.
    pub(super) down: u64,
    /// Peers whose claim we refused (an address another peer or we hold) and logged.
    pub(super) refused_logged: u64,
    /// What we publish (a copy of `Ctl::published` the hook can read): peers take frames from
    /// these addresses only.
    pub(super) ours: Addrs,
    /// The sequence word we published `ours` with ([`link::Own::published_seq`]): a peer
    /// accepts our claim by writing it into its `accept_v4`/`accept_v6` word for us.
    pub(super) ours_seq: u32,
}

/// What the receive path does with a frame.
pub(super) enum Target {
    /// Not for our regular interface: ours as usual.
    Ours,
    /// For our regular interface (ifindex), from the sending peer's published addresses.
    Deliver(i32),
    /// For our regular interface, but not from the sender's published addresses.
    Refuse,
}

/// The IP addresses of an [`Addrs`], printed as `10.0.0.1 fd00:0:0:0:0:0:0:1` (or `-`).
struct Ips<'a>(&'a Addrs);

impl fmt::Display for Ips<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.v4 {
            Some(a) => write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3])?,
            None => write!(f, "-")?,
        }
        match self.0.v6 {
            Some(a) => {
                for (k, w) in a.chunks_exact(2).enumerate() {
                    let sep = if k == 0 { " " } else { ":" };
                    write!(f, "{}{:x}", sep, u16::from_be_bytes([w[0], w[1]]))?;
                }
                Ok(())
            }
            None => write!(f, " -"),
        }
    }
}

/// What the regular interface with index `ifindex` knows of `ip` (nothing if it is gone).
/// `in_use`: we are about to send to it, as if through its neighbour entry.
fn seen(ifindex: i32, ip: IpDst, in_use: bool) -> Seen {
    let addr = match ip {
        IpDst::V4(a) => net::IpAddr::V4(a),
        IpDst::V6(a) => net::IpAddr::V6(a),
    };
    match net::neighbour(ifindex, addr, in_use) {
        Ok(n) => Seen {
            on_link: n.on_link,
            mac: n.mac,
        },
        Err(_) => Seen::default(),
    }
}

/// The IP version of a packet the hook sees.
fn version_of(proto: Proto) -> IpVersion {
    match proto {
        Proto::Ipv4 => IpVersion::V4,
        Proto::Ipv6 => IpVersion::V6,
    }
}

impl super::Net {
    /// Transparent mode: a packet routed out of our regular interface straight to an address
    /// a peer published, which the regular interface resolved to the MAC that peer published,
    /// goes through that peer's ring instead, with the Ethernet header the regular interface
    /// would have given it; anything that cannot go that way right now takes the normal path.
    pub(super) fn divert(
        &self,
        dev: &Device,
        pkt: &netfilter::HookPacket<'_>,
    ) -> netfilter::Verdict {
        use netfilter::Verdict::{Accept, Consumed};
        let (skb, state) = (pkt.skb(), pkt.state());
        let ours = self.regular_mac.load(Ordering::Relaxed);
        if ours & MAC_VALID == 0
            || state.out_ifindex() != self.regular_ifindex.load(Ordering::Relaxed)
        {
            return Accept;
        }
        let Some(proto) = state.proto() else {
            return Accept;
        };
        let Some(dst) = IpDst::of(version_of(proto), skb.head()) else {
            return Accept;
        };
        let (peer, ours_src, ours_seq) = {
            let peers = self.transparent.lock();
            let peer = self
                .others()
                .filter(|&j| peers.down & bit(j) == 0)
                .find_map(|j| match peers.addrs.get(j as usize) {
                    Some(Some(a)) if dst.is_for(a) => Some((j, a.mac)),
                    _ => None,
                });
            let ours_src = from_ours(version_of(proto), skb.head(), &peers.ours);
            (peer, ours_src, peers.ours_seq)
        };
        let Some((j, peer_mac)) = peer else {
            return Accept;
        };
        let global = &self.stats.global;
        if !ours_src {
            // From another address of ours than the one we publish: the peer would drop it.
            global.transparent_fallbacks.inc();
            return Accept;
        }
        if !may_cross(version_of(proto), skb.head()) {
            // Neighbour discovery or a redirect (or headers we cannot read): for the segment,
            // and the peer would drop it.
            global.transparent_fallbacks.inc();
            return Accept;
        }
        // Only what the regular interface would hand straight to that MAC on its segment.
        if !pkt.direct_route() || !seen(state.out_ifindex(), dst, true).may_send(&peer_mac) {
            global.transparent_unverified.inc();
            return Accept;
        }
        // Only what the peer says it takes from our published addresses: the read is once, of
        // a word any peer can write, so it only spares an honest peer frames it would drop.
        if !link::read_accepted(&self.shm, &self.geometry, j, self.me)
            .covers(ours_seq, version_of(proto))
        {
            global.transparent_unaccepted.inc();
            return Accept;
        }
        let fallback = || {
            global.transparent_fallbacks.inc();
            Accept
        };
        let (encapsulated, gso_type) = skb.gso_kind();
        if !hook_can_carry(encapsulated, gso_type) {
            // A tunnel's packet, or an offload a descriptor cannot say.
            return fallback();
        }
        let Ok(o) = skb.offload_behind(ETH_HLEN as u16) else {
            return fallback();
        };
        if o.gso_type == 0 && skb.len() > state.out_mtu() {
            // The stack fragments it for the regular interface.
            return fallback();
        }
        let meta = desc_of(&o);
        let our_mac = (ours & !MAC_VALID).to_le_bytes();
        let ethertype = match proto {
            Proto::Ipv4 => ETH_P_IP,
            Proto::Ipv6 => ETH_P_IPV6,
        }
        .to_be_bytes();
        let mut hdr = [0u8; ETH_HLEN as usize];
        hdr[..6].copy_from_slice(&peer_mac);
        hdr[6..12].copy_from_slice(&our_mac[..6]);
        hdr[12..].copy_from_slice(&ethertype);
        // Conntrack's confirm hook may come after ours: confirm now, or the connection stays
        // unconfirmed and stateful rules take its replies for new ones. (Should the packet
        // fall back after all, confirming again is a no-op.)
        match pkt.confirm() {
            netfilter::Confirm::Done => {}
            netfilter::Confirm::Leave => return fallback(),
            netfilter::Confirm::Failed => return netfilter::Verdict::Drop,
        }
        // Not from a transmit queue of ours: counted on queue 0, sent on the link's channel 0.
        let Some(d) = self.dest(j) else {
            return fallback();
        };
        let (c, Some(ch)) = self.chan_for(0, &d) else {
            return fallback();
        };
        let mut tx = ch.tx.lock();
        if tx.up & bit(j) == 0 {
            return fallback();
        }
        let sent = self.send(dev, &mut tx, 0, &d, skb, &meta, &hdr);
        self.flush(dev, &mut tx, c);
        drop(tx);
        match sent {
            Sent::Ok => {
                global.transparent_tx_packets.inc();
                Consumed
            }
            _ => fallback(),
        }
    }

    /// Transparent mode: reads our regular interface `name` and publishes its addresses
    /// when they changed (none while it is missing or down), kicking the peers so they look.
    pub(super) fn publish_regular(&self, ctl: &mut Ctl, dev: &Device, name: &CStr) {
        let (now, ifindex) = match net::iface(name) {
            Ok(i) if i.up => (
                Addrs {
                    mac: i.mac,
                    v4: i.v4,
                    v6: i.v6,
                }
                .sanitized(),
                i.ifindex,
            ),
            Ok(i) => (Addrs::default(), i.ifindex),
            Err(_) => (Addrs::default(), 0),
        };
        self.regular_ifindex.store(ifindex, Ordering::Relaxed);
        let mac = if now.is_empty() {
            0
        } else {
            mac_u64(&now.mac) | MAC_VALID
        };
        self.regular_mac.store(mac, Ordering::Relaxed);
        if now == ctl.published {
            // A repair may have published the same addresses again, with a new sequence word.
            let seq = ctl.own.published_seq();
            let mut peers = self.transparent.lock();
            if peers.ours_seq != seq {
                peers.ours_seq = seq;
            }
            return;
        }
        if ctl.own.publish_addrs(&self.shm, &now).is_err() {
            return;
        }
        ctl.published = now;
        let mut peers = self.transparent.lock();
        peers.ours = now;
        peers.ours_seq = ctl.own.published_seq();
        drop(peers);
        if now.is_empty() {
            dev_info!(
                &self.pdev,
                "{}: transparent: {} has no usable address (missing, down or unaddressed): \
                 nothing published",
                dev.name(),
                name
            );
        } else {
            dev_info!(
                &self.pdev,
                "{}: transparent: publishing {} ({} {})",
                dev.name(),
                name,
                Mac(now.mac),
                Ips(&now)
            );
        }
        self.kick_all();
    }

    /// Transparent mode: peer `j`'s link is up and it published `addrs` (`None`: nothing
    /// usable). The first claim of an address wins: a peer claiming one that another peer
    /// holds in the table (link up or down, as long as it holds its seat), or one of ours,
    /// gets no entry (logged once until it stops). A claim ends when its holder publishes
    /// other addresses or leaves its seat; publishing nothing only suspends it.
    pub(super) fn update_peer_addrs(
        &self,
        dev: &Device,
        j: u32,
        addrs: Option<Addrs>,
        ours: &Addrs,
    ) {
        let seat_of = |k: u32| layout::slot_token(&self.shm, &self.geometry, k).unwrap_or(0);
        let mut peers = self.transparent.lock();
        // First end the kept claims of peers that left their seats (each slot word read once).
        for k in self.others() {
            if peers.down & bit(k) != 0 && peers.seats.get(k as usize) != Some(&seat_of(k)) {
                release(&mut peers, k);
            }
        }
        let was = usable(&peers, j);
        let conflict = addrs.is_some_and(|a| {
            a.overlaps(ours)
                || peers
                    .addrs
                    .iter()
                    .enumerate()
                    .any(|(k, e)| k != j as usize && e.is_some_and(|e| e.overlaps(&a)))
        });
        let new = if conflict {
            if peers.refused_logged & bit(j) == 0 {
                peers.refused_logged |= bit(j);
                if let Some(missed) = self.logs.link.check(time::now_ms()) {
                    dev_warn!(
                        &self.pdev,
                        "{}: transparent: peer {} claims an address we or another peer hold; \
                         not sending to it through shared memory{}",
                        dev.name(),
                        j,
                        missed
                    );
                }
            }
            None
        } else {
            peers.refused_logged &= !bit(j);
            addrs
        };
        if addrs.is_none() && matches!(peers.addrs.get(j as usize), Some(Some(_))) {
            // Nothing published (yet: a peer whose interface comes back up publishes again on
            // its next pass, after its link is up): its claim stays, unused, as while its link
            // was down, so that nobody else's copy of it is taken in between.
            peers.down |= bit(j);
            let held = peers.addrs.get(j as usize).copied().flatten();
            drop(peers);
            if let (true, Some(a)) = (was, held) {
                self.switched(j, &a, Some("it published nothing"));
            }
            return;
        }
        peers.down &= !bit(j);
        if let Some(s) = peers.seats.get_mut(j as usize) {
            *s = seat_of(j);
        }
        let Some(slot) = peers.addrs.get_mut(j as usize) else {
            return;
        };
        let old = *slot;
        *slot = new;
        drop(peers);
        match (was, old, new) {
            (false, _, Some(a)) => self.switched(j, &a, None),
            (true, Some(a), None) => self.switched(j, &a, Some("its claim is refused")),
            _ => {}
        }
        if old != new {
            // Rate-limited with the link lines: a peer can change what it publishes at will.
            let Some(missed) = self.logs.link.check(time::now_ms()) else {
                return;
            };
            match new {
                Some(a) => dev_info!(
                    &self.pdev,
                    "{}: transparent: peer {} is {} {}{}",
                    dev.name(),
                    j,
                    Mac(a.mac),
                    Ips(&a),
                    missed
                ),
                None => dev_info!(
                    &self.pdev,
                    "{}: transparent: peer {} withdrawn{}",
                    dev.name(),
                    j,
                    missed
                ),
            }
        }
    }

    /// Transparent mode: which claims of peer `j` (whose link is up and which `published`
    /// what it did) we take frames for, to publish with [`link::Own::accept`]: those of its
    /// table entry (not refused) whose address our regular interface puts on-link with no
    /// neighbour entry giving it to another MAC, which is what [`Self::regular_target`] checks
    /// of every frame. Nothing while our regular interface is missing or down.
    pub(super) fn acceptance(&self, j: u32, published: Option<Published>) -> Accepted {
        let Some(p) = published else {
            return Accepted::default();
        };
        if self.regular_mac.load(Ordering::Relaxed) & MAC_VALID == 0 {
            return Accepted::default();
        }
        let entry = match self.transparent.lock().addrs.get(j as usize) {
            Some(e) => *e,
            None => None,
        };
        if entry != Some(p.addrs) {
            return Accepted::default();
        }
        let ifindex = self.regular_ifindex.load(Ordering::Relaxed);
        let takes = |ip: IpDst| seen(ifindex, ip, false).may_accept(&p.addrs.mac);
        Accepted {
            v4: if p.addrs.v4.is_some_and(|a| takes(IpDst::V4(a))) {
                p.seq
            } else {
                0
            },
            v6: if p.addrs.v6.is_some_and(|a| takes(IpDst::V6(a))) {
                p.seq
            } else {
                0
            },
        }
    }

    /// Transparent mode: peer `j`'s link is down, so nothing goes to it through the rings.
    /// Its claim stays while it holds the seat it claimed from, as its MAC claim does
    /// (`claim_mac`): a peer that copies its addresses gets nothing while it is merely down,
    /// paused or garbled; the claim ends once its slot word changes (it unloaded, or a
    /// staleness takeover gave its id to someone else).
    pub(super) fn withdraw(&self, j: u32) {
        let seat = layout::slot_token(&self.shm, &self.geometry, j).unwrap_or(0);
        let mut peers = self.transparent.lock();
        if !matches!(peers.addrs.get(j as usize), Some(Some(_))) {
            return;
        }
        let was = usable(&peers, j);
        let claim = peers.addrs.get(j as usize).copied().flatten();
        peers.down |= bit(j);
        let held = peers.seats.get(j as usize) == Some(&seat);
        if !held {
            release(&mut peers, j);
        }
        drop(peers);
        match (was, claim, held) {
            (true, Some(a), true) => self.switched(
                j,
                &a,
                Some("link down; its claim is kept while it holds its seat"),
            ),
            (true, Some(a), false) => self.switched(j, &a, Some("link down, left its seat")),
            (false, _, false) => {
                if let Some(missed) = self.logs.link.check(time::now_ms()) {
                    dev_info!(
                        &self.pdev,
                        "transparent: peer {} withdrawn (left its seat){}",
                        j,
                        missed
                    );
                }
            }
            _ => {}
        }
    }

    /// Transparent mode: traffic for peer `j`'s claim `a` moves into shared memory (`why` is
    /// `None`) or back to the regular interface (`why` says what took the peer away): counted,
    /// and logged with the peer and its addresses (rate-limited with the link lines: a peer
    /// can make its link flap at will).
    fn switched(&self, j: u32, a: &Addrs, why: Option<&str>) {
        let global = &self.stats.global;
        match why {
            None => global.transparent_to_shm.inc(),
            Some(_) => global.transparent_to_regular.inc(),
        }
        let Some(missed) = self.logs.link.check(time::now_ms()) else {
            return;
        };
        match why {
            None => dev_info!(
                &self.pdev,
                "transparent: peer {} ({} {}): through shared memory from now{}",
                j,
                Mac(a.mac),
                Ips(a),
                missed
            ),
            Some(why) => dev_info!(
                &self.pdev,
                "transparent: peer {} ({} {}): over the regular interface from now ({}){}",
                j,
                Mac(a.mac),
                Ips(a),
                why,
                missed
            ),
        }
    }

    /// Transparent mode: what to do with frame `f` received from peer `j`.
    pub(super) fn regular_target(&self, j: u32, f: &[u8]) -> Target {
        let ours = self.regular_mac.load(Ordering::Relaxed);
        let Some(dst) = f.get(..6).and_then(|d| <[u8; 6]>::try_from(d).ok()) else {
            return Target::Ours;
        };
        if ours & MAC_VALID == 0 || mac_u64(&dst) != ours & !MAC_VALID {
            return Target::Ours;
        }
        let peers = self.transparent.lock();
        let (Some(Some(a)), 0) = (peers.addrs.get(j as usize).copied(), peers.down & bit(j)) else {
            return Target::Refuse;
        };
        drop(peers);
        let Some(src) = published_source(f, &a) else {
            return Target::Refuse;
        };
        let version = match src {
            IpDst::V4(_) => IpVersion::V4,
            IpDst::V6(_) => IpVersion::V6,
        };
        // Neighbour discovery and redirects concern the segment: a peer's would rewrite our
        // neighbour table, on which `divert` relies.
        if !may_cross(version, f.get(ETH_HLEN as usize..).unwrap_or(&[])) {
            return Target::Refuse;
        }
        let ifindex = self.regular_ifindex.load(Ordering::Relaxed);
        if seen(ifindex, src, false).may_accept(&a.mac) {
            Target::Deliver(ifindex)
        } else {
            Target::Refuse
        }
    }
}

/// Whether packets for peer `j`'s claim go through its ring: it has one and its link is up.
fn usable(peers: &Peers, j: u32) -> bool {
    peers.down & bit(j) == 0 && matches!(peers.addrs.get(j as usize), Some(Some(_)))
}

/// Ends peer `k`'s claim (it left its seat): its addresses are free for the next claimant.
fn release(peers: &mut Peers, k: u32) {
    peers.down &= !bit(k);
    if let Some(e) = peers.addrs.get_mut(k as usize) {
        *e = None;
    }
    if let Some(s) = peers.seats.get_mut(k as usize) {
        *s = 0;
    }
}
