#!/usr/bin/env bash
# Builds the CUDA binaries here (no GPU needed) and packs them for a GPU machine that has no Rust
# toolchain: sovereign and sovereign-worker (--features cuda, nccl), the training bench, the WKV
# kernel tests and the model parity tests, with the rwkv7-tiny fixture and a small tokenized
# corpus (the ptbr fixture, 8000 tokens). bench/gpu.sh runs them there. Usage: bench/gpu-build.sh [PACK_DIR]
# (default .gpu, which git ignores). Debug info is stripped and everything xz-compressed.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${1:-.gpu}
export CARGO_TARGET_DIR=${SOVEREIGN_GPU_TARGET:-$HOME/.cache/sovereign/target-cuda}
features=(--features sovereign-coordinator/cuda,sovereign-worker/nccl)
cargo build -q -p sovereign-coordinator -p sovereign-worker "${features[@]}"
# The tests and the bench in the same (dev) profile and features, so Burn is built once.
mapfile -t tests < <(cargo test -q -p sovereign-common --features nccl --no-run --lib \
  --test model_parity --bench train --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])')
rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/fixtures" "$PACK/data"
strip -o "$PACK/bin/sovereign" "$CARGO_TARGET_DIR/debug/sovereign"
strip -o "$PACK/bin/sovereign-worker" "$CARGO_TARGET_DIR/debug/sovereign-worker"
for line in "${tests[@]}"; do
  read -r kind name path <<<"$line"
  case "$kind/$name" in
    lib/*) strip -o "$PACK/bin/wkv-tests" "$path" ;;
    test/model_parity) strip -o "$PACK/bin/model-parity" "$path" ;;
    bench/train) strip -o "$PACK/bin/train-bench" "$path" ;;
  esac
done
cp -r ../shared/fixtures/rwkv7-tiny "$PACK/fixtures/"
sovereign=$CARGO_TARGET_DIR/debug/sovereign
corpus=../shared/fixtures/ptbr/corpus.txt
"$sovereign" train-tokenizer --corpus "$corpus" --line-docs --vocab-size 8000 \
  --output "$PACK/data/tokenizer.json" >/dev/null
"$sovereign" tokenize --input "$corpus" --line-docs --tokenizer "$PACK/data/tokenizer.json" \
  --output "$PACK/data/train.bin" --val-output "$PACK/data/val.bin" --val-fraction 0.02 >/dev/null
tar -C "$PACK" -cf - bin | xz -T2 -6 >"$PACK/bin.tar.xz" && rm -rf "$PACK/bin"
du -sh "$PACK"/*
