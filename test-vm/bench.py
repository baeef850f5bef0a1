#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make bench`: ivshmem-net against virtio-net (QEMU's userspace backend on tap devices and a
Linux bridge) and against loopback, measured in one run.

Two guest pairs (1 vCPU and the same memory each):
  pair 1 (bA, bB): ivshmem-doorbell through our ivshmem-server (interrupts) and a virtio-net
         NIC each (vhost=off) on a tap in a bridge, in a network namespace this script
         creates; QEMU itself runs in that namespace, so it opens the taps there. Measured
         here: ivshmem-net doorbell mode, virtio-net, loopback inside bA.
         Then the module is reloaded with transparent=eth0 on both and TCP 1 stream and
         request/response run again to bB's virtio-net address: "transparent" (transparent
         mode; the packets go through shared memory, eth0's counters stay still).
  pair 2 (bC, bD): ivshmem-plain, ivshmem-net polling mode, and a virtio-net NIC each on
         the same bridge.
For each path: iperf3 TCP 1 and 4 streams (Gbit/s), iperf3 UDP 64-byte datagrams at full
offered rate (received packets/s and loss), ivnet-rr 1-byte TCP request/response (p50, p99;
also with socket busy polling), sockperf ping-pong over UDP and TCP (14-byte messages, its
smallest; round-trip p50, p99, p99.9), and both guests' CPU use during each (/proc/stat before
and after). On the host: ring-bench (the ring without guests; its JSON) and its memcpy
bandwidth.

TCP is measured in rounds (3 in a full run): each round runs every path of the pair once in
turn (the ivshmem path, virtio-net, loopback), and the table gives each path's median trial,
its ratio taken against the virtio-net median of the same pair. A single 5 s trial under TCG
moves by a third between minutes on a shared machine; interleaving makes the paths share the
slow and the fast minutes, and the median drops one outlier.

Several queues (issue 19): pair 3 (mA, mB) has 2 vCPUs per guest, ivshmem-doorbell with 2
vectors and a virtio-net NIC with 2 queue pairs (mq=on, multi-queue taps). TCP 4 streams and
UDP 64-byte datagrams, each from two iperf3 clients pinned one per vCPU (iperf3 3.12 runs one
thread: a single client would send from one CPU, hence one queue), over ivshmem-net with 2
queues, virtio-net with 2 queue pairs, and ivshmem-net with 1 queue (`ethtool -L combined 1`
on both guests).

Region size: the pairs above use a 32 MiB region. A full run also measures the ivshmem paths
(TCP 1 and 4 streams) on pairs with 16 and 64 MiB regions, for the second chart
(`--regions` changes the sizes; the smoke run measures 32 MiB only). Each of those pairs has
virtio-net NICs too, and runs its TCP rounds with virtio-net and loopback interleaved.
The report ends with issue 17's targets, each marked met or not from this run's figures.

Guests run under TCG unless KVM works, so guest figures are meant as ratios between paths
measured in the same run, not as absolute numbers.

Writes bench/results/<timestamp>.{json,md,png} and <timestamp>-regions.png (or --out DIR);
the charts are drawn with matplotlib (Agg, no display needed).

    bench.py [--smoke] [--out DIR] [--profile] [--regions MIB,MIB...] [--only-queues]

--only-queues: pair 3 alone (the several-queue figures; no charts, no ring-bench), for
working on them without the whole run.

--smoke: 1-second iperf3 runs, 300 round trips, 2-second sockperf runs, ring-bench --quick
(about 1.5 min); used by `make test` to check that every path works and yields numbers (the
run fails if a path lacks its sockperf figures or a chart is not written), not to measure.
--profile (`make bench-profile`, needs an initramfs with perf): both guests are sampled with
`perf record -a -e cpu-clock` during every guest measurement, and the hottest symbols of
each go into the JSON and the markdown. Sampling costs guest CPU: figures from such a run
are for finding where the time goes, not for the table.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402

KO = "/lib/modules/ivshmem_net.ko"
PATHS = ["ivshmem-doorbell", "ivshmem-polling", "virtio-net", "loopback", "transparent"]
BASE = "virtio-net"
RR_PORT = 7878
# net.core.busy_read / busy_poll for the busy-polling request/response figure, in us.
BUSY_POLL_US = 200
RR_SERVER = "(ivnet-rr server --port %d </dev/null >/tmp/rr.log 2>&1 &)" % RR_PORT
# sockperf: one server per protocol in each guest; ping-pong with its smallest message (its
# own 14-byte header), round trips (--full-rtt) rather than its default half round trip.
SP_PORTS = {"udp": 11111, "tcp": 11112}
SP_MSG = 14
SP_SERVER = ("(sockperf server -i 0.0.0.0 -p %d </dev/null >/tmp/sp-udp.log 2>&1 &); "
             "(sockperf server --tcp -i 0.0.0.0 -p %d </dev/null >/tmp/sp-tcp.log 2>&1 &); "
             "for i in $(seq 100); do grep -q using /tmp/sp-udp.log 2>/dev/null && "
             "grep -q using /tmp/sp-tcp.log 2>/dev/null && exit 0; sleep 0.1; done; "
             "echo sockperf servers did not start; cat /tmp/sp-*.log; exit 1"
             % (SP_PORTS["udp"], SP_PORTS["tcp"]))
# The region size of the two main pairs, in MiB.
REGION_MIB = 32
# The region sizes a full run measures TCP on (a doorbell and a polling pair for each size
# other than REGION_MIB).
FULL_REGIONS = [16, 32, 64]
T0 = time.time()
# --profile: sample both guests during each measurement (see the module doc).
PROFILE = False
PROFILE_TOP = 25


def say(msg):
    print("bench [%5.1f s] %s" % (time.time() - T0, msg), flush=True)


# ------------------------------------------------------------------ network namespace

class Netns:
    """A network namespace with a bridge and two tap devices, all up; removed by close()."""

    def __init__(self, taps, prefix="ivnb", multi_queue=False):
        self.name = "%s-%d" % (prefix, os.getpid())
        self.taps = taps
        self.made = False
        # Taps for virtio-net with several queue pairs (QEMU opens one file per queue).
        self.tap_mode = ["mode", "tap"] + (["multi_queue"] if multi_queue else [])

    def sh(self, *cmd):
        subprocess.run(["ip", "netns", "exec", self.name] + list(cmd), check=True,
                       capture_output=True, text=True, timeout=30)

    def open(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True,
                       text=True, timeout=30)
        self.made = True
        self.sh("ip", "link", "add", "ivbr0", "type", "bridge")
        for t in self.taps:
            self.sh("ip", "tuntap", "add", "dev", t, *self.tap_mode)
            self.sh("ip", "link", "set", t, "master", "ivbr0")
            self.sh("ip", "link", "set", t, "up")
        self.sh("ip", "link", "set", "ivbr0", "up")
        return self

    def add_tap(self, tap):
        """One more tap device on the bridge, up (e.g. for a migrated guest's destination)."""
        self.taps.append(tap)
        self.sh("ip", "tuntap", "add", "dev", tap, *self.tap_mode)
        self.sh("ip", "link", "set", tap, "master", "ivbr0")
        self.sh("ip", "link", "set", tap, "up")

    def close(self):
        if not self.made:
            return
        self.made = False
        # QEMU holds the taps until it exits (the clusters are closed first); the namespace
        # itself goes when its last process has left.
        for t in self.taps + ["ivbr0"]:
            subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "del", t],
                           capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)


# ------------------------------------------------------------------ measuring in guests

def cpu_line(text):
    f = [int(x) for x in text.split()[1:]]
    total = sum(f[:8])  # user nice system idle iowait irq softirq steal
    idle = f[3] + f[4]
    return total, idle


def cpu_pct(a, b):
    """Busy share between two /proc/stat samples, clamped to 0..100: with NO_HZ the iowait
    counter may step back a little between samples, which would read as over 100 %."""
    (t0, i0), (t1, i1) = cpu_line(a), cpu_line(b)
    busy = 100.0 * (1 - (i1 - i0) / (t1 - t0)) if t1 > t0 else 0.0
    return max(0.0, min(100.0, busy))


def qemu_pid(g):
    """The qemu-system process of guest `g` (under `timeout`, maybe under `ip netns exec`)."""
    todo = [g.proc.pid]
    while todo:
        pid = todo.pop()
        try:
            if Path("/proc/%d/comm" % pid).read_text().startswith("qemu"):
                return pid
            for t in Path("/proc/%d/task" % pid).iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except OSError:
            pass
    return None


def qemu_ticks(pids):
    """utime+stime (all threads) of each QEMU process, in clock ticks."""
    out = []
    for pid in pids:
        try:
            f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
            out.append(int(f[11]) + int(f[12]))
        except (OSError, TypeError):
            out.append(None)
    return out


HZ = os.sysconf("SC_CLK_TCK")


def qemu_pct(h0, h1, seconds, digits):
    """Each QEMU's CPU between two `qemu_ticks` samples `seconds` apart, in % of a host CPU
    (None where a sample is missing)."""
    return [round(100.0 * (b - a) / HZ / seconds, digits) if a is not None and b is not None
            else None for a, b in zip(h0, h1)]


def perf_start(guests, seconds):
    """--profile: starts a system-wide cpu-clock sampling in each guest, in the background."""
    for g in guests:
        g.run("rm -f /tmp/perf.data; (perf record -a -e cpu-clock -F 1000 -o /tmp/perf.data "
              "-- sleep %d >/tmp/perf.log 2>&1 &)" % seconds, timeout=20, check=True)


def perf_report(guests):
    """--profile: waits for each guest's sampling to end; returns {guest: [(percent, symbol
    [module])...]} with the hottest symbols."""
    prof = {}
    for g in guests:
        r = g.run("while pidof perf >/dev/null; do sleep 0.2; done; "
                  "perf report -i /tmp/perf.data --stdio --no-children --sort sym,dso "
                  "--percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n %d"
                  % PROFILE_TOP, timeout=120)
        rows = []
        for line in r.out.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+\[[.kK]\]\s+(\S+)\s+(\S+)", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3)))
        prof[g.name] = rows
    return prof


def measure(client, server, cmd, timeout, prof=None):
    """Runs `cmd` in `client`; returns (stdout, client CPU %, server CPU % or None, host CPU %
    of the client's and the server's QEMU processes (all threads: vCPU and I/O)). With
    --profile, `prof` (a dict) receives both guests' hottest symbols during the run."""
    guests = [client] + ([server] if server else [])
    if PROFILE and prof is not None:
        m = re.search(r"-t (\d+)", cmd)
        perf_start(guests, int(m.group(1)) if m else 5)
    s0 = server.run("head -1 /proc/stat", check=True).out if server else None
    pids = [qemu_pid(client)] + ([qemu_pid(server)] if server else [])
    h0, w0 = qemu_ticks(pids), time.time()
    r = client.run("head -1 /proc/stat > /tmp/c0; timeout %d %s > /tmp/o 2>/tmp/e; rc=$?; "
                   "head -1 /proc/stat > /tmp/c1; cat /tmp/c0 /tmp/c1; echo @@OUTPUT; "
                   "cat /tmp/o; [ $rc = 0 ] || cat /tmp/e; exit $rc" % (timeout, cmd),
                   timeout=timeout + 30)
    h1, w1 = qemu_ticks(pids), time.time()
    host = qemu_pct(h0, h1, w1 - w0, 1) + [None]
    s1 = server.run("head -1 /proc/stat", check=True).out if server else None
    if PROFILE and prof is not None:
        prof.update(perf_report(guests))
    if r.rc != 0:
        raise vm.AgentError("%s: `%s` failed (rc=%d): %s" % (client.name, cmd, r.rc, r.out[-1500:]))
    head, out = r.out.split("@@OUTPUT\n", 1)
    c0, c1 = head.splitlines()[:2]
    return (out, round(cpu_pct(c0, c1), 1), (round(cpu_pct(s0, s1), 1) if server else None),
            {"qemu_cpu_client_pct": host[0], "qemu_cpu_server_pct": host[1]})


def cpu_str(c):
    if c["cpu_server_pct"] is None:
        return "guest CPU %s%%, its QEMU %s%% of a host CPU" % (c["cpu_client_pct"], c["qemu_cpu_client_pct"])
    return "guest CPU %s%% / %s%%, QEMU %s%% / %s%% of a host CPU" % (
        c["cpu_client_pct"], c["cpu_server_pct"], c["qemu_cpu_client_pct"], c["qemu_cpu_server_pct"])


ALL_CASES = ("tcp1", "tcp4", "udp64", "rr1", "sp_udp", "sp_tcp")
TCP_CASES = {"tcp1": 1, "tcp4": 4}
# Everything but TCP: what `run_path` measures once, after a pair's interleaved TCP rounds.
ONCE_CASES = tuple(k for k in ALL_CASES if k not in TCP_CASES)
# What a pair measures once per path after its interleaved TCP and request/response rounds.
PAIR_CASES = tuple(k for k in ONCE_CASES if k != "rr1")


def run_path(name, client, server, ip, plan, only=ALL_CASES):
    """The measurements of one path (or those in `only`); `server` is None for loopback
    (client is both)."""
    res = {"path": name, "target": ip}
    for key in TCP_CASES:
        if key in only:
            res[key] = run_tcp(name, client, server, ip, plan, key)
    if "udp64" in only:
        run_udp(name, client, server, ip, plan, res)
    if "rr1" in only:
        run_rr(name, client, server, ip, plan, res)
    for proto in ("udp", "tcp"):
        if "sp_" + proto in only:
            sockperf_once(name, client, server, ip, plan, res, proto)
    return res


def run_tcp(name, client, server, ip, plan, key):
    """One iperf3 TCP trial (`key`: "tcp1" or "tcp4"); returns its record."""
    streams = TCP_CASES[key]
    t = plan["iperf_t"]
    say("%s: TCP %d stream%s (iperf3 %s)" % (name, streams, "s" * (streams > 1), t))
    prof = {}
    out, cc, sc, hc = measure(client, server, "iperf3 -c %s %s -P %d -J" % (ip, t, streams), 120,
                              prof)
    j = json.loads(out)
    rx = j["end"]["sum_received"]
    rec = {"gbit_s": rx["bits_per_second"] / 1e9, "seconds": rx["seconds"],
           "bytes": rx["bytes"], "retransmits": j["end"]["sum_sent"].get("retransmits"),
           "cpu_client_pct": cc, "cpu_server_pct": sc, **hc}
    if prof:
        rec["profile"] = prof
    say("%s: TCP %d: %.3f Gbit/s (%s)" % (name, streams, rec["gbit_s"], cpu_str(rec)))
    return rec


def tcp_rounds(runs, plan):
    """The TCP figures of one guest pair, interleaved so that the paths share the machine's
    slow and fast minutes: plan["tcp_rounds"] rounds, each running one trial of every
    (path, client, server, ip, keys) in `runs` in turn. Returns {path: {key: record}}, the
    record that of the median trial (by Gbit/s; the lower middle of an even count), with
    every trial's Gbit/s in order in "trials_gbit_s". Under TCG a single 5 s trial on this
    kind of machine moves by a third between minutes (docs/benchmarks.md)."""
    n = plan["tcp_rounds"]
    trials = {}
    for i in range(n):
        for name, client, server, ip, keys in runs:
            for key in keys:
                label = name if n == 1 else "%s (round %d/%d)" % (name, i + 1, n)
                trials.setdefault(name, {}).setdefault(key, []).append(
                    run_tcp(label, client, server, ip, plan, key))
    return medians(trials, "gbit_s")


def medians(trials, field):
    """{path: {key: [record, ...]}} to {path: {key: record}}: the record of the median trial
    by `field` (the lower middle of an even count), with every trial's `field` in order in
    "trials_<field>"."""
    out = {}
    for name, per_key in trials.items():
        for key, recs in per_key.items():
            med = dict(sorted(recs, key=lambda r: r[field])[(len(recs) - 1) // 2])
            med["trials_" + field] = [r[field] for r in recs]
            out.setdefault(name, {})[key] = med
    return out


def same_pair(recs, path, bases, field="gbit_s"):
    """Notes in `path`'s records of `recs` (from `tcp_rounds` or `rr_rounds`) the medians
    (`field`) of the paths in `bases` (virtio-net, loopback) measured in the same pair: the
    ratios of region and polling pairs are taken against these, not against pair 1's.
    Also notes, in "paired", the ratio of each of `path`'s trials to the same round's trial
    of each base: a slow minute of the machine then moves both sides of a ratio."""
    for key, rec in recs[path].items():
        for b in bases:
            other = recs.get(b, {}).get(key)
            if other is not None:
                rec["same_pair"] = dict(rec.get("same_pair", {}), **{b: other[field]})
                mine, theirs = rec.get("trials_" + field), other.get("trials_" + field)
                if mine and theirs and len(mine) == len(theirs) and all(theirs):
                    rec["paired"] = dict(rec.get("paired", {}),
                                         **{b: [x / y for x, y in zip(mine, theirs)]})


def paired_ratio(rec, base):
    """The median (lower middle) of `rec`'s per-round ratios to `base` (see `same_pair`), or
    None without rounds."""
    r = sorted(((rec or {}).get("paired") or {}).get(base) or [])
    return r[(len(r) - 1) // 2] if r else None


def run_idle(name, guests, plan):
    """Host CPU of the guests' QEMU processes while they sit idle (links up, servers
    listening, nothing sent), over plan["idle_t"] seconds after 1 s of quiet: what an idle
    guest pays for the path (issue 17: a polling guest's timer keeps waking it)."""
    say("%s: idle, %d s" % (name, plan["idle_t"]))
    time.sleep(1)
    pids = [qemu_pid(g) for g in guests]
    h0, w0 = qemu_ticks(pids), time.time()
    time.sleep(plan["idle_t"])
    h1, w1 = qemu_ticks(pids), time.time()
    pct = qemu_pct(h0, h1, w1 - w0, 2)
    res = {"qemu_cpu_pct": pct, "seconds": round(w1 - w0, 1)}
    say("%s: idle guests' QEMU %s %% of a host CPU" % (name, " / ".join(str(v) for v in pct)))
    return res


def run_udp(name, client, server, ip, plan, res):
    say("%s: UDP 64-byte datagrams, full offered rate (iperf3 %s)" % (name, plan["udp_t"]))
    prof = {}
    out, cc, sc, hc = measure(client, server, "iperf3 -c %s -u -l 64 -b 0 %s -J" % (ip, plan["udp_t"]), 120,
                              prof)
    j = json.loads(out)
    # The receiver's view (iperf3 3.12 reports it to the client as sum_received).
    s = j["end"].get("sum_received") or j["end"]["sum"]
    sent = j["end"].get("sum_sent") or s
    received = s["packets"] - s["lost_packets"]
    res["udp64"] = {"packets": s["packets"], "lost_packets": s["lost_packets"],
                    "received": received, "loss_pct": s["lost_percent"], "seconds": s["seconds"],
                    "rx_pps": received / s["seconds"] if s["seconds"] > 0 else 0.0,
                    "tx_pps": sent["packets"] / sent["seconds"] if sent["seconds"] > 0 else 0.0,
                    "cpu_client_pct": cc, "cpu_server_pct": sc, **hc}
    if prof:
        res["udp64"]["profile"] = prof
    say("%s: UDP 64 B: %.0f packets/s received, %.1f %% lost (%s)"
        % (name, res["udp64"]["rx_pps"], res["udp64"]["loss_pct"], cpu_str(res["udp64"])))


def run_rr(name, client, server, ip, plan, res):
    """One request/response trial of one path, then one with busy polling (not loopback)."""
    res.update(rr_rounds([(name, client, server, ip)], dict(plan, rr_rounds=1))[name])
    return res


def busy_polling(guests, servers, on):
    """Socket busy polling on both sides (what a latency-minded user sets) or off again: a
    blocked receive spins on the device's NAPI poll for up to BUSY_POLL_US instead of waiting
    for an interrupt. A socket takes the setting when it is created (accepted ones from their
    listener), so the echo servers restart after each change."""
    us = BUSY_POLL_US if on else 0
    for g in guests:
        g.run("sysctl -w net.core.busy_read=%d net.core.busy_poll=%d >/dev/null" % (us, us),
              check=True)
    for g in servers:
        restart_rr_server(g)


def rr_rounds(runs, plan):
    """The request/response figures of one guest pair, interleaved as `tcp_rounds` does:
    plan["rr_rounds"] rounds, each running ivnet-rr once over every (path, client, server, ip)
    in `runs`, then once more with busy polling over those with a server (loopback has no
    NAPI to busy-poll). Returns {path: {"rr1": record, "rr1_busy": record}}, each the record
    of the median trial by p50, every trial's p50 in "trials_p50_us". One trial's busy-polling
    p50 moved between 49 and 99 µs from run to run on unchanged code (docs/benchmarks.md)."""
    n = plan.get("rr_rounds", 1)
    guests = list({id(g): g for _n, c, s, _ip in runs for g in (c, s) if g is not None}.values())
    servers = list({id(s): s for _n, _c, s, _ip in runs if s is not None}.values())
    trials = {}

    def once(i, name, client, server, ip, key):
        label = name + (" (busy polling)" if key == "rr1_busy" else "")
        if n > 1:
            label += " (round %d/%d)" % (i + 1, n)
        trials.setdefault(name, {}).setdefault(key, []).append(
            rr_once(label, client, server, ip, plan))

    for i in range(n):
        for name, client, server, ip in runs:
            once(i, name, client, server, ip, "rr1")
        if not servers:
            continue
        busy_polling(guests, servers, True)
        try:
            for name, client, server, ip in runs:
                if server is not None:
                    once(i, name, client, server, ip, "rr1_busy")
        finally:
            busy_polling(guests, servers, False)
    return medians(trials, "p50_us")


def restart_rr_server(g):
    g.run("killall ivnet-rr 2>/dev/null; sleep 0.2; rm -f /tmp/rr.log; " + RR_SERVER +
          "; for i in $(seq 100); do grep -q listening /tmp/rr.log 2>/dev/null && exit 0; "
          "sleep 0.1; done; exit 1", check=True)


def rr_once(name, client, server, ip, plan):
    """One ivnet-rr trial; returns its record."""
    say("%s: TCP request/response, 1 byte, %d round trips (ivnet-rr)" % (name, plan["rr_count"]))
    out, cc, sc, hc = measure(client, server, "ivnet-rr client %s --port %d --count %d --size 1 --json"
                          % (ip, RR_PORT, plan["rr_count"]), plan["rr_timeout"])
    j = json.loads(out.strip().splitlines()[-1])
    rec = {k: j[k] for k in ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us",
                             "transactions_per_sec", "errors")}
    rec.update(cpu_client_pct=cc, cpu_server_pct=sc, **hc)
    say("%s: RR: p50 %.1f us, p99 %.1f us (%s)" % (name, j["p50_us"], j["p99_us"], cpu_str(rec)))
    return rec


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_sockperf(text):
    """The figures of one `sockperf ping-pong --full-rtt` run (its text output) in us; raises
    ValueError if it has no percentiles (sockperf then says "No valid observations")."""
    text = ANSI.sub("", text)
    pct = {float(a): float(b) for a, b in re.findall(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", text)}
    if 50.0 not in pct or 99.9 not in pct:
        raise ValueError("no percentiles in sockperf's output: %s" % text[-1500:])

    def num(pattern, conv=float):
        m = re.search(pattern, text)
        if not m:
            raise ValueError("sockperf output without %r: %s" % (pattern, text[-1500:]))
        return conv(m.group(1))
    return {"tool": "sockperf", "p50_us": pct[50.0], "p99_us": pct[99.0], "p99_9_us": pct[99.9],
            "p99_99_us": pct.get(99.99), "percentiles_us": {("%g" % k): v for k, v in sorted(pct.items())},
            "max_us": num(r"<MAX> observation\s*=\s*([\d.]+)"),
            "min_us": num(r"<MIN> observation\s*=\s*([\d.]+)"),
            "mean_us": num(r"avg-rtt=\s*([\d.]+)"),
            "observations": num(r"Total (\d+) observations", int),
            "seconds": num(r"\[Valid Duration\] RunTime=([\d.]+)"),
            "dropped": num(r"# dropped messages = (\d+)", int),
            "duplicated": num(r"# duplicated messages = (\d+)", int),
            "out_of_order": num(r"# out-of-order messages = (\d+)", int)}


def sockperf_once(name, client, server, ip, plan, res, proto):
    key = "sp_" + proto
    say("%s: sockperf ping-pong %s, %d-byte messages, %d s" % (name, proto.upper(), SP_MSG, plan["sp_t"]))
    cmd = ("sockperf ping-pong -i %s -p %d %s-m %d -t %d --full-rtt"
           % (ip, SP_PORTS[proto], "--tcp " if proto == "tcp" else "", SP_MSG, plan["sp_t"]))
    out, cc, sc, hc = measure(client, server, cmd, plan["sp_t"] + 60)
    try:
        res[key] = parse_sockperf(out)
    except ValueError as e:
        raise vm.AgentError("%s: %s: %s" % (client.name, cmd, e)) from None
    res[key].update(proto=proto, msg_bytes=SP_MSG, cpu_client_pct=cc, cpu_server_pct=sc, **hc)
    r = res[key]
    say("%s: sockperf %s: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, %d round trips, %d dropped (%s)"
        % (name, proto.upper(), r["p50_us"], r["p99_us"], r["p99_9_us"], r["observations"],
           r["dropped"], cpu_str(r)))


def setup_guest(g, ivip, ethip=None, servers=True):
    """Loads the module and gives ivshm0 (and eth0, with `ethip`) an address; starts iperf3's
    server and, with `servers`, ivnet-rr's and sockperf's."""
    script = ("insmod %s && ip addr add %s/24 dev ivshm0 && ip link set ivshm0 up" % (KO, ivip))
    if ethip:
        script += (" && ip link show eth0 >/dev/null && ip addr add %s/24 dev eth0 && "
                   "ip link set eth0 up" % ethip)
    script += " && iperf3 -s -D --logfile /tmp/iperf3.log"
    if not servers:
        g.run(script, check=True)
        return
    g.run("command -v sockperf >/dev/null || { echo 'no sockperf in the guest image: "
          "make deps && make initramfs'; exit 1; }", check=True)
    g.run(script + " && " + RR_SERVER, check=True)
    g.run(SP_SERVER, timeout=30, check=True)


# Each pair's guests: a virtio-net NIC on one of the namespace's taps (a pair at a time uses
# them: the previous pair's QEMU has exited), ivshm0 in 10.90.0.0/24, eth0 in 10.91.0.0/24.
TAPS = [("ivtapA", "52:54:00:1b:00:01"), ("ivtapB", "52:54:00:1b:00:02")]
IV_IPS = ("10.90.0.1", "10.90.0.2")
ETH_IPS = ("10.91.0.1", "10.91.0.2")


def pair_cluster(names, ns, mem_mb, mib, doorbell, initrd, clusters):
    """Two guests `names` with a `mib` MiB region (doorbell or plain) and a virtio-net NIC
    each on the namespace's bridge; started, appended to `clusters`."""
    c = vm.Cluster([{"name": n, "netns": ns.name, "mem_mb": mem_mb, "taps": [tap]}
                    for n, tap in zip(names, TAPS)],
                   shm_size=mib << 20, doorbell=doorbell, initrd=initrd)
    clusters.append(c)
    c.start()
    return c


def setup_pair(c, names, servers=True):
    """Both guests of `c` set up (`setup_guest`); waits until each address of the other guest
    answers."""
    a = c[names[0]]
    c.parallel(lambda g: setup_guest(g, IV_IPS[names.index(g.name)], ETH_IPS[names.index(g.name)],
                                     servers))
    wait_reachable(a, IV_IPS[1])
    wait_reachable(a, ETH_IPS[1])


def pair_tcp(path, a, b, plan, loopback=("tcp1",)):
    """The interleaved TCP rounds of a pair: `path` over ivshm0, virtio-net over eth0, and
    loopback (the `loopback` cases) inside `a`; `path`'s records note the other two's
    medians."""
    tcp = tcp_rounds([(path, a, b, IV_IPS[1], tuple(TCP_CASES)),
                      ("virtio-net", a, b, ETH_IPS[1], tuple(TCP_CASES)),
                      ("loopback", a, None, "127.0.0.1", loopback)], plan)
    same_pair(tcp, path, ("virtio-net", "loopback"))
    return tcp


def pair_rr(path, a, b, plan, loopback=False):
    """The interleaved request/response rounds of a pair: `path` over ivshm0, virtio-net over
    eth0 and, with `loopback`, loopback inside `a`; `path`'s records note virtio-net's
    median p50."""
    rr = rr_rounds([(path, a, b, IV_IPS[1]), ("virtio-net", a, b, ETH_IPS[1])]
                   + ([("loopback", a, None, "127.0.0.1")] if loopback else []), plan)
    same_pair(rr, path, ("virtio-net",), "p50_us")
    return rr


def ivshm_counter(g, name):
    m = re.search(r"^\s*%s: (\d+)$" % name, g.run("ethtool -S ivshm0", check=True).out, re.M)
    return int(m.group(1)) if m else 0


def reload_transparent(g, ivip):
    """Reloads the module in `g` with transparent=eth0 (eth0 keeps its address)."""
    g.run("rmmod ivshmem_net && insmod %s transparent=eth0 && ip addr add %s/24 dev ivshm0 && "
          "ip link set ivshm0 up" % (KO, ivip), check=True)


def wait_transparent(g):
    g.run("for i in $(seq 200); do dmesg | grep -q 'transparent: peer .* is' && exit 0; "
          "sleep 0.1; done; echo no transparent peer; exit 1", timeout=60, check=True)


def wait_reachable(g, ip):
    g.run("for i in $(seq 200); do ping -c 1 -W 1 %s >/dev/null 2>&1 && exit 0; sleep 0.05; "
          "done; echo %s unreachable; exit 1" % (ip, ip), timeout=60, check=True)


def guest_info(g):
    return g.run("uname -r; grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo",
                 check=True).out.split("\n")[:3]


# ------------------------------------------------------------------ several queues

# vCPUs of pair 3 and the queues (ivshmem-net channels, virtio-net queue pairs) they get.
MQ = 2
MQ_PATHS = ["ivshmem-net 2 queues", "ivshmem-net 1 queue", "virtio-net mq 2"]
# One iperf3 server per pinned client: iperf3 3.12 serves one test at a time.
MQ_PORTS = [5211, 5212]


def pinned_iperf(ip, args, seconds):
    """One shell command: an iperf3 client pinned to each vCPU (`taskset`, port MQ_PORTS[cpu])
    with `args`, all at once; prints each client's JSON after a separator line."""
    clients = " ".join("taskset -c %d iperf3 -c %s -p %d %s -t %d -J > /tmp/mq%d.json 2>&1 &"
                       % (cpu, ip, MQ_PORTS[cpu], args, seconds, cpu) for cpu in range(MQ))
    show = "; ".join("echo @@CLIENT; cat /tmp/mq%d.json" % cpu for cpu in range(MQ))
    return "sh -c '%s wait; %s'" % (clients, show)


def pinned_json(out):
    """The clients' JSON documents of a `pinned_iperf` run."""
    docs = [json.loads(part) for part in out.split("@@CLIENT\n")[1:]]
    if len(docs) != MQ:
        raise vm.AgentError("pinned iperf3: %d client outputs, want %d: %s" % (len(docs), MQ, out[-1500:]))
    for d in docs:
        if "error" in d:
            raise vm.AgentError("pinned iperf3 failed: %s" % d["error"])
    return docs


def run_queues_path(name, client, server, ip, plan):
    """TCP 4 streams (2 per pinned client) and UDP 64-byte datagrams (one flow per pinned
    client) of one path of pair 3."""
    res = {"path": name, "target": ip}
    t = int(plan["iperf_t"].split()[1])
    say("%s: TCP 4 streams, 2 per vCPU (iperf3 -t %d)" % (name, t))
    out, cc, sc, hc = measure(client, server, pinned_iperf(ip, "-P 2", t), 120)
    docs = pinned_json(out)
    rx = [d["end"]["sum_received"] for d in docs]
    res["tcp4"] = {"gbit_s": sum(r["bits_per_second"] for r in rx) / 1e9,
                   "per_client_gbit_s": [r["bits_per_second"] / 1e9 for r in rx],
                   "bytes": sum(r["bytes"] for r in rx),
                   "retransmits": sum(d["end"]["sum_sent"].get("retransmits") or 0 for d in docs),
                   "cpu_client_pct": cc, "cpu_server_pct": sc, **hc}
    say("%s: TCP 4: %.3f Gbit/s (%s per client; %s)" % (
        name, res["tcp4"]["gbit_s"], " + ".join("%.3f" % g for g in res["tcp4"]["per_client_gbit_s"]),
        cpu_str(res["tcp4"])))
    say("%s: UDP 64-byte datagrams, one flow per vCPU (iperf3 -t %d)" % (name, t))
    out, cc, sc, hc = measure(client, server, pinned_iperf(ip, "-u -l 64 -b 0", t), 120)
    rx_pps, tx_pps, lost, packets = 0.0, 0.0, 0, 0
    for d in pinned_json(out):
        s = d["end"].get("sum_received") or d["end"]["sum"]
        sent = d["end"].get("sum_sent") or s
        if s["seconds"] > 0:
            rx_pps += (s["packets"] - s["lost_packets"]) / s["seconds"]
        if sent["seconds"] > 0:
            tx_pps += sent["packets"] / sent["seconds"]
        lost += s["lost_packets"]
        packets += s["packets"]
    res["udp64"] = {"rx_pps": rx_pps, "tx_pps": tx_pps, "packets": packets, "lost_packets": lost,
                    "loss_pct": 100.0 * lost / packets if packets else 0.0,
                    "cpu_client_pct": cc, "cpu_server_pct": sc, **hc}
    say("%s: UDP 64 B: %.0f packets/s received, %.1f %% lost (%s)"
        % (name, rx_pps, res["udp64"]["loss_pct"], cpu_str(res["udp64"])))
    return res


def channels(g, dev):
    """(maximum, current) combined channels of `dev` in guest `g` (`ethtool -l`)."""
    out = g.run("ethtool -l %s" % dev, check=True).out
    got = [int(x) for x in re.findall(r"^Combined:\s+(\d+)$", out, re.M)]
    if len(got) != 2:
        raise vm.AgentError("%s: ethtool -l %s: %s" % (g.name, dev, out))
    return tuple(got)


def run_queues(plan, mem_mb, initrd, clusters, namespaces):
    """Pair 3: 2-vCPU guests, ivshmem-net (doorbell, 2 vectors) with 2 queues and 1, and
    virtio-net with 2 queue pairs; returns {"paths": {name: results}, "guest": {...}}."""
    ns = Netns(["ivtapC", "ivtapD"], prefix="ivnq", multi_queue=True)
    namespaces.append(ns)
    ns.open()
    c = vm.Cluster([{"name": "mA", "netns": ns.name, "mem_mb": mem_mb, "vcpus": MQ,
                     "taps": [("ivtapC", "52:54:00:1c:00:01", MQ)]},
                    {"name": "mB", "netns": ns.name, "mem_mb": mem_mb, "vcpus": MQ,
                     "taps": [("ivtapD", "52:54:00:1c:00:02", MQ)]}],
                   shm_size=REGION_MIB << 20, doorbell=MQ, initrd=initrd)
    clusters.append(c)
    c.start()
    a, b = c["mA"], c["mB"]
    say("pair 3 (mA, mB) up: %d vCPUs each, ivshmem-doorbell with %d vectors + virtio-net "
        "mq=on with %d queue pairs; accel %s" % (MQ, MQ, MQ, c.accel))
    servers = " && ".join("iperf3 -s -D -p %d --logfile /tmp/iperf3-%d.log" % (p, p) for p in MQ_PORTS)
    for g, n in ((a, 1), (b, 2)):
        g.run("insmod %s && ip addr add 10.92.0.%d/24 dev ivshm0 && ip link set ivshm0 up && "
              "ip addr add 10.93.0.%d/24 dev eth0 && ip link set eth0 up && "
              "ethtool -L eth0 combined %d && %s" % (KO, n, n, MQ, servers), check=True)
    out = {"guest": {"vcpus": MQ, "mem_mb": mem_mb}, "paths": {}}
    for g in (a, b):
        for dev in ("ivshm0", "eth0"):
            ch = channels(g, dev)
            if ch[1] != MQ:
                raise vm.Failed("%s: %s has %s combined channels (max, current), want %d current"
                                % (g.name, dev, ch, MQ))
    wait_reachable(a, "10.92.0.2")
    wait_reachable(a, "10.93.0.2")
    out["paths"][MQ_PATHS[0]] = run_queues_path(MQ_PATHS[0], a, b, "10.92.0.2", plan)
    out["paths"][MQ_PATHS[2]] = run_queues_path(MQ_PATHS[2], a, b, "10.93.0.2", plan)
    for g in (a, b):
        g.run("ethtool -L ivshm0 combined 1", check=True)
        if channels(g, "ivshm0")[1] != 1:
            raise vm.Failed("%s: ethtool -L ivshm0 combined 1 did not take" % g.name)
    wait_reachable(a, "10.92.0.2")
    out["paths"][MQ_PATHS[1]] = run_queues_path(MQ_PATHS[1], a, b, "10.92.0.2", plan)
    check_splats(c)
    c.close()
    return out


def queues_markdown(q):
    """The several-queue table (pair 3) in markdown."""
    res = q["paths"]
    base = res.get("virtio-net mq 2")
    lines = ["## Several queues (pair 3: %d vCPUs per guest, doorbell with %d vectors)" % (MQ, MQ), "",
             "TCP: 4 streams as 2 iperf3 clients (2 streams each) pinned one per vCPU; UDP: 64-byte "
             "datagrams at full offered rate, one flow per vCPU. Ratio to virtio-net with %d queue "
             "pairs; *vs 1 queue*: ivshmem-net 2 queues over 1 queue." % MQ, "",
             "| metric | " + " | ".join(MQ_PATHS) + " | 2 queues vs 1 queue |",
             "|---|" + "---:|" * (len(MQ_PATHS) + 1)]
    for key, label, unit, get in (("tcp4", "TCP 4 streams", "Gbit/s", lambda r: r["tcp4"]["gbit_s"]),
                                  ("udp64", "UDP 64 B received", "packets/s", lambda r: r["udp64"]["rx_pps"]),
                                  ("udp64", "UDP 64 B loss", "%", lambda r: r["udp64"]["loss_pct"]),
                                  ("tcp4", "host CPU of both QEMU, TCP 4", "% of a CPU", lambda r: qemu_sum(r["tcp4"])),
                                  ("udp64", "host CPU of both QEMU, UDP 64 B", "% of a CPU",
                                   lambda r: qemu_sum(r["udp64"]))):
        cells = []
        for p in MQ_PATHS:
            v = value(get, res.get(p, {}))
            r = ratio(v, value(get, base)) if base else None
            cells.append("-" if v is None else "%s (%s)" % (fmt(v), "%.2f×" % r if r is not None else "n/a"))
        two, one = value(get, res.get(MQ_PATHS[0], {})), value(get, res.get(MQ_PATHS[1], {}))
        r = ratio(two, one)
        lines.append("| %s, %s | %s | %s |" % (label, unit, " | ".join(cells),
                                                 "%.2f×" % r if r is not None else "-"))
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ host side

def ring_bench(smoke):
    exe = vm.BUILD / "bin" / "ring-bench"
    cmd = [str(exe), "--json"] + (["--quick"] if smoke else [])
    say("host: ring-bench %s (no guests running)" % " ".join(cmd[1:]))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("ring-bench failed (%d): %s" % (p.returncode, p.stderr[-1000:]))
    return json.loads(p.stdout)


def host_info():
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]
    return {"kernel": os.uname().release, "cpu": cpu, "cpus": os.cpu_count(), "qemu": qemu}


# ------------------------------------------------------------------ report

# (key, label, unit, getter, higher_is_better)
METRICS = [
    ("tcp1", "TCP 1 stream", "Gbit/s", lambda r: r["tcp1"]["gbit_s"], True),
    ("tcp4", "TCP 4 streams", "Gbit/s", lambda r: r["tcp4"]["gbit_s"], True),
    ("udp64", "UDP 64 B received", "packets/s", lambda r: r["udp64"]["rx_pps"], True),
    ("udp64_loss", "UDP 64 B loss", "%", lambda r: r["udp64"]["loss_pct"], False),
    ("rr_p50", "RR 1 B p50", "us", lambda r: r["rr1"]["p50_us"], False),
    ("rr_p99", "RR 1 B p99", "us", lambda r: r["rr1"]["p99_us"], False),
    ("rr_busy_p50", "RR 1 B p50, busy polling", "us", lambda r: r["rr1_busy"]["p50_us"], False),
    ("rr_busy_p99", "RR 1 B p99, busy polling", "us", lambda r: r["rr1_busy"]["p99_us"], False),
] + [("%s_%s" % (k, q), "sockperf %s RTT %s" % (proto, name), "us",
      (lambda k, q: lambda r: r[k][q + "_us"])(k, q), False)
     for k, proto in (("sp_udp", "UDP"), ("sp_tcp", "TCP"))
     for q, name in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"))]
CPU_CASES = [("tcp1", "TCP 1 stream"), ("tcp4", "TCP 4 streams"), ("udp64", "UDP 64 B"),
             ("rr1", "RR 1 B"), ("rr1_busy", "RR 1 B, busy polling"),
             ("sp_udp", "sockperf UDP"), ("sp_tcp", "sockperf TCP")]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3g" % v


def ratio(v, b):
    return v / b if b and v is not None else None


# METRICS keys whose ratio is taken against virtio-net in the same pair (interleaved rounds),
# and the case whose record notes that figure.
SAME_PAIR = {"tcp1": "tcp1", "tcp4": "tcp4", "rr_p50": "rr1", "rr_busy_p50": "rr1_busy"}


def pair_base(r, key, default):
    """The virtio-net figure that path result `r`'s `key` (a case, or a METRICS key of
    SAME_PAIR) is compared with: virtio-net's median measured in the same pair, interleaved
    with it, if there is one; else `default` (pair 1's)."""
    rec = r.get(SAME_PAIR.get(key, key)) if isinstance(r, dict) else None
    return (rec or {}).get("same_pair", {}).get(BASE, default)


def value(get, r):
    """A metric of one path's results; None if that path did not measure it."""
    try:
        return get(r)
    except KeyError:
        return None


def cpu_sum(case):
    return case["cpu_client_pct"] + (case["cpu_server_pct"] or 0.0)


def qemu_sum(case):
    return (case["qemu_cpu_client_pct"] or 0.0) + (case["qemu_cpu_server_pct"] or 0.0)


def markdown(doc):
    res = doc["paths"]
    base = res[BASE]
    lines = ["# ivshmem-net benchmark, %s%s" % (doc["timestamp"], " (smoke run)" if doc["smoke"] else ""),
             "",
             "Guests: %s, 1 vCPU and %d MiB each, accelerator %s (%s). Host: %s, %d CPUs, %s."
             % (doc["guest"]["kernel"], doc["guest"]["mem_mb"], doc["accel"], doc["accel_reason"],
                doc["host"]["cpu"], doc["host"]["cpus"], doc["host"]["qemu"]),
             "Durations: %s. Ratio = path / virtio-net (QEMU userspace backend, tap + bridge); "
             "for loss, latency and CPU lower is better. Under TCG the guest figures are those of "
             "emulated CPUs: compare paths within a run, not across machines. TCP: the median of "
             "%d interleaved rounds (trials below), its ratio against virtio-net measured in the "
             "same guest pair; RR p50 likewise (%d rounds; the p99 and CPU figures are the median "
             "trial's); everything else one trial, against pair 1's virtio-net."
             % (doc["plan"]["describe"], doc["plan"].get("tcp_rounds", 1),
                doc["plan"].get("rr_rounds", 1)),
             "",
             "| metric | " + " | ".join(PATHS) + " |",
             "|---|" + "---:|" * len(PATHS)]
    for key, label, unit, get, _hib in METRICS:
        cells = []
        for p in PATHS:
            v, b = value(get, res[p]), get(base)
            if key in SAME_PAIR:
                b = pair_base(res[p], key, b)
            r = ratio(v, b)
            cells.append("%s (%s)" % (fmt(v), "%.2f×" % r if r is not None else "n/a")
                         if v is not None else "-")
        lines.append("| %s, %s | %s |" % (label, unit, " | ".join(cells)))
    for key, label in CPU_CASES:
        cells = []
        for p in PATHS:
            c = res[p].get(key)
            if c is None:
                cells.append("-")
                continue
            r = ratio(cpu_sum(c), cpu_sum(base[key]))
            who = ("%.0f / %.0f" % (c["cpu_client_pct"], c["cpu_server_pct"])
                   if c["cpu_server_pct"] is not None else "%.0f (one guest)" % c["cpu_client_pct"])
            cells.append("%s (%s)" % (who, "%.2f×" % r if r is not None else "n/a"))
        lines.append("| guest CPU %% during %s, client / server | %s |" % (label, " | ".join(cells)))
    for key, label in CPU_CASES:
        cells = []
        for p in PATHS:
            c = res[p].get(key)
            if c is None:
                cells.append("-")
                continue
            r = ratio(qemu_sum(c), qemu_sum(base[key]))
            who = ("%.0f / %.0f" % (c["qemu_cpu_client_pct"], c["qemu_cpu_server_pct"])
                   if c["qemu_cpu_server_pct"] is not None else "%.0f (one guest)" % c["qemu_cpu_client_pct"])
            cells.append("%s (%s)" % (who, "%.2f×" % r if r is not None else "n/a"))
        lines.append("| host CPU %% of the QEMU processes during %s, client / server | %s |"
                     % (label, " | ".join(cells)))
    idle = [(p, res[p]["idle"]) for p in PATHS if "idle" in res.get(p, {})]
    if idle:
        lines.append("| host CPU %% of the QEMU processes, guests idle (%s), client / server | %s |" % (
            "; ".join("%s: %s s" % (p, i["seconds"]) for p, i in idle),
            " | ".join(" / ".join("%.2f" % v if v is not None else "-" for v in res[p]["idle"]["qemu_cpu_pct"])
                       if "idle" in res[p] else "-" for p in PATHS)))
    lines += ["", "TCP trials, Gbit/s in the order run (the median is in the table): " + "; ".join(
        "%s %s [%s]" % (p, k, ", ".join("%.2f" % g for g in res[p][k]["trials_gbit_s"]))
        for p in PATHS if p in res for k in TCP_CASES if "trials_gbit_s" in res[p].get(k, {}))
        + ". Pair 2's own virtio-net and loopback: " + "; ".join(
            "%s %s %.2f [%s]" % (b, k, rec["gbit_s"], ", ".join("%.2f" % g for g in rec["trials_gbit_s"]))
            for per in doc.get("baselines", {}).values() for b, recs in per.items()
            for k, rec in recs.items() if k in TCP_CASES) + "."]
    lines += ["", "RR trials, p50 in µs in the order run: " + "; ".join(
        "%s %s [%s]" % (p, k, ", ".join("%.1f" % v for v in res[p][k]["trials_p50_us"]))
        for p in PATHS if p in res for k in ("rr1", "rr1_busy")
        if "trials_p50_us" in res[p].get(k, {})) + ". Pair 2's own virtio-net: " + "; ".join(
            "%s %s %.1f [%s]" % (b, k, rec["p50_us"], ", ".join("%.1f" % v for v in rec["trials_p50_us"]))
            for per in doc.get("baselines", {}).values() for b, recs in per.items()
            for k, rec in recs.items() if "trials_p50_us" in rec) + "."]
    lines.append("")
    lines.append("CPU ratios compare the sum over both guests (loopback: one guest doing both "
                 "ends). Guest CPU is from the guests' /proc/stat, which this kernel samples at "
                 "the 1000 Hz tick (CONFIG_TICK_CPU_ACCOUNTING): work done right after each tick "
                 "is missed, so polling mode, whose 1 ms timer runs in step with the tick, reads "
                 "far too low there. Host CPU is utime+stime of each guest's QEMU process (vCPU "
                 "thread and, for virtio-net with vhost=off, the userspace backend), in percent "
                 "of one host CPU; it does not have that blind spot.")
    lines += ["", "sockperf: `sockperf ping-pong` (%d-byte messages, its smallest; `--full-rtt`: "
              "round trips, not sockperf's default half round trip), %d s per protocol after "
              "400 ms of warm-up, against `sockperf server` in the other guest. Round trips "
              "timed (dropped), UDP / TCP: %s." % (
                  SP_MSG, doc["plan"].get("sp_t", 0), "; ".join(
                      "%s %s" % (p, " / ".join("%d (%d)" % (res[p][k]["observations"], res[p][k]["dropped"])
                                               for k in ("sp_udp", "sp_tcp") if k in res[p]))
                      for p in PATHS if p in res))]
    pts = region_points(doc)
    if doc.get("regions"):
        lines += ["", "## Region size (ivshmem-net paths, TCP, Gbit/s)", "",
                  "Each size and mode is a guest pair of its own, with virtio-net and loopback "
                  "measured in the same pair, interleaved (medians; ratios against these).", "",
                  "| path | region MiB | TCP 1 stream | × virtio-net | × loopback | TCP 4 streams "
                  "| × virtio-net | virtio-net 1 / 4 streams | loopback |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p, v in pts.items():
            for mib, t1, t4 in v:
                cells = []
                for rec, bases in ((t1, (BASE, "loopback")), (t4, (BASE,))):
                    cells.append(fmt(rec["gbit_s"]) if rec else "-")
                    for b in bases:
                        r = ratio(rec["gbit_s"], rec.get("same_pair", {}).get(b)) if rec else None
                        cells.append("%.2f×" % r if r is not None else "-")
                sp1, sp4 = ((t or {}).get("same_pair", {}) for t in (t1, t4))
                cells.append("%s / %s" % (fmt(sp1.get(BASE)), fmt(sp4.get(BASE))))
                cells.append(fmt(sp1.get("loopback")))
                lines.append("| %s | %d | %s |" % (p, mib, " | ".join(cells)))
        lines += ["", "Trials, Gbit/s in the order run: " + "; ".join(
            "%s %d MiB %s [%s]" % (e["path"], e["region_mib"], k,
                                   ", ".join("%.2f" % g for g in e[k]["trials_gbit_s"]))
            for e in doc["regions"] for k in TCP_CASES if "trials_gbit_s" in e[k]) + "."]
    tg = targets(doc)
    if tg:
        lines += ["", "## Issue 17's targets in this run", "",
                  "Ratios from interleaved rounds are judged by the median of the rounds' own "
                  "ratios (each trial against the same round's trial of the base, so that a "
                  "slow minute of the machine moves both sides); the ratio of the medians "
                  "follows in brackets.", "",
                  "| target | this run | met |", "|---|---|---|"]
        for what, got, met in tg:
            lines.append("| %s | %s | %s |" % (what, got, {True: "yes", False: "**no**",
                                                          None: "n/a"}[met]))
    if doc.get("queues"):
        lines += ["", queues_markdown(doc["queues"])]
    rb = doc["ring_bench"]
    lines += ["", "## Host (no guests running)", "",
              "memcpy bandwidth (64 MiB buffer): %.2f GB/s" % rb["memcpy"]["gb_per_sec"], "",
              "ring-bench (%s run): one-way throughput" % rb["mode"], "",
              "| transport | frame bytes | frames/s | GB/s |", "|---|---:|---:|---:|"]
    for t in rb["throughput"]:
        lines.append("| %s | %d | %s | %.3f |" % (t["transport"], t["frame_bytes"],
                                                  fmt(t["frames_per_sec"]), t["gb_per_sec"]))
    lines += ["", "ring-bench ping-pong latency (%d-byte frames)" % rb["latency"][0]["frame_bytes"],
              "", "| transport | round trips | p50 us | p99 us |", "|---|---:|---:|---:|"]
    for l in rb["latency"]:
        lines.append("| %s | %d | %s | %s |" % (l["transport"], l["round_trips"],
                                                fmt(l["p50_us"]), fmt(l["p99_us"])))
    lines.append("")
    profiled = [(p, k, res[p][k]["profile"]) for p in PATHS if p in res
                for k in ("tcp1", "tcp4", "udp64") if "profile" in res[p].get(k, {})]
    if profiled:
        lines += ["## Where the guests' time went (--profile: perf record -a -e cpu-clock)", "",
                  "Share of each guest's samples per symbol, hottest first; the client sends, "
                  "the server receives. Sampling itself costs guest CPU, so this run's figures "
                  "above are lower than a plain run's.", ""]
        for p, k, prof in profiled:
            for g, rows in prof.items():
                top = ", ".join("%s %.1f%%" % (sym + ("" if dso == "[kernel.kallsyms]" else " " + dso), pct)
                                for pct, sym, dso in rows[:12])
                lines.append("- %s %s, %s: %s" % (p, k, g, top or "(no samples)"))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ charts (matplotlib)

COLORS = {"ivshmem-doorbell": "#1f77b4", "ivshmem-polling": "#2ca02c", "virtio-net": "#d62728",
          "loopback": "#7f7f7f", "transparent": "#9467bd"}


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# Panels of the main chart: (title, y-axis label, log scale, [(variant label, getter[, TCP
# key])...]). Each panel groups the bars by path, a bar per variant; each bar is labelled with
# its ratio to virtio-net's bar of the same variant (for TCP, to virtio-net measured in the
# same pair: `pair_base`).
PANELS = [
    ("TCP throughput (iperf3), higher is better", "Gbit/s received", False,
     [("1 stream", lambda r: r["tcp1"]["gbit_s"], "tcp1"),
      ("4 streams", lambda r: r["tcp4"]["gbit_s"], "tcp4")]),
    ("UDP 64-byte datagrams (iperf3 -b 0), higher is better", "packets/s received", False,
     [("received", lambda r: r["udp64"]["rx_pps"])]),
    ("host CPU of both QEMU processes, lower is better", "% of one host CPU", False,
     [("TCP 1 stream", lambda r: qemu_sum(r["tcp1"])), ("UDP 64 B", lambda r: qemu_sum(r["udp64"])),
      ("sockperf TCP", lambda r: qemu_sum(r["sp_tcp"]))]),
    ("sockperf ping-pong UDP, 14 B, lower is better", "round trip, µs (log scale)", True,
     [(q, (lambda k: lambda r: r["sp_udp"][k])(k)) for q, k in
      (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p99_9_us"))]),
    ("sockperf ping-pong TCP, 14 B, lower is better", "round trip, µs (log scale)", True,
     [(q, (lambda k: lambda r: r["sp_tcp"][k])(k)) for q, k in
      (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p99_9_us"))]),
    ("ivnet-rr TCP 1 B, lower is better", "round trip, µs (log scale)", True,
     [("p50", lambda r: r["rr1"]["p50_us"]), ("p99", lambda r: r["rr1"]["p99_us"]),
      ("p50 busy poll", lambda r: r["rr1_busy"]["p50_us"]),
      ("p99 busy poll", lambda r: r["rr1_busy"]["p99_us"])]),
]


def chart(doc, path):
    """The main chart: a panel per kind of measurement, bars grouped by path, each labelled
    with its ratio to virtio-net (virtio-net = 1.00×); writes a PNG to `path`."""
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator
    plain = FuncFormatter(lambda v, _pos: "{:,.0f}".format(v) if v >= 10 else "%g" % v)
    res = doc["paths"]
    paths = [p for p in PATHS if p in res]
    fig, axes = plt.subplots(2, 3, figsize=(19, 10.5), dpi=100)
    shades = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for ax, (title, ylabel, log, variants) in zip(axes.flat, PANELS):
        n = len(variants)
        width = 0.8 / n
        top = 0.0
        missing = set()
        for j, (vlabel, get, *tcp_key) in enumerate(variants):
            base = value(get, res[BASE])
            xs, ys, labels = [], [], []
            for i, p in enumerate(paths):
                v = value(get, res[p])
                if v is None:
                    missing.add(i)
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(v)
                r = ratio(v, pair_base(res[p], tcp_key[0], base) if tcp_key else base)
                labels.append("%.2f×" % r if r is not None else "")
            bars = ax.bar(xs, ys, width * 0.92, label=vlabel, color=shades[j % len(shades)])
            ax.bar_label(bars, labels, rotation=90, padding=2, fontsize=8)
            top = max([top] + ys)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels(paths, rotation=15, fontsize=9)
        for t, p in zip(ax.get_xticklabels(), paths):
            t.set_color(COLORS.get(p, "black"))
        if log:
            ax.set_yscale("log")
            if top:
                ax.set_ylim(top=top * 6)
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
        else:
            ax.set_ylim(0, top * 1.3 if top else 1)
        ax.yaxis.set_major_formatter(plain)
        # A path that has none of a panel's variants (loopback has no busy polling, transparent
        # runs TCP 1 stream, RR and sockperf only) says so instead of showing an empty slot.
        for i in sorted(missing):
            if all(value(get, res[paths[i]]) is None for _l, get, *_k in variants):
                ax.text(i, 0.02, "not measured", transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color="#777777")
        ax.set_xlim(-0.6, len(paths) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if n > 1:
            ax.legend(fontsize=8, loc="upper left", ncol=min(n, 4))
    fig.suptitle("ivshmem-net benchmark %s%s: value per path, label = ratio to virtio-net "
                 "(same run; %s guests, 1 vCPU each)"
                 % (doc["timestamp"], " (smoke run)" if doc["smoke"] else "", doc.get("accel", "?")),
                 fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)


def region_points(doc):
    """{path: [(region MiB, tcp1 record, tcp4 record or None)...]} for the ivshmem paths, from
    the main pairs and any --regions pairs, sorted by size."""
    pts = {}
    for p in ("ivshmem-doorbell", "ivshmem-polling"):
        r = doc["paths"].get(p)
        if r and "tcp1" in r:
            pts.setdefault(p, []).append((doc.get("region_mib", REGION_MIB), r["tcp1"], r.get("tcp4")))
    for e in doc.get("regions", []):
        pts.setdefault(e["path"], []).append((e["region_mib"], e["tcp1"], e.get("tcp4")))
    return {p: sorted(v, key=lambda t: t[0]) for p, v in pts.items()}


def region_value(doc, path, mib, key):
    """TCP record `key` of an ivshmem path at `mib` MiB in this run, or None."""
    for m, t1, t4 in region_points(doc).get(path, []):
        if m == mib:
            return {"tcp1": t1, "tcp4": t4}[key]
    return None


def targets(doc):
    """Issue 17's targets as measured in this run: [(target, figures, met or None)]."""
    res = doc["paths"]
    if BASE not in res or doc["smoke"]:
        return []
    rows = []

    def judged(r, paired, rounds):
        """The figure a target is judged by: the median of the per-round ratios when the
        rounds were interleaved (see `same_pair`), else the ratio of the medians."""
        if paired is None:
            return r, "%.3g×" % r
        return paired, "%.3g× (median of %d rounds' ratios; ratio of the medians %.3g×)" % (
            paired, rounds, r)

    def tcp(path, mib, key, base, at_least, what):
        rec = region_value(doc, path, mib, key)
        b = (rec or {}).get("same_pair", {}).get(base)
        r = ratio(rec["gbit_s"], b) if rec else None
        if r is None:
            rows.append((what % mib, "not measured", None))
            return
        v, text = judged(r, paired_ratio(rec, base), len(rec.get("trials_gbit_s", [])))
        rows.append((what % mib, "%s, medians %.2f / %.2f Gbit/s" % (text, rec["gbit_s"], b),
                     v >= at_least))

    sizes = sorted({m for v in region_points(doc).values() for m, _a, _b in v})
    for mib in sizes:
        tcp("ivshmem-doorbell", mib, "tcp1", BASE, 1.5, "doorbell TCP 1 stream ≥ 1.5× virtio-net, %d MiB")
        tcp("ivshmem-doorbell", mib, "tcp1", "loopback", 0.95, "doorbell TCP 1 stream ≥ 0.95× loopback, %d MiB")
        tcp("ivshmem-doorbell", mib, "tcp4", BASE, 1.3, "doorbell TCP 4 streams ≥ 1.3× virtio-net, %d MiB")
    if 16 in sizes:
        tcp("ivshmem-polling", 16, "tcp1", BASE, 1.2, "polling TCP 1 stream ≥ 1.2× virtio-net, %d MiB")
    base = res[BASE]

    def one(what, path, get, want, better_low, case=None):
        v, b = value(get, res.get(path, {})), value(get, base)
        paired = None
        if case is not None:
            # Against virtio-net in the same pair, interleaved, where the pair measured one.
            b = pair_base(res.get(path, {}), case, b)
            paired = paired_ratio(res.get(path, {}).get(case), BASE)
        r = ratio(v, b)
        if r is None:
            rows.append((what, "not measured", None))
            return
        j, text = judged(r, paired, len(res[path][case].get("trials_p50_us", [])) if case else 0)
        rows.append((what, "%s, %s / %s" % (text, fmt(v), fmt(b)),
                     j <= want if better_low else j >= want))

    one("polling RR p50 ≤ 1.0× virtio-net", "ivshmem-polling", lambda r: r["rr1"]["p50_us"], 1.0,
        True, "rr1")
    one("doorbell RR p50 ≤ 0.9× virtio-net", "ivshmem-doorbell", lambda r: r["rr1"]["p50_us"], 0.9,
        True, "rr1")
    one("doorbell RR p50, busy polling, ≤ 0.1× virtio-net", "ivshmem-doorbell",
        lambda r: r["rr1_busy"]["p50_us"], 0.1, True, "rr1_busy")
    for p in ("ivshmem-doorbell", "ivshmem-polling"):
        one("%s UDP 64 B received ≥ 1.5× virtio-net" % p, p, lambda r: r["udp64"]["rx_pps"], 1.5, False)
        v, b = value(lambda r: r["udp64"]["loss_pct"], res.get(p, {})), value(
            lambda r: r["udp64"]["loss_pct"], base)
        rows.append(("%s UDP 64 B loss ≤ virtio-net's" % p,
                     "%.2f %% (virtio-net %.2f %%)" % (v, b) if None not in (v, b) else "not measured",
                     None if None in (v, b) else v <= b))
    idle = value(lambda r: r["idle"]["qemu_cpu_pct"], res.get("ivshmem-polling", {}))
    rows.append(("idle polling guest ≤ 2 % of a host CPU (its QEMU)",
                 " / ".join("%.2f %%" % v for v in idle) if idle else "not measured",
                 None if not idle else max(idle) <= 2.0))
    rb = doc.get("ring_bench") or {}
    th = {(t["transport"], t["frame_bytes"]): t["frames_per_sec"] for t in rb.get("throughput", [])}
    r = ratio(th.get(("ring", 1500)), th.get(("unix", 1500)))
    rows.append(("ring-bench 1500 B ≥ 5× a Unix socket", "%.1f×" % r if r else "not measured",
                 None if r is None else r >= 5))
    v = th.get(("ring", 64))
    rows.append(("ring-bench 64 B ≥ 20 M frames/s (median of its trials)",
                 "%.1f M" % (v / 1e6) if v else "not measured", None if v is None else v >= 20e6))
    lat = [l["p50_us"] for l in rb.get("latency", []) if l["transport"] == "ring"]
    rows.append(("ring-bench ping-pong p50 < 1 µs", "%.2f µs" % lat[0] if lat else "not measured",
                 None if not lat else lat[0] < 1.0))
    return rows


def region_chart(doc, path):
    """Throughput against the region's size, a line per ivshmem-net mode, each point labelled
    with its ratio to virtio-net measured in the same pair; virtio-net's and loopback's own
    figures in each pair as markers (they do not depend on the region: their spread is the
    machine's); writes a PNG to `path`."""
    plt = pyplot()
    pts = region_points(doc)
    sizes = sorted({s for v in pts.values() for s, _a, _b in v})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), dpi=100)
    for ax, (idx, key, title) in zip(axes, ((1, "tcp1", "TCP 1 stream"), (2, "tcp4", "TCP 4 streams"))):
        top = 0.0
        marks = {}
        for p, v in pts.items():
            sel = [(t[0], t[idx]) for t in v if t[idx] is not None]
            xs, ys = [x for x, _r in sel], [r["gbit_s"] for _x, r in sel]
            ax.plot(xs, ys, marker="o", color=COLORS.get(p), label=p)
            for x, (_x, rec) in zip(xs, sel):
                r = ratio(rec["gbit_s"], pair_base({key: rec}, key, None))
                ax.annotate("%.2f" % rec["gbit_s"] + (" (%.2f×)" % r if r is not None else ""),
                            (x, rec["gbit_s"]), textcoords="offset points", xytext=(0, 7),
                            ha="center", fontsize=8)
                for b, g in rec.get("same_pair", {}).items():
                    marks.setdefault(b, []).append((x, g))
            top = max([top] + ys)
        for b, style in (("virtio-net", "x"), ("loopback", "+")):
            if marks.get(b):
                ax.plot([x for x, _g in marks[b]], [g for _x, g in marks[b]], style,
                        color=COLORS[b], markersize=9, linestyle="none",
                        label="%s, each pair's own" % b)
                top = max([top] + [g for _x, g in marks[b]])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(s) for s in sizes])
        if sizes:
            ax.set_xlim(sizes[0] / (2.5 if len(sizes) == 1 else 1.4),
                        sizes[-1] * (2.5 if len(sizes) == 1 else 1.4))
        ax.set_ylim(0, top * 1.25 if top else 1)
        ax.set_xlabel("region size, MiB (default max_peers)")
        ax.set_ylabel("Gbit/s received (iperf3, median of the rounds)")
        ax.set_title(title + ", higher is better", fontsize=11)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    note = ("" if len(sizes) > 1 else
            "  (one region size in this run; a full make bench measures 16, 32 and 64 MiB)")
    fig.suptitle("ivshmem-net throughput against region size, %s%s%s"
                 % (doc["timestamp"], " (smoke run)" if doc["smoke"] else "", note), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a short run (~1.5 min) that checks every path works")
    ap.add_argument("--out", default=None, help="results directory [bench/results; smoke: build/bench-smoke]")
    ap.add_argument("--initrd", default=None, help="guest initramfs [build/initramfs.cpio.gz]")
    ap.add_argument("--profile", action="store_true",
                    help="sample both guests with perf during each measurement (initrd with perf)")
    ap.add_argument("--regions", default=None, type=region_list,
                    help="region sizes in MiB for the ivshmem paths' TCP figures, comma-separated "
                         "[%s; smoke: %d, the main pairs' size]"
                         % (",".join(map(str, FULL_REGIONS)), REGION_MIB))
    ap.add_argument("--only-queues", action="store_true",
                    help="pair 3 alone: the several-queue figures (no charts, no ring-bench)")
    args = ap.parse_args()
    try:
        pyplot()
    except ImportError as e:
        sys.exit("bench: matplotlib is missing (%s): run 'make deps' (python3-matplotlib)" % e)
    global PROFILE
    PROFILE = args.profile
    smoke = args.smoke
    if args.regions is None:
        # The region size changes the answer (issue 17): a full run measures three.
        args.regions = [REGION_MIB] if smoke else FULL_REGIONS
    out_dir = Path(args.out) if args.out else (vm.BUILD / "bench-smoke" if smoke else vm.TOP / "bench" / "results")
    if smoke:
        # iperf3's shortest run is 1 s (with -n, very short transfers report 0 bytes received).
        # sockperf needs about 2 s to report anything: 400 ms of warm-up are not counted.
        plan = {"iperf_t": "-t 1", "udp_t": "-t 1", "rr_count": 300, "rr_timeout": 60, "sp_t": 2,
                "idle_t": 2, "tcp_rounds": 1, "rr_rounds": 1,
                "describe": "smoke: iperf3 -t 1 per case, one TCP round, 300 round trips, "
                            "sockperf -t 2, idle 2 s"}
    else:
        # 10,000 round trips take about 2 ms each in polling mode under TCG (poll_ms=1 on
        # both sides), so about 20-30 s: within the budget.
        plan = {"iperf_t": "-t 5", "udp_t": "-t 5", "rr_count": 10000, "rr_timeout": 240, "sp_t": 5,
                "idle_t": 10, "tcp_rounds": 3, "rr_rounds": 3,
                "describe": "iperf3 -t 5 per case, TCP the median of 3 interleaved rounds, "
                            "ivnet-rr 10,000 round trips (+100 warm-up), RR the median of 3 "
                            "interleaved rounds, sockperf ping-pong -t 5, "
                            "guests idle 10 s"}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    mem_mb = 256
    doc = {"timestamp": stamp, "smoke": smoke, "plan": plan, "host": host_info(), "paths": {},
           "region_mib": REGION_MIB, "regions": [], "baselines": {}}
    say("%s run; results to %s" % ("smoke" if smoke else "full", out_dir))

    if args.only_queues:
        return main_queues(args, plan, stamp, mem_mb, out_dir)
    ns = Netns(["ivtapA", "ivtapB"])
    namespaces = [ns]
    clusters = []
    try:
        ns.open()
        say("netns %s: bridge ivbr0 with taps ivtapA, ivtapB" % ns.name)
        # Pair 1: doorbell ivshmem-net + virtio-net on the bridge; QEMU runs inside the netns.
        c1 = pair_cluster(("bA", "bB"), ns, mem_mb, REGION_MIB, 1, args.initrd, clusters)
        doc["accel"], doc["accel_reason"] = c1.accel, c1.accel_reason
        say("pair 1 (bA, bB) up: ivshmem-doorbell + virtio-net (tap, vhost=off); accel %s" % c1.accel)
        a, b = c1["bA"], c1["bB"]
        kern, ncpu, mem = guest_info(a)
        doc["guest"] = {"kernel": kern, "vcpus": int(ncpu), "mem_mb": mem_mb, "memtotal": mem.split(":")[1].strip()}
        setup_pair(c1, ("bA", "bB"))
        say("pair 1: ivshm0 10.90.0.0/24 and eth0 10.91.0.0/24 reachable")
        idle = run_idle("pair 1 (ivshmem-doorbell and virtio-net)", [a, b], plan)
        tcp = pair_tcp("ivshmem-doorbell", a, b, plan, loopback=tuple(TCP_CASES))
        rr = pair_rr("ivshmem-doorbell", a, b, plan, loopback=True)
        for p, srv, ip in (("ivshmem-doorbell", b, IV_IPS[1]), ("virtio-net", b, ETH_IPS[1]),
                           ("loopback", None, "127.0.0.1")):
            doc["paths"][p] = dict(run_path(p, a, srv, ip, plan, only=PAIR_CASES), **tcp[p],
                                   **rr[p])
        doc["paths"]["ivshmem-doorbell"]["idle"] = idle
        c1.parallel(lambda g: reload_transparent(g, {"bA": "10.90.0.1", "bB": "10.90.0.2"}[g.name]))
        wait_transparent(a)
        wait_transparent(b)
        say("pair 1: reloaded with transparent=eth0; bB's eth0 address now via shared memory")
        t0 = ivshm_counter(a, "transparent_tx_packets")
        doc["paths"]["transparent"] = run_path("transparent", a, b, "10.91.0.2", plan,
                                               only=("tcp1", "rr1", "sp_udp", "sp_tcp"))
        doc["paths"]["transparent"]["transparent_tx_packets"] = (
            ivshm_counter(a, "transparent_tx_packets") - t0)
        say("transparent: %d packets went through shared memory"
            % doc["paths"]["transparent"]["transparent_tx_packets"])
        check_splats(c1)
        c1.close()

        c2 = pair_cluster(("bC", "bD"), ns, mem_mb, REGION_MIB, None, args.initrd, clusters)
        say("pair 2 (bC, bD) up: ivshmem-plain (polling) + virtio-net")
        cc, d = c2["bC"], c2["bD"]
        setup_pair(c2, ("bC", "bD"))
        idle = run_idle("pair 2 (ivshmem-polling and virtio-net)", [cc, d], plan)
        tcp = pair_tcp("ivshmem-polling", cc, d, plan)
        rr = pair_rr("ivshmem-polling", cc, d, plan)
        doc["baselines"]["ivshmem-polling %d MiB" % REGION_MIB] = {
            k: dict(v, **rr.get(k, {})) for k, v in tcp.items() if k != "ivshmem-polling"}
        doc["paths"]["ivshmem-polling"] = dict(
            run_path("ivshmem-polling", cc, d, IV_IPS[1], plan, only=PAIR_CASES),
            **tcp["ivshmem-polling"], **rr["ivshmem-polling"])
        doc["paths"]["ivshmem-polling"]["idle"] = idle
        check_splats(c2)
        c2.close()

        doc["queues"] = run_queues(plan, mem_mb, args.initrd, clusters, namespaces)

        for mib in args.regions:
            if mib != REGION_MIB:
                doc["regions"] += run_region(mib, plan, mem_mb, args.initrd, clusters, ns)
    finally:
        for c in clusters:
            c.close()
        for n in namespaces:
            n.close()

    rb = ring_bench(smoke)
    doc["ring_bench"] = rb
    doc["host"]["memcpy_gb_per_sec"] = rb["memcpy"]["gb_per_sec"]
    say("host: memcpy %.2f GB/s; ring-bench %d throughput and %d latency results"
        % (rb["memcpy"]["gb_per_sec"], len(rb["throughput"]), len(rb["latency"])))
    doc["seconds"] = round(time.time() - T0, 1)

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / stamp
    Path(str(stem) + ".json").write_text(json.dumps(doc, indent=1))
    md = markdown(doc)
    Path(str(stem) + ".md").write_text(md)
    chart(doc, str(stem) + ".png")
    region_chart(doc, str(stem) + "-regions.png")
    print(md)
    say("wrote %s.{json,md,png} and %s-regions.png in %.0f s" % (stem, stem.name, time.time() - T0))
    problems = check_results(doc, [Path(str(stem) + ".png"), Path(str(stem) + "-regions.png")])
    if problems:
        for p in problems:
            say("FAILED: " + p)
        return 1
    return 0


def region_list(text):
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("--regions takes sizes in MiB, e.g. 16,32,64: %r" % text)
    if not sizes or any(m < 1 or m & (m - 1) for m in sizes):
        raise argparse.ArgumentTypeError("--regions: powers of two in MiB, e.g. 16,32,64: %r" % text)
    return sizes


def run_region(mib, plan, mem_mb, initrd, clusters, ns):
    """TCP 1 and 4 streams over ivshmem-net in both modes on a `mib` MiB region (a pair per
    mode), interleaved with virtio-net and loopback in the same pair; returns one entry per
    mode for doc["regions"]."""
    out = []
    for path, doorbell in (("ivshmem-doorbell", 1), ("ivshmem-polling", None)):
        c = pair_cluster(("rA", "rB"), ns, mem_mb, mib, doorbell, initrd, clusters)
        say("region %d MiB: pair (rA, rB) up, %s + virtio-net" % (mib, path))
        a, b = c["rA"], c["rB"]
        setup_pair(c, ("rA", "rB"), servers=False)
        label = "%s %d MiB" % (path, mib)
        tcp = pair_tcp(label, a, b, plan)
        out.append({"region_mib": mib, "path": path, "tcp1": tcp[label]["tcp1"],
                    "tcp4": tcp[label]["tcp4"],
                    "baselines": {k: v for k, v in tcp.items() if k != label}})
        check_splats(c)
        c.close()
    return out


def check_results(doc, pngs):
    """What every run must yield (the smoke run's test relies on it too): sockperf figures for
    every path, in order, and both charts. Returns the problems found."""
    bad = []
    for p, r in doc["paths"].items():
        for key in ("sp_udp", "sp_tcp"):
            sp = r.get(key)
            if sp is None:
                bad.append("%s: no %s figures" % (p, key))
            elif not (sp["observations"] > 0 and 0 < sp["p50_us"] <= sp["p99_us"] <= sp["p99_9_us"]):
                bad.append("%s %s: %r" % (p, key, sp))
    bad += check_queues(doc.get("queues"))
    for png in pngs:
        if not png.exists() or png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            bad.append("%s: not written" % png)
    return bad


def check_queues(q):
    """Problems with the several-queue figures (pair 3): every path measured, each figure
    positive."""
    if q is None:
        return ["no several-queue figures (pair 3)"]
    bad = []
    for p in MQ_PATHS:
        r = q["paths"].get(p)
        if r is None:
            bad.append("%s: not measured" % p)
        elif not (r["tcp4"]["gbit_s"] > 0 and all(g > 0 for g in r["tcp4"]["per_client_gbit_s"])
                  and r["udp64"]["rx_pps"] > 0):
            bad.append("%s: %r" % (p, {k: r[k] for k in ("tcp4", "udp64")}))
    return bad


def main_queues(args, plan, stamp, mem_mb, out_dir):
    """--only-queues: pair 3 alone; writes <stamp>-queues.{json,md}."""
    clusters, namespaces = [], []
    doc = {"timestamp": stamp, "smoke": args.smoke, "plan": plan, "host": host_info()}
    try:
        doc["queues"] = run_queues(plan, mem_mb, args.initrd, clusters, namespaces)
    finally:
        for c in clusters:
            c.close()
        for n in namespaces:
            n.close()
    doc["seconds"] = round(time.time() - T0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / (stamp + "-queues")
    Path(str(stem) + ".json").write_text(json.dumps(doc, indent=1))
    md = queues_markdown(doc["queues"])
    Path(str(stem) + ".md").write_text(md)
    print(md)
    say("wrote %s.{json,md} in %.0f s" % (stem, time.time() - T0))
    problems = check_queues(doc["queues"])
    for p in problems:
        say("FAILED: " + p)
    return 1 if problems else 0


def check_splats(c):
    s = c.splats()
    if s:
        raise vm.Failed("kernel warnings in guest logs: %s" % s)


if __name__ == "__main__":
    sys.exit(main())
