# SPDX-License-Identifier: GPL-2.0
"""QEMU guests for ivshmem-net tests and demos.

A `Cluster` boots N guests that share one ivshmem region (a file under /dev/shm), each with a
serial console logged to build/vm/<name>.log and a second serial port on which the guest's
agent (test-vm/guest/agent) runs scripts the host sends and returns exit code and output.
Each guest also has a QMP socket; `Guest.qmp` talks to it through the QEMU project's own
library (`qemu.qmp`), for hot-unplugging and hot-plugging its ivshmem device.

Everything has a deadline: booting, each script, shutdown. QEMU processes die with this
process (PR_SET_PDEATHSIG) and run under `timeout` as a last resort; `Cluster.close()` (also
run from atexit and on SIGINT/SIGTERM) kills them and removes the region files and sockets.
"""

import asyncio
import atexit
import base64
import ctypes
import hashlib
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
BUILD = TOP / "build"
VMDIR = BUILD / "vm"
CACHE = Path(os.environ.get("IVNET_CACHE", "/var/cache/ivshmem-net"))

# Longest a QEMU process may live, whatever happens to this process.
QEMU_HARD_LIMIT_S = int(os.environ.get("IVNET_QEMU_LIMIT", "1800"))
# Kernel log lines that fail a test whenever they appear in a guest's console.
SPLAT = re.compile(
    r"(Oops|BUG:|WARNING:|Kernel panic|KASAN|kmemleak: .* new suspected|"
    r"possible recursive locking|circular locking|general protection fault|"
    r"Call Trace:|rust_panic|panicked at)"
)

_live = set()
_live_lock = threading.Lock()
# Called with each new Cluster: test-vm/conftest.py checks the consoles of every cluster a
# test started once the test is over.
CLUSTER_HOOKS = []


def _cleanup_all():
    with _live_lock:
        items = list(_live)
    for c in items:
        c.close()


atexit.register(_cleanup_all)


def _on_signal(signum, _frame):
    _cleanup_all()
    raise SystemExit(128 + signum)


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: QEMU gets SIGKILL if this harness dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass
    os.setsid()


def choose_accel(kernel, initrd):
    """TCG unless a real KVM boot of our own kernel reaches /init within 20 s.

    The result is cached per host kernel and guest kernel, so the probe costs its time once per
    machine. IVNET_ACCEL=tcg|kvm overrides it. Returns (accel, reason).
    """
    forced = os.environ.get("IVNET_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced, "IVNET_ACCEL=%s" % forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    key = hashlib.sha256(
        (os.uname().release + Path(kernel).read_bytes().hex()[:4096]).encode()
    ).hexdigest()[:16]
    memo = CACHE / "accel-probe" / key
    if memo.exists():
        accel, reason = memo.read_text().split("\n", 1)
        return accel, reason.strip() + " (cached probe)"
    VMDIR.mkdir(parents=True, exist_ok=True)
    log = VMDIR / "kvm-probe.log"
    cmd = ["timeout", "-s", "KILL", "20", "qemu-system-x86_64", "-accel", "kvm", "-m", "256",
           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "console=ttyS0 ivnet.name=kvmprobe panic=-1",
           "-serial", "file:%s" % log]
    start = time.time()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   preexec_fn=_die_with_parent)
    text = log.read_text(errors="replace") if log.exists() else ""
    if "init: kvmprobe up" in text:
        accel, reason = "kvm", "KVM booted the guest kernel to /init in %.1f s" % (time.time() - start)
    else:
        last = [l for l in text.splitlines() if l.strip()][-1:] or ["no console output"]
        accel, reason = "tcg", "KVM probe did not reach /init in 20 s (last line: %s)" % last[0][:80]
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text("%s\n%s" % (accel, reason))
    return accel, reason


class AgentError(Exception):
    pass


class Failed(Exception):
    """A test's assertion failed; the message says what the guest really did."""


def check(cond, msg):
    __tracebackhide__ = True  # pytest: report the test's line, not this one
    if not cond:
        raise Failed(msg)


def _tsc_args():
    """Kernel arguments that keep the guest on the TSC under TCG. The guest cannot calibrate
    it early (no PIT reply in time, no PM timer in this kernel; the HPET that ACPI shows it
    only refines the given rate later, by ~10 ppm here) and on a busy host the
    clocksource watchdog finds it "skewed" against jiffies; either way the guest clock then
    ticks in 1 ms steps, which voids every latency figure. QEMU's TCG TSC runs at the host's
    TSC rate, which a host with constant_tsc reports in /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        mhz = float(re.search(r"^cpu MHz\s*:\s*([0-9.]+)", info, re.M).group(1))
        if re.search(r"^flags\s*:.*\bconstant_tsc\b", info, re.M) and mhz > 0:
            return "tsc=reliable tsc_early_khz=%d" % round(mhz * 1000)
    except (OSError, AttributeError, ValueError):
        pass
    return "tsc=reliable"


def no_splats(cluster):
    """Fails the test if any guest console of `cluster` shows an oops, BUG, WARNING, KASAN,
    lockdep or kmemleak report."""
    s = cluster.splats()
    check(not s, "kernel warnings/oopses in guest consoles: %s" % s)


class Result:
    def __init__(self, rc, out):
        self.rc = rc
        self.out = out

    def __repr__(self):
        return "Result(rc=%d, out=%r)" % (self.rc, self.out[-500:])


class Qmp:
    """A QMP connection to one QEMU process, through `qemu.qmp`'s asyncio client running in a
    thread of its own, so that any test thread can call it. Every DEVICE_DELETED event is
    kept from the moment of connecting, so none is missed between a command and the wait
    for it."""

    def __init__(self, path, name, timeout=10):
        try:
            from qemu.qmp import EventListener, QMPClient
        except ImportError as e:
            raise AgentError("QMP needs the qemu.qmp package for %s: run 'make deps' (%s)"
                             % (sys.executable, e)) from e
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="qmp-%s" % name)
        self.thread.start()
        self.client = QMPClient(name)
        self.deleted = None

        async def connect():
            self.deleted = EventListener(("DEVICE_DELETED",))
            self.client.register_listener(self.deleted)
            await self.client.connect(str(path))

        try:
            self._call(connect(), timeout)
        except BaseException:
            self.close()
            raise

    def _call(self, coro, timeout):
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        try:
            return fut.result(timeout + 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise AgentError("%s: QMP: no answer within %.0f s" % (self.name, timeout))

    def cmd(self, name, timeout=10, **args):
        """Executes QMP command `name` with `args` (names with a '-': `**{"qom-type": ..}`);
        returns its return value; an error reply raises qemu.qmp.ExecuteError."""
        return self._call(self.client.execute(name, args or None), timeout)

    def getfd(self, fd, name, timeout=10):
        """Passes file descriptor `fd` to QEMU (SCM_RIGHTS), which keeps it open as `name`."""
        async def send():
            self.client.send_fd_scm(fd)
            return await self.client.execute("getfd", {"fdname": name})

        return self._call(send(), timeout)

    def wait_deleted(self, dev_id, timeout):
        """Waits for DEVICE_DELETED of `dev_id` (the guest ejected it); returns the event."""
        async def wait():
            while True:
                ev = await self.deleted.get()
                if ev.get("data", {}).get("device") == dev_id:
                    return ev

        try:
            return self._call(wait(), timeout)
        except AgentError:
            raise AgentError("%s: no DEVICE_DELETED for %s within %.0f s (the guest did not "
                             "eject it)" % (self.name, dev_id, timeout))

    def close(self):
        if self.loop.is_closed():
            return
        if self.client.runstate.name != "IDLE":
            try:
                self._call(self.client.disconnect(), 5)
            except Exception:  # QEMU already gone: nothing to say goodbye to
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Guest:
    """One QEMU guest. Built by `Cluster`; use `run()` to execute shell scripts inside."""

    def __init__(self, cluster, name, ivshmem, mem_mb, extra_args, plain=False, cmdline="",
                 netns=None, taps=(), vcpus=1, master=False):
        self.cluster = cluster
        # ivshmem's master=on: QEMU migrates the region's contents with the guest (the
        # default, off, refuses to migrate while the device is attached).
        self.master = master
        self.migrations = 0  # live migrations done (`migrate_to`): this QEMU is the n-th
        self.vcpus = vcpus  # virtual CPUs (the guest kernel brings each up from ACPI's MADT)
        self.netns = netns  # run QEMU inside this network namespace (ip netns exec)
        self.taps = list(taps)  # [(ifname, mac[, queue pairs])]: a virtio-net NIC on each tap
        self.cmdline = cmdline  # extra kernel command line
        self.plain = plain  # ivshmem-plain on the shared region even in a doorbell cluster
        self.name = name
        self.ivshmem = ivshmem  # None, or (path, size_bytes)
        self.mem_mb = mem_mb
        self.extra_args = extra_args
        self.log = VMDIR / ("%s.log" % name)
        self.sock_path = VMDIR / ("%s.agent" % name)
        self.qmp_path = VMDIR / ("%s.qmp" % name)
        self._qmp = None
        # QEMU ids of the ivshmem device and of its backend (memory-backend-file or chardev);
        # None once hot-unplugged. Each hot-plug names them afresh (ivshmem1, shm1/ivs1, ...).
        self.ivshmem_id = self.ivshmem_backend = None
        self.hotplugs = 0
        self.hold_pipe = None  # see _hold_freed_fds
        self.held_fds = 0
        self.proc = None
        self.sock = None
        self.buf = b""
        self.seq = 0
        self.lock = threading.Lock()

    def _ivshmem_args(self, dev_id, backend, path=None, size=None, server=None, addr=None):
        """QEMU arguments for an ivshmem device `dev_id` with backend `backend`: ivshmem-plain
        on the file `path` of `size` bytes, or with `server=(socket, vectors)`
        ivshmem-doorbell connected to that ivshmem-server; at PCI slot `addr` if given."""
        extra = (",master=on" if self.master else "") + (",addr=%02x.0" % addr if addr else "")
        if server is not None:
            sock, vectors = server
            return ["-chardev", "socket,path=%s,id=%s" % (sock, backend),
                    "-device", "ivshmem-doorbell,chardev=%s,vectors=%d,id=%s%s"
                    % (backend, vectors, dev_id, extra)]
        return ["-object", "memory-backend-file,id=%s,mem-path=%s,size=%d,share=on"
                % (backend, path, size),
                "-device", "ivshmem-plain,memdev=%s,id=%s%s" % (backend, dev_id, extra)]

    def qemu_cmd(self, incoming=None, ivshmem=None, slots=None):
        """QEMU's command line: the guest as configured, or with `incoming` (a QEMU
        `-incoming` URI) the destination of a migration of it (`migrate_to`): console appended
        to the same log, the ivshmem device (if one is attached now) on `ivshmem`
        (`{"path", "size"}` or `{"server"}`), each device at the PCI slot `slots` gives its
        QEMU id, as on the source."""
        c = self.cluster
        slots = slots or {}
        cmd = ["timeout", "-s", "KILL", str(QEMU_HARD_LIMIT_S),
               "qemu-system-x86_64", "-accel", c.accel, "-m", str(self.mem_mb), "-smp", str(self.vcpus),
               "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
               "-kernel", str(c.kernel), "-initrd", str(c.initrd),
               # no_timer_check: under TCG on a loaded host the boot-time check that the
               # 8254 timer ticks through the IO-APIC can see too few ticks in its short TSC
               # delay and panics ("IO-APIC + timer doesn't work!"), as it once did in
               # `make test`; the timer works, the check is what hypervisors' guests skip.
               "-append", "console=ttyS0 ivnet.name=%s panic=-1 quiet loglevel=6 no_timer_check "
               "%s %s" % (self.name, _tsc_args(), self.cmdline),
               "-chardev", "file,id=con,path=%s%s" % (self.log, ",append=on" if incoming else ""),
               "-serial", "chardev:con",
               "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % self.sock_path,
               "-serial", "chardev:agent",
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if c.accel == "tcg":
            # Guests share memory with other QEMU processes, so TCG must emit the guest's
            # memory barriers and atomic instructions as such. It does that only in parallel
            # mode: multi-threaded TCG with more than one possible vCPU (maxcpus at least 2;
            # a 1-vCPU guest runs one). Single-threaded TCG drops barriers and makes cmpxchg
            # non-atomic, which loses wake-ups across VMs (the ring's event index relies on
            # store-fence-load).
            cmd[cmd.index("-accel") + 1] = "tcg,thread=multi"
            cmd[cmd.index("-smp") + 1] = "%d,maxcpus=%d" % (self.vcpus, max(self.vcpus, 2))
        if incoming is not None:
            if self.ivshmem_id is not None:
                cmd += self._ivshmem_args(self.ivshmem_id, self.ivshmem_backend,
                                          addr=slots.get(self.ivshmem_id), **ivshmem)
        elif c.doorbell is not None and self.ivshmem is not None and not self.plain:
            # ivshmem-doorbell: memory and eventfds come from an ivshmem-server on a socket.
            cmd += self._ivshmem_args("ivshmem0", "ivs", server=c.doorbell)
            self.ivshmem_id, self.ivshmem_backend = "ivshmem0", "ivs"
        elif self.ivshmem is not None:
            path, size = self.ivshmem
            cmd += self._ivshmem_args("ivshmem0", "shm", path=path, size=size)
            self.ivshmem_id, self.ivshmem_backend = "ivshmem0", "shm"
        for i, tap in enumerate(self.taps):
            # QEMU's userspace virtio-net backend (vhost off) on a tap device that must exist
            # (in `netns` if given); the guest sees it as eth<i>. A third element asks for
            # that many queue pairs (mq=on; the tap must be multi_queue, see bench.Netns).
            ifname, mac = tap[:2]
            pairs = tap[2] if len(tap) > 2 else 1
            nic = "nic%d" % i
            cmd += ["-netdev", "tap,id=n%d,ifname=%s,script=no,downscript=no,vhost=off%s"
                    % (i, ifname, ",queues=%d" % pairs if pairs > 1 else ""),
                    "-device", "virtio-net-pci,netdev=n%d,mac=%s,id=%s%s%s"
                    % (i, mac, nic, ",mq=on,vectors=%d" % (2 * pairs + 2) if pairs > 1 else "",
                       ",addr=%02x.0" % slots[nic] if nic in slots else "")]
        if incoming is not None:
            cmd += ["-incoming", incoming]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd + list(self.extra_args)

    def start(self):
        VMDIR.mkdir(parents=True, exist_ok=True)
        for p in (self.log, self.sock_path, self.qmp_path):
            if p.exists():
                p.unlink()
        self.log.touch()
        self.buf = b""
        self.proc = subprocess.Popen(self.qemu_cmd(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(VMDIR / ("%s.qemu.err" % self.name), "wb"),
                                     preexec_fn=_die_with_parent)

    def _connect(self, deadline):
        while time.time() < deadline:
            if self.proc.poll() is not None:
                try:
                    console = Path(self.log).read_text(errors="replace")[-1500:]
                except OSError:
                    console = ""
                raise AgentError("%s: QEMU exited with %s: %s\nconsole:\n%s" % (
                    self.name, self.proc.returncode, self.qemu_stderr(), console))
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.sock_path))
                self.sock = s
                return
            except OSError:
                s.close()
                time.sleep(0.05)
        raise AgentError("%s: agent socket never appeared" % self.name)

    def qemu_stderr(self):
        """The end of the current QEMU process's stderr."""
        n = self.migrations
        p = VMDIR / ("%s%s.qemu.err" % (self.name, ".m%d" % n if n else ""))
        return p.read_text(errors="replace").strip()[-500:] if p.exists() else ""

    def _readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise AgentError("%s: timed out waiting for the agent" % self.name)
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise AgentError("%s: QEMU exited (%s)" % (self.name, self.proc.returncode))
                continue
            if not chunk:
                raise AgentError("%s: agent connection closed (guest died?)" % self.name)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip("\r")

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        self._connect(deadline)
        # Bytes sent to the port before the host connected are lost, so ask until answered.
        while True:
            try:
                self.sock.sendall(b"@@HELLO\n")
            except socket.timeout:
                # Nobody reads the port yet (a slow boot) and its buffer is full: a torn hello
                # is only a line the agent ignores, so wait and ask again.
                if time.time() >= deadline:
                    raise AgentError("%s: timed out waiting for the agent" % self.name)
                continue
            try:
                line = self._readline(min(deadline, time.time() + 0.5))
            except AgentError:
                if time.time() >= deadline:
                    raise
                continue
            if line.startswith("@@READY"):
                # Drain the answers to earlier hellos.
                self.buf = b""
                return

    def run(self, script, timeout=60, check=False):
        """Runs `script` with /bin/sh in the guest; returns Result(rc, output)."""
        with self.lock:
            self.seq += 1
            job = "%s-%d" % (self.name, self.seq)
            body = base64.encodebytes(script.encode()).decode()
            self.sock.sendall(("@@RUN %s\n%s@@END\n" % (job, body)).encode())
            deadline = time.time() + timeout
            while True:
                line = self._readline(deadline)
                m = re.match(r"@@OUT (\S+) (\d+)$", line)
                if m and m.group(1) == job:
                    rc = int(m.group(2))
                    break
            out = []
            while True:
                line = self._readline(deadline)
                if line == "@@DONE %s" % job:
                    break
                out.append(line)
            text = base64.b64decode("".join(out)).decode(errors="replace")
        res = Result(rc, text)
        if check and rc != 0:
            raise AgentError("%s: script failed (rc=%d): %s\n--- output ---\n%s" % (
                self.name, rc, script.strip()[:200], text[-2000:]))
        return res

    def console(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def qmp(self):
        """This guest's QMP connection (`Qmp`), made on first use."""
        if self._qmp is None:
            self._qmp = Qmp(self.qmp_path, self.name)
        return self._qmp

    def device_del(self, dev_id, timeout=60):
        """Hot-unplugs device `dev_id` (QMP device_del: an ACPI eject request to the guest) and
        waits for QEMU's DEVICE_DELETED, sent once the guest's driver has let go and the guest
        ejected the slot. Returns the seconds from the command to the event (host clock)."""
        t0 = time.time()
        self.qmp.cmd("device_del", id=dev_id)
        self.qmp.wait_deleted(dev_id, timeout)
        return time.time() - t0

    def qemu_pid(self):
        """The QEMU process's pid (`proc` runs it under `timeout`, maybe under `ip netns
        exec`), or None."""
        pid = self.proc.pid
        for _ in range(4):
            try:
                if "qemu-system" in os.readlink("/proc/%d/exe" % pid):
                    return pid
                children = Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()
            except OSError:
                return None
            if not children:
                return None
            pid = int(children[0])
        return None

    def _hold_freed_fds(self, pid, freed):
        """Works around a QEMU bug (7.2 here; upstream's hw/misc/ivshmem.c unchanged): without
        KVM's irqfd (under TCG) ivshmem-doorbell watches its own vectors' eventfds with
        qemu_set_fd_handler and never removes those handlers when the device goes, only
        closes the eventfds. A file QEMU opens later under the same number wakes the stale
        handler, which reads the freed device: QEMU segfaulted in ivshmem_vector_notify when
        a device_add'ed device rang a peer whose eventfd got such a number. So the numbers
        the unplug freed are filled with ends of a pipe nobody writes to (QMP getfd: QEMU
        keeps them open; the kernel gives out the lowest free number first), and never
        wake anything."""
        if self.hold_pipe is None:
            self.hold_pipe = os.pipe()
        for _ in range(64):
            fds = set(os.listdir("/proc/%d/fd" % pid))
            if freed <= fds:
                return
            self.held_fds += 1
            self.qmp.getfd(self.hold_pipe[0], "ivnet-hold%d" % self.held_fds)
        raise AgentError("%s: QEMU's freed file descriptors %s not all filled after 64 getfd"
                         % (self.name, sorted(freed - fds)))

    def ivshmem_detach(self, timeout=60):
        """Hot-unplugs the ivshmem device, then removes its backend: the memory backend
        (ivshmem-plain), or the chardev to the ivshmem-server (doorbell), whose connection
        closes, so that the server frees the VM ID and tells the other peers this one left.
        Returns the seconds from device_del to DEVICE_DELETED."""
        check(self.ivshmem_id is not None, "%s: no ivshmem device to detach" % self.name)
        doorbell = self.ivshmem_backend.startswith("ivs")
        pid = self.qemu_pid() if doorbell else None
        before = set(os.listdir("/proc/%d/fd" % pid)) if pid else set()
        took = self.device_del(self.ivshmem_id, timeout)
        if doorbell:
            if pid:
                self._hold_freed_fds(pid, before - set(os.listdir("/proc/%d/fd" % pid)))
            self.qmp.cmd("chardev-remove", id=self.ivshmem_backend)
        else:
            self.qmp.cmd("object-del", id=self.ivshmem_backend)
        self.ivshmem_id = self.ivshmem_backend = None
        return took

    def ivshmem_attach(self, path=None, size=None, server=None):
        """Hot-plugs a new ivshmem device: ivshmem-plain on the file `path` of `size` bytes,
        or with `server=(socket path, vectors)` ivshmem-doorbell connected to that
        ivshmem-server. Returns the new device's QEMU id."""
        check(self.ivshmem_id is None, "%s: ivshmem device %s still attached"
              % (self.name, self.ivshmem_id))
        self.hotplugs += 1
        n = self.hotplugs
        dev = "ivshmem%d" % n
        if server is not None:
            sock, vectors = server
            backend = "ivs%d" % n
            self.qmp.cmd("chardev-add", id=backend, backend={
                "type": "socket",
                "data": {"addr": {"type": "unix", "data": {"path": str(sock)}}, "server": False}})
            self.qmp.cmd("device_add", driver="ivshmem-doorbell", id=dev, chardev=backend,
                         vectors=vectors)
        else:
            backend = "shm%d" % n
            self.qmp.cmd("object-add", **{"qom-type": "memory-backend-file", "id": backend,
                                          "mem-path": str(path), "size": size, "share": True})
            self.qmp.cmd("device_add", driver="ivshmem-plain", id=dev, memdev=backend)
        self.ivshmem_id, self.ivshmem_backend = dev, backend
        return dev

    def pci_slots(self):
        """{QEMU device id: PCI slot} of the devices on bus 0 that have an id (QMP query-pci)."""
        return {d["qdev_id"]: d["slot"] for bus in self.qmp.cmd("query-pci")
                for d in bus["devices"] if d.get("qdev_id")}

    def migrate_to(self, taps=None, ivshmem=None, timeout=300, max_bandwidth=1 << 30,
                   paused=False):
        """Live-migrates this guest (QMP `migrate`) to a new QEMU process on this machine,
        started with `-incoming defer` and the same devices at the same PCI slots as the
        source has now, and follows it there: from then on this Guest's process, pid, QMP
        connection and agent connection are the destination's, and its console log goes on in
        the same file. `taps` replaces the NICs' [(tap ifname, MAC)] (new taps, which must
        exist, on the same segment; the guest's MAC must stay the same); `ivshmem` is where the
        destination's ivshmem device (only if one is attached now: with master=off QEMU
        refuses to migrate one, detach it first) gets its region: {"path", "size"} or
        {"server": (socket, vectors)}. `max_bandwidth` (bytes/s) lifts QEMU's default cap.
        With `paused` the destination starts with -S and stays paused once the migration
        completed, until `resume()` (QMP `cont`), e.g. to look at its region first.

        Returns what the source's query-migrate said once the migration completed (with
        `downtime` in ms: how long the guest was paused for the switch-over, as QEMU
        reports it, and `total-time`) plus `completed_at`, the host time at which the
        completion was seen, and (unless `paused`) `agent_s`, the seconds from there until
        the guest's agent answered on the destination."""
        check(self.ivshmem_id is None or ivshmem is not None,
              "%s: migrating with ivshmem device %s attached needs its destination region"
              % (self.name, self.ivshmem_id))
        n = self.migrations + 1
        if taps is not None:
            check([t[1] for t in taps] == [t[1] for t in self.taps],
                  "%s: the destination NICs must keep the MACs %s" % (self.name, self.taps))
        slots = self.pci_slots()
        old = {"proc": self.proc, "sock": self.sock, "qmp": self.qmp, "taps": self.taps,
               "sock_path": self.sock_path, "qmp_path": self.qmp_path,
               "hold_pipe": self.hold_pipe}
        uri = "unix:%s" % (VMDIR / ("%s.m%d.migrate" % (self.name, n)))
        self.taps = list(taps) if taps is not None else self.taps
        self.sock_path = VMDIR / ("%s.m%d.agent" % (self.name, n))
        self.qmp_path = VMDIR / ("%s.m%d.qmp" % (self.name, n))
        for p in (self.sock_path, self.qmp_path, Path(uri[5:])):
            if p.exists():
                p.unlink()
        cmd = self.qemu_cmd(incoming="defer", ivshmem=ivshmem, slots=slots)
        if paused:
            cmd.append("-S")
        dest = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(VMDIR / ("%s.m%d.qemu.err" % (self.name, n)), "wb"),
                                preexec_fn=_die_with_parent)
        # From here on the destination is ours: Cluster.close() kills it whatever happens.
        self.proc, self.sock, self._qmp, self.buf = dest, None, None, b""
        self.migrations = n
        try:
            deadline = time.time() + 30
            while not self.qmp_path.exists():
                if dest.poll() is not None or time.time() > deadline:
                    raise AgentError("%s: the destination QEMU did not start (%s): %s"
                                     % (self.name, dest.returncode, self.qemu_stderr()))
                time.sleep(0.05)
            self.qmp.cmd("migrate-incoming", uri=uri)
            src = old["qmp"]
            src.cmd("migrate-set-parameters", **{"max-bandwidth": max_bandwidth})
            src.cmd("migrate", uri=uri)
            deadline = time.time() + timeout
            while True:
                info = src.cmd("query-migrate")
                status = info.get("status")
                if status == "completed":
                    break
                if status in ("failed", "cancelled") or time.time() > deadline:
                    raise AgentError("%s: migration %s: %s; destination: %s"
                                     % (self.name, status if status != "active" else
                                        "not done in %d s" % timeout, info,
                                        self.qemu_stderr()))
                time.sleep(0.05)
            info["completed_at"] = time.time()
            # The source stays paused (postmigrate) until told to quit.
            try:
                src.cmd("quit")
            except Exception:  # it may close the connection before answering
                pass
            try:
                old["proc"].wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(old["proc"].pid, signal.SIGKILL)
                old["proc"].wait(timeout=10)
            if not paused:
                self.wait_ready(60)
                info["agent_s"] = time.time() - info["completed_at"]
        except BaseException:
            # Leave nothing running that Cluster.close() would not find: the source too.
            if old["proc"].poll() is None:
                try:
                    os.killpg(old["proc"].pid, signal.SIGKILL)
                except OSError:
                    pass
            raise
        finally:
            if old["qmp"] is not None:
                old["qmp"].close()
            if old["sock"] is not None:
                old["sock"].close()
            if old["hold_pipe"] is not None and old["proc"].poll() is not None:
                for fd in old["hold_pipe"]:
                    os.close(fd)
                self.hold_pipe, self.held_fds = None, 0
            for p in (old["sock_path"], old["qmp_path"], Path(uri[5:])):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        return info

    def resume(self, timeout=60):
        """Lets a guest paused by `migrate_to(paused=True)` run (QMP `cont`) and waits for its
        agent."""
        self.qmp.cmd("cont")
        self.wait_ready(timeout)

    def splats(self):
        return [l for l in self.console().splitlines() if SPLAT.search(l)]

    def poweroff(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            if self.sock:
                self.sock.sendall(b"@@POWEROFF\n")
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.sock:
            self.sock.close()
            self.sock = None
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.hold_pipe is not None and (self.proc is None or self.proc.poll() is not None):
            for fd in self.hold_pipe:
                os.close(fd)
            self.hold_pipe = None


# What `Cluster(doorbell="default")` means: None for ivshmem-plain, N for ivshmem-doorbell with
# N vectors. The test runner switches it to run the same tests in both modes.
DEFAULT_DOORBELL = None
# Kernel and initramfs for clusters that do not name theirs; the runner's `--kernel debug`
# points them at the debug variant (`make initramfs-debug`).
DEFAULT_KERNEL = None
DEFAULT_INITRD = None
# Guest memory unless a guest spec names it; the debug kernel needs more (KASAN shadow,
# kmemleak and lockdep tables).
DEFAULT_MEM_MB = 256
# The runner's `--kernel debug`: guests run KASAN, kmemleak and lockdep, several times slower
# (TCP a few hundred KB/s under TCG); tests that move tens of MiB move less there.
DEBUG_KERNEL = False


class Cluster:
    """N guests sharing one ivshmem-plain region.

    `guests` is a list of names, or of dicts {"name", "ivshmem": "shared"|"plain-shared"|None|
    size_bytes ("plain-shared": ivshmem-plain on the shared region even with `doorbell`),
    "cmdline": extra kernel command line,
    "netns": run QEMU in that network namespace, "taps": [(tap ifname, MAC[, queue pairs])]
    virtio-net NICs,
    "mem_mb", "vcpus" (default 1), "master" (ivshmem master=on), "args"}; a size gives that guest a private region of its own. With
    `doorbell=N` the shared guests use ivshmem-doorbell with N vectors instead of ivshmem-plain:
    the cluster runs our ivshmem-server (build/bin) for them, whose shared memory is the same
    /dev/shm file `shm_path` names; `doorbell=(socket_path, N)` uses a server already
    listening there instead.
    `region_init` (bytes) is written at the start of the shared region file before the guests
    boot (the file is then sized to `shm_size`), e.g. a header some other peer left there.
    """

    def __init__(self, guests=("gA", "gB"), shm_size=32 << 20, kernel=None, initrd=None,
                 boot_timeout=90, doorbell="default", region_init=None):
        if doorbell == "default":
            doorbell = DEFAULT_DOORBELL
        self.server = None
        self.server_log = None
        self.doorbell = doorbell
        self.region_init = region_init
        self.kernel = Path(kernel or DEFAULT_KERNEL or BUILD / "guest" / "bzImage")
        self.initrd = Path(initrd or DEFAULT_INITRD or BUILD / "initramfs.cpio.gz")
        for p in (self.kernel, self.initrd):
            if not p.exists():
                raise FileNotFoundError("%s missing: run 'make %s'"
                                        % (p, "initramfs-debug" if DEBUG_KERNEL else "initramfs"))
        self.accel, self.accel_reason = choose_accel(self.kernel, self.initrd)
        self.tag = "ivnet-%d-%s" % (os.getpid(), secrets.token_hex(3))
        self.shm_path = Path("/dev/shm") / self.tag
        self.shm_size = shm_size
        self.boot_timeout = boot_timeout
        self.files = [self.shm_path]
        self.guests = []
        for g in guests:
            spec = {"name": g} if isinstance(g, str) else dict(g)
            iv = spec.get("ivshmem", "shared")
            plain = iv == "plain-shared"
            if iv in ("shared", "plain-shared"):
                iv = (self.shm_path, shm_size)
            elif isinstance(iv, int):
                private = Path("/dev/shm") / ("%s-%s" % (self.tag, spec["name"]))
                self.files.append(private)
                iv = (private, iv)
            self.guests.append(Guest(self, spec["name"], iv, spec.get("mem_mb", DEFAULT_MEM_MB),
                                     spec.get("args", []), plain, spec.get("cmdline", ""),
                                     spec.get("netns"), spec.get("taps", ()),
                                     spec.get("vcpus", 1), spec.get("master", False)))
        self.closed = False
        # The console lines matching SPLAT when the cluster was closed (its guests shut down).
        self.splats_at_close = None
        with _live_lock:
            _live.add(self)
        for hook in CLUSTER_HOOKS:
            hook(self)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            # __exit__ runs only once __enter__ has returned: stop the guests already booted.
            self.close()
            raise
        return self

    def __exit__(self, etype, err, tb):
        if err is not None and type(err).__name__ in ("Failed", "AgentError") and err.args:
            diag = self.diagnostics()
            if diag:
                err.args = ("%s\n%s" % (err.args[0], diag),) + tuple(err.args[1:])
        self.close()

    def diagnostics(self):
        """What a failed test's guests say about ivshmem-net: the driver's last log lines and
        its nonzero counters, from each guest still answering (a few seconds each at most)."""
        out = []
        script = ("dmesg | grep -E 'ivshm|ivshmem_net' | tail -n 12; "
                  "ethtool -S ivshm0 2>/dev/null | grep -vE ': 0$|statistics' | tr -s ' ' | "
                  "tr '\\n' ' '")
        for g in self.guests:
            if g.proc is None or g.proc.poll() is not None:
                continue
            try:
                r = g.run(script, timeout=8)
            except Exception as e:  # a wedged or dead agent: say so and go on
                out.append("--- %s: no diagnostics (%s)" % (g.name, str(e).splitlines()[0][:100]))
                continue
            out.append("--- %s (driver log, nonzero counters):\n%s" % (g.name, r.out.strip()[-2500:]))
        return "\n".join(out)

    def __getitem__(self, i):
        if isinstance(i, str):
            return next(g for g in self.guests if g.name == i)
        return self.guests[i]

    def start_server(self):
        """Starts build/bin/ivshmem-server for `doorbell=N` (foreground, dies with us)."""
        vectors = self.doorbell
        sock = VMDIR / ("%s.ivshmem.sock" % self.tag)
        VMDIR.mkdir(parents=True, exist_ok=True)
        self.server_log = VMDIR / ("%s.ivshmem-server.log" % self.tag)
        cmd = ["timeout", "-s", "KILL", str(QEMU_HARD_LIMIT_S), str(BUILD / "bin" / "ivshmem-server"),
               "-F", "-v", "-S", str(sock), "-M", self.tag, "-l", str(self.shm_size),
               "-n", str(vectors), "--max-clients", "8"]
        self.server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=open(self.server_log, "wb"),
                                       preexec_fn=_die_with_parent)
        deadline = time.time() + 10
        while not sock.exists():
            if self.server.poll() is not None or time.time() > deadline:
                raise AgentError("ivshmem-server did not start: %s"
                                 % self.server_log.read_text(errors="replace")[-500:])
            time.sleep(0.02)
        self.files.append(sock)
        self.doorbell = (sock, vectors)

    def stop_server(self):
        """Stops the server (SIGTERM: it removes its socket and the memory it created)."""
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()

    def start(self):
        if isinstance(self.doorbell, int):
            self.start_server()
        if self.region_init is not None:
            with open(self.shm_path, "wb") as f:
                f.write(self.region_init)
                f.truncate(self.shm_size)
        # QEMU refuses an ivshmem-doorbell master=on device whose VM ID is not 0 ("master must
        # connect to the server before any peers"): such a guest starts alone, the others once
        # the server has counted it (booting them together lost that race 1 time in 4).
        first = [g for g in self.guests if g.master and self.server is not None]
        for g in first:
            g.start()
        if first:
            self.wait_server_clients(len(first))
        for g in self.guests:
            if g not in first:
                g.start()
        for g in self.guests:
            g.wait_ready(self.boot_timeout)

    def wait_server_clients(self, n, timeout=30):
        """Waits until our ivshmem-server's log says `n` clients are connected."""
        deadline = time.time() + timeout
        while True:
            counts = re.findall(r"; (\d+) connected", self.server_log.read_text(errors="replace"))
            if counts and int(counts[-1]) >= n:
                return
            if time.time() > deadline:
                raise AgentError("ivshmem-server: %d clients not connected within %d s: %s"
                                 % (n, timeout, self.server_log.read_text(errors="replace")[-500:]))
            time.sleep(0.05)

    def parallel(self, fn, guests=None):
        """Runs fn(guest) for each guest in its own thread; returns the results in order."""
        guests = self.guests if guests is None else guests
        results = [None] * len(guests)
        errors = []

        def work(i, g):
            try:
                results[i] = fn(g)
            except Exception as e:  # re-raised below, in the caller's thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i, g)) for i, g in enumerate(guests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def region_header(self):
        """The first 4 KiB of the shared region file, as the host sees it."""
        with open(self.shm_path, "rb") as f:
            return f.read(4096)

    def region_bytes(self):
        """The whole shared region file, as the host sees it."""
        with open(self.shm_path, "rb") as f:
            return f.read()

    def region_nonce(self):
        lo, hi = struct.unpack_from("<II", self.region_header(), 0x38)
        return lo | hi << 32

    def splats(self):
        return {g.name: g.splats() for g in self.guests if g.splats()}

    def close(self):
        if self.closed:
            return
        self.closed = True
        for g in self.guests:
            g.poweroff(timeout=5)
        for g in self.guests:
            g.kill()
        # Only guests that started: a console file of a guest that never did is another's.
        self.splats_at_close = {g.name: g.splats() for g in self.guests
                                if g.proc is not None and g.splats()}
        self.stop_server()
        for p in self.files:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        for g in self.guests:
            for p in (g.sock_path, g.qmp_path):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
        with _live_lock:
            _live.discard(self)
