#!/usr/bin/env python3
"""Writes an RWKV-7 checkpoint in the layout and dtype of the released World models, with real
torch: the rwkv7-tiny fixture's blocks (L2, C128) with a World-sized vocabulary (65,536 rows of
emb and head, drawn from a seeded generator), every tensor bf16, saved with torch.save.

usage: make_world_pth.py TINY_F32_PTH OUTPUT_PTH
"""
import sys

import torch


def main():
    source, output = sys.argv[1:3]
    weights = torch.load(source, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(7)
    width = weights["emb.weight"].shape[1]
    weights["emb.weight"] = torch.randn(65536, width, generator=generator) * 1e-2
    weights["head.weight"] = torch.randn(65536, width, generator=generator) * 0.3
    torch.save({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, output)
    print(f"wrote {output}: {len(weights)} tensors, bf16")


if __name__ == "__main__":
    main()
