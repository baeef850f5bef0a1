# SPDX-License-Identifier: GPL-2.0
# Sourced by the build scripts: where the toolchain and the cache are. One place for these facts.
#
# Debian's rustc-web (1.96, with rust-web-src) at /usr/bin is the compiler the kernel needs; a
# rustup rustc earlier on PATH has no rust-src, so every kernel make gets explicit paths.
: "${IVNET_CACHE:=/var/cache/ivshmem-net}"
: "${BINDGEN_VERSION:=0.69.5}"
: "${BINDGEN:=$IVNET_CACHE/tools/bindgen-$BINDGEN_VERSION/bin/bindgen}"
: "${RUSTC:=/usr/bin/rustc}"
: "${RUSTDOC:=/usr/bin/rustdoc}"
KMAKE_FLAGS="LLVM=1 RUSTC=$RUSTC HOSTRUSTC=$RUSTC RUSTDOC=$RUSTDOC BINDGEN=$BINDGEN"
export IVNET_CACHE BINDGEN RUSTC RUSTDOC KMAKE_FLAGS
