# SPDX-License-Identifier: GPL-2.0
"""In-guest tests of several queues per device (issue 19): guests with 2 vCPUs get one channel
(transmit queue, receive queue, NAPI context and, with ivshmem-doorbell, interrupt vector) per
CPU; `ethtool -l` shows them and `ethtool -L` changes them under traffic; every queue carries
frames and counts them; a guest with one queue links with one with two; garbage in the ring of
queue 1 resets that link and no other.

Doorbell variants run the server with 2 vectors (`-n 2`: one per channel), except the test of a
1-queue and a 2-queue guest, which keeps the default single vector (both channels on it: the
fallback). Every check is on what the guests did: bytes hashed at both ends, counters read
from `ethtool -S` and netdev netlink, dmesg lines; every wait has a deadline.
"""

import json
import mmap
import re
import struct
import time

import pytest

import vm
from vm import Failed, check, no_splats
import tests_datapath as dp
from tests_datapath import ETHTOOL, IFACE, SYS, Node

pytestmark = pytest.mark.vm

QUEUES = 2
# Channels the 32 MiB region of 8 peers allows: 4 queues of rings, pools of 4 partitions.
MAX_CHANNELS = 4
SMP = [{"name": "gA", "vcpus": QUEUES}, {"name": "gB", "vcpus": QUEUES}]
TX_KEYS = ("packets", "bytes")


def vectors():
    """The cluster's `doorbell` argument: 2 vectors in doorbell mode, polling otherwise."""
    return QUEUES if vm.DEFAULT_DOORBELL else None


def channels(node):
    """(maximum, current) combined channels from `ethtool -l`. The maximum is what the region
    allows (4 on the 32 MiB region of 8 peers these clusters use), the current count one
    channel per online CPU unless `queues=` says otherwise."""
    r = node.run("%s -l %s" % (ETHTOOL, IFACE), timeout=30, check=True)
    got = re.findall(r"^Combined:\s+(\d+)$", r.out, re.M)
    check(len(got) == 2, "%s: ethtool -l has no combined max and current:\n%s" % (node.name, r.out))
    return int(got[0]), int(got[1])


def set_channels(node, n):
    r = node.run("%s -L %s combined %d; echo rc=$?" % (ETHTOOL, IFACE, n), timeout=60)
    check("rc=0" in r.out, "%s: ethtool -L combined %d failed:\n%s" % (node.name, n, r.out))


def sysfs_queues(node):
    """The queue directories of ivshm0 (the stack's real queue counts)."""
    return sorted(node.run("ls %s/queues" % SYS, timeout=30, check=True).out.split())


def queue_delta(before, after, direction, q, key="packets"):
    return dp.delta(before, after, "%s_queue%d_%s" % (direction, q, key))


def check_queues_add_up(node, before, after, n):
    """The per-queue counters of queues 0..n-1 add up to the device's (no channel changes in
    between)."""
    for direction in ("tx", "rx"):
        for key in TX_KEYS:
            total = dp.delta(before, after, "%s_%s" % (direction, key))
            parts = [queue_delta(before, after, direction, q, key) for q in range(n)]
            check(sum(parts) == total, "%s: %s_queue<q>_%s moved %s, %s_%s %d"
                  % (node.name, direction, key, parts, direction, key, total))


def stream_start(pairs, nbytes, timeout, stall_s=120):
    """`tests_datapath.stream_transfers` with the senders in the background too, so that the
    guests' agents stay free for other commands while the bytes flow; `stream_finish` waits
    and checks. Returns the jobs."""
    jobs = []
    for src, dst in pairs:
        port = next(dp._ports)
        p = "/tmp/qstream%d" % port
        dst.run("rm -f {p}.*; (timeout {t} ivnet-stream recv {port} --bytes {n} --seed {port} "
                "--timeout {st} > {p}.out 2>&1; echo rc=$? >> {p}.out; echo done > {p}.done) "
                "</dev/null >/dev/null 2>&1 &\n"
                "i=0; while [ $i -lt 200 ]; do grep -q listening {p}.out 2>/dev/null && exit 0; "
                "usleep 50000; i=$((i + 1)); done; echo never listened; cat {p}.out; exit 1"
                .format(p=p, t=timeout + 60, port=port, n=nbytes, st=stall_s),
                timeout=60, check=True)
        jobs.append((src, dst, port, p, dp.stream_sum(nbytes, port)))
    for src, dst, port, p, _sum in jobs:
        src.run("rm -f {p}.s.*; (timeout {t} ivnet-stream send {ip} {port} {n} --seed {port} "
                "--timeout {st} > {p}.s.out 2>&1; echo rc=$? >> {p}.s.out; "
                "echo done > {p}.s.done) </dev/null >/dev/null 2>&1 &"
                .format(p=p, t=timeout, ip=dst.ip4, port=port, n=nbytes, st=stall_s),
                timeout=30, check=True)
    return nbytes, jobs


def stream_running(job):
    """Whether any transfer of `stream_start`'s `job` has not finished (its sender's side)."""
    _n, jobs = job
    return any("done" not in src.run("cat %s.s.done 2>/dev/null" % p, timeout=30).out
               for src, _dst, _port, p, _sum in jobs)


def stream_finish(job, timeout):
    """Waits for `stream_start`'s transfers; checks that every byte arrived and that both ends'
    sha256 equal the host's."""
    nbytes, jobs = job
    for src, dst, port, p, want in jobs:
        what = "TCP %s -> %s, %d MiB (ivnet-stream)" % (src.name, dst.name, nbytes >> 20)
        outs = []
        for g, f in ((src, p + ".s"), (dst, p)):
            r = g.run("i=0; while [ ! -e {f}.done ] && [ $i -lt {n} ]; do usleep 100000; "
                      "i=$((i + 1)); done; cat {f}.out".format(f=f, n=timeout * 10),
                      timeout=timeout + 30)
            outs.append(r.out)
        m = re.search(r"bytes=(\d+) sha256=([0-9a-f]{64}) ms=(\d+)\s+rc=0", outs[0])
        check(m, "%s: the sender failed:\n%s" % (what, outs[0][-1500:]))
        m2 = re.search(r"bytes=(\d+) sha256=([0-9a-f]{64}) ms=\d+ first_bad=(\w+)\s+rc=(\d+)",
                       outs[1])
        check(m2, "%s: the receiver did not finish:\n%s" % (what, outs[1][-1500:]))
        check(m2.group(3) == "none" and m2.group(4) == "0",
              "%s: received bytes differ from the stream from offset %s on (rc %s)"
              % (what, m2.group(3), m2.group(4)))
        check(int(m2.group(1)) == nbytes, "%s: receiver got %s bytes" % (what, m2.group(1)))
        check(m.group(2) == m2.group(2) == want, "%s: sha256 differs: sent %s, received %s, "
              "host computed %s" % (what, m.group(2), m2.group(2), want))
        secs = int(m.group(3)) / 1000.0
        print("    info: %s in %.1f s: %.2f MB/s (sha256 %s...)"
              % (what, secs, nbytes / 1e6 / max(secs, 0.001), want[:16]), flush=True)


def iperf_start(src, dst, seconds, cpus=(0, 1), streams=2):
    """iperf3 TCP from `src` to `dst`: one client per CPU of `cpus`, pinned there (`taskset`:
    the stack sends a pinned socket's data on that CPU's queue), `streams` streams each, for
    `seconds`, in the background; returns the handle for `iperf_wait`."""
    jobs = []
    for cpu in cpus:
        port = next(dp._ports)
        dst.run("iperf3 -s -D -1 -p {port}; i=0; while [ $i -lt 200 ]; do "
                "netstat -ltn 2>/dev/null | grep -q ':{port} ' && exit 0; usleep 50000; "
                "i=$((i + 1)); done; echo never listened; exit 1".format(port=port),
                timeout=60, check=True)
        p = "/tmp/iperf%d" % port
        src.run("rm -f {p}.*; (taskset -c {cpu} timeout {lim} iperf3 -c {ip} -p {port} -P {s} "
                "-t {t} -J > {p}.json 2>&1; echo $? > {p}.rc) </dev/null >/dev/null 2>&1 &"
                .format(p=p, cpu=cpu, lim=seconds + 120, ip=dst.ip4, port=port, s=streams,
                        t=seconds), timeout=30, check=True)
        jobs.append((src, dst, cpu, p))
    return jobs


def iperf_wait(jobs, timeout):
    """Waits for every client of `iperf_start`; checks each exited 0 and its receiver got
    bytes; returns the sum of the receivers' Gbit/s."""
    total = 0.0
    for src, dst, cpu, p in jobs:
        r = src.run("i=0; while [ ! -e {p}.rc ] && [ $i -lt {n} ]; do usleep 100000; "
                    "i=$((i + 1)); done; echo rc=$(cat {p}.rc 2>/dev/null); cat {p}.json"
                    .format(p=p, n=timeout * 10), timeout=timeout + 30)
        what = "iperf3 %s -> %s pinned to CPU %d" % (src.name, dst.name, cpu)
        m = re.match(r"rc=(\d*)\n", r.out)
        check(m and m.group(1) == "0", "%s failed:\n%s" % (what, r.out[-2000:]))
        end = json.loads(r.out[m.end():])["end"]
        got = end["sum_received"]["bytes"]
        check(got > 0, "%s: the receiver got nothing: %s" % (what, end["sum_received"]))
        gbit = end["sum_received"]["bits_per_second"] / 1e9
        print("    info: %s: %.2f Gbit/s (%d MiB)" % (what, gbit, got >> 20), flush=True)
        total += gbit
    return total


def interrupts(node):
    """{irq: total count over CPUs} of the lines of /proc/interrupts naming ivshmem_net."""
    out = node.run("grep ivshmem_net /proc/interrupts", timeout=30).out
    counts = {}
    ncpu = None
    for line in out.splitlines():
        words = line.split()
        if ncpu is None:
            ncpu = node.run("grep -c ^processor /proc/cpuinfo", timeout=30, check=True).out
            ncpu = int(ncpu.strip())
        counts[int(words[0].rstrip(":"))] = sum(int(w) for w in words[1:1 + ncpu])
    return counts


def test_two_queues_carry_traffic_and_count_it():
    """Two 2-vCPU guests: `ethtool -l` shows 2 combined channels (maximum and current) and
    the stack 2 transmit and 2 receive queues. iperf3 with 4 streams each way (2 pinned to
    each CPU) runs while 32 MiB go each way with ivnet-stream (sha256 at both ends and on the
    host equal); afterwards every queue's transmit counters on each sender and receive
    counters on each receiver have moved, the queues add up to the device's counters, nothing
    was dropped, and no context spun (`rx_spin` spins only on a guest with one CPU by
    default). netdev netlink lists both queue pairs, each tied to its own NAPI context
    (with its own interrupt in doorbell mode, where both vectors fired), and its per-queue
    statistics equal `ethtool -S`."""
    dp.drop_pair()
    with vm.Cluster(SMP, doorbell=vectors()) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b])
        for n in (a, b):
            check(channels(n) == (MAX_CHANNELS, QUEUES),
                  "%s: ethtool -l: %s combined (max, current), want (%d, %d)"
                  % (n.name, channels(n), MAX_CHANNELS, QUEUES))
            check(sysfs_queues(n) == ["rx-0", "rx-1", "tx-0", "tx-1"],
                  "%s: queues %s" % (n.name, sysfs_queues(n)))
        irqs_before = {n: interrupts(n) for n in (a, b)}
        before = {n: n.stat_dict() for n in (a, b)}
        jobs = iperf_start(a, b, 8) + iperf_start(b, a, 8)
        dp.stream_transfers([(a, b), (b, a)], 32 << 20, timeout=900)
        gbit = iperf_wait(jobs, 300)
        print("    info: iperf3 4 streams each way at once: %.2f Gbit/s in all" % gbit, flush=True)
        after = dict(zip((a, b), dp.quiet_stats([a, b])))
        for src, dst in ((a, b), (b, a)):
            for q in range(QUEUES):
                sent = queue_delta(before[src], after[src], "tx", q)
                got = queue_delta(before[dst], after[dst], "rx", q)
                print("    info: %s tx queue %d: %d frames; %s rx queue %d: %d frames"
                      % (src.name, q, sent, dst.name, q, got), flush=True)
                check(sent >= 100, "%s: tx queue %d sent only %d frames" % (src.name, q, sent))
                check(got >= 100, "%s: rx queue %d received only %d frames" % (dst.name, q, got))
        for n in (a, b):
            check_queues_add_up(n, before[n], after[n], QUEUES)
        dp.check_no_drops(before, after, (a, b), "with two queues")
        for n in (a, b):
            # `rx_spin=-1` (the default): contexts of a guest with several CPUs do not spin.
            spins = dp.delta(before[n], after[n], "rx_spins")
            check(spins == 0, "%s: 2 CPUs, yet its contexts spun %d times" % (n.name, spins))
        for n in (a, b):
            q = dp.qstats(n)
            e = n.stat_dict()
            pairs = {(t, i) for t in ("rx", "tx") for i in range(QUEUES)}
            check(set(q["queue"]) == pairs and set(q["queue-stats"]) == pairs,
                  "%s: netdev netlink lists queues %s, stats for %s"
                  % (n.name, sorted(q["queue"]), sorted(q["queue-stats"])))
            napis = [q["queue"][("rx", i)] for i in range(QUEUES)]
            check(len(set(napis)) == QUEUES and all(q["queue"][("tx", i)] == napis[i]
                                                    for i in range(QUEUES)),
                  "%s: queues and their NAPI contexts: %r" % (n.name, q["queue"]))
            for (typ, i), st in q["queue-stats"].items():
                for key in TX_KEYS:
                    name = "%s_queue%d_%s" % (typ, i, key)
                    check(st.get("%s-%s" % (typ, key)) == e[name],
                          "%s: qstats %s queue %d %s-%s %s, ethtool -S %s %d"
                          % (n.name, typ, i, typ, key, st.get("%s-%s" % (typ, key)), name, e[name]))
            for key in ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes"):
                check(q["dev"].get(key.replace("_", "-")) == e[key],
                      "%s: qstats device %s %s, ethtool -S %d"
                      % (n.name, key, q["dev"].get(key.replace("_", "-")), e[key]))
            irqs = sorted({q["napi"][i] for i in napis})
            if c.doorbell is not None:
                moved = {i: interrupts(n).get(i, 0) - irqs_before[n].get(i, 0) for i in irqs}
                check(len(irqs) == QUEUES and sorted(interrupts(n)) == irqs,
                      "%s: NAPI interrupts %s, /proc/interrupts %s"
                      % (n.name, irqs, sorted(interrupts(n))))
                check(all(v > 0 for v in moved.values()),
                      "%s: not every vector fired: %s" % (n.name, moved))
            else:
                check(irqs == [-1], "%s: polling, yet NAPI interrupts %s" % (n.name, irqs))
        no_splats(c)


def test_answers_go_back_on_the_queue_their_flow_came_in_on():
    """XPS by receive queue: a socket sends on the transmit queue whose number is the receive
    queue its flow came in on (the receive path records it), so both directions of a flow
    use one ring number, and each side handles the flow on one CPU. Both guests show the
    maps in sysfs (`tx-<q>/xps_rxqs` holds bit q). gA's iperf3 client, pinned to CPU 1, sends
    on queue 1; gB's server, pinned to CPU 0, whose CPU map alone would send its ACKs on
    queue 0, sends them all on queue 1 (a handful of other frames, ARP and the like, may use
    queue 0). The bytes arrive (iperf3's receiver count)."""
    dp.drop_pair()
    with vm.Cluster(SMP, doorbell=vectors()) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b])
        for n in (a, b):
            maps = n.run("cat %s/queues/tx-0/xps_rxqs %s/queues/tx-1/xps_rxqs" % (SYS, SYS),
                         timeout=30, check=True).out.split()
            check([int(m, 16) for m in maps] == [1, 2],
                  "%s: xps_rxqs of tx-0, tx-1: %s, want bits 0 and 1" % (n.name, maps))
        port = next(dp._ports)
        b.run("taskset -c 0 iperf3 -s -D -1 -p {port}; i=0; while [ $i -lt 200 ]; do "
              "netstat -ltn 2>/dev/null | grep -q ':{port} ' && exit 0; usleep 50000; "
              "i=$((i + 1)); done; echo never listened; exit 1".format(port=port),
              timeout=60, check=True)
        before = {n: n.stat_dict() for n in (a, b)}
        r = a.run("taskset -c 1 iperf3 -c %s -p %d -t 4 -J" % (b.ip4, port), timeout=120)
        check(r.rc == 0, "iperf3 gA -> gB failed:\n%s" % r.out[-2000:])
        got = json.loads(r.out)["end"]["sum_received"]["bytes"]
        check(got > 0, "gB received nothing")
        after = dict(zip((a, b), dp.quiet_stats([a, b])))
        sent = {n: [queue_delta(before[n], after[n], "tx", q) for q in range(QUEUES)]
                for n in (a, b)}
        print("    info: %d MiB; frames per transmit queue: gA %s, gB %s"
              % (got >> 20, sent[a], sent[b]), flush=True)
        check(sent[a][1] >= 1000 and sent[a][0] <= 10,
              "gA's client on CPU 1 sent on queues %s, want queue 1" % sent[a])
        check(sent[b][1] >= 100 and sent[b][0] <= 10,
              "gB's server on CPU 0 answered on queues %s, want queue 1 (its flow's)" % sent[b])
        no_splats(c)


def test_set_channels_under_traffic():
    """`ethtool -L ivshm0 combined 1`, then `2`, on each guest while 128 MiB go each way:
    every link re-runs its handshake each time, the stack's queues follow, and both transfers
    finish with the sha256 equal at both ends and on the host (frames lost on the reset links
    only cost TCP retransmissions). Counters never go backwards, and the per-queue statistics
    still add up to the device's afterwards."""
    dp.drop_pair()
    with vm.Cluster(SMP, doorbell=vectors()) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b])
        before = {n: n.stat_dict() for n in (a, b)}
        job = stream_start([(a, b), (b, a)], 128 << 20, timeout=1200)
        # Wait until both directions move, then change the channels on each side in turn.
        tw = time.time()
        while True:
            now = {n: n.stat_dict() for n in (a, b)}
            if all(dp.delta(before[n], now[n], "rx_bytes") > 4 << 20 for n in (a, b)):
                break
            check(time.time() < tw + 120, "transfers did not get going in 120 s")
            time.sleep(0.2)
        print("    info: both transfers moving %.1f s after they were started"
              % (time.time() - tw), flush=True)
        changed = 0
        for n in (a, b, a, b):
            if not stream_running(job):
                break
            changed += 1
            set_channels(n, 1)
            check(channels(n) == (MAX_CHANNELS, 1), "%s: after -L 1: %s" % (n.name, channels(n)))
            check(sysfs_queues(n) == ["rx-0", "tx-0"],
                  "%s: queues after -L 1: %s" % (n.name, sysfs_queues(n)))
            time.sleep(0.5)
            set_channels(n, QUEUES)
            check(channels(n) == (MAX_CHANNELS, QUEUES),
                  "%s: after -L %d: %s" % (n.name, QUEUES, channels(n)))
            time.sleep(0.5)
        still = stream_running(job)
        print("    info: %d channel changes 2 -> 1 -> 2 started while the transfers ran%s"
              % (changed, ", and they still ran after the last" if still else ""), flush=True)
        check(changed >= 2, "the transfers ended before each guest changed its channels")
        stream_finish(job, 1200)
        dp.wait_links([a, b])
        for n in (a, b):
            check(sysfs_queues(n) == ["rx-0", "rx-1", "tx-0", "tx-1"],
                  "%s: queues %s" % (n.name, sysfs_queues(n)))
        mid = dict(zip((a, b), dp.quiet_stats([a, b])))
        for n in (a, b):
            check(dp.delta(before[n], mid[n], "rx_bytes") >= 128 << 20,
                  "%s: received only %d bytes" % (n.name, dp.delta(before[n], mid[n], "rx_bytes")))
        # With the channels steady again, a short transfer moves counters that add up.
        dp.stream_transfers([(a, b), (b, a)], 8 << 20, timeout=600)
        after = dict(zip((a, b), dp.quiet_stats([a, b])))
        for n in (a, b):
            check_queues_add_up(n, mid[n], after[n], QUEUES)
        no_splats(c)


def test_one_queue_guest_links_with_two_queue_guest():
    """gA loaded with `queues=1`, gB with the default (2, one per vCPU): their link carries
    one channel, so everything gA receives arrives on its queue 0 and everything gB receives
    on its queue 0 too (gA has no ring 1 to send on), though gB itself sends from both of its
    transmit queues. 16 MiB each way with sha256 checked, pings both ways, nothing dropped.
    In doorbell mode the server gives each guest one vector: both of gB's channels share it."""
    dp.drop_pair()
    with vm.Cluster(SMP) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b], params={"gA": "queues=1"})
        check(channels(a) == (MAX_CHANNELS, 1), "gA: queues=1, yet ethtool -l says %s"
              % (channels(a),))
        check(channels(b) == (MAX_CHANNELS, QUEUES), "gB: ethtool -l says %s" % (channels(b),))
        check(sysfs_queues(a) == ["rx-0", "tx-0"], "gA: queues %s" % sysfs_queues(a))
        before = {n: n.stat_dict() for n in (a, b)}
        jobs = iperf_start(b, a, 4)
        dp.stream_transfers([(a, b), (b, a)], 16 << 20, timeout=900)
        iperf_wait(jobs, 300)
        dp.ping(a, b.ip4, count=5)
        dp.ping(b, a.ip4, count=5)
        after = dict(zip((a, b), dp.quiet_stats([a, b])))
        for n in (a, b):
            got = dp.delta(before[n], after[n], "rx_packets")
            q0 = queue_delta(before[n], after[n], "rx", 0)
            check(got >= 1000 and q0 == got, "%s: received %d frames, %d of them on queue 0"
                  % (n.name, got, q0))
        check(queue_delta(before[b], after[b], "rx", 1) == 0, "gB received on queue 1")
        sent = [queue_delta(before[b], after[b], "tx", q) for q in range(QUEUES)]
        print("    info: gB's transmit queues sent %s frames to a 1-queue peer" % sent, flush=True)
        check_queues_add_up(a, before[a], after[a], 1)
        check_queues_add_up(b, before[b], after[b], QUEUES)
        dp.check_no_drops(before, after, (a, b), "between 1 and 2 queues")
        no_splats(c)


def link_ups(node, peer):
    return len(re.findall(r"ivshm0: link to peer %d \([0-9a-f:]{17}\) up" % peer.id,
                          node.current_kmsg()))


def link_downs(node, peer):
    return len(re.findall(r"ivshm0: link to peer %d down" % peer.id, node.current_kmsg()))


def test_garbage_in_queue_1_ring_resets_only_that_link():
    """Three 2-vCPU guests. The host writes an impossible producer index into the ring of
    queue 1 from gA to gB (again and again, since gA rewrites it whenever it sends there)
    while gA pings gB from CPU 1 (its queue 1). gB counts the bad ring, logs it, and restarts
    its link with gA, which comes back by itself: pings go through again. The links of both
    with gC stay up throughout (no down line, no reset counted on any side) and carry pings."""
    dp.drop_pair()
    guests = SMP + [{"name": "gC", "vcpus": QUEUES}]
    with vm.Cluster(guests, doorbell=vectors()) as c:
        a, b, cc = Node(c["gA"], 1), Node(c["gB"], 2), Node(c["gC"], 3)
        nodes = [a, b, cc]
        dp.bring_up(nodes)
        for n in nodes:
            check(channels(n) == (MAX_CHANNELS, QUEUES), "%s: ethtool -l says %s"
                  % (n.name, channels(n)))
        header = c.region_header()
        max_peers, stride, rings, queues = (struct.unpack_from("<I", header, o)[0]
                                            for o in (0x18, 0x24, 0x30, 0x44))
        check(queues >= QUEUES, "the region has %d queues of rings" % queues)
        pair = a.id * (max_peers - 1) + (b.id if b.id < a.id else b.id - 1)
        ring = rings + (pair * queues + 1) * stride  # ring (gA -> gB, queue 1): prod_idx first
        for n in nodes:
            n.read_kmsg()
        ups = {(n, o): link_ups(n, o) for n in nodes for o in nodes if o is not n}
        downs = {(n, o): link_downs(n, o) for n in nodes for o in nodes if o is not n}
        before = {n: n.stat_dict() for n in nodes}
        bad = "peer%d_bad_desc" % a.id
        a.run("taskset -c 1 ping -i 0.02 -c 3000 %s >/dev/null 2>&1 </dev/null & "
              "echo $! > /tmp/qping.pid" % b.ip4, timeout=30, check=True)
        t0 = time.time()
        with open(c.shm_path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            deadline = t0 + 60
            seen = 0
            while True:
                for _ in range(2000):
                    m[ring:ring + 4] = struct.pack("<I", 0x7fff0000)
                    time.sleep(0.0005)
                seen = b.stat_dict()[bad] - before[b][bad]
                if seen:
                    break
                check(time.time() < deadline, "gB never took the garbage for gA's index in 60 s")
        print("    info: gB counted %d bad ring(s) from gA after %.1f s of garbage"
              % (seen, time.time() - t0), flush=True)
        a.run("kill $(cat /tmp/qping.pid)", timeout=30)
        out = b.run("dmesg | grep 'ivshm0: peer %d broke the ring protocol'" % a.id).out
        check("Corrupt(ProdIdx)" in out, "gB did not log the corruption: %r" % out)
        dp.wait_links(nodes, timeout=30)
        dp.ping_until(a, b.ip4)
        dp.ping(a, b.ip4, count=5)
        dp.ping(b, a.ip4, count=5)
        for n in (a, b):
            dp.ping(n, cc.ip4, count=3)
            dp.ping(cc, n.ip4, count=3)
        after = {n: n.stat_dict() for n in nodes}
        for n in nodes:
            n.read_kmsg()
        check(link_ups(b, a) > ups[(b, a)] and link_ups(a, b) > ups[(a, b)],
              "the gA-gB link did not come up again: %d/%d up lines before, %d/%d after"
              % (ups[(a, b)], ups[(b, a)], link_ups(a, b), link_ups(b, a)))
        for n in nodes:
            for o in nodes:
                if o is n or {n, o} == {a, b}:
                    continue
                check(link_downs(n, o) == downs[(n, o)] and link_ups(n, o) == ups[(n, o)],
                      "%s's link with %s went down or up again" % (n.name, o.name))
                name = "peer%d_resets" % o.id
                check(dp.delta(before[n], after[n], name) == 0,
                      "%s: %s grew: the garbage reset another link" % (n.name, name))
        no_splats(c)


def test_four_vcpu_guests_four_queues():
    """Two 4-vCPU guests (the most the tests' 32 MiB region of 8 peers allows: 4 pool
    partitions): `ethtool -l` shows 4 of 4 and the stack 4 transmit and 4 receive queues; with
    ivshmem-doorbell, the server gives 4 vectors and each fires. iperf3 from one client pinned
    to each CPU, each way at once, while 16 MiB go each way with ivnet-stream (sha256 at both
    ends): every one of the 4 transmit queues of each sender and receive queues of each
    receiver carries frames, the queues add up to the device's counters, nothing is dropped."""
    n4 = 4
    dp.drop_pair()
    cl = [{"name": "gA", "vcpus": n4}, {"name": "gB", "vcpus": n4}]
    with vm.Cluster(cl, doorbell=n4 if vm.DEFAULT_DOORBELL else None) as c:
        a, b = Node(c["gA"], 1), Node(c["gB"], 2)
        dp.bring_up([a, b])
        want = sorted(["rx-%d" % q for q in range(n4)] + ["tx-%d" % q for q in range(n4)])
        for n in (a, b):
            online = n.run("cat /sys/devices/system/cpu/online", check=True).out.strip()
            check(online == "0-%d" % (n4 - 1), "%s: CPUs online %r" % (n.name, online))
            check(channels(n) == (MAX_CHANNELS, n4),
                  "%s: ethtool -l: %s combined (max, current), want (%d, %d)"
                  % (n.name, channels(n), MAX_CHANNELS, n4))
            check(sysfs_queues(n) == want, "%s: queues %s" % (n.name, sysfs_queues(n)))
        irqs_before = {n: interrupts(n) for n in (a, b)}
        before = {n: n.stat_dict() for n in (a, b)}
        cpus = tuple(range(n4))
        jobs = iperf_start(a, b, 8, cpus=cpus, streams=1) + iperf_start(b, a, 8, cpus=cpus,
                                                                        streams=1)
        dp.stream_transfers([(a, b), (b, a)], 16 << 20, timeout=900)
        gbit = iperf_wait(jobs, 300)
        print("    info: iperf3 4 clients each way at once: %.2f Gbit/s in all" % gbit,
              flush=True)
        after = dict(zip((a, b), dp.quiet_stats([a, b])))
        for src, dst in ((a, b), (b, a)):
            sent = [queue_delta(before[src], after[src], "tx", q) for q in range(n4)]
            got = [queue_delta(before[dst], after[dst], "rx", q) for q in range(n4)]
            print("    info: %s tx queues: %s frames; %s rx queues: %s frames"
                  % (src.name, sent, dst.name, got), flush=True)
            check(min(sent) >= 50, "%s: a transmit queue sent little: %s" % (src.name, sent))
            check(min(got) >= 50, "%s: a receive queue received little: %s" % (dst.name, got))
        for n in (a, b):
            check_queues_add_up(n, before[n], after[n], n4)
        dp.check_no_drops(before, after, (a, b), "with four queues")
        if c.doorbell is not None:
            for n in (a, b):
                now = interrupts(n)
                moved = {i: now[i] - irqs_before[n].get(i, 0) for i in now}
                check(len(now) == n4 and all(v > 0 for v in moved.values()),
                      "%s: not every one of %d vectors fired: %s" % (n.name, n4, moved))
        no_splats(c)


for _t in (test_two_queues_carry_traffic_and_count_it,
           test_answers_go_back_on_the_queue_their_flow_came_in_on, test_set_channels_under_traffic,
           test_one_queue_guest_links_with_two_queue_guest,
           test_garbage_in_queue_1_ring_resets_only_that_link, test_four_vcpu_guests_four_queues):
    _t.modes = ("plain", "doorbell")
