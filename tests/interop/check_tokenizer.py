#!/usr/bin/env python3
"""Interop check, run by tests/tokenizer_interop.rs: HuggingFace `tokenizers` loads our
tokenizer.json and gives the same ids for every document, decodes them back to the same text,
and numpy.memmap reads train.bin as the ids we wrote.

usage: check_tokenizer.py CORPUS TOKENIZER_JSON TRAIN_BIN   (CORPUS is read one document per line)
Prints one line of counts on success; exits 1 with the first difference otherwise.
"""
import sys

import numpy as np
from tokenizers import Tokenizer


def main():
    corpus, tokenizer_json, train_bin = sys.argv[1:4]
    tok = Tokenizer.from_file(tokenizer_json)
    eos = tok.token_to_id("[EOS]")
    with open(corpus, encoding="utf-8") as f:
        docs = [line.rstrip("\n").rstrip("\r") for line in f]
    docs = [d for d in docs if d.strip()]
    encoded = tok.encode_batch(docs, add_special_tokens=False)
    ours = np.memmap(train_bin, dtype=np.uint16, mode="r")
    at = 0
    for n, (doc, enc) in enumerate(zip(docs, encoded)):
        ids = enc.ids
        got = ours[at:at + len(ids) + 1].tolist()
        if got != ids + [eos]:
            print(f"document {n}: ids differ\n text: {doc!r}\n HF:   {ids + [eos]}\n ours: {got}")
            return 1
        back = tok.decode(ids, skip_special_tokens=False)
        if back != doc:
            print(f"document {n}: decode differs\n text: {doc!r}\n back: {back!r}")
            return 1
        at += len(ids) + 1
    if at != len(ours):
        print(f"train.bin has {len(ours)} ids, the documents {at}")
        return 1
    print(f"interop ok: {len(docs)} documents, {at} ids identical, decode round-trips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
