#!/usr/bin/env bash
# The test command (README "Quick start"): builds the host and every plugin,
# test fixtures included, runs the Rust tests, then the Python end-to-end
# tests (the drivers from PyPI, a WebSocket client) in a venv it makes. The
# end-to-end tests load the built libraries, and cannot build them
# themselves while `cargo test` holds the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building the host and every plugin"
cargo build --workspace --locked
echo "== Rust tests"
cargo test --workspace --locked

echo "== Python end-to-end tests"
venv=tests/python/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r tests/python/requirements.txt
# bigchaindb-driver 0.6.2's own pins do not build on Python 3.11: install it
# without them, then the versions it works with.
"${pip[@]}" --no-deps bigchaindb-driver==0.6.2
"${pip[@]}" -r tests/python/requirements-bigchaindb.txt
"$venv/bin/python" -m pytest -q tests/python
