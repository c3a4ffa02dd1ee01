#!/usr/bin/env python3
"""Checks with the official `rwkv` package (rwkv.model.RWKV, strategy 'cpu fp32'), run by
tests/world_models.rs.

usage:
  check_rwkv.py pth MODEL_PTH VAL_BIN SEQ_LEN OURS_NPY
      RWKV loads the export as it is; its logits on the first SEQ_LEN ids of VAL_BIN match
      OURS_NPY (test-model --logits).
  check_rwkv.py hf HF_DIR VAL_BIN SEQ_LEN OURS_NPY
      config.json says model_type rwkv7 with the shape of the tensors; the HF-named tensors of
      model.safetensors, renamed back to RWKV-LM's names with the inverse of
      flash-linear-attention's converter, run in RWKV and give the same logits.
Prints one "... ok" line with the largest difference; exits 1 otherwise.
"""
import json
import os
import re
import sys
import tempfile

os.environ["RWKV_V7_ON"] = "1"
os.environ.setdefault("RWKV_JIT_ON", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rwkv.model import RWKV  # noqa: E402


def logits_of(pth_without_suffix, tokens):
    model = RWKV(model=pth_without_suffix, strategy="cpu fp32")
    out, _ = model.forward(tokens, None, full_output=True)
    return out.float().numpy()


def from_hf(directory):
    """RWKV-LM state dict from fla's names: the converter's renames and transposes, undone."""
    from safetensors.torch import load_file

    config = json.load(open(os.path.join(directory, "config.json")))
    assert config["model_type"] == "rwkv7", config["model_type"]
    assert config["architectures"] == ["RWKV7ForCausalLM"], config["architectures"]
    hf = load_file(os.path.join(directory, "model.safetensors"))
    width, layers = config["hidden_size"], config["num_hidden_layers"]
    assert hf["model.embeddings.weight"].shape == (config["vocab_size"], width)
    assert hf["model.layers.0.attn.w_lora.lora.0.weight"].shape == (config["decay_low_rank_dim"], width)
    assert hf["model.layers.0.attn.r_k"].shape == (config["num_heads"], config["head_dim"])
    assert f"model.layers.{layers - 1}.ffn.key.weight" in hf
    assert not any(k.startswith("model.layers.0.attn.v_lora") for k in hf)
    fixed = {"model.embeddings.weight": "emb.weight", "model.norm.weight": "ln_out.weight",
             "model.norm.bias": "ln_out.bias", "lm_head.weight": "head.weight"}
    modules = {"attn": "att", "pre_norm": "ln0", "attn_norm": "ln1", "ffn_norm": "ln2", "ffn": "ffn"}
    projections = {"r_proj": "receptance", "k_proj": "key", "v_proj": "value", "o_proj": "output",
                   "g_norm": "ln_x"}
    out = {}
    for name, tensor in hf.items():
        if name in fixed:
            out[fixed[name]] = tensor
            continue
        layer, module, rest = re.match(r"model\.layers\.(\d+)\.(\w+)\.(.*)", name).groups()
        lora = re.match(r"([wvag])_lora\.lora\.(0\.weight|2\.weight|2\.bias)", rest)
        if lora:
            kind, part = lora.groups()
            index = {"2.bias": "0", "0.weight": "1", "2.weight": "2"}[part]
            tensor = tensor.t() if index != "0" else tensor
            rest = kind + index
        else:
            head, _, tail = rest.partition(".")
            rest = projections.get(head, head) + ("." + tail if tail else "")
        if tensor.dim() == 1 and not rest.endswith(("weight", "bias")):
            tensor = tensor.view(1, 1, -1)
        out[f"blocks.{layer}.{modules[module]}.{rest}"] = tensor.contiguous()
    return out


def main():
    what, path, val_bin, seq_len, ours_npy = sys.argv[1:6]
    tokens = np.fromfile(val_bin, dtype=np.uint16)[: int(seq_len)].tolist()
    if what == "pth":
        theirs = logits_of(path[: -len(".pth")], tokens)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(from_hf(path), os.path.join(tmp, "back.pth"))
            theirs = logits_of(os.path.join(tmp, "back"), tokens)
    ours = np.load(ours_npy)
    scale = float(np.abs(ours).max())
    diff = float(np.abs(theirs - ours).max())
    if not diff <= 1e-4 * scale + 1e-5:
        print(f"{what}: logits differ by {diff} (max |logit| {scale})")
        return 1
    print(f"{what} ok: logits max |diff| {diff:.3g} (max |logit| {scale:.3g}) over {len(tokens)} positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
