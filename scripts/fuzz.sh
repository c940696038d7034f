#!/usr/bin/env bash
# Coverage-guided fuzzing of punktfunk-core with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60: about 4-5 minutes in all)
#
# Targets (fuzz/fuzz_targets/): wire_headers, control_msg, reassembler,
# client_datagrams. Each runs for SECONDS_PER_TARGET (-max_total_time) with a
# 2 GiB RSS limit and a 10 s per-input timeout, one after the other on one
# core. The corpus grows in fuzz/corpus/<target>/ (seeded from the committed
# fuzz/seeds/<target>/, git-ignored); crashes land in fuzz/artifacts/<target>/
# and the libFuzzer log of each run in fuzz/logs/<target>.log. Exits non-zero
# if any target crashed, timed out or ran out of memory, naming the artifact
# and the command that reproduces it.
#
# Environment:
#   FUZZ_TARGETS="a b"     run only these targets
#   FUZZ_SANITIZER=none    (default) or address / leak / memory / thread
#   CARGO_TARGET_DIR       the fuzz build goes to $CARGO_TARGET_DIR/fuzz (default: fuzz/target)
#
# Toolchain choice: this runs on the STABLE toolchain. cargo-fuzz's own
# instrumentation (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*,
# --cfg fuzzing, -Cdebug-assertions) is all stable rustc, so with
# `--sanitizer none` (the default here) no unstable switch is needed at all.
# A sanitizer needs `-Zsanitizer=...`, which only nightly accepts; the stable
# toolchain ships the runtimes (lib/rustlib/<host>/lib/librustc-stable_rt.asan.a
# etc.), so FUZZ_SANITIZER=address sets RUSTC_BOOTSTRAP=1 for this script's
# cargo calls only, and nothing else in the repository needs nightly. None is
# the default because the core is `#![deny(unsafe_code)]` outside the socket
# shim (which no target reaches) and its C/assembly dependencies are not
# instrumented by rustc flags anyway, so AddressSanitizer finds little here
# and costs most of the speed (control_msg: ~20k instead of ~120k executions
# per second on the 2-core dev machine). Without a sanitizer the runs still
# have debug assertions and overflow checks. Memory is bounded by
# -rss_limit_mb and by explicit bounds the targets assert.
# libFuzzer's -malloc_limit_mb needs a sanitizer's malloc hooks, so only
# FUZZ_SANITIZER=address catches a single huge allocation as it happens.
#
# cargo-fuzz is installed from crates.io (`cargo install cargo-fuzz --locked`, pinned)
# if it is missing.

set -euo pipefail

SECS="${1:-60}"
if ! [[ "$SECS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET]   (a positive integer, default 60)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ="$ROOT/fuzz"
SANITIZER="${FUZZ_SANITIZER:-none}"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-wire_headers control_msg reassembler client_datagrams}"
RSS_LIMIT_MB=2048
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked --version $CARGO_FUZZ_VERSION)"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
echo "==> $(cargo fuzz --version | head -n1), $(rustc --version)"

if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
else
    TARGET_DIR="$FUZZ/target"
fi
case "$SANITIZER" in
    none) ;;
    address | leak | memory | thread)
        # -Zsanitizer is unstable: allow it on the stable compiler, in this script only.
        export RUSTC_BOOTSTRAP=1
        short="$(printf '%s' "$SANITIZER" | sed 's/address/asan/; s/leak/lsan/; s/memory/msan/; s/thread/tsan/')"
        host="$(rustc -vV | sed -n 's/^host: //p')"
        rt="$(rustc --print sysroot)/lib/rustlib/$host/lib/librustc-stable_rt.$short.a"
        if [[ ! -f "$rt" ]]; then
            echo "error: no $SANITIZER runtime for this toolchain ($rt)" >&2
            exit 2
        fi
        # Separate build directory: switching sanitizers would rebuild everything.
        TARGET_DIR="$TARGET_DIR-$SANITIZER"
        ;;
    *)
        echo "error: FUZZ_SANITIZER must be none, address, leak, memory or thread" >&2
        exit 2
        ;;
esac

# Warnings in the targets fail the build. cargo-fuzz appends RUSTFLAGS to its
# own flags; build and run must see the same value, or run rebuilds everything.
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"

cd "$ROOT"
echo "==> building ${TARGETS[*]} (sanitizer: $SANITIZER, target dir: $TARGET_DIR)"
for t in "${TARGETS[@]}"; do
    cargo fuzz build --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$t"
done

mkdir -p "$FUZZ/logs"
failed=()
for t in "${TARGETS[@]}"; do
    corpus="$FUZZ/corpus/$t"
    mkdir -p "$corpus" "$FUZZ/artifacts/$t"
    if [[ -d "$FUZZ/seeds/$t" ]]; then
        cp -n "$FUZZ/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$FUZZ/logs/$t.log"
    echo "==> $t: ${SECS}s, corpus $corpus"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$t" "$corpus" -- \
        -max_total_time="$SECS" -rss_limit_mb="$RSS_LIMIT_MB" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 || true)"
    execs="$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n1)"
    echo "    ${done_line:-(no DONE line)}"
    echo "    executions: ${execs:-?}; log: $log"
    if [[ $rc -ne 0 ]]; then
        artifacts="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")"
        echo "!!! $t FAILED (exit $rc)"
        grep -E "panicked at|^SUMMARY|ERROR: libFuzzer" "$log" | head -n5 | sed 's/^/    /' || true
        for a in $artifacts; do
            echo "    artifact: $a"
            echo "    reproduce: cargo fuzz run --sanitizer $SANITIZER --target-dir $TARGET_DIR $t $a"
        done
        failed+=("$t")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "==> FAILED: ${failed[*]} (see the artifacts above; minimize with: cargo fuzz tmin --sanitizer $SANITIZER <target> <artifact>)"
    exit 1
fi
echo "==> all targets ran ${SECS}s without a crash"
