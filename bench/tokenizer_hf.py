#!/usr/bin/env python3
"""The HuggingFace (and tiktoken) side of bench/tokenizer.sh.

  tokenizer_hf.py train CORPUS VOCAB OUT.json OURS.json   BpeTrainer with our pre-tokenizer
  tokenizer_hf.py count TOKENIZER.json CORPUS             tokens and bytes of CORPUS
  tokenizer_hf.py encode TOKENIZER.json CORPUS            encode_batch MB/s (threads: RAYON_RS_NUM_CPUS)
  tokenizer_hf.py tiktoken OURS.json CORPUS               tiktoken MB/s with our vocabulary
CORPUS is one document per line.
"""
import json
import sys
import time


def docs(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n").rstrip("\r") for l in f if l.strip()]


def train(corpus, vocab, out, ours):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    pattern = json.load(open(ours, encoding="utf-8"))["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab), min_frequency=2,
                                  special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[SEP]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([corpus], trainer=trainer)
    tok.save(out)


def best_of(fn, rounds=3):
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    mode = sys.argv[1]
    if mode == "train":
        train(*sys.argv[2:6])
    elif mode == "count":
        from tokenizers import Tokenizer
        tok, lines = Tokenizer.from_file(sys.argv[2]), docs(sys.argv[3])
        tokens = sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False))
        print(tokens, sum(len(l.encode()) for l in lines))
    elif mode == "encode":
        from tokenizers import Tokenizer
        path, lines = sys.argv[2], docs(sys.argv[3])
        size = sum(len(l.encode()) for l in lines)
        # A fresh tokenizer per round: its word cache starts cold, as in a real run.
        secs = best_of(lambda: Tokenizer.from_file(path).encode_batch(lines, add_special_tokens=False))
        print(f"{size / secs / 1e6:.1f}")
    elif mode == "tiktoken":
        import tiktoken
        from tokenizers import decoders
        spec = json.load(open(sys.argv[2], encoding="utf-8"))
        lines = docs(sys.argv[3])
        size = sum(len(l.encode()) for l in lines)
        byte_of = {c: b for b, c in enumerate(_byte_alphabet())}
        ranks = {bytes(byte_of[c] for c in token): rank
                 for token, rank in spec["model"]["vocab"].items() if rank >= 5}
        enc = tiktoken.Encoding("sovereign", pat_str=spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"],
                                mergeable_ranks=ranks, special_tokens={})
        per_line = best_of(lambda: [enc.encode_ordinary(l) for l in lines])
        batch = best_of(lambda: enc.encode_ordinary_batch(lines, num_threads=2))
        print(f"{size / per_line / 1e6:.1f} {size / batch / 1e6:.1f}")


def _byte_alphabet():
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


if __name__ == "__main__":
    main()
