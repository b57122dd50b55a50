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

# Python clients against the same build: a virtualenv of their own, made
# once, with the packages of tests/python/requirements.txt.
echo "== running the Python tests"
venv=tests/python/.venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
"$venv/bin/python" -m pytest -q tests/python
