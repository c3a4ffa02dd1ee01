#!/usr/bin/env bash
# Benchmark of the tokenizer stages (not a test), against HuggingFace `tokenizers` (BpeTrainer
# with the same vocabulary size, special tokens and pre-tokenizer) and tiktoken, in the same run:
#   - training wall time and peak RSS, ours and HF's;
#   - compression: tokens per byte on held-out text (the last 10% of lines), ours and HF's;
#   - encode throughput in MB/s with 1 and 2 threads, ours and HF's encode_batch, and tiktoken;
#   - the World vocabulary's encode throughput, ours and the official Python TRIE_TOKENIZER's;
#   - the tokenize command's end-to-end MB/s.
# Usage: bench/tokenizer.sh [CORPUS (one document per line; default the shared ptbr fixture)] [VOCAB]
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-../shared/fixtures/ptbr/corpus.txt}
VOCAB=${2:-32000}
WORK=$(mktemp -d /tmp/sovereign-tokbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -f "$CORPUS" ] || { echo "no corpus at $CORPUS"; exit 1; }
CORPUS=$(realpath "$CORPUS")  # cargo bench runs from the crate directory
python3 -c 'import tokenizers, tiktoken' 2>/dev/null || python3 -m pip install -q tokenizers tiktoken
cargo build --release -q -p sovereign-coordinator
SOV="${CARGO_TARGET_DIR:-target}/release/sovereign"

lines=$(wc -l < "$CORPUS")
head -n $((lines * 9 / 10)) "$CORPUS" > "$WORK/train.txt"
tail -n +$((lines * 9 / 10 + 1)) "$CORPUS" > "$WORK/heldout.txt"
timed() { /usr/bin/time -f '%e %M' -o "$WORK/t" "$@" >/dev/null 2>&1; cat "$WORK/t"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

read -r ours_s ours_kb < <(timed "$SOV" train-tokenizer --corpus "$WORK/train.txt" --line-docs --vocab-size "$VOCAB" --output "$WORK/ours.json")
read -r hf_s hf_kb < <(timed python3 bench/tokenizer_hf.py train "$WORK/train.txt" "$VOCAB" "$WORK/hf.json" "$WORK/ours.json")
echo "training on $(du -h "$WORK/train.txt" | cut -f1) ($VOCAB tokens):"
echo "  sovereign ${ours_s}s, peak RSS $((ours_kb / 1024)) MB"
echo "  HF        ${hf_s}s, peak RSS $((hf_kb / 1024)) MB (python process included)"
echo "  time ratio sovereign/HF: $(ratio "$ours_s" "$hf_s")"

"$SOV" tokenize --input "$WORK/heldout.txt" --line-docs --tokenizer "$WORK/ours.json" --output "$WORK/h.bin" 2>/dev/null
read -r ours_tokens ours_docs < <(python3 -c "import json; m=json.load(open('$WORK/h.bin.json')); print(m['tokens'], m['documents'])")
read -r hf_tokens bytes < <(python3 bench/tokenizer_hf.py count "$WORK/hf.json" "$WORK/heldout.txt")
ours_tpb=$(python3 -c "print(f'{($ours_tokens-$ours_docs)/$bytes:.4f}')")
hf_tpb=$(python3 -c "print(f'{$hf_tokens/$bytes:.4f}')")
echo "compression on held-out text ($bytes bytes): sovereign $ours_tpb tokens/byte, HF $hf_tpb" \
     "(sovereign/HF $(ratio "$ours_tpb" "$hf_tpb"))"

echo "encode throughput on $CORPUS:"
cargo bench -q -p sovereign-common --bench encode -- "$WORK/ours.json" "$CORPUS" 2>/dev/null | sed 's/^/  /'
for t in 1 2; do
  echo "  HF encode_batch, $t thread(s): $(RAYON_RS_NUM_CPUS=$t python3 bench/tokenizer_hf.py encode "$WORK/hf.json" "$CORPUS") MB/s"
done
read -r tt_line tt_batch < <(python3 bench/tokenizer_hf.py tiktoken "$WORK/ours.json" "$CORPUS")
echo "  tiktoken (our vocabulary) per-line encode: $tt_line MB/s; encode_ordinary_batch, 2 threads: $tt_batch MB/s"

# The RWKV World vocabulary: ours against the official Python TRIE_TOKENIZER (rwkv package).
python3 -c 'import rwkv.rwkv_tokenizer' 2>/dev/null || python3 -m pip install -q rwkv
WORLD=$(python3 tests/interop/check_world.py vocab)
cargo bench -q -p sovereign-common --bench encode -- "$WORLD" "$CORPUS" 2>/dev/null | sed 's/^/  /'
"$SOV" tokenize --input "$CORPUS" --line-docs --tokenizer "$WORLD" --output "$WORK/world.bin" 2>/dev/null
official=$(python3 tests/interop/check_world.py corpus "$CORPUS" "$WORK/world.bin" | sed -n 's/.*TRIE_TOKENIZER \([0-9.]*\) MB\/s/\1/p')
echo "  official TRIE_TOKENIZER (python, 1 thread, same ids checked): $official MB/s"

mb=$(python3 -c "import os; print(os.path.getsize('$CORPUS')/1e6)")
for t in 1 2; do
  read -r s _ < <(timed "$SOV" tokenize --input "$CORPUS" --line-docs --tokenizer "$WORK/ours.json" --output "$WORK/all.bin" --val-output "$WORK/val.bin" --threads "$t")
  echo "tokenize end to end, $t thread(s): ${s}s, $(ratio "$mb" "$s") MB/s"
done
