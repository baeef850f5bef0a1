# SPDX-License-Identifier: GPL-2.0
"""Transparent mode (`transparent=eth0`): two guests with ivshmem-net and a virtio-net link
between them (taps in a bridge in a network namespace, as in the benchmark). Traffic to the
peer's virtio-net address goes through shared memory while both ivshmem sides are up, and
back through virtio-net at once when one goes away, without breaking a TCP connection."""

import re
import time

import vm
from vm import check, no_splats
from bench import Netns
from tests_datapath import IP, NOW_MS, tcp_receiver

KO = "/lib/modules/ivshmem_net.ko"
ETH = {"tpA": "10.96.0.1", "tpB": "10.96.0.2"}
ETH6 = {"tpA": "fd96::1", "tpB": "fd96::2"}
IVS = {"tpA": "10.95.0.1", "tpB": "10.95.0.2"}


def transfer_mib():
    """MiB for the transfer over shared memory and for the one across the rmmod, and a factor
    for their timeouts: less data and more time on the debug kernel, where TCP moves 0.03-0.3
    MB/s here (read when a test runs: the runner sets `vm.DEBUG_KERNEL` after importing this
    file)."""
    return (4, 8, 6) if vm.DEBUG_KERNEL else (32, 48, 1)


TP_LINE = re.compile(r"ivshm0: transparent: peer (\d+) is ([0-9a-f:]{17})")


def setup(g):
    g.run("insmod {ko} transparent=eth0 && {ip} addr add {iv}/24 dev ivshm0 && "
          "{ip} link set ivshm0 up && {ip} addr add {e4}/24 dev eth0 && "
          "{ip} -6 addr add {e6}/64 dev eth0 nodad && {ip} link set eth0 up"
          .format(ko=KO, ip=IP, iv=IVS[g.name], e4=ETH[g.name], e6=ETH6[g.name]),
          timeout=60, check=True)


def stats(g):
    """ethtool -S ivshm0 (if loaded) and eth0's kernel statistics, as one dict."""
    r = g.run("ethtool -S ivshm0 2>/dev/null; for f in tx_packets rx_packets; do "
              "echo eth0_$f: $(cat /sys/class/net/eth0/statistics/$f); done", timeout=30)
    return {k: int(v) for k, v in re.findall(r"^\s*(\w+): (\d+)$", r.out, re.M)}


def delta(a, b, k):
    return b.get(k, 0) - a.get(k, 0)


def wait_transparent(g, timeout=20):
    """Waits until `g` has a transparent table entry for a peer; returns the dmesg line."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = g.run("dmesg | grep 'transparent: peer' | tail -1", timeout=30).out
        if TP_LINE.search(out):
            return out.strip()
        time.sleep(0.3)
    raise vm.Failed("%s: no transparent peer entry within %d s: %s"
                    % (g.name, timeout, g.run("dmesg | tail -20").out))


def ping_ok(g, ip, count=3):
    r = g.run("ping -c %d -W 3 %s" % (count, ip), timeout=60)
    check(r.rc == 0 and " 0% packet loss" in r.out, "%s: ping %s failed: %s" % (g.name, ip, r.out))


def time_to_answer(g, ip):
    """ms until `ping -c 1 -W 1 ip` first succeeds in `g` (20 ms apart, 15 s at most)."""
    r = g.run(NOW_MS + """
now_ms; t0=$NOW
while :; do
    ping -c 1 -W 1 {ip} >/dev/null 2>&1 && {{ now_ms; echo "answered after $((NOW - t0)) ms"; exit 0; }}
    now_ms; [ $((NOW - t0)) -gt 15000 ] && {{ echo "no answer after $((NOW - t0)) ms"; exit 1; }}
    usleep 20000
done""".format(ip=ip), timeout=60)
    check(r.rc == 0, "%s: %s did not answer: %s" % (g.name, ip, r.out))
    return int(re.search(r"after (\d+) ms", r.out).group(1))


def listen(g, port, timeout):
    """A receiver on `g` (see `tests_datapath.tcp_receiver`); returns its files' prefix."""
    return tcp_receiver(g, port, timeout, prefix="/tmp/tprx")


def send_background(g, ip, port, chunks, pause_us, timeout):
    """Starts sending `chunks` MiB of /dev/urandom to ip:port from `g` in the background, one
    MiB every `pause_us`, through tee into sha256sum."""
    p = "/tmp/tptx%d" % port
    g.run("""
rm -f {p}.*; mkfifo {p}.f
(
    sha256sum < {p}.f > {p}.sum &
    i=0
    while [ $i -lt {n} ]; do head -c 1048576 /dev/urandom; usleep {pause}; i=$((i + 1)); done \\
        | tee {p}.f | timeout {t} nc {ip} {port}
    echo $? > {p}.rc
    wait
    echo done > {p}.done
) </dev/null >{p}.log 2>&1 &
""".format(p=p, n=chunks, pause=pause_us, t=timeout, ip=ip, port=port), timeout=30, check=True)
    return p


def wait_done(g, p, timeout):
    r = g.run("""
i=0
while [ ! -e {p}.done ] && [ $i -lt {n} ]; do usleep 100000; i=$((i + 1)); done
echo "done=$(cat {p}.done 2>/dev/null) rc=$(cat {p}.rc 2>/dev/null) bytes=$(cat {p}.bytes 2>/dev/null) sum=$(cut -d' ' -f1 {p}.sum 2>/dev/null)"
cat {p}.log
""".format(p=p, n=timeout * 10), timeout=timeout + 30)
    m = re.search(r"done=(\w*) rc=(\d*) bytes=(\d*) sum=([0-9a-f]*)", r.out)
    check(m and m.group(1) == "done", "%s: %s did not finish: %s" % (g.name, p, r.out[-1500:]))
    return {"rc": m.group(2), "bytes": m.group(3), "sum": m.group(4)}


def test_transparent_tcp_over_shm_and_fallback():
    """With transparent=eth0 on both guests: ping (IPv4, IPv6) and 32 MiB (4 on the debug
    kernel) over TCP to the peer's eth0 address go through ivshm0 (its transparent counters
    rise, eth0's barely move) with the sha256 intact; B's `ip link set ivshm0 down` sends A's
    traffic to B's eth0 address back over virtio-net at once; B up again restores the shared-memory path; a
    transfer running while A (the sender) unloads the module finishes with its sha256 intact
    over virtio-net."""
    BIG_MIB, ACROSS_MIB, SLOW = transfer_mib()
    ns = Netns(["ivtp0", "ivtp1"], prefix="ivtp")
    try:
        ns.open()
        with vm.Cluster([{"name": "tpA", "netns": ns.name,
                          "taps": [("ivtp0", "52:54:00:7a:00:01")]},
                         {"name": "tpB", "netns": ns.name,
                          "taps": [("ivtp1", "52:54:00:7a:00:02")]}]) as c:
            a, b = c["tpA"], c["tpB"]
            c.parallel(setup)
            print("    info: A: %s" % wait_transparent(a), flush=True)
            print("    info: B: %s" % wait_transparent(b), flush=True)

            # Small traffic: both address families, through shared memory.
            sa, sb = stats(a), stats(b)
            ping_ok(a, ETH["tpB"], 5)
            ping_ok(a, ETH6["tpB"], 5)
            ea, eb = stats(a), stats(b)
            check(delta(sa, ea, "transparent_tx_packets") >= 10,
                  "A: pings to B's eth0 addresses did not go through ivshm0: %d"
                  % delta(sa, ea, "transparent_tx_packets"))
            check(delta(sb, eb, "transparent_rx_packets") >= 10
                  and delta(sb, eb, "transparent_tx_packets") >= 10,
                  "B: echo requests/replies not through ivshm0: rx %d tx %d"
                  % (delta(sb, eb, "transparent_rx_packets"), delta(sb, eb, "transparent_tx_packets")))
            # eth0 may send a few of its own (IPv6 router solicitations, MLD reports).
            print("    info: 10 pings A -> B: A transparent_tx +%d, A eth0 tx +%d"
                  % (delta(sa, ea, "transparent_tx_packets"), delta(sa, ea, "eth0_tx_packets")),
                  flush=True)
            check(delta(sa, ea, "eth0_tx_packets") < 10,
                  "A: eth0 sent %d packets during the pings" % delta(sa, ea, "eth0_tx_packets"))

            # BIG_MIB over TCP to B's eth0 address.
            rx = listen(b, 5601, 120 * SLOW)
            s0a, s0b = stats(a), stats(b)
            tx = send_background(a, ETH["tpB"], 5601, BIG_MIB, 0, 120 * SLOW)
            ta = wait_done(a, tx, 120 * SLOW)
            tb = wait_done(b, rx, 60 * SLOW)
            s1a, s1b = stats(a), stats(b)
            check(ta["rc"] == "0" and tb["bytes"] == str(BIG_MIB << 20)
                  and ta["sum"] == tb["sum"] and len(ta["sum"]) == 64, "%d MiB over TCP: sent %r, received %r"
                  % (BIG_MIB, ta, tb))
            t_tx, e_tx = delta(s0a, s1a, "transparent_tx_packets"), delta(s0a, s1a, "eth0_tx_packets")
            e_rx = delta(s0b, s1b, "eth0_rx_packets")
            print("    info: %d MiB A -> B: A transparent_tx %d, A eth0 tx %d, B transparent_rx "
                  "%d, B eth0 rx %d, fallbacks %d" % (BIG_MIB, t_tx, e_tx,
                  delta(s0b, s1b, "transparent_rx_packets"), e_rx,
                  delta(s0a, s1a, "transparent_fallbacks")), flush=True)
            check(t_tx >= 500, "A: only %d packets through ivshm0 for %d MiB" % (t_tx, BIG_MIB))
            check(e_tx < t_tx // 10 and e_rx < t_tx // 10,
                  "virtio-net carried too much: A eth0 tx %d, B eth0 rx %d (ivshm0: %d)"
                  % (e_tx, e_rx, t_tx))

            # B's ivshmem side goes away: B's address answers over virtio-net at once.
            s2a = stats(a)
            b.run("ip link set ivshm0 down", check=True)
            ms = time_to_answer(a, ETH["tpB"])
            ping_ok(a, ETH["tpB"], 3)
            s3a = stats(a)
            print("    info: B's ivshm0 down: B's eth0 address answered after %d ms; A eth0 tx "
                  "+%d, transparent_tx +%d" % (ms, delta(s2a, s3a, "eth0_tx_packets"),
                                               delta(s2a, s3a, "transparent_tx_packets")),
                  flush=True)
            check(ms <= 2000, "fallback took %d ms" % ms)
            check(delta(s2a, s3a, "eth0_tx_packets") >= 3,
                  "A's pings did not go out on eth0 after B's ifdown")
            check("transparent: peer" in a.run("dmesg | grep withdrawn | tail -1").out,
                  "A did not log the withdrawal")

            # Back up: shared memory again.
            b.run("ip link set ivshm0 up", check=True)
            deadline = time.time() + 20
            while True:
                s4a = stats(a)
                ping_ok(a, ETH["tpB"], 2)
                if delta(s4a, stats(a), "transparent_tx_packets") >= 2:
                    break
                check(time.time() < deadline, "A never went back to shared memory")
                time.sleep(0.5)

            # A long transfer across an rmmod on the sender: TCP carries on over virtio-net.
            rx = listen(b, 5602, 240 * SLOW)
            s5a, s5b = stats(a), stats(b)
            tx = send_background(a, ETH["tpB"], 5602, ACROSS_MIB, 100000, 240 * SLOW)
            time.sleep(2.5)
            s6b = stats(b)
            a.run("rmmod ivshmem_net", timeout=60, check=True)
            s6a = stats(a)
            ta = wait_done(a, tx, 240 * SLOW)
            tb = wait_done(b, rx, 60 * SLOW)
            s7a, s7b = stats(a), stats(b)
            print("    info: %d MiB across rmmod on A: B transparent_rx %d before it, A eth0 tx "
                  "%d until the rmmod returned and %d after it; sha256 %s" % (ACROSS_MIB,
                      delta(s5b, s6b, "transparent_rx_packets"), delta(s5a, s6a, "eth0_tx_packets"),
                      delta(s6a, s7a, "eth0_tx_packets"), ta["sum"][:16]), flush=True)
            check(ta["rc"] == "0" and tb["bytes"] == str(ACROSS_MIB << 20)
                  and ta["sum"] == tb["sum"] and len(ta["sum"]) == 64, "%d MiB across rmmod: sent %r, received %r"
                  % (ACROSS_MIB, ta, tb))
            check(delta(s5b, s6b, "transparent_rx_packets") >= 50,
                  "the transfer did not use shared memory before the rmmod")
            check(delta(s6a, s7a, "eth0_tx_packets") >= 1000,
                  "the transfer did not go on over virtio-net after the rmmod")
            no_splats(c)
    finally:
        ns.close()


test_transparent_tcp_over_shm_and_fallback.modes = ("plain", "doorbell")

TESTS = [test_transparent_tcp_over_shm_and_fallback]
