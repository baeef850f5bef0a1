// SPDX-License-Identifier: GPL-2.0

//! Runs the `ivshmem-inspect` binary against region files built with the layout crate.

use ivshmem_net_protocol::layout::{attach, claim_slot, hdr, Geometry, Region};
use ivshmem_net_protocol::link::{ctrl, feature, read_addrs, Accepted, Addrs, Own, PeerState};
use ivshmem_net_protocol::ring::{off, Consumer, Desc, Pool, Producer};
use ivshmem_net_protocol::MmapRegion;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const LEN: u64 = 4 << 20;
const NONCE: u64 = 0x1122_3344_5566_7788;
const BIN: &str = env!("CARGO_BIN_EXE_ivshmem-inspect");

fn region_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    f
}

/// Four peer ids: 0 and 1 in RUN with their link synced, 2 READY, 3 never attached. Ring 0 -> 1
/// queue 0 holds two frames of 100 bytes (three sent, one consumed), ring 0 -> 2 queue 0 one
/// of 1000 bytes, all from peer 0's pool.
fn build(path: &Path) -> (MmapRegion, Geometry, Own) {
    let r = MmapRegion::open(path).unwrap();
    let g = Geometry::new(LEN, 4).unwrap();
    attach(&r, g, NONCE, || false).unwrap();
    let mut own = Vec::new();
    for id in 0..3u32 {
        claim_slot(&r, &g, Some(id), 0xabc0 + id, |_| {}).unwrap();
        let mut o = Own::new(&g, id).unwrap();
        o.attach(&r, [0x52, 0x54, 0, 0, 0, id as u8], 1500 + id)
            .unwrap();
        own.push(o);
    }
    let (e01, e10) = (own[0].epoch(&r, 1).unwrap(), own[1].epoch(&r, 0).unwrap());
    own[0].ack(&r, 1, e10).unwrap();
    own[1].ack(&r, 0, e01).unwrap();
    own[0].set_state(&r, PeerState::Run).unwrap();
    own[1].set_state(&r, PeerState::Run).unwrap();
    own[2].set_state(&r, PeerState::Ready).unwrap();
    own[2].set_features(&r, feature::DOORBELL).unwrap();
    // Peer 0 runs 2 channels, peer 2 listens on 2 vectors; peer 1's queue word is garbage.
    own[0].set_queues(&r, 2).unwrap();
    own[2].set_vectors(&r, 2).unwrap();
    r.store(g.ctrl_offset(1).unwrap() + ctrl::QUEUES, 0x33)
        .unwrap();

    let mut pool = Pool::new(&g, 0).unwrap();
    let mut p = Producer::new(&g, 0, 1, 0).unwrap();
    let mut c = Consumer::new(&g, 0, 1, 0).unwrap();
    p.reset(&r).unwrap();
    c.reset(&r).unwrap();
    for i in 0..3u8 {
        let span = p.reserve(&r, &pool, 100).unwrap().unwrap();
        span.write(&r, 0, &[i; 100]).unwrap();
        p.commit(&r, &mut pool, &Desc::default()).unwrap();
    }
    p.publish(&r).unwrap();
    c.peek(&r).unwrap().unwrap();
    c.pop();
    c.publish(&r).unwrap();
    let mut p2 = Producer::new(&g, 0, 2, 0).unwrap();
    p2.reset(&r).unwrap();
    let span = p2.reserve(&r, &pool, 1000).unwrap().unwrap();
    span.write(&r, 0, &[9; 1000]).unwrap();
    p2.commit(&r, &mut pool, &Desc::default()).unwrap();
    p2.publish(&r).unwrap();
    (r, g, own[0])
}

/// The inspector's rendering of a byte count of at least 1 KiB with no fraction or one digit.
fn render_bytes(n: u32) -> String {
    let k = f64::from(n) / 1024.0;
    let (v, unit) = if k >= 1024.0 {
        (k / 1024.0, "MiB")
    } else {
        (k, "KiB")
    };
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs the inspector while peer 0 beats every 10 ms.
fn run_beating(r: &MmapRegion, own: Own, args: &[&str]) -> Output {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut own = own;
            while !stop.load(Ordering::Relaxed) {
                own.beat(r).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let out = run(args);
        stop.store(true, Ordering::Relaxed);
        out
    })
}

#[test]
fn text_report() {
    let f = region_file();
    let (r, _g, own) = build(f.path());
    let out = run_beating(&r, own, &[f.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(
        out.status.success(),
        "{t}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t.contains("magic IVNT  version 2  state READY (attempt 1)"),
        "{t}"
    );
    assert!(t.contains("max peers 4"), "{t}");
    assert!(t.contains("nonce 0x1122334455667788"), "{t}");
    let line = |id: &str| {
        t.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no line for peer {id}:\n{t}"))
            .to_string()
    };
    let p0 = line("0");
    assert!(p0.contains("0x0000abc0") && p0.contains("RUN"), "{p0}");
    assert!(
        p0.contains("52:54:00:00:00:00") && p0.contains("1500"),
        "{p0}"
    );
    assert!(p0.contains("beating (+"), "{p0}");
    // Columns after the features: queues, vectors.
    let cols = |l: &str| -> Vec<String> { l.split_whitespace().map(String::from).collect() };
    assert_eq!(cols(&p0)[6..8], ["2", "1"], "{p0}");
    let p1 = line("1");
    assert!(p1.contains("RUN") && p1.contains("stale for ≥ 2"), "{p1}");
    assert_eq!(cols(&p1)[6..9], ["1", "(0x33)", "1"], "{p1}");
    assert_eq!(cols(&line("2"))[6..8], ["1", "2"]);
    let p2 = line("2");
    assert!(
        p2.contains("READY") && p2.contains("0x1") && p2.contains("doorbell"),
        "{p2}"
    );
    let p3 = line("3");
    assert!(p3.contains("free") && p3.contains("RESET"), "{p3}");
    assert!(t.contains("0 <-> 1  up"), "{t}");
    assert!(t.contains("0 <-> 2  down"), "{t}");
    let g = Geometry::new(LEN, 4).unwrap();
    assert!(
        t.contains(&format!(
            "rings: {} ({} queues per pair) at {:#x}",
            g.rings(),
            g.queues,
            g.rings_offset
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "pools: 4 of {} ({} B) at {:#x}",
            render_bytes(g.pool_len),
            g.pool_len,
            g.pools_offset
        )),
        "{t}"
    );
    // The first line of ring 0 -> 1 is its queue 0: two frames, 128 bytes each in the pool.
    let ring = line("0->1");
    let cols: Vec<&str> = ring.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["0->1", "0", "3", "1", "2/512", "256"],
        "{ring}"
    );
    let ring = line("0->2");
    assert!(ring.contains("1/512") && ring.contains("1 KiB"), "{ring}");
    // Every queue of the rings between peers that are not RESET: 3 peers, 6 pairs; none
    // with peer 3.
    let rings = t
        .lines()
        .filter(|l| {
            l.trim_start()
                .split(' ')
                .next()
                .is_some_and(|w| w.contains("->"))
        })
        .count();
    assert_eq!(rings as u32, 6 * g.queues, "{t}");
    assert!(t.lines().any(|l| l.trim_start().starts_with("2->1")), "{t}");
    // Peer 0's pool holds its three frames in flight on two rings; the others none.
    let pool0 = line("pool0");
    assert!(
        pool0.contains(&format!("{:#x}", g.pool_offset(0).unwrap()))
            && pool0.contains("   3  ")
            && pool0.contains("1.2 KiB"),
        "{pool0}"
    );
    assert!(line("pool1").contains(" 0 B"), "{t}");
    assert!(!t.contains("pool3"), "{t}");
    assert!(!t.contains("3->") && !t.contains("->3"), "{t}");
    assert!(!t.contains('!'), "no ring problems expected:\n{t}");
}

#[test]
fn json_report() {
    let f = region_file();
    let (r, g, own) = build(f.path());
    let out = run_beating(
        &r,
        own,
        &["--json", "--interval", "100ms", f.path().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = &v["header"];
    assert_eq!(h["magic_ok"], true);
    assert_eq!(h["version"], 2);
    assert_eq!(h["state"], "READY");
    assert_eq!(h["region_len"], LEN);
    assert_eq!(h["max_peers"], 4);
    assert_eq!(h["ring_slots"], g.ring_slots);
    assert_eq!(h["queues"], g.queues);
    assert_eq!(h["pool_len"], g.pool_len);
    assert_eq!(h["pools_offset"], g.pools_offset);
    assert_eq!(h["max_frame"], 128 << 10);
    assert_eq!(h["nonce"], "0x1122334455667788");
    assert_eq!(v["interval_ms"], 100);
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 4);
    assert_eq!(peers[0]["state"], "RUN");
    assert_eq!(peers[0]["slot_token"], 0xabc0);
    assert_eq!(peers[0]["mac"], "52:54:00:00:00:00");
    assert_eq!(peers[0]["mtu"], 1500);
    assert_eq!(
        (&peers[0]["queues"], &peers[0]["vectors"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(
        (&peers[1]["queues"], &peers[1]["queues_raw"]),
        (&json!(1), &json!(0x33))
    );
    assert_eq!(
        (&peers[2]["vectors"], &peers[2]["vectors_raw"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(peers[0]["liveness"]["beating"], true);
    assert_eq!(peers[1]["liveness"]["beating"], false);
    assert!(peers[1]["liveness"]["stale_ms_at_least"].as_u64().unwrap() >= 100);
    assert_eq!(peers[2]["state"], "READY");
    assert_eq!(peers[2]["doorbell"], true);
    assert_eq!(peers[0]["doorbell"], false);
    assert_eq!(peers[3]["state"], "RESET");
    assert_eq!(peers[3]["slot_free"], true);
    let links = v["links"].as_array().unwrap();
    assert_eq!(links.len(), 3);
    assert_eq!(links[0]["up"], true);
    let rings = v["rings"].as_array().unwrap();
    assert_eq!(rings.len() as u32, 6 * g.queues);
    let ring = |from: u32, to: u32, queue: u32| {
        rings
            .iter()
            .find(|x| x["from"] == from && x["to"] == to && x["queue"] == queue)
            .unwrap()
    };
    let r01 = ring(0, 1, 0);
    assert_eq!(r01["prod_idx"], 3);
    assert_eq!(r01["cons_idx"], 1);
    assert_eq!(r01["fill"], 2);
    assert_eq!(r01["bytes_in_flight"], 256);
    // The two frames still in flight: the second and third, 64-byte aligned in 0's pool.
    assert_eq!(
        r01["in_flight"],
        serde_json::json!([{"pos": 128, "len": 100}, {"pos": 256, "len": 100}])
    );
    assert_eq!(r01["valid"], true);
    assert_eq!(r01["offset"], g.ring_offset(0, 1, 0).unwrap());
    assert_eq!(
        ring(0, 2, 0)["in_flight"],
        serde_json::json!([{"pos": 384, "len": 1000}])
    );
    if g.queues > 1 {
        assert_eq!(ring(0, 1, 1)["fill"], 0);
        assert_eq!(ring(0, 1, 1)["offset"], g.ring_offset(0, 1, 1).unwrap());
    }
    let pools = v["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 3);
    assert_eq!(pools[0]["offset"], g.pool_offset(0).unwrap());
    assert_eq!(pools[0]["len"], g.pool_len);
    assert_eq!(pools[0]["frames"], 3);
    assert_eq!(pools[0]["bytes_in_flight"], 256 + 1024);
    assert_eq!(pools[0]["valid"], true);
    assert_eq!(pools[1]["frames"], 0);
}

#[test]
fn never_writes() {
    let f = region_file();
    let (r, _g, _own) = build(f.path());
    let before = std::fs::read(f.path()).unwrap();
    let out = run(&["--interval", "10", f.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(f.path()).unwrap(), before);
    // Read permission is all it needs.
    drop(r);
    let mut perm = std::fs::metadata(f.path()).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(f.path(), perm).unwrap();
    assert!(run(&["--interval", "10", f.path().to_str().unwrap()])
        .status
        .success());
}

fn refused(path: &Path, want: &str) {
    let out = run(&["--interval", "1", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("refusing") && err.contains(want), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_regions_are_refused() {
    // All zero: nobody set it up.
    let f = region_file();
    refused(f.path(), "not initialised");

    // READY with another magic.
    let (r, _, _) = build(f.path());
    r.store(hdr::MAGIC, 0xdead_beef).unwrap();
    refused(f.path(), "bad magic 0xdeadbeef");
    r.store(hdr::MAGIC, u32::from_le_bytes(*b"IVNT")).unwrap();

    // Another layout version (the first one, say).
    r.store(hdr::VERSION, 1).unwrap();
    refused(f.path(), "layout version 1");
    r.store(hdr::VERSION, 2).unwrap();

    // Pool length, pools offset or queues that the size and peer count do not give.
    for field in [hdr::POOL_LEN, hdr::POOLS_OFFSET, hdr::QUEUES] {
        let v = r.load(field).unwrap();
        r.store(field, v * 2).unwrap();
        refused(f.path(), "geometry");
        r.store(field, v).unwrap();
    }

    // Geometry that its size and peer count do not give.
    let slots = r.load(hdr::RING_SLOTS).unwrap();
    r.store(hdr::RING_SLOTS, slots * 2).unwrap();
    refused(f.path(), "geometry");
    r.store(hdr::RING_SLOTS, slots).unwrap();
    r.store(hdr::MAX_PEERS, 1000).unwrap();
    refused(f.path(), "max peers 1000");
    r.store(hdr::MAX_PEERS, 4).unwrap();

    // Mid-initialisation.
    r.store(hdr::STATE, (7 << 2) | 1).unwrap();
    refused(f.path(), "being initialised");
    r.store(hdr::STATE, (1 << 2) | 2).unwrap();
    assert!(run(&["--interval", "1", f.path().to_str().unwrap()])
        .status
        .success());

    // A header describing more than the file holds.
    drop(r);
    f.as_file().set_len(LEN - 4096).unwrap();
    refused(f.path(), "the file has only");

    // Too short, and empty.
    f.as_file().set_len(100).unwrap();
    refused(f.path(), "too short");
    f.as_file().set_len(0).unwrap();
    refused(f.path(), "too short");
}

#[test]
fn missing_file_and_bad_usage() {
    let out = run(&["/nonexistent/ivshmem-region"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    assert!(help.contains("--shm NAME") && help.contains("--watch") && help.contains("--json"));
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn random_bytes_do_not_crash() {
    let f = region_file();
    for seed in 1..4 {
        std::fs::write(f.path(), random_bytes(seed, LEN as usize)).unwrap();
        let out = run(&["--interval", "1", f.path().to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn garbage_in_peer_fields_is_shown() {
    let f = region_file();
    let g = Geometry::new(LEN, 4).unwrap();
    for seed in 10..14 {
        // A valid header over random control blocks, slots and rings.
        std::fs::write(f.path(), random_bytes(seed, LEN as usize)).unwrap();
        let r = MmapRegion::open(f.path()).unwrap();
        let slots: Vec<u32> = (0..4)
            .map(|i| r.load(hdr::PEER_SLOTS + 4 * i).unwrap())
            .collect();
        r.store(hdr::STATE, 0).unwrap();
        attach(&r, g, NONCE, || false).unwrap();
        for (i, s) in slots.iter().enumerate() {
            r.store(hdr::PEER_SLOTS + 4 * i, *s).unwrap();
        }
        if seed == 10 {
            // Make sure at least one ring between "present" peers is sampled.
            r.store(g.ctrl_offset(0).unwrap(), 3).unwrap();
            r.store(g.ctrl_offset(1).unwrap(), 0x1234_5678).unwrap();
        }
        drop(r);
        for args in [&["--interval", "1"][..], &["--json", "--interval", "1"][..]] {
            let mut a = args.to_vec();
            a.push(f.path().to_str().unwrap());
            let out = run(&a);
            let t = text(&out);
            assert!(
                out.status.success(),
                "{t}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if seed == 10 && a[0] == "--json" {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["peers"][1]["state_valid"], false);
                let r01 = v["rings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["from"] == 0 && x["to"] == 1)
                    .unwrap();
                assert_eq!(r01["valid"], false);
            }
            if seed == 10 && a[0] != "--json" {
                assert!(t.contains("garbage(0x12345678)"), "{t}");
                assert!(t.contains("garbage"), "{t}");
            }
        }
    }
}

#[test]
fn shm_name_and_watch() {
    let name = format!("ivshmem-inspect-test-{}", std::process::id());
    let path = Path::new("/dev/shm").join(&name);
    if !Path::new("/dev/shm").is_dir() {
        eprintln!("no /dev/shm; skipped");
        return;
    }
    std::fs::File::create(&path).unwrap().set_len(LEN).unwrap();
    let _ = build(&path);
    let out = run(&["--shm", &name, "--json", "--interval", "1"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["path"], path.to_str().unwrap());

    let mut child = Command::new(BIN)
        .args(["--watch", "--interval", "1", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(t.matches("\x1b[H\x1b[2J").count() >= 2, "{t}");
    assert!(t.contains("refreshing every 1 s"), "{t}");
    std::fs::remove_file(&path).unwrap();
}

/// Transparent mode: what peers 0 and 1 publish, and which claims each accepts: 1 accepts
/// both of 0's, 0 accepts only the IPv4 one of 1's; an acceptance of a block 1 has since
/// republished does not count.
#[test]
fn transparent_claims_and_acceptance() {
    let f = region_file();
    let (r, g, _) = build(f.path());
    let mut own: Vec<Own> = (0..2).map(|id| Own::new(&g, id).unwrap()).collect();
    for (id, o) in own.iter_mut().enumerate() {
        o.attach(&r, [0x52, 0x54, 0, 0, 0, id as u8], 1500).unwrap();
        o.set_state(&r, PeerState::Run).unwrap();
        o.set_features(&r, feature::TRANSPARENT).unwrap();
        let n = id as u8 + 1;
        let a = Addrs {
            mac: [0x52, 0x54, 0, 0x7a, 0, n],
            v4: Some([10, 96, 0, n]),
            v6: Some([0xfd, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n]),
        };
        o.publish_addrs(&r, &a).unwrap();
    }
    let (s0, s1) = (own[0].published_seq(), own[1].published_seq());
    own[1].accept(&r, 0, Accepted { v4: s0, v6: s0 }).unwrap();
    own[0].accept(&r, 1, Accepted { v4: s1, v6: s1 }).unwrap();
    // 1 republishes: 0's acceptance of its IPv6 claim is stale; 0 renews only the IPv4 one.
    let mut a1 = read_addrs(&r, &g, 1).unwrap().addrs;
    a1.v4 = Some([10, 96, 0, 12]);
    own[1].publish_addrs(&r, &a1).unwrap();
    let s1 = own[1].published_seq();
    own[0].accept(&r, 1, Accepted { v4: s1, v6: 0 }).unwrap();

    let out = run(&[f.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("transparent mode (published; claims accepted):"),
        "{t}"
    );
    assert!(
        t.contains("0  52:54:00:7a:00:01 10.96.0.1 fd96::1  seq") && t.contains("accepts 1 (v4)\n"),
        "{t}"
    );
    assert!(
        t.contains("1  52:54:00:7a:00:02 10.96.0.12 fd96::2  seq")
            && t.contains("accepts 0 (v4 v6)\n"),
        "{t}"
    );

    let out = run(&["--json", f.path().to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["peers"];
    assert_eq!(p[0]["transparent"]["ipv4"], "10.96.0.1");
    assert_eq!(p[0]["transparent"]["ipv6"], "fd96::1");
    assert_eq!(p[1]["transparent"]["seq"], s1);
    assert_eq!(
        p[0]["accepts"],
        serde_json::json!([{"peer": 1, "ipv4": true, "ipv6": false}])
    );
    assert_eq!(
        p[1]["accepts"],
        serde_json::json!([{"peer": 0, "ipv4": true, "ipv6": true}])
    );
    assert!(p[2]["transparent"].is_null());
}

/// Descriptors in flight that a consumer would refuse (outside the sender's pool, unaligned,
/// length 0 or above the largest frame) are flagged on their ring and their sender's pool, and
/// their bytes are not counted.
#[test]
fn impossible_descriptors_are_flagged() {
    let f = region_file();
    let (r, g, _) = build(f.path());
    let base = g.ring_offset(0, 1, 0).unwrap();
    // Index 1 (slot 1) and 2 are in flight on ring 0 -> 1.
    let desc = |idx: usize| base + 256 + 32 * idx;
    let cases: [(u32, u32, &str); 4] = [
        (g.pool_len, 100, "outside its sender's pool"),
        (100, 100, "outside its sender's pool or unaligned"),
        (0, 0, "length 0 or above the largest frame"),
        (0, (128 << 10) + 1, "length 0 or above the largest frame"),
    ];
    for (pos, len, want) in cases {
        let d = Desc {
            pos,
            len,
            ..Desc::default()
        };
        r.write(desc(2), &d.encode()).unwrap();
        let out = run(&["--interval", "1", f.path().to_str().unwrap()]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains("! a descriptor in flight") && t.contains(want),
            "{t}"
        );
        assert!(
            t.contains("! 1 of its rings hold impossible words or descriptors"),
            "{t}"
        );
        let out = run(&["--json", "--interval", "1", f.path().to_str().unwrap()]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let r01 = &v["rings"][0];
        assert_eq!(
            (r01["from"].as_u64(), r01["to"].as_u64()),
            (Some(0), Some(1))
        );
        assert_eq!(r01["valid"], false);
        // Only the valid frame of the two counts.
        assert_eq!(r01["bytes_in_flight"], 128);
        assert_eq!(v["pools"][0]["valid"], false);
        assert_eq!(v["pools"][0]["frames"], 2);
    }
    // A producer index a ring ahead of the consumer: fill is garbage, no descriptor is read.
    r.store(base + off::PROD_IDX, 1 + g.ring_slots + 1).unwrap();
    let out = run(&["--json", "--interval", "1", f.path().to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rings"][0]["valid"], false);
    assert_eq!(v["rings"][0]["in_flight"], serde_json::json!([]));
    let out = run(&["--interval", "1", f.path().to_str().unwrap()]);
    assert!(text(&out).contains("garbage"), "{}", text(&out));
}
