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

# Progress of the long step. kbuild prints one line per step ("  CC      kernel/fork.o",
# "  RUSTC   rust/core.o", "  AR ...", "  LD ..."); their count against the total of the last
# build of this name on this machine ($cache/NAME.steps) gives a percentage. A machine that
# never built one uses the count of a cold build of the committed configs (2026-12-06: guest
# 1786 steps, guest-debug 1835; a config change moves it a little, so the percentage is an
# estimate, held at 99 % until make ends); other names show the count alone until their first
# build.
count_steps() { grep -c '^  [A-Z][A-Z0-9_]* ' "$1" 2>/dev/null || true; }
expected_steps() {
    local n
    n=$(cat "$cache/$name.steps" 2>/dev/null || true)
    case "$n" in ''|*[!0-9]*) case $name in
        guest) n=1786 ;;
        guest-debug) n=1835 ;;
        *) n=0 ;;
    esac ;; esac
    echo "$n"
}
mmss() { printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )); }
# build_with_progress LOG TOTAL CMD...: runs CMD with its output in LOG and shows how far it
# got: one line rewritten in place each second on a terminal, else a line every 30 s
# (IVNET_PROGRESS_EVERY overrides, for tests). Returns CMD's status. CMD runs in its own
# session so that an interrupt ends the whole build, not only this script.
build_with_progress() {
    local log=$1 total=$2; shift 2
    local t0=$SECONDS tty=0 every=${IVNET_PROGRESS_EVERY:-30} next n pct msg rc=0 pid
    [ -t 1 ] && tty=1 && every=1
    next=$(( t0 + every ))
    setsid "$@" > "$log" 2>&1 < /dev/null &
    pid=$!
    trap 'kill -TERM -- -'"$pid"' 2>/dev/null; exit 130' INT TERM HUP
    trap 'kill -TERM -- -'"$pid"' 2>/dev/null || true' EXIT
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        [ $SECONDS -ge $next ] || continue
        next=$(( SECONDS + every ))
        n=$(count_steps "$log"); n=${n:-0}
        if [ "$total" -gt 0 ]; then
            pct=$(( 100 * n / total )); [ $pct -le 99 ] || pct=99
            msg="$n of ~$total build steps ($pct %), $(mmss $(( SECONDS - t0 )))"
        else
            msg="$n build steps, $(mmss $(( SECONDS - t0 )))"
        fi
        if [ $tty = 1 ]; then printf '\r\033[Kkernel[%s]: %s' "$name" "$msg"; else echo "kernel[$name]: $msg"; fi
    done
    wait "$pid" || rc=$?
    trap - INT TERM HUP EXIT
    [ $tty = 0 ] || printf '\r\033[K'
    return $rc
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

echo "kernel[$name]: building $key (cold build: 5-10 min on 2 cores; log $kb/build.log)"
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
start=$SECONDS
rc=0
build_with_progress "$kb/build.log" "$(expected_steps)" $K -j"$(nproc)" bzImage modules || rc=$?
[ $rc = 0 ] || { tail -40 "$kb/build.log" >&2; echo "kernel[$name]: build failed (rc=$rc, log $kb/build.log)" >&2; exit 1; }
steps=$(count_steps "$kb/build.log")
echo "kernel[$name]: built in $(mmss $(( SECONDS - start ))) ($steps build steps)"
echo "$steps" > "$cache/$name.steps"
touch "$kb/done"
link_outputs
# Keep the two newest builds of this name; older ones are stale keys. The key is 16 hex digits,
# so `guest-<key>` never matches `guest-debug-<key>` (a debug build must not age out the other).
ls -dt "$cache/$name"-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f] 2>/dev/null \
    | tail -n +3 | while read -r old; do
    echo "kernel[$name]: pruning old build $(basename "$old")"; rm -rf "$old"
done
