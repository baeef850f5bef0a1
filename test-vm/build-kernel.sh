#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or fetch from the cache) the guest kernel: Debian's stock linux-source-6.12 tarball,
# `tinyconfig` + the fragments given on the command line, Rust enabled.
#
#   build-kernel.sh NAME FRAGMENT [FRAGMENT...]
#
# The build lives outside the clone, in $IVNET_CACHE/kernel/NAME-<key>, where <key> hashes the
# source package version, the fragments, and the versions of rustc, bindgen, clang and make
# flags. A warm run only re-links build/NAME/{bzImage,kdir}. Concurrent runs serialise on a lock.
set -euo pipefail

name=$1; shift
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/toolchain.sh"

frags=()
for f in "$@"; do frags+=("$(realpath "$f")"); done

src_tar=/usr/src/linux-source-6.12.tar.xz
[ -r "$src_tar" ] || { echo "build-kernel: $src_tar missing: run 'make deps'" >&2; exit 1; }
src_ver=$(dpkg-query -W -f '${Version}' linux-source-6.12)

key=$( {
    echo "src=$src_ver"
    for f in "${frags[@]}"; do echo "frag=$(basename "$f")"; cat "$f"; done
    echo "rustc=$("$RUSTC" --version)"
    echo "bindgen=$("$BINDGEN" --version)"
    echo "clang=$(clang --version | head -1)"
    echo "kmake=$KMAKE_FLAGS"
    echo "recipe=1"  # bump when the steps below change what gets built
} | sha256sum | cut -c1-16)

cache=$IVNET_CACHE/kernel
kb=$cache/$name-$key
out=$top/build/$name
mkdir -p "$cache" "$out"

link_outputs() {
    ln -sfn "$kb/obj" "$out/kdir"
    cp -f "$kb/obj/arch/x86/boot/bzImage" "$out/bzImage"
    # Rewritten only when it changes: the module's generated bindings depend on its mtime.
    [ "$(cat "$out/key" 2>/dev/null)" = "$key" ] || echo "$key" > "$out/key"
}

if [ -f "$kb/done" ]; then
    echo "kernel[$name]: cached build $key ($kb)"
    link_outputs
    exit 0
fi

exec 9>"$cache/.lock"
flock -n 9 || { echo "kernel[$name]: waiting for another build's lock" >&2; flock 9; }
if [ -f "$kb/done" ]; then link_outputs; exit 0; fi

srcdir=$IVNET_CACHE/src/linux-$src_ver
if [ ! -f "$srcdir/.extracted" ]; then
    echo "kernel[$name]: extracting $src_tar"
    rm -rf "$srcdir" && mkdir -p "$srcdir"
    tar xf "$src_tar" -C "$srcdir" --strip-components=1
    touch "$srcdir/.extracted"
fi

echo "kernel[$name]: building $key (cold build: 5-10 min on 2 cores)"
rm -rf "$kb" && mkdir -p "$kb/obj"
ln -sfn "$srcdir" "$kb/src"
K="make -C $srcdir O=$kb/obj $KMAKE_FLAGS"
$K rustavailable
$K tinyconfig >/dev/null
"$srcdir/scripts/kconfig/merge_config.sh" -m -O "$kb/obj" "$kb/obj/.config" "${frags[@]}" >/dev/null
$K olddefconfig >/dev/null
# Every option the fragments ask for must have survived olddefconfig (a missing dependency
# silently drops an option otherwise).
missing=0
for f in "${frags[@]}"; do
    while IFS= read -r line; do
        case "$line" in
        CONFIG_*=*) grep -qx -- "$line" "$kb/obj/.config" || { echo "kernel[$name]: not set: $line" >&2; missing=1; } ;;
        "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
            grep -q "^$opt=" "$kb/obj/.config" && { echo "kernel[$name]: still set: $opt" >&2; missing=1; } ;;
        esac
    done < "$f"
done
[ $missing = 0 ] || { echo "kernel[$name]: config fragment not satisfied" >&2; exit 1; }
start=$(date +%s)
$K -j"$(nproc)" bzImage modules > "$kb/build.log" 2>&1 || { tail -40 "$kb/build.log" >&2; exit 1; }
echo "kernel[$name]: built in $(( $(date +%s) - start )) s"
touch "$kb/done"
link_outputs
# Keep the two newest builds of this name; older ones are stale keys. The key is 16 hex digits,
# so `guest-<key>` never matches `guest-debug-<key>` (a debug build must not age out the other).
ls -dt "$cache/$name"-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f] 2>/dev/null \
    | tail -n +3 | while read -r old; do
    echo "kernel[$name]: pruning old build $(basename "$old")"; rm -rf "$old"
done
