#!/usr/bin/env bash
# The test command (README "Quick start"): builds the host and every plugin,
# test fixtures included, then runs every test. The end-to-end tests load the
# built libraries, and cannot build them themselves while `cargo test` holds
# the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building the host and every plugin"
cargo build --workspace --locked
echo "== running the tests"
cargo test --workspace --locked
