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
}

# The outcomes other than `ok` a case may have: {case: (directive, reason as printed)}.
ALLOWED = {
    # ivshm0 is a virtual link: it has no pause frames and no forward error correction, and the
    # tests expect such a device to say so (EOPNOTSUPP), which is what XFAIL records.
    "stats.check_pause": ("XFAIL", "pause not supported by the device"),
    "stats.check_fec": ("XFAIL", "FEC not supported by the device"),
    # TEMPORARY, must disappear: ivshm0 has one queue, so the test cannot take one away and
    # give it back; it runs once the multi-queue work (issue 19) gives it more (issue 23
    # item 3). Delete this entry then.
    "queues.addremove_queues": ("SKIP", "cannot decrement queue: already at 1"),
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
            dp.ping(a, b.ip4)
            dp.ping(b, a.ip6)
            for script in CASES:
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


test_kernel_driver_selftests.modes = ("plain", "doorbell")
