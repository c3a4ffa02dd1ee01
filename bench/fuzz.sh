#!/usr/bin/env bash
# The long fuzzing run of every parser of user files (not part of `cargo test`, which runs the
# same tests with a few hundred cases each). Rounds of the fuzz tests run, each with
# SOVEREIGN_FUZZ_CASES cases per parser and fresh random seeds, until MINUTES have passed. Each
# round runs under a time limit (a hang fails it) and a memory limit (unbounded memory fails it).
# Prints the cases run per parser and in all.
# Usage: bench/fuzz.sh [MINUTES (default 10)] [CASES PER ROUND (default 2000)]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-10}
CASES=${2:-2000}
ROUND_LIMIT_S=600
MEMORY_LIMIT_KB=$((8 * 1024 * 1024))
LOG=$(mktemp /tmp/sovereign-fuzz.XXXXXX)
trap 'rm -f "$LOG"' EXIT

# The test executables, built once: the rounds run them directly, so nothing is compiled under
# the limits (and editing the sources meanwhile changes nothing).
executable() { cargo test "$@" --no-run 2>&1 | sed -n 's/.*Executable .* (\(.*\))$/\1/p' | tail -1; }
PARSERS=$(executable -p sovereign-common --test fuzz_parsers)
HOSTS=$(executable -p sovereign-coordinator --bin sovereign)
[ -x "$PARSERS" ] && [ -x "$HOSTS" ] || { echo "could not build the fuzz tests"; exit 1; }
export CARGO_MANIFEST_DIR=$PWD/common
end=$(( $(date +%s) + MINUTES * 60 ))
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
  rounds=$((rounds + 1))
  (
    ulimit -v "$MEMORY_LIMIT_KB"
    export SOVEREIGN_FUZZ_CASES=$CASES
    timeout "$ROUND_LIMIT_S" "$PARSERS" --nocapture --test-threads 2
    timeout "$ROUND_LIMIT_S" "$HOSTS" fuzz_hosts_file --nocapture
  ) >>"$LOG" 2>&1 || { echo "round $rounds failed (panic, hang or memory):"; tail -40 "$LOG"; exit 1; }
  # The hosts test counts its cases through proptest; one passing round ran CASES of them.
  echo "fuzz hosts file: $CASES cases" >>"$LOG"
done
echo "fuzzing: $rounds rounds in $MINUTES minutes, no panic, hang or memory failure"
grep '^fuzz ' "$LOG" | sed 's/: \([0-9]*\) cases$/\t\1/' \
  | awk -F'\t' '{n[$1] += $2; total += $2} END {for (p in n) printf "  %-34s %9d cases\n", p, n[p]; printf "  %-34s %9d cases\n", "all parsers", total}'
