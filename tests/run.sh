#!/usr/bin/env bash
# The test command (README "Quick start"): builds the host and every plugin,
# test fixtures included, makes sure RabbitMQ runs on loopback for the AMQP
# plugin's tests (installing it when absent), runs the Rust tests, then the
# Python end-to-end tests (the drivers from PyPI, a WebSocket client) in a
# venv it makes. The end-to-end tests load the built libraries, and cannot
# build them themselves while `cargo test` holds the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."

# The AMQP plugin's tests need RabbitMQ on 127.0.0.1:5672 (guest/guest).
# Installs it when absent (Debian, as root) and starts it when not running,
# listening on loopback only. EVENTHOST_TEST_AMQP_URL names another broker
# instead, and then nothing is installed or started.
ensure_rabbitmq() {
  if [ -n "${EVENTHOST_TEST_AMQP_URL:-}" ]; then
    echo "using the broker in EVENTHOST_TEST_AMQP_URL"
    return
  fi
  if ! command -v rabbitmq-server >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
      echo "rabbitmq-server is not installed: run as root, or apt-get install rabbitmq-server" >&2
      exit 1
    fi
    echo "installing rabbitmq-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
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
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
      rabbitmq-server -detached
    rabbitmqctl -q wait --timeout 60 "/var/lib/rabbitmq/mnesia/rabbit@$(hostname -s).pid"
  fi
}

echo "== building the host and every plugin"
cargo build --workspace --locked
echo "== RabbitMQ"
ensure_rabbitmq
echo "== Rust tests"
cargo test --workspace --locked

echo "== Python end-to-end tests"
# The wss:// test makes its certificate with the README's openssl command.
if ! command -v openssl >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing openssl"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
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
