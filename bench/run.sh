#!/usr/bin/env bash
# Roomcast's standard benchmark set, with its peers, in one command:
#
#   bash bench/run.sh            # the standard set; writes BENCHMARKS.md (about 22 minutes)
#   bash bench/run.sh --quick    # small counts, a few seconds per target; writes
#                                # target/bench/BENCHMARKS-quick.md (a smoke run, not figures)
#
# It builds the release binaries (roomcast, roomcast-bench, the socketioxide peer, the ceiling),
# installs the Node peer's locked dependencies with `npm ci`, runs every scenario against every
# server one after the other on loopback, and writes the report from the JSON results. Needs
# cargo, node and npm, for the cluster and recovery scenarios a Redis at 127.0.0.1:6379
# (shared, never flushed: each run works under a key prefix of its own; without it those
# scenarios report their servers as not available), for the ingest scenario a RabbitMQ at
# 127.0.0.1:5672 (guest/guest; the run's exchange and queues are its own, deleted after), and
# for the inbox scenario a PostgreSQL at 127.0.0.1:5432 (user postgres, trust authentication;
# the run creates a database of its own, roomcast_bench_inbox_<pid>, and drops it after;
# without one the inbox's PostgreSQL figures are reported as not available). Run it on a quiet
# machine: every server and the load generator share its cores.
#
# The standard set keeps its results in bench/last-run/ (commit them with BENCHMARKS.md): the
# next run reads them back and reports, figure by figure, what changed beyond noise.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
esac

out_dir=target/bench
results="$out_dir/results.jsonl"
env_file="$out_dir/env.json"
report=BENCHMARKS.md
if $quick; then
  results="$out_dir/results-quick.jsonl"
  env_file="$out_dir/env-quick.json"
  report="$out_dir/BENCHMARKS-quick.md"
fi
mkdir -p "$out_dir"
rm -f "$results"
# The previous standard run, to compare with (copied now: this run replaces it at the end).
previous="$out_dir/previous"
rm -rf "$previous"
compare=()
if ! $quick && [ -f bench/last-run/results.jsonl ] && [ -f bench/last-run/env.json ]; then
  cp -r bench/last-run "$previous"
  compare=(--previous "$previous")
fi

step() { printf '\n==> %s\n' "$*"; }

step "building (release)"
cargo build --release --locked -p roomcast-server -p roomcast-bench
cargo build --release --locked --manifest-path bench/peers/socketioxide/Cargo.toml \
  --target-dir target/peers
cargo build --release --locked --manifest-path bench/peers/ceiling/Cargo.toml \
  --target-dir target/peers
(cd bench/peers/node-socketio && npm ci --no-audit --no-fund --loglevel=error)

bench=target/release/roomcast-bench
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_before%% *}" 'BEGIN { exit !(l > 0.7) }'; then
  echo "warning: load average $load_before: something else is running; figures will suffer" >&2
fi

commands=()
run() {
  # The command as written in the report: the binary by its workspace path.
  commands+=("$*")
  step "$*"
  "$@"
}

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$(date +%s)
if $quick; then
  common=(--connect-rate 2000 --results "$results")
  run "$bench" idle "${common[@]}" --checkpoints 1000,1900 --warmup 100 --idle-secs 1 \
    --per-process 1000
  run "$bench" fanout "${common[@]}" --connections 1000 --start-rate 100 --factor 1.5 \
    --steps 3 --step-secs 1
  run "$bench" cluster "${common[@]}" --connections 900 --start-rate 100 --factor 1.5 \
    --steps 3 --step-secs 1
  run "$bench" rooms "${common[@]}" --connections 1000 --rooms 100 --steps 2 --step-secs 1
  run "$bench" churn "${common[@]}" --secs 2
  run "$bench" recovery "${common[@]}" --clients 500
  run "$bench" ingest --results "$results" --clients 20 --rate 200 --secs 1 --burst 2000
  run "$bench" rpc --results "$results" --calls 200 --clients 5 --secs 1
  run "$bench" inbox --results "$results" --clients 10 --secs 1 --rows 20000 --heavy 2000 \
    --reads 50
else
  common=(--results "$results")
  run "$bench" idle "${common[@]}"
  run "$bench" fanout "${common[@]}"
  run "$bench" cluster "${common[@]}"
  run "$bench" rooms "${common[@]}"
  run "$bench" churn "${common[@]}"
  run "$bench" recovery "${common[@]}"
  run "$bench" ingest "${common[@]}"
  run "$bench" rpc "${common[@]}"
  run "$bench" inbox "${common[@]}"
fi
duration=$(( $(date +%s) - t0 ))

step "writing $report"
# The environment as JSON, built by node (which the Node peer needs anyway) from variables.
export BENCH_STARTED="$started" BENCH_DURATION="$duration" BENCH_LOAD="$load_before"
export BENCH_CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
export BENCH_NPROC="$(nproc)"
export BENCH_MEMORY="$(free -h | awk '/^Mem:/ { print $2 }')"
export BENCH_KERNEL="$(uname -sr)"
export BENCH_NOFILE="$(ulimit -Hn)"
export BENCH_PORTS="$(tr -s '\t ' '-' < /proc/sys/net/ipv4/ip_local_port_range)"
export BENCH_ROOMCAST="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
export BENCH_RUSTC="$(rustc --version)"
export BENCH_NODE="$(node --version)"
export BENCH_SOCKETIO="$(node -p 'require("./bench/peers/node-socketio/node_modules/socket.io/package.json").version')"
export BENCH_SOCKETIOXIDE="$(awk '/^name = "socketioxide"$/ { getline; gsub(/"/, "", $3); print $3 }' bench/peers/socketioxide/Cargo.lock)"
export BENCH_SOCKETIOXIDE_REDIS="$(awk '/^name = "socketioxide-redis"$/ { getline; gsub(/"/, "", $3); print $3 }' bench/peers/socketioxide/Cargo.lock)"
export BENCH_SOCKETIO_REDIS_ADAPTER="$(node -p 'require("./bench/peers/node-socketio/node_modules/@socket.io/redis-adapter/package.json").version')"
export BENCH_REDIS_NPM="$(node -p 'require("./bench/peers/node-socketio/node_modules/redis/package.json").version')"
BENCH_COMMANDS="$(printf '%s\n' "bash bench/run.sh${1:+ $1}" "${commands[@]}")"
export BENCH_COMMANDS
node -e '
const e = process.env;
const env = {
  started: e.BENCH_STARTED,
  duration_secs: Number(e.BENCH_DURATION),
  machine: {
    cpu: e.BENCH_CPU, nproc: e.BENCH_NPROC, memory: e.BENCH_MEMORY, kernel: e.BENCH_KERNEL,
    nofile: e.BENCH_NOFILE, ports: e.BENCH_PORTS, load_before: e.BENCH_LOAD,
  },
  versions: {
    roomcast: e.BENCH_ROOMCAST, rustc: e.BENCH_RUSTC, node: e.BENCH_NODE,
    socketio: e.BENCH_SOCKETIO, socketioxide: e.BENCH_SOCKETIOXIDE,
    socketio_redis_adapter: e.BENCH_SOCKETIO_REDIS_ADAPTER, redis_npm: e.BENCH_REDIS_NPM,
    socketioxide_redis: e.BENCH_SOCKETIOXIDE_REDIS,
  },
  commands: e.BENCH_COMMANDS.split("\n").filter(Boolean),
};
process.stdout.write(JSON.stringify(env, null, 2) + "\n");
' > "$env_file"
"$bench" report --results "$results" --env "$env_file" --analysis bench/analysis.md \
  --out "$report" "${compare[@]}"
if ! $quick; then
  mkdir -p bench/last-run
  cp "$results" bench/last-run/results.jsonl
  cp "$env_file" bench/last-run/env.json
fi
echo "scenarios took ${duration} s"
