#!/usr/bin/env python3
"""Trains HuggingFace tokenizers on a corpus (one document per line), for the interop test and
the benchmark.

usage: hf_train.py CORPUS VOCAB_SIZE OUT_OURS_PRETOKENIZER.json [OUT_HF_BYTELEVEL.json]
The first file uses BpeTrainer with our special tokens and our pre-tokenizer (read from a
tokenizer.json of ours given as $SOVEREIGN_TOKENIZER). The optional second file is HuggingFace's
own ByteLevelBPETokenizer (GPT-2 regex), which Sovereign refuses with the field at fault.
"""
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers.implementations import ByteLevelBPETokenizer

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]"]


def docs(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield line


def main():
    corpus, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ours = json.load(open(os.environ["SOVEREIGN_TOKENIZER"], encoding="utf-8"))
    pattern = ours["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, min_frequency=2, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(docs(corpus), trainer=trainer)
    tok.save(out)
    if len(sys.argv) > 4:
        gpt2 = ByteLevelBPETokenizer()
        gpt2.train_from_iterator(docs(corpus), vocab_size=vocab, special_tokens=SPECIALS, show_progress=False)
        gpt2.save(sys.argv[4])


if __name__ == "__main__":
    main()
