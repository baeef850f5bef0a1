# SPDX-License-Identifier: GPL-2.0
"""Host-side checks: the module's metadata and build log, where `unsafe` may appear and how it
is documented, the protocol's `core`-only rule, rustfmt and clippy, `make install` and a DKMS
build. No guest boots; conftest.py builds the module and tools first (`make module tools`)."""

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

import vm

pytestmark = pytest.mark.host

TOP = vm.TOP
Failed = vm.Failed
check = vm.check


def run_host(cmd, timeout=600, cwd=TOP):
    p = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def test_modinfo_pci_alias():
    rc, out = run_host("modinfo build/ivshmem_net.ko")
    check(rc == 0, "modinfo failed: %s" % out)
    check(re.search(r"^alias:\s+pci:v00001AF4d00001110sv\*sd\*bc\*sc\*i\*$", out, re.M),
          "no PCI alias for 1af4:1110 in modinfo:\n%s" % out)
    check(re.search(r"^license:\s+GPL$", out, re.M), "no GPL license in modinfo")


def test_module_built_without_warnings():
    log = (TOP / "build" / "module.log").read_text()
    bad = [l for l in log.splitlines() if re.search(r"\b(warning|error)\b", l, re.I)]
    check(not bad, "module build printed:\n" + "\n".join(bad[:20]))
    check("RUSTC [M]" in log or "LD [M]" in log or "MODPOST" in log or log.strip() == "",
          "module.log does not look like a kbuild log")


def test_unsafe_only_in_rust_dir():
    """The driver and the protocol are safe Rust; `unsafe` lives in rust/ only. Every file under
    ivshmem-net/ counts, in subdirectories too (protocol/, which the host crate compiles as well,
    and the driver's own modules)."""
    offenders = []
    for f in sorted((TOP / "ivshmem-net").rglob("*.rs")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if re.search(r"\bunsafe\b|\bbindings::|extern \"C\"", code):
                offenders.append("%s:%d: %s" % (f.relative_to(TOP), n, line.strip()))
    check(not offenders, "unsafe/bindings outside rust/:\n" + "\n".join(offenders))


def test_protocol_uses_core_only():
    """ivshmem-net/protocol/ is compiled into the kernel module and into the host crate
    ivshmem-net-protocol, so its code uses `core` and nothing else: no `std`, `alloc` or
    `kernel`, no kernel or heap types, and no `crate::` paths (the crate root differs between
    the two builds; the files reach each other through `super::`). Comments, doc examples
    included, are not code."""
    banned = (r"\b(std|alloc|kernel|bindings)::|\bextern\s+crate\b|\bcrate::"
              r"|\b(KVec|KBox|KVVec|VVec|Vec|Box|Arc|Rc|String|CString)\b"
              r"|\b(vec|format|print|println|eprintln|pr_\w+|dev_\w+)!")
    offenders = []
    files = sorted((TOP / "ivshmem-net" / "protocol").rglob("*.rs"))
    check(files, "no protocol sources under ivshmem-net/protocol/")
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if re.search(banned, code):
                offenders.append("%s:%d: %s" % (f.relative_to(TOP), n, line.strip()))
    check(not offenders, "beyond `core` in the protocol:\n" + "\n".join(offenders))


def test_unsafe_blocks_have_safety_comments():
    missing = []
    # rust/ and its subdirectories (rust/net/), except what bindgen generates.
    for f in sorted((TOP / "rust").rglob("*.rs")):
        rel = f.relative_to(TOP / "rust")
        if rel.parts[0] == "generated" or rel == Path("bindings.rs"):
            continue
        lines = f.read_text().splitlines()
        for n, line in enumerate(lines):
            code = line.split("//")[0]
            if re.search(r"\bunsafe\s*\{", code):
                window = "\n".join(lines[max(0, n - 8):n + 1])
                if "SAFETY:" not in window:
                    missing.append("%s:%d" % (f.relative_to(TOP), n + 1))
            if re.search(r"\bunsafe\s+(fn|extern)", code):
                window = "\n".join(lines[max(0, n - 12):n])
                # A method of an `unsafe impl` is documented by its trait.
                impl = next((l for l in reversed(lines[:n]) if re.match(r"^(unsafe )?impl\b", l)), "")
                if "# Safety" not in window and not impl.startswith("unsafe impl"):
                    missing.append("%s:%d (unsafe fn without # Safety)" % (f.relative_to(TOP), n + 1))
            if re.search(r"\bunsafe\s+impl", code):
                if "SAFETY:" not in "\n".join(lines[max(0, n - 3):n]):
                    missing.append("%s:%d (unsafe impl)" % (f.relative_to(TOP), n + 1))
    check(not missing, "unsafe without SAFETY comment:\n" + "\n".join(missing))


def test_rustfmt_clean():
    # Subdirectories included (rust/net/, ivshmem-net/netdev/), except what bindgen generates.
    files = [str(p) for p in sorted((TOP / "ivshmem-net").rglob("*.rs"))
             + sorted((TOP / "rust").rglob("*.rs"))
             if "generated" not in p.relative_to(TOP).parts]
    rc, out = run_host("rustfmt --edition 2021 --check --config max_width=100 %s" % " ".join(files))
    check(rc == 0, "rustfmt would change the kernel-side sources:\n%s" % out[-3000:])
    rc, out = run_host("cargo fmt --all -- --check", cwd=TOP / "userspace-tools")
    check(rc == 0, "cargo fmt would change userspace-tools:\n%s" % out[-3000:])


def test_clippy_userspace_tools():
    rc, out = run_host("cargo clippy -q --workspace --all-targets -- -D warnings",
                       cwd=TOP / "userspace-tools", timeout=900)
    check(rc == 0, "clippy:\n%s" % out[-4000:])


PCI_ALIAS_RE = r"^alias:\s+pci:v00001AF4d00001110sv\*sd\*bc\*sc\*i\*$"
# For makes run by a test: nothing inherited from a make that runs the tests (`make test`).
FRESH_MAKE_ENV = "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL"


def guest_kernel_release():
    return (TOP / "build" / "guest" / "kdir" / "include" / "config" / "kernel.release").read_text().strip()


def test_make_install():
    """`make install DESTDIR=...`: the module in lib/modules/<release>/updates, found by name
    through the modules.dep depmod wrote, and the modprobe.d example documenting every
    parameter the module declares, in the module's own words."""
    rel = guest_kernel_release()
    with tempfile.TemporaryDirectory(prefix="ivnet-install-") as d:
        dest = Path(d)
        rc, out = run_host("%s make --no-print-directory install DESTDIR=%s" % (FRESH_MAKE_ENV, dest))
        check(rc == 0, "make install failed (rc=%d):\n%s" % (rc, out[-3000:]))
        ko = dest / "lib" / "modules" / rel / "updates" / "ivshmem_net.ko"
        check(ko.is_file(), "no %s; installed:\n%s" % (ko, "\n".join(
            str(p.relative_to(dest)) for p in sorted(dest.rglob("*")))))
        check(ko.read_bytes() == (TOP / "build" / "ivshmem_net.ko").read_bytes(),
              "the installed module differs from build/ivshmem_net.ko")
        dep = (dest / "lib" / "modules" / rel / "modules.dep").read_text()
        check("updates/ivshmem_net.ko:" in dep, "depmod did not list the module:\n%s" % dep)
        # By name, as modprobe finds it: through the tree's modules.dep.
        rc, info = run_host("modinfo -b %s -k %s ivshmem_net" % (dest, rel))
        check(rc == 0, "modinfo by name in the installed tree failed:\n%s" % info)
        check(re.search(r"^filename:\s+%s$" % re.escape(str(ko)), info, re.M),
              "modinfo resolved another file:\n%s" % info)
        check(re.search(PCI_ALIAS_RE, info, re.M), "no PCI alias in modinfo:\n%s" % info)
        example = dest / "etc" / "modprobe.d" / "ivshmem-net.conf.example"
        check(example.is_file(), "no %s" % example)
        text = example.read_text()
        prose = " ".join(l.lstrip("#").strip() for l in text.splitlines() if l.startswith("#"))
        parms = re.findall(r"^parm:\s+(\w+):(.*) \((\w+)\)$", info, re.M)
        check({p[0] for p in parms} == {"id", "max_peers", "poll_ms", "poll_idle_ms", "poll_us",
                                        "queues", "rx_threads", "rx_spin", "transparent"},
              "unexpected parameters: %r" % parms)
        for name, desc, _ in parms:
            check("%s: %s" % (name, desc) in prose,
                  "the example does not document %s as the module does (%r)" % (name, desc))
            default = re.search(r"\(default (-?\d+)\)|(-?\d+) \(default\)", desc)
            # A string parameter whose default is empty gets an example value instead.
            value = next(g for g in default.groups() if g is not None) if default else r"\S+"
            check(re.search(r"^#options ivshmem_net %s=%s$" % (name, value), text, re.M),
                  "no commented-out 'options ivshmem_net %s=%s' line" % (name, value))
        # The file must change nothing while it is only an example.
        check(not re.search(r"^\s*options\b", text, re.M), "uncommented options line:\n%s" % text)


def test_dkms_build_install():
    """DKMS builds the module from `make dkms-source` against the guest kernel's build tree and
    installs it, all in a private tree (--dkmstree/--sourcetree/--installtree, no depmod), with
    bindgen found on PATH instead of in $IVNET_CACHE."""
    rel = guest_kernel_release()
    kdir = (TOP / "build" / "guest" / "kdir").resolve()
    version = re.search(r'^PACKAGE_VERSION="([^"]+)"$', (TOP / "dkms.conf").read_text(), re.M).group(1)
    netdev = (TOP / "ivshmem-net" / "netdev.rs").read_text()
    check('const VERSION: &CStr = c_str!("%s");' % version in netdev,
          "dkms.conf's PACKAGE_VERSION %s is not the version the driver reports" % version)
    with tempfile.TemporaryDirectory(prefix="ivnet-dkms-") as d:
        t = Path(d)
        rc, out = run_host("%s make --no-print-directory dkms-source DESTDIR=%s" % (FRESH_MAKE_ENV, t))
        check(rc == 0, "make dkms-source failed:\n%s" % out[-3000:])
        src = t / "usr" / "src" / ("ivshmem-net-%s" % version)
        check((src / "dkms.conf").is_file(), "no dkms.conf in %s" % src)
        check(not list(src.rglob("*.o")) and not (src / "rust" / "generated").exists(),
              "build products copied into the DKMS sources")
        (t / "var" / "lib" / "dkms").mkdir(parents=True)
        (t / "lib" / "modules" / rel).mkdir(parents=True)
        bindir = t / "bin"
        bindir.mkdir()
        (bindir / "bindgen").symlink_to(vm.CACHE / "tools" / "bindgen-0.69.5" / "bin" / "bindgen")
        trees = ("-m ivshmem-net -v %s -k %s --dkmstree %s/var/lib/dkms --sourcetree %s/usr/src "
                 "--installtree %s/lib/modules --kernelsourcedir %s" % (version, rel, t, t, t, kdir))
        env = "%s -u BINDGEN IVNET_CACHE=%s/no-cache PATH=%s:$PATH" % (FRESH_MAKE_ENV, t, bindir)
        rc, out = run_host("%s dkms build %s" % (env, trees), timeout=900)
        log = t / "var" / "lib" / "dkms" / "ivshmem-net" / version / "build" / "make.log"
        check(rc == 0, "dkms build failed (rc=%d):\n%s\n%s" % (
            rc, out[-2000:], log.read_text()[-3000:] if log.exists() else ""))
        built = t / "var" / "lib" / "dkms" / "ivshmem-net" / version / rel / os.uname().machine
        check((built / "module" / "ivshmem_net.ko").is_file(), "dkms kept no module in %s" % built)
        mlog = (built / "log" / "make.log").read_text()
        check("generating bindings" in mlog and "module: build/ivshmem_net.ko" in mlog,
              "the DKMS build did not run our module-build:\n%s" % mlog[-2000:])
        rc, out = run_host("%s dkms install --no-depmod %s" % (env, trees))
        check(rc == 0, "dkms install failed (rc=%d):\n%s" % (rc, out[-3000:]))
        ko = t / "lib" / "modules" / rel / "updates" / "dkms" / "ivshmem_net.ko"
        check(ko.is_file(), "dkms installed no %s:\n%s" % (ko, out[-2000:]))
        rc, info = run_host("modinfo %s" % ko)
        check(rc == 0 and re.search(PCI_ALIAS_RE, info, re.M), "no PCI alias in modinfo:\n%s" % info)
        check(re.search(r"^vermagic:\s+%s " % re.escape(rel), info, re.M),
              "vermagic is not %s:\n%s" % (rel, info))
        rc, out = run_host("dkms status --dkmstree %s/var/lib/dkms --sourcetree %s/usr/src "
                           "--installtree %s/lib/modules" % (t, t, t))
        check("ivshmem-net/%s, %s, " % (version, rel) in out and out.rstrip().endswith("installed"),
              "dkms status: %s" % out)
