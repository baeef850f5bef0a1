// SPDX-License-Identifier: GPL-2.0

//! `--forge-mac-of ID`: a forger. Unlike the storm, it plays by the protocol: it claims a
//! free peer id, publishes peer `ID`'s MAC (with its MTU, feature bits and doorbell id) as its
//! own, brings its link up with every peer through the ordinary handshake, beats its
//! heartbeat, and consumes whatever the peers send it, noting the frames addressed to the
//! forged MAC: unicast stolen from `ID`, if a peer sends it any.
//!
//! A peer that gives a MAC to the first peer that claimed it sends the forger none (it may
//! still send it broadcast and multicast frames, which every linked peer gets).
//!
//! On request (`restart`, SIGUSR1 in the binary) the forger restarts its link with every peer
//! (a new epoch towards each): a peer that freed the MAC when its holder's link went down
//! would then hand it to the forger as its link comes back up.

use ivshmem_net_protocol::layout::{claim_slot, Claimed, Error, Geometry, Region};
use ivshmem_net_protocol::link::{self, decide, read_peer, Action, Link, Own, PeerState};
use ivshmem_net_protocol::ring::{Consumer, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the forger beats, looks at the links and drains its rings.
const TICK: Duration = Duration::from_millis(5);

/// What a forger did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forged {
    /// The peer whose MAC was forged.
    pub victim: u32,
    /// The forged MAC.
    pub mac: [u8; 6],
    /// The forger's own peer id.
    pub id: u32,
    /// Peers whose link with the forger came up (at some point).
    pub linked: Vec<u32>,
    /// Frames received, from every peer.
    pub rx_frames: u64,
    /// Of those, frames addressed to the forged MAC (unicast meant for the victim).
    pub rx_stolen: u64,
    /// Times it restarted its links on request.
    pub restarts: u32,
    /// How long it ran.
    pub ran: Duration,
}

impl Forged {
    /// The MAC as text.
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    /// One line of JSON: `{"victim", "mac", "id", "linked", "rx_frames", "rx_stolen",
    /// "restarts", "seconds"}`.
    pub fn json(&self) -> String {
        serde_json::json!({
            "victim": self.victim,
            "mac": self.mac_text(),
            "id": self.id,
            "linked": self.linked,
            "rx_frames": self.rx_frames,
            "rx_stolen": self.rx_stolen,
            "restarts": self.restarts,
            "seconds": self.ran.as_secs_f64(),
        })
        .to_string()
    }

    /// For people.
    pub fn text(&self) -> String {
        format!(
            "forged peer {}'s MAC {} as peer {} for {:.1} s: links up with {:?}; {} frames \
             received, {} of them unicast to the forged MAC\n",
            self.victim,
            self.mac_text(),
            self.id,
            self.ran.as_secs_f64(),
            self.linked,
            self.rx_frames,
            self.rx_stolen
        )
    }
}

/// Our halves of the rings with one peer, one of each per queue.
struct Halves {
    link: Link,
    prod: Vec<Producer>,
    cons: Vec<Consumer>,
}

impl Halves {
    /// Resets our side of every ring with the peer, when the link (re)starts.
    fn reset<R: Region + ?Sized>(&mut self, r: &R) -> Result<(), Error> {
        for p in &mut self.prod {
            p.reset(r)?;
        }
        for c in &mut self.cons {
            c.reset(r)?;
        }
        Ok(())
    }
}

/// Forges peer `victim`'s MAC in region `r` of geometry `g` for `duration` (or until `stop`),
/// with `token` (nonzero) as slot token. The slot is released and our block reset at the end.
/// Whenever `restart` is found set, it is cleared and every link restarted.
pub fn forge_mac<R: Region + ?Sized>(
    r: &R,
    g: &Geometry,
    victim: u32,
    token: u32,
    duration: Duration,
    stop: &AtomicBool,
    restart: &AtomicBool,
) -> Result<Forged, Error> {
    let sleep = |ms: u32| std::thread::sleep(Duration::from_millis(ms.into()));
    // Whoever reads it: any id but the victim's.
    let other = if victim == 0 { 1 } else { 0 };
    let view = read_peer(r, g, victim, other)?;
    if view.state.is_none() || view.mac == [0; 6] {
        return Err(Error::BadState(view.state.map_or(u32::MAX, |s| s as u32)));
    }
    let doorbell = link::peer_doorbell(r, g, victim).unwrap_or(0);
    let (id, _) = claim_slot(r, g, None, token, sleep)?;
    let seat = Claimed::new(r, g, id, token)?;
    let mut own = Own::new(g, id)?;
    own.attach(&seat, view.mac, view.mtu)?;
    own.set_features(&seat, view.features)?;
    own.set_doorbell_id(&seat, doorbell)?;
    own.set_state(&seat, PeerState::Run)?;
    let mut peers = Vec::new();
    for j in 0..g.max_peers {
        peers.push(if j == id {
            None
        } else {
            Some(Halves {
                link: Link::default(),
                prod: (0..g.queues)
                    .map(|q| Producer::new(g, id, j, q))
                    .collect::<Result<_, _>>()?,
                cons: (0..g.queues)
                    .map(|q| Consumer::new(g, j, id, q))
                    .collect::<Result<_, _>>()?,
            })
        });
    }
    let mut out = Forged {
        victim,
        mac: view.mac,
        id,
        linked: Vec::new(),
        rx_frames: 0,
        rx_stolen: 0,
        restarts: 0,
        ran: Duration::ZERO,
    };
    let start = Instant::now();
    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        own.beat(&seat)?;
        if restart.swap(false, Ordering::Relaxed) {
            out.restarts += 1;
            for (j, h) in (0..g.max_peers).zip(peers.iter_mut()) {
                let Some(h) = h else { continue };
                h.link.up = false;
                h.reset(&seat)?;
                own.bump_epoch(&seat, j)?;
            }
        }
        let now_ms = start.elapsed().as_millis() as u64;
        for (j, h) in (0..g.max_peers).zip(peers.iter_mut()) {
            let Some(h) = h else { continue };
            let Ok(view) = read_peer(&seat, g, j, id) else {
                continue;
            };
            match decide(
                &mut h.link,
                own.epoch(&seat, j)?,
                own.acked(&seat, j)?,
                &view,
                now_ms,
            ) {
                Action::Resync(e) => {
                    h.reset(&seat)?;
                    own.ack(&seat, j, e)?;
                }
                Action::Up => {
                    h.link.up = true;
                    if !out.linked.contains(&j) {
                        out.linked.push(j);
                    }
                }
                Action::Down(_) => h.link.up = false,
                Action::Stay => {}
            }
            let mut drained = || -> Result<(), Error> {
                for c in &mut h.cons {
                    drain(&seat, c, &mut out)?;
                }
                Ok(())
            };
            if h.link.up && drained().is_err() {
                // A ring we cannot follow: start the link afresh.
                h.link.up = false;
                h.reset(&seat)?;
                own.bump_epoch(&seat, j)?;
            }
        }
        std::thread::sleep(TICK);
    }
    out.ran = start.elapsed();
    let _ = own.detach(&seat);
    // Dropping the seat releases the slot.
    drop(seat);
    Ok(out)
}

/// Takes every frame a peer published for us off one of its rings (`cons`), counting those
/// addressed to the forged MAC (`out.mac`).
fn drain<R: Region + ?Sized>(r: &R, cons: &mut Consumer, out: &mut Forged) -> Result<(), Error> {
    let mut any = false;
    while let Some(d) = cons.peek(r)? {
        let mut dst = [0u8; 6];
        if d.len >= 6 {
            // The destination may straddle the end of the sender's pool.
            let [a, b] = cons.span(&d)?.pieces(0, 6)?;
            let (x, y) = dst.split_at_mut(a.len());
            r.read(a.start, x)?;
            if !y.is_empty() {
                r.read(b.start, y)?;
            }
        }
        out.rx_frames += 1;
        if dst == out.mac {
            out.rx_stolen += 1;
        }
        cons.pop();
        any = true;
    }
    if any {
        cons.publish(r)?;
    }
    Ok(())
}
