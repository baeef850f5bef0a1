// SPDX-License-Identifier: GPL-2.0

//! One look at a region: the header checked with [`read_geometry`], then every peer-written
//! word read once and kept as read. Nothing here trusts those words; the analysis helpers turn
//! impossible values into "garbage" flags, never into panics.

use crate::region::ReadOnlyRegion;
use ivshmem_net_protocol::frame::IpVersion;
use ivshmem_net_protocol::layout::{
    hdr, phase, read_geometry, Error, Geometry, Region, DESC_LEN, MAGIC, MAX_FRAME, MAX_QUEUES,
    RING_HDR_LEN, VERSION,
};
use ivshmem_net_protocol::link::{self, ctrl, Accepted, PeerState, Published};
use ivshmem_net_protocol::ring::{footprint, off, Desc, FRAME_ALIGN};
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Why a region is not inspected. Its `Display` is the one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than a header.
    TooShort(u64),
    /// The layout refused the header.
    Layout(Error),
    /// The header describes a region longer than the file.
    Truncated { file: u64, header: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooShort(len) => write!(
                f,
                "only {len} bytes, too short to hold an ivshmem-net header"
            ),
            Refusal::Truncated { file, header } => write!(
                f,
                "the header says the region is {header} bytes but the file has only {file}"
            ),
            Refusal::Layout(Error::BadState(s)) => match s & 3 {
                phase::EMPTY => write!(
                    f,
                    "not initialised (state word {s:#010x}: EMPTY): no peer has set it up yet"
                ),
                phase::INITIALISING => write!(
                    f,
                    "being initialised (state word {s:#010x}: INITIALISING, attempt {})",
                    s >> 2
                ),
                _ => write!(f, "unknown state word {s:#010x}: not an ivshmem-net region"),
            },
            Refusal::Layout(Error::BadMagic(m)) => write!(
                f,
                "bad magic {m:#010x} (want {MAGIC:#010x} \"IVNT\"): not an ivshmem-net region"
            ),
            Refusal::Layout(Error::BadVersion(v)) => write!(
                f,
                "layout version {v}, this tool understands version {VERSION} only"
            ),
            Refusal::Layout(Error::GeometryMismatch) => write!(
                f,
                "the header's ring and pool geometry is not the one its size and peer count give"
            ),
            Refusal::Layout(Error::TooSmall { len }) => write!(
                f,
                "the header's region size {len} is below what the layout can use"
            ),
            Refusal::Layout(Error::BadMaxPeers(n)) => {
                write!(f, "the header's max peers {n} is out of range")
            }
            Refusal::Layout(e) => write!(f, "cannot read the region: {e:?}"),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Layout(e)
    }
}

/// The header's words, as read (after [`read_geometry`] accepted them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub magic: u32,
    pub state: u32,
    pub version: u32,
    pub header_len: u32,
    pub nonce: u64,
    /// Clients the ivshmem-server has seen leave (`layout::departures`).
    pub departures: u32,
}

/// One peer's slot word and control block, each word read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u32,
    /// Slot word: 0 = free, anything else is an owner's token.
    pub token: u32,
    /// Raw state word; see [`Peer::state`].
    pub state_raw: u32,
    pub heartbeat: u32,
    pub mtu: u32,
    pub features: u32,
    /// Raw `queues` word: the peer's active channel count; see [`Peer::queues`].
    pub queues_raw: u32,
    /// Raw `vectors` word (doorbell mode); see [`Peer::vectors`].
    pub vectors_raw: u32,
    pub mac: [u8; 6],
    /// `epoch[j]` for every `j < max_peers` (own entry included, meaningless).
    pub epochs: Vec<u32>,
    /// `ack[j]` likewise.
    pub acks: Vec<u32>,
    /// Transparent mode: what the peer publishes of its regular interface (`None`: nothing
    /// usable, or the block is being rewritten, or the feature is off).
    pub transparent: Option<Published>,
    /// Transparent mode: `accept_v4[j]`/`accept_v6[j]` for every `j < max_peers`.
    pub accepted: Vec<Accepted>,
}

impl Peer {
    /// The decoded state, `None` for garbage.
    pub fn state(&self) -> Option<PeerState> {
        PeerState::try_from(self.state_raw).ok()
    }

    /// The channel count peers take from the `queues` word: itself if in `1..=g.queues`, else 1
    /// (as `link::read_peer` reads it).
    pub fn queues(&self, g: &Geometry) -> u32 {
        sane_count(self.queues_raw, g.queues)
    }

    /// The vector count peers take from the `vectors` word: itself if in `1..=MAX_QUEUES`,
    /// else 1 (as `link::read_peer` reads it).
    pub fn vectors(&self) -> u32 {
        sane_count(self.vectors_raw, MAX_QUEUES)
    }

    /// Whether the peer is anything but cleanly detached (garbage counts as present).
    pub fn present(&self) -> bool {
        self.state_raw != PeerState::Reset as u32
    }
}

/// `raw` if it is in `1..=max`, else 1.
pub fn sane_count(raw: u32, max: u32) -> u32 {
    if (1..=max).contains(&raw) {
        raw
    } else {
        1
    }
}

/// Name of a state word's value.
pub fn state_name(raw: u32) -> String {
    match PeerState::try_from(raw) {
        Ok(PeerState::Reset) => "RESET".into(),
        Ok(PeerState::Init) => "INIT".into(),
        Ok(PeerState::Ready) => "READY".into(),
        Ok(PeerState::Run) => "RUN".into(),
        Err(_) => format!("garbage({raw:#x})"),
    }
}

/// One ring's index words, the consumer's read before the producer's so that a well-behaved
/// pair never shows the consumer ahead, and the descriptors in flight between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingSample {
    pub from: u32,
    pub to: u32,
    pub queue: u32,
    pub offset: usize,
    pub cons_idx: u32,
    pub cons_event: u32,
    pub prod_idx: u32,
    pub prod_event: u32,
    /// The descriptors of indices `[cons_idx, prod_idx)`, each read once; empty when that is
    /// more than the ring holds (garbage indices).
    pub descs: Vec<Desc>,
}

/// What a [`RingSample`] means, given the ring's dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingReport {
    /// Descriptors published and not consumed (`prod_idx - cons_idx`, mod 2^32).
    pub fill: u32,
    /// Pool bytes the frames in flight take (each its length rounded up to 64), over the
    /// descriptors that are valid.
    pub bytes: u64,
    /// What is impossible about the words and descriptors; empty for a sane ring.
    pub problems: Vec<&'static str>,
}

impl RingSample {
    /// Checks the sample against a ring of `slots` descriptors whose sender's pool is
    /// `pool_len` bytes, taking frames of at most `max_frame` bytes (as a consumer would).
    pub fn report(&self, slots: u32, pool_len: u32, max_frame: u32) -> RingReport {
        let fill = self.prod_idx.wrapping_sub(self.cons_idx);
        let mut problems = Vec::new();
        if fill > slots {
            problems.push("fill exceeds the ring's slots (prod_idx/cons_idx garbage)");
        }
        let mut bytes = 0u64;
        let (mut bad_len, mut bad_pos) = (false, false);
        for d in &self.descs {
            let len_ok = d.len != 0 && d.len <= max_frame;
            let pos_ok = d.pos < pool_len && d.pos.is_multiple_of(FRAME_ALIGN);
            bad_len |= !len_ok;
            bad_pos |= !pos_ok;
            if len_ok && pos_ok {
                bytes += u64::from(footprint(d.len));
            }
        }
        if bad_len {
            problems.push("a descriptor in flight has length 0 or above the largest frame");
        }
        if bad_pos {
            problems.push("a descriptor in flight points outside its sender's pool or unaligned");
        }
        if bytes > u64::from(pool_len) {
            problems.push("the frames in flight take more than the sender's pool");
        }
        RingReport {
            fill,
            bytes,
            problems,
        }
    }
}

/// What a sender's transmit pool holds, summed over its rings to peers not RESET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    pub id: u32,
    pub offset: usize,
    pub len: u32,
    /// Frames in flight on its rings (valid descriptors only).
    pub frames: u32,
    /// Pool bytes they take.
    pub bytes: u64,
    /// Rings whose words or descriptors are impossible.
    pub bad_rings: u32,
}

/// The pool of every sender that is not RESET.
pub fn pools(s: &Snapshot) -> Vec<PoolReport> {
    let g = &s.geometry;
    let max_frame = max_frame(g);
    s.peers
        .iter()
        .filter(|p| p.present())
        .filter_map(|p| {
            let offset = g.pool_offset(p.id).ok()?;
            let mut rep = PoolReport {
                id: p.id,
                offset,
                len: g.pool_len,
                frames: 0,
                bytes: 0,
                bad_rings: 0,
            };
            for rs in s.rings.iter().filter(|rs| rs.from == p.id) {
                let r = rs.report(g.ring_slots, g.pool_len, max_frame);
                if !r.problems.is_empty() {
                    rep.bad_rings += 1;
                }
                rep.frames += rs
                    .descs
                    .iter()
                    .filter(|d| {
                        d.len != 0
                            && d.len <= max_frame
                            && d.pos < g.pool_len
                            && d.pos.is_multiple_of(FRAME_ALIGN)
                    })
                    .count() as u32;
                rep.bytes += r.bytes;
            }
            Some(rep)
        })
        .collect()
}

/// The largest frame a ring of geometry `g` carries (as `Ring::max_frame`).
pub fn max_frame(g: &Geometry) -> u32 {
    (g.pool_len / 2).min(MAX_FRAME)
}

/// Everything read in one look.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub geometry: Geometry,
    pub header: Header,
    pub peers: Vec<Peer>,
    /// Rings of every queue between every ordered pair of present peers.
    pub rings: Vec<RingSample>,
    pub at: Instant,
}

/// Checks the header and reads everything once.
pub fn take(r: &ReadOnlyRegion) -> Result<Snapshot, Refusal> {
    if (r.len() as u64) < ivshmem_net_protocol::layout::HEADER_LEN as u64 {
        return Err(Refusal::TooShort(r.file_len()));
    }
    let g = read_geometry(r)?;
    if g.region_len > r.len() as u64 {
        return Err(Refusal::Truncated {
            file: r.file_len(),
            header: g.region_len,
        });
    }
    let header = Header {
        magic: r.load(hdr::MAGIC)?,
        state: r.load(hdr::STATE)?,
        version: r.load(hdr::VERSION)?,
        header_len: r.load(hdr::HEADER_LEN)?,
        nonce: u64::from(r.load(hdr::NONCE_LO)?) | u64::from(r.load(hdr::NONCE_HI)?) << 32,
        departures: r.load(hdr::DEPARTURES)?,
    };
    let mut peers = Vec::with_capacity(g.max_peers as usize);
    for id in 0..g.max_peers {
        let base = g.ctrl_offset(id)?;
        let word = |o: usize| r.load(base + o);
        let lo = word(ctrl::MAC_LO)?.to_le_bytes();
        let hi = word(ctrl::MAC_HI)?.to_le_bytes();
        let mut epochs = Vec::with_capacity(g.max_peers as usize);
        let mut acks = Vec::with_capacity(g.max_peers as usize);
        for j in 0..g.max_peers as usize {
            epochs.push(word(ctrl::EPOCH + 4 * j)?);
            acks.push(word(ctrl::ACK + 4 * j)?);
        }
        let accepted = (0..g.max_peers)
            .map(|j| link::read_accepted(r, &g, id, j))
            .collect();
        peers.push(Peer {
            id,
            token: r.load(hdr::PEER_SLOTS + 4 * id as usize)?,
            state_raw: word(ctrl::STATE)?,
            heartbeat: word(ctrl::HEARTBEAT)?,
            mtu: word(ctrl::MTU)?,
            features: word(ctrl::FEATURES)?,
            queues_raw: word(ctrl::QUEUES)?,
            vectors_raw: word(ctrl::VECTORS)?,
            mac: [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]],
            epochs,
            acks,
            transparent: link::read_addrs(r, &g, id),
            accepted,
        });
    }
    let mut rings = Vec::new();
    for a in peers.iter().filter(|p| p.present()) {
        for b in peers.iter().filter(|p| p.present() && p.id != a.id) {
            for queue in 0..g.queues {
                rings.push(sample_ring(r, &g, a.id, b.id, queue)?);
            }
        }
    }
    Ok(Snapshot {
        geometry: g,
        header,
        peers,
        rings,
        at: Instant::now(),
    })
}

/// Reads ring `queue` from `from` to `to`: its words once each, then the descriptors in flight.
fn sample_ring(
    r: &ReadOnlyRegion,
    g: &Geometry,
    from: u32,
    to: u32,
    queue: u32,
) -> Result<RingSample, Refusal> {
    let base = g.ring_offset(from, to, queue)?;
    let word = |o: usize| r.load(base + o);
    let cons_idx = word(off::CONS_IDX)?;
    let cons_event = word(off::CONS_EVENT)?;
    let prod_idx = word(off::PROD_IDX)?;
    let prod_event = word(off::PROD_EVENT)?;
    let fill = prod_idx.wrapping_sub(cons_idx);
    let mut descs = Vec::new();
    if fill <= g.ring_slots {
        let first = base + RING_HDR_LEN as usize;
        for k in 0..fill {
            let slot = (cons_idx.wrapping_add(k) & (g.ring_slots - 1)) as usize;
            let mut raw = [0u8; DESC_LEN as usize];
            r.read(first + slot * DESC_LEN as usize, &mut raw)?;
            descs.push(Desc::decode(&raw));
        }
    }
    Ok(RingSample {
        from,
        to,
        queue,
        offset: base,
        cons_idx,
        cons_event,
        prod_idx,
        prod_event,
        descs,
    })
}

/// The handshake as seen from outside, for a pair of present peers `a < b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub a: u32,
    pub b: u32,
    /// `a.ack[b] == b.epoch[a]`.
    pub a_acked: bool,
    /// `b.ack[a] == a.epoch[b]`.
    pub b_acked: bool,
    /// Both acknowledged and both in RUN: the link is (or is about to be) up on both sides,
    /// heartbeats permitting.
    pub up: bool,
}

/// The handshake of every pair of present peers.
pub fn links(s: &Snapshot) -> Vec<LinkReport> {
    let present: Vec<&Peer> = s.peers.iter().filter(|p| p.present()).collect();
    let mut out = Vec::new();
    for (i, a) in present.iter().enumerate() {
        for b in &present[i + 1..] {
            let (ai, bi) = (a.id as usize, b.id as usize);
            let a_acked = a.acks[bi] == b.epochs[ai];
            let b_acked = b.acks[ai] == a.epochs[bi];
            let run = a.state() == Some(PeerState::Run) && b.state() == Some(PeerState::Run);
            out.push(LinkReport {
                a: a.id,
                b: b.id,
                a_acked,
                b_acked,
                up: a_acked && b_acked && run,
            });
        }
    }
    out
}

/// Whether a peer's heartbeat moved between samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It moved by `delta` over `over`.
    Beating { delta: u32, over: Duration },
    /// It has held its value for at least this long.
    Stale { at_least: Duration },
}

/// Heartbeat history per peer id across samples (two for a one-shot look, one per refresh when
/// watching).
#[derive(Debug, Default)]
pub struct Tracker {
    /// Per peer id: last value, when it was first seen with that value, when last sampled.
    seen: HashMap<u32, (u32, Instant, Instant)>,
    nonce: Option<u64>,
    /// Latest verdict per peer id.
    verdicts: HashMap<u32, Liveness>,
}

impl Tracker {
    /// Feeds one snapshot; a changed nonce (the region was set up again) forgets the history.
    pub fn update(&mut self, s: &Snapshot) {
        if self.nonce != Some(s.header.nonce) {
            self.seen.clear();
            self.verdicts.clear();
            self.nonce = Some(s.header.nonce);
        }
        for p in &s.peers {
            let verdict = match self.seen.get(&p.id).copied() {
                None => {
                    self.seen.insert(p.id, (p.heartbeat, s.at, s.at));
                    Liveness::Stale {
                        at_least: Duration::ZERO,
                    }
                }
                Some((hb, _, last)) if hb != p.heartbeat => {
                    self.seen.insert(p.id, (p.heartbeat, s.at, s.at));
                    Liveness::Beating {
                        delta: p.heartbeat.wrapping_sub(hb),
                        over: s.at.saturating_duration_since(last),
                    }
                }
                Some((hb, since, _)) => {
                    self.seen.insert(p.id, (hb, since, s.at));
                    Liveness::Stale {
                        at_least: s.at.saturating_duration_since(since),
                    }
                }
            };
            self.verdicts.insert(p.id, verdict);
        }
    }

    /// The latest verdict for peer `id`.
    pub fn liveness(&self, id: u32) -> Liveness {
        self.verdicts.get(&id).copied().unwrap_or(Liveness::Stale {
            at_least: Duration::ZERO,
        })
    }
}

/// Transparent mode: the IP versions of peer `j`'s current claim that peer `p` accepts
/// (its acceptance words hold `j`'s current sequence word), or `None` if it accepts neither.
pub fn accepts(p: &Peer, j: &Peer) -> Option<(bool, bool)> {
    let published = j.transparent?;
    let a = p.accepted.get(j.id as usize)?;
    let v4 = a.covers(published.seq, IpVersion::V4);
    let v6 = a.covers(published.seq, IpVersion::V6);
    (v4 || v6).then_some((v4, v6))
}
