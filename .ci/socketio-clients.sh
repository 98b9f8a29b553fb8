#!/usr/bin/env bash
# End-to-end tests of the `roomcast` binary with real Socket.IO clients
# (tests/socketio-clients/): the npm socket.io-client and a native WebSocket client under
# node's test runner, and python-socketio's AsyncClient under pytest. Each suite starts the
# binary itself on 127.0.0.1:0.
#
# Needs Rust, Node 20+ with npm, and Python 3.11+ with venv and pip; installs the rest: the
# npm packages from package-lock.json, the Python packages into a virtualenv under target/.
# The emitter tests need the Redis at 127.0.0.1:6379, the inbox tests the PostgreSQL at
# 127.0.0.1:5432 (trust auth) besides SQLite (each skipped without it, failed under CI=true).
#
# Environment: ROOMCAST_BIN (default target/debug/roomcast, built here unless set),
# SIO_FIXTURE_BIN (default target/debug/sio-fixture), PYTHON (default python3),
# SIO_TESTS_SERVER_LOG=1 to echo the servers' logs, SIO_TESTS_KEEP_TMP=1 to keep their
# temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
suite=tests/socketio-clients
venv=target/socketio-clients-venv
results=target/socketio-clients
python=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

for tool in cargo node npm "$python"; do
  if ! command -v "$tool" >/dev/null; then
    echo "socketio-clients: \`$tool\` is not installed" >&2
    exit 2
  fi
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "socketio-clients: Node 20 or later is needed, found $(node --version)" >&2
  exit 2
fi

step "npm packages (package-lock.json)"
(cd "$suite" && npm ci --no-audit --no-fund)

step "Python packages (virtualenv $venv)"
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv"; then
    echo "socketio-clients: \`$python -m venv\` failed (on Debian: apt-get install python3-venv)" >&2
    exit 2
  fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$suite/python/requirements.txt"

if [ -z "${ROOMCAST_BIN:-}" ]; then
  step "build roomcast (debug)"
  cargo build --locked -p roomcast-server --bin roomcast
  export ROOMCAST_BIN=target/debug/roomcast
fi
if [ -z "${SIO_FIXTURE_BIN:-}" ] && [ -f examples/src/bin/sio-fixture.rs ]; then
  step "build sio-fixture (debug)"
  cargo build --locked -p roomcast-examples --bin sio-fixture
fi

rm -rf "$results"
mkdir -p "$results"

step "Node suite: socket.io-client $(cd "$suite" && node -p 'require("./node_modules/socket.io-client/package.json").version'), ws (native protocol)"
node_status=0
(
  cd "$suite"
  # The waits inside the tests fail a missing event long before this outer deadline, which
  # is only there so that a stuck client cannot hold the run forever.
  timeout --kill-after=10 900 node --test \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$root/$results/node.tap" \
    js/*.test.mjs
) || node_status=$?

step "Python suite: python-socketio $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("python-socketio"))')"
py_status=0
(
  cd "$suite/python"
  timeout --kill-after=10 900 "$root/$venv/bin/python" -m pytest -v \
    --junitxml="$root/$results/python.xml"
) || py_status=$?

# Totals from the reports (node's TAP summary, pytest's JUnit XML).
"$venv/bin/python" - "$results" "$node_status" "$py_status" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

results, node_status, py_status = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
totals = {}

tap = results / "node.tap"
text = tap.read_text() if tap.exists() else ""
count = lambda key: int(m.group(1)) if (m := re.search(rf"^# {key} (\d+)$", text, re.M)) else 0
totals["node"] = (count("pass"), count("fail") + count("cancelled"), count("skipped") + count("todo"))
if not text and node_status:
    totals["node"] = (0, 1, 0)  # the runner did not get as far as a report

junit = results / "python.xml"
if junit.exists():
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    totals["python"] = (n - f - e - s, f + e, s)
else:
    totals["python"] = (0, 1 if py_status else 0, 0)

print()
for name, (p, f, s) in totals.items():
    print(f"socketio-clients {name}: {p} passed, {f} failed, {s} skipped")
p, f, s = (sum(t[i] for t in totals.values()) for i in range(3))
print(f"socketio-clients: {p} passed, {f} failed, {s} skipped")
EOF

if [ "$node_status" -ne 0 ] || [ "$py_status" -ne 0 ]; then
  echo "socketio-clients: FAILED (node exit $node_status, pytest exit $py_status)" >&2
  exit 1
fi
