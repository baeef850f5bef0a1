#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the guest initramfs: busybox-static, the real ip/ethtool/iperf3/sockperf with their
# shared libraries (sockperf's include libstdc++), /init and the test agent, the ivnet-udp, ivnet-nd and
# ivnet-gchannels test tools, and the module.
#
#   mkinitramfs.sh OUT.cpio.gz MODULE.ko [EXTRA_BINARY...]
#
# Extra binaries go to /usr/local/bin with their libraries (the Makefile passes the static
# ivnet-rr, which `make bench` runs in guests, and ivnet-stream, the checked bulk transfer of
# the large-transfer tests; a static binary needs none).
set -euo pipefail
out=$(realpath -m "$1"); ko=$(realpath "$2"); shift 2
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,tmp,run,root,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Real tools (busybox has an `ip`, but not with `-d`/`-j` or ethtool's netlink features;
# nft loads the stateful policy of the transparent-mode conntrack test; sockperf is the
# bench's request/response latency next to ivnet-rr).
copy_with_libs() {
    local bin=$1
    cp -L "$bin" "$root/usr/local/bin/"
    for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^\s*\/lib/ {print $1}'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -Ln "$lib" "$root$lib" 2>/dev/null || true
    done
}
for tool in ip ethtool iperf3 nft sockperf "$@"; do
    path=$(command -v "$tool" || true)
    [ -n "$path" ] || { echo "mkinitramfs: $tool not found: run 'make deps'" >&2; exit 1; }
    copy_with_libs "$path"
done
# The dynamic loader is named by absolute path inside each binary.
mkdir -p "$root/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"

# ivnet-udp: content-checked UDP datagrams for the data-path tests (busybox nc has no UDP);
# static, so it needs no libraries in the image.
cc=${CC:-$(command -v cc || command -v clang || true)}
[ -n "$cc" ] || { echo "mkinitramfs: no C compiler (cc or clang) for guest/ivnet-udp.c" >&2; exit 1; }
"$cc" -static -O2 -Wall -Werror -o "$root/usr/local/bin/ivnet-udp" "$here/guest/ivnet-udp.c"
# ivnet-gchannels: the ETHTOOL_GCHANNELS ioctl, whose reply's `cmd` ethtool (netlink) never shows.
"$cc" -static -O2 -Wall -Werror -o "$root/usr/local/bin/ivnet-gchannels" \
    "$here/guest/ivnet-gchannels.c"
# ivnet-nd: a hand-made neighbour solicitation or advertisement on a raw socket.
"$cc" -static -O2 -Wall -Werror -o "$root/usr/local/bin/ivnet-nd" "$here/guest/ivnet-nd.c"
# ivnet-qstats: netdev netlink's qstats-get, queue-get and napi-get for one interface.
"$cc" -static -O2 -Wall -Werror -o "$root/usr/local/bin/ivnet-qstats" "$here/guest/ivnet-qstats.c"

cp "$ko" "$root/lib/modules/ivshmem_net.ko"
install -m 755 "$here/guest/init" "$root/init"
install -m 755 "$here/guest/agent" "$root/bin/ivnet-agent"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -1 > "$out.tmp")
mv "$out.tmp" "$out"
echo "initramfs: $out ($(( $(stat -c %s "$out") / 1024 )) KiB)"
