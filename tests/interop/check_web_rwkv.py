#!/usr/bin/env python3
"""web-rwkv checks of an `export --format st` file, run by tests/world_models.rs.

usage:
  check_web_rwkv.py layout MODEL_ST MODEL_PTH
      against the `.pth` export of the same model: every tensor under its lower-cased name, in
      f16, the LoRA matrices (w1 w2 a1 a2 g1 g2 v1 v2) transposed, the metadata format=pt: what
      web-rwkv's convert_safetensors.py makes of a .pth.
  check_web_rwkv.py logits WEB_RWKV_LOGITS OURS_NPY
      the logits web-rwkv computed (web-rwkv-check, float32 [T, V]) against test-model --logits,
      within what f16 weights and activations allow: max |diff| <= 1% of the largest logit, and
      the same most likely token at 95% of positions or more.
"""
import sys

import numpy as np
import torch
from safetensors import safe_open

LORA = ("w1", "w2", "a1", "a2", "g1", "g2", "v1", "v2")


def logits(web_rwkv_bin, ours_npy):
    ours = np.load(ours_npy)
    theirs = np.fromfile(web_rwkv_bin, dtype=np.float32).reshape(ours.shape)
    scale = float(np.abs(ours).max())
    diff = float(np.abs(theirs - ours).max())
    same_top = float((theirs.argmax(axis=1) == ours.argmax(axis=1)).mean())
    if not (diff <= 1e-2 * scale and same_top >= 0.95):
        print(f"web-rwkv logits differ: max |diff| {diff} (max |logit| {scale}), top-1 agree {same_top}")
        return 1
    print(f"web-rwkv logits ok: max |diff| {diff:.3g} (max |logit| {scale:.3g}), mean |diff| "
          f"{float(np.abs(theirs - ours).mean()):.3g}, top-1 agree {same_top:.0%} over {len(ours)} positions")
    return 0


def main():
    if sys.argv[1] == "logits":
        return logits(*sys.argv[2:4])
    st_path, pth_path = sys.argv[2:4]
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
