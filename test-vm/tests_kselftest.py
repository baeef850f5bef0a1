# SPDX-License-Identifier: GPL-2.0
"""The kernel's own driver tests on ivshm0: `tools/testing/selftests/drivers/net/stats.py` and
`queues.py` from Debian's linux-source-6.12, run inside a guest with `NETIF=ivshm0` ("HW mode"
in their README), ivshm0 linked to a second guest and pinged first.

The guests boot the usual initramfs with build/selftests.cpio.gz appended (mkselftests.sh:
the tests, their Python library, YNL and the netlink specs, Debian's python3 and python3-yaml,
dash as /bin/sh so that `sh -c ip ...` reaches iproute2 rather than busybox's applet). Their
KTAP output is parsed case by case: every case must report `ok`, or one of the outcomes listed
in ALLOWED with the reason given there; a case missing, a `not ok`, any other SKIP or XFAIL,
or a nonzero exit fails the test.
"""

import os
import re
import time

import pytest

import vm
from vm import Failed, check, no_splats
import tests_datapath as dp

pytestmark = pytest.mark.vm

SELFTESTS = "/opt/linux/tools/testing/selftests/drivers/net"
OVERLAY = vm.BUILD / "selftests.cpio.gz"

# Every case each script runs, in its order.
CASES = {
    "stats": ["check_pause", "check_fec", "pkt_byte_sum", "qstat_by_ifindex", "check_down"],
    "queues": ["get_queues", "addremove_queues"],
    "ping": ["test_v4", "test_v6", "test_tcp"],
}

# The outcomes other than `ok` a case may have: {case: (directive, reason as printed)}.
ALLOWED = {
    # ivshm0 is a virtual link: it has no pause frames and no forward error correction, and the
    # tests expect such a device to say so (EOPNOTSUPP), which is what XFAIL records.
    "stats.check_pause": ("XFAIL", "pause not supported by the device"),
    "stats.check_fec": ("XFAIL", "FEC not supported by the device"),
}

KTAP_RESULT = re.compile(r"^(not )?ok (\d+) (\S+?)(?: # (\S+)\s*(.*?))?\s*$")


def parse_ktap(script, out):
    """The results of one selftest script's KTAP output: [(case, ok, directive, reason)], after
    checking the header, the plan and the numbering, plus its summary lines (plan, totals)."""
    lines = out.splitlines()
    check("KTAP version 1" in lines, "%s.py printed no KTAP header:\n%s" % (script, out[-3000:]))
    plan = [l for l in lines if re.match(r"^1\.\.\d+$", l)]
    check(len(plan) == 1, "%s.py: expected one KTAP plan line:\n%s" % (script, out[-3000:]))
    results = []
    for l in lines:
        m = KTAP_RESULT.match(l)
        if not m:
            continue
        notok, num, name, directive, reason = m.groups()
        check(name.startswith(script + "."), "%s.py: a result for another script: %r"
              % (script, l))
        check(int(num) == len(results) + 1, "%s.py: result numbered out of order: %r"
              % (script, l))
        results.append((name, notok is None, (directive or "").upper(), reason or ""))
    want = int(plan[0][3:])
    check(len(results) == want, "%s.py planned %d cases and reported %d:\n%s"
          % (script, want, len(results), out[-3000:]))
    totals = [l for l in lines if l.startswith("# Totals:")]
    check(len(totals) == 1, "%s.py printed no '# Totals:' line:\n%s" % (script, out[-3000:]))
    return results, [plan[0], totals[0]]


def judge(script, results, out):
    """Fails unless the cases are exactly CASES[script], each `ok` or as ALLOWED says."""
    names = [r[0] for r in results]
    want = ["%s.%s" % (script, c) for c in CASES[script]]
    check(names == want, "%s.py ran %s, expected %s" % (script, names, want))
    bad = []
    for name, ok, directive, reason in results:
        if ok and not directive:
            continue
        if ok and (directive, reason) == ALLOWED.get(name):
            continue
        bad.append("%s: %s%s%s" % (name, "ok" if ok else "not ok",
                                   " # " + directive if directive else "",
                                   " " + reason if reason else ""))
    check(not bad, "%s.py on ivshm0: outcomes not allowed (see ALLOWED in tests_kselftest.py):"
          "\n  %s\n--- output ---\n%s" % (script, "\n  ".join(bad), out[-4000:]))


def selftest_initrd():
    """The guest initramfs with the selftest overlay appended, in build/vm/ (one per run)."""
    base = vm.DEFAULT_INITRD or vm.BUILD / "initramfs.cpio.gz"
    for p in (base, OVERLAY):
        if not p.exists():
            raise FileNotFoundError("%s missing: run 'make initramfs'" % p)
    vm.VMDIR.mkdir(parents=True, exist_ok=True)
    out = vm.VMDIR / ("initramfs-selftests-%d.cpio.gz" % os.getpid())
    out.write_bytes(base.read_bytes() + OVERLAY.read_bytes())
    return out


def run_selftest(node, script, timeout=600):
    """Runs SCRIPT.py in `node` against ivshm0; returns (rc, output)."""
    t0 = time.time()
    r = node.run("cd %s && NETIF=%s python3 %s.py 2>&1; echo ksft_rc=$?"
                 % (SELFTESTS, dp.IFACE, script), timeout=timeout)
    m = re.search(r"^ksft_rc=(\d+)$", r.out, re.M)
    check(m, "%s: %s.py did not finish:\n%s" % (node.name, script, r.out[-3000:]))
    print("    info: %s.py ran in %.1f s" % (script, time.time() - t0))
    return int(m.group(1)), r.out


def test_kernel_driver_selftests():
    """stats.py and queues.py from the kernel's driver selftests, with NETIF=ivshm0 in gA
    (linked to gB, pinged both ways): each case ok, or an outcome ALLOWED names; then the link
    still carries pings (check_down takes ivshm0 down and up) and no kernel report."""
    dp.drop_pair()
    initrd = selftest_initrd()
    try:
        with vm.Cluster([{"name": "gA", "mem_mb": max(vm.DEFAULT_MEM_MB, 512)},
                         {"name": "gB"}], initrd=initrd) as c:
            a, b = dp.Node(c["gA"], 1), dp.Node(c["gB"], 2)
            r = a.run("for c in sh python3 ip ethtool; do command -v $c; done; readlink -f /bin/sh",
                      timeout=30)
            check(r.out.split() == ["/bin/sh", "/usr/bin/python3", "/usr/local/bin/ip",
                                    "/usr/local/bin/ethtool", "/bin/dash"],
                  "gA: the selftest image's commands are not the ones it needs:\n%s" % r.out)
            dp.bring_up([a, b])
            # gA has one vCPU, so one channel by default: two, so that queues.addremove_queues
            # can take one away and give it back (gB keeps one: the link runs one queue).
            r = a.run("ethtool -L %s combined 2 && ethtool -l %s" % (dp.IFACE, dp.IFACE),
                      timeout=30)
            cur = r.out.split("Current hardware settings:")[-1]
            check(re.search(r"^Combined:\s+2$", cur, re.M),
                  "gA: ethtool -L combined 2 did not take:\n%s" % r.out)
            dp.ping_until(a, b.ip4)
            dp.ping(a, b.ip4)
            dp.ping(b, a.ip6)
            for script in ("stats", "queues"):
                rc, out = run_selftest(a, script)
                results, summary = parse_ktap(script, out)
                for line in summary:
                    print("    info: %s.py: %s" % (script, line))
                for name, ok, directive, reason in results:
                    print("    info: %s: %s%s" % (name, "ok" if ok else "not ok",
                                                 " # %s %s" % (directive, reason)
                                                 if directive else ""))
                judge(script, results, out)
                check(rc == 0, "%s.py exited %d:\n%s" % (script, rc, out[-3000:]))
            dp.ping_until(a, b.ip4)
            dp.ping(a, b.ip4)
            dp.ping(b, a.ip4)
            no_splats(c)
    finally:
        initrd.unlink(missing_ok=True)


# ping.py: gA's ivshm0 (root namespace) and ivshm1 (namespace `remote`), two devices on one
# shared region, are the local and the remote end.
PING_ENV = ("NETIF=ivshm0 LOCAL_V4=10.79.0.1 REMOTE_V4=10.79.0.2 LOCAL_V6=fd79::1 "
            "REMOTE_V6=fd79::2 REMOTE_TYPE=netns REMOTE_ARGS=remote")


def second_device(c):
    """QEMU arguments giving a guest of cluster `c` a second ivshmem device on the cluster's
    region: ivshmem-plain on the same file, or ivshmem-doorbell on the same server (which
    must run already)."""
    if c.doorbell is None:
        return ["-object", "memory-backend-file,id=shm2,mem-path=%s,size=%d,share=on"
                % (c.shm_path, c.shm_size), "-device", "ivshmem-plain,memdev=shm2"]
    sock, vectors = c.doorbell
    return ["-chardev", "socket,path=%s,id=ivs2" % sock,
            "-device", "ivshmem-doorbell,chardev=ivs2,vectors=%d" % vectors]


def test_kernel_selftest_ping_netns():
    """ping.py from the kernel's driver selftests with REMOTE_TYPE=netns: one guest with two
    ivshmem devices on one region, so two ivshm netdevs that link to each other; ivshm1 moves
    into the namespace `remote`. IPv4 and IPv6 pings both ways and a TCP exchange with socat
    (test_v4, test_v6, test_tcp) must all be ok; both netdevs are still linked afterwards and
    no kernel report."""
    dp.drop_pair()
    initrd = selftest_initrd()
    try:
        c = vm.Cluster([{"name": "gA", "mem_mb": max(vm.DEFAULT_MEM_MB, 512)}], initrd=initrd)
        try:
            if isinstance(c.doorbell, int):
                c.start_server()
            c["gA"].extra_args += second_device(c)
        except BaseException:
            c.close()
            raise
        with c:
            a = c["gA"]
            r = a.run("insmod {ko}; ls /sys/class/net | grep ivshm | tr '\\n' ' '; echo; "
                      "dmesg | grep 'peer id'".format(ko=dp.KO), timeout=60)
            check(r.out.split("\n")[0].split() == ["ivshm0", "ivshm1"],
                  "gA: expected the netdevs ivshm0 and ivshm1 from two ivshmem devices:\n%s"
                  % r.out)
            a.run("""set -e
ip netns add remote
ip link set ivshm1 netns remote
ip -n remote link set lo up
ip addr add 10.79.0.1/24 dev ivshm0
ip -6 addr add fd79::1/64 dev ivshm0 nodad
ip link set ivshm0 up
ip -n remote addr add 10.79.0.2/24 dev ivshm1
ip -n remote -6 addr add fd79::2/64 dev ivshm1 nodad
ip -n remote link set ivshm1 up""", timeout=60, check=True)
            r = a.run("i=0; while [ $i -lt 100 ]; do "
                      "[ \"$(cat /sys/class/net/ivshm0/carrier)$(ip netns exec remote "
                      "cat /sys/class/net/ivshm1/carrier)\" = 11 ] && exit 0; "
                      "sleep 0.2; i=$((i + 1)); done; exit 1", timeout=60)
            check(r.rc == 0, "gA: ivshm0 and ivshm1 (in netns remote) never both had carrier:"
                  "\n%s" % a.run("dmesg | grep ivshm | tail -20", timeout=30).out)
            pings = a.run("ping -c 3 -w 20 10.79.0.2; ip netns exec remote ping -c 3 -w 20 "
                          "fd79::1", timeout=60)
            check(pings.out.count(" 3 packets received") == 2,
                  "gA: ivshm0 <-> ivshm1 pings failed:\n%s" % pings.out)
            t0 = time.time()
            r = a.run("cd %s && PATH=/opt/ksft/bin:$PATH %s python3 ping.py 2>&1; "
                      "echo ksft_rc=$?" % (SELFTESTS, PING_ENV), timeout=600)
            m = re.search(r"^ksft_rc=(\d+)$", r.out, re.M)
            check(m, "gA: ping.py did not finish:\n%s" % r.out[-3000:])
            print("    info: ping.py ran in %.1f s" % (time.time() - t0))
            results, summary = parse_ktap("ping", r.out)
            for line in summary:
                print("    info: ping.py: %s" % line)
            for name, ok, directive, reason in results:
                print("    info: %s: %s%s" % (name, "ok" if ok else "not ok",
                                             " # %s %s" % (directive, reason)
                                             if directive else ""))
            judge("ping", results, r.out)
            check(m.group(1) == "0", "ping.py exited %s:\n%s" % (m.group(1), r.out[-3000:]))
            pings = a.run("ping -c 2 -w 20 10.79.0.2; ip netns exec remote ping -c 2 -w 20 "
                          "10.79.0.1", timeout=60)
            check(pings.out.count(" 2 packets received") == 2,
                  "gA: ivshm0 <-> ivshm1 pings failed after ping.py:\n%s" % pings.out)
            no_splats(c)
    finally:
        initrd.unlink(missing_ok=True)


for _t in (test_kernel_driver_selftests, test_kernel_selftest_ping_netns):
    _t.modes = ("plain", "doorbell")
