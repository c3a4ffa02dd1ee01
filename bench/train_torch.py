"""PyTorch side of bench/train.sh: the same RWKV-7 (docs/model.md), batch and T, on CPU.

Usage: train_torch.py step LAYERS EMBD VOCAB T B STEPS | matmul N
Prints one JSON object. The WKV recurrence runs step by step in autograd (PyTorch has no CPU
kernel for it); everything else is the same math as Sovereign's model: token shift, the six
mixes, LoRAs, the decay, value residual, GroupNorm, bonus, gate, ReLU² channel mix, untied head,
cross-entropy, AdamW (0.9, 0.99, eps 1e-18) with clipping at 1.0.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
N = 64


def lora_dims(c):
    size = lambda f: max(32, round(f * math.sqrt(c) / 32) * 32)
    return size(2.5), size(2.5), size(1.7), size(5.0)


class Block(torch.nn.Module):
    def __init__(self, c, layer):
        super().__init__()
        dw, da, dv, dg = lora_dims(c)
        p = lambda *shape: torch.nn.Parameter(torch.randn(*shape) * 0.02)
        self.layer = layer
        self.ln1 = torch.nn.LayerNorm(c)
        self.ln2 = torch.nn.LayerNorm(c)
        self.mix = p(6, c)
        self.w0, self.a0, self.v0 = p(c), p(c), p(c)
        self.w1, self.w2 = p(c, dw), p(dw, c)
        self.a1, self.a2 = p(c, da), p(da, c)
        self.v1, self.v2 = p(c, dv), p(dv, c)
        self.g1, self.g2 = p(c, dg), p(dg, c)
        self.k_k, self.k_a, self.r_k = p(c), p(c), p(c // N, N)
        self.r = torch.nn.Linear(c, c, bias=False)
        self.k = torch.nn.Linear(c, c, bias=False)
        self.v = torch.nn.Linear(c, c, bias=False)
        self.o = torch.nn.Linear(c, c, bias=False)
        self.ln_x = torch.nn.GroupNorm(c // N, c, eps=64e-5)
        self.ffn_mix = p(c)
        self.ffn_k = torch.nn.Linear(c, 4 * c, bias=False)
        self.ffn_v = torch.nn.Linear(4 * c, c, bias=False)

    def time_mix(self, x, v_first):
        b, t, c = x.shape
        h = c // N
        delta = F.pad(x, (0, 0, 1, -1)) - x
        xr, xw, xk, xv, xa, xg = (x + delta * self.mix[i] for i in range(6))
        r, k, v = self.r(xr), self.k(xk), self.v(xv)
        w = torch.exp(-math.exp(-0.5) * torch.sigmoid(self.w0 + torch.tanh(xw @ self.w1) @ self.w2))
        if v_first is None:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(b, t, h, N), dim=-1)
        k = k * (1 + (a - 1) * self.k_a)
        rr, ww, kh, vv, aa = (z.view(b, t, h, N) for z in (r, w, k, v, a))
        bb = kk * aa
        s = torch.zeros(b, h, N, N)
        ys = []
        for i in range(t):
            sa = s @ (-kk[:, i]).unsqueeze(-1)
            s = s * ww[:, i].unsqueeze(-2) + sa @ bb[:, i].unsqueeze(-2) + vv[:, i].unsqueeze(-1) @ kh[:, i].unsqueeze(-2)
            ys.append((s @ rr[:, i].unsqueeze(-1)).squeeze(-1))
        y = torch.stack(ys, 1).reshape(b * t, c)
        y = self.ln_x(y).view(b, t, c)
        y = y + ((rr * kh * self.r_k).sum(-1, keepdim=True) * vv).view(b, t, c)
        return self.o(y * g), v_first

    def forward(self, x, v_first):
        att, v_first = self.time_mix(self.ln1(x), v_first)
        x = x + att
        xx = self.ln2(x)
        xk = xx + (F.pad(xx, (0, 0, 1, -1)) - xx) * self.ffn_mix
        return x + self.ffn_v(torch.relu(self.ffn_k(xk)) ** 2), v_first


class Rwkv(torch.nn.Module):
    def __init__(self, layers, c, vocab):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, c)
        self.ln0 = torch.nn.LayerNorm(c)
        self.blocks = torch.nn.ModuleList(Block(c, i) for i in range(layers))
        self.ln_out = torch.nn.LayerNorm(c)
        self.head = torch.nn.Linear(c, vocab, bias=False)

    def forward(self, idx):
        x = self.ln0(self.emb(idx))
        v_first = None
        for block in self.blocks:
            x, v_first = block(x, v_first)
        return self.head(self.ln_out(x))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_bench(layers, c, vocab, t, b, steps):
    torch.manual_seed(0)
    model = Rwkv(layers, c, vocab)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-18)
    data = torch.randint(0, vocab, (b, t + 1))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    return {"params": params, "step_s": median, "tokens_per_s": b * t / median, "peak_rss_mb": peak_rss_mb()}


def matmul_bench(n):
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        x @ y
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * n**3 / best / 1e9}


if __name__ == "__main__":
    # Cap the address space (default 16 GiB) so that a step too big for the machine fails
    # cleanly instead of swapping it to a halt.
    cap = int(float(__import__("os").environ.get("TORCH_BENCH_MAX_GB", "16")) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if sys.argv[1] == "step":
        try:
            print(json.dumps(step_bench(*map(int, sys.argv[2:8]))))
        except (MemoryError, RuntimeError) as e:
            print(json.dumps({"error": f"out of memory under {cap / 2**30:.0f} GiB: {str(e)[:80]}"}))
    else:
        print(json.dumps(matmul_bench(int(sys.argv[2]))))
