# SPDX-License-Identifier: GPL-2.0
"""In-guest tests of the foundation: binding, the shared region reaching the other VM,
unload/reload, and the probe error paths. Each test boots its own guests and asserts on what
the guests really printed and did, and on the region file as the host sees it."""

import re

import pytest

import vm

KO = "/lib/modules/ivshmem_net.ko"
BOUND = re.compile(
    r"ivshmem_net (\S+): bound: (plain|doorbell) mode, IVPosition (\d+), BAR2 (\d+) MiB "
    r"mapped write-back; layout v(\d+) (initialised|joined) \(nonce (0x[0-9a-f]+), (\d+) peers")


from vm import check, no_splats

pytestmark = pytest.mark.vm


def bound_lines(text):
    return [m.groups() for m in BOUND.finditer(text)]


def insmod(guest):
    return guest.run("insmod %s && dmesg" % KO, timeout=60, check=True).out


def test_two_guests_share_one_region():
    """Both guests bind; the CAS lets exactly one initialise the header, and the nonce it
    wrote through its mapping is what the other guest read through its own, and what the host
    reads from the region file."""
    with vm.Cluster(["gA", "gB"]) as c:
        outs = c.parallel(insmod)
        found = [bound_lines(o) for o in outs]
        for g, f in zip(c.guests, found):
            check(len(f) == 1, "%s: expected one 'bound' line, got %s" % (g.name, f))
        (_, mode_a, _, mib_a, ver_a, how_a, nonce_a, _), = found[0]
        (_, mode_b, _, mib_b, ver_b, how_b, nonce_b, _), = found[1]
        check(mode_a == mode_b == "plain", "expected plain mode: %s %s" % (mode_a, mode_b))
        check(mib_a == mib_b == "32", "BAR2 size: %s %s" % (mib_a, mib_b))
        check(ver_a == ver_b == "2", "layout version")
        check(sorted([how_a, how_b]) == ["initialised", "joined"],
              "exactly one guest must initialise: %s, %s" % (how_a, how_b))
        check(nonce_a == nonce_b, "guests disagree on the nonce: %s vs %s" % (nonce_a, nonce_b))
        host = c.region_nonce()
        check(int(nonce_a, 16) == host,
              "host reads nonce %#x from the region file, guests said %s" % (host, nonce_a))
        check(c.region_header()[:4] == b"IVNT", "region file has no IVNT magic")
        for g in c.guests:
            r = g.run("ls /sys/bus/pci/drivers/ivshmem_net/ | grep -c '^0000:'", check=True)
            check(r.out.strip() == "1", "%s: driver bound to %s devices" % (g.name, r.out.strip()))
        no_splats(c)


def test_rmmod_insmod_twice():
    """Unload unbinds and releases everything; a reload joins the same region again."""
    with vm.Cluster(["gA", "gB"]) as c:
        c.parallel(insmod)
        nonce = "%#018x" % c.region_nonce()
        a = c["gA"]
        for cycle in range(2):
            r = a.run("dmesg -c >/dev/null; rmmod ivshmem_net; "
                      "dmesg -c | grep -c 'unbound (32 MiB region released)'; "
                      "lsmod | grep -c ivshmem_net; ls /sys/bus/pci/drivers | grep -c ivshmem_net; "
                      "grep -c ivshmem_net /proc/iomem", timeout=30)
            counts = r.out.split()
            check(counts == ["1", "0", "0", "0"],
                  "cycle %d: after rmmod expected one unbind line, and module, driver and BAR "
                  "claims gone: %r" % (cycle, r.out))
            out = a.run("insmod %s && dmesg -c" % KO, timeout=30, check=True).out
            b = bound_lines(out)
            check(len(b) == 1 and b[0][5] == "joined" and b[0][6] == nonce,
                  "cycle %d: reload should join the region with nonce %s: %s" % (cycle, nonce, out))
            r = a.run("grep -c 'ivshmem_net' /proc/iomem", check=True)
            check(r.out.strip() == "2", "cycle %d: expected BAR0 and BAR2 claimed: %s" % (cycle, r.out))
        check(c.region_nonce() == int(nonce, 16), "region nonce changed by reloads")
        no_splats(c)


@pytest.mark.reliability
def test_no_device_and_bar2_too_small():
    """A guest without ivshmem loads the module and binds nothing; a guest whose BAR2 is
    4 KiB gets one clear probe error and -EINVAL, and the module stays loaded and unloadable."""
    guests = [{"name": "gNone", "ivshmem": None}, {"name": "gTiny", "ivshmem": 4096}]
    with vm.Cluster(guests) as c:
        none, tiny = c["gNone"], c["gTiny"]
        r = none.run("insmod %s && lsmod | grep -c '^ivshmem_net'; "
                     "ls /sys/bus/pci/drivers/ivshmem_net/ | grep -c '^0000:'; dmesg" % KO, timeout=30)
        lines = r.out.splitlines()
        check(lines[:2] == ["1", "0"], "no-device guest should load and bind nothing: %r" % r.out)
        check(not bound_lines(r.out), "no-device guest printed a bound line")

        r = tiny.run("insmod %s; echo rc=$?; dmesg; ls /sys/bus/pci/drivers/ivshmem_net/ "
                     "| grep -c '^0000:'; rmmod ivshmem_net && echo unloaded" % KO, timeout=30)
        check("rc=0" in r.out, "insmod should succeed even if probe fails: %r" % r.out)
        errs = re.findall(r"ivshmem_net \S+: BAR2 is 4 KiB; the layout needs at least 4 MiB "
                          r"of shared memory", r.out)
        check(len(errs) == 1, "expected one clear BAR2 error line, got %d:\n%s" % (len(errs), r.out))
        check(re.search(r"probe (of \S+|with driver ivshmem_net) failed with error -22", r.out),
              "driver core should report -EINVAL:\n%s" % r.out)
        check(not bound_lines(r.out), "tiny-BAR2 guest must not bind")
        check(r.out.rstrip().endswith("unloaded"), "module should unload cleanly: %r" % r.out)
        no_splats(c)


def test_interrupted_harness_leaves_nothing_behind():
    """^C (SIGINT) in the middle of a run kills every QEMU process of that run and removes its
    region files and sockets."""
    import os
    import signal
    import subprocess
    import sys
    import time
    script = (
        "import sys, time; sys.path.insert(0, %r); import vm\n"
        "vm.DEFAULT_KERNEL, vm.DEFAULT_INITRD, vm.DEFAULT_MEM_MB = %r, %r, %r\n"
        "c = vm.Cluster(['gX', 'gY']); c.start()\n"
        "print(c.tag, flush=True)\n"
        "time.sleep(600)\n" % (str(vm.TOP / "test-vm"), vm.DEFAULT_KERNEL and str(vm.DEFAULT_KERNEL),
                                vm.DEFAULT_INITRD and str(vm.DEFAULT_INITRD), vm.DEFAULT_MEM_MB))
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        tag = p.stdout.readline().strip()
        check(tag.startswith("ivnet-"), "harness child did not start its guests: %r" % tag)
        qemus = subprocess.run(["pgrep", "-f", "mem-path=/dev/shm/%s" % tag],
                               capture_output=True, text=True).stdout.split()
        check(len(qemus) >= 2, "expected the child's QEMU processes to run, found %s" % qemus)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    deadline = time.time() + 10
    while time.time() < deadline:
        left = subprocess.run(["pgrep", "-f", "mem-path=/dev/shm/%s" % tag],
                              capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.2)
    check(not left, "QEMU processes survived ^C: %s" % left)
    files = [f for f in os.listdir("/dev/shm") if f.startswith(tag)]
    check(not files, "region files survived ^C: %s" % files)
    socks = [f for f in os.listdir(vm.VMDIR) if f in ("gX.agent", "gY.agent")]
    check(not socks, "agent sockets survived ^C: %s" % socks)
