// SPDX-License-Identifier: GPL-2.0

//! The attacks, one [`Kind`] each: random scribbles on one area of the region, and crafted
//! writes of values that sit on the edges of what a peer validates.
//!
//! One attack is one "write" in the counts and in `--rate`, although a few take several stores
//! (a forged frame is its data in the sender's pool, its descriptor and `prod_idx`). Values relative
//! to what is in the region (say, `prod_idx` just past `cons_idx + slots`) are computed from a
//! fresh read of the words involved; all arithmetic on them wraps, as the ring's does.

use ivshmem_net_protocol::frame::{max_len, ETH_HLEN, MAX_MTU, MIN_GSO_SIZE, VLAN_HLEN};
use ivshmem_net_protocol::layout::{
    hdr, Error, Region, HEADER_LEN, MAGIC, MAX_PEERS, MAX_QUEUES, RING_HDR_LEN,
};
use ivshmem_net_protocol::link::{ctrl, feature, PeerState};
use ivshmem_net_protocol::ring::{footprint, off, Desc, FRAME_ALIGN};
use std::ops::Range;

use crate::rng::Rng;
use crate::target::{RingAt, Targets};

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// One attack.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $kind,)*
        }

        impl Kind {
            /// Every kind, in declaration order (the order of [`Kind::index`]).
            pub const ALL: &'static [Kind] = &[$(Kind::$kind,)*];

            /// The kind's name in the summary.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)*
                }
            }
        }
    };
}

kinds! {
    /// Random bytes or a random word in the header (mostly its used first 0x200 bytes).
    RandomHeader = "random-header",
    /// Random bytes or a random word in a control block (mostly its used first 0x240 bytes).
    RandomCtrl = "random-ctrl",
    /// Random bytes or a random word in a ring's 256-byte index area.
    RandomRingHeader = "random-ring-header",
    /// Random bytes or a random word over a descriptor (often the next one to be consumed).
    RandomDesc = "random-desc",
    /// Random bytes or a random word in a sender's transmit pool, often over a frame in flight.
    RandomPool = "random-pool",
    /// Random bytes or a random word anywhere in the used part of the region.
    RandomAnywhere = "random-anywhere",

    /// Header magic not `IVNT`.
    HdrMagic = "hdr-magic",
    /// Header layout version 0, 2, ...
    HdrVersion = "hdr-version",
    /// One geometry field absurd or off by a little (max peers 0/1/1000, ring slots 0, pool
    /// length, pools offset, queues 0/3/16, ...).
    HdrGeometry = "hdr-geometry",
    /// Header state word EMPTY, INITIALISING, an impossible phase.
    HdrState = "hdr-state",
    /// A new nonce, as if the region had been reinitialised.
    HdrNonce = "hdr-nonce",
    /// The `departures` word moved (one more, or a random value), as if a client had left:
    /// every doorbell-mode guest asks its linked peers for a sign of life.
    HdrDepartures = "hdr-departures",
    /// A peer slot token zeroed: the id looks free.
    SlotZero = "slot-zero",
    /// A peer slot token replaced (random, all ones, another slot's token).
    SlotGarbage = "slot-garbage",

    /// A control block's state word: a real state or garbage.
    CtrlState = "ctrl-state",
    /// A whole control block claiming RUN with garbage epochs, acks, MAC, MTU, features and
    /// doorbell id, and a beating heartbeat.
    CtrlFakeRun = "ctrl-fake-run",
    /// One `epoch[j]`: 0, 1, all ones, one more than now.
    CtrlEpoch = "ctrl-epoch",
    /// One `ack[j]`: garbage, or exactly `j`'s epoch (a forged handshake).
    CtrlAck = "ctrl-ack",
    /// MAC: zero, broadcast, multicast, another peer's.
    CtrlMac = "ctrl-mac",
    /// MTU: 0, 1, 67, 65536, all ones.
    CtrlMtu = "ctrl-mtu",
    /// Feature bits: all, none, unknown ones, doorbell flipped.
    CtrlFeatures = "ctrl-features",
    /// Doorbell id: above 16 bits, all ones, the victim's own.
    CtrlDoorbell = "ctrl-doorbell",
    /// Channel count or vector count (issue 19): 0, above the region's queues or 8, all ones,
    /// or another legal count (a peer changing its count without restarting its links).
    CtrlQueues = "ctrl-queues",
    /// Heartbeat set to one fixed value (chosen per run): frozen, as far as this writer goes.
    HeartbeatFreeze = "heartbeat-freeze",
    /// Heartbeat jumping far forward or one step back.
    HeartbeatJump = "heartbeat-jump",

    /// `prod_idx` more than a ring ahead of `cons_idx`.
    ProdAhead = "prod-ahead",
    /// `prod_idx` behind `cons_idx` (wrapped).
    ProdBehind = "prod-behind",
    /// `prod_idx` jumping forward by 1 to a whole ring without new descriptors: the consumer
    /// reads stale descriptors, which still point into the sender's pool.
    ProdJump = "prod-jump",
    /// `cons_idx` beyond `prod_idx`, or more than a ring behind it.
    ConsBeyond = "cons-beyond",
    /// `cons_idx` moved back (by 1, a ring, half the index space): the producer must not take
    /// it as frames consumed, nor free pool bytes for it.
    ConsBack = "cons-back",
    /// `prod_event` or `cons_event` garbage or on the edges of the kick window.
    EventGarbage = "event-garbage",

    /// A descriptor with length 0.
    DescLenZero = "desc-len-zero",
    /// A descriptor longer than the ring's largest frame (the whole pool, 2^31, all ones).
    DescLenHuge = "desc-len-huge",
    /// A well-placed plain frame longer than any MTU allows, without segmentation offload.
    DescLenMtu = "desc-len-mtu",
    /// A descriptor whose frame starts outside the sender's pool (at its length, past it,
    /// 2^31, anywhere above it).
    DescPosOutside = "desc-pos-outside",
    /// A descriptor whose frame starts off the 64-byte frame alignment.
    DescPosUnaligned = "desc-pos-unaligned",
    /// A frame starting in the last 64 bytes of the sender's pool and running on at its start:
    /// legal (a frame may wrap once), so the receiver must copy it in two pieces.
    DescWrap = "desc-wrap",
    /// A well-placed frame with garbage offload fields: checksum start/offset past the frame,
    /// segmentation with gso_size 0 or an unknown gso type, unknown flags, hdr_len past the frame.
    DescOffload = "desc-offload",
    /// Random bytes over the first bytes of a frame in flight, in its sender's pool (its
    /// descriptor untouched: the ring checks pass, the headers are garbage).
    PoolGarbage = "pool-garbage",
    /// A well-placed frame with hostile contents: runts shorter than an Ethernet header,
    /// random ethertypes, broadcast, the victim's own MAC as source.
    FrameInject = "frame-inject",
    /// A well-placed plain frame (no segmentation offload) just over, or far over, the
    /// receiver's MTU with an Ethernet header and a VLAN tag: dropped as oversize.
    FrameOverMtu = "frame-over-mtu",
    /// A well-placed TCP segmentation-offload frame just over, or far over, the largest one a
    /// receiver advertises (64 KiB and headers, or less on a small ring): dropped as oversize.
    FrameOverGsoMax = "frame-over-gso-max",
    /// A well-placed TCP segmentation-offload frame with a `gso_size` of 0 or below the
    /// kernel's minimum segment (8): dropped as oversize.
    FrameGsoSizeSmall = "frame-gso-size-small",
}

impl Kind {
    /// The random-mode kinds.
    pub const RANDOM: &'static [Kind] = Kind::ALL.split_at(6).0;
    /// The crafted-mode kinds, in the order crafted mode cycles through them.
    pub const CRAFTED: &'static [Kind] = Kind::ALL.split_at(6).1;

    /// Position in [`Kind::ALL`], for counting.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Descriptor flag `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const NEEDS_CSUM: u16 = 1;
/// Descriptor flag `VIRTIO_NET_HDR_F_DATA_VALID`.
const DATA_VALID: u16 = 2;
/// Known gso types (virtio): TCPv4, UDP, TCPv6, UDP_L4, TCPv4 with ECN.
const GSO_TYPES: [u8; 5] = [1, 3, 4, 5, 0x81];
/// The TCP gso types (virtio): TCPv4, TCPv6, TCPv4 with ECN.
const TCP_GSO_TYPES: [u8; 3] = [1, 4, 0x81];
/// Values around every boundary a `u32` check has.
const WORD_EDGES: [u32; 7] = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, u32::MAX];
/// Bytes of a frame the attacks fill in: the headers; what follows is left as it was.
const FILL_MAX: u32 = 128;

/// What an attack works with.
pub struct Ctx<'a, R: Region + ?Sized> {
    /// The region under attack.
    pub r: &'a R,
    /// Where things are.
    pub t: &'a Targets,
    /// The storm's generator.
    pub rng: &'a mut Rng,
    /// The heartbeat value `heartbeat-freeze` writes.
    pub frozen: u32,
}

/// Carries out one attack of kind `k`.
pub fn run<R: Region + ?Sized>(c: &mut Ctx<'_, R>, k: Kind) -> Result<(), Error> {
    match k {
        Kind::RandomHeader => {
            let end = if c.rng.chance(3, 4) {
                hdr::PEER_SLOTS + 4 * MAX_PEERS as usize
            } else {
                HEADER_LEN as usize
            };
            scribble(c, 0, end)
        }
        Kind::RandomCtrl => {
            let base = c.t.ctrl(c.t.peer(c.rng));
            let len = if c.rng.chance(3, 4) {
                ctrl::ACK + 4 * MAX_PEERS as usize
            } else {
                c.t.geometry.ctrl_stride as usize
            };
            scribble(c, base, base + len)
        }
        Kind::RandomRingHeader => {
            let base = c.t.ring(c.rng).word(0);
            let (lo, hi) = match c.rng.below(4) {
                0 => (off::PROD_IDX, off::PROD_EVENT + 4),
                1 => (off::CONS_IDX, off::CONS_EVENT + 4),
                _ => (0, RING_HDR_LEN as usize),
            };
            scribble(c, base + lo, base + hi)
        }
        Kind::RandomDesc => {
            let ra = c.t.ring(c.rng);
            let idx = if c.rng.chance(1, 2) {
                c.r.load(ra.word(off::CONS_IDX))?
                    .wrapping_add(c.rng.below32(4))
            } else {
                c.rng.next_u32()
            };
            let at = ra.desc(idx);
            scribble(c, at, at + 32)
        }
        Kind::RandomPool => {
            let ra = c.t.ring(c.rng);
            if c.rng.chance(1, 2) {
                if let Some(at) = in_flight(c, &ra)? {
                    return scribble(c, at.start, at.end);
                }
            }
            let pool = ra.pool();
            scribble(c, pool.start, pool.end)
        }
        Kind::RandomAnywhere => scribble(c, 0, c.t.used_end),

        Kind::HdrMagic => {
            let v = c
                .rng
                .edge(&[0, MAGIC.swap_bytes(), MAGIC ^ 1, MAGIC ^ 0x8000_0000]);
            c.r.store(hdr::MAGIC, v)
        }
        Kind::HdrVersion => {
            let v = c.rng.edge(&[0, 1, 3, u32::MAX]);
            c.r.store(hdr::VERSION, v)
        }
        Kind::HdrGeometry => hdr_geometry(c),
        Kind::HdrState => {
            let attempt = c.r.load(hdr::STATE)? & !3;
            let v = c.rng.edge(&[0, attempt | 1, attempt | 3, 3, 1]);
            c.r.store(hdr::STATE, v)
        }
        Kind::HdrNonce => {
            let v = c.rng.next_u32();
            let at = c.rng.pick(&[hdr::NONCE_LO, hdr::NONCE_HI]);
            c.r.store(at, v)
        }
        Kind::HdrDepartures => {
            let now = c.r.load(hdr::DEPARTURES)?;
            let v = if c.rng.next_u32() & 1 == 0 {
                now.wrapping_add(1)
            } else {
                c.rng.next_u32()
            };
            c.r.store(hdr::DEPARTURES, v)
        }
        Kind::SlotZero => {
            let j = c.t.peer(c.rng);
            c.r.store(slot(j), 0)
        }
        Kind::SlotGarbage => {
            let j = c.t.peer(c.rng);
            let other = c.r.load(slot(c.t.other(c.rng, j)))?;
            let v = c.rng.edge(&[u32::MAX, 1, other]);
            c.r.store(slot(j), v)
        }

        Kind::CtrlState => {
            let base = c.t.ctrl(c.t.peer(c.rng));
            let v = c.rng.edge(&[
                PeerState::Reset as u32,
                PeerState::Init as u32,
                PeerState::Ready as u32,
                PeerState::Run as u32,
                4,
                u32::MAX,
            ]);
            c.r.store(base + ctrl::STATE, v)
        }
        Kind::CtrlFakeRun => fake_run(c),
        Kind::CtrlEpoch => {
            let i = c.t.peer(c.rng);
            let j = c.t.other(c.rng, i);
            let at = c.t.ctrl(i) + ctrl::EPOCH + 4 * j as usize;
            let next = c.r.load(at)?.wrapping_add(1);
            let v = c.rng.edge(&[0, 1, u32::MAX, next]);
            c.r.store(at, v)
        }
        Kind::CtrlAck => {
            let i = c.t.peer(c.rng);
            let j = c.t.other(c.rng, i);
            let theirs = c.r.load(c.t.ctrl(j) + ctrl::EPOCH + 4 * i as usize)?;
            let v = c
                .rng
                .edge(&[0, 1, u32::MAX, theirs, theirs, theirs.wrapping_add(1)]);
            c.r.store(c.t.ctrl(i) + ctrl::ACK + 4 * j as usize, v)
        }
        Kind::CtrlMac => {
            let i = c.t.peer(c.rng);
            let j = c.t.other(c.rng, i);
            let (lo, hi) = match c.rng.below(5) {
                0 => (0, 0),
                1 => (u32::MAX, 0xffff),
                // 01:00:5e:xx:xx:xx, an IPv4 multicast MAC.
                2 => (
                    0x005e_0001 | (c.rng.next_u32() & 0xff00_0000),
                    c.rng.next_u32() & 0xffff,
                ),
                3 => (
                    c.r.load(c.t.ctrl(j) + ctrl::MAC_LO)?,
                    c.r.load(c.t.ctrl(j) + ctrl::MAC_HI)?,
                ),
                _ => (c.rng.next_u32(), c.rng.next_u32()),
            };
            let base = c.t.ctrl(i);
            c.r.store(base + ctrl::MAC_LO, lo)?;
            c.r.store(base + ctrl::MAC_HI, hi)
        }
        Kind::CtrlMtu => {
            let base = c.t.ctrl(c.t.peer(c.rng));
            let v = c.rng.edge(&[0, 1, 67, 68, 65535, 65536, u32::MAX]);
            c.r.store(base + ctrl::MTU, v)
        }
        Kind::CtrlFeatures => {
            let base = c.t.ctrl(c.t.peer(c.rng));
            let now = c.r.load(base + ctrl::FEATURES)?;
            let v = c.rng.edge(&[
                u32::MAX,
                0,
                !(feature::DOORBELL | feature::CSUM | feature::GSO),
                now ^ feature::DOORBELL,
                feature::CSUM | feature::GSO,
            ]);
            c.r.store(base + ctrl::FEATURES, v)
        }
        Kind::CtrlDoorbell => {
            let i = c.t.peer(c.rng);
            let v = c.rng.edge(&[u32::MAX, 0x1_0000, 0xffff, 0, i]);
            c.r.store(c.t.ctrl(i) + ctrl::DOORBELL_ID, v)
        }
        Kind::CtrlQueues => {
            let i = c.t.peer(c.rng);
            let q = c.t.geometry.queues;
            let (word, edges) = if c.rng.chance(1, 2) {
                (ctrl::QUEUES, [0, q + 1, u32::MAX, 1, q])
            } else {
                (ctrl::VECTORS, [0, MAX_QUEUES + 1, u32::MAX, 1, 2])
            };
            let v = c.rng.edge(&edges);
            c.r.store(c.t.ctrl(i) + word, v)
        }
        Kind::HeartbeatFreeze => {
            let base = c.t.ctrl(c.t.peer(c.rng));
            c.r.store(base + ctrl::HEARTBEAT, c.frozen)
        }
        Kind::HeartbeatJump => {
            let at = c.t.ctrl(c.t.peer(c.rng)) + ctrl::HEARTBEAT;
            let now = c.r.load(at)?;
            let step = c.rng.edge(&[0x8000_0000, u32::MAX, 1_000_000, 0]);
            c.r.store(at, now.wrapping_add(step))
        }

        Kind::ProdAhead => {
            let ra = c.t.ring(c.rng);
            let cons = c.r.load(ra.word(off::CONS_IDX))?;
            let beyond = c.rng.edge(&[1, 2, 0x8000_0000 - ra.ring.slots()]);
            let v = cons
                .wrapping_add(ra.ring.slots())
                .wrapping_add(beyond.max(1));
            c.r.store(ra.word(off::PROD_IDX), v)
        }
        Kind::ProdBehind => {
            let ra = c.t.ring(c.rng);
            let cons = c.r.load(ra.word(off::CONS_IDX))?;
            let back = 1 + c.rng.below32(ra.ring.slots());
            c.r.store(ra.word(off::PROD_IDX), cons.wrapping_sub(back))
        }
        Kind::ProdJump => {
            let ra = c.t.ring(c.rng);
            let prod = c.r.load(ra.word(off::PROD_IDX))?;
            let cons = c.r.load(ra.word(off::CONS_IDX))?;
            // Up to exactly a ring ahead of the consumer: the index check passes.
            let room = ra
                .ring
                .slots()
                .saturating_sub(prod.wrapping_sub(cons))
                .max(1);
            let some = 1 + c.rng.below32(room);
            let step = c.rng.edge(&[1, 2, room, some]);
            c.r.store(ra.word(off::PROD_IDX), prod.wrapping_add(step))
        }
        Kind::ConsBeyond => {
            let ra = c.t.ring(c.rng);
            let prod = c.r.load(ra.word(off::PROD_IDX))?;
            let v = c.rng.edge(&[
                prod.wrapping_add(1),
                prod.wrapping_add(ra.ring.slots()),
                prod.wrapping_sub(ra.ring.slots()).wrapping_sub(1),
                prod.wrapping_add(0x8000_0000),
            ]);
            c.r.store(ra.word(off::CONS_IDX), v)
        }
        Kind::ConsBack => {
            let ra = c.t.ring(c.rng);
            let cons = c.r.load(ra.word(off::CONS_IDX))?;
            let back = c.rng.edge(&[1, 2, ra.ring.slots(), 0x8000_0000]);
            c.r.store(ra.word(off::CONS_IDX), cons.wrapping_sub(back))
        }
        Kind::EventGarbage => {
            let ra = c.t.ring(c.rng);
            let prod = c.r.load(ra.word(off::PROD_IDX))?;
            let cons = c.r.load(ra.word(off::CONS_IDX))?;
            let at = c.rng.pick(&[off::PROD_EVENT, off::CONS_EVENT]);
            let v = c.rng.edge(&[
                0,
                u32::MAX,
                prod,
                prod.wrapping_sub(1),
                cons.wrapping_add(1),
                prod.wrapping_add(0x8000_0000),
            ]);
            c.r.store(ra.word(at), v)
        }

        Kind::DescLenZero => forge(c, |_, _, d| d.len = 0),
        Kind::DescLenHuge => forge(c, |rng, ra, d| {
            let pool = ra.ring.pool_len();
            d.len = rng.pick(&[ra.ring.max_frame() + 1, pool, 0x8000_0000, u32::MAX]);
        }),
        Kind::DescLenMtu => {
            let ra = c.t.ring(c.rng);
            let mtu = c.r.load(c.t.ctrl(ra.to) + ctrl::MTU)?;
            let max = ra.ring.max_frame();
            let len = c
                .rng
                .pick(&[mtu.wrapping_add(15), 9018, 65535, max])
                .clamp(1, max);
            frame(c, ra, len, false)
        }
        Kind::DescPosOutside => forge(c, |rng, ra, d| {
            let pool = ra.ring.pool_len();
            // Aligned, at or above the pool's length: only the bounds check can catch it.
            let above = (pool + rng.below32(u32::MAX - pool)) & !(FRAME_ALIGN - 1);
            d.pos = rng.pick(&[
                pool,
                pool.saturating_add(d.pos % pool),
                0x8000_0000,
                !(FRAME_ALIGN - 1),
                above.max(pool),
            ]);
        }),
        Kind::DescPosUnaligned => forge(c, |rng, _, d| {
            d.pos = d.pos.wrapping_add(1 + rng.below32(FRAME_ALIGN - 1));
        }),
        Kind::DescWrap => {
            // The last frame slot of the pool, with a frame that runs past its end.
            let ra = c.t.ring(c.rng);
            let len = FRAME_ALIGN + 1 + c.rng.below32(ra.ring.max_frame() - FRAME_ALIGN);
            let pos = ra.ring.pool_len() - FRAME_ALIGN;
            frame_at(c, ra, pos, len.min(ra.ring.max_frame()))
        }
        Kind::DescOffload => {
            let ra = c.t.ring(c.rng);
            let len = 54 + c.rng.below32(1461);
            frame(c, ra, len.min(ra.ring.max_frame()), true)
        }
        Kind::PoolGarbage => {
            let ra = c.t.ring(c.rng);
            match in_flight(c, &ra)? {
                Some(at) => {
                    let n = at.len().min(1 + c.rng.index(64));
                    let mut buf = [0u8; 64];
                    let buf = &mut buf[..n];
                    c.rng.fill(buf);
                    c.r.write(at.start, buf)
                }
                // Nothing in flight there: garbage where the next frame would go.
                None => {
                    let pos = next_pos(c, &ra)?;
                    let at = ra.ring.pool() + pos as usize;
                    let n = (ra.ring.pool_len() - pos).min(64) as usize;
                    let mut buf = [0u8; 64];
                    let buf = &mut buf[..n];
                    c.rng.fill(buf);
                    c.r.write(at, buf)
                }
            }
        }
        Kind::FrameInject => {
            let ra = c.t.ring(c.rng);
            let len = match c.rng.below(4) {
                0 => 1 + c.rng.below32(13),
                1 => 14 + c.rng.below32(47),
                2 => 60 + c.rng.below32(1455),
                _ => 1 + c.rng.below32(ra.ring.max_frame()),
            };
            frame(c, ra, len.min(ra.ring.max_frame()), false)
        }
        Kind::FrameOverMtu | Kind::FrameOverGsoMax | Kind::FrameGsoSizeSmall => {
            let ra = c.t.ring(c.rng);
            oversize(c, ra, k)
        }
    }
}

/// One of the oversize frame kinds `k` into the ring `ra`: well placed and published, so the
/// ring checks pass, but a frame the receiver's `frame::rx_verdict` refuses (unless the ring
/// is too small to hold one over the limit; in place, only the offload fields change).
fn oversize<R: Region + ?Sized>(c: &mut Ctx<'_, R>, ra: RingAt, k: Kind) -> Result<(), Error> {
    let mtu = c.r.load(c.t.ctrl(ra.to) + ctrl::MTU)?;
    let max = ra.ring.max_frame();
    match k {
        Kind::FrameOverMtu => {
            let over = mtu.saturating_add(ETH_HLEN + VLAN_HLEN + 1);
            let far = over.saturating_add(c.rng.below32(4096));
            let len = c.rng.pick(&[over, far, 65536 + 19, max]).clamp(1, max);
            frame_with(c, ra, len, |_, _| {})
        }
        Kind::FrameOverGsoMax => {
            let over = max_len(mtu.min(MAX_MTU), max).saturating_add(1);
            let far = over.saturating_add(c.rng.below32(65536));
            let len = c.rng.pick(&[over, far, 128 << 10, max]).clamp(1, max);
            frame_with(c, ra, len, |rng, d| {
                d.gso_type = rng.pick(&TCP_GSO_TYPES);
                d.gso_size = rng.pick(&[536, 1448, 8948]);
                tcp_offload(d);
            })
        }
        _ => {
            let len = (54 + c.rng.below32(9000)).min(max);
            frame_with(c, ra, len, |rng, d| {
                d.gso_type = rng.pick(&GSO_TYPES);
                d.gso_size = rng.below32(u32::from(MIN_GSO_SIZE)) as u16;
                tcp_offload(d);
            })
        }
    }
}

/// The rest of a TCP segmentation frame's offload fields, as a sane sender sets them (IPv4
/// without options, no TCP options), so that only the length or `gso_size` is wrong.
fn tcp_offload(d: &mut Desc) {
    d.flags = NEEDS_CSUM;
    d.csum_start = (ETH_HLEN + 20) as u16;
    d.csum_offset = 16;
    d.hdr_len = (ETH_HLEN + 20 + 20) as u16;
}

/// Region offset of peer slot `j`.
fn slot(j: u32) -> usize {
    hdr::PEER_SLOTS + 4 * j as usize
}

/// Random bytes (1 to 64 of them), or one time in eight an aligned random or edge word, at a
/// random offset in `[lo, hi)`; the bytes stop at the end of the used region.
fn scribble<R: Region + ?Sized>(c: &mut Ctx<'_, R>, lo: usize, hi: usize) -> Result<(), Error> {
    let hi = hi.min(c.t.used_end);
    let at = lo + c.rng.index(hi.saturating_sub(lo));
    if c.rng.chance(1, 8) {
        let v = c.rng.edge(&WORD_EDGES);
        return c.r.store(at & !3, v);
    }
    let len = (1 + c.rng.index(64)).min(c.t.used_end - at);
    let mut buf = [0u8; 64];
    let buf = &mut buf[..len];
    c.rng.fill(buf);
    c.r.write(at, buf)
}

fn hdr_geometry<R: Region + ?Sized>(c: &mut Ctx<'_, R>) -> Result<(), Error> {
    let g = c.t.geometry;
    let (at, edges): (usize, [u32; 4]) = match c.rng.below(11) {
        0 => (hdr::MAX_PEERS, [0, 1, 1000, MAX_PEERS + 1]),
        1 => (
            hdr::RING_SLOTS,
            [0, 3, g.ring_slots.wrapping_mul(2), u32::MAX],
        ),
        2 => (
            hdr::POOL_LEN,
            [
                0,
                g.pool_len.wrapping_sub(FRAME_ALIGN),
                g.pool_len.wrapping_mul(2),
                0x8000_0000,
            ],
        ),
        9 => (
            hdr::POOLS_OFFSET,
            [
                0,
                g.rings_offset,
                g.pools_offset.wrapping_add(4096),
                u32::MAX,
            ],
        ),
        10 => (hdr::QUEUES, [0, 3, g.queues.wrapping_mul(2), 16]),
        3 => (
            hdr::RING_STRIDE,
            [
                0,
                g.ring_stride.wrapping_sub(4096),
                g.ring_stride.wrapping_add(4096),
                u32::MAX,
            ],
        ),
        4 => (
            hdr::CTRL_OFFSET,
            [0, g.ctrl_offset.wrapping_add(4), g.rings_offset, u32::MAX],
        ),
        5 => (
            hdr::CTRL_STRIDE,
            [0, 4, g.ctrl_stride.wrapping_mul(2), u32::MAX],
        ),
        6 => (
            hdr::RINGS_OFFSET,
            [
                0,
                g.ctrl_offset,
                g.rings_offset.wrapping_add(4096),
                u32::MAX,
            ],
        ),
        7 => (
            hdr::SIZE_LO,
            [0, (g.region_len as u32).wrapping_mul(2), 4096, u32::MAX],
        ),
        _ => (
            c.rng.pick(&[hdr::SIZE_HI, hdr::HEADER_LEN]),
            [0, 1, HEADER_LEN + 4, u32::MAX],
        ),
    };
    let v = c.rng.edge(&edges);
    c.r.store(at, v)
}

/// A control block claiming RUN, everything else garbage; its heartbeat advances each time.
fn fake_run<R: Region + ?Sized>(c: &mut Ctx<'_, R>) -> Result<(), Error> {
    let base = c.t.ctrl(c.t.peer(c.rng));
    c.r.store(base + ctrl::STATE, PeerState::Run as u32)?;
    let beat = c.r.load(base + ctrl::HEARTBEAT)?.wrapping_add(1);
    c.r.store(base + ctrl::HEARTBEAT, beat)?;
    for j in 0..c.t.geometry.max_peers as usize {
        let e = c.rng.edge(&[0, 1, u32::MAX]);
        c.r.store(base + ctrl::EPOCH + 4 * j, e)?;
        let a = c.rng.edge(&[0, 1, u32::MAX]);
        c.r.store(base + ctrl::ACK + 4 * j, a)?;
    }
    let lo = c.rng.edge(&[0, u32::MAX]);
    let hi = c.rng.edge(&[0, 0xffff, u32::MAX]);
    c.r.store(base + ctrl::MAC_LO, lo)?;
    c.r.store(base + ctrl::MAC_HI, hi)?;
    let mtu = c.rng.edge(&[0, 1, u32::MAX]);
    c.r.store(base + ctrl::MTU, mtu)?;
    let features = c.rng.edge(&[u32::MAX, u32::MAX, feature::DOORBELL]);
    c.r.store(base + ctrl::FEATURES, features)?;
    let db = c.rng.edge(&[u32::MAX, 0x1_0000, 0]);
    c.r.store(base + ctrl::DOORBELL_ID, db)?;
    let queues = c.rng.edge(&[0, u32::MAX, MAX_QUEUES]);
    c.r.store(base + ctrl::QUEUES, queues)?;
    let vectors = c.rng.edge(&[0, u32::MAX, MAX_QUEUES]);
    c.r.store(base + ctrl::VECTORS, vectors)
}

/// The ring's two indices, each read once.
struct Seen {
    prod: u32,
    cons: u32,
}

fn seen<R: Region + ?Sized>(c: &Ctx<'_, R>, ra: &RingAt) -> Result<Seen, Error> {
    Ok(Seen {
        prod: c.r.load(ra.word(off::PROD_IDX))?,
        cons: c.r.load(ra.word(off::CONS_IDX))?,
    })
}

/// The descriptor of index `idx`, read once.
fn desc_at<R: Region + ?Sized>(c: &Ctx<'_, R>, ra: &RingAt, idx: u32) -> Result<Desc, Error> {
    let mut raw = [0u8; 32];
    c.r.read(ra.desc(idx), &mut raw)?;
    Ok(Desc::decode(&raw))
}

/// Where the sender's next frame would go: just after the frame of the last descriptor it
/// published (as its pool allocator hands bytes out), or the pool's start if that descriptor
/// names no frame in the pool.
fn next_pos<R: Region + ?Sized>(c: &Ctx<'_, R>, ra: &RingAt) -> Result<u32, Error> {
    let prod = c.r.load(ra.word(off::PROD_IDX))?;
    let d = desc_at(c, ra, prod.wrapping_sub(1))?;
    Ok(match ra.ring.span(d.pos, d.len) {
        Ok(_) if d.pos.is_multiple_of(FRAME_ALIGN) => {
            let end = u64::from(d.pos) + u64::from(footprint(d.len));
            (end % u64::from(ra.ring.pool_len())) as u32
        }
        _ => 0,
    })
}

/// The region range of the first piece of a frame in flight on ring `ra` (one the consumer has
/// yet to take), if there is one with a descriptor that names a frame in the pool.
fn in_flight<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: &RingAt,
) -> Result<Option<Range<usize>>, Error> {
    let s = seen(c, ra)?;
    let pending = s.prod.wrapping_sub(s.cons);
    if pending == 0 || pending > ra.ring.slots() {
        return Ok(None);
    }
    let idx = s.cons.wrapping_add(c.rng.below32(pending));
    let d = desc_at(c, ra, idx)?;
    Ok(ra.ring.span(d.pos, d.len).ok().map(|sp| sp.first()))
}

/// A bad descriptor, `edit` applied to a plausible one. Half the time it replaces a
/// descriptor the consumer has yet to read (racing the real producer); half the time it is
/// forged in the next free slot and published by advancing `prod_idx` past it.
fn forge<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    edit: impl FnOnce(&mut Rng, &RingAt, &mut Desc),
) -> Result<(), Error> {
    let ra = c.t.ring(c.rng);
    let s = seen(c, &ra)?;
    let pending = s.prod.wrapping_sub(s.cons);
    if c.rng.chance(1, 2) {
        let idx = if pending > 0 && pending <= ra.ring.slots() {
            s.cons.wrapping_add(c.rng.below32(pending))
        } else {
            s.cons
        };
        let mut d = desc_at(c, &ra, idx)?;
        edit(c.rng, &ra, &mut d);
        c.r.write(ra.desc(idx), &d.encode())
    } else {
        let mut d = Desc {
            pos: next_pos(c, &ra)?,
            len: 60 + c.rng.below32(1455).min(ra.ring.max_frame() - 60),
            ..Desc::default()
        };
        edit(c.rng, &ra, &mut d);
        c.r.write(ra.desc(s.prod), &d.encode())?;
        c.r.store(ra.word(off::PROD_IDX), s.prod.wrapping_add(1))
    }
}

/// A frame of `len` bytes (at most the ring's largest) that the ring checks accept, with
/// hostile contents: forged after the last published frame, where the next one belongs, and
/// published; or, one time in three, the headers of a frame already published and unread
/// overwritten in place. With `offload`, its descriptor carries garbage offload fields.
fn frame<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: RingAt,
    len: u32,
    offload: bool,
) -> Result<(), Error> {
    frame_with(c, ra, len, |rng, d| {
        if offload {
            garbage_offload(rng, d)
        }
    })
}

/// [`frame`], with `edit` setting the descriptor's offload fields (in place, a frame already
/// published keeps its length and position). A new frame goes where the sender's next one
/// would ([`next_pos`]), running on at the pool's start if it does not fit before its end.
fn frame_with<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: RingAt,
    len: u32,
    edit: impl FnOnce(&mut Rng, &mut Desc),
) -> Result<(), Error> {
    let pos = next_pos(c, &ra)?;
    place(c, ra, pos, len, edit)
}

/// A new frame of `len` bytes at pool offset `pos` (a multiple of 64 inside the pool), well
/// formed and published, with hostile contents.
fn frame_at<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: RingAt,
    pos: u32,
    len: u32,
) -> Result<(), Error> {
    let s = seen(c, &ra)?;
    write_frame(
        c,
        ra,
        s.prod,
        Desc {
            pos,
            len,
            ..Desc::default()
        },
        true,
    )
}

/// [`frame_with`] at pool offset `pos`: a new frame there, or one time in three (if the ring
/// holds any) the headers of a frame already published and unread overwritten in place.
fn place<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: RingAt,
    pos: u32,
    len: u32,
    edit: impl FnOnce(&mut Rng, &mut Desc),
) -> Result<(), Error> {
    let s = seen(c, &ra)?;
    let pending = s.prod.wrapping_sub(s.cons);
    let in_place = pending > 0 && pending <= ra.ring.slots() && c.rng.chance(1, 3);
    let (idx, mut d) = if in_place {
        let idx = s.cons.wrapping_add(c.rng.below32(pending));
        (idx, desc_at(c, &ra, idx)?)
    } else {
        (
            s.prod,
            Desc {
                pos,
                len,
                ..Desc::default()
            },
        )
    };
    edit(c.rng, &mut d);
    write_frame(c, ra, idx, d, !in_place)
}

/// Writes hostile headers into the frame of `d` (if it names one in the pool: an in-place
/// victim may be garbage already), its descriptor at index `idx`, and with `publish` moves
/// `prod_idx` past it.
fn write_frame<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: RingAt,
    idx: u32,
    d: Desc,
    publish: bool,
) -> Result<(), Error> {
    if let Ok(span) = ra.ring.span(d.pos, d.len) {
        let fill = d.len.clamp(1, FILL_MAX) as usize;
        let mut buf = [0u8; FILL_MAX as usize];
        let buf = &mut buf[..fill];
        ethernet(c, &ra, buf)?;
        span.write(c.r, 0, buf)?;
    }
    c.r.write(ra.desc(idx), &d.encode())?;
    if publish {
        c.r.store(ra.word(off::PROD_IDX), idx.wrapping_add(1))?;
    }
    Ok(())
}

/// The start of a hostile Ethernet frame in `buf`: destination the consumer's MAC, broadcast or
/// random; source random or the consumer's own; an IPv4, IPv6, ARP or random ethertype; a
/// plausible IPv4 version/length byte; random bytes after.
fn ethernet<R: Region + ?Sized>(
    c: &mut Ctx<'_, R>,
    ra: &RingAt,
    buf: &mut [u8],
) -> Result<(), Error> {
    c.rng.fill(buf);
    let base = c.t.ctrl(ra.to);
    let lo = c.r.load(base + ctrl::MAC_LO)?.to_le_bytes();
    let hi = c.r.load(base + ctrl::MAC_HI)?.to_le_bytes();
    let theirs = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
    let dst = match c.rng.below(3) {
        0 => theirs,
        1 => [0xff; 6],
        _ => {
            let mut m = [0u8; 6];
            c.rng.fill(&mut m);
            m
        }
    };
    let src = if c.rng.chance(1, 4) {
        Some(theirs)
    } else {
        None
    };
    let other = c.rng.next_u32() as u16;
    let ethertype: u16 = c.rng.pick(&[0x0800, 0x0800, 0x86dd, 0x0806, other]);
    let mut head = [0u8; 15];
    head[..6].copy_from_slice(&dst);
    if let Some(src) = src {
        head[6..12].copy_from_slice(&src);
    } else {
        c.rng.fill(&mut head[6..12]);
        head[6] &= !1;
    }
    head[12..14].copy_from_slice(&ethertype.to_be_bytes());
    head[14] = if ethertype == 0x86dd { 0x60 } else { 0x45 };
    let n = head.len().min(buf.len());
    buf[..n].copy_from_slice(&head[..n]);
    Ok(())
}

/// Offload fields a sane peer never sends together with this frame.
fn garbage_offload(rng: &mut Rng, d: &mut Desc) {
    let len = d.len.min(0xffff) as u16;
    match rng.below(6) {
        0 => {
            d.flags = NEEDS_CSUM;
            d.csum_start = len.wrapping_add(rng.below32(64) as u16);
            d.csum_offset = rng.pick(&[0, 6, 16]);
        }
        1 => {
            d.flags = NEEDS_CSUM;
            d.csum_start = 14;
            d.csum_offset = rng.pick(&[len, len.wrapping_sub(15), 0xffff]);
        }
        2 => {
            d.gso_type = rng.pick(&GSO_TYPES);
            d.gso_size = 0;
            d.hdr_len = rng.below32(0x1_0000) as u16;
        }
        3 => {
            d.gso_type = rng.pick(&[2, 6, 0x7f, 0x80, 0xff]);
            d.gso_size = rng.pick(&[1, 1448, 0xffff]);
        }
        4 => {
            d.flags = rng.pick(&[0xfffc, 0xffff, 0x8000, DATA_VALID | NEEDS_CSUM, 4]);
        }
        _ => {
            d.flags = NEEDS_CSUM;
            d.gso_type = rng.pick(&GSO_TYPES);
            d.gso_size = rng.pick(&[1, 0xffff]);
            d.hdr_len = rng.pick(&[0, len.wrapping_add(1), 0xffff]);
            d.csum_start = 0xffff;
            d.csum_offset = 0xffff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivshmem_net_protocol::frame::{rx_verdict, RxVerdict};
    use ivshmem_net_protocol::layout::{attach, claim_slot, Geometry};
    use ivshmem_net_protocol::link::Own;
    use ivshmem_net_protocol::ring::{Consumer, Pool, Producer};
    use ivshmem_net_protocol::HeapRegion;

    /// A 4 MiB region for 4 peers: 0 and 1 attached and in RUN, ring 0 -> 1 holding two frames.
    fn region() -> (HeapRegion, Geometry) {
        let r = HeapRegion::new(4 << 20);
        let g = Geometry::new(4 << 20, 4).unwrap();
        attach(&r, g, 0x1234, || false).unwrap();
        for id in 0..2 {
            claim_slot(&r, &g, Some(id), 0x100 + id, |_| {}).unwrap();
            let mut o = Own::new(&g, id).unwrap();
            o.attach(&r, [2, 0, 0, 0, 0, id as u8], 1500).unwrap();
            o.set_state(&r, PeerState::Run).unwrap();
        }
        let mut pool = Pool::new(&g, 0).unwrap();
        let mut p = Producer::new(&g, 0, 1, 0).unwrap();
        Consumer::new(&g, 0, 1, 0).unwrap().reset(&r).unwrap();
        p.reset(&r).unwrap();
        for _ in 0..2 {
            let span = p.reserve(&r, &pool, 100).unwrap().unwrap();
            span.write(&r, 0, &[0xaa; 100]).unwrap();
            p.commit(&r, &mut pool, &Desc::default()).unwrap();
        }
        p.publish(&r).unwrap();
        (r, g)
    }

    fn words(r: &HeapRegion) -> Vec<u32> {
        (0..r.len() / 4).map(|i| r.load(4 * i).unwrap()).collect()
    }

    #[test]
    fn kinds_partition_into_random_and_crafted() {
        assert_eq!(Kind::RANDOM.len() + Kind::CRAFTED.len(), Kind::ALL.len());
        assert!(Kind::RANDOM.iter().all(|k| k.name().starts_with("random-")));
        assert!(Kind::CRAFTED
            .iter()
            .all(|k| !k.name().starts_with("random-")));
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }

    /// Every kind changes the region within a few tries, never errors, and writes only inside
    /// the used part of the region.
    #[test]
    fn every_kind_writes_something_inside_the_used_region() {
        for &k in Kind::ALL {
            let (r, g) = region();
            let t = Targets::new(&r, g, None).unwrap();
            let before = words(&r);
            let mut rng = Rng::new(k.index() as u64);
            for _ in 0..50 {
                let mut c = Ctx {
                    r: &r,
                    t: &t,
                    rng: &mut rng,
                    frozen: 0x5eed,
                };
                run(&mut c, k).unwrap_or_else(|e| panic!("{}: {e:?}", k.name()));
            }
            let after = words(&r);
            let changed: Vec<usize> = (0..before.len())
                .filter(|&i| before[i] != after[i])
                .collect();
            assert!(!changed.is_empty(), "{} changed nothing", k.name());
            assert!(
                changed.iter().all(|&i| 4 * i < t.used_end),
                "{} wrote past the used region",
                k.name()
            );
        }
    }

    #[test]
    fn oversize_frames_pass_the_ring_checks_and_fail_the_receivers() {
        // Into an empty ring, so every frame is a new one of the length the kind chose.
        let (r, g) = region();
        let t = Targets::new(&r, g, None).unwrap();
        let ra = t.ring_of(1, 0, 1);
        let mtu = r.load(t.ctrl(0) + ctrl::MTU).unwrap();
        let mut cons = Consumer::new(&g, 1, 0, 1).unwrap();
        cons.reset(&r).unwrap();
        Producer::new(&g, 1, 0, 1).unwrap().reset(&r).unwrap();
        let mut rng = Rng::new(7);
        let kinds = [
            (Kind::FrameOverMtu, RxVerdict::OverMtu),
            (Kind::FrameOverGsoMax, RxVerdict::OverGsoMax),
            (Kind::FrameGsoSizeSmall, RxVerdict::GsoSizeTooSmall),
        ];
        for i in 0..300 {
            let (k, want) = kinds[i % 3];
            let mut c = Ctx {
                r: &r,
                t: &t,
                rng: &mut rng,
                frozen: 0,
            };
            oversize(&mut c, ra, k).unwrap();
            let d = cons
                .peek(&r)
                .unwrap()
                .expect("a frame the ring checks accept");
            let max = ra.ring.max_frame();
            assert_eq!(
                rx_verdict(d.len, d.gso_type, d.gso_size, mtu, max),
                want,
                "{}: {d:?}",
                k.name()
            );
            cons.pop();
            cons.publish(&r).unwrap();
        }
    }

    #[test]
    fn forged_well_placed_frames_pass_the_ring_checks() {
        // `frame-inject` into an empty ring: the consumer must accept what it forged (that is
        // the point: the payload and offload fields reach the driver).
        let (r, g) = region();
        let t = Targets::new(&r, g, None).unwrap();
        let ra = t.ring_of(1, 0, 0);
        let mut cons = Consumer::new(&g, 1, 0, 0).unwrap();
        cons.reset(&r).unwrap();
        Producer::new(&g, 1, 0, 0).unwrap().reset(&r).unwrap();
        let mut rng = Rng::new(5);
        let mut wrapped = 0;
        for i in 0..200u32 {
            let mut c = Ctx {
                r: &r,
                t: &t,
                rng: &mut rng,
                frozen: 0,
            };
            // Lengths up to the largest frame, so that frames run past the pool's end.
            let len = 1 + (i * 7919 + i * i * 97) % ra.ring.max_frame();
            frame(&mut c, ra, len, i % 2 == 0).unwrap();
            let d = cons.peek(&r).unwrap().expect("a frame");
            assert_eq!(d.len, len);
            let span = cons.span(&d).unwrap();
            wrapped += span.second().is_some() as u32;
            // Placed one after the other, as the sender's allocator would.
            let mut buf = vec![0u8; len as usize];
            cons.read_frame(&r, &d, &mut buf).unwrap();
            cons.pop();
            cons.publish(&r).unwrap();
        }
        assert!(wrapped > 0, "no forged frame ran past the pool's end");
    }

    /// `desc-wrap` forges frames that run past the end of the sender's pool: legal, so the ring
    /// checks pass and the frame comes out in two pieces, its hostile headers at the pool's end.
    #[test]
    fn wrapping_frames_pass_the_ring_checks_in_two_pieces() {
        let (r, g) = region();
        let t = Targets::new(&r, g, Some(0)).unwrap();
        let mut cons = Consumer::new(&g, 1, 0, 0).unwrap();
        cons.reset(&r).unwrap();
        Producer::new(&g, 1, 0, 0).unwrap().reset(&r).unwrap();
        let mut rng = Rng::new(11);
        let mut seen = 0;
        for _ in 0..300 {
            let mut c = Ctx {
                r: &r,
                t: &t,
                rng: &mut rng,
                frozen: 0,
            };
            run(&mut c, Kind::DescWrap).unwrap();
            // Whichever ring it chose: take what is on ring 1 -> 0.
            while let Some(d) = cons.peek(&r).unwrap() {
                assert_eq!(d.pos, g.pool_len - FRAME_ALIGN);
                let span = cons.span(&d).unwrap();
                assert_eq!(span.first().len(), FRAME_ALIGN as usize);
                assert!(span
                    .second()
                    .is_some_and(|b| b.start == g.pool_offset(1).unwrap()));
                cons.pop();
                seen += 1;
            }
            cons.publish(&r).unwrap();
        }
        assert!(seen > 10, "{seen}");
    }

    /// The attacks on a ring's words and descriptors are caught by the ring's checks: each
    /// makes the consumer (or, for `cons-back`, the producer) report `Corrupt`.
    #[test]
    fn crafted_ring_attacks_are_caught_by_the_ring_checks() {
        use ivshmem_net_protocol::layout::Corrupt;
        let cases = [
            (Kind::ProdAhead, Corrupt::ProdIdx),
            (Kind::ProdBehind, Corrupt::ProdIdx),
            (Kind::DescLenZero, Corrupt::DescLen),
            (Kind::DescLenHuge, Corrupt::DescLen),
            (Kind::DescPosOutside, Corrupt::DescPos),
            (Kind::DescPosUnaligned, Corrupt::DescPos),
            (Kind::ConsBeyond, Corrupt::ConsIdx),
            (Kind::ConsBack, Corrupt::ConsIdx),
        ];
        for (k, want) in cases {
            let mut caught = 0;
            for seed in 0..40 {
                let (r, g) = region();
                // Peers 0 and 1 only, queue 0: the ring 0 -> 1 with its two frames, or 1 -> 0.
                let t = Targets::new(&r, g, Some(0)).unwrap();
                let mut rng = Rng::new(seed);
                let mut c = Ctx {
                    r: &r,
                    t: &t,
                    rng: &mut rng,
                    frozen: 0,
                };
                run(&mut c, k).unwrap();
                // The producer as the sender knows it: two frames published on 0 -> 1.
                let mut pool = Pool::new(&g, 0).unwrap();
                let mut p = Producer::new(&g, 0, 1, 0).unwrap();
                let shadow = HeapRegion::new(r.len());
                p.reset(&shadow).unwrap();
                for _ in 0..2 {
                    p.reserve(&shadow, &pool, 100).unwrap().unwrap();
                    p.commit(&shadow, &mut pool, &Desc::default()).unwrap();
                }
                p.publish(&shadow).unwrap();
                let got = if matches!(k, Kind::ConsBeyond | Kind::ConsBack) {
                    p.collect(&r).err()
                } else {
                    let mut cons = Consumer::new(&g, 0, 1, 0).unwrap();
                    let mut err = None;
                    for _ in 0..=g.ring_slots {
                        match cons.peek(&r) {
                            Ok(Some(_)) => cons.pop(),
                            Ok(None) => break,
                            Err(e) => {
                                err = Some(e);
                                break;
                            }
                        }
                    }
                    err
                };
                // Only attacks that landed on ring 0 -> 1 count.
                if got == Some(Error::Corrupt(want)) {
                    caught += 1;
                } else {
                    assert_eq!(got, None, "{}: {got:?}", k.name());
                }
            }
            assert!(caught >= 5, "{}: caught {caught} of 40", k.name());
        }
    }
}
