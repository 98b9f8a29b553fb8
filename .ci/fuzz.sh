#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each briefly from its committed seeds.
# Needs a nightly toolchain; without one it says so and skips.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain installed; skipping the fuzz build and runs"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
cd fuzz
# cargo-fuzz passes no --locked to cargo, so the lock file is checked here first: a stale
# fuzz/Cargo.lock fails the job instead of being rewritten by the build, and once it
# resolves unchanged, `fuzz build` and `fuzz run` have nothing to rewrite.
cargo +nightly fetch --locked --quiet
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build
for t in $targets; do
  corpus="target/corpus/$t"
  mkdir -p "$corpus"
  echo "fuzz: $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "$corpus" "seeds/$t" -- \
    -max_total_time="$seconds" -max_len=70000 -print_final_stats=0 2>&1 | tail -n 3
done
if ! git diff --quiet -- Cargo.lock; then
  echo "fuzz: the build rewrote fuzz/Cargo.lock; refresh and commit it" >&2
  exit 1
fi
echo "fuzz: all targets ran without a crash"
