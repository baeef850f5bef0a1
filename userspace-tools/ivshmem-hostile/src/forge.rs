// SPDX-License-Identifier: GPL-2.0

//! `--forge-mac-of ID`: a forger. Unlike the storm, it plays by the protocol
//! ([`crate::peer`]): it claims a free peer id, publishes peer `ID`'s MAC (with its MTU,
//! feature bits and doorbell id) as its own, brings its link up with every peer through the
//! ordinary handshake, beats its heartbeat, and consumes whatever the peers send it, noting
//! the frames addressed to the forged MAC: unicast stolen from `ID`, if a peer sends it any.
//!
//! A peer that gives a MAC to the first peer that claimed it sends the forger none (it may
//! still send it broadcast and multicast frames, which every linked peer gets).
//!
//! On request (`restart`, SIGUSR1 in the binary) the forger restarts its link with every peer
//! (a new epoch towards each): a peer that freed the MAC when its holder's link went down
//! would then hand it to the forger as its link comes back up.

use crate::peer::{play, Persona, Role};
use ivshmem_net_protocol::layout::{Error, Geometry, Region};
use ivshmem_net_protocol::ring::Consumer;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

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

/// The forger's role: drains every frame, counting those for the forged MAC.
struct Drain {
    mac: [u8; 6],
    rx_frames: u64,
    rx_stolen: u64,
}

impl Role for Drain {
    fn serve<R: Region + ?Sized>(
        &mut self,
        r: &R,
        _j: u32,
        cons: &mut [Consumer],
        _now: Duration,
    ) -> Result<(), Error> {
        for c in cons {
            self.drain(r, c)?;
        }
        Ok(())
    }
}

impl Drain {
    /// Takes every frame a peer published for us off one of its rings (`cons`), counting
    /// those addressed to the forged MAC.
    fn drain<R: Region + ?Sized>(&mut self, r: &R, cons: &mut Consumer) -> Result<(), Error> {
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
            self.rx_frames += 1;
            if dst == self.mac {
                self.rx_stolen += 1;
            }
            cons.pop();
            any = true;
        }
        if any {
            cons.publish(r)?;
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
    let persona = Persona::of(r, g, victim)?;
    let mut role = Drain {
        mac: persona.mac,
        rx_frames: 0,
        rx_stolen: 0,
    };
    let played = play(
        r, g, persona, None, token, duration, stop, restart, &mut role,
    )?;
    Ok(Forged {
        victim,
        mac: persona.mac,
        id: played.id,
        linked: played.linked,
        rx_frames: role.rx_frames,
        rx_stolen: role.rx_stolen,
        restarts: played.restarts,
        ran: played.ran,
    })
}
