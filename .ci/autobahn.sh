#!/usr/bin/env bash
# Autobahn WebSocket conformance: the suite's client (kosoku, from PyPI) drives every case of
# sections 1-10 (12 and 13 need permessage-deflate, which we do not implement) against
# `ws-echo`, an echo server on roomcast-engine. The verdicts are normalized to
# `case-id behavior behaviorClose` lines in target/autobahn/results.txt and compared with
# tests/autobahn/expected.txt. Fails on any difference, any missing case, and any verdict
# other than OK, NON-STRICT or INFORMATIONAL. See tests/autobahn/README.md.
#
# Needs: the Rust toolchain, Python >= 3.10 with pip (PYTHON overrides `python3`), and
# PyPI for the first run. About 20 s once built, 90 s from an empty target dir.
set -euo pipefail

cd "$(dirname "$0")/.."
start=$SECONDS
target=${CARGO_TARGET_DIR:-$PWD/target}
out=$target/autobahn
venv=$out/venv
python=${PYTHON:-python3}
expected=tests/autobahn/expected.txt
results=$out/results.txt
# Seconds for the suite itself (about 20 s when the server behaves), then for the whole
# Python process in case the runner hangs on a socket.
run_timeout=300

log() { printf 'autobahn: %s\n' "$*" >&2; }

if [[ ! -s $expected ]]; then
  log "$expected is missing or empty"
  exit 1
fi

# --- the runner, pinned by version and hash, in a venv under target/ ---
mkdir -p "$out"
if [[ ! -x $venv/bin/python ]] && ! "$python" -m venv "$venv" >/dev/null 2>&1; then
  # Debian's python3 without python3-venv cannot make a venv with pip in it; a plain
  # install directory works with any pip.
  rm -rf "$venv"
  log "no venv module, installing the runner into $out/pylib"
  "$python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    --target "$out/pylib" --upgrade -r tests/autobahn/requirements.txt
  runner=("$python")
  export PYTHONPATH=$out/pylib${PYTHONPATH:+:$PYTHONPATH}
else
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r tests/autobahn/requirements.txt
  runner=("$venv/bin/python")
fi

# --- the server under test ---
cargo build --release --quiet -p roomcast-examples --bin ws-echo
rm -f "$results" "$out/failures.txt"
# Created here, not by the redirection below: the server's shell may open it after the
# first poll.
: >"$out/server.out"
# Port 0: the server picks a free port and prints it, so no other process can race us to it.
"$target/release/ws-echo" 127.0.0.1:0 >"$out/server.out" 2>"$out/server.log" &
server=$!
runner_pid=
cleanup() {
  if [[ -n $runner_pid ]]; then
    kill "$runner_pid" 2>/dev/null || true
  fi
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
# Turn signals into an exit so the EXIT trap runs for them too.
trap 'exit 130' INT
trap 'exit 143' TERM

url=
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on //p' "$out/server.out")
  [[ -n $url ]] && break
  if ! kill -0 "$server" 2>/dev/null; then
    log "ws-echo exited before listening:"
    cat "$out/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $url ]]; then
  log "ws-echo did not start listening within 10 s"
  exit 1
fi

# --- the suite ---
log "running sections 1-10 against $url"
# In the background so that a signal reaches the traps now, not when the run is over.
timeout --kill-after=10 $((run_timeout + 30)) "${runner[@]}" tests/autobahn/run.py "$url" \
  --config tests/autobahn/fuzzingclient.json --outdir "$out" --timeout "$run_timeout" &
runner_pid=$!
if ! wait "$runner_pid"; then
  runner_pid=
  log "the runner failed; server log: $out/server.log"
  tail -n 20 "$out/server.log" >&2
  exit 1
fi
runner_pid=
if ! kill -0 "$server" 2>/dev/null; then
  log "ws-echo died during the run:"
  tail -n 20 "$out/server.log" >&2
  exit 1
fi

# --- verdicts ---
# A case passes when both verdicts are OK, NON-STRICT or INFORMATIONAL; an expected case
# without a result counts as failed.
read -r passed failed < <(awk '
  function ok(v) { return v == "OK" || v == "NON-STRICT" || v == "INFORMATIONAL" }
  FNR == NR { want[$1] = 1; next }
  { got[$1] = 1; if (ok($2) && ok($3)) p++; else f++ }
  END { for (id in want) if (!(id in got)) f++; print p + 0, f + 0 }
' "$expected" "$results")

status=0
if ! diff -u --label expected "$expected" --label actual "$results" >"$out/results.diff"; then
  log "results differ from $expected:"
  cat "$out/results.diff" >&2
  status=1
fi
if ((failed > 0)); then
  log "failing cases (HTML reports: $out/reports/index.html):"
  cat "$out/failures.txt" >&2
  status=1
fi
log "done in $((SECONDS - start)) s"
echo "autobahn: $passed passed, $failed failed"
exit "$status"
