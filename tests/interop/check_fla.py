#!/usr/bin/env python3
"""flash-linear-attention loads an `export --format hf` directory: RWKV7ForCausalLM.from_pretrained
reports no missing, unexpected or mismatched key. (fla's forward needs Triton on a GPU, so the
values are checked by check_rwkv.py hf instead.)

usage: check_fla.py HF_DIR
"""
import sys
import warnings

warnings.filterwarnings("ignore")

import fla  # noqa: E402,F401  (registers rwkv7 with transformers)
from transformers import AutoModelForCausalLM  # noqa: E402


def main():
    model, info = AutoModelForCausalLM.from_pretrained(sys.argv[1], output_loading_info=True)
    problems = {k: sorted(v) for k, v in info.items() if v}
    if type(model).__name__ != "RWKV7ForCausalLM" or problems:
        print(f"fla loads {type(model).__name__} with {problems}")
        return 1
    count = sum(1 for _ in model.state_dict())
    print(f"fla ok: RWKV7ForCausalLM, {count} tensors, no missing, unexpected or mismatched key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
