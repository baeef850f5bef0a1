// SPDX-License-Identifier: GPL-2.0

//! Runs `ring-bench --quick --json` and `ivnet-rr` server and client over 127.0.0.1.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const RING_BENCH: &str = env!("CARGO_BIN_EXE_ring-bench");
const IVNET_RR: &str = env!("CARGO_BIN_EXE_ivnet-rr");

#[test]
fn ring_bench_quick_json() {
    let child = Command::new(RING_BENCH)
        .args(["--quick", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["mode"], "quick");
    assert_eq!(v["errors"], 0);
    assert_eq!(v["region"]["len"], 32 << 20);
    assert_eq!(v["region"]["max_peers"], 2);
    assert_eq!(v["region"]["ring_slots"], 512);
    assert_eq!(v["region"]["queues"], 8);
    // Layout v2: the rest of the region after the rings is one pool per sender.
    let pool = v["region"]["pool_len"].as_u64().unwrap();
    assert!((15 << 20..16 << 20).contains(&pool), "{pool}");
    let tp = v["throughput"].as_array().unwrap();
    assert_eq!(tp.len(), 9);
    for t in tp {
        assert!(
            ["ring", "unix", "tcp"].contains(&t["transport"].as_str().unwrap()),
            "{t}"
        );
        assert!([64, 1500, 65536].contains(&t["frame_bytes"].as_u64().unwrap()));
        assert_eq!(t["errors"], 0, "{t}");
        assert!(t["failed"].is_null(), "{t}");
        assert!(t["frames"].as_u64().unwrap() > 0, "{t}");
        assert!(t["frames_per_sec"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["gb_per_sec"].as_f64().unwrap() > 0.0, "{t}");
        // The best window, when a trial had one (a loaded machine may leave none).
        let peak = &t["peak_frames_per_sec"];
        assert!(peak.is_null() || peak.as_f64().unwrap() > 0.0, "{t}");
    }
    let lat = v["latency"].as_array().unwrap();
    assert_eq!(lat.len(), 3);
    for l in lat {
        assert_eq!(l["errors"], 0, "{l}");
        assert_eq!(l["frame_bytes"], 64);
        assert!(l["round_trips"].as_u64().unwrap() >= 10_000, "{l}");
        let (p50, p99, max) = (
            l["p50_us"].as_f64().unwrap(),
            l["p99_us"].as_f64().unwrap(),
            l["max_us"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{l}");
    }
    // Thread pairs on their own queues, 1 and 2 of them by default.
    let sc = &v["scaling"];
    assert_eq!(sc["frame_bytes"], 1500);
    // One sender (peer 0) and one receiver: the pairs share its pool, a partition each.
    assert_eq!(sc["region"]["max_peers"], 2);
    let runs = sc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["pairs"], i + 1, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        assert!(run["failed"].is_null(), "{run}");
        let each = run["per_pair_frames_per_sec"].as_array().unwrap();
        assert_eq!(each.len(), i + 1, "{run}");
        assert!(each.iter().all(|x| x.as_f64().unwrap() > 0.0), "{run}");
        let sum: f64 = each.iter().map(|x| x.as_f64().unwrap()).sum();
        assert!(
            (sum - run["frames_per_sec"].as_f64().unwrap()).abs() < 1.0,
            "{run}"
        );
    }
    assert_eq!(runs[0]["speedup"], 1.0);
    assert!(runs[1]["speedup"].as_f64().unwrap() > 0.0);
    assert_eq!(v["memcpy"]["buffer_bytes"], 64 << 20);
    assert!(v["memcpy"]["gb_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["memcpy"]["errors"], 0);
    // No region file left behind.
    for tag in ["", "-pairs"] {
        let leftover = format!("/dev/shm/ring-bench-{pid}{tag}");
        assert!(!std::path::Path::new(&leftover).exists(), "{leftover}");
    }
}

#[test]
fn ring_bench_help_and_bad_args() {
    let out = Command::new(RING_BENCH).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--quick"));
    let out = Command::new(RING_BENCH).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    for bad in [&["--pairs", "6"][..], &["--pairs", "x"], &["--pairs"]] {
        let out = Command::new(RING_BENCH).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--pairs"),
            "{bad:?}"
        );
    }
}

/// Starts `ivnet-rr server` on 127.0.0.1 with a port the system picks; returns it and the port.
fn server(extra: &[&str]) -> (Child, u16) {
    let mut child = Command::new(IVNET_RR)
        .args(["server", "--bind", "127.0.0.1", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected {line:?}"))
        .parse()
        .unwrap();
    (child, port)
}

fn client(port: u16, extra: &[&str]) -> std::process::Output {
    Command::new(IVNET_RR)
        .args(["client", "127.0.0.1", "--port", &port.to_string()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn ivnet_rr_json() {
    let (mut srv, port) = server(&["--once"]);
    let out = client(port, &["--count", "300", "--size", "100", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 300);
    assert_eq!(v["size"], 100);
    assert_eq!(v["port"], port);
    assert_eq!(v["errors"], 0);
    let get = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert!(get("min_us") > 0.0);
    assert!(get("p50_us") <= get("p90_us"));
    assert!(get("p90_us") <= get("p99_us"));
    assert!(get("p99_us") <= get("max_us"));
    assert!(get("transactions_per_sec") > 0.0);
    // --once: the server ends with the connection, cleanly.
    assert!(srv.wait().unwrap().success());
}

#[test]
fn ivnet_rr_text_several_clients() {
    let (mut srv, port) = server(&[]);
    for size in ["1", "65536"] {
        let out = client(port, &["--count", "50", "--size", size, "--warmup", "5"]);
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{t}");
        assert!(t.contains(&format!("50 round trips of {size} B")), "{t}");
        assert!(
            t.contains("p50") && t.contains("p99") && t.contains("errors 0"),
            "{t}"
        );
    }
    // The server is still there for another client.
    assert!(srv.try_wait().unwrap().is_none());
    srv.kill().unwrap();
    srv.wait().unwrap();
}

#[test]
fn ivnet_rr_errors() {
    // Nobody listening: find a free port by binding and closing it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = client(port, &["--count", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let out = Command::new(IVNET_RR).arg("bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = Command::new(IVNET_RR).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("client HOST"));
}
