#!/usr/bin/env bash
# Training speed on CPU (not a test): Sovereign next to a PyTorch implementation of the same
# RWKV-7 (bench/train_torch.py), same batch and T, 2 threads each, measured in the same run:
#   - training tokens/s for micro and mini (V = 32000) and the ratio against PyTorch;
#   - model FLOP/s (6 × matmul parameters × tokens/s) as a fraction of the fp32 matmul rate that
#     each framework reaches on a 2048² product here;
#   - peak RSS, including a mini step at T = 512 with micro-batch 8 (also with activation
#     checkpointing);
#   - generation tokens/s (micro, recurrent, one token at a time).
# PyTorch comes from pip into its own venv ($SOVEREIGN_BENCH_VENV, default
# ~/.cache/sovereign/bench-venv). Usage: bench/train.sh [T] [B] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-128}
B=${2:-4}
STEPS=${3:-5}
VENV=${SOVEREIGN_BENCH_VENV:-$HOME/.cache/sovereign/bench-venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import torch' 2>/dev/null ||
  "$VENV/bin/pip" install -q --disable-pip-version-check torch numpy
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 THREADS=2
cargo bench -q -p sovereign-common --bench train --no-run 2>/dev/null
ours() { cargo bench -q -p sovereign-common --bench train -- "$@" 2>/dev/null | tail -n 1; }
torch() { "$VENV/bin/python" bench/train_torch.py "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
fmt() { python3 -c "print(f'{$1:$2}')"; }

echo "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), 2 threads each"
ours_mm=$(field "$(ours matmul 2048)" gflops)
torch_mm=$(field "$(torch matmul 2048)" gflops)
echo "fp32 matmul 2048²: sovereign (burn flex) ${ours_mm} GFLOP/s, PyTorch $(fmt "$torch_mm" .1f) GFLOP/s"
echo
printf '%-6s %-10s %12s %12s %7s %12s %12s %10s %10s\n' model "B×T" "ours tok/s" "torch tok/s" ratio \
  "ours %matmul" "torch %mm" "ours RSS" "torch RSS"
declare -A layers=([micro]=8 [mini]=16) embd=([micro]=128 [mini]=192)
row() {  # model B T steps
  local o t ot tt og tg
  o=$(ours step "$1" "$3" "$2" "$4")
  t=$(torch step "${layers[$1]}" "${embd[$1]}" 32000 "$3" "$2" "$4")
  ot=$(field "$o" tokens_per_s)
  og=$(field "$o" model_gflops)
  if [[ "$t" == *error* ]]; then
    printf '%-6s %-10s %12.0f %12s %7s %11s%% %11s %8.0fMB %10s\n' "$1" "$2×$3" "$ot" "-" "-" \
      "$(fmt "100*$og/$ours_mm" .0f)" "-" "$(field "$o" peak_rss_mb)" "-"
    echo "       PyTorch: $(field "$t" error)"
    return
  fi
  tt=$(field "$t" tokens_per_s)
  tg=$(python3 -c "print(6*$(field "$o" matmul_params)*$tt/1e9)")
  printf '%-6s %-10s %12.0f %12.0f %7s %11s%% %11s%% %8.0fMB %8.0fMB\n' "$1" "$2×$3" "$ot" "$tt" \
    "$(fmt "$ot/$tt" .2f)" "$(fmt "100*$og/$ours_mm" .0f)" "$(fmt "100*$tg/$torch_mm" .0f)" \
    "$(field "$o" peak_rss_mb)" "$(field "$t" peak_rss_mb)"
}
row micro "$B" "$T" "$STEPS"
row mini "$B" "$T" "$STEPS"
row mini 8 512 1
o=$(ours step mini 512 8 1 checkpointing)
echo "mini 8×512 with --activation-checkpointing: $(field "$o" tokens_per_s) tok/s, peak RSS" \
  "$(field "$o" peak_rss_mb) MB (same weights; element-wise activations recomputed in the backward)"
echo
echo "generation (micro, 200 tokens): $(field "$(ours generate micro 200)" tokens_per_s) tokens/s"
