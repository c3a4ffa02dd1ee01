#!/usr/bin/env bash
# Benchmark of `sovereign process-wiki` (not a test). Prints, measured in this run on this machine:
#   - pages/s and input MB/s on a synthetic dump, single-stream and multistream bz2;
#   - the ratio against `bzip2 -dc > /dev/null` (the decompression floor) on the same files;
#   - the ratio against WikiExtractor 3.1.0 (pip install wikiextractor) on the same file;
#   - peak RSS on a synthetic dump of >= 1 GB of XML.
# Usage: bench/wiki.sh [XML_MB (default 100)] [BIG_XML_MB (default 1100)]
set -euo pipefail
cd "$(dirname "$0")/.."
XML_MB=${1:-100}
BIG_MB=${2:-1100}
THREADS=${THREADS:-2}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/sovereign-bench.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT

command -v bzip2 >/dev/null || { echo "bench needs bzip2 (apt-get install bzip2)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench needs GNU time (apt-get install time)"; exit 1; }
python3 -c 'import wikiextractor' 2>/dev/null || python3 -m pip install -q wikiextractor==3.1.0
cargo build --release -q -p sovereign-coordinator
SOV="${CARGO_TARGET_DIR:-target}/release/sovereign"

echo "making a ${XML_MB} MB synthetic dump in $WORK ..."
python3 bench/make_dump.py "$WORK/d.xml" "$XML_MB" --multistream "$WORK/multi.xml.bz2" --pages-per-stream 100
bzip2 -9 -k "$WORK/d.xml"
mv "$WORK/d.xml.bz2" "$WORK/single.xml.bz2"

# seconds CMD... : wall seconds of one run (output discarded)
seconds() { /usr/bin/time -f %e -o "$WORK/t" "$@" >/dev/null 2>&1; cat "$WORK/t"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
pages=$(grep -c '<page>' "$WORK/d.xml")

echo
printf '%-34s %8s %10s %10s %12s\n' input seconds pages/s "in MB/s" "vs bzip2 -dc"
for kind in single multi; do
  f="$WORK/$kind.xml.bz2"
  mb=$(python3 -c "import os; print(os.path.getsize('$f')/1e6)")
  floor=$(seconds bzip2 -dc "$f")
  printf '%-34s %8s %10s %10s %12s\n' "bzip2 -dc ($kind-stream)" "$floor" - "$(ratio "$mb" "$floor")" 1.00
  for t in 1 "$THREADS"; do
    s=$(seconds "$SOV" process-wiki --input "$f" --output "$WORK/out.txt" --threads "$t")
    printf '%-34s %8s %10s %10s %12s\n' "sovereign $kind-stream, $t thread(s)" "$s" \
      "$(python3 -c "print(round($pages/$s))")" "$(ratio "$mb" "$s")" "$(ratio "$floor" "$s")x"
  done
done

echo
echo "WikiExtractor 3.1.0 on the same single-stream file ($THREADS processes):"
we=$(seconds python3 -m wikiextractor.WikiExtractor "$WORK/single.xml.bz2" -o "$WORK/we" --processes "$THREADS" -q)
sov=$(seconds "$SOV" process-wiki --input "$WORK/single.xml.bz2" --output "$WORK/out.txt" --threads "$THREADS")
echo "  WikiExtractor ${we}s, sovereign ${sov}s: sovereign is $(ratio "$we" "$sov")x WikiExtractor's throughput"
rm -rf "$WORK/we" "$WORK"/*.xml.bz2

echo
echo "peak RSS on a ${BIG_MB} MB XML dump:"
python3 bench/make_dump.py "$WORK/big.xml" "$BIG_MB"
/usr/bin/time -f '%M' -o "$WORK/rss" "$SOV" process-wiki --input "$WORK/big.xml" --output "$WORK/big.txt" --threads "$THREADS" 2>/dev/null
echo "  XML $(du -m "$WORK/big.xml" | cut -f1) MB: peak RSS $(( $(cat "$WORK/rss") / 1024 )) MB"
