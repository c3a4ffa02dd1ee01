#!/usr/bin/env bash
# Gradient all-reduce (not a test), measured in one run on this machine:
#   - the gRPC ring's bus bandwidth (busbw = algbw·2(n−1)/n) for 2 and 4 ranks at 4, 64 and
#     256 MiB on loopback, next to raw single-stream TCP (worker/benches/allreduce.rs);
#   - PyTorch Gloo's all_reduce on the same sizes, when torch is in the bench venv
#     ($SOVEREIGN_BENCH_VENV, default ~/.cache/sovereign/bench-venv; bench/train.sh makes it);
#   - the step-time overhead of 2 workers over 1 on the micro model (V = 32000, B = 4, T = 128,
#     one rayon thread per worker, so the two workers do not fight over the cores).
# Usage: bench/allreduce.sh [SIZES_MIB] [WORLDS]   (defaults: 4,64,256 and 2,4)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-4,64,256}
WORLDS=${2:-2,4}
VENV=${SOVEREIGN_BENCH_VENV:-$HOME/.cache/sovereign/bench-venv}

echo "== gRPC ring (sovereign) and raw TCP"
cargo bench -q -p sovereign-worker --bench allreduce -- --sizes "$SIZES" --worlds "$WORLDS" 2>/dev/null |
  tee /tmp/sovereign-allreduce.$$
tcp=$(sed -n 's/^raw TCP.*: \([0-9.]*\) GB\/s/\1/p' /tmp/sovereign-allreduce.$$)
rm -f /tmp/sovereign-allreduce.$$

echo
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "== PyTorch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') Gloo all_reduce"
  echo "| ranks | MiB | time (ms) | busbw (GB/s) | busbw / raw TCP |"
  echo "|---|---|---|---|---|"
  "$VENV/bin/python" bench/allreduce_gloo.py "$SIZES" "$WORLDS" | while read -r n mib s; do
    python3 -c "
n, mib, s, tcp = $n, $mib, $s, $tcp
busbw = mib * 2**20 / s / 1e9 * 2 * (n - 1) / n
print(f'| {n} | {mib} | {s*1e3:.1f} | {busbw:.2f} | {100*busbw/tcp:.0f}% |')"
  done
else
  echo "== PyTorch Gloo: skipped (no torch in $VENV; bench/train.sh creates it)"
fi

echo
echo "== training step, micro model: 2 workers over 1 (same per-worker batch)"
cargo build -q --release -p sovereign-coordinator -p sovereign-worker
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/train.bin" <<'PY'
import random, struct, sys
random.seed(0)
with open(sys.argv[1], "wb") as f:
    f.write(b"".join(struct.pack("<H", random.randrange(32000)) for _ in range(400_000)))
PY
printf 'vocab = 32000\nmodel = "micro"\nseq_len = 128\nmicro_bsz = 4\naccum = 1\nsteps = 12\nwarmup = 2\ncheckpoint_every = 0\neval_every = 0\n' >"$work/run.toml"
step_s() {  # workers → mean seconds per step over steps 3..12
  printf 'localhost slots=%s\n' "$1" >"$work/hosts$1"
  RAYON_NUM_THREADS=1 RUST_LOG=error "${CARGO_TARGET_DIR:-target}/release/sovereign" train --config "$work/run.toml" \
    --data "$work/train.bin" --hosts "$work/hosts$1" --out "$work/run$1" >/dev/null
  python3 -c "
import json
rows = [json.loads(l) for l in open('$work/run$1/metrics.jsonl')]
print((rows[-1]['elapsed'] - rows[1]['elapsed']) / (len(rows) - 2))"
}
one=$(step_s 1)
two=$(step_s 2)
python3 -c "print(f'1 worker: {$one*1e3:.0f} ms/step; 2 workers: {$two*1e3:.0f} ms/step; overhead {100*($two/$one-1):.0f}%')"
