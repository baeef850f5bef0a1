#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make demo`: boot two guests sharing one ivshmem region, load the driver in both, and show
that what one guest wrote into shared memory through its mapping is what the other read
through its own (and what the host sees in the region file)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vm  # noqa: E402


def show(title, text):
    print("---- %s" % title)
    for line in text.rstrip().splitlines():
        print("     " + line)


def main():
    start = time.time()
    with vm.Cluster(["gA", "gB"], shm_size=32 << 20) as c:
        print("demo: two guests (%s: %s), region %s (%d MiB), logs in %s"
              % (c.accel, c.accel_reason, c.shm_path, c.shm_size >> 20, vm.VMDIR))
        a, b = c["gA"], c["gB"]
        out = a.run("insmod /lib/modules/ivshmem_net.ko && dmesg | grep ivshmem_net", check=True).out
        show("gA: insmod ivshmem_net.ko", out)
        out = b.run("insmod /lib/modules/ivshmem_net.ko && dmesg | grep ivshmem_net", check=True).out
        show("gB: insmod ivshmem_net.ko", out)
        for g in (a, b):
            out = g.run("lspci -k 2>/dev/null || "
                        "for d in /sys/bus/pci/drivers/ivshmem_net/0000:*; do "
                        "echo \"$(basename $d) $(cat $d/vendor):$(cat $d/device) driver=ivshmem_net\"; done",
                        check=True).out
            show("%s: bound devices" % g.name, out)
        print("---- host: region header nonce %#018x, magic %r" % (c.region_nonce(), c.region_header()[:4]))
        if c.splats():
            print("demo: kernel warnings in guest logs: %s" % c.splats())
            return 1
    print("demo: done in %.1f s" % (time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
