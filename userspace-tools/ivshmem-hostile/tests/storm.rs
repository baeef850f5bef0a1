// SPDX-License-Identifier: GPL-2.0

//! Runs the `ivshmem-hostile` binary against region files built with the layout crate: what it
//! refuses, that a storm really lands in every area it aims at, that it stops cleanly on
//! SIGTERM, and that the layout crate's readers return errors, never panic, on what it leaves.

use ivshmem_net_protocol::layout::{
    attach, claim_slot, hdr, read_geometry, Geometry, Region, DEFAULT_MAX_PEERS, DESC_LEN,
    HEADER_LEN, RING_HDR_LEN,
};
use ivshmem_net_protocol::link::{peer_doorbell, read_peer, Own, PeerState};
use ivshmem_net_protocol::ring::{Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::MmapRegion;
use serde_json::Value;
use std::ops::Range;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LEN: u64 = 4 << 20;
const BIN: &str = env!("CARGO_BIN_EXE_ivshmem-hostile");

fn region_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    f
}

/// A region for the default 8 peer ids with peers 0 and 1 attached, in RUN, their link synced;
/// ring 0 -> 1 holds three frames and ring 1 -> 0 two (on every queue), none consumed.
fn build(path: &Path) -> Geometry {
    build_for(path, DEFAULT_MAX_PEERS)
}

/// [`build`] for `peers` peer ids.
fn build_for(path: &Path, peers: u32) -> Geometry {
    let r = MmapRegion::open(path).unwrap();
    let g = Geometry::new(LEN, peers).unwrap();
    attach(&r, g, 0x1122_3344_5566_7788, || false).unwrap();
    let mut own = Vec::new();
    for id in 0..2u32 {
        claim_slot(&r, &g, Some(id), 0xabc0 + id, |_| {}).unwrap();
        let mut o = Own::new(&g, id).unwrap();
        o.attach(&r, [0x52, 0x54, 0, 0, 0, id as u8], 1500).unwrap();
        own.push(o);
    }
    let (e01, e10) = (own[0].epoch(&r, 1).unwrap(), own[1].epoch(&r, 0).unwrap());
    own[0].ack(&r, 1, e10).unwrap();
    own[1].ack(&r, 0, e01).unwrap();
    for o in &mut own {
        o.set_state(&r, PeerState::Run).unwrap();
    }
    for (from, to, frames) in [(0, 1, 3u8), (1, 0, 2)] {
        let mut pool = Pool::new(&g, from).unwrap();
        for q in 0..g.queues {
            let mut p = Producer::new(&g, from, to, q).unwrap();
            Consumer::new(&g, from, to, q).unwrap().reset(&r).unwrap();
            p.reset(&r).unwrap();
            for i in 0..frames {
                let span = p.reserve(&r, &pool, 100 + u32::from(i)).unwrap().unwrap();
                span.write(&r, 0, &[i; 100]).unwrap();
                p.commit(&r, &mut pool, &Desc::default()).unwrap();
            }
            p.publish(&r).unwrap();
        }
    }
    g
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_command_lines_exit_2_with_a_message() {
    for args in [
        &[][..],
        &["--bogus", "/tmp/x"],
        &["/tmp/x", "--seconds", "0"],
        &["/tmp/x", "--mode", "evil"],
        &["/tmp/x", "--rate", "fast"],
        &["/tmp/x", "--seed"],
        &["/tmp/a", "/tmp/b"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.starts_with("ivshmem-hostile: ") && e.contains("--help"),
            "{args:?}: {e}"
        );
        assert!(o.stdout.is_empty());
    }
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--mode"));
}

#[test]
fn refuses_what_is_not_a_region_and_leaves_it_byte_identical() {
    type Make = Box<dyn Fn(&Path)>;
    let cases: [(&str, Make); 6] = [
        (
            "empty file",
            Box::new(|p: &Path| std::fs::write(p, b"").unwrap()),
        ),
        (
            "short text file",
            Box::new(|p: &Path| std::fs::write(p, b"IVNT but not a region\n").unwrap()),
        ),
        (
            "zeroed 4 MiB",
            Box::new(|p: &Path| std::fs::write(p, vec![0u8; LEN as usize]).unwrap()),
        ),
        (
            "bad magic",
            Box::new(|p: &Path| {
                std::fs::write(p, vec![0u8; LEN as usize]).unwrap();
                build(p);
                MmapRegion::open(p)
                    .unwrap()
                    .store(hdr::MAGIC, 0x4956_4e54)
                    .unwrap();
            }),
        ),
        (
            "version 1",
            Box::new(|p: &Path| {
                std::fs::write(p, vec![0u8; LEN as usize]).unwrap();
                build(p);
                MmapRegion::open(p).unwrap().store(hdr::VERSION, 1).unwrap();
            }),
        ),
        (
            "truncated region",
            Box::new(|p: &Path| {
                std::fs::write(p, vec![0u8; 2 * LEN as usize]).unwrap();
                let r = MmapRegion::open(p).unwrap();
                let g = Geometry::new(2 * LEN, 4).unwrap();
                attach(&r, g, 1, || false).unwrap();
                drop(r);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(LEN)
                    .unwrap();
            }),
        ),
    ];
    for (what, make) in cases {
        let f = tempfile::NamedTempFile::new().unwrap();
        make(f.path());
        let before = std::fs::read(f.path()).unwrap();
        let o = run(&[
            f.path().to_str().unwrap(),
            "--seconds",
            "0.2",
            "--rate",
            "0",
        ]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("ivshmem-hostile: "), "{what}");
        assert!(o.stdout.is_empty(), "{what}");
        assert!(
            std::fs::read(f.path()).unwrap() == before,
            "{what}: file changed"
        );
    }
    let o = run(&["/nonexistent/ivnet-region"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open"));
}

/// The byte ranges a storm must have changed, by name.
fn areas(g: &Geometry) -> Vec<(String, Range<usize>)> {
    let ctrl = |j: u32| {
        let b = g.ctrl_offset(j).unwrap();
        b..b + g.ctrl_stride as usize
    };
    let ring = |from, to| g.ring_offset(from, to, 0).unwrap();
    let descs = |from, to| {
        let b = ring(from, to) + RING_HDR_LEN as usize;
        b..b + (g.ring_slots * DESC_LEN) as usize
    };
    let pool = |j| {
        let b = g.pool_offset(j).unwrap();
        b..b + g.pool_len as usize
    };
    let mut v = vec![
        ("header".to_string(), 0..HEADER_LEN as usize),
        ("ctrl 0".into(), ctrl(0)),
        ("ctrl 1".into(), ctrl(1)),
        ("empty ctrl blocks".into(), ctrl(2).start..ctrl(7).end),
        ("ring header 0->1".into(), ring(0, 1)..ring(0, 1) + 256),
        ("ring header 1->0".into(), ring(1, 0)..ring(1, 0) + 256),
        ("descriptors 0->1".into(), descs(0, 1)),
        ("descriptors 1->0".into(), descs(1, 0)),
    ];
    // The rings with an empty end, headers and descriptors together.
    let mut empty = Vec::new();
    for from in 0..g.max_peers {
        for to in (0..g.max_peers).filter(|&to| to != from && (from > 1 || to > 1)) {
            empty.push(ring(from, to)..descs(from, to).end);
        }
    }
    v.extend(
        empty
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 7 == 0)
            .map(|(i, r)| (format!("empty ring #{i}"), r)),
    );
    v.push(("pool 0".into(), pool(0)));
    v.push(("pool 1".into(), pool(1)));
    v
}

/// Reads every ring as a consumer and as a producer, every peer's control block as every other
/// peer, and the header, through the layout crate: nothing may panic. Returns how many
/// operations reported an error.
fn read_everything(r: &MmapRegion, g: &Geometry) -> usize {
    let mut errors = 0;
    let mut buf = vec![0u8; g.pool_len as usize];
    for from in 0..g.max_peers {
        let pool = Pool::new(g, from).unwrap();
        for to in (0..g.max_peers).filter(|&to| to != from) {
            for q in 0..g.queues {
                let mut c = Consumer::new(g, from, to, q).unwrap();
                errors += c.pending(r).is_err() as usize;
                for _ in 0..=g.ring_slots {
                    match c.peek(r) {
                        Ok(Some(d)) => {
                            assert!(c.read_frame(r, &d, &mut buf).is_ok());
                            c.pop();
                        }
                        Ok(None) => break,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                let _ = c.prod_event(r);
                let _ = c.kick_needed(r, 0);
                let mut p = Producer::new(g, from, to, q).unwrap();
                errors += p.in_flight(r).is_err() as usize;
                errors += p.collect(r).is_err() as usize;
                errors += p.reserve(r, &pool, 100).is_err() as usize;
                let _ = p.cons_event(r);
                let _ = p.kick_needed(r, 0);
            }
        }
    }
    for j in 0..g.max_peers {
        let _ = peer_doorbell(r, g, j);
        for me in (0..g.max_peers).filter(|&me| me != j) {
            let v = read_peer(r, g, j, me).unwrap();
            errors += v.state.is_none() as usize;
        }
    }
    errors += read_geometry(r).is_err() as usize;
    errors
}

fn storm(mode: &str, seed: &str) {
    let f = region_file();
    let g = build(f.path());
    let before = std::fs::read(f.path()).unwrap();
    let o = run(&[
        f.path().to_str().unwrap(),
        "--seconds",
        "1",
        "--mode",
        mode,
        "--seed",
        seed,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("seed {seed}")),
        "{}",
        stderr(&o)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["seed"].as_u64(), seed.parse().ok());
    let secs = j["seconds"].as_f64().unwrap();
    assert!((1.0..3.0).contains(&secs), "{secs}");
    let writes = j["writes"].as_u64().unwrap();
    assert!(writes > 1000, "{writes}");
    // Default rate 20000/s, and never a burst past it.
    assert!(
        writes as f64 <= 20_000.0 * secs + 500.0,
        "{writes} in {secs}"
    );
    let by_kind = j["by_kind"].as_object().unwrap();
    assert_eq!(
        by_kind.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        writes
    );
    assert!(
        by_kind.values().all(|v| v.as_u64() > Some(0)),
        "{by_kind:?}"
    );

    let after = std::fs::read(f.path()).unwrap();
    for (name, range) in areas(&g) {
        assert!(
            before[range.clone()] != after[range.clone()],
            "{mode} storm left {name} ({range:?}) unchanged"
        );
    }
    assert!(before[g.region_len as usize..] == after[g.region_len as usize..]);

    let r = MmapRegion::open(f.path()).unwrap();
    let errors = read_everything(&r, &g);
    assert!(
        errors > 0,
        "a {mode} storm left nothing for the layout to refuse"
    );
}

#[test]
fn crafted_storm_lands_in_every_area_and_the_layout_refuses_it_without_panicking() {
    storm("crafted", "1");
}

#[test]
fn random_storm_lands_in_every_area_and_the_layout_refuses_it_without_panicking() {
    storm("random", "2");
}

#[test]
fn mixed_storm_reports_both_kinds_of_attack() {
    let f = region_file();
    build(f.path());
    let o = run(&[
        f.path().to_str().unwrap(),
        "--seconds",
        "2.2",
        "--rate",
        "2000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("writes") && out.contains("seed"), "{out}");
    let count = |name: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing: {out}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert!(count("random-desc") > 0);
    assert!(count("prod-ahead") > 0);
    assert!(count("ctrl-fake-run") > 0);
}

#[test]
fn sigterm_stops_the_storm_with_a_summary() {
    let f = region_file();
    build(f.path());
    let child = Command::new(BIN)
        .args([f.path().to_str().unwrap(), "--seconds", "60", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let start = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["seconds"].as_f64().unwrap() < 10.0);
    assert!(j["writes"].as_u64().unwrap() > 0);
    assert!(j["seed"].is_u64());
}

/// `--queue Q` aims the ring attacks at queue Q only: a crafted storm (which writes rings only
/// through the ring attacks) leaves every ring of the other queue as it was, and changes queue
/// Q's rings between the present peers; a queue the region lacks is refused.
#[test]
fn queue_option_aims_at_one_queue() {
    let f = region_file();
    // 4 peer ids in 4 MiB: two queues per pair.
    let g = build_for(f.path(), 4);
    assert_eq!(g.queues, 2);
    let before = std::fs::read(f.path()).unwrap();
    let o = run(&[
        f.path().to_str().unwrap(),
        "--queue",
        "2",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("queues 0 to 1"), "{}", stderr(&o));
    assert!(std::fs::read(f.path()).unwrap() == before);
    let o = run(&[
        f.path().to_str().unwrap(),
        "--seconds",
        "0.5",
        "--mode",
        "crafted",
        "--queue",
        "1",
        "--seed",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("rings of queue 1 of 2"),
        "{}",
        stderr(&o)
    );
    let after = std::fs::read(f.path()).unwrap();
    let ring = |from, to, q| {
        let b = g.ring_offset(from, to, q).unwrap();
        b..b + g.ring_stride as usize
    };
    for from in 0..4 {
        for to in (0..4).filter(|&to| to != from) {
            let r = ring(from, to, 0);
            assert!(
                before[r.clone()] == after[r.clone()],
                "queue 0 ring {from}->{to} changed"
            );
        }
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let r = ring(from, to, 1);
        assert!(
            before[r.clone()] != after[r.clone()],
            "queue 1 ring {from}->{to} unchanged"
        );
    }
}
