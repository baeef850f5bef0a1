#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make demo`: boot two guests sharing one ivshmem region, load the driver in both, bring up
ivshm0 on each, and show them pinging each other and sending a file over ivshmem-net, with
`ethtool -S` before and after.

Doorbell mode (ivshmem-doorbell through our ivshmem-server, MSI-X interrupts) by default;
`demo.py --plain` uses ivshmem-plain and the polling timer instead."""

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402

KO = "/lib/modules/ivshmem_net.ko"
FILE_MIB = 16


def show(title, text):
    print("---- %s" % title)
    for line in text.rstrip().splitlines():
        print("     " + line)


def stats(guest, peer):
    """The global counters and those of the link with `peer`, from `ethtool -S`."""
    out = guest.run("ethtool -S ivshm0", check=True).out
    keep = [l for l in out.splitlines()[1:]
            if not re.match(r"\s*peer\d+_", l) or l.strip().startswith("peer%d_" % peer)]
    return "\n".join(keep)


def main():
    start = time.time()
    doorbell = None if "--plain" in sys.argv[1:] else 1
    with vm.Cluster(["gA", "gB"], shm_size=32 << 20, doorbell=doorbell) as c:
        print("demo: two guests (%s: %s), region %s (%d MiB), %s, logs in %s"
              % (c.accel, c.accel_reason, c.shm_path, c.shm_size >> 20,
                 "ivshmem-plain (polling)" if doorbell is None else
                 "ivshmem-doorbell via build/bin/ivshmem-server (interrupts)", vm.VMDIR))
        a, b = c["gA"], c["gB"]
        ids = {}
        for g, ip in ((a, "10.77.0.1"), (b, "10.77.0.2")):
            out = g.run("insmod %s && ip addr add %s/24 dev ivshm0 && ip link set ivshm0 up && "
                        "dmesg | grep ivshmem_net" % (KO, ip), check=True).out
            show("%s: insmod ivshmem_net.ko; ip addr add %s/24 dev ivshm0; ip link set ivshm0 up"
                 % (g.name, ip), out)
            ids[g.name] = int(re.search(r"peer id (\d+)", out).group(1))
        for g in (a, b):
            out = g.run("for i in $(seq 100); do grep -q 1 /sys/class/net/ivshm0/carrier && "
                        "break; sleep 0.05; done; /usr/local/bin/ip -br link show ivshm0; "
                        "/usr/local/bin/ip -br addr show ivshm0",
                        check=True).out
            show("%s: link" % g.name, out)
        before = stats(a, ids["gB"])
        show("gA: ethtool -S ivshm0 (before; global and peer%d = gB)" % ids["gB"], before)

        show("gA: ping -c 3 10.77.0.2", a.run("ping -c 3 10.77.0.2", check=True).out)
        show("gB: ping -c 3 10.77.0.1", b.run("ping -c 3 10.77.0.1", check=True).out)

        sent = a.run("dd if=/dev/urandom of=/tmp/file bs=1M count=%d 2>/dev/null && "
                     "sha256sum /tmp/file" % FILE_MIB, check=True).out.split()[0]
        # busybox nc half-closes when its stdin ends (and the sender's nc then quits), so the
        # listener reads a FIFO that is held open and never written.
        b.run("rm -f /tmp/hold /tmp/recv*; mkfifo /tmp/hold; "
              "(exec 7<>/tmp/hold; nc -l -p 5000 <&7 | tee /tmp/recv | sha256sum > /tmp/recv.sha; "
              "echo done > /tmp/recv.done) </dev/null >/dev/null 2>&1 &", check=True)
        t0 = time.time()
        a.run("for i in $(seq 50); do nc 10.77.0.2 5000 < /tmp/file && exit 0; sleep 0.1; done; "
              "exit 1", timeout=120, check=True)
        out = b.run("for i in $(seq 600); do [ -f /tmp/recv.done ] && break; sleep 0.1; done; "
                    "ls -l /tmp/recv; cat /tmp/recv.sha", timeout=120, check=True).out
        took = time.time() - t0
        got = out.split()[-2]
        show("gA -> gB: %d MiB file over TCP (busybox nc)" % FILE_MIB,
             "sent     sha256 %s\nreceived sha256 %s\n%s\n%.1f s wall clock (TCG guests)"
             % (sent, got, out.splitlines()[0], took))
        inspect = vm.BUILD / "bin" / "ivshmem-inspect"
        if inspect.exists():
            import subprocess
            r = subprocess.run([str(inspect), str(c.shm_path)], capture_output=True, text=True,
                               timeout=30)
            show("host: ivshmem-inspect %s (read-only view of the live region)" % c.shm_path,
                 r.stdout + r.stderr)
        after = stats(a, ids["gB"])
        show("gA: ethtool -S ivshm0 (after)", after)
        show("gB: ethtool -S ivshm0 (after; peer%d = gA)" % ids["gA"], stats(b, ids["gA"]))
        if got != sent:
            print("demo: the file arrived corrupted")
            return 1
        if c.splats():
            print("demo: kernel warnings in guest logs: %s" % c.splats())
            return 1
    print("demo: done in %.1f s" % (time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
