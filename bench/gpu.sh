#!/usr/bin/env bash
# GPU checks and figures (not a test), on a GPU machine with what bench/gpu-build.sh packed:
#   1. side by side: the WKV CubeCL kernels against the CPU kernel; model parity with the
#      official package and the float64 gradients (rwkv7-tiny) on cuda:0; `sovereign train
#      --device cuda:0` end to end on the ptbr corpus, then generation from its checkpoint (CPU);
#   2. one at a time: training step time and tokens/s for mini and 85m at 8 × 512, a world-size-1
#      NCCL run (--gpus 0 --collective nccl), the fp32 matmul rate on the same backend (for the
#      model FLOP/s share) and the WKV operation alone.
# Usage: bench/gpu.sh [PACK_DIR] [OUT_DIR]: logs and the runs' metrics go to OUT_DIR (8 files).
set -uo pipefail
PACK=$(realpath "${1:-.gpu}")
OUT=$(realpath -m "${2:-/tmp/sovereign-gpu}")
WORK=$(mktemp -d)
mkdir -p "$OUT" && cd "$WORK" || exit 1
tar -xJf "$PACK/bin.tar.xz" || exit 1
BIN=$WORK/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# NVRTC (CubeCL compiles its kernels at run time) and NCCL, by the names cudarc loads: the CUDA
# toolkit's, else the pip packages next to PyTorch. cudarc looks for libnccl.so, which only
# NCCL's -dev packages install; the runtime ships libnccl.so.2, so link it under that name.
libs=$WORK/libs && mkdir -p "$libs"
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$dir" ] && LD_LIBRARY_PATH=$dir:${LD_LIBRARY_PATH:-}
done
for name in libnvrtc.so libnccl.so; do
  found=$(find / \( -path /proc -o -path /sys -o -path "$WORK" \) -prune -o \
    \( -name "$name" -o -name "$name.*" \) -print 2>/dev/null | sort | head -n 1)
  echo "$name: ${found:-not found}"
  [ -n "$found" ] && ln -sf "$found" "$libs/$name" && ln -sf "$found" "$libs/$(basename "$found")"
done
export LD_LIBRARY_PATH=$libs:${LD_LIBRARY_PATH:-}

run() {  # name seconds command…: runs it, keeps its output in $OUT/NAME.log, prints the tail
  echo "== $1"
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "(exit $rc)"
}

export SOVEREIGN_FIXTURES=$PACK/fixtures SOVEREIGN_REQUIRE_FIXTURES=1
data=$PACK/data
# Checks first, side by side (each process compiles its own kernels with NVRTC, on its own core).
run wkv-kernel 90 "$BIN/wkv-tests" cuda_kernel --nocapture &
run parity 90 "$BIN/model-parity" cuda --nocapture &
run train 90 "$BIN/sovereign" train --data "$data/train.bin" --val-data "$data/val.bin" \
  --model micro --seq-len 128 --micro-bsz 8 --steps 20 --eval-every 10 --checkpoint-every 20 \
  --warmup 5 --out "$WORK/run-cuda" --device cuda:0 &
wait
checkpoint=$(ls -d "$WORK"/run-cuda/ckpt-* 2>/dev/null | tail -n 1)
[ -n "$checkpoint" ] &&
  run generate 30 "$BIN/sovereign" generate --checkpoint "$checkpoint" --prompt "O Brasil" \
    --max-tokens 40

# Then the timings, one process at a time.
bench() { timeout "$1" "$BIN/train-bench" "${@:2}" --device cuda:0 2>>"$OUT/bench.log" | tail -n 1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
echo "== training speed on cuda:0"
for spec in "mini 8 512" "85m 8 512"; do
  read -r model b t <<<"$spec"
  o=$(bench 55 step "$model" "$t" "$b" 3)
  echo "$model $b×$t: $o" | tee -a "$OUT/bench.log"
done
run nccl 60 "$BIN/sovereign" train --data "$data/train.bin" --model micro --seq-len 128 \
  --micro-bsz 8 --steps 10 --warmup 5 --checkpoint-every 10 --out "$WORK/run-nccl" \
  --gpus 0 --collective nccl
echo "fp32 matmul 8192³: $(bench 30 matmul 8192)" | tee -a "$OUT/bench.log"
echo "WKV alone, one layer of 85m at 8×512 (9 heads): $(bench 30 wkv 8 9 512)" | tee -a "$OUT/bench.log"
echo "== metrics"
for run_dir in run-cuda run-nccl; do
  cp "$WORK/$run_dir/metrics.jsonl" "$OUT/$run_dir.jsonl" 2>/dev/null || continue
  python3 - "$OUT/$run_dir.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r for r in rows if r.get("loss") is not None]
if steps:
    rate = sorted(r["tokens_per_s"] for r in steps[2:]) or [None]
    print(sys.argv[1].rsplit("/", 1)[-1], "steps", len(steps), "loss", round(steps[0]["loss"], 3),
          "->", round(steps[-1]["loss"], 3), "val", [round(r["val_loss"], 3) for r in rows if r.get("val_loss")],
          "median tokens/s after 2 steps", rate[len(rate) // 2], "elapsed", steps[-1].get("elapsed"))
PY
done
rm -rf "$WORK"
