#!/usr/bin/env python3
"""World-vocabulary check, run by tests/world_tokenizer.rs against the official tokenizer of the
`rwkv` package (rwkv.rwkv_tokenizer.TRIE_TOKENIZER, which needs no torch).

usage:
  check_world.py vocab                      prints the path of rwkv_vocab_v20230424.txt
  check_world.py corpus CORPUS TRAIN_BIN    every line-document's official ids, then 0, must be
                                            what TRAIN_BIN holds, in order
  check_world.py bytes HEX...               prints the official ids of each hex byte string, one
                                            line each (space-separated)
Exits 1 with the first difference.
"""
import os
import sys
import time

import numpy as np
import rwkv
from rwkv.rwkv_tokenizer import TRIE_TOKENIZER

VOCAB = os.path.join(os.path.dirname(rwkv.__file__), "rwkv_vocab_v20230424.txt")


def main():
    what = sys.argv[1]
    if what == "vocab":
        print(VOCAB)
        return 0
    tok = TRIE_TOKENIZER(VOCAB)
    if what == "bytes":
        for text in sys.argv[2:]:
            print(" ".join(map(str, tok.encodeBytes(bytes.fromhex(text)))))
        return 0
    corpus, train_bin = sys.argv[2:4]
    with open(corpus, "rb") as f:
        docs = [line.rstrip(b"\n").rstrip(b"\r") for line in f]
    docs = [d for d in docs if d.strip()]
    start = time.perf_counter()
    encoded = [tok.encodeBytes(d) for d in docs]
    seconds = time.perf_counter() - start
    ours = np.memmap(train_bin, dtype=np.uint16, mode="r")
    at = 0
    for n, (doc, ids) in enumerate(zip(docs, encoded)):
        got = ours[at:at + len(ids) + 1].tolist()
        if got != ids + [0]:
            print(f"document {n}: ids differ\n text: {doc!r}\n official: {ids + [0]}\n ours: {got}")
            return 1
        if tok.decodeBytes(got[:-1]) != doc:
            print(f"document {n}: does not decode back")
            return 1
        at += len(ids) + 1
    if at != len(ours):
        print(f"train.bin has {len(ours)} ids, the official tokenizer {at}")
        return 1
    size = sum(len(d) for d in docs)
    print(f"world ok: {len(docs)} documents, {at} ids; official TRIE_TOKENIZER "
          f"{size / seconds / 1e6:.2f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
