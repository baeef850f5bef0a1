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
  pair 2 (bC, bD): ivshmem-plain, ivshmem-net polling mode (poll_ms=1).
For each path: iperf3 TCP 1 and 4 streams (Gbit/s), iperf3 UDP 64-byte datagrams at full
offered rate (received packets/s and loss), ivnet-rr 1-byte TCP request/response (p50, p99),
and both guests' CPU use during each (/proc/stat before and after). On the host:
ring-bench (the ring without guests; its JSON) and its memcpy bandwidth.

Guests run under TCG unless KVM works, so guest figures are meant as ratios between paths
measured in the same run, not as absolute numbers.

Writes bench/results/<timestamp>.{json,md,png} (or --out DIR).

    bench.py [--smoke] [--out DIR] [--profile]

--smoke: 1-second iperf3 runs, 300 round trips, ring-bench --quick (about 30 s); used by
`make test` to check that every path works and yields numbers, not to measure.
--profile (`make bench-profile`, needs an initramfs with perf): both guests are sampled with
`perf record -a -e cpu-clock` during every guest measurement, and the hottest symbols of
each go into the JSON and the markdown. Sampling costs guest CPU: figures from such a run
are for finding where the time goes, not for the table.
"""

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
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
T0 = time.time()
# --profile: sample both guests during each measurement (see the module doc).
PROFILE = False
PROFILE_TOP = 25


def say(msg):
    print("bench [%5.1f s] %s" % (time.time() - T0, msg), flush=True)


# ------------------------------------------------------------------ network namespace

class Netns:
    """A network namespace with a bridge and two tap devices, all up; removed by close()."""

    def __init__(self, taps, prefix="ivnb"):
        self.name = "%s-%d" % (prefix, os.getpid())
        self.taps = taps
        self.made = False

    def sh(self, *cmd):
        subprocess.run(["ip", "netns", "exec", self.name] + list(cmd), check=True,
                       capture_output=True, text=True, timeout=30)

    def open(self):
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True,
                       text=True, timeout=30)
        self.made = True
        self.sh("ip", "link", "add", "ivbr0", "type", "bridge")
        for t in self.taps:
            self.sh("ip", "tuntap", "add", "dev", t, "mode", "tap")
            self.sh("ip", "link", "set", t, "master", "ivbr0")
            self.sh("ip", "link", "set", t, "up")
        self.sh("ip", "link", "set", "ivbr0", "up")
        return self

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
    host = [round(100.0 * (b - a) / HZ / (w1 - w0), 1) if a is not None and b is not None else None
            for a, b in zip(h0, h1)] + [None]
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


def run_path(name, client, server, ip, plan, only=("tcp1", "tcp4", "udp64", "rr1")):
    """The four measurements of one path (or those in `only`); `server` is None for loopback
    (client is both)."""
    res = {"path": name, "target": ip}
    t = plan["iperf_t"]
    for key, streams in (("tcp1", 1), ("tcp4", 4)):
        if key not in only:
            continue
        say("%s: TCP %d stream%s (iperf3 %s)" % (name, streams, "s" * (streams > 1), t))
        prof = {}
        out, cc, sc, hc = measure(client, server, "iperf3 -c %s %s -P %d -J" % (ip, t, streams), 120,
                                  prof)
        j = json.loads(out)
        rx = j["end"]["sum_received"]
        res[key] = {"gbit_s": rx["bits_per_second"] / 1e9, "seconds": rx["seconds"],
                    "bytes": rx["bytes"], "retransmits": j["end"]["sum_sent"].get("retransmits"),
                    "cpu_client_pct": cc, "cpu_server_pct": sc, **hc}
        if prof:
            res[key]["profile"] = prof
        say("%s: TCP %d: %.3f Gbit/s (%s)" % (name, streams, res[key]["gbit_s"], cpu_str(res[key])))
    if "udp64" not in only:
        return run_rr(name, client, server, ip, plan, res)
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
    return run_rr(name, client, server, ip, plan, res)


def run_rr(name, client, server, ip, plan, res):
    rr_once(name, client, server, ip, plan, res, "rr1")
    if server is not None:
        # The same with socket busy polling on both sides (what a latency-minded user sets):
        # a blocked receive spins on the device's NAPI poll for up to BUSY_POLL_US instead of
        # waiting for an interrupt. Loopback has no NAPI, so it has no such figure. A socket
        # takes the setting when it is created (accepted ones from their listener), so the
        # echo server restarts after each change.
        busy = "sysctl -w net.core.busy_read=%d net.core.busy_poll=%d >/dev/null"
        for g in (client, server):
            g.run(busy % (BUSY_POLL_US, BUSY_POLL_US), check=True)
        restart_rr_server(server)
        try:
            rr_once(name + " (busy polling)", client, server, ip, plan, res, "rr1_busy")
        finally:
            for g in (client, server):
                g.run(busy % (0, 0), check=True)
            restart_rr_server(server)
    return res


def restart_rr_server(g):
    g.run("killall ivnet-rr 2>/dev/null; sleep 0.2; rm -f /tmp/rr.log; " + RR_SERVER +
          "; for i in $(seq 100); do grep -q listening /tmp/rr.log 2>/dev/null && exit 0; "
          "sleep 0.1; done; exit 1", check=True)


def rr_once(name, client, server, ip, plan, res, key):
    say("%s: TCP request/response, 1 byte, %d round trips (ivnet-rr)" % (name, plan["rr_count"]))
    out, cc, sc, hc = measure(client, server, "ivnet-rr client %s --port %d --count %d --size 1 --json"
                          % (ip, RR_PORT, plan["rr_count"]), plan["rr_timeout"])
    j = json.loads(out.strip().splitlines()[-1])
    res[key] = {k: j[k] for k in ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us",
                                  "transactions_per_sec", "errors")}
    res[key].update(cpu_client_pct=cc, cpu_server_pct=sc, **hc)
    say("%s: RR: p50 %.1f us, p99 %.1f us (%s)" % (name, j["p50_us"], j["p99_us"], cpu_str(res[key])))


def setup_guest(g, ivip, ethip=None):
    script = ("insmod %s && ip addr add %s/24 dev ivshm0 && ip link set ivshm0 up" % (KO, ivip))
    if ethip:
        script += (" && ip link show eth0 >/dev/null && ip addr add %s/24 dev eth0 && "
                   "ip link set eth0 up" % ethip)
    script += " && iperf3 -s -D --logfile /tmp/iperf3.log && " + RR_SERVER
    g.run(script, check=True)


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
]
CPU_CASES = [("tcp1", "TCP 1 stream"), ("tcp4", "TCP 4 streams"), ("udp64", "UDP 64 B"),
             ("rr1", "RR 1 B"), ("rr1_busy", "RR 1 B, busy polling")]


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
             "emulated CPUs, one trial each: compare paths within a run, not across machines." % doc["plan"]["describe"],
             "",
             "| metric | " + " | ".join(PATHS) + " |",
             "|---|" + "---:|" * len(PATHS)]
    for key, label, unit, get, _hib in METRICS:
        cells = []
        for p in PATHS:
            v, b = value(get, res[p]), get(base)
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
    lines.append("")
    lines.append("CPU ratios compare the sum over both guests (loopback: one guest doing both "
                 "ends). Guest CPU is from the guests' /proc/stat, which this kernel samples at "
                 "the 1000 Hz tick (CONFIG_TICK_CPU_ACCOUNTING): work done right after each tick "
                 "is missed, so polling mode, whose 1 ms timer runs in step with the tick, reads "
                 "far too low there. Host CPU is utime+stime of each guest's QEMU process (vCPU "
                 "thread and, for virtio-net with vhost=off, the userspace backend), in percent "
                 "of one host CPU; it does not have that blind spot.")
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


# ------------------------------------------------------------------ PNG chart (no matplotlib)

# 5x7 glyphs, one string of 7 rows of 5 bits per character.
_FONT_SRC = """
0 01110 10001 10011 10101 11001 10001 01110
1 00100 01100 00100 00100 00100 00100 01110
2 01110 10001 00001 00010 00100 01000 11111
3 11110 00001 00001 01110 00001 00001 11110
4 00010 00110 01010 10010 11111 00010 00010
5 11111 10000 11110 00001 00001 10001 01110
6 00110 01000 10000 11110 10001 10001 01110
7 11111 00001 00010 00100 01000 01000 01000
8 01110 10001 10001 01110 10001 10001 01110
9 01110 10001 10001 01111 00001 00010 01100
A 01110 10001 10001 11111 10001 10001 10001
B 11110 10001 10001 11110 10001 10001 11110
C 01110 10001 10000 10000 10000 10001 01110
D 11100 10010 10001 10001 10001 10010 11100
E 11111 10000 10000 11110 10000 10000 11111
F 11111 10000 10000 11110 10000 10000 10000
G 01110 10001 10000 10111 10001 10001 01111
H 10001 10001 10001 11111 10001 10001 10001
I 01110 00100 00100 00100 00100 00100 01110
J 00111 00010 00010 00010 00010 10010 01100
K 10001 10010 10100 11000 10100 10010 10001
L 10000 10000 10000 10000 10000 10000 11111
M 10001 11011 10101 10101 10001 10001 10001
N 10001 10001 11001 10101 10011 10001 10001
O 01110 10001 10001 10001 10001 10001 01110
P 11110 10001 10001 11110 10000 10000 10000
Q 01110 10001 10001 10001 10101 10010 01101
R 11110 10001 10001 11110 10100 10010 10001
S 01111 10000 10000 01110 00001 00001 11110
T 11111 00100 00100 00100 00100 00100 00100
U 10001 10001 10001 10001 10001 10001 01110
V 10001 10001 10001 10001 10001 01010 00100
W 10001 10001 10001 10101 10101 10101 01010
X 10001 10001 01010 00100 01010 10001 10001
Y 10001 10001 10001 01010 00100 00100 00100
Z 11111 00001 00010 00100 01000 10000 11111
. 00000 00000 00000 00000 00000 01100 01100
- 00000 00000 00000 11111 00000 00000 00000
/ 00001 00010 00010 00100 01000 01000 10000
% 11001 11010 00010 00100 01000 01011 10011
( 00010 00100 01000 01000 01000 00100 00010
) 01000 00100 00010 00010 00010 00100 01000
: 00000 01100 01100 00000 01100 01100 00000
, 00000 00000 00000 00000 01100 00100 01000
= 00000 00000 11111 00000 11111 00000 00000
"""
FONT = {}
for _l in _FONT_SRC.strip().splitlines():
    _c, *_rows = _l.split()
    FONT[_c] = [int(r, 2) for r in _rows]


class Canvas:
    def __init__(self, w, h, bg=(255, 255, 255)):
        self.w, self.h = w, h
        self.px = [bytearray(bytes(bg) * w) for _ in range(h)]

    def rect(self, x0, y0, x1, y1, c):
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        for y in range(max(0, int(y0)), min(self.h, int(y1))):
            self.px[y][3 * x0:3 * x1] = bytes(c) * (x1 - x0)

    def text(self, x, y, s, c=(0, 0, 0), scale=1):
        for ch in s.upper():
            g = FONT.get(ch)
            if g:
                for ry, bits in enumerate(g):
                    for rx in range(5):
                        if bits >> (4 - rx) & 1:
                            self.rect(x + rx * scale, y + ry * scale,
                                      x + (rx + 1) * scale, y + (ry + 1) * scale, c)
            x += 6 * scale

    @staticmethod
    def text_w(s, scale=1):
        return len(s) * 6 * scale

    def png(self):
        raw = b"".join(b"\x00" + bytes(r) for r in self.px)

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


COLORS = {"ivshmem-doorbell": (31, 119, 180), "ivshmem-polling": (44, 160, 44),
          "virtio-net": (214, 39, 40), "loopback": (127, 127, 127),
          "transparent": (148, 103, 189)}


def chart(doc):
    """One panel per metric, a bar per path: its ratio to virtio-net (virtio-net = 1)."""
    res = doc["paths"]
    panels = [(label, unit, [value(get, res[p]) for p in PATHS], hib)
              for _k, label, unit, get, hib in METRICS]
    panels += [("HOST CPU " + label, "% QEMU PROCESSES",
                [qemu_sum(res[p][k]) if k in res[p] else None for p in PATHS], False)
               for k, label in CPU_CASES]
    pw, ph, top, cols = 250, 230, 70, 5
    rows = (len(panels) + cols - 1) // cols
    cv = Canvas(pw * cols + 20, top + ph * rows + 10)
    cv.text(10, 8, "IVSHMEM-NET BENCHMARK %s%s: RATIO TO VIRTIO-NET (VALUE LABELLED)"
            % (doc["timestamp"], " SMOKE" if doc["smoke"] else ""), scale=2)
    x = 10
    for p in PATHS:
        cv.rect(x, 40, x + 14, 54, COLORS[p])
        cv.text(x + 20, 42, p, scale=2)
        x += 40 + Canvas.text_w(p, 2)
    base_i = PATHS.index(BASE)
    for i, (label, unit, vals, hib) in enumerate(panels):
        ox, oy = 10 + (i % cols) * pw, top + (i // cols) * ph
        b = vals[base_i]
        ratios = [(v / b if b and v is not None else 0.0) for v in vals]
        top_r = max(ratios + [1.0]) or 1.0
        cv.text(ox + 4, oy + 4, label)
        cv.text(ox + 4, oy + 14, "%s, %s" % (unit, "HIGHER IS BETTER" if hib else "LOWER IS BETTER"),
                (90, 90, 90))
        plot_top, plot_bot = oy + 44, oy + ph - 36
        height = plot_bot - plot_top
        y1 = plot_bot - height / top_r
        cv.rect(ox + 4, int(y1), ox + pw - 14, int(y1) + 1, (180, 180, 180))  # the 1.0 line
        cv.rect(ox + 4, plot_bot, ox + pw - 14, plot_bot + 1, (0, 0, 0))
        bw = (pw - 30) // len(PATHS)
        for j, (p, r, v) in enumerate(zip(PATHS, ratios, vals)):
            bx = ox + 8 + j * bw
            by = plot_bot - max(1, int(height * r / top_r))
            cv.rect(bx + 4, by, bx + bw - 4, plot_bot, COLORS[p])
            t = "%.2fX" % r if v is not None else "-"
            cv.text(bx + (bw - Canvas.text_w(t)) // 2, by - 10, t)
            vt = fmt(v).replace(",", "")
            cv.text(bx + (bw - Canvas.text_w(vt)) // 2, plot_bot + 6, vt, (60, 60, 60))
    return cv.png()


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a short run (~30 s) that checks every path works")
    ap.add_argument("--out", default=None, help="results directory [bench/results; smoke: build/bench-smoke]")
    ap.add_argument("--initrd", default=None, help="guest initramfs [build/initramfs.cpio.gz]")
    ap.add_argument("--profile", action="store_true",
                    help="sample both guests with perf during each measurement (initrd with perf)")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile
    smoke = args.smoke
    out_dir = Path(args.out) if args.out else (vm.BUILD / "bench-smoke" if smoke else vm.TOP / "bench" / "results")
    if smoke:
        # iperf3's shortest run is 1 s (with -n, very short transfers report 0 bytes received).
        plan = {"iperf_t": "-t 1", "udp_t": "-t 1", "rr_count": 300, "rr_timeout": 60,
                "describe": "smoke: iperf3 -t 1 per case, 300 round trips"}
    else:
        # 10,000 round trips take about 2 ms each in polling mode under TCG (poll_ms=1 on
        # both sides), so about 20-30 s: within the budget.
        plan = {"iperf_t": "-t 5", "udp_t": "-t 5", "rr_count": 10000, "rr_timeout": 240,
                "describe": "iperf3 -t 5 per case, 10,000 round trips (+100 warm-up)"}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    mem_mb = 256
    doc = {"timestamp": stamp, "smoke": smoke, "plan": plan, "host": host_info(), "paths": {}}
    say("%s run; results to %s" % ("smoke" if smoke else "full", out_dir))

    ns = Netns(["ivtapA", "ivtapB"])
    clusters = []
    try:
        ns.open()
        say("netns %s: bridge ivbr0 with taps ivtapA, ivtapB" % ns.name)
        # Pair 1: doorbell ivshmem-net + virtio-net on the bridge; QEMU runs inside the netns.
        c1 = vm.Cluster([{"name": "bA", "netns": ns.name, "mem_mb": mem_mb,
                          "taps": [("ivtapA", "52:54:00:1b:00:01")]},
                         {"name": "bB", "netns": ns.name, "mem_mb": mem_mb,
                          "taps": [("ivtapB", "52:54:00:1b:00:02")]}],
                        shm_size=32 << 20, doorbell=1, initrd=args.initrd)
        clusters.append(c1)
        c1.start()
        doc["accel"], doc["accel_reason"] = c1.accel, c1.accel_reason
        say("pair 1 (bA, bB) up: ivshmem-doorbell + virtio-net (tap, vhost=off); accel %s" % c1.accel)
        a, b = c1["bA"], c1["bB"]
        kern, ncpu, mem = guest_info(a)
        doc["guest"] = {"kernel": kern, "vcpus": int(ncpu), "mem_mb": mem_mb, "memtotal": mem.split(":")[1].strip()}
        c1.parallel(lambda g: setup_guest(g, *{"bA": ("10.90.0.1", "10.91.0.1"),
                                                "bB": ("10.90.0.2", "10.91.0.2")}[g.name]))
        wait_reachable(a, "10.90.0.2")
        wait_reachable(a, "10.91.0.2")
        say("pair 1: ivshm0 10.90.0.0/24 and eth0 10.91.0.0/24 reachable")
        doc["paths"]["ivshmem-doorbell"] = run_path("ivshmem-doorbell", a, b, "10.90.0.2", plan)
        doc["paths"]["virtio-net"] = run_path("virtio-net", a, b, "10.91.0.2", plan)
        doc["paths"]["loopback"] = run_path("loopback", a, None, "127.0.0.1", plan)
        c1.parallel(lambda g: reload_transparent(g, {"bA": "10.90.0.1", "bB": "10.90.0.2"}[g.name]))
        wait_transparent(a)
        wait_transparent(b)
        say("pair 1: reloaded with transparent=eth0; bB's eth0 address now via shared memory")
        t0 = ivshm_counter(a, "transparent_tx_packets")
        doc["paths"]["transparent"] = run_path("transparent", a, b, "10.91.0.2", plan,
                                               only=("tcp1", "rr1"))
        doc["paths"]["transparent"]["transparent_tx_packets"] = (
            ivshm_counter(a, "transparent_tx_packets") - t0)
        say("transparent: %d packets went through shared memory"
            % doc["paths"]["transparent"]["transparent_tx_packets"])
        check_splats(c1)
        c1.close()

        c2 = vm.Cluster([{"name": "bC", "mem_mb": mem_mb}, {"name": "bD", "mem_mb": mem_mb}],
                        shm_size=32 << 20, doorbell=None, initrd=args.initrd)
        clusters.append(c2)
        c2.start()
        say("pair 2 (bC, bD) up: ivshmem-plain (polling)")
        cc, d = c2["bC"], c2["bD"]
        c2.parallel(lambda g: setup_guest(g, {"bC": "10.90.0.1", "bD": "10.90.0.2"}[g.name]))
        wait_reachable(cc, "10.90.0.2")
        doc["paths"]["ivshmem-polling"] = run_path("ivshmem-polling", cc, d, "10.90.0.2", plan)
        check_splats(c2)
        c2.close()
    finally:
        for c in clusters:
            c.close()
        ns.close()

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
    Path(str(stem) + ".png").write_bytes(chart(doc))
    print(md)
    say("wrote %s.{json,md,png} in %.0f s" % (stem, time.time() - T0))
    return 0


def check_splats(c):
    s = c.splats()
    if s:
        raise vm.Failed("kernel warnings in guest logs: %s" % s)


if __name__ == "__main__":
    sys.exit(main())
