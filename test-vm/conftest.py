# SPDX-License-Identifier: GPL-2.0
"""pytest configuration for ivshmem-net's tests (pytest.ini at the top names the files).

- Markers: `host` (tests_host.py), `cargo` (tests_cargo.py), `vm` (the in-guest tests),
  `reliability` (the VM tests `make test-reliability` runs long on the debug kernel), `bench`
  (tests_bench.py); `plain` and `doorbell` for the two variants of a VM test.
- Variants: a VM test runs once per mode in its `modes` attribute (`("plain",)` unless it says
  otherwise): `test_x[plain]` with ivshmem-plain (polling), `test_x[doorbell]` with
  ivshmem-doorbell through our ivshmem-server (MSI-X interrupts), chosen through
  `vm.DEFAULT_DOORBELL` for the clusters the test starts. Every polling variant runs before
  every doorbell one, so the shared pair of tests_datapath.py is booted once per mode.
- `--kernel debug`: the VM tests on the KASAN/lockdep/kmemleak kernel (`make initramfs-debug`).
- Building: before the first test that needs them, `make module tools initramfs` (or `make
  tools initramfs-debug`) builds what is missing or stale; `--no-build` skips that (`make test`
  has built everything already).
- Guests: tests start their clusters in `with vm.Cluster(...)` blocks, which power the guests
  off and remove the region files on any exception and add the guests' driver log and counters
  to a failure. The autouse fixture `guest_consoles` closes any cluster a test leaves running
  (except the shared pair) and fails the test if any guest console of a cluster it started, or
  of the shared pair, shows an oops, BUG, WARNING, KASAN, lockdep or kmemleak report
  (`vm.SPLAT`), shutdown included.
- Reporting: the `info:` lines tests print (figures: throughput, latencies, counters) are
  collected into one section of the summary, and the very last line is 'N passed, N failed'
  with each of cargo's tests counted (what `.ci/run` reads).
"""

import os
import signal
import subprocess
import sys

import pytest

import vm

# Run order of the groups: host checks, cargo, VM tests in polling mode, in doorbell mode, the
# bench smoke run; within a group, files in this order, then as written.
FILE_ORDER = ["tests_host", "tests_cargo", "tests_foundation", "tests_datapath", "tests_links",
              "tests_queues", "tests_reliability", "tests_transparent", "tests_hotplug",
              "tests_bench"]
MODES = ("plain", "doorbell")


def pytest_addoption(parser):
    g = parser.getgroup("ivshmem-net")
    g.addoption("--kernel", choices=("guest", "debug"), default="guest",
                help="debug: run the VM tests on the KASAN/lockdep/kmemleak kernel "
                     "(build/guest-debug, build/debug/initramfs.cpio.gz: make initramfs-debug)")
    g.addoption("--no-build", action="store_true",
                help="do not run make for the module, tools and initramfs before the tests "
                     "that need them; use build/ as it is")


class _Session:
    mode = None  # the mode of the last VM test
    outcomes = {}  # nodeid -> "passed" | "failed" | "skipped"
    cargo = {}  # nodeid -> (passed, failed) of cargo's own tests
    collect_errors = 0
    interrupted = False
    info = []  # (nodeid, [lines])


def pytest_configure(config):
    if config.getoption("kernel") == "debug":
        vm.DEFAULT_KERNEL = vm.BUILD / "guest-debug" / "bzImage"
        vm.DEFAULT_INITRD = vm.BUILD / "debug" / "initramfs.cpio.gz"
        vm.DEFAULT_MEM_MB = 768
        vm.DEBUG_KERNEL = True
    # vm.py turns SIGINT/SIGTERM/SIGHUP into "close every cluster, then SystemExit", which
    # pytest would record as one failed test and go on. Here ^C is pytest's KeyboardInterrupt
    # (the `with` blocks and vm.py's atexit close the clusters) and the others end the run too.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def stop(signum, _frame):
        vm._cleanup_all()
        raise KeyboardInterrupt("signal %d" % signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("vm") is None:
        return
    modes = getattr(metafunc.function, "modes", ("plain",))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError("%s.modes = %r: each must be one of %s"
                         % (metafunc.function.__name__, modes, MODES))
    metafunc.parametrize("ivnet_mode", [pytest.param(m, id=m, marks=getattr(pytest.mark, m))
                                        for m in modes], indirect=True)


def pytest_report_header(config):
    kernel = vm.DEFAULT_KERNEL or vm.BUILD / "guest" / "bzImage"
    initrd = vm.DEFAULT_INITRD or vm.BUILD / "initramfs.cpio.gz"
    if not (kernel.exists() and initrd.exists()):
        return None
    accel, why = vm.choose_accel(kernel, initrd)
    return "vm: kernel %s, accelerator %s (%s)" % (kernel.relative_to(vm.TOP), accel, why)


def _group(item):
    if item.get_closest_marker("host"):
        return 0
    if item.get_closest_marker("cargo"):
        return 1
    if item.get_closest_marker("vm"):
        return 3 if item.get_closest_marker("doorbell") else 2
    return 4


def _file_rank(item):
    name = item.module.__name__ if getattr(item, "module", None) else ""
    return (FILE_ORDER.index(name), "") if name in FILE_ORDER else (len(FILE_ORDER) - 1, name)


def pytest_collection_modifyitems(config, items):
    order = {id(it): n for n, it in enumerate(items)}
    items.sort(key=lambda it: (_group(it), _file_rank(it), order[id(it)]))
    debug = config.getoption("kernel") == "debug"
    for it in items:
        if it.get_closest_marker("vm") and not it.get_closest_marker("timeout"):
            # Its guests die at IVNET_QEMU_LIMIT anyway (vm.QEMU_HARD_LIMIT_S).
            it.add_marker(pytest.mark.timeout(vm.QEMU_HARD_LIMIT_S))
        if debug and it.get_closest_marker("bench"):
            it.add_marker(pytest.mark.skip(reason="the bench smoke run measures the normal "
                                                  "kernel, not --kernel debug"))


def _make_targets(items, debug):
    targets = []
    for it in items:
        if it.get_closest_marker("host"):
            targets += ["module", "tools"]
        if it.get_closest_marker("vm") or it.get_closest_marker("bench"):
            targets += ["tools", "initramfs-debug"] if debug else ["module", "tools", "initramfs"]
    return list(dict.fromkeys(targets))


@pytest.fixture(scope="session")
def build_products(request):
    """Runs `make` once for what the selected tests need (the module and tools for the host
    checks, the initramfs for the VM tests, the debug variants with --kernel debug), its output
    shown as it goes: a cold guest-kernel build takes a while."""
    config = request.config
    targets = _make_targets(request.session.items, config.getoption("kernel") == "debug")
    if config.getoption("no_build") or not targets:
        return
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\nbuild: make %s (test-vm/conftest.py; --no-build skips this)"
              % " ".join(targets), flush=True)
        rc = subprocess.run(["make", "--no-print-directory"] + targets, cwd=vm.TOP,
                            env=env).returncode
    if rc != 0:
        raise RuntimeError("`make %s` failed (exit %d; its output is above): the tests need "
                           "what it builds. After `make deps`, run it by hand to see why."
                           % (" ".join(targets), rc))


def _shared_pair_cluster():
    dp = sys.modules.get("tests_datapath")
    pair = getattr(dp, "_pair", None)
    return pair.cluster if pair is not None else None


def _drop_shared_pair():
    dp = sys.modules.get("tests_datapath")
    if dp is not None:
        dp.drop_pair()


@pytest.fixture(autouse=True)
def ivnet_mode(request):
    """The mode of a VM test ("plain" or "doorbell", from its parametrization; None for other
    tests), after building what the test needs."""
    node = request.node
    if any(node.get_closest_marker(m) for m in ("host", "vm", "bench")):
        request.getfixturevalue("build_products")
    mode = getattr(request, "param", None)
    if mode is None:
        yield None
        return
    if mode != _Session.mode:
        _drop_shared_pair()  # booted in the other mode
        _Session.mode = mode
    vm.DEFAULT_DOORBELL = 1 if mode == "doorbell" else None
    try:
        yield mode
    finally:
        vm.DEFAULT_DOORBELL = None


@pytest.fixture(autouse=True)
def guest_consoles(request, ivnet_mode):
    """For VM tests: afterwards, closes the clusters the test left running (the shared pair
    excepted) and fails the test on any kernel report in a console of a cluster it started or
    of the shared pair."""
    if request.node.get_closest_marker("vm") is None:
        yield
        return
    started = []
    hook = started.append
    vm.CLUSTER_HOOKS.append(hook)
    try:
        yield
    finally:
        vm.CLUSTER_HOOKS.remove(hook)
    pair = _shared_pair_cluster()
    for c in started:
        if c is not pair and not c.closed:
            c.close()
    reports = {}
    for c in started + ([pair] if pair is not None and pair not in started else []):
        found = c.splats_at_close if c.closed else c.splats()
        if found:
            reports.update(found)
            if c is pair:
                _drop_shared_pair()  # the next test gets fresh guests
    if reports and not getattr(request.node, "ivnet_call_failed", False):
        pytest.fail("kernel warnings/oopses in guest consoles: %s" % reports, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        item.ivnet_call_failed = True  # its own failure says it; guest_consoles does not repeat


def pytest_runtest_logreport(report):
    s = _Session
    if report.failed:
        s.outcomes[report.nodeid] = "failed"
    elif report.skipped:
        s.outcomes.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        s.outcomes.setdefault(report.nodeid, "passed")
    props = dict(report.user_properties)
    if "cargo_passed" in props:
        s.cargo[report.nodeid] = (props["cargo_passed"], props["cargo_failed"])
    # The teardown report carries what the test printed in all three phases.
    lines = [l.strip() for l in report.capstdout.splitlines() if "info:" in l]
    if report.when == "teardown" and lines:
        s.info.append((report.nodeid, lines))


def pytest_collectreport(report):
    if report.failed:
        _Session.collect_errors += 1


def pytest_sessionfinish(session, exitstatus):
    _drop_shared_pair()
    _Session.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED


def pytest_terminal_summary(terminalreporter):
    if not _Session.info:
        return
    tr = terminalreporter
    tr.write_sep("-", "info: what the tests measured")
    for nodeid, lines in _Session.info:
        tr.write_line(nodeid)
        for l in lines:
            tr.write_line("    " + l)


def _totals():
    passed = failed = 0
    for nodeid, outcome in _Session.outcomes.items():
        if nodeid in _Session.cargo:
            p, f = _Session.cargo[nodeid]
            passed, failed = passed + p, failed + max(f, 1 if outcome == "failed" else 0)
        elif outcome == "passed":
            passed += 1
        elif outcome == "failed":
            failed += 1
    # A run cut short (^C, SIGTERM) is not a pass, whatever ran before.
    return passed, failed + _Session.collect_errors + (1 if _Session.interrupted else 0)


def pytest_unconfigure(config):
    # After pytest's own summary line: the total with each of cargo's tests counted, the
    # line `.ci/run` takes as the result of `make test`.
    if config.getoption("collectonly", False) or not (_Session.outcomes or _Session.collect_errors):
        return
    passed, failed = _totals()
    tw = config.get_terminal_writer()
    tw.line("%d passed, %d failed" % (passed, failed))
    tw.flush()
