// SPDX-License-Identifier: GPL-2.0

//! `--hog`: a peer that keeps what it is sent. It plays by the protocol ([`crate::peer`])
//! under a MAC of its own ([`hog_mac`]) with the MTU and feature bits of a peer present at the
//! start, so that every peer links with it, and beats its heartbeat: it looks alive. But it
//! consumes nothing the peers send it; or, with `--drain-every MS`, one frame of each peer
//! every `MS` ms: a slow peer, but a live one.
//!
//! Every frame a peer sends, to whichever peer, lives in the sender's one transmit pool, whose
//! bytes come back only in order: a frame the hog never consumes holds the sender's whole pool
//! once the frames behind it fill it, and with it the sender's traffic to every other peer,
//! until the sender resets its link with the hog. The hog notes how long it had held a peer's
//! frames when that peer took the link down ([`Hogged::resets`]).

use crate::peer::{play, Persona, Role};
use ivshmem_net_protocol::layout::{Error, Geometry, Region};
use ivshmem_net_protocol::link::DownReason;
use ivshmem_net_protocol::ring::Consumer;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The doorbell id the hog publishes: one no QEMU peer has, so that a doorbell-mode peer's
/// kicks for it wake nobody.
const NO_ONE: u32 = 0xffff;

/// The hog's MAC once it has peer id `id`: locally administered, "hog" in ASCII, then the id.
pub fn hog_mac(id: u32) -> [u8; 6] {
    [0x02, b'h', b'o', b'g', 0, id as u8]
}

/// A link a peer took down while the hog held its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The peer.
    pub peer: u32,
    /// How long the hog had held the peer's oldest frame then without consuming any.
    pub held: Duration,
    /// That frame's Ethernet header (as much of it as the frame has) and length.
    pub frame: ([u8; ETH_HLEN], u32),
}

/// Ethernet header length.
const ETH_HLEN: usize = 14;

impl Reset {
    /// The held frame as text: `dst src type, len B`.
    pub fn frame_text(&self) -> String {
        let (h, len) = self.frame;
        let mac = |m: &[u8]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        format!(
            "{} {} {:02x}{:02x}, {len} B",
            mac(&h[..6]),
            mac(&h[6..12]),
            h[12],
            h[13]
        )
    }
}

/// What a hog did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hogged {
    /// Its peer id.
    pub id: u32,
    /// Its MAC ([`hog_mac`]).
    pub mac: [u8; 6],
    /// Peers whose link with it came up (at some point).
    pub linked: Vec<u32>,
    /// Frames it consumed (`--drain-every`; none otherwise).
    pub rx_frames: u64,
    /// Links taken down by their peer while the hog held frames of theirs, in order.
    pub resets: Vec<Reset>,
    /// Links taken down by their peer while the hog held nothing of theirs.
    pub other_downs: u32,
    /// The longest the hog held a peer's frames without consuming any.
    pub longest_hold: Duration,
    /// How long it ran.
    pub ran: Duration,
}

impl Hogged {
    /// The MAC as text.
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    /// One line of JSON: `{"id", "mac", "linked", "rx_frames", "resets": [{"peer",
    /// "held_ms", "frame"}], "other_downs", "longest_hold_ms", "seconds"}`.
    pub fn json(&self) -> String {
        let resets: Vec<_> = self
            .resets
            .iter()
            .map(|r| {
                serde_json::json!({
                    "peer": r.peer,
                    "held_ms": r.held.as_millis() as u64,
                    "frame": r.frame_text(),
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "mac": self.mac_text(),
            "linked": self.linked,
            "rx_frames": self.rx_frames,
            "resets": resets,
            "other_downs": self.other_downs,
            "longest_hold_ms": self.longest_hold.as_millis() as u64,
            "seconds": self.ran.as_secs_f64(),
        })
        .to_string()
    }

    /// For people.
    pub fn text(&self) -> String {
        let resets: Vec<String> = self
            .resets
            .iter()
            .map(|r| {
                format!(
                    "peer {} after {} ms ({})",
                    r.peer,
                    r.held.as_millis(),
                    r.frame_text()
                )
            })
            .collect();
        format!(
            "hogged as peer {} ({}) for {:.1} s: links up with {:?}; {} frames consumed; \
             links reset while holding frames: [{}]; {} other link downs; longest hold {} ms\n",
            self.id,
            self.mac_text(),
            self.ran.as_secs_f64(),
            self.linked,
            self.rx_frames,
            resets.join(", "),
            self.other_downs,
            self.longest_hold.as_millis()
        )
    }
}

/// The hog's role: holds every frame, or drains one per peer every `every`.
struct Hold {
    every: Option<Duration>,
    /// Per peer: since when the hog has held its frames without consuming any, and the
    /// oldest of them (header and length).
    since: Vec<Option<Duration>>,
    oldest: Vec<([u8; ETH_HLEN], u32)>,
    /// Per peer: when the next frame may be consumed (`every`).
    next: Vec<Duration>,
    rx_frames: u64,
    resets: Vec<Reset>,
    other_downs: u32,
    longest: Duration,
}

impl Role for Hold {
    fn serve<R: Region + ?Sized>(
        &mut self,
        r: &R,
        j: u32,
        cons: &mut [Consumer],
        now: Duration,
    ) -> Result<(), Error> {
        let j = j as usize;
        let (Some(since), Some(next)) = (self.since.get_mut(j), self.next.get_mut(j)) else {
            return Ok(());
        };
        // The first ring with a frame for us, if any.
        let mut first = None;
        for (q, c) in cons.iter_mut().enumerate() {
            if c.peek(r)?.is_some() {
                first = Some(q);
                break;
            }
        }
        let Some(q) = first else {
            *since = None;
            return Ok(());
        };
        if since.is_none() {
            if let (Some(c), Some(oldest)) = (cons.get_mut(q), self.oldest.get_mut(j)) {
                *oldest = header(r, c)?;
            }
        }
        let start = *since.get_or_insert(now);
        self.longest = self.longest.max(now.saturating_sub(start));
        let Some(every) = self.every.filter(|_| now >= *next) else {
            return Ok(());
        };
        if let Some(c) = cons.get_mut(q) {
            c.pop();
            c.publish(r)?;
            self.rx_frames += 1;
            *next = now + every;
            // Consumed: whatever is left has waited only from now.
            *since = Some(now);
        }
        Ok(())
    }

    fn down(&mut self, j: u32, _why: DownReason, now: Duration) {
        match self.since.get_mut(j as usize).and_then(Option::take) {
            Some(start) => self.resets.push(Reset {
                peer: j,
                held: now.saturating_sub(start),
                frame: self
                    .oldest
                    .get(j as usize)
                    .copied()
                    .unwrap_or(([0; ETH_HLEN], 0)),
            }),
            None => self.other_downs += 1,
        }
    }
}

/// The Ethernet header (as much as there is) and length of the next frame on `cons`, one
/// [`Consumer::peek`] found.
fn header<R: Region + ?Sized>(r: &R, cons: &mut Consumer) -> Result<([u8; ETH_HLEN], u32), Error> {
    let mut h = [0u8; ETH_HLEN];
    let Some(d) = cons.peek(r)? else {
        return Ok((h, 0));
    };
    let n = (d.len as usize).min(ETH_HLEN);
    // The header may straddle the end of the sender's pool.
    let [a, b] = cons.span(&d)?.pieces(0, n as u32)?;
    let (x, y) = h[..n].split_at_mut(a.len());
    r.read(a.start, x)?;
    if !y.is_empty() {
        r.read(b.start, y)?;
    }
    Ok((h, d.len))
}

/// Hogs in region `r` of geometry `g` for `duration` (or until `stop`), with `token`
/// (nonzero) as slot token, consuming one frame per peer every `drain_every` if given, none
/// otherwise. The MTU and feature bits are those of the lowest present peer id
/// ([`Error::BadState`] if there is none). The slot is released and our block reset at the
/// end. Whenever `restart` is found set, it is cleared and every link restarted.
pub fn hog<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    drain_every: Option<Duration>,
    token: u32,
    duration: Duration,
    stop: &AtomicBool,
    restart: &AtomicBool,
) -> Result<Hogged, Error> {
    let model = (0..g.max_peers)
        .find_map(|j| Persona::of(r, g, j).ok())
        .ok_or(Error::BadState(0))?;
    let persona = Persona {
        doorbell: NO_ONE,
        ..model
    };
    let n = g.max_peers as usize;
    let mut role = Hold {
        every: drain_every,
        since: vec![None; n],
        oldest: vec![([0; ETH_HLEN], 0); n],
        next: vec![Duration::ZERO; n],
        rx_frames: 0,
        resets: Vec::new(),
        other_downs: 0,
        longest: Duration::ZERO,
    };
    let played = play(
        r,
        g,
        persona,
        Some(hog_mac),
        token,
        duration,
        stop,
        restart,
        &mut role,
    )?;
    Ok(Hogged {
        id: played.id,
        mac: hog_mac(played.id),
        linked: played.linked,
        rx_frames: role.rx_frames,
        resets: role.resets,
        other_downs: role.other_downs,
        longest_hold: role.longest,
        ran: played.ran,
    })
}
