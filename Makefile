# SPDX-License-Identifier: GPL-2.0
# ivshmem-net: top-level build. See README.md.
#
#   make deps     install what the build needs (Debian packages + bindgen-cli), idempotent
#   make kernel   guest kernel (cached outside the clone, in $(IVNET_CACHE))
#   make module   build/ivshmem_net.ko, out of tree against the guest kernel
#   make tools    userspace-tools/ workspace, binaries in build/bin/
#   make test     everything above, then the userspace and in-guest tests
#   make demo     two guests with the driver bound, one reading what the other wrote
#   make bench    ivshmem-net vs virtio-net vs loopback in guests (iperf3, ivnet-rr, sockperf),
#                 ring-bench on the host; tables and matplotlib charts in bench/results/
#   make bench-profile  the same with perf sampling both guests: where the time goes
#   make install  build/ivshmem_net.ko into $(DESTDIR)/lib/modules/<release>/updates, depmod
#   make dkms-install   the sources into /usr/src/ivshmem-net-<version>, then `dkms install`
#   make clean    remove build products (the kernel cache stays)
#
# The kernel's own Makefile reads `Kbuild` in this directory for `make -C <kdir> M=$(CURDIR)`.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
TOP := $(CURDIR)
IVNET_CACHE ?= /var/cache/ivshmem-net
BINDGEN_VERSION := 0.69.5
BINDGEN_CACHED := $(IVNET_CACHE)/tools/bindgen-$(BINDGEN_VERSION)/bin/bindgen
# The one `make deps` installs; without it (a DKMS build on another machine) `bindgen` on PATH.
ifeq ($(origin BINDGEN),undefined)
BINDGEN := $(or $(wildcard $(BINDGEN_CACHED)),$(shell command -v bindgen 2>/dev/null),$(BINDGEN_CACHED))
endif
export IVNET_CACHE BINDGEN BINDGEN_VERSION

# The kernel build tree the module is built against: our guest kernel unless KDIR=... is given
# (an installed kernel's /lib/modules/<release>/build, as DKMS does).
KDIR := $(TOP)/build/guest/kdir
# What says the kernel changed, for the generated bindings: a stamp naming the tree KDIR
# resolves to (for our guest kernel that path holds its cache key) and hashing its .config and
# release, rewritten only when one of them changes. So switching KDIR regenerates them too.
KERNEL_KEY ?= rust/generated/kdir.id
# Same toolchain the kernel was built with (scripts/toolchain.sh says why it is explicit).
KMAKE = . scripts/toolchain.sh && $(MAKE) -C $(KDIR) M=$(TOP) $$KMAKE_FLAGS

# Debian's Python, whose packages (pytest, pytest-timeout, matplotlib) `make deps` installs; a
# python3 earlier on PATH (pyenv) may not have them; .python-version does the same for pyenv's
# shims.
PYTHON ?= /usr/bin/python3
# The tests (pytest.ini, test-vm/conftest.py); -rfE lists failures and errors at the end.
PYTEST = $(PYTHON) -m pytest test-vm -rfE
CARGO ?= cargo

DEBIAN_PACKAGES := linux-source-6.12 rustc-web rust-web-src clang lld llvm libclang-dev \
	flex bison bc libelf-dev libssl-dev cpio kmod gzip xz-utils make \
	qemu-system-x86 busybox-static iproute2 ethtool iperf3 nftables pciutils python3 libc6-dev rsync dkms \
	linux-perf sockperf python3-matplotlib python3-yaml dash python3-pytest python3-pytest-timeout \
	iputils-ping socat python3-pip
# Installed without their Recommends: dkms's would pull in Debian's own 6.1 kernel headers.
DEBIAN_NO_RECOMMENDS := dkms
# From PyPI for $(PYTHON), which Debian 12 does not package: the QEMU project's QMP library, with
# which the VM tests hot-unplug and hot-plug devices (test-vm/vm.py). Debian marks its Python as
# externally managed, so pip needs --break-system-packages; the package goes to /usr/local.
PYPI_PACKAGES := qemu.qmp==0.0.6

.PHONY: all deps kernel module module-build tools guest-tools initramfs test test-host test-vm \
	demo bench bench-profile bench-smoke clean kernel-debug module-debug initramfs-debug test-reliability \
	selftests-image \
	install dkms-source dkms-install FORCE

all: module tools

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
	    dpkg-query -W -f '$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing Debian packages:" $$missing; \
	    apt-get update -qq; \
	    norec=$$(for p in $$missing; do case " $(DEBIAN_NO_RECOMMENDS) " in *" $$p "*) echo $$p;; esac; done); \
	    rest=$$(for p in $$missing; do case " $(DEBIAN_NO_RECOMMENDS) " in *" $$p "*) ;; *) echo $$p;; esac; done); \
	    [ -z "$$rest" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$rest >/dev/null; \
	    [ -z "$$norec" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$norec >/dev/null; \
	else echo "deps: Debian packages present ($(words $(DEBIAN_PACKAGES)) checked)"; fi
	@if [ -x $(BINDGEN) ] && $(BINDGEN) --version | grep -q ' $(BINDGEN_VERSION)$$'; then \
	    echo "deps: bindgen-cli $(BINDGEN_VERSION) present ($(BINDGEN))"; \
	else \
	    echo "deps: installing bindgen-cli $(BINDGEN_VERSION) (--locked) into $(IVNET_CACHE)/tools (~75 s)"; \
	    mkdir -p $(IVNET_CACHE)/tools; \
	    $(CARGO) install -q bindgen-cli --version $(BINDGEN_VERSION) --locked \
	        --root $(IVNET_CACHE)/tools/bindgen-$(BINDGEN_VERSION); \
	fi
	@missing=$$(for p in $(PYPI_PACKAGES); do \
	    $(PYTHON) -c "import importlib.metadata as m, sys; \
	        sys.exit(m.version('$${p%%==*}') != '$${p##*==}')" 2>/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing from PyPI for $(PYTHON):" $$missing; \
	    $(PYTHON) -m pip install -q --root-user-action=ignore --break-system-packages $$missing; \
	else echo "deps: PyPI packages present ($(words $(PYPI_PACKAGES)) checked)"; fi
	@/usr/bin/rustc --version | grep -q '^rustc 1\.' || { echo "deps: /usr/bin/rustc missing" >&2; exit 1; }

kernel:
	@test-vm/build-kernel.sh guest test-vm/kernel.config

# The debug variant (KASAN, kmemleak, lockdep, atomic-sleep, list/object debugging) and the
# module built against it, in a copy of the sources so the two builds never share generated
# files, kbuild's own lists included (a copied ivshmem_net.mod would link the other build's
# objects): build/guest-debug/{bzImage,kdir}, build/debug/ivshmem_net.ko, build/debug/initramfs.
kernel-debug:
	@test-vm/build-kernel.sh guest-debug test-vm/kernel.config test-vm/kernel-debug.config

module-debug: kernel-debug
	@mkdir -p build/debug/src
	@rsync -a --delete --exclude build --exclude target --exclude .git --exclude 'rust/generated' \
	    --exclude '*.o' --exclude '*.ko' --exclude '*.cmd' --exclude '*.mod' --exclude '*.mod.c' \
	    --exclude Module.symvers --exclude modules.order ./ build/debug/src/
	@mkdir -p build/debug/src/build/guest && cp build/guest-debug/key build/debug/src/build/guest/key
	@$(MAKE) --no-print-directory -C build/debug/src module-build KDIR=$(TOP)/build/guest-debug/kdir
	@cp build/debug/src/build/ivshmem_net.ko build/debug/ivshmem_net.ko

# The reliability suite (the VM tests marked `reliability`: hostile peers, crashes, unloads,
# bad configuration), long forms, on the debug kernel: any KASAN, lockdep, atomic-sleep or
# list/object report in a guest console fails the test that was running. Guests may live 2 h.
# Every VM test on the debug kernel: python3 -m pytest test-vm -m vm --kernel debug (hours here).
test-reliability: deps
	@$(MAKE) --no-print-directory tools initramfs-debug
	@IVNET_RELIABILITY=full IVNET_QEMU_LIMIT=$${IVNET_QEMU_LIMIT:-7200} \
	    $(PYTEST) -m reliability --kernel debug --no-build

initramfs-debug: module-debug guest-tools selftests-image
	@test-vm/mkinitramfs.sh build/debug/initramfs.cpio.gz build/debug/ivshmem_net.ko $(GUEST_RR)

# Bindings are generated, never checked in; regenerated when their inputs or the kernel change.
rust/generated/bindings.rs: rust/bindings_helper.h $(wildcard rust/helpers/*.h) rust/params.h \
		rust/bindings.allowlist rust/gen-bindings.sh $(KERNEL_KEY)
	@echo "module: generating bindings (bindgen $(BINDGEN_VERSION), the kernel's clang flags)"
	@. scripts/toolchain.sh && rust/gen-bindings.sh $(KDIR) $@ rust/generated/wrappers.c

rust/generated/kdir.id: FORCE
	@mkdir -p $(@D)
	@id="$$(readlink -f $(KDIR)) $$({ cat $(KDIR)/.config $(KDIR)/include/config/kernel.release || true; } 2>/dev/null | sha256sum | cut -c1-16)"; \
	    [ "$$(cat $@ 2>/dev/null)" = "$$id" ] || echo "$$id" > $@

FORCE:

module: kernel
	@$(MAKE) --no-print-directory module-build

module-build: rust/generated/bindings.rs
	@mkdir -p build
	@echo "module: building ivshmem_net.ko against $$(readlink -f $(KDIR))"
	@+$(KMAKE) modules 2>&1 | tee build/module.log | grep -v '^make\[\?[0-9]*\]\?: \(Entering\|Leaving\)' || true
	@if grep -iE '(^|[^a-z_])(warning|error)[: \[]' build/module.log; then \
	    echo "module: the build printed warnings or errors (zero allowed)" >&2; exit 1; fi
	@test -f ivshmem_net.ko
	@cp ivshmem_net.ko build/ivshmem_net.ko
	@echo "module: build/ivshmem_net.ko ($$(stat -c %s build/ivshmem_net.ko) bytes)"

tools:
	@cd userspace-tools && $(CARGO) build --release -q --workspace
	@mkdir -p build/bin
	@for f in userspace-tools/target/release/*; do \
	    [ -f "$$f" ] && [ -x "$$f" ] && cp "$$f" build/bin/ || true; done
	@echo "tools: built userspace-tools ($$(ls build/bin | wc -l) binaries in build/bin)"

# ivnet-rr (bench latency) and ivnet-stream (checked bulk TCP) for the guest image: static
# (glibc's libc.a), see ivnet-rr's doc comment. --target keeps the flag away from build scripts
# and gives it its own target directory.
GUEST_BIN_DIR := userspace-tools/target/x86_64-unknown-linux-gnu/release
GUEST_RR := $(GUEST_BIN_DIR)/ivnet-rr $(GUEST_BIN_DIR)/ivnet-stream
guest-tools:
	@cd userspace-tools && RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release -q \
	    -p ivshmem-bench --bin ivnet-rr --bin ivnet-stream --target x86_64-unknown-linux-gnu

initramfs: module guest-tools selftests-image
	@test-vm/mkinitramfs.sh build/initramfs.cpio.gz build/ivshmem_net.ko $(GUEST_RR)

# The kernel's driver selftests with Python for the guest, an overlay that the VM test
# test_kernel_driver_selftests appends to the initramfs (test-vm/mkselftests.sh says what).
selftests-image:
	@test-vm/mkselftests.sh build/selftests.cpio.gz

# Every test: host checks, cargo's, the VM tests in both modes, the bench smoke run. pytest
# prints a line per test and its summary; the last line is 'N passed, N failed' with each of
# cargo's tests counted. Results also in build/test-results.xml (JUnit XML).
test: deps
	@$(MAKE) --no-print-directory module tools initramfs
	@$(PYTEST) -v --no-build --junitxml=build/test-results.xml

# Individual parts, for iterating (the tests build what they need; see docs/testing.md).
test-host:
	@$(PYTEST) -m host

test-vm:
	@$(PYTEST) -m "vm or bench"

demo: deps
	@$(MAKE) --no-print-directory module tools initramfs
	@$(PYTHON) test-vm/demo.py

# Not part of `make test` (which runs only `bench.py --smoke`); results in bench/results/.
bench: deps
	@$(MAKE) --no-print-directory module tools initramfs
	@$(PYTHON) test-vm/bench.py

# The same run with perf sampling both guests during each measurement: where the time goes.
bench-profile: deps
	@$(MAKE) --no-print-directory module tools guest-tools
	@test-vm/mkinitramfs.sh build/bench-profile/initramfs.cpio.gz build/ivshmem_net.ko $(GUEST_RR) perf
	@$(PYTHON) test-vm/bench.py --profile --initrd build/bench-profile/initramfs.cpio.gz \
	    --out build/bench-profile

bench-smoke: module tools initramfs
	@$(PYTHON) test-vm/bench.py --smoke

# Installing. KDIR=... installs for that kernel (built against it first); KERNELRELEASE=...
# overrides the release read from the kernel tree. With DESTDIR, depmod runs on that tree.
DESTDIR ?=
KERNELRELEASE ?= $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
DEPMOD ?= $(or $(shell PATH="$$PATH:/usr/sbin:/sbin" command -v depmod),depmod)
MODULE_DIR = $(DESTDIR)/lib/modules/$(KERNELRELEASE)/updates

install: $(if $(filter command line,$(origin KDIR)),module-build,module)
	@[ -n "$(KERNELRELEASE)" ] || { echo "install: no kernel release ($(KDIR)/include/config/kernel.release): give KERNELRELEASE=..." >&2; exit 1; }
	install -D -m 0644 build/ivshmem_net.ko $(MODULE_DIR)/ivshmem_net.ko
	install -D -m 0644 contrib/modprobe/ivshmem-net.conf $(DESTDIR)/etc/modprobe.d/ivshmem-net.conf.example
	$(DEPMOD) $(if $(DESTDIR),-b $(DESTDIR)) $(KERNELRELEASE)

# DKMS: the files the module build needs (the build runs `make module-build KDIR=...`, see
# dkms.conf), copied clean into $(DESTDIR)/usr/src/ivshmem-net-<version>; then `dkms install`
# builds and installs it for the running kernel (DKMS_FLAGS="-k <release>" for another).
DKMS_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf 2>/dev/null)
DKMS_SRC = $(DESTDIR)/usr/src/ivshmem-net-$(DKMS_VERSION)
DKMS_FILES := dkms.conf Makefile Kbuild scripts/toolchain.sh rust ivshmem-net contrib/modprobe
DKMS_FLAGS ?=

dkms-source:
	@rm -rf $(DKMS_SRC) && mkdir -p $(DKMS_SRC)
	@rsync -a --relative --exclude generated/ --exclude '*.o' --exclude '.*.cmd' --exclude '*.rmeta' \
	    $(DKMS_FILES) $(DKMS_SRC)/
	@echo "dkms: sources in $(DKMS_SRC)"

dkms-install: dkms-source
	dkms install -m ivshmem-net -v $(DKMS_VERSION) $(DKMS_FLAGS)

clean:
	-@[ -e $(KDIR)/Makefile ] && $(KMAKE) clean >/dev/null 2>&1 || true
	rm -rf build rust/generated userspace-tools/target ivshmem_net.ko
