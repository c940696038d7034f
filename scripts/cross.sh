#!/usr/bin/env bash
# Cross builds on this x86_64 Linux machine. Part of `npm test` (`npm run
# test:cross`).
#
# linux-arm64-gnu (aarch64-unknown-linux-gnu), linked by Debian's
# gcc-aarch64-linux-gnu:
#   - the Node addon, through `napi build --platform --target`; the result
#     must be an aarch64 shared object exporting napi_register_module_v1;
#   - the C library, with the C harness linked against it and run under
#     qemu-user;
#   - the core's Rust tests, run under qemu-user (`qemu-aarch64-static -L
#     /usr/aarch64-linux-gnu` as cargo's runner). Tests that need what
#     qemu-user lacks are skipped, each with its reason printed below.
# linux-x64-musl (x86_64-unknown-linux-musl): the C library, with the C
#   harness linked statically against it and musl (musl-gcc -static) and run.
#
# Everything builds in the dev profile (dependencies optimised, see
# Cargo.toml), so the addon, the library and the tests share one build of the
# dependencies per target; the release workflow builds the shipped addons.
# macOS and Windows cannot be linked here: only the release workflow
# (.github/workflows/release.yml) builds and tests them, on runners of their own.
#
# Installs what it lacks: the rustup targets, and (as root, after apt-get
# update) gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user-static and
# musl-tools from Debian. PUNKTFUNK_SKIP_CROSS=1 skips it all.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PUNKTFUNK_SKIP_CROSS:-}" = 1 ]; then
  echo "cross: skipped (PUNKTFUNK_SKIP_CROSS=1)"
  exit 0
fi

ARM=aarch64-unknown-linux-gnu
MUSL=x86_64-unknown-linux-musl
SYSROOT=/usr/aarch64-linux-gnu

echo "== cross: toolchains"
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e "$SYSROOT/lib/libc.so.6" ] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cross: missing Debian packages: ${missing[*]} (apt-get install them, or set PUNKTFUNK_SKIP_CROSS=1)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
installed="$(rustup target list --installed)"
for t in "$ARM" "$MUSL"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L $SYSROOT"
export CC_x86_64_unknown_linux_musl=musl-gcc
# Line tables are enough for a backtrace, and link much faster than full debug info.
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
out="$target_dir/cross"
mkdir -p "$out"
cflags=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude -DPUNKTFUNK_FEATURE_QUIC)
libs=(-lpthread -ldl -lm)
start=$SECONDS

echo "== cross: linux-arm64-gnu Node addon (napi build --target $ARM)"
npx napi build --platform --target "$ARM" --manifest-path crates/punktfunk-node/Cargo.toml \
  --package punktfunk-node --output-dir "$out" --no-js --dts binding.d.ts
addon="$out/punktfunk-core.linux-arm64-gnu.node"
aarch64-linux-gnu-readelf -h "$addon" | grep -q 'Machine:.*AArch64' || { echo "cross: $addon is not an AArch64 object" >&2; exit 1; }
aarch64-linux-gnu-readelf -h "$addon" | grep -q 'Type:.*DYN' || { echo "cross: $addon is not a shared object" >&2; exit 1; }
aarch64-linux-gnu-readelf --dyn-syms -W "$addon" | grep -q ' napi_register_module_v1$' ||
  { echo "cross: $addon does not export napi_register_module_v1" >&2; exit 1; }
echo "ok: $(basename "$addon"), AArch64 shared object exporting napi_register_module_v1"

echo "== cross: linux-arm64-gnu C library and harness (under qemu-user)"
cargo build --quiet -p punktfunk-ffi --target "$ARM"
aarch64-linux-gnu-gcc "${cflags[@]}" tests/c/harness.c "$target_dir/$ARM/debug/libpunktfunk_core.a" "${libs[@]}" \
  -o "$out/harness-arm64"
RUST_BACKTRACE=0 qemu-aarch64-static -L "$SYSROOT" "$out/harness-arm64"

echo "== cross: linux-arm64-gnu core tests (under qemu-user)"
# Skipped under qemu-user, with the reason: each needs what emulation lacks.
skips=(
  "the_paced_sender_spreads_a_frame_into_small_bursts|qemu-user refuses SO_TIMESTAMPNS (ENOPROTOOPT), which the test reads send gaps with"
  "speed_test_reports_what_arrived|needs 200 Mbit/s through the data plane; emulation delivers less than half"
  "one_clients_probe_and_fec_churn|a speed test under emulation outlasts the host's probe deadline"
  "rising_loss_is_met_quickly|counts frames lost within real-time deadlines that emulation misses"
)
skip_args=()
for s in "${skips[@]}"; do
  echo "skipped under qemu-user: ${s%%|*}: ${s#*|}"
  skip_args+=(--skip "${s%%|*}")
done
cargo test -p punktfunk-core --all-features --target "$ARM" -- "${skip_args[@]}"

echo "== cross: linux-x64-musl C library and harness (static)"
# (cargo notes that it drops the cdylib: a static musl target has none.)
cargo build --quiet -p punktfunk-ffi --target "$MUSL"
# Rust's musl std unwinds with its own libunwind (shipped with the target),
# not gcc's libgcc_eh, which is built for glibc; that unwinder finds unwind
# tables through PT_GNU_EH_FRAME, which gcc emits for static links only when
# asked (--eh-frame-hdr). Without both, a caught panic aborts.
unwind="$(rustc --print sysroot)/lib/rustlib/$MUSL/lib/self-contained/libunwind.a"
musl-gcc -static -Wl,--eh-frame-hdr "${cflags[@]}" tests/c/harness.c "$target_dir/$MUSL/debug/libpunktfunk_core.a" \
  "$unwind" -lpthread -lm -o "$out/harness-musl"
if readelf -l "$out/harness-musl" | grep -q INTERP; then
  echo "cross: harness-musl is not statically linked" >&2
  exit 1
fi
RUST_BACKTRACE=0 "$out/harness-musl"

echo "cross: done in $((SECONDS - start)) s"
