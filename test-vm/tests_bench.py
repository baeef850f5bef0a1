# SPDX-License-Identifier: GPL-2.0
"""The benchmark's smoke run: `bench.py --smoke` in its own guests (bA..bD, a network namespace
with a bridge and taps), both ivshmem-net modes, virtio-net, loopback and transparent mode. It
measures the normal kernel, so it is skipped with `--kernel debug`."""

import json
import sys

import pytest

import vm
from tests_host import run_host
from vm import check

TOP = vm.TOP


@pytest.mark.bench
def test_bench_smoke():
    """`bench.py --smoke` (what `make bench` runs, with tiny transfers): every path yields
    numbers, and the JSON, markdown and PNG are written."""
    out_dir = TOP / "build" / "bench-smoke"
    before = set(out_dir.glob("*.json")) if out_dir.exists() else set()
    rc, out = run_host("%s test-vm/bench.py --smoke --out %s" % (sys.executable, out_dir),
                       timeout=300)
    check(rc == 0, "bench.py --smoke failed (rc=%d):\n%s" % (rc, out[-4000:]))
    new = sorted(set(out_dir.glob("*.json")) - before)
    check(new, "bench.py --smoke wrote no JSON in %s:\n%s" % (out_dir, out[-2000:]))
    doc = json.loads(new[-1].read_text())
    for ext in (".md", ".png"):
        check(new[-1].with_suffix(ext).exists(), "no %s next to %s" % (ext, new[-1]))
    paths = doc.get("paths", {})
    for p in ("ivshmem-doorbell", "ivshmem-polling", "virtio-net", "loopback"):
        check(p in paths, "path %s missing from the results: %s" % (p, sorted(paths)))
        r = paths[p]
        for key in ("tcp1", "tcp4"):
            check(r[key]["gbit_s"] > 0, "%s %s: %r" % (p, key, r[key]))
        check(r["udp64"]["rx_pps"] > 0 and 0 <= r["udp64"]["loss_pct"] <= 100,
              "%s udp64: %r" % (p, r["udp64"]))
        rr = r["rr1"]
        check(rr["count"] > 0 and rr["errors"] == 0 and 0 < rr["p50_us"] <= rr["p99_us"],
              "%s rr1: %r" % (p, rr))
        for key in ("tcp1", "tcp4", "udp64", "rr1"):
            for side in ("cpu_client_pct", "cpu_server_pct"):
                v = r[key][side]
                check(v is None if (side == "cpu_server_pct" and p == "loopback")
                      else 0 <= v <= 100, "%s %s %s: %r" % (p, key, side, v))
    rounds = doc["plan"]["tcp_rounds"]
    for p in ("ivshmem-doorbell", "ivshmem-polling"):
        for key in ("tcp1", "tcp4"):
            rec = paths[p][key]
            # Its own pair's virtio-net, measured in the same rounds (the ratio's base).
            check(len(rec["trials_gbit_s"]) == rounds and rec["gbit_s"] in rec["trials_gbit_s"]
                  and rec["same_pair"].get("virtio-net", 0) > 0,
                  "%s %s: no interleaved rounds with virtio-net: %r" % (p, key, rec))
        check(paths[p]["tcp1"]["same_pair"].get("loopback", 0) > 0,
              "%s tcp1: no loopback in the same pair: %r" % (p, paths[p]["tcp1"]))
        for key in ("rr1", "rr1_busy"):
            rec = paths[p][key]
            # Request/response likewise: rounds interleaved with the pair's own virtio-net.
            check(len(rec["trials_p50_us"]) == doc["plan"]["rr_rounds"]
                  and rec["p50_us"] in rec["trials_p50_us"] and rec["errors"] == 0
                  and rec["same_pair"].get("virtio-net", 0) > 0,
                  "%s %s: no interleaved rounds with virtio-net: %r" % (p, key, rec))
    tp = paths.get("transparent", {})
    check(tp.get("tcp1", {}).get("gbit_s", 0) > 0 and tp.get("rr1", {}).get("errors") == 0
          and tp.get("transparent_tx_packets", 0) > 0,
          "transparent path missing or not through shared memory: %r" % tp)
    rb = doc.get("ring_bench", {})
    check(rb.get("memcpy", {}).get("gb_per_sec", 0) > 0 and rb.get("errors") == 0
          and rb.get("throughput") and rb.get("latency"), "ring-bench results: %r" % rb)
