#!/usr/bin/env bash
# The Rust tests of the unsafe code (the UDP syscall shim in
# punktfunk_core::transport::sys, and the session paths over it) under
# AddressSanitizer.
#
# AddressSanitizer needs `-Zsanitizer=address`, an unstable compiler switch.
# The stable toolchain ships the sanitizer runtime, so RUSTC_BOOTSTRAP=1 (set
# here, for this one command, and nowhere else in the project) unlocks it
# without a nightly toolchain. Miri cannot run these tests: they make real
# socket system calls, which Miri does not emulate.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}/asan"
host="$(rustc -vV | sed -n 's/^host: //p')"
echo "== AddressSanitizer: transport and session tests ($host)"
# --target keeps build scripts and proc macros uninstrumented.
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1" \
  CARGO_TARGET_DIR="$target" \
  cargo test -q -p punktfunk-core -p punktfunk-tools --lib --target "$host" -- transport:: session:: relay:: \
  --skip the_paced_sender_spreads
# (The burst-shape test measures timing, which the sanitizer's slowdown
# distorts; it runs uninstrumented in `npm run test:rust`.)
