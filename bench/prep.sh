#!/usr/bin/env bash
# Benchmark of the distributed data prep (not a test): the map phase of train-tokenizer, tokenize
# and process-wiki with --hosts on 1 and 2 local workers, measured in this run on this machine:
#   - the map phase's wall time (workers started → last result folded in) and its input MB/s;
#   - the result bytes sent to the coordinator per MB of input;
#   - the single-process stage on the same input (1 and 2 threads) as the anchor.
# Each worker runs one rayon thread (RAYON_NUM_THREADS=1), so "2 workers" uses two cores, as two
# one-core machines would. The outputs are checked byte-identical to the single-process ones.
# Usage: bench/prep.sh [CORPUS (one document per line; default 4 × the shared ptbr fixture)]
#                      [DUMP_MB (synthetic multistream dump, default 40)]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/sovereign-prepbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DUMP_MB=${2:-40}
if [ -n "${1:-}" ]; then
  cp "$1" "$WORK/corpus.txt"
else
  FIXTURE=../shared/fixtures/ptbr/corpus.txt
  [ -f "$FIXTURE" ] || { echo "no corpus given and no $FIXTURE"; exit 1; }
  for _ in 1 2 3 4; do cat "$FIXTURE"; done > "$WORK/corpus.txt"
fi
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
cargo build --release -q -p sovereign-coordinator -p sovereign-worker
SOV=$(realpath "${CARGO_TARGET_DIR:-target}")/release/sovereign
[ -n "${CARGO_TARGET_DIR:-}" ] && SOV=$CARGO_TARGET_DIR/release/sovereign
python3 bench/make_dump.py "$WORK/d.xml" "$DUMP_MB" --multistream "$WORK/dump.xml.bz2" \
  --pages-per-stream 100 >/dev/null
rm "$WORK/d.xml"
for n in 1 2; do printf 'localhost slots=%s\n' "$n" > "$WORK/hosts$n"; done

seconds() { /usr/bin/time -f %e -o "$WORK/t" "$@" >/dev/null 2>&1; cat "$WORK/t"; }
# map LOG: "seconds MB/s bytes-per-MB" from the coordinator's summary line
map() { sed -n 's/.* in \([0-9.]*\) s (\([0-9.]*\) MB\/s); [0-9]* result bytes (\([0-9]*\) bytes per MB.*/\1 \2 \3/p' "$1"; }

# stage NAME OUT FLAGS...: the stage single-process (1 and 2 threads), then on 1 and 2 workers
stage() {
  local name=$1 out=$2; shift 2
  local mb
  mb=$(python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1])/1e6:.1f}')" "$INPUT")
  echo
  echo "$name on $mb MB:"
  for t in 1 2; do
    s=$(seconds "$SOV" "$@" --threads "$t")
    printf '  %-28s %7ss %8s MB/s\n' "one process, $t thread(s)" "$s" "$(python3 -c "print(f'{$mb/$s:.1f}')")"
  done
  cp "$WORK/$out" "$WORK/single.out"
  local one=""
  for n in 1 2; do
    RAYON_NUM_THREADS=1 "$SOV" "$@" --hosts "$WORK/hosts$n" 2>"$WORK/log" >/dev/null
    read -r s rate per_mb < <(map "$WORK/log")
    cmp -s "$WORK/$out" "$WORK/single.out" || { echo "  $n workers: output differs!"; exit 1; }
    [ -z "$one" ] && one=$s
    printf '  %-28s %7ss %8s MB/s  %8s result bytes/MB  speedup %s (same bytes)\n' \
      "map on $n worker(s)" "$s" "$rate" "$per_mb" "$(python3 -c "print(f'{$one/$s:.2f}')")"
  done
}

INPUT=$WORK/corpus.txt
stage train-tokenizer tok.json train-tokenizer --corpus "$WORK/corpus.txt" --line-docs \
  --output "$WORK/tok.json"
stage tokenize train.bin tokenize --input "$WORK/corpus.txt" --line-docs \
  --tokenizer "$WORK/tok.json" --output "$WORK/train.bin"
INPUT=$WORK/dump.xml.bz2
stage process-wiki wiki.txt process-wiki --input "$WORK/dump.xml.bz2" --output "$WORK/wiki.txt"
