#!/usr/bin/env bash
# The soak test (docs/operations.md, "Soak test"): builds the workspace in
# release mode (the node binary and the plugin libraries it loads are not
# dependencies cargo would build for the driver), then runs the real node
# for SECONDS (default 120) under mixed load with kill -9 and restarts, and
# checks that nothing acknowledged was lost. Exits non-zero on any
# violation. Other arguments go to eventhost-soak (`--help`).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --workspace --locked
exec target/release/eventhost-soak "$@"
