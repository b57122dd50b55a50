#!/usr/bin/env bash
# The benchmark command (docs/benchmarks.md): builds the workspace in
# release mode, then runs the benchmarks. The build comes first because the
# node binary and the plugin libraries the benchmarks load are not
# dependencies cargo would build for the bench crate. Arguments go to
# eventhost-bench: a benchmark's name (default all), --quick, --out FILE.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --workspace --locked
exec target/release/eventhost-bench "$@"
