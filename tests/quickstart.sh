#!/usr/bin/env bash
# The README's quick start and a scaffolded plugin, as a newcomer runs them,
# on a clean clone of this repository (its committed HEAD). CI runs it after
# the tests and benchmarks.
#
# It runs the README's `quickstart: start` block in the clone (the
# `eventhost run` line in the background), then its `quickstart: post`
# block, and checks every answer against the test vectors; stops the node
# with SIGINT, starts over as the README says (rm -rf data) and checks that a
# posted transaction is new again; then runs `eventhost new-plugin` and the
# two commands it prints, and checks that the plugin received every event.
#
# To keep it short it reuses this checkout's build outputs: the clone's
# target/ is a link to this one's (the workspace's own crates are rebuilt,
# their dependencies are not), and the plugin builds in the tests' shared
# target/external-plugins. The clone is at the same path every run (one per
# checkout), so that reruns replace its artifacts rather than add to them. `cargo install` installs into a temporary
# directory, never ~/.cargo/bin. The node listens on 127.0.0.1:9984 and
# 9985, as the README's configuration says: nothing else may hold them.
# Each step prints how long it took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# One directory per checkout, the same every run: the clone's own crates
# then build to the same artifact names in the shared target directory
# each time, instead of piling up a set per run.
work="${TMPDIR:-/tmp}/eventhost-quickstart-$(printf %s "$root" | cksum | cut -d' ' -f1)"
if [ -e "$work" ]; then
  rm -rf "$work"
fi
mkdir -p "$work"
node_pid=
started=$SECONDS
step_started=$SECONDS

stop_node() {
  [ -n "$node_pid" ] || return 0
  kill -INT "$node_pid" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$node_pid" 2>/dev/null; then
    echo "the node did not stop within 30 s of SIGINT; killing it" >&2
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  local status=0
  wait "$node_pid" || status=$?
  node_pid=
  return "$status"
}
cleanup() {
  stop_node >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "quickstart: $*" >&2
  exit 1
}
step() {
  echo "   ($((SECONDS - step_started)) s)"
  step_started=$SECONDS
  echo "== $*"
}

# The lines of the ```sh block after the README line starting with
# `<!-- quickstart: NAME`.
block() {
  awk -v marker="<!-- quickstart: $1" '
    index($0, marker) == 1 { found = 1; next }
    found && !inside && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
  ' README.md
}

start_node() {
  local line=$1
  if curl -s -o /dev/null http://127.0.0.1:9984/; then
    fail "something already listens on 127.0.0.1:9984 (another eventhost?); stop it first"
  fi
  bash -c "exec $line" >"$work/node.out" 2>"$work/node.log" &
  node_pid=$!
  for _ in $(seq 600); do
    if curl -sf -o /dev/null http://127.0.0.1:9984/api/v1/; then
      return
    fi
    kill -0 "$node_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/node.log" >&2
  fail "\`$line\` did not serve http://127.0.0.1:9984 within 60 s (its log is above)"
}

echo "== clone $root into $work"
git clone --quiet "$root" "$work/eventhost"
cd "$work/eventhost"
ln -s "$root/target" target
export CARGO_INSTALL_ROOT="$work/cargo-install"
export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
[ -z "$(command -v eventhost || true)" ] || [ "$(command -v eventhost)" = "$CARGO_INSTALL_ROOT/bin/eventhost" ] ||
  echo "note: an eventhost is on PATH; the one the quick start installs comes first"

start_block=$(block start)
[ -n "$start_block" ] || fail "README.md has no \`<!-- quickstart: start\` block"
run_line=
while IFS= read -r line; do
  case "$line" in
  "eventhost run"*)
    run_line=$line
    ;;
  *)
    step "README: $line"
    bash -c "$line" || fail "the README's quick start failed at: $line"
    ;;
  esac
done <<<"$start_block"
[ -n "$run_line" ] || fail "the README's quick start no longer runs the node with \`eventhost run\`"

step "README: $run_line (in the background)"
start_node "$run_line"

step "README: the quickstart: post block"
post_block=$(block post)
[ -n "$post_block" ] || fail "README.md has no \`<!-- quickstart: post\` block"
bash -c "$post_block" >"$work/post.out" || fail "the README's post block failed"
python3 - "$work/post.out" <<'EOF' || fail "the answers to the README's posts are not what it says (above)"
import json, sys

vectors = [v["transaction"] for v in json.load(open("tests/fixtures/vectors/bigchaindb-2.0.json"))]
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
assert len(lines) == 4, f"expected 4 answers, got {len(lines)}: {lines}"
answers = [json.loads(l) for l in lines]
assert answers[0] == vectors[0], f"post 0 answered {lines[0]}"
assert answers[1] == vectors[2], f"post 2 answered {lines[1]}"
assert answers[2]["status"] == 400 and "DuplicateTransaction" in answers[2]["message"], lines[2]
assert answers[3] == {"height": 2, "transactions": [vectors[2]]}, f"block 2 is {lines[3]}"
print("   the answers are the README's: the CREATE, the TRANSFER, DuplicateTransaction, block 2")
EOF
printed=$(grep -c '^BLOCK_VALID seq=[12] height=[12] ' "$work/node.out" || true)
[ "$printed" = 2 ] || fail "the printer plugin printed $printed of 2 blocks: $(cat "$work/node.out")"

step "stop the node with SIGINT"
stop_node || fail "the node exited with status $? on SIGINT: $(tail -5 "$work/node.log")"

step "start over: rm -rf data, run again, post 0 again"
rm -rf data
start_node "$run_line"
answers=$(bash -c "$post_block")
again=${answers%%$'\n'*}
python3 -c "import json,sys; a = json.loads(sys.argv[1]); assert 'status' not in a, a" "$again" ||
  fail "after rm -rf data, post 0 was refused: $again"
stop_node || fail "the node exited with status $? on SIGINT"

step "eventhost new-plugin hello --dir $work/plugins"
export CARGO_TARGET_DIR="$root/target/external-plugins"
scaffold=$(eventhost new-plugin hello --dir "$work/plugins")
echo "$scaffold" | sed 's/^/   | /'
grep -q "path = \"$work/eventhost/plugin-api\"" "$work/plugins/hello/Cargo.toml" ||
  fail "the scaffold does not depend on the clone's plugin-api: $(grep plugin-api "$work/plugins/hello/Cargo.toml")"
build_line=$(echo "$scaffold" | sed -n 's/^  \(cargo build .*\)$/\1/p')
run_plugin_line=$(echo "$scaffold" | sed -n 's/^  \(eventhost --config .* replay .*\)$/\1/p')
[ -n "$build_line" ] && [ -n "$run_plugin_line" ] || fail "new-plugin printed no build or run command"

step "$build_line"
(cd "$work" && bash -c "$build_line") || fail "the scaffolded plugin does not build"

step "$run_plugin_line"
(cd "$work" && RUST_LOG=info bash -c "$run_plugin_line") 2>"$work/plugin.log" ||
  fail "the scaffolded plugin does not run: $(cat "$work/plugin.log")"
received=$(grep -c 'eventhost::plugin: BLOCK_\(IN\)\?VALID at height .* plugin="hello"' "$work/plugin.log" || true)
[ "$received" = 4 ] || fail "the scaffolded plugin logged $received of 4 events: $(cat "$work/plugin.log")"

step "done"
echo "quickstart: the README's quick start and a scaffolded plugin work on a clean clone ($((SECONDS - started)) s)"
