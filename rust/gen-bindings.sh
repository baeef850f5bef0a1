#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Generate the module's own bindings for bindings_helper.h with the exact bindgen and clang flags
# the kernel used for rust/bindings (read from the build tree's .cmd file), plus C wrappers for
# the static inline functions in the allowlist (bindgen --wrap-static-fns).
#
#   gen-bindings.sh KDIR OUT.rs WRAP.c
set -euo pipefail
kdir=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$2")
wrap=$(realpath -m "$3")
: "${BINDGEN:?BINDGEN must name bindgen-cli}"

cmdfile=$kdir/rust/bindings/.bindings_generated.rs.cmd
[ -r "$cmdfile" ] || { echo "gen-bindings: $cmdfile missing: build the kernel first" >&2; exit 1; }
cmd=$(sed -n '1s/^savedcmd_[^ ]* := //p' "$cmdfile" | sed 's/ ; sed .*$//')
# bindgen's own options sit between the header path and '-o ...'; clang's after ' -- '.
bgopts=$(echo "$cmd" | sed -e 's/^[^ ]* [^ ]* //' -e 's/ -o rust\/bindings\/bindings_generated.rs -- .*//')
cflags=$(echo "$cmd" | sed -e 's/.* -o rust\/bindings\/bindings_generated.rs -- //' \
    -e 's/-Wp,-MMD,[^ ]*//' \
    -e 's/-DKBUILD_MODFILE=[^ ]*//; s/-DKBUILD_BASENAME=[^ ]*//; s/-DKBUILD_MODNAME=[^ ]*//; s/-D__KBUILD_MODNAME=[^ ]*//')

allow_fn=$(grep -v '^#' "$here/bindings.allowlist" | sed -n 's/^fn //p' | paste -sd'|')
allow_ty=$(grep -v '^#' "$here/bindings.allowlist" | sed -n 's/^type //p' | paste -sd'|')
allow_var=$(grep -v '^#' "$here/bindings.allowlist" | sed -n 's/^var //p' | paste -sd'|')

mkdir -p "$(dirname "$out")" "$(dirname "$wrap")"
cd "$kdir"  # the kernel's flags use paths relative to its build directory
eval "\"\$BINDGEN\" \"$here/bindings_helper.h\" $bgopts \
    --experimental --wrap-static-fns --wrap-static-fns-path \"\${wrap%.c}\" \
    --allowlist-function \"\$allow_fn\" --allowlist-type \"\$allow_ty\" --allowlist-var \"\$allow_var\" \
    -o \"\$out.tmp\" -- $cflags -I\"$here\" '-DKBUILD_MODNAME=\"ivshmem_net\"'"
mv "$out.tmp" "$out"
