#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the overlay that turns the guest initramfs into the image of the kernel-selftest tests
# (tests_kselftest.py): the kernel's driver selftests and what they need, as a second gzipped
# cpio archive that the test appends to the guest initramfs (the kernel unpacks both, the
# second over the first). The other tests' image stays as it is (size, boot time).
#
#   mkselftests.sh OUT.cpio.gz
#
# What goes in, under /opt/linux in the layout of the source tree (the tests find their
# libraries and the netlink specs relative to their own path):
# - from Debian's linux-source-6.12 tarball, never from the repository: the driver tests
#   tools/testing/selftests/drivers/net/, their library tools/testing/selftests/net/lib/py/,
#   the YNL library tools/net/ynl/lib/ and the specs Documentation/netlink/specs/; taken from
#   the tree build-kernel.sh unpacked ($IVNET_CACHE/src/linux-<version>), or straight from the
#   tarball when no kernel was built on this machine;
# - Debian's python3.11 (interpreter, the standard library without its tests, GUI, packaging
#   and build parts, the compiled modules and their shared libraries) and python3-yaml;
# - bash, iputils' ping and socat in /opt/ksft/bin, which the test puts first on PATH for
#   ping.py only: its remote end runs commands with `ip netns exec NS bash -c`, it pings with
#   `-W0.5` (busybox's ping takes whole seconds) and checks TCP with socat; the other tests'
#   scripts keep busybox's ping, whose output they parse;
# - dash as /bin/sh: the tests run their commands through `sh -c`, and busybox's sh runs its
#   own `ip` and other applets before any program on PATH, so `ip -j` and `ethtool` would reach
#   busybox's. With dash, PATH decides, and /usr/local/bin (iproute2, ethtool) comes first.
#
# A key over its inputs (source package, python, pyyaml, dash versions, this script) skips the
# work when OUT was built from the same ones.
set -euo pipefail
out=$(realpath -m "$1")
here=$(cd "$(dirname "$0")" && pwd)
cache=${IVNET_CACHE:-/var/cache/ivshmem-net}
py=/usr/bin/python3.11
src_tar=/usr/src/linux-source-6.12.tar.xz

tools=(/bin/bash /usr/bin/ping /usr/bin/socat)
for need in "$src_tar" "$py" /usr/lib/python3/dist-packages/yaml/__init__.py /bin/dash \
        "${tools[@]}"; do
    [ -e "$need" ] || { echo "mkselftests: $need missing: run 'make deps'" >&2; exit 1; }
done
ver() { dpkg-query -W -f '${Version}' "$1"; }
src_ver=$(ver linux-source-6.12)
key=$( {
    echo "src=$src_ver python=$(ver python3.11-minimal) stdlib=$(ver libpython3.11-stdlib)"
    echo "yaml=$(ver python3-yaml) dash=$(ver dash) bash=$(ver bash)"
    echo "ping=$(ver iputils-ping) socat=$(ver socat)"
    cat "$0"
} | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    echo "selftests: $out up to date ($(( $(stat -c %s "$out") / 1024 )) KiB)"
    exit 0
fi

root=$(mktemp -d)
tmp=$(mktemp -d)
trap 'rm -rf "$root" "$tmp"' EXIT

# The kernel's files.
parts=(tools/testing/selftests/drivers/net tools/testing/selftests/net/lib/py
       tools/net/ynl/lib Documentation/netlink/specs)
srcdir=$cache/src/linux-$src_ver
if [ ! -f "$srcdir/.extracted" ]; then
    echo "selftests: extracting ${parts[*]} from $src_tar"
    srcdir=$tmp/linux
    mkdir -p "$srcdir"
    tar xf "$src_tar" -C "$srcdir" --strip-components=1 "${parts[@]/#/linux-source-6.12/}"
fi
k=$root/opt/linux
for p in "${parts[@]}"; do
    [ -d "$srcdir/$p" ] || { echo "mkselftests: $srcdir/$p missing" >&2; exit 1; }
    mkdir -p "$k/$p"
    cp -a "$srcdir/$p/." "$k/$p/"
done
"$py" -m compileall -q "$k/tools"

# Python: the interpreter and the standard library (with Debian's compiled .pyc, no
# optimised variants), python3-yaml, and the libraries of every compiled module. Left out
# besides tests and GUI: TLS and OpenSSL's hashes (hashlib keeps its built-in ones), curses,
# readline, dbm, NIS, crypt, audio: nothing the tests use, 10 MiB of libraries.
mkdir -p "$root/usr/bin" "$root/usr/lib/python3/dist-packages" "$root/bin" "$root/var"
cp -L "$py" "$root/usr/bin/python3.11"
ln -s python3.11 "$root/usr/bin/python3"
rsync -a --copy-links /usr/lib/python3.11/ "$root/usr/lib/python3.11/" \
    --exclude 'config-3.11-*' --exclude test/ --exclude tkinter/ --exclude idlelib/ \
    --exclude lib2to3/ --exclude pydoc_data/ --exclude distutils/ --exclude ensurepip/ \
    --exclude venv/ --exclude turtledemo/ --exclude sqlite3/ --exclude dist-packages/ \
    --exclude '*.opt-1.pyc' --exclude '*.opt-2.pyc' --exclude 'lib-dynload/_test*' \
    --exclude 'lib-dynload/_tkinter*' --exclude 'lib-dynload/_sqlite3*' \
    --exclude 'lib-dynload/xx*' --exclude 'lib-dynload/_xx*' --exclude 'lib-dynload/_ssl*' \
    --exclude 'lib-dynload/_hashlib*' --exclude 'lib-dynload/_curses*' \
    --exclude 'lib-dynload/_dbm*' --exclude 'lib-dynload/nis*' --exclude 'lib-dynload/readline*' \
    --exclude 'lib-dynload/_crypt*' --exclude 'lib-dynload/ossaudiodev*'
cp -a /usr/lib/python3/dist-packages/yaml /usr/lib/python3/dist-packages/_yaml \
    "$root/usr/lib/python3/dist-packages/"
for bin in "$root/usr/bin/python3.11" "$root"/usr/lib/python3.11/lib-dynload/*.so \
        "$root"/usr/lib/python3/dist-packages/yaml/*.so /bin/dash "${tools[@]}"; do
    for lib in $(ldd "$bin" | awk '/=> \// {print $3}'); do
        mkdir -p "$root$(dirname "$lib")"
        [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
    done
done
# Every compiled module must load: a library missing above would only show in the guest.
missing=$(for so in "$root"/usr/lib/python3.11/lib-dynload/*.so; do
    ldd "$so" | grep 'not found' || true; done)
[ -z "$missing" ] || { echo "mkselftests: unresolved libraries: $missing" >&2; exit 1; }

mkdir -p "$root/opt/ksft/bin"
cp -L "${tools[@]}" "$root/opt/ksft/bin/"
cp -L /bin/dash "$root/bin/dash"
ln -s dash "$root/bin/sh"
ln -s /run "$root/var/run"  # `ip netns` keeps its names in /var/run/netns

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -1 > "$out.tmp")
mv "$out.tmp" "$out"
echo "$key" > "$out.key"
echo "selftests: $out ($(( $(stat -c %s "$out") / 1024 )) KiB)"
