#!/usr/bin/env bash
# Engine.IO v4 and Socket.IO v5 protocol conformance: the Node.js suites in
# tests/socketio-suites/ run against the two fixtures built on roomcast-socketio:
# engineio.test.js against `eio-fixture` (Engine.IO echo), socketio.test.js (the Socket.IO
# protocol, and the Engine.IO behaviours again on /socket.io/) and client.test.js (the npm
# socket.io-client) against `sio-fixture`. Each fixture listens on a free port of 127.0.0.1
# and is stopped after its suites. Prints `socketio-suites: N passed, M failed` and fails
# on any failed test, a suite that did not finish, or a fixture that died.
#
# Needs: the Rust toolchain, Node.js >= 20 with npm, and the npm registry for the first
# `npm ci` (exact versions from tests/socketio-suites/package-lock.json). About 15 s once
# built. See tests/socketio-suites/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
start=$SECONDS
target=${CARGO_TARGET_DIR:-$PWD/target}
out=$target/socketio-suites
suites=tests/socketio-suites
# Seconds for one `node --test` run (about 6 s when the fixture behaves).
run_timeout=120

log() { printf 'socketio-suites: %s\n' "$*" >&2; }

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    log "$tool is required (Node.js >= 20)"
    exit 1
  fi
done
if (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
  log "Node.js >= 20 is required, found $(node --version)"
  exit 1
fi

# --- the suites' npm dependencies, pinned by the lockfile ---
(cd "$suites" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)

# --- the fixtures ---
cargo build --release --locked --quiet -p roomcast-examples --bin eio-fixture --bin sio-fixture
mkdir -p "$out"
rm -f "$out"/*.tap

fixture_pid=
cleanup() {
  if [[ -n $fixture_pid ]]; then
    kill "$fixture_pid" 2>/dev/null || true
    wait "$fixture_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
# Turn signals into an exit so the EXIT trap runs for them too.
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts fixture $1 on a free port; sets fixture_pid and fixture_url.
start_fixture() {
  local name=$1
  : >"$out/$name.out"
  "$target/release/$name" 127.0.0.1:0 >"$out/$name.out" 2>"$out/$name.log" &
  fixture_pid=$!
  fixture_url=
  for _ in $(seq 100); do
    fixture_url=$(sed -n 's/^listening on //p' "$out/$name.out")
    [[ -n $fixture_url ]] && return 0
    if ! kill -0 "$fixture_pid" 2>/dev/null; then
      log "$name exited before listening:"
      cat "$out/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  log "$name did not start listening within 10 s"
  exit 1
}

stop_fixture() {
  local name=$1
  if ! kill -0 "$fixture_pid" 2>/dev/null; then
    log "$name died during the run:"
    tail -n 20 "$out/$name.log" >&2
    status=1
  fi
  cleanup
  fixture_pid=
}

status=0
# Runs suite files "${@:3}" with the fixture URL in variable $2; results in $out/$1.tap.
run_suite() {
  local name=$1 variable=$2
  shift 2
  log "running $* against $fixture_url"
  if ! (cd "$suites" && env "$variable=$fixture_url" timeout --kill-after=10 "$run_timeout" \
    node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stderr \
    --test-reporter=tap --test-reporter-destination="$out/$name.tap" "$@"); then
    log "$name: failures or an unfinished run (fixture log: $out/)"
    status=1
  fi
}

start_fixture eio-fixture
run_suite engineio EIO_URL engineio.test.js
stop_fixture eio-fixture

start_fixture sio-fixture
run_suite socketio SIO_URL socketio.test.js client.test.js
stop_fixture sio-fixture

# --- summary: node's TAP reporter ends with `# pass N` and `# fail N` ---
read -r passed failed < <(awk '
  /^# pass / { p += $3 } /^# fail / { f += $3 } END { print p + 0, f + 0 }
' "$out"/*.tap)
if ((passed == 0)); then
  log "no test ran"
  status=1
fi
if ((failed > 0)); then
  status=1
fi
log "done in $((SECONDS - start)) s"
echo "socketio-suites: $passed passed, $failed failed"
exit "$status"
