# SPDX-License-Identifier: GPL-2.0
"""In-guest tests of peer ids and link life cycles: module parameters, peers that leave by
`ip link set down`, peers killed without a word (heartbeat loss), a replacement taking over a
dead peer's slot. Every assertion is on what the guests printed, counted and carried."""

import json
import re
import signal
import struct
import subprocess
import time

import pytest

import vm
from vm import check, no_splats
import tests_datapath as dp
from tests_datapath import Node

pytestmark = pytest.mark.vm

KO = "/lib/modules/ivshmem_net.ko"
PEER_ID = re.compile(r"ivshm0: peer id (\d+) \(([^)]*)\)")


def up(guest, ip, params=""):
    """insmod with `params`, address and up; returns (peer id, how it was obtained)."""
    out = guest.run("insmod %s %s && ip addr add %s/24 dev ivshm0 && ip link set ivshm0 up "
                    "&& dmesg | grep 'ivshm0: peer id' | tail -1" % (KO, params, ip),
                    timeout=30, check=True).out
    m = PEER_ID.search(out)
    check(m, "%s: no 'peer id' line: %r" % (guest.name, out))
    return int(m.group(1)), m.group(2)


def wait_carrier(guest, want, timeout_s=10):
    """Polls the carrier inside the guest every 20 ms; returns the ms it took to reach `want`."""
    r = guest.run("i=0; while [ $i -lt %d ]; do "
                  "[ \"$(cat /sys/class/net/ivshm0/carrier 2>/dev/null)\" = %d ] && "
                  "{ echo ok $((i * 20)); exit 0; }; sleep 0.02; i=$((i + 1)); done; "
                  "echo timeout" % (timeout_s * 50, want), timeout=timeout_s + 30)
    check(r.out.startswith("ok"), "%s: carrier never became %d in %d s"
          % (guest.name, want, timeout_s))
    return int(r.out.split()[1])


def linked_pair(a, b, net):
    """Loads the driver in `a` and `b` (addresses NET.1 and NET.2), waits until both carriers
    are on; returns their peer ids."""
    a_id, _ = up(a, net + ".1")
    b_id, _ = up(b, net + ".2")
    wait_carrier(a, 1)
    wait_carrier(b, 1)
    return a_id, b_id


def counter(guest, name):
    out = guest.run("ethtool -S ivshm0", check=True).out
    m = re.search(r"^\s*%s: (\d+)$" % re.escape(name), out, re.M)
    check(m, "%s: no counter %s in ethtool -S" % (guest.name, name))
    return int(m.group(1))


def ping(guest, ip, count=3):
    r = guest.run("ping -c %d -W 3 %s" % (count, ip), timeout=40)
    check(r.rc == 0 and " 0% packet loss" in r.out,
          "%s: ping %s failed: %s" % (guest.name, ip, r.out))


@pytest.mark.reliability
def test_bad_module_parameters_refused():
    """Each out-of-range parameter makes insmod fail with a line naming it, binding nothing;
    a valid `id=` is used as given."""
    with vm.Cluster(["gA"]) as c:
        a = c["gA"]
        for params, text in [("max_peers=1", "max_peers=1 is out of range 2..=64"),
                             ("max_peers=65", "max_peers=65 is out of range 2..=64"),
                             ("id=8", "id=8 is out of range"),
                             ("id=-2", "id=-2 is out of range"),
                             ("poll_ms=0", "poll_ms=0 is out of range 1..=100"),
                             ("poll_ms=5 poll_idle_ms=2", "poll_idle_ms=2 is out of range"),
                             ("poll_us=1001", "poll_us=1001 is out of range 0..=1000"),
                             ("queues=9", "queues=9 is out of range 0..=8"),
                             ("rx_threads=2", "rx_threads=2 is out of range 0..=1"),
                             ("rx_spin=2", "rx_spin=2 is out of range -1..=1"),
                             ("rx_spin=-2", "rx_spin=-2 is out of range -1..=1")]:
            r = a.run("dmesg -c >/dev/null; insmod %s %s; echo rc=$?; dmesg; "
                      "echo mods=$(lsmod | grep -c ivshmem_net) "
                      "ifs=$(ls /sys/class/net | grep -c ivshm)" % (KO, params), timeout=30)
            check("rc=0" not in r.out, "insmod %s succeeded: %s" % (params, r.out))
            check(text in r.out, "insmod %s: expected %r in the log: %s" % (params, text, r.out))
            check("mods=0 ifs=0" in r.out,
                  "insmod %s left the module or an interface behind: %s" % (params, r.out))
        me, how = up(a, "10.78.0.1", "id=5")
        check((me, how) == (5, "id= parameter"), "id=5 gave peer id %d (%s)" % (me, how))
        no_splats(c)


@pytest.mark.reliability
def test_peer_ifdown_ifup_and_kill():
    """`ip link set down` on B takes A's link down (left) and carrier off; up brings it back.
    Killing B's idle VM outright is noticed within ~1 s, by the heartbeat in polling mode and by
    the server's departure notice in doorbell mode (counted once as a heartbeat loss); a fresh
    B joins with a new slot and traffic flows again."""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = c["gA"], c["gB"]
        up(a, "10.78.0.1")
        b_id, _ = up(b, "10.78.0.2")
        wait_carrier(a, 1)
        ping(a, "10.78.0.2")

        resets = counter(a, "peer%d_resets" % b_id)
        b.run("ip link set ivshm0 down", check=True)
        ms = wait_carrier(a, 0, timeout_s=5)
        check(ms <= 2000, "A's carrier went off %d ms after B's ifdown (limit 2000)" % ms)
        check(counter(a, "peer%d_resets" % b_id) == resets + 1, "B leaving not counted once")
        b.run("ip link set ivshm0 up", check=True)
        wait_carrier(a, 1)
        ping(a, "10.78.0.2")
        ping(b, "10.78.0.1")

        losses = counter(a, "heartbeat_losses")
        probes = counter(a, "departure_probes")
        # Idle: nothing in flight. Polling mode notices B's heartbeat stop; doorbell mode,
        # where nobody looks while all is quiet, hears from the ivshmem-server that a client
        # left, asks B for a sign of life and gets none.
        t0 = time.time()
        b.kill()
        ms = wait_carrier(a, 0, timeout_s=10)
        took = time.time() - t0
        print("    info: idle B killed: A's carrier off after %.2f s (host clock, agent round "
              "trip included)" % took, flush=True)
        check(took <= 2.0, "A noticed B's death only after %.1f s (limit 2)" % took)
        out = a.run("dmesg | grep 'link to peer %d down' | tail -1" % b_id, check=True).out
        check("(silent)" in out, "expected a 'down (silent)' line, got %r" % out)
        check(counter(a, "heartbeat_losses") == losses + 1,
              "B's death should count one heartbeat loss")
        if c.doorbell is not None:
            check(counter(a, "departure_probes") == probes + 1,
                  "the departure should have asked B (one linked peer) once: %d -> %d"
                  % (probes, counter(a, "departure_probes")))

        b.start()
        b.wait_ready(c.boot_timeout)
        new_id, how = up(b, "10.78.0.2")
        check(new_id != b_id and how == "claimed a free slot",
              "fresh B should take a free slot, not the dead one's: %d (%s)" % (new_id, how))
        wait_carrier(a, 1)
        ping(a, "10.78.0.2")
        no_splats(c)


@pytest.mark.reliability
def test_stale_slot_taken_over():
    """With max_peers=2 both slots are held; when B dies, C finds no free slot, waits, sees
    B's heartbeat frozen and takes over B's slot, and A talks to C."""
    with vm.Cluster(["gA", "gB", "gC"]) as c:
        a, b, cc = c["gA"], c["gB"], c["gC"]
        up(a, "10.79.0.1", "max_peers=2")
        b_id, _ = up(b, "10.79.0.2", "max_peers=2")
        wait_carrier(a, 1)
        # Both holders alive (in doorbell mode idle, beating only because C rings them while
        # it waits): C must not take a slot.
        r = cc.run("insmod %s max_peers=2; dmesg | grep 'no peer id'; rmmod ivshmem_net" % KO,
                   timeout=60)
        check("every peer slot is held by a live peer" in r.out,
              "C should find no free slot while A and B live: %r" % r.out)
        ping(a, "10.79.0.2")
        b.kill()
        if c.doorbell is not None:
            a.run("(ping -c 20 -i 0.2 10.79.0.2 >/dev/null 2>&1 &)", timeout=10)
        wait_carrier(a, 0)
        c_id, how = up(cc, "10.79.0.3", "max_peers=2")
        check((c_id, how) == (b_id, "took over a stale slot"),
              "C should take over B's slot %d: got %d (%s)" % (b_id, c_id, how))
        wait_carrier(a, 1)
        ping(a, "10.79.0.3")
        ping(cc, "10.79.0.1")
        no_splats(c)


def ring_offset(header, src, dst):
    """Region offset of the ring src -> dst, from the header the guests wrote (layout.rs)."""
    max_peers, stride, rings, queues = (struct.unpack_from("<I", header, o)[0]
                                        for o in (0x18, 0x24, 0x30, 0x44))
    pair = src * (max_peers - 1) + (dst if dst < src else dst - 1)
    return rings + pair * queues * stride


@pytest.mark.reliability
def test_garbage_in_ring_resets_link():
    """The host scribbles an impossible producer index into the ring A -> B. B must not
    trust it: it counts one bad descriptor, says so in the log, restarts the link (A sees the
    restart), and traffic flows again without anybody doing anything."""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = c["gA"], c["gB"]
        a_id, b_id = linked_pair(a, b, "10.80.0")
        ping(a, "10.80.0.2")
        bad = counter(b, "peer%d_bad_desc" % a_id)
        resets_a = counter(a, "peer%d_resets" % b_id)
        off = ring_offset(c.region_header(), a_id, b_id)
        # prod_idx far beyond what the ring can hold; A's own copy stays right, so only B's
        # reading of it is wrong. A may overwrite it when it sends, so try a few times.
        for _ in range(5):
            with open(c.shm_path, "r+b") as f:
                f.seek(off)
                f.write(struct.pack("<I", 0x7fff0000))
            # In doorbell mode an idle B looks at its rings only when something happens: make
            # B send a frame A will not answer (an ARP request for nobody) to wake it.
            b.run("ping -c1 -W1 10.80.0.99", timeout=10)
            if counter(b, "peer%d_bad_desc" % a_id) > bad:
                break
        check(counter(b, "peer%d_bad_desc" % a_id) == bad + 1,
              "B should count exactly one bad descriptor from A")
        out = b.run("dmesg | grep 'ivshm0: peer %d broke the ring protocol'" % a_id).out
        check("Corrupt(ProdIdx)" in out, "B did not log the corruption: %r" % out)
        wait_carrier(a, 1)
        wait_carrier(b, 1)
        ping(a, "10.80.0.2")
        ping(b, "10.80.0.1")
        check(counter(b, "rx_bad_desc") == 1, "B's global rx_bad_desc should be 1")
        check(counter(a, "peer%d_resets" % b_id) > resets_a,
              "A should have seen B restart the link")
        out = b.run("dmesg | grep -c 'link to peer %d (.*) up'" % a_id).out.strip()
        check(out == "2", "B should have brought the link up twice (before and after): %s" % out)
        no_splats(c)


def heartbeats(c, ids):
    """Each peer's heartbeat word as the host reads it from the region file."""
    hdr = c.region_header()
    ctrl, stride = struct.unpack_from("<II", hdr, 0x28)
    with open(c.shm_path, "rb") as f:
        out = []
        for i in ids:
            f.seek(ctrl + i * stride + 4)
            out.append(struct.unpack("<I", f.read(4))[0])
        return out


def test_doorbell_idle_pair_is_quiet():
    """Doorbell mode: once linked and idle, neither driver runs a timer or a poll of its own
    (heartbeats frozen in the region, no polls, no interrupts for 3 s), and a ping wakes both
    at once. IPv6 is off and the neighbour entries are static, so the stack sends nothing."""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = c["gA"], c["gB"]
        ids, macs = [], []
        for g, ip in ((a, "10.81.0.1"), (b, "10.81.0.2")):
            out = g.run("insmod %s && sysctl -qw net.ipv6.conf.ivshm0.disable_ipv6=1 && "
                        "ip addr add %s/24 dev ivshm0 && ip link set ivshm0 up && "
                        "cat /sys/class/net/ivshm0/address && dmesg | grep 'ivshm0: peer id'"
                        % (KO, ip), timeout=30, check=True).out
            ids.append(int(PEER_ID.search(out).group(1)))
            macs.append(out.split()[0])
        a.run("/usr/local/bin/ip neigh replace 10.81.0.2 lladdr %s dev ivshm0 nud permanent" % macs[1], check=True)
        b.run("/usr/local/bin/ip neigh replace 10.81.0.1 lladdr %s dev ivshm0 nud permanent" % macs[0], check=True)
        wait_carrier(a, 1)
        wait_carrier(b, 1)
        ping(a, "10.81.0.2")
        time.sleep(1.0)  # let the watch timer see the rings empty and stop
        stats = "ethtool -S ivshm0 | grep -E '^ *(tx_packets|rx_packets|rx_polls|doorbells)'"
        before = heartbeats(c, ids)
        polls = [g.run(stats, check=True).out.split() for g in (a, b)]
        time.sleep(3.0)
        after = heartbeats(c, ids)
        now = [g.run(stats, check=True).out.split() for g in (a, b)]
        check(before == after and polls == now,
              "idle doorbell peers were not quiet for 3 s: heartbeats %s -> %s, counters %s -> %s"
              % (before, after, polls, now))
        ping(a, "10.81.0.2")
        ping(b, "10.81.0.1")
        no_splats(c)


test_doorbell_idle_pair_is_quiet.modes = ("doorbell",)


def test_plain_and_doorbell_guests_refuse_to_link():
    """A guest on ivshmem-plain and one on ivshmem-doorbell share a region: they cannot serve
    each other (the polling one would find the other silent, and cannot ring its doorbell),
    so each says so once in its log and keeps its carrier off; a second doorbell guest links
    with the first as usual."""
    with vm.Cluster(["gA", "gC", {"name": "gB", "ivshmem": "plain-shared"}], doorbell=1) as c:
        a, b, cc = c["gA"], c["gB"], c["gC"]
        up(a, "10.82.0.1")
        up(b, "10.82.0.2")
        time.sleep(2.0)

        def refused(g, other):
            out = g.run("cat /sys/class/net/ivshm0/carrier; dmesg | grep -c 'not linking'; "
                        "dmesg | grep 'not linking'").out.split("\n")
            check(out[0] == "0" and out[1] == "1" and ("uses %s" % other) in out[2],
                  "%s: expected carrier 0 and one 'not linking' line naming %s: %r"
                  % (g.name, other, out))

        # The polling guest looks all the time; the doorbell guest looks when woken, which
        # the polling guest cannot do: C joining wakes it.
        refused(b, "ivshmem-doorbell")
        up(cc, "10.82.0.3")
        wait_carrier(a, 1)
        ping(a, "10.82.0.3")
        out = a.run("dmesg | grep 'not linking'").out
        check(out.count("not linking") == 1 and "uses ivshmem-plain" in out,
              "gA: expected one 'not linking' line naming ivshmem-plain: %r" % out)
        r = b.run("cat /sys/class/net/ivshm0/carrier", check=True).out.strip()
        check(r == "0", "the plain guest must stay unlinked")
        no_splats(c)


test_plain_and_doorbell_guests_refuse_to_link.modes = ("doorbell",)


@pytest.mark.reliability
def test_server_gone_traffic_goes_on():
    """Stopping the ivshmem-server while two doorbell guests run: QEMU keeps the eventfds it
    has, so existing links keep their interrupts and traffic flows (new guests could not join
    until a new server and new guests start: a limit of QEMU's protocol)."""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = c["gA"], c["gB"]
        up(a, "10.83.0.1")
        up(b, "10.83.0.2")
        wait_carrier(a, 1)
        ping(a, "10.83.0.2")
        c.stop_server()
        check(c.server.poll() is not None, "server still running")
        before = counter(a, "doorbells_received")
        ping(a, "10.83.0.2", count=5)
        ping(b, "10.83.0.1", count=5)
        check(counter(a, "doorbells_received") > before,
              "no interrupts reached gA after the server stopped")
        no_splats(c)


test_server_gone_traffic_goes_on.modes = ("doorbell",)


def test_doorbell_without_interrupt_polls():
    """A doorbell guest that gets no interrupt at all (`pci=nomsi`, and this guest kernel
    routes no INTx line) says so, polls from its timer, still rings its peer's doorbell, and
    both directions work."""
    with vm.Cluster(["gA", {"name": "gB", "cmdline": "pci=nomsi"}]) as c:
        a, b = c["gA"], c["gB"]
        up(a, "10.84.0.1")
        out = b.run("insmod %s && ip addr add 10.84.0.2/24 dev ivshm0 && ip link set ivshm0 up "
                    "&& dmesg | grep ivshmem_net" % KO, timeout=30, check=True).out
        check("no usable interrupt" in out and "polling, ringing doorbells" in out,
              "gB should fall back to polling: %r" % out)
        wait_carrier(a, 1)
        wait_carrier(b, 1)
        ping(a, "10.84.0.2", count=5)
        ping(b, "10.84.0.1", count=5)
        check(counter(a, "doorbells_received") > 0, "gB never rang gA's doorbell")
        no_splats(c)


test_doorbell_without_interrupt_polls.modes = ("doorbell",)
test_peer_ifdown_ifup_and_kill.modes = ("plain", "doorbell")
test_stale_slot_taken_over.modes = ("plain", "doorbell")
test_garbage_in_ring_resets_link.modes = ("plain", "doorbell")

# Where inject_frame writes its next frame in a sender's pool (by region file and sender).
_inject_at = {}


def inject_frame(c, src, dst, frame, flags=0, gso_type=0, gso_size=0, csum_start=0,
                 csum_offset=0, hdr_len=0):
    """Plays peer `src`'s producer from the host: writes one frame into `src`'s transmit pool
    and publishes a descriptor naming it with the given metadata in the ring src -> dst
    (layout version 2: layout.rs/ring.rs offsets). The frame goes from the middle of the pool
    on, one after the other (64-byte aligned, never wrapping): `src` is kept quiet by the
    tests, and what it sent before was consumed, so nothing in flight is overwritten."""
    hdr = c.region_header()
    slots, pool_len = struct.unpack_from("<II", hdr, 0x1c)
    pools = struct.unpack_from("<I", hdr, 0x34)[0]
    base = ring_offset(hdr, src, dst)
    key = (str(c.shm_path), src)
    pos = _inject_at.get(key, pool_len // 2)
    if pos + len(frame) > pool_len:
        pos = 0
    _inject_at[key] = (pos + len(frame) + 63) // 64 * 64
    with open(c.shm_path, "r+b") as f:
        f.seek(base)
        prod_idx = struct.unpack("<I", f.read(4))[0]
        f.seek(pools + src * pool_len + pos)
        f.write(frame)
        f.seek(base + 0x100 + (prod_idx % slots) * 32)
        f.write(struct.pack("<IIHBBHHHH", pos, len(frame), flags, gso_type, 0, gso_size,
                            csum_start, csum_offset, hdr_len).ljust(32, b"\0"))
        f.flush()
        f.seek(base)
        f.write(struct.pack("<I", (prod_idx + 1) & 0xffffffff))


@pytest.mark.reliability
def test_inconsistent_offload_metadata_is_a_bad_descriptor():
    """The host, posing as A, publishes frames to B whose offload metadata cannot be right: TCP
    segmentation with a checksum at the UDP header's offset, and a checksum position beyond
    the frame. B counts each as a bad descriptor and drops it (the frames never reach its stack),
    then a well-formed frame injected the same way is delivered."""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = c["gA"], c["gB"]
        a_id, b_id = linked_pair(a, b, "10.85.0")
        # Quiet A, so that its producer does not publish while the host plays it.
        a.run("ip link set ivshm0 arp off; sysctl -qw net.ipv6.conf.ivshm0.disable_ipv6=1")
        b_mac = b.run("cat /sys/class/net/ivshm0/address", check=True).out.strip()
        dst = bytes.fromhex(b_mac.replace(":", ""))
        udp = dst + bytes.fromhex("020000000001") + b"\x08\x00" + bytes(20 + 8 + 64)
        bad0 = counter(b, "peer%d_bad_desc" % a_id)
        rx0 = counter(b, "peer%d_rx_packets" % a_id)
        # TCPv4 segmentation with the checksum of a UDP header (virtio_net_hdr_to_skb refuses
        # it; a gso_size of 0 is counted as oversize: test_oversized_frames_dropped).
        inject_frame(c, a_id, b_id, udp, gso_type=1, gso_size=1448, flags=1, csum_start=34,
                     csum_offset=6)
        time.sleep(0.5)
        inject_frame(c, a_id, b_id, udp, flags=1, csum_start=4000, csum_offset=6)
        time.sleep(0.5)
        check(counter(b, "peer%d_bad_desc" % a_id) == bad0 + 2,
              "B should count two bad descriptors from A")
        check(counter(b, "peer%d_rx_packets" % a_id) == rx0,
              "B must not deliver frames with impossible offload metadata")
        inject_frame(c, a_id, b_id, udp)
        time.sleep(0.5)
        check(counter(b, "peer%d_rx_packets" % a_id) == rx0 + 1,
              "a well-formed injected frame should be delivered")
        no_splats(c)


@pytest.mark.reliability
def test_oversized_frames_dropped():
    """The host, posing as A, publishes frames to B that the ring carries but B must not take
    (issue 18): plain frames over B's MTU (1500) with Ethernet and VLAN headers, segmentation
    frames over the largest one B advertises (64 KiB and headers), and segmentation frames
    with gso_size 0 and 7 (below the kernel's TCP_MIN_GSO_SIZE, 8). B drops each, counts it
    in rx_drop_oversize (global, per peer, and the netdev's rx_dropped), counts no bad
    descriptor and no reset, keeps its carrier, and delivers a well-formed frame injected
    after them. Traffic then flows both ways: pings and a checksummed transfer. (The host
    wrote behind A's producer, so A's next send finds the consumer ahead of what it
    published and restarts the link once: that resync comes from the test's writing, not
    from the frames, and is waited for.)"""
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b])
        # Quiet A, so that its producer does not publish while the host plays it.
        a.run("ip link set ivshm0 arp off; sysctl -qw net.ipv6.conf.ivshm0.disable_ipv6=1",
              check=True)
        time.sleep(0.5)
        hdr = c.region_header()
        # Layout v2: the largest frame is 128 KiB, or half the sender's pool if that is less.
        _slots, pool_len = struct.unpack_from("<II", hdr, 0x1c)
        max_frame = min(pool_len // 2, 128 << 10)
        # frame::max_len at MTU 1500: tso_max (64 KiB at most) and headers, within the ring.
        gso_max = min(max(1500 + 18, min(max_frame - 19, 65536) + 18), max_frame)
        dst = bytes.fromhex(b.mac.replace(":", ""))
        eth = dst + bytes.fromhex("020000000001") + b"\x08\x00"

        def tcp4(n):
            # An IPv4/TCP frame of n bytes (headers plausible, payload zeros).
            # (The IP length field saturates for frames over 64 KiB: they are dropped unread.)
            ip = bytes([0x45, 0]) + min(n - 14, 0xffff).to_bytes(2, "big") + bytes(4) \
                + bytes([64, 6]) + bytes(2) + bytes([10, 77, 0, 1, 10, 77, 0, 2])
            return eth + ip + bytes(n - 14 - 20)

        tso = dict(flags=1, csum_start=34, csum_offset=16, hdr_len=54)
        bad = [(tcp4(1500 + 18 + 1), {}),                          # over the MTU, no GSO
               (tcp4(9018), {}),
               (tcp4(1500 + 18 + 1), dict(gso_type=1, gso_size=0, **tso)),   # gso_size 0
               (tcp4(3000), dict(gso_type=1, gso_size=7, **tso)),            # below 8
               (tcp4(3000), dict(gso_type=4, gso_size=1, **tso))]            # TCPv6, 1
        for n in (gso_max + 1, 128 << 10):                          # over the GSO maximum
            if n <= max_frame:
                bad.append((tcp4(n), dict(gso_type=1, gso_size=1448, **tso)))
        print("    info: ring frames up to %d bytes, GSO maximum %d: %d oversize frames"
              % (max_frame, gso_max, len(bad)), flush=True)
        s0 = b.stat_dict()
        drop0 = int(b.run("cat /sys/class/net/ivshm0/statistics/rx_dropped", check=True).out)
        for f, meta in bad:
            inject_frame(c, a.id, b.id, f, **meta)
        inject_frame(c, a.id, b.id, eth + bytes(20 + 8 + 64))     # well-formed: delivered
        # B looks at its rings on its own in polling mode; in doorbell mode it needs a reason:
        # a frame of its own that A will not answer (an ARP request for nobody).
        want = len(bad)
        deadline = time.time() + 20

        def moved(s1, name):
            return s1.get(name, 0) - s0.get(name, 0)

        while True:
            b.run("ping -c1 -W1 10.77.0.99", timeout=10)
            s1 = b.stat_dict()
            if moved(s1, "rx_drop_oversize") >= want or time.time() > deadline:
                break
        print("    info: B after them: %s" % ", ".join(
            "%s +%d" % (k, moved(s1, k)) for k in (
                "rx_drop_oversize", "peer%d_rx_packets" % a.id, "rx_bad_desc", "peer_resets",
                "rx_drop_nomem")), flush=True)
        for name in ("rx_drop_oversize", "peer%d_rx_drop_oversize" % a.id):
            check(dp.delta(s0, s1, name) == want,
                  "B: %s grew by %d, %d oversize frames injected"
                  % (name, dp.delta(s0, s1, name), want))
        drop1 = int(b.run("cat /sys/class/net/ivshm0/statistics/rx_dropped", check=True).out)
        check(drop1 - drop0 == want, "B: rx_dropped grew by %d, want %d" % (drop1 - drop0, want))
        for name in ("rx_bad_desc", "peer%d_bad_desc" % a.id, "peer_resets",
                     "peer%d_resets" % a.id, "rx_drop_nomem"):
            check(dp.delta(s0, s1, name) == 0,
                  "B: %s grew by %d: oversize frames are not a ring protocol violation"
                  % (name, dp.delta(s0, s1, name)))
        check(dp.delta(s0, s1, "peer%d_rx_packets" % a.id) == 1,
              "B: the well-formed frame after them should be delivered (rx_packets grew by %d)"
              % dp.delta(s0, s1, "peer%d_rx_packets" % a.id))
        check(b.run("cat /sys/class/net/ivshm0/carrier").out.strip() == "1",
              "B: carrier went off")
        # Traffic goes on (after the one resync of A's producer, see above).
        a.run("ip link set ivshm0 arp on; sysctl -qw net.ipv6.conf.ivshm0.disable_ipv6=0",
              check=True)
        dp.ping_until(a, b.ip4, timeout=30)
        dp.ping_until(b, a.ip4, timeout=30)
        dp.ping(a, b.ip4)
        dp.ping(b, a.ip4)
        dp.stream_transfers([(a, b), (b, a)], 8 << 20, timeout=300)
        no_splats(c)


HOSTILE = vm.BUILD / "bin" / "ivshmem-hostile"


@pytest.mark.reliability
def test_duplicate_mac_first_claim_wins():
    """A forger on the host (ivshmem-hostile --forge-mac-of) joins the region as a peer of
    its own that publishes A's MAC, and links with A and B by the protocol (issue 18). A and
    B load with ids 3 and 4, so the forger takes id 0: the lowest-numbered peer with that
    MAC, to which a driver without the first-claim rule sends B's unicast for A. B refuses
    the forger's claim (logged, peer_mac_conflicts +1), and so does A (its own MAC); B's
    unicast keeps going to A: pings answered, and the forger receives no frame addressed to
    A's MAC (it may get broadcasts)."""
    check(HOSTILE.exists(), "%s missing (make tools)" % HOSTILE)
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b], params={"gA": "id=3", "gB": "id=4"})
        check((a.id, b.id) == (3, 4), "ids %d and %d, want 3 and 4" % (a.id, b.id))
        dp.ping(b, a.ip4)
        s0 = {n.name: n.stat_dict() for n in (a, b)}
        forger = subprocess.Popen([str(HOSTILE), str(c.shm_path), "--forge-mac-of", str(a.id),
                                   "--seconds", "30", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # B links with the forger (id 0) and refuses its claim.
            deadline = time.time() + 20
            while True:
                b.read_kmsg()
                if b.links().get(0) == ("up", a.mac) and \
                        dp.delta(s0["gB"], b.stat_dict(), "peer_mac_conflicts") >= 1:
                    break
                check(time.time() < deadline and forger.poll() is None,
                      "B never linked with the forger (id 0, MAC %s) and refused its claim: "
                      "links %s, forger %s" % (a.mac, b.links(), forger.poll()))
                time.sleep(0.2)
            tx0 = b.stat_dict()
            dp.ping(b, a.ip4, count=20)
            tx1 = b.stat_dict()
        finally:
            forger.terminate()
            out, err = forger.communicate(timeout=30)
        check(forger.returncode == 0, "forger failed (%d): %s" % (forger.returncode, err))
        f = json.loads(out)
        print("    info: forger: %s" % out.strip(), flush=True)
        check(f["id"] == 0 and b.id in f["linked"] and a.id in f["linked"],
              "the forger should be peer 0 and linked with A and B: %s" % f)
        check(f["rx_stolen"] == 0,
              "the forger received %d frames addressed to A's MAC (B's unicast for A)"
              % f["rx_stolen"])
        check(dp.delta(tx0, tx1, "peer%d_tx_packets" % a.id) >= 20,
              "B's pings went to A: peer%d_tx_packets grew by %d"
              % (a.id, dp.delta(tx0, tx1, "peer%d_tx_packets" % a.id)))
        check(dp.delta(tx0, tx1, "tx_drop_no_peer") == 0, "B dropped unicast for A")
        for n in (a, b):
            d = dp.delta(s0[n.name], n.stat_dict(), "peer_mac_conflicts")
            check(d == 1, "%s: peer_mac_conflicts grew by %d, want 1" % (n.name, d))
            n.read_kmsg()
            check("claims" in n.current_kmsg() and a.mac in n.current_kmsg().lower(),
                  "%s: no log line about the forger's claim" % n.name)
        # The forger gone, traffic goes on.
        dp.ping(a, b.ip4)
        no_splats(c)


def _link_ups(node, peer):
    """How many times `node` logged its link to `peer` up."""
    return sum(1 for _p, j, _m, up, _d, _w in dp.LINK_LINE.findall(node.current_kmsg())
               if up and int(j) == peer)


@pytest.mark.reliability
def test_duplicate_mac_kept_while_holder_down():
    """A MAC claim belongs to the holder's seat, not its link (issue 18 review). The forger
    (id 0, A's MAC) is refused by B; then A's interface goes down (B sees its link leave),
    the forger restarts its links (SIGUSR1: a new epoch towards every peer, so B sees its
    link come up again while A is down), and A comes back up. B must still give A's MAC
    to A: 20 pings from B answered, every one sent to A (peer<A>_tx_packets), and the
    forger receives no frame addressed to A's MAC. A driver that freed the claim when A's
    link went down hands the MAC to the forger as its link comes back."""
    check(HOSTILE.exists(), "%s missing (make tools)" % HOSTILE)
    with vm.Cluster(["gA", "gB"]) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b], params={"gA": "id=3", "gB": "id=4"})
        check((a.id, b.id) == (3, 4), "ids %d and %d, want 3 and 4" % (a.id, b.id))
        dp.ping(b, a.ip4)
        s0 = b.stat_dict()
        forger = subprocess.Popen([str(HOSTILE), str(c.shm_path), "--forge-mac-of", str(a.id),
                                   "--seconds", "60", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def wait(what, cond, timeout=20):
            deadline = time.time() + timeout
            while True:
                b.read_kmsg()
                if cond():
                    return
                check(time.time() < deadline and forger.poll() is None,
                      "%s: links %s, forger %s" % (what, b.links(), forger.poll()))
                time.sleep(0.2)

        try:
            wait("B never linked with the forger and refused its claim",
                 lambda: b.links().get(0) == ("up", a.mac)
                 and dp.delta(s0, b.stat_dict(), "peer_mac_conflicts") >= 1)
            a.run("ip link set ivshm0 down", check=True)
            wait("B never saw A's link leave", lambda: b.links().get(a.id, ("",))[0] == "down")
            ups = _link_ups(b, 0)
            forger.send_signal(signal.SIGUSR1)
            wait("B never saw the forger's link come up again after its restart",
                 lambda: _link_ups(b, 0) > ups and b.links().get(0) == ("up", a.mac))
            a.run("ip link set ivshm0 up", check=True)
            wait("B never saw A's link come back", lambda: b.links().get(a.id) == ("up", a.mac))
            tx0 = b.stat_dict()
            got = dp.ping(b, a.ip4, count=20, need=0)
            tx1 = b.stat_dict()
        finally:
            forger.terminate()
            out, err = forger.communicate(timeout=30)
        check(forger.returncode == 0, "forger failed (%d): %s" % (forger.returncode, err))
        f = json.loads(out)
        print("    info: forger: %s; B's pings to A: %d of 20 answered" % (out.strip(), got),
              flush=True)
        check(f["restarts"] == 1, "the forger restarted its links %d times" % f["restarts"])
        check(f["rx_stolen"] == 0,
              "the forger received %d frames addressed to A's MAC (B's unicast for A)"
              % f["rx_stolen"])
        check(got == 20, "B's pings to A: %d of 20 answered" % got)
        check(dp.delta(tx0, tx1, "peer%d_tx_packets" % a.id) >= 20,
              "B's pings went to A: peer%d_tx_packets grew by %d"
              % (a.id, dp.delta(tx0, tx1, "peer%d_tx_packets" % a.id)))
        no_splats(c)


test_oversized_frames_dropped.modes = ("plain", "doorbell")
test_duplicate_mac_first_claim_wins.modes = ("plain", "doorbell")
test_duplicate_mac_kept_while_holder_down.modes = ("plain", "doorbell")
