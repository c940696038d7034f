#!/usr/bin/env bash
# Builds the static C library, compiles the C harness and the example from
# docs/C-API.md with the system compiler (-std=c11 -Wall -Wextra -Werror), runs
# both, then runs the harness under valgrind memcheck (zero errors, no
# definite leaks). Part of `npm test`.
#
# Without valgrind the memcheck step fails with a hint; set
# PUNKTFUNK_SKIP_VALGRIND=1 to skip it knowingly (.ci/run installs valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p punktfunk-ffi
target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
lib="$target_dir/release/libpunktfunk_core.a"
out="$target_dir/c-tests"
mkdir -p "$out"

cc="${CC:-cc}"
cflags=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude -DPUNKTFUNK_FEATURE_QUIC)
libs=(-lpthread -ldl -lm)

# The example in docs/C-API.md is compiled and run as it stands in the doc.
awk '/^```c$/{inside=1; next} /^```$/{inside=0} inside' docs/C-API.md > "$out/example.c"
test -s "$out/example.c" || { echo "test-c: no \`\`\`c block found in docs/C-API.md" >&2; exit 1; }

"$cc" "${cflags[@]}" tests/c/harness.c "$lib" "${libs[@]}" -o "$out/harness"
"$cc" "${cflags[@]}" "$out/example.c" "$lib" "${libs[@]}" -o "$out/example"

echo "== C harness"
RUST_BACKTRACE=0 "$out/harness"
echo "== C example from docs/C-API.md"
"$out/example"

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "${PUNKTFUNK_SKIP_VALGRIND:-}" = 1 ]; then
    echo "test-c: valgrind not installed; memcheck skipped (PUNKTFUNK_SKIP_VALGRIND=1)"
    exit 0
  fi
  echo "test-c: valgrind is not installed (apt-get install valgrind), or set PUNKTFUNK_SKIP_VALGRIND=1" >&2
  exit 1
fi
echo "== C harness under valgrind memcheck"
RUST_BACKTRACE=0 valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --suppressions=tests/c/valgrind.supp "$out/harness"
echo "valgrind: no errors, no definite leaks"
