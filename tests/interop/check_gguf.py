#!/usr/bin/env python3
"""GGUF check with real llama.cpp (through llama-cpp-python, built from source on the CPU), run by
tests/world_models.rs:
- llama.cpp loads the file (architecture rwkv7, its rwkv tokenizer);
- its next-token logits on the first window of VAL_BIN match OURS_NPY (test-model --logits);
- its perplexity over the consecutive windows of SEQ_LEN + 1 tokens of VAL_BIN, each from a
  fresh state as test-model evaluates them, is printed for the caller to compare;
- it tokenizes TEXT_FILE as the World vocabulary does (the ids of IDS_BIN, without the 0s);
- it generates tokens.

usage: check_gguf.py MODEL_GGUF VAL_BIN SEQ_LEN OURS_NPY TEXT_FILE IDS_BIN
Prints "gguf ok: ..." with the figures; exits 1 on a difference.
"""
import math
import sys

import numpy as np
from llama_cpp import Llama


def main():
    model, val_bin, seq_len, ours_npy, text_file, ids_bin = sys.argv[1:7]
    seq_len = int(seq_len)
    llm = Llama(model_path=model, logits_all=True, n_ctx=seq_len + 16, n_batch=seq_len + 16,
                verbose=False, seed=1)
    val = np.fromfile(val_bin, dtype=np.uint16).astype(np.int64)
    window = seq_len + 1

    ours = np.load(ours_npy)
    llm.reset()
    llm.eval(val[:seq_len].tolist())
    theirs = np.array(llm.scores[:seq_len], dtype=np.float32)
    scale = float(np.abs(ours).max())
    logit_diff = float(np.abs(theirs - ours).max())
    if not logit_diff <= 1e-3 * scale + 1e-4:
        print(f"logits differ: max |diff| {logit_diff} (max |logit| {scale})")
        return 1

    total, count = 0.0, 0
    for start in range(0, len(val) // window * window, window):
        ids = val[start:start + window]
        llm.reset()
        llm.eval(ids[:-1].tolist())
        logits = np.array(llm.scores[:seq_len], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        logz = (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
        total += float((logz - logits[np.arange(seq_len), ids[1:]]).sum())
        count += seq_len
    loss = total / count

    text = open(text_file, "rb").read()
    expected = [int(i) for i in np.fromfile(ids_bin, dtype=np.uint16) if i != 0]
    got = llm.tokenize(text, add_bos=False, special=False)
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        print(f"llama.cpp tokenizes differently from id {first}: {got[first:first + 8]} vs {expected[first:first + 8]}")
        return 1

    llm.reset()
    out = llm.create_completion("A capital do Brasil é", max_tokens=8, temperature=0.0)
    generated = out["usage"]["completion_tokens"]
    if generated < 1:
        print("llama.cpp generated nothing")
        return 1
    print(f"gguf ok: logits max |diff| {logit_diff:.3g} (max |logit| {scale:.3g}); "
          f"loss {loss:.6f} perplexity {math.exp(loss):.6g} over {count} tokens; "
          f"{len(got)} ids tokenized alike; generated {generated} tokens: {out['choices'][0]['text']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
