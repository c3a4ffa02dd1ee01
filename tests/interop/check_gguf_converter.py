#!/usr/bin/env python3
"""Our GGUF against the one llama.cpp's own converter (convert_hf_to_gguf.py, run on our `hf`
export) writes, read with gguf-py: the same tensors (names, shapes, types, every value) and the
same metadata, but for general.name (the converter takes it from the directory name) and the
chat template (the converter embeds llama.cpp's template file; ours names the built-in
"rwkv-world" template, the converter's own fallback).

usage: check_gguf_converter.py OURS_GGUF THEIRS_GGUF
"""
import sys

import numpy as np
from gguf import GGUFReader

SKIPPED = {"general.name", "tokenizer.chat_template"}


def metadata(reader):
    return {f.name: f.contents() for f in reader.fields.values()
            if not f.name.startswith("GGUF.") and f.name not in SKIPPED}


def main():
    ours, theirs = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
    a, b = metadata(ours), metadata(theirs)
    if a.keys() != b.keys():
        print(f"metadata keys differ: ours only {sorted(a.keys() - b.keys())}, "
              f"theirs only {sorted(b.keys() - a.keys())}")
        return 1
    for key in a:
        if a[key] != b[key]:
            print(f"{key}: ours {str(a[key])[:80]}, theirs {str(b[key])[:80]}")
            return 1
    ta = {t.name: t for t in ours.tensors}
    tb = {t.name: t for t in theirs.tensors}
    if ta.keys() != tb.keys():
        print(f"tensors differ: ours only {sorted(ta.keys() - tb.keys())}, theirs only {sorted(tb.keys() - ta.keys())}")
        return 1
    for name, x in ta.items():
        y = tb[name]
        if list(x.shape) != list(y.shape) or x.tensor_type != y.tensor_type:
            print(f"{name}: ours {list(x.shape)} {x.tensor_type.name}, theirs {list(y.shape)} {y.tensor_type.name}")
            return 1
        if not np.array_equal(np.asarray(x.data), np.asarray(y.data)):
            print(f"{name}: values differ")
            return 1
    print(f"converter ok: {len(ta)} tensors identical, {len(a)} metadata keys equal "
          f"(not compared: {sorted(SKIPPED)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
