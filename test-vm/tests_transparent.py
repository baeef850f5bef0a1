# SPDX-License-Identifier: GPL-2.0
"""Transparent mode (`transparent=eth0`): two guests with ivshmem-net and a virtio-net link
between them (taps in a bridge in a network namespace, as in the benchmark). Traffic to the
peer's virtio-net address goes through shared memory while both ivshmem sides are up, and
back through virtio-net at once when one goes away, without breaking a TCP connection."""

import contextlib
import ipaddress
import re
import time

import pytest

import vm
from vm import check, no_splats
from bench import Netns
from tests_datapath import IP, NOW_MS, tcp_receiver

pytestmark = pytest.mark.vm

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


def switch_logged(g, way, ip4):
    """Whether `g` logged that the peer with IPv4 address `ip4` switched `way` ("through shared
    memory" or "over the regular interface")."""
    line = re.compile(r"transparent: peer \d+ \([0-9a-f:]{17} %s [^)]*\): %s from now"
                      % (re.escape(ip4), way))
    return line.search(g.run("dmesg | grep 'from now' | tail -5", timeout=30).out) is not None


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


def attach_ivshm0(guest, cluster, mode, addr):
    """Hot-plugs a new ivshmem device on `cluster`'s region (doorbell: through its server) into
    `guest`, waits (30 s at most) for the driver's ivshm0 and brings it up with `addr`/24."""
    if mode == "doorbell":
        guest.ivshmem_attach(server=cluster.doorbell)
    else:
        guest.ivshmem_attach(path=cluster.shm_path, size=cluster.shm_size)
    guest.run("i=0; while [ ! -d /sys/class/net/ivshm0 ] && [ $i -lt 300 ]; do usleep 100000; "
              "i=$((i + 1)); done; {ip} addr add {iv}/24 dev ivshm0 && {ip} link set ivshm0 up"
              .format(ip=IP, iv=addr), timeout=60, check=True)


@contextlib.contextmanager
def transparent_pair():
    """tpA and tpB on a bridge in a network namespace (virtio-net on taps) and on one region,
    the driver loaded with transparent=eth0 and addresses set on both; yields (cluster, tpA,
    tpB, the transparent-entry log line of each) once each has an entry for the other."""
    ns = Netns(["ivtp0", "ivtp1"], prefix="ivtp")
    try:
        ns.open()
        with vm.Cluster([{"name": "tpA", "netns": ns.name,
                          "taps": [("ivtp0", "52:54:00:7a:00:01")]},
                         {"name": "tpB", "netns": ns.name,
                          "taps": [("ivtp1", "52:54:00:7a:00:02")]}]) as c:
            a, b = c["tpA"], c["tpB"]
            c.parallel(setup)
            yield c, a, b, wait_transparent(a), wait_transparent(b)
    finally:
        ns.close()


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
    with transparent_pair() as (c, a, b, line_a, line_b):
        print("    info: A: %s" % line_a, flush=True)
        print("    info: B: %s" % line_b, flush=True)

        # Until A's eth0 has resolved B's addresses (ARP, NDP) to the MAC B published,
        # A's packets to them stay on eth0: one ping each resolves them.
        ping_ok(a, ETH["tpB"], 1)
        ping_ok(a, ETH6["tpB"], 1)
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
        check("transparent: peer" in a.run("dmesg | grep 'link down; its claim is kept' "
                                           "| tail -1").out,
              "A did not log that it no longer sends to B through shared memory")

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


test_transparent_tcp_over_shm_and_fallback.modes = ("plain", "doorbell")


# test_transparent_refuses_false_claims: the segment (bridge) holds A, B and a router (the
# namespace: gateway, another host, and an address beyond the gateway); C is on the region
# only, its eth0 on a tap off the segment, and publishes whatever address it is given.
FC_MAC = {"fcA": "52:54:00:7b:00:01", "fcB": "52:54:00:7b:00:02", "fcC": "52:54:00:7b:00:03"}
FC_ETH = {"fcA": ("10.96.0.1", "fd96::1"), "fcB": ("10.96.0.2", "fd96::2")}
FC_IVS = {"fcA": "10.95.0.1", "fcB": "10.95.0.2", "fcC": "10.95.0.3"}
FC_BR_MAC = "02:00:00:96:00:fe"
FC_CLAIMS = [  # (what it is, IPv4, IPv6, whether its real owner answers A)
    ("the gateway's address", "10.96.0.254", "fd96::fe", True),
    ("an address beyond the gateway", "198.51.100.1", "2001:db8:1::1", True),
    ("another guest's address (B, not publishing)", "10.96.0.2", "fd96::2", True),
    ("an on-link address another host holds", "10.96.0.3", "fd96::3", True),
    ("an on-link address nobody holds", "10.96.0.77", "fd96::77", False),
]


def v6_logged(a):
    """An IPv6 address as the driver logs it (groups in hex without leading zeros, no ::)."""
    return ":".join("%x" % int(g, 16) for g in ipaddress.IPv6Address(a).exploded.split(":"))


@pytest.mark.reliability
def test_transparent_refuses_false_claims():
    """Issue 18: a peer's published address is only a claim. Guest C (on the region, its eth0
    off the segment) publishes in turn the gateway's address, an address beyond the gateway,
    another guest's (B's, while B publishes nothing), an on-link address another host holds,
    and one nobody holds, IPv4 and IPv6. A (default routes via the gateway) pings each: A
    sends C nothing (transparent_tx_packets +0, C receives nothing for its regular interface),
    counts each ping in transparent_unverified (so C's claim was in A's table), and the real
    owner answers over eth0. C, with a static neighbour entry for A, pings A from the
    gateway's address: A does not accept that claim, so C's driver keeps the pings off shared
    memory (transparent_unaccepted); C then writes echo requests from the gateway's addresses
    straight into its ring to A (ivnet-nd on a raw socket, as a peer that ignores A's refusal
    would; A's eth0 and ivshm0 share a MAC here so that C's driver delivers them): A drops
    them all (transparent_rx_dropped). Then C leaves, B publishes, and A's pings to B go
    through shared memory again."""
    ns = Netns(["ivfc0", "ivfc1", "ivfc2"], prefix="ivfc")
    try:
        ns.open()
        ns.sh("ip", "link", "set", "ivfc2", "nomaster")
        ns.sh("ip", "link", "set", "ivbr0", "address", FC_BR_MAC)
        for a in ("10.96.0.254/24", "10.96.0.3/24"):
            ns.sh("ip", "addr", "add", a, "dev", "ivbr0")
        for a in ("fd96::fe/64", "fd96::3/64"):
            ns.sh("ip", "-6", "addr", "add", a, "dev", "ivbr0", "nodad")
        ns.sh("ip", "link", "set", "lo", "up")
        ns.sh("ip", "addr", "add", "198.51.100.1/32", "dev", "lo")
        ns.sh("ip", "-6", "addr", "add", "2001:db8:1::1/128", "dev", "lo")
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivfc%d" % i, FC_MAC[n])]}
                         for i, n in enumerate(["fcA", "fcB", "fcC"])]) as cl:
            a, b, c = cl["fcA"], cl["fcB"], cl["fcC"]

            def setup_fc(g):
                cmd = "insmod {ko} transparent=eth0 && {ip} addr add {iv}/24 dev ivshm0 && "
                if g.name != "fcB":  # B's ivshm0 stays down: it publishes nothing yet
                    cmd += "{ip} link set ivshm0 up && "
                if g.name in FC_ETH:
                    cmd += ("{ip} addr add {e4}/24 dev eth0 && "
                            "{ip} -6 addr add {e6}/64 dev eth0 nodad && ")
                if g.name == "fcA":
                    # One MAC for eth0 and ivshm0, so that C's driver delivers frames for
                    # A's regular interface (written by ivnet-nd) to A.
                    cmd += "{ip} link set eth0 address $(cat /sys/class/net/ivshm0/address) && "
                cmd += "{ip} link set eth0 up"
                if g.name == "fcA":
                    cmd += (" && {ip} route add default via 10.96.0.254 && "
                            "{ip} -6 route add default via fd96::fe dev eth0")
                e4, e6 = FC_ETH.get(g.name, ("", ""))
                g.run(cmd.format(ko=KO, ip=IP, iv=FC_IVS[g.name], e4=e4, e6=e6),
                      timeout=60, check=True)

            cl.parallel(setup_fc)
            a_mac = a.run("cat /sys/class/net/eth0/address", check=True).out.strip()

            def published(g, v4, v6, timeout=20):
                """Waits until `g` logs that it publishes v4 and v6. (In doorbell mode an idle
                guest looks at its regular interface on its next kick or frame: a ping to A's
                ivshm0 address makes one.)"""
                want = "publishing eth0 (%s %s %s)" % (FC_MAC[g.name], v4, v6_logged(v6))
                deadline = time.time() + timeout
                while want not in g.run("ping -c 1 -W 1 %s >/dev/null; dmesg | grep publishing "
                                        "| tail -3" % FC_IVS["fcA"], timeout=30).out:
                    check(time.time() < deadline, "%s did not publish %s %s: %s"
                          % (g.name, v4, v6, g.run("dmesg | tail -5").out))
                    time.sleep(0.3)

            def claims_refused(what, dst, answered):
                # Until A has read C's claim, its pings match nothing; once it has, each is
                # counted as unverified, and none may go through shared memory.
                deadline = time.time() + 20
                while True:
                    s0 = stats(a)
                    a.run("ping -c 1 -W 1 %s" % dst, timeout=30)
                    s1 = stats(a)
                    check(delta(s0, s1, "transparent_tx_packets") == 0,
                          "A sent a ping to %s (C claims %s) through shared memory" % (dst, what))
                    if delta(s0, s1, "transparent_unverified") >= 1:
                        break
                    check(time.time() < deadline, "A never counted a ping to %s (C's claim of "
                          "%s) as unverified: %r" % (dst, what, s1))
                    time.sleep(0.5)
                s0a, s0c = stats(a), stats(c)
                r = a.run("ping -c 3 -W 2 %s" % dst, timeout=60)
                s1a, s1c = stats(a), stats(c)
                got = lambda k: delta(s0a, s1a, k)  # noqa: E731
                print("    info: C claims %s %s: A transparent_tx +%d, unverified +%d, eth0 tx "
                      "+%d rx +%d; ping %s" % (what, dst, got("transparent_tx_packets"),
                                               got("transparent_unverified"), got("eth0_tx_packets"),
                                               got("eth0_rx_packets"),
                                               "answered" if r.rc == 0 else "unanswered"),
                      flush=True)
                check(got("transparent_tx_packets") == 0,
                      "A sent %d packets for %s through shared memory to C, which claims %s"
                      % (got("transparent_tx_packets"), dst, what))
                check(got("transparent_unverified") >= 3,
                      "A counted %d of its 3 pings to %s as unverified"
                      % (got("transparent_unverified"), dst))
                check(delta(s0c, s1c, "transparent_rx_packets") == 0
                      and delta(s0c, s1c, "transparent_rx_dropped") == 0,
                      "C received frames for its regular interface while claiming %s: %r" % (what, s1c))
                if answered:
                    check(r.rc == 0 and " 0% packet loss" in r.out and got("eth0_rx_packets") >= 3,
                          "%s's owner did not answer A over eth0: %s" % (dst, r.out))
                else:
                    check(r.rc != 0, "%s answered, but nobody holds it: %s" % (dst, r.out))

            for what, v4, v6, answered in FC_CLAIMS:
                c.run("{ip} addr flush dev eth0 scope global && {ip} addr add {v4}/24 dev eth0 "
                      "&& {ip} -6 addr add {v6}/64 dev eth0 nodad".format(ip=IP, v4=v4, v6=v6),
                      timeout=30, check=True)
                published(c, v4, v6)
                for dst in (v4, v6):
                    claims_refused(what, dst, answered)

                if v4 == "10.96.0.254":
                    # C, as the gateway, with a static neighbour entry for A (so that only
                    # A's refusal can keep its driver from sending through shared memory),
                    # pings A: A does not accept the claim, and C's driver falls back.
                    c.run("{ip} neigh replace 10.96.0.1 lladdr {m} dev eth0 nud permanent && "
                          "{ip} -6 neigh replace fd96::1 lladdr {m} dev eth0 nud permanent"
                          .format(ip=IP, m=a_mac), timeout=30, check=True)
                    for dst in FC_ETH["fcA"]:
                        s0c = stats(c)
                        c.run("ping -c 3 -W 1 %s" % dst, timeout=60)
                        s1c = stats(c)
                        print("    info: C pings A's %s from the gateway's address: C "
                              "transparent_tx +%d, unaccepted +%d"
                              % (dst, delta(s0c, s1c, "transparent_tx_packets"),
                                 delta(s0c, s1c, "transparent_unaccepted")), flush=True)
                        check(delta(s0c, s1c, "transparent_tx_packets") == 0
                              and delta(s0c, s1c, "transparent_unaccepted") >= 3,
                              "C's driver sent pings from the gateway's address to A through "
                              "shared memory, or did not count them as unaccepted: %r" % s1c)
                    # C writes echo requests from the gateway's addresses into its ring to A
                    # itself: A takes none of them.
                    for src, dst in zip((v4, v6), FC_ETH["fcA"]):
                        s0a = stats(a)
                        c.run("ivnet-nd ivshm0 %s %s %s %s echo 3" % (a_mac, FC_MAC["fcC"], src, dst),
                              timeout=30, check=True)
                        time.sleep(0.5)
                        s1a = stats(a)
                        print("    info: C writes 3 echo requests from %s to A's %s: A "
                              "transparent_rx +%d, rx_dropped +%d"
                              % (src, dst, delta(s0a, s1a, "transparent_rx_packets"),
                                 delta(s0a, s1a, "transparent_rx_dropped")), flush=True)
                        check(delta(s0a, s1a, "transparent_rx_packets") == 0
                              and delta(s0a, s1a, "transparent_rx_dropped") >= 3,
                              "A delivered frames from C claiming the gateway's address: %r" % s1a)
                    c.run("{ip} neigh flush dev eth0; {ip} -6 neigh flush dev eth0".format(ip=IP),
                          timeout=30)

            # C leaves, B publishes: an honest peer still gets its traffic through shared memory.
            c.run("ip link set ivshm0 down", check=True)
            b.run("ip link set ivshm0 up", check=True)
            published(b, *FC_ETH["fcB"])
            for dst in FC_ETH["fcB"]:
                deadline = time.time() + 20
                while True:
                    s0 = stats(a)
                    ping_ok(a, dst, 1)
                    if delta(s0, stats(a), "transparent_tx_packets") >= 1:
                        break
                    check(time.time() < deadline, "A never sent to B's %s through shared memory"
                          % dst)
                    time.sleep(0.5)
                s0a, s0b = stats(a), stats(b)
                ping_ok(a, dst, 5)
                s1a, s1b = stats(a), stats(b)
                print("    info: B publishes %s: A transparent_tx +%d, B transparent_rx +%d tx +%d"
                      % (dst, delta(s0a, s1a, "transparent_tx_packets"),
                         delta(s0b, s1b, "transparent_rx_packets"),
                         delta(s0b, s1b, "transparent_tx_packets")), flush=True)
                check(delta(s0a, s1a, "transparent_tx_packets") >= 5
                      and delta(s0b, s1b, "transparent_rx_packets") >= 5
                      and delta(s0b, s1b, "transparent_tx_packets") >= 5,
                      "pings between A and the honest B did not all go through shared memory")
            no_splats(cl)
    finally:
        ns.close()


test_transparent_refuses_false_claims.modes = ("plain", "doorbell")


MA_MAC = {"maA": "52:54:00:7c:00:01", "maB": "52:54:00:7c:00:02"}
# Each guest's eth0 addresses (it publishes its first IPv4 one, and one of the IPv6 ones:
# the first global one in the kernel's list, the later added here).
MA_ETH = {"maA": ["10.96.0.1", "10.96.0.11", "fd96::1", "fd96::11"],
          "maB": ["10.96.0.2", "10.96.0.12", "fd96::2", "fd96::12"]}


def test_transparent_two_addresses_each():
    """Issue 18: guests with two IPv4 and two IPv6 addresses on eth0 publish one of each, and
    take frames from those only. Every address of each is reached from the other, with the
    default source and from every address of the other's of the same family, without a
    lost ping: what comes from or goes to an address the peer did not publish stays on eth0
    (the reply from B's second address to A's first used to go through shared memory, and A
    dropped it), what goes between the published ones through shared memory."""
    ns = Netns(["ivma0", "ivma1"], prefix="ivma")
    try:
        ns.open()
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivma%d" % i, MA_MAC[n])]}
                         for i, n in enumerate(["maA", "maB"])]) as cl:
            a, b = cl["maA"], cl["maB"]

            def setup_ma(g):
                v4, v4b, v6, v6b = MA_ETH[g.name]
                g.run("insmod {ko} transparent=eth0 && {ip} link set ivshm0 up && "
                      "{ip} addr add {v4}/24 dev eth0 && {ip} addr add {v4b}/24 dev eth0 && "
                      "{ip} -6 addr add {v6}/64 dev eth0 nodad && "
                      "{ip} -6 addr add {v6b}/64 dev eth0 nodad && {ip} link set eth0 up"
                      .format(ko=KO, ip=IP, v4=v4, v4b=v4b, v6=v6, v6b=v6b),
                      timeout=60, check=True)

            cl.parallel(setup_ma)
            for g in (a, b):
                v4, _, v6, v6b = MA_ETH[g.name]
                want = re.compile(r"publishing eth0 \(%s %s (%s|%s)\)" % (
                    MA_MAC[g.name], re.escape(v4), v6_logged(v6), v6_logged(v6b)))
                deadline = time.time() + 20
                while not want.search(g.run("dmesg | grep publishing | tail -2", timeout=30).out):
                    check(time.time() < deadline, "%s does not publish %s: %s"
                          % (g.name, want.pattern, g.run("dmesg | tail -5").out))
                    time.sleep(0.3)
            wait_transparent(a)
            wait_transparent(b)
            s0a, s0b = stats(a), stats(b)
            pings = 0
            for src, dst in ((a, b), (b, a)):
                for to in MA_ETH[dst.name]:
                    six = ":" in to
                    froms = [None] + [f for f in MA_ETH[src.name] if (":" in f) == six]
                    for frm in froms:
                        r = src.run("ping -c 2 -W 2 %s%s" % ("-I %s " % frm if frm else "", to),
                                    timeout=60)
                        pings += 2
                        check(r.rc == 0 and " 0% packet loss" in r.out,
                              "%s -> %s (from %s): pings lost: %s"
                              % (src.name, to, frm or "the default source", r.out))
            s1a, s1b = stats(a), stats(b)
            got = {g.name: {k: delta(s0, s1, k) for k in s1}
                   for g, s0, s1 in ((a, s0a, s1a), (b, s0b, s1b))}
            print("    info: %d pings between every pair of addresses, none lost; A transparent "
                  "tx %d rx %d fallbacks %d rx_dropped %d; B transparent tx %d rx %d fallbacks "
                  "%d rx_dropped %d" % (pings, *(got[n][k] for n in ("maA", "maB") for k in
                                                  ("transparent_tx_packets",
                                                   "transparent_rx_packets",
                                                   "transparent_fallbacks",
                                                   "transparent_rx_dropped"))), flush=True)
            for n in ("maA", "maB"):
                check(got[n]["transparent_rx_dropped"] == 0,
                      "%s dropped %d frames from its peer" % (n, got[n]["transparent_rx_dropped"]))
                # Between the published addresses (default sources): 4 requests and 4
                # replies each way per family, less the first of each, which resolves.
                check(got[n]["transparent_tx_packets"] >= 8,
                      "%s sent only %d packets through shared memory"
                      % (n, got[n]["transparent_tx_packets"]))
                check(got[n]["transparent_fallbacks"] >= 4,
                      "%s left only %d packets from its second addresses to eth0"
                      % (n, got[n]["transparent_fallbacks"]))
            no_splats(cl)
    finally:
        ns.close()


test_transparent_two_addresses_each.modes = ("plain", "doorbell")

CT_MAC = {"ctA": "52:54:00:7d:00:01", "ctB": "52:54:00:7d:00:02"}
CT_ETH = {"ctA": ("10.96.0.1", "fd96::1"), "ctB": ("10.96.0.2", "fd96::2")}
# A's input policy: only what belongs to a connection it knows (and neighbour discovery).
CT_RULES = """table inet ivct {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        iif lo accept
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    }
}
"""


def test_transparent_stateful_firewall():
    """Issue 18: A loads a `ct state established,related accept; drop` input policy with nft
    before insmod, so conntrack's confirm hook is registered before ours at the same last
    priority, and runs after it. New connections A opens to B (pings with a new id, IPv4
    and IPv6, after one ping each that resolves B on eth0; a TCP transfer) go through shared
    memory and their replies pass A's policy: the hook confirms the connection before it
    takes the packet (without that, the connection stayed unconfirmed, every reply looked new
    and was dropped)."""
    ns = Netns(["ivct0", "ivct1"], prefix="ivct")
    try:
        ns.open()
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivct%d" % i, CT_MAC[n])]}
                         for i, n in enumerate(["ctA", "ctB"])]) as cl:
            a, b = cl["ctA"], cl["ctB"]

            def setup_ct(g):
                e4, e6 = CT_ETH[g.name]
                cmd = ""
                if g.name == "ctA":
                    cmd = "cat > /tmp/ivct.nft <<'EOF'\n%sEOF\nnft -f /tmp/ivct.nft && " % CT_RULES
                g.run(cmd + "insmod {ko} transparent=eth0 && {ip} link set ivshm0 up && "
                      "{ip} addr add {e4}/24 dev eth0 && {ip} -6 addr add {e6}/64 dev eth0 nodad "
                      "&& {ip} link set eth0 up".format(ko=KO, ip=IP, e4=e4, e6=e6),
                      timeout=60, check=True)

            cl.parallel(setup_ct)
            check("policy drop" in a.run("nft list ruleset", check=True).out,
                  "A's policy is not loaded")
            wait_transparent(a)
            wait_transparent(b)
            for dst in CT_ETH["ctB"]:
                ping_ok(a, dst, 1)  # resolves B's address on eth0
                s0a = stats(a)
                r = a.run("ping -c 3 -W 3 %s" % dst, timeout=60)
                s1a = stats(a)
                print("    info: A pings %s (a new connection): transparent_tx +%d rx +%d; %s"
                      % (dst, delta(s0a, s1a, "transparent_tx_packets"),
                         delta(s0a, s1a, "transparent_rx_packets"),
                         r.out.strip().splitlines()[-2] if r.out.strip() else "no output"),
                      flush=True)
                check(delta(s0a, s1a, "transparent_tx_packets") >= 3,
                      "A's pings to %s did not go through shared memory" % dst)
                check(r.rc == 0 and " 0% packet loss" in r.out,
                      "A's policy dropped the replies from %s: %s" % (dst, r.out))
            rx = listen(b, 5611, 120)
            s0a = stats(a)
            tx = send_background(a, CT_ETH["ctB"][0], 5611, 4, 0, 120)
            ta = wait_done(a, tx, 120)
            tb = wait_done(b, rx, 60)
            s1a = stats(a)
            print("    info: 4 MiB over a new TCP connection A -> B: A transparent_tx +%d rx +%d"
                  % (delta(s0a, s1a, "transparent_tx_packets"),
                     delta(s0a, s1a, "transparent_rx_packets")), flush=True)
            check(ta["rc"] == "0" and tb["bytes"] == str(4 << 20) and ta["sum"] == tb["sum"]
                  and len(ta["sum"]) == 64, "4 MiB over TCP: sent %r, received %r" % (ta, tb))
            check(delta(s0a, s1a, "transparent_tx_packets") >= 100,
                  "the TCP transfer did not go through shared memory")
            no_splats(cl)
    finally:
        ns.close()


test_transparent_stateful_firewall.modes = ("plain", "doorbell")

# test_transparent_refuses_neighbour_discovery: A on the segment with the gateway (the
# namespace's bridge), C on the region only, its eth0 off the segment, publishing an on-link
# address nobody holds.
ND_MAC_C = "52:54:00:7d:00:03"


@pytest.mark.reliability
def test_transparent_refuses_neighbour_discovery():
    """Review finding 1: a peer must not rewrite our neighbour table through shared memory. C
    publishes fd96::77 (on-link, nobody holds it, so A accepts frames from it) and writes
    neighbour discovery straight into its ring to A (ivnet-nd, a raw socket on C's ivshm0,
    past C's own driver's checks; A's ivshm0 and eth0 share a MAC here so that C's driver
    delivers a frame for A's eth0 MAC to A): an NS from fd96::77 for fd96::1 with C's MAC as
    its source link-layer address, and an NA for the gateway fd96::fe (solicited, override)
    with C's MAC. A drops all of them (transparent_rx_dropped), its neighbour table is
    unchanged (no entry for fd96::77, the gateway still at the bridge's MAC), and its pings to
    fd96::77 are not diverted to C (transparent_tx_packets +0). On the old driver the NS made
    fd96::77 -> C's MAC (STALE), the NA moved the gateway to C's MAC, and A sent its pings to
    fd96::77 through shared memory."""
    ns = Netns(["ivnd0", "ivnd1"], prefix="ivnd")
    try:
        ns.open()
        ns.sh("ip", "link", "set", "ivnd1", "nomaster")
        ns.sh("ip", "link", "set", "ivbr0", "address", FC_BR_MAC)
        ns.sh("ip", "-6", "addr", "add", "fd96::fe/64", "dev", "ivbr0", "nodad")
        with vm.Cluster([{"name": "ndA", "netns": ns.name,
                          "taps": [("ivnd0", FC_MAC["fcA"])]},
                         {"name": "ndC", "netns": ns.name,
                          "taps": [("ivnd1", ND_MAC_C)]}]) as cl:
            a, c = cl["ndA"], cl["ndC"]
            a.run("insmod {ko} transparent=eth0 && {ip} addr add 10.95.0.1/24 dev ivshm0 && "
                  "{ip} link set ivshm0 up && "
                  "{ip} link set eth0 address $(cat /sys/class/net/ivshm0/address) && "
                  "{ip} -6 addr add fd96::1/64 dev eth0 nodad && {ip} link set eth0 up"
                  .format(ko=KO, ip=IP), timeout=60, check=True)
            a_mac = a.run("cat /sys/class/net/eth0/address", check=True).out.strip()
            c.run("insmod {ko} transparent=eth0 && {ip} addr add 10.95.0.3/24 dev ivshm0 && "
                  "{ip} link set ivshm0 up && {ip} -6 addr add fd96::77/64 dev eth0 nodad && "
                  "{ip} link set eth0 up".format(ko=KO, ip=IP), timeout=60, check=True)
            # A has C's claim in its table (C's pings to A's ivshm0 make doorbell kicks).
            deadline = time.time() + 30
            while "is %s" % ND_MAC_C not in a.run("dmesg | grep 'transparent: peer'",
                                                  timeout=30).out:
                check(time.time() < deadline, "A never took C's claim: %s"
                      % a.run("dmesg | tail -5").out)
                c.run("ping -c 1 -W 1 10.95.0.1 >/dev/null", timeout=30)
            ping_ok(a, "fd96::fe", 1)

            def neigh():
                return a.run("%s -6 neigh show dev eth0" % IP, timeout=30).out

            n0 = neigh()
            check(re.search(r"fd96::fe lladdr %s" % FC_BR_MAC, n0) and "fd96::77" not in n0,
                  "A's neighbour table before: %s" % n0)
            s0 = stats(a)
            for kind, target in (("ns", "fd96::1"), ("na", "fd96::fe")):
                c.run("ivnet-nd ivshm0 %s %s fd96::77 fd96::1 %s %s %s 3"
                      % (a_mac, ND_MAC_C, kind, target, ND_MAC_C), timeout=30, check=True)
            time.sleep(1)
            s1 = stats(a)
            n1 = neigh()
            print("    info: A after C's 3 NS and 3 NA: transparent_rx +%d, rx_dropped +%d; "
                  "neighbours: %s" % (delta(s0, s1, "transparent_rx_packets"),
                                      delta(s0, s1, "transparent_rx_dropped"),
                                      " | ".join(n1.strip().splitlines())), flush=True)
            check("fd96::77" not in n1, "C's NS made A a neighbour entry for fd96::77: %s" % n1)
            check(re.search(r"fd96::fe lladdr %s" % FC_BR_MAC, n1),
                  "C's NA moved A's gateway entry: %s" % n1)
            check(delta(s0, s1, "transparent_rx_packets") == 0
                  and delta(s0, s1, "transparent_rx_dropped") >= 6,
                  "A did not drop C's 6 neighbour discovery frames: %r" % s1)
            r = a.run("ping -c 3 -W 1 fd96::77", timeout=30)
            s2 = stats(a)
            check(delta(s1, s2, "transparent_tx_packets") == 0,
                  "A sent %d pings for fd96::77 through shared memory to C"
                  % delta(s1, s2, "transparent_tx_packets"))
            check(r.rc != 0, "fd96::77 answered, but nobody holds it: %s" % r.out)
            no_splats(cl)
    finally:
        ns.close()


test_transparent_refuses_neighbour_discovery.modes = ("plain", "doorbell")


SN_MAC = {"snA": "52:54:00:7e:00:01", "snB": "52:54:00:7e:00:02"}
SN_ETH = {"snA": ("10.96.0.1", "fd96::1"), "snB": ("10.96.0.2", "fd96::2")}


def test_transparent_stale_neighbour_rechecked():
    """Review 2, finding 5: A sends to B's eth0 addresses (IPv4, IPv6) through shared memory;
    then B's tap leaves the segment (B still publishes) and A's neighbour entries for B are
    made STALE. A's pings re-check each entry as sending through it does (DELAY, PROBE): B
    does not answer on eth0 (and A's NDP probes, which the hook sends through shared memory,
    B refuses: review 2 finding 1), the entry fails, and A's pings stay on eth0
    (transparent_tx_packets +0). Before, the hook only refreshed the entry's use time: it
    stayed STALE and A diverted to B forever. Back on the segment, B is resolved again and
    reached through shared memory."""
    ns = Netns(["ivsn0", "ivsn1"], prefix="ivsn")
    try:
        ns.open()
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivsn%d" % i, SN_MAC[n])]}
                         for i, n in enumerate(["snA", "snB"])]) as cl:
            a, b = cl["snA"], cl["snB"]

            def setup_sn(g):
                e4, e6 = SN_ETH[g.name]
                g.run("insmod {ko} transparent=eth0 && {ip} link set ivshm0 up && "
                      "{ip} addr add {e4}/24 dev eth0 && {ip} -6 addr add {e6}/64 dev eth0 nodad "
                      "&& {ip} link set eth0 up && "
                      "echo 1 > /proc/sys/net/ipv4/neigh/eth0/delay_first_probe_time && "
                      "echo 1 > /proc/sys/net/ipv6/neigh/eth0/delay_first_probe_time"
                      .format(ko=KO, ip=IP, e4=e4, e6=e6), timeout=60, check=True)

            cl.parallel(setup_sn)
            wait_transparent(a)
            wait_transparent(b)
            for dst in SN_ETH["snB"]:
                ping_ok(a, dst, 1)  # resolves B's address on eth0
                s0 = stats(a)
                ping_ok(a, dst, 3)
                check(delta(s0, stats(a), "transparent_tx_packets") >= 3,
                      "A's pings to B's %s did not go through shared memory" % dst)

            ns.sh("ip", "link", "set", "ivsn1", "nomaster")
            for dst in SN_ETH["snB"]:
                a.run("{ip} neigh change {d} lladdr {m} dev eth0 nud stale"
                      .format(ip=IP, d=dst, m=SN_MAC["snB"]), timeout=30, check=True)
                r = a.run(NOW_MS + """
now_ms; t0=$NOW
while :; do
    ping -c 1 -W 1 {d} >/dev/null 2>&1
    st=$({ip} neigh show {d} dev eth0)
    now_ms
    case "$st" in *FAILED*|*INCOMPLETE*|"") echo "failed after $((NOW - t0)) ms: $st"; exit 0;; esac
    [ $((NOW - t0)) -gt 20000 ] && {{ echo "still valid after $((NOW - t0)) ms: $st"; exit 1; }}
    usleep 200000
done""".format(d=dst, ip=IP), timeout=60)
                print("    info: B off the segment, A's entry for %s stale: %s"
                      % (dst, r.out.strip()), flush=True)
                check(r.rc == 0, "A's stale entry for %s was never re-checked: %s" % (dst, r.out))
                s1 = stats(a)
                r = a.run("ping -c 3 -W 1 %s" % dst, timeout=60)
                s2 = stats(a)
                print("    info: then 3 pings: transparent_tx +%d unverified +%d eth0 tx +%d"
                      % (delta(s1, s2, "transparent_tx_packets"),
                         delta(s1, s2, "transparent_unverified"),
                         delta(s1, s2, "eth0_tx_packets")), flush=True)
                check(delta(s1, s2, "transparent_tx_packets") == 0,
                      "A still sent to B's %s through shared memory after its entry failed" % dst)
                check(delta(s1, s2, "transparent_unverified") >= 1 and r.rc != 0,
                      "A's pings to B's %s did not stay on eth0: %s" % (dst, r.out))

            ns.sh("ip", "link", "set", "ivsn1", "master", "ivbr0")
            for dst in SN_ETH["snB"]:
                deadline = time.time() + 20
                while True:
                    s3 = stats(a)
                    ok = a.run("ping -c 1 -W 1 %s" % dst, timeout=30).rc == 0
                    if ok and delta(s3, stats(a), "transparent_tx_packets") >= 1:
                        break
                    check(time.time() < deadline, "A never went back to shared memory for %s"
                          % dst)
                    time.sleep(0.3)
            no_splats(cl)
    finally:
        ns.close()


test_transparent_stale_neighbour_rechecked.modes = ("plain", "doorbell")


CK_MAC = {"ckA": "52:54:00:7f:00:01", "ckB": "52:54:00:7f:00:02", "ckC": "52:54:00:7f:00:03"}
CK_ETH = {"ckA": ("10.96.0.1", "fd96::1"), "ckB": ("10.96.0.2", "fd96::2")}
CK_IVS = {"ckA": "10.95.0.1", "ckB": "10.95.0.2", "ckC": "10.95.0.3"}


def send_via_shm(a, b, dst, n):
    """A's pings to `dst` (B's) go through shared memory: waits until they start to (each end
    reads the other's claim and acceptance when it looks, within seconds), then checks that
    `n` more all went that way (A transparent_tx, B transparent_rx)."""
    deadline = time.time() + 20
    while True:
        s0 = stats(a)
        ok = a.run("ping -c 1 -W 1 %s" % dst, timeout=30).rc == 0
        if ok and delta(s0, stats(a), "transparent_tx_packets") >= 1:
            break
        check(time.time() < deadline, "A never sent to %s through shared memory: %r"
              % (dst, stats(a)))
        time.sleep(0.3)
    s0a, s0b = stats(a), stats(b)
    ping_ok(a, dst, n)
    s1a, s1b = stats(a), stats(b)
    check(delta(s0a, s1a, "transparent_tx_packets") >= n
          and delta(s0b, s1b, "transparent_rx_packets") >= n,
          "A's %d pings to %s did not all go through shared memory: A %r, B %r"
          % (n, dst, s1a, s1b))


@pytest.mark.reliability
def test_transparent_claim_kept_while_holder_down():
    """Issue 18: an address claim belongs to the holder's seat, as a MAC claim does. B
    publishes its eth0 addresses and A sends to them through shared memory. C (on the
    region, its eth0 off the segment) copies B's MAC and addresses: A refuses its claim. B's
    ivshm0 goes down (its link with A with it; B stays loaded, its eth0 up): A's pings to
    B's addresses go over eth0 to B (answered, transparent_tx_packets +0), and C receives
    nothing for its regular interface, although C kicks A meanwhile so that A looks at every
    claim again. B's ivshm0 comes back: A's pings to B go through shared memory again. A
    driver that ended B's claim with its link took C's claim on A's next look and sent B's
    traffic to C."""
    ns = Netns(["ivck0", "ivck1", "ivck2"], prefix="ivck")
    try:
        ns.open()
        ns.sh("ip", "link", "set", "ivck2", "nomaster")
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivck%d" % i, CK_MAC[n])]}
                         for i, n in enumerate(["ckA", "ckB", "ckC"])]) as cl:
            a, b, c = cl["ckA"], cl["ckB"], cl["ckC"]

            def setup_ck(g):
                cmd = "insmod {ko} transparent=eth0 && {ip} addr add {iv}/24 dev ivshm0 && "
                if g.name == "ckC":
                    # B's MAC and addresses on an eth0 off the segment; ivshm0 up later.
                    e4, e6 = CK_ETH["ckB"]
                    cmd += "{ip} link set eth0 address %s && " % CK_MAC["ckB"]
                else:
                    e4, e6 = CK_ETH[g.name]
                    cmd += "{ip} link set ivshm0 up && "
                cmd += ("{ip} addr add {e4}/24 dev eth0 && {ip} -6 addr add {e6}/64 dev eth0 "
                        "nodad && {ip} link set eth0 up")
                g.run(cmd.format(ko=KO, ip=IP, iv=CK_IVS[g.name], e4=e4, e6=e6),
                      timeout=60, check=True)

            cl.parallel(setup_ck)
            wait_transparent(a)
            for dst in CK_ETH["ckB"]:
                send_via_shm(a, b, dst, 3)

            def a_log():
                return a.run("dmesg | grep 'transparent: peer'", timeout=30).out

            c.run("ip link set ivshm0 up", check=True)
            deadline = time.time() + 30
            while "claims an address we or another peer hold" not in a_log():
                check(time.time() < deadline, "A never refused C's copy of B's claim: %s"
                      % a_log())
                c.run("ping -c 1 -W 1 %s >/dev/null" % CK_IVS["ckA"], timeout=30)

            resets = stats(a).get("peer_resets", 0)
            b.run("ip link set ivshm0 down", check=True)
            deadline = time.time() + 30
            while stats(a).get("peer_resets", 0) <= resets:
                check(time.time() < deadline, "A never saw B's link go down: %s" % a_log())
                time.sleep(0.3)
            # Give A's housekeeping every chance to look at C's claim again (C's pings to
            # A's ivshm0 address kick A in doorbell mode).
            ping_ok(c, CK_IVS["ckA"], 3)
            for dst in CK_ETH["ckB"]:
                s0a, s0c = stats(a), stats(c)
                ping_ok(a, dst, 5)
                s1a, s1c = stats(a), stats(c)
                print("    info: B's ivshm0 down, C copies B: A's 5 pings to %s: transparent_tx "
                      "+%d, eth0 rx +%d; C transparent_rx +%d"
                      % (dst, delta(s0a, s1a, "transparent_tx_packets"),
                         delta(s0a, s1a, "eth0_rx_packets"),
                         delta(s0c, s1c, "transparent_rx_packets")), flush=True)
                check(delta(s0a, s1a, "transparent_tx_packets") == 0
                      and delta(s0c, s1c, "transparent_rx_packets") == 0,
                      "A sent its pings to B's %s through shared memory (to C, the copier) "
                      "while B's link was down: A %r, C %r" % (dst, s1a, s1c))
                check(delta(s0a, s1a, "eth0_rx_packets") >= 5,
                      "B did not answer A's pings to %s over eth0" % dst)

            b.run("ip link set ivshm0 up", check=True)
            for dst in CK_ETH["ckB"]:
                send_via_shm(a, b, dst, 5)
            no_splats(cl)
    finally:
        ns.close()


test_transparent_claim_kept_while_holder_down.modes = ("plain", "doorbell")


MM_MAC = {"mmA": "52:54:00:80:00:01", "mmB": "52:54:00:80:00:02"}


@pytest.mark.reliability
def test_transparent_prefix_disagreement_falls_back():
    """Issue 18: the two ends judge "on-link" differently (the sender by its route, the
    receiver by its own prefixes), and a claim is used only where the receiver accepts it.
    A has 10.96.0.200/24 and fd96::1/64; B has 10.96.0.2/25 and fd96::2/128 (as from DHCPv6),
    with routes to A's addresses and the /64 on-link (as a router advertisement gives them).
    A's routes to B are direct and B's addresses resolve to B's MAC, but for B A's addresses
    are outside its prefixes, so B would drop what A sends through shared memory: B does not
    accept A's claim, and A's pings to B go over eth0 (answered; A transparent_tx_packets +0,
    transparent_unaccepted +5; B transparent_rx_dropped +0). With B's masks widened to /24
    and /64, B accepts A's claim and A's pings go through shared memory. The old driver
    sent them through shared memory from the start, and B dropped every one."""
    ns = Netns(["ivmm0", "ivmm1"], prefix="ivmm")
    try:
        ns.open()
        with vm.Cluster([{"name": n, "netns": ns.name, "taps": [("ivmm%d" % i, MM_MAC[n])]}
                         for i, n in enumerate(["mmA", "mmB"])]) as cl:
            a, b = cl["mmA"], cl["mmB"]
            a.run("insmod {ko} transparent=eth0 && {ip} addr add 10.95.0.1/24 dev ivshm0 && "
                  "{ip} link set ivshm0 up && {ip} addr add 10.96.0.200/24 dev eth0 && "
                  "{ip} -6 addr add fd96::1/64 dev eth0 nodad && {ip} link set eth0 up"
                  .format(ko=KO, ip=IP), timeout=60, check=True)
            b.run("insmod {ko} transparent=eth0 && {ip} addr add 10.95.0.2/24 dev ivshm0 && "
                  "{ip} link set ivshm0 up && {ip} addr add 10.96.0.2/25 dev eth0 && "
                  "{ip} -6 addr add fd96::2/128 dev eth0 nodad && {ip} link set eth0 up && "
                  "{ip} route add 10.96.0.200/32 dev eth0 && "
                  "{ip} -6 route add fd96::/64 dev eth0"
                  .format(ko=KO, ip=IP), timeout=60, check=True)
            wait_transparent(a)
            wait_transparent(b)
            for dst in ("10.96.0.2", "fd96::2"):
                ping_ok(a, dst, 1)  # resolves B's address on eth0
                # Let B look at A's claim (A's ping to B's ivshm0 address kicks it).
                ping_ok(a, "10.95.0.2", 2)
                s0a, s0b = stats(a), stats(b)
                r = a.run("ping -c 5 -W 2 %s" % dst, timeout=60)
                s1a, s1b = stats(a), stats(b)
                print("    info: B's prefix does not hold A: A's 5 pings to %s %s: A "
                      "transparent_tx +%d, unaccepted +%d; B transparent_rx_dropped +%d"
                      % (dst, "answered" if r.rc == 0 else "unanswered",
                         delta(s0a, s1a, "transparent_tx_packets"),
                         delta(s0a, s1a, "transparent_unaccepted"),
                         delta(s0b, s1b, "transparent_rx_dropped")), flush=True)
                check(delta(s0b, s1b, "transparent_rx_dropped") == 0,
                      "B dropped %d frames A sent through shared memory to %s"
                      % (delta(s0b, s1b, "transparent_rx_dropped"), dst))
                check(delta(s0a, s1a, "transparent_tx_packets") == 0
                      and delta(s0a, s1a, "transparent_unaccepted") >= 5,
                      "A's pings to %s were not kept off shared memory as unaccepted: %r"
                      % (dst, s1a))
                check(r.rc == 0 and " 0% packet loss" in r.out,
                      "A's pings to %s were lost: %s" % (dst, r.out))
            b.run("{ip} addr replace 10.96.0.2/24 dev eth0 && "
                  "{ip} -6 addr del fd96::2/128 dev eth0 && "
                  "{ip} -6 addr add fd96::2/64 dev eth0 nodad".format(ip=IP),
                  timeout=30, check=True)
            b.run("{ip} addr del 10.96.0.2/25 dev eth0".format(ip=IP), timeout=30)
            for dst in ("10.96.0.2", "fd96::2"):
                # In doorbell mode B looks again when kicked: A's pings to B's ivshm0 address.
                deadline = time.time() + 20
                while True:
                    ping_ok(a, "10.95.0.2", 1)
                    s0 = stats(a)
                    ok = a.run("ping -c 1 -W 1 %s" % dst, timeout=30).rc == 0
                    if ok and delta(s0, stats(a), "transparent_tx_packets") >= 1:
                        break
                    check(time.time() < deadline, "with B's prefixes widened, A never sent to "
                          "%s through shared memory: %r" % (dst, stats(a)))
                    time.sleep(0.3)
                s0a, s0b = stats(a), stats(b)
                ping_ok(a, dst, 5)
                s1a, s1b = stats(a), stats(b)
                check(delta(s0a, s1a, "transparent_tx_packets") >= 5
                      and delta(s0b, s1b, "transparent_rx_packets") >= 5
                      and delta(s0b, s1b, "transparent_rx_dropped") == 0,
                      "with B's prefixes widened, A's pings to %s did not all go through shared "
                      "memory: A %r, B %r" % (dst, s1a, s1b))
            no_splats(cl)
    finally:
        ns.close()


test_transparent_prefix_disagreement_falls_back.modes = ("plain", "doorbell")



def retrans_segs(g):
    """The guest's TCP RetransSegs (/proc/net/snmp)."""
    lines = [l.split() for l in g.run("grep ^Tcp: /proc/net/snmp", timeout=30, check=True)
             .out.splitlines()]
    return int(lines[1][lines[0].index("RetransSegs")])


def test_transparent_follows_hot_unplug_and_plug(ivnet_mode):
    """Issue 22, item 3. B streams to A's eth0 address (transparent=eth0 on both), paced, for
    15 s or more. A's ivshmem device is hot-unplugged in the middle: the stream goes on over
    virtio-net. A new device is hot-plugged into A (same region; doorbell: the same server, a
    new VM ID): the link and B's transparent entry for A come back and the stream moves back
    into shared memory. Every byte arrives (sha256 on both ends), and TCP never breaks. B
    counts each switch once (transparent_to_regular at the unplug, transparent_to_shm at the
    plug) and logs a line for each naming A's addresses; A's new device counts B's arrival
    once."""
    chunks, pause_us = (24, 400000) if vm.DEBUG_KERNEL else (100, 150000)
    slow = 6 if vm.DEBUG_KERNEL else 1
    with transparent_pair() as (c, a, b, _, _):
        ping_ok(b, ETH["tpA"], 1)  # B's eth0 resolves A's address (the MAC A published)

        rx = listen(a, 5603, 300 * slow)
        retrans0 = retrans_segs(b)
        tx = send_background(b, ETH["tpA"], 5603, chunks, pause_us, 300 * slow)
        s0 = stats(b)
        time.sleep(2.5)
        s1 = stats(b)
        check(delta(s0, s1, "transparent_tx_packets") >= 50,
              "the stream did not go through shared memory before the unplug: %d"
              % delta(s0, s1, "transparent_tx_packets"))

        took = a.ivshmem_detach(timeout=60)
        ms = time_to_answer(b, ETH["tpA"])
        time.sleep(1.5)
        s2 = stats(b)
        time.sleep(1.5)
        s3 = stats(b)
        print("    info: %s: A's device unplugged (DEVICE_DELETED after %.2f s); A's eth0 "
              "address answered B over virtio-net %d ms later; 1.5 s of the stream then: B "
              "eth0 tx +%d, transparent_tx +%d" % (ivnet_mode, took, ms,
              delta(s2, s3, "eth0_tx_packets"), delta(s2, s3, "transparent_tx_packets")),
              flush=True)
        check(delta(s2, s3, "eth0_tx_packets") >= 100,
              "the stream did not go on over virtio-net after the unplug: B eth0 tx +%d"
              % delta(s2, s3, "eth0_tx_packets"))
        check(delta(s2, s3, "transparent_tx_packets") == 0,
              "B still sent through shared memory with A's device gone")
        switches = (delta(s0, s3, "transparent_to_regular"), delta(s0, s3, "transparent_to_shm"))
        check(switches == (1, 0), "B's switch counters across the unplug (to_regular, to_shm): "
              "%s, expected (1, 0)" % (switches,))
        check(switch_logged(b, "over the regular interface", ETH["tpA"]),
              "B did not log that A's address went back to the regular interface")

        seen = b.run("dmesg | grep -cE 'transparent: peer [0-9]+ is [0-9a-f:]{17}'", timeout=30).out.strip()
        t0 = time.time()
        attach_ivshm0(a, c, ivnet_mode, IVS["tpA"])
        back = None
        deadline = time.time() + 30 * slow
        while time.time() < deadline:
            n = b.run("dmesg | grep -cE 'transparent: peer [0-9]+ is [0-9a-f:]{17}'", timeout=30).out.strip()
            s4 = stats(b)
            time.sleep(0.5)
            if n != seen and delta(s4, stats(b), "transparent_tx_packets") >= 20:
                back = time.time() - t0
                break
        check(back is not None, "the stream never went back into shared memory after the "
              "hot-plug: %s" % b.run("dmesg | tail -15").out)
        print("    info: %s: device_add to the stream back in shared memory: %.1f s"
              % (ivnet_mode, back), flush=True)
        s4, sa = stats(b), stats(a)
        switches = (delta(s3, s4, "transparent_to_regular"), delta(s3, s4, "transparent_to_shm"),
                    sa.get("transparent_to_regular"), sa.get("transparent_to_shm"))
        check(switches == (0, 1, 0, 1), "switch counters after the plug (B to_regular, B "
              "to_shm, A's new device to_regular, to_shm): %s, expected (0, 1, 0, 1)"
              % (switches,))
        check(switch_logged(b, "through shared memory", ETH["tpA"]),
              "B did not log that A's address went back into shared memory")

        tb = wait_done(b, tx, 300 * slow)
        ta = wait_done(a, rx, 60 * slow)
        s5 = stats(b)
        print("    info: %s: %d MiB B -> A across the unplug and the plug: transparent_tx %d, "
              "eth0 tx %d, fallbacks %d, TCP segments retransmitted by B %d; sha256 %s"
              % (ivnet_mode, chunks, delta(s0, s5, "transparent_tx_packets"),
                 delta(s0, s5, "eth0_tx_packets"), delta(s0, s5, "transparent_fallbacks"),
                 retrans_segs(b) - retrans0, tb["sum"][:16]), flush=True)
        check(tb["rc"] == "0" and ta["bytes"] == str(chunks << 20)
              and ta["sum"] == tb["sum"] and len(tb["sum"]) == 64,
              "%d MiB across the unplug and plug: sent %r, received %r" % (chunks, tb, ta))
        no_splats(c)


test_transparent_follows_hot_unplug_and_plug.modes = ("plain", "doorbell")
