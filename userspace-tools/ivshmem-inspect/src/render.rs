// SPDX-License-Identifier: GPL-2.0

//! Text and JSON renderings of a [`Snapshot`].

use crate::sample::{
    accepts, links, max_frame, pools, state_name, Liveness, Peer, Snapshot, Tracker,
};
use ivshmem_net_protocol::layout::{phase, MAGIC};
use ivshmem_net_protocol::link::Addrs;
use ivshmem_net_protocol::link::{feature, HEARTBEAT_TIMEOUT_MS};
use serde_json::{json, Value};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// `1.5 KiB`, `32 MiB`, `100 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub fn mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn phase_name(state: u32) -> &'static str {
    match state & 3 {
        phase::EMPTY => "EMPTY",
        phase::INITIALISING => "INITIALISING",
        phase::READY => "READY",
        _ => "garbage",
    }
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A `queues` or `vectors` word: its value, or what peers take it for after the raw word
/// when that differs (0 from a peer that predates the word, or garbage).
fn count_text(raw: u32, sane: u32) -> String {
    if raw == sane {
        raw.to_string()
    } else {
        format!("{sane} ({raw:#x})")
    }
}

/// Whether a peer's feature word says it uses doorbells (and so beats only while busy).
fn doorbell(features: u32) -> bool {
    features & feature::DOORBELL != 0
}

fn liveness_text(l: Liveness, features: u32) -> String {
    match l {
        Liveness::Beating { delta, over } => format!("beating (+{delta} in {})", ms(over)),
        Liveness::Stale { at_least } if doorbell(features) => format!(
            "stale for ≥ {} (doorbell peer: beats only while busy)",
            ms(at_least)
        ),
        Liveness::Stale { at_least } if at_least.as_millis() > HEARTBEAT_TIMEOUT_MS as u128 => {
            format!(
                "stale for ≥ {} (past the {HEARTBEAT_TIMEOUT_MS} ms timeout: presumed gone)",
                ms(at_least)
            )
        }
        Liveness::Stale { at_least } => format!("stale for ≥ {}", ms(at_least)),
    }
}

/// The human-readable report.
pub fn text(path: &str, file_len: u64, s: &Snapshot, t: &Tracker) -> String {
    let g = &s.geometry;
    let h = &s.header;
    let mut o = String::new();
    let _ = writeln!(o, "region {path} ({})", human_bytes(file_len));
    let magic = if h.magic == MAGIC {
        "IVNT".to_string()
    } else {
        format!("{:#010x}", h.magic)
    };
    let _ = writeln!(
        o,
        "header: magic {magic}  version {}  state {} (attempt {})  header {} B  nonce {:#018x}  \
         departures {}",
        h.version,
        phase_name(h.state),
        h.state >> 2,
        h.header_len,
        h.nonce,
        h.departures
    );
    let _ = writeln!(
        o,
        "        size {} ({} B)  max peers {}  control blocks at {:#x} every {:#x}",
        human_bytes(g.region_len),
        g.region_len,
        g.max_peers,
        g.ctrl_offset,
        g.ctrl_stride
    );
    let _ = writeln!(
        o,
        "        rings: {} ({} queues per pair) at {:#x} every {:#x}: {} slots, max frame {}",
        g.rings(),
        g.queues,
        g.rings_offset,
        g.ring_stride,
        g.ring_slots,
        human_bytes(max_frame(g).into())
    );
    let _ = writeln!(
        o,
        "        pools: {} of {} ({} B) at {:#x}",
        g.max_peers,
        human_bytes(g.pool_len.into()),
        g.pool_len,
        g.pools_offset
    );
    let _ = writeln!(o, "peers:");
    let _ = writeln!(
        o,
        "  {:>2}  {:<10}  {:<19}  {:<17}  {:>10}  {:>10}  {:>12}  {:>12}  {:>10}  heartbeat age",
        "id", "slot", "state", "MAC", "MTU", "features", "queues", "vectors", "heartbeat"
    );
    for p in &s.peers {
        let token = if p.token == 0 {
            "free".to_string()
        } else {
            format!("{:#010x}", p.token)
        };
        let _ = writeln!(
            o,
            "  {:>2}  {:<10}  {:<19}  {:<17}  {:>10}  {:>10}  {:>12}  {:>12}  {:>10}  {}",
            p.id,
            token,
            state_name(p.state_raw),
            mac(&p.mac),
            p.mtu,
            format!("{:#x}", p.features),
            count_text(p.queues_raw, p.queues(g)),
            count_text(p.vectors_raw, p.vectors()),
            p.heartbeat,
            liveness_text(t.liveness(p.id), p.features)
        );
    }
    let links = links(s);
    if !links.is_empty() {
        let _ = writeln!(o, "links (between peers not RESET):");
        for l in &links {
            let (a, b) = (&s.peers[l.a as usize], &s.peers[l.b as usize]);
            let _ = writeln!(
                o,
                "  {} <-> {}  {}  epoch {}->{} acked by {}: {}; epoch {}->{} acked by {}: {}",
                l.a,
                l.b,
                if l.up { "up  " } else { "down" },
                l.a,
                a.epochs[l.b as usize],
                l.b,
                if l.b_acked { "yes" } else { "no" },
                l.b,
                b.epochs[l.a as usize],
                l.a,
                if l.a_acked { "yes" } else { "no" },
            );
        }
    }
    let published: Vec<&Peer> = s
        .peers
        .iter()
        .filter(|p| p.present() && p.transparent.is_some())
        .collect();
    if !published.is_empty() {
        let _ = writeln!(o, "transparent mode (published; claims accepted):");
        for p in &published {
            let Some(t) = p.transparent else { continue };
            let taken: Vec<String> = published
                .iter()
                .filter(|j| j.id != p.id)
                .filter_map(|j| {
                    accepts(p, j).map(|(v4, v6)| match (v4, v6) {
                        (true, true) => format!("{} (v4 v6)", j.id),
                        (true, false) => format!("{} (v4)", j.id),
                        _ => format!("{} (v6)", j.id),
                    })
                })
                .collect();
            let _ = writeln!(
                o,
                "  {:>2}  {}  seq {}; accepts {}",
                p.id,
                addrs_text(&t.addrs),
                t.seq,
                if taken.is_empty() {
                    "none".to_string()
                } else {
                    taken.join(", ")
                }
            );
        }
    }
    if s.rings.is_empty() {
        let _ = writeln!(o, "rings: none between peers not RESET");
    } else {
        let _ = writeln!(o, "rings (every queue between peers not RESET):");
        let _ = writeln!(
            o,
            "  {:<6}  {:>5}  {:>10}  {:>10}  {:>11}  {:>10}  {:>10}  {:>10}",
            "ring",
            "queue",
            "prod_idx",
            "cons_idx",
            "fill",
            "in flight",
            "prod_event",
            "cons_event"
        );
        for rs in &s.rings {
            let rep = rs.report(g.ring_slots, g.pool_len, max_frame(g));
            let fill = if rep.fill > g.ring_slots {
                "garbage".to_string()
            } else {
                format!("{}/{}", rep.fill, g.ring_slots)
            };
            let _ = writeln!(
                o,
                "  {:<6}  {:>5}  {:>10}  {:>10}  {:>11}  {:>10}  {:>10}  {:>10}",
                format!("{}->{}", rs.from, rs.to),
                rs.queue,
                rs.prod_idx,
                rs.cons_idx,
                fill,
                human_bytes(rep.bytes),
                rs.prod_event,
                rs.cons_event
            );
            for p in &rep.problems {
                let _ = writeln!(o, "          ! {p}");
            }
        }
        let _ = writeln!(
            o,
            "pools (senders not RESET; frames in flight on their rings):"
        );
        let _ = writeln!(
            o,
            "  {:<6}  {:>10}  {:>10}  {:>7}  {:>10}  {:>5}",
            "pool", "offset", "length", "frames", "in flight", "used"
        );
        for p in pools(s) {
            let used = p.bytes as f64 * 100.0 / f64::from(p.len.max(1));
            let _ = writeln!(
                o,
                "  {:<6}  {:>10}  {:>10}  {:>7}  {:>10}  {:>4.0}%",
                format!("pool{}", p.id),
                format!("{:#x}", p.offset),
                human_bytes(p.len.into()),
                p.frames,
                human_bytes(p.bytes),
                used
            );
            if p.bytes > u64::from(p.len) {
                let _ = writeln!(
                    o,
                    "          ! the frames in flight take more than the pool"
                );
            }
            if p.bad_rings != 0 {
                let _ = writeln!(
                    o,
                    "          ! {} of its rings hold impossible words or descriptors",
                    p.bad_rings
                );
            }
        }
    }
    o
}

fn liveness_json(l: Liveness) -> Value {
    match l {
        Liveness::Beating { delta, over } => json!({
            "beating": true,
            "delta": delta,
            "over_ms": over.as_millis() as u64,
        }),
        Liveness::Stale { at_least } => json!({
            "beating": false,
            "stale_ms_at_least": at_least.as_millis() as u64,
        }),
    }
}

/// The JSON document.
pub fn json(path: &str, file_len: u64, interval: Duration, s: &Snapshot, t: &Tracker) -> Value {
    let g = &s.geometry;
    let h = &s.header;
    let peers: Vec<Value> = s
        .peers
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "slot_token": p.token,
                "slot_free": p.token == 0,
                "state": state_name(p.state_raw),
                "state_raw": p.state_raw,
                "state_valid": p.state().is_some(),
                "mac": mac(&p.mac),
                "mtu": p.mtu,
                "features": p.features,
                "doorbell": doorbell(p.features),
                "queues": p.queues(g),
                "queues_raw": p.queues_raw,
                "vectors": p.vectors(),
                "vectors_raw": p.vectors_raw,
                "heartbeat": p.heartbeat,
                "liveness": liveness_json(t.liveness(p.id)),
                "epochs": p.epochs,
                "acks": p.acks,
                "transparent": p.transparent.map(|t| json!({
                    "mac": mac(&t.addrs.mac),
                    "ipv4": t.addrs.v4.map(|a| Ipv4Addr::from(a).to_string()),
                    "ipv6": t.addrs.v6.map(|a| Ipv6Addr::from(a).to_string()),
                    "seq": t.seq,
                })),
                "accepts": s.peers.iter().filter(|j| j.id != p.id).filter_map(|j| {
                    accepts(p, j).map(|(v4, v6)| json!({ "peer": j.id, "ipv4": v4, "ipv6": v6 }))
                }).collect::<Vec<Value>>(),
            })
        })
        .collect();
    let links: Vec<Value> = links(s)
        .iter()
        .map(|l| json!({ "a": l.a, "b": l.b, "a_acked": l.a_acked, "b_acked": l.b_acked, "up": l.up }))
        .collect();
    let rings: Vec<Value> = s
        .rings
        .iter()
        .map(|r| {
            let rep = r.report(g.ring_slots, g.pool_len, max_frame(g));
            json!({
                "from": r.from,
                "to": r.to,
                "queue": r.queue,
                "offset": r.offset,
                "prod_idx": r.prod_idx,
                "prod_event": r.prod_event,
                "cons_idx": r.cons_idx,
                "cons_event": r.cons_event,
                "fill": rep.fill,
                "bytes_in_flight": rep.bytes,
                "in_flight": r.descs.iter().map(|d| json!({ "pos": d.pos, "len": d.len })).collect::<Vec<Value>>(),
                "valid": rep.problems.is_empty(),
                "problems": rep.problems,
            })
        })
        .collect();
    let pools: Vec<Value> = pools(s)
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "offset": p.offset,
                "len": p.len,
                "frames": p.frames,
                "bytes_in_flight": p.bytes,
                "bad_rings": p.bad_rings,
                "valid": p.bad_rings == 0 && p.bytes <= u64::from(p.len),
            })
        })
        .collect();
    json!({
        "path": path,
        "file_len": file_len,
        "interval_ms": interval.as_millis() as u64,
        "header": {
            "magic": h.magic,
            "magic_ok": h.magic == MAGIC,
            "version": h.version,
            "state": phase_name(h.state),
            "state_raw": h.state,
            "attempt": h.state >> 2,
            "header_len": h.header_len,
            "region_len": g.region_len,
            "max_peers": g.max_peers,
            "ring_slots": g.ring_slots,
            "queues": g.queues,
            "ring_stride": g.ring_stride,
            "max_frame": max_frame(g),
            "pool_len": g.pool_len,
            "pools_offset": g.pools_offset,
            "ctrl_offset": g.ctrl_offset,
            "ctrl_stride": g.ctrl_stride,
            "rings_offset": g.rings_offset,
            "rings": g.rings(),
            "nonce": format!("{:#018x}", h.nonce),
            "departures": h.departures,
        },
        "peers": peers,
        "links": links,
        "rings": rings,
        "pools": pools,
    })
}

/// A published address block: MAC, IPv4 and IPv6 address (`-` for none).
fn addrs_text(a: &Addrs) -> String {
    let v4 =
        a.v4.map_or("-".to_string(), |x| Ipv4Addr::from(x).to_string());
    let v6 =
        a.v6.map_or("-".to_string(), |x| Ipv6Addr::from(x).to_string());
    format!("{} {} {}", mac(&a.mac), v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(32 << 20), "32 MiB");
        assert_eq!(human_bytes(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn mac_is_colon_hex() {
        assert_eq!(mac(&[0x52, 0x54, 0, 0xab, 1, 0xff]), "52:54:00:ab:01:ff");
    }
}
