#!/usr/bin/env bash
# Fuzzes each target for a bounded time: host/fuzz/run.sh [SECONDS [TARGET...]]
# (default 60 s, every [[bin]] in host/fuzz/Cargo.toml). Installs cargo-fuzz
# if missing, builds once, runs each target on its seeds (seeds/<target>,
# committed) plus its working corpus (corpus/<target>, kept between local
# runs, not committed), prints one summary line per target and exits
# non-zero if any target crashed, hung or ran out of memory; the input is
# then in artifacts/<target>/ and the log in target/fuzz-logs/<target>.log.
#
# Works on a stable toolchain: `--sanitizer none` leaves out the nightly-only
# `-Zsanitizer`, and what is left (libFuzzer and SanitizerCoverage through
# `-C` codegen flags) is stable. The code fuzzed is safe Rust, so
# AddressSanitizer would add little but slowness; debug assertions (`-a`)
# stay on so arithmetic overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")/.."   # cargo fuzz looks for ./fuzz
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))

cargo_fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "== installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
if ! command -v c++ >/dev/null; then
  echo "libFuzzer is C++: install a C++ compiler (Debian: apt-get install g++)" >&2
  exit 1
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
flags=(--sanitizer none --debug-assertions)

# No --locked (cargo fuzz has none either): fuzz/Cargo.lock pins
# libFuzzer and the host's dependencies, but a dependency added to the host
# should not fail fuzzing until someone refreshes this second lock file;
# cargo then adds what is missing and changes nothing it need not.
echo "== building the fuzz targets"
started=$SECONDS
cargo fuzz build "${flags[@]}"
echo "built in $((SECONDS - started)) s"

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
final_stat() { sed -n "s/^stat::$1: *//p" "$log"; }
failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  corpora=("fuzz/corpus/$target")
  if [ -d "fuzz/seeds/$target" ]; then
    corpora+=("fuzz/seeds/$target")
  fi
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  if [ -f "fuzz/dicts/$target.dict" ]; then
    args+=(-dict="fuzz/dicts/$target.dict")
  fi
  log="$logs/$target.log"
  if cargo fuzz run "${flags[@]}" "$target" "${corpora[@]}" -- "${args[@]}" >"$log" 2>&1; then
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    echo "fuzz $target: ok, $(final_stat number_of_executed_units) runs in ${seconds} s" \
      "($(final_stat average_exec_per_sec)/s), ${cov:-cov: ?} edges," \
      "$(find "fuzz/corpus/$target" -type f | wc -l) inputs in corpus/$target"
  else
    failed+=("$target")
    # The panic or libFuzzer's verdict, and how to reproduce; the whole
    # log (every new coverage line, the input's bytes) is in $log.
    echo "fuzz $target: FAILED (full log: host/$log)"
    grep -E -A4 'panicked at|ERROR: libFuzzer|ALARM:' "$log" | head -n 20 || true
    grep -A2 'Reproduce with:' "$log" || tail -n 20 "$log"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in host/fuzz/artifacts/)" >&2
  exit 1
fi
