// SPDX-License-Identifier: GPL-2.0

//! A peer the tool plays by the protocol, for `--forge-mac-of` ([`crate::forge`]) and `--hog`
//! ([`crate::hog`]): it claims a free peer id, publishes the control block of a [`Persona`],
//! brings its link up with every peer through the ordinary handshake and beats its heartbeat
//! every [`TICK`]; what becomes of the frames the peers send it is its [`Role`]'s business.
//!
//! On request (`restart`, SIGUSR1 in the binary) it restarts its link with every peer (a new
//! epoch towards each). When it stops it leaves its block `Reset` and its slot free.

use ivshmem_net_protocol::layout::{claim_slot, Claimed, Error, Geometry, Region};
use ivshmem_net_protocol::link::{self, decide_with, feature, read_peer, Action, DownReason};
use ivshmem_net_protocol::link::{Link, Liveness, Own, PeerState, PeerView};
use ivshmem_net_protocol::ring::{Consumer, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the player beats, looks at the links and serves its rings.
pub const TICK: Duration = Duration::from_millis(5);

/// How long a linked peer's rings may stay unusable before the player restarts the link. A
/// peer restarting the link resets its halves before it moves its epoch: in between, its ring
/// looks broken to us, and restarting ours then would be a second restart, counted by the
/// peer as ours.
const BROKEN_GRACE: Duration = Duration::from_millis(50);

/// What the player publishes in its control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persona {
    pub mac: [u8; 6],
    pub mtu: u32,
    pub features: u32,
    pub doorbell: u32,
}

impl Persona {
    /// Peer `j`'s as it stands in `r`: its MAC, MTU, feature bits and doorbell id.
    /// [`Error::BadState`] if `j` is not attached with a MAC.
    pub fn of<R: Region + ?Sized>(r: &R, g: &Geometry, j: u32) -> Result<Self, Error> {
        // Whoever reads it: any id but `j`'s.
        let other = if j == 0 { 1 } else { 0 };
        let view: PeerView = read_peer(r, g, j, other)?;
        if view.state.is_none() || view.mac == [0; 6] {
            return Err(Error::BadState(view.state.map_or(u32::MAX, |s| s as u32)));
        }
        Ok(Persona {
            mac: view.mac,
            mtu: view.mtu,
            features: view.features,
            doorbell: link::peer_doorbell(r, g, j).unwrap_or(0),
        })
    }
}

/// What the player does with the frames of its linked peers.
pub trait Role {
    /// Called every tick for each peer `j` whose link is up, with our consumers of its rings
    /// (one per queue), `now` after the start. An error restarts the link (a ring we cannot
    /// follow).
    fn serve<R: Region + ?Sized>(
        &mut self,
        r: &R,
        j: u32,
        cons: &mut [Consumer],
        now: Duration,
    ) -> Result<(), Error>;

    /// The link with `j` went down (`why`), `now` after the start.
    fn down(&mut self, _j: u32, _why: DownReason, _now: Duration) {}
}

/// What the player did, whatever its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Played {
    /// Its peer id.
    pub id: u32,
    /// Peers whose link with it came up (at some point).
    pub linked: Vec<u32>,
    /// Times it restarted its links on request.
    pub restarts: u32,
    /// How long it ran.
    pub ran: Duration,
}

/// Our halves of the rings with one peer, one of each per queue.
struct Halves {
    link: Link,
    prod: Vec<Producer>,
    cons: Vec<Consumer>,
    /// Since when its rings have been unusable, while the link is up.
    broken: Option<Duration>,
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

/// Plays `persona` in region `r` of geometry `g` for `duration` (or until `stop`), with
/// `token` (nonzero) as slot token, serving the linked peers' frames by `role`, and with the
/// MAC `mac(id)` once its id is known if given (the persona's otherwise). Whenever `restart`
/// is found set, it is cleared and every link restarted.
#[allow(clippy::too_many_arguments)]
pub fn play<R: Region + ?Sized, P: Role>(
    r: &R,
    g: &Geometry,
    mut persona: Persona,
    mac: Option<fn(u32) -> [u8; 6]>,
    token: u32,
    duration: Duration,
    stop: &AtomicBool,
    restart: &AtomicBool,
    role: &mut P,
) -> Result<Played, Error> {
    let sleep = |ms: u32| std::thread::sleep(Duration::from_millis(ms.into()));
    let (id, _) = claim_slot(r, g, None, token, sleep)?;
    let seat = Claimed::new(r, g, id, token)?;
    if let Some(mac) = mac {
        persona.mac = mac(id);
    }
    let mut own = Own::new(g, id)?;
    own.attach(&seat, persona.mac, persona.mtu)?;
    own.set_features(&seat, persona.features)?;
    own.set_doorbell_id(&seat, persona.doorbell)?;
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
                broken: None,
            })
        });
    }
    let mut out = Played {
        id,
        linked: Vec::new(),
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
        let now = start.elapsed();
        for (j, h) in (0..g.max_peers).zip(peers.iter_mut()) {
            let Some(h) = h else { continue };
            let Ok(view) = read_peer(&seat, g, j, id) else {
                continue;
            };
            // A doorbell-mode peer stops beating while idle: only one that leaves (or
            // restarts) takes its link down then.
            let liveness = if view.features & feature::DOORBELL != 0 {
                Liveness::Progress { stalled: false }
            } else {
                Liveness::Heartbeat { rings: [0; 2] }
            };
            match decide_with(
                &mut h.link,
                own.epoch(&seat, j)?,
                own.acked(&seat, j)?,
                &view,
                now.as_millis() as u64,
                liveness,
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
                Action::Down(why) => {
                    h.link.up = false;
                    role.down(j, why, now);
                }
                Action::Stay => {}
            }
            if !h.link.up || role.serve(&seat, j, &mut h.cons, now).is_ok() {
                h.broken = None;
            } else if now.saturating_sub(*h.broken.get_or_insert(now)) >= BROKEN_GRACE {
                // A ring we cannot follow, and the peer is not restarting the link: start
                // it afresh.
                h.link.up = false;
                h.broken = None;
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
