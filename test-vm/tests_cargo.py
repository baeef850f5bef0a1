# SPDX-License-Identifier: GPL-2.0
"""The userspace-tools workspace's own tests, run by cargo: unit and integration tests and
doctests, the ivshmem-server test against real QEMU processes, and the loom models of the ring
(their own cfg and target directory). Each test here is one cargo run; it fails if any of
cargo's tests failed, and conftest.py counts cargo's tests one by one in the final
'N passed, N failed' line (`make test`)."""

import re
import subprocess
import time

import pytest

import vm
from vm import check

pytestmark = pytest.mark.cargo

TOOLS = vm.TOP / "userspace-tools"


def cargo(record_property, cmd, cwd=TOOLS, env=""):
    """Runs `cmd` (a cargo test command line) and records how many of cargo's tests passed and
    failed as the properties cargo_passed and cargo_failed; fails unless all passed."""
    start = time.time()
    p = subprocess.run("%s %s 2>&1" % (env, cmd), shell=True, cwd=cwd, capture_output=True,
                       text=True, timeout=1800)
    out = p.stdout
    passed = sum(int(m) for m in re.findall(r"test result: \w+\. (\d+) passed", out))
    failed = sum(int(m) for m in re.findall(r"(\d+) failed;", out))
    failures = re.findall(r"^test (\S+) \.\.\. FAILED$", out, re.M)
    if p.returncode != 0 and failed == 0:
        failed = 1  # it did not build, or cargo died: one failure
    record_property("cargo_passed", passed)
    record_property("cargo_failed", failed)
    print("    info: %s: %d passed, %d failed (%.1f s)" % (cmd, passed, failed, time.time() - start))
    check(failed == 0 and p.returncode == 0,
          "%s exited %d; failed: %s\n%s" % (cmd, p.returncode, ", ".join(failures) or "-",
                                              out[-4000:]))
    check(passed > 0, "%s ran no test:\n%s" % (cmd, out[-2000:]))


def test_cargo_workspace(record_property):
    cargo(record_property, "cargo test --workspace --release")


def test_cargo_ivshmem_server_qemu(record_property):
    cargo(record_property, "cargo test --release -p ivshmem-server --test qemu -- --ignored")


def test_cargo_loom(record_property):
    cargo(record_property, "cargo test --release --test loom", cwd=TOOLS / "protocol",
          env="CARGO_TARGET_DIR=../target/loom RUSTFLAGS='--cfg loom'")
