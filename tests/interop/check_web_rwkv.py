#!/usr/bin/env python3
"""web-rwkv layout check of an `export --format st` file against the `.pth` export of the same
model: every tensor of the .pth under its lower-cased name, in f16, the LoRA matrices
(w1 w2 a1 a2 g1 g2 v1 v2) transposed, and the metadata format=pt: what web-rwkv's
convert_safetensors.py makes of a .pth. (web-rwkv itself is not run here.)

usage: check_web_rwkv.py MODEL_ST MODEL_PTH
"""
import sys

import torch
from safetensors import safe_open

LORA = ("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2")


def main():
    st_path, pth_path = sys.argv[1:3]
    reference = torch.load(pth_path, map_location="cpu", weights_only=True)
    with safe_open(st_path, framework="pt") as st:
        if st.metadata() != {"format": "pt"}:
            print(f"metadata {st.metadata()}")
            return 1
        keys = set(st.keys())
        if keys != {k.lower() for k in reference}:
            print(f"keys differ: {sorted(keys ^ set(reference))[:8]}")
            return 1
        for name, tensor in reference.items():
            want = tensor.half()
            if name.rsplit(".", 1)[-1] in LORA:
                want = want.transpose(-2, -1)
            got = st.get_tensor(name.lower())
            if got.dtype != torch.float16 or got.shape != want.shape or not torch.equal(got, want.contiguous()):
                print(f"{name}: {got.dtype} {tuple(got.shape)} differs from {tuple(want.shape)}")
                return 1
    print(f"web-rwkv layout ok: {len(keys)} tensors, f16, LoRA transposed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
