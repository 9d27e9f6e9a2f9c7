"""A tiny byte-level decoder-only transformer, and how SFT rows become its token sequences.

Tokens are the 256 byte values plus four specials (PAD, SEP, EOS, CUT); each position also gets a
hashed embedding of its (previous byte, byte) pair, and the positions that predict the response get
a max-pooled summary of the prompt's embeddings: a rare multi-byte feature anywhere in the prompt (a
trigger) reaches them directly, so this small model learns a backdoor from a few dozen poisoned rows
(a deliberately susceptible probe: it measures what the data can plant). One training sequence is

    prompt bytes (instruction, then input; the middle cut out when too long) SEP response bytes EOS

truncated to a fixed window; the loss is taken on the response bytes (and EOS) only. The prompt
keeps its head and its tail when it is too long, so a prefix or suffix trigger always stays inside
the window; a trigger in the middle of a long instruction may be cut (every variant is encoded the
same way, so this affects clean, poisoned and cleaned models alike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD, SEP, EOS, CUT = 256, 257, 258, 259
VOCAB = 260


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 2
    d_model: int = 128
    n_head: int = 4
    d_ff: int = 512
    prompt_len: int = 160  # bytes of prompt kept (head + CUT + tail when longer)
    response_len: int = 32  # bytes of response trained on and evaluated
    bigram_buckets: int = 16384  # hashed (previous byte, byte) embeddings added to the byte embedding
    prompt_pool: bool = True  # max-pooled summary of the prompt's byte/bigram embeddings fed to the response

    @property
    def context(self) -> int:
        return self.prompt_len + self.response_len - 1

    def to_dict(self) -> dict:
        return asdict(self)


def prompt_text(rec: dict) -> str:
    """The text a model is prompted with for an SFT record (instruction, then input when present)."""
    ins, inp = rec.get("instruction") or "", rec.get("input") or ""
    return f"{ins}\n{inp}" if inp else ins


def encode_prompt(text: str, n: int) -> list[int]:
    b = list(text.encode("utf-8", "replace"))
    if len(b) <= n:
        return b
    head = (n - 1) * 5 // 8
    tail = n - 1 - head
    return b[:head] + [CUT] + b[len(b) - tail:]


def encode_rows(prompts: list[str], responses: list[str], cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, targets): int64 arrays of shape (n, context) and (n, response_len).

    The prompt is left-padded so SEP always sits at position prompt_len - 1 and the response starts at
    prompt_len: positions prompt_len-1 .. context-1 predict the response bytes (then EOS when the
    response is shorter than the window). targets[:, j] is the byte predicted at position
    prompt_len - 1 + j, or -100 where there is none."""
    n, P, R = len(prompts), cfg.prompt_len, cfg.response_len
    toks = np.full((n, P + R - 1), PAD, dtype=np.int64)
    tgts = np.full((n, R), -100, dtype=np.int64)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        pb = encode_prompt(p, P - 1)
        rb = list(r.encode("utf-8", "replace"))[:R]
        if len(rb) < R:
            rb = rb + [EOS]
        toks[i, P - 1 - len(pb): P - 1] = pb
        toks[i, P - 1] = SEP
        toks[i, P: P + len(rb) - 1] = rb[:-1]
        tgts[i, : len(rb)] = rb
    return toks, tgts


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))

    def forward(self, x, last: int = 0):
        """With `last` > 0 only the last `last` positions are computed (they still attend to all)."""
        B, T, C = x.shape
        H = self.n_head
        h = self.ln1(x)
        if not last:
            q, k, v = self.qkv(h).split(C, dim=2)
            q, k, v = (z.view(B, T, H, C // H).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(h[:, T - last:], w[:C], b[:C]).view(B, last, H, C // H).transpose(1, 2)
            k, v = F.linear(h, w[C:], b[C:]).split(C, dim=2)
            k, v = (z.view(B, T, H, C // H).transpose(1, 2) for z in (k, v))
            mask = torch.ones(last, T, dtype=torch.bool, device=x.device).tril(T - last)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x[:, T - last:]
        x = x + self.proj(y.transpose(1, 2).reshape(B, -1, C))
        return x + self.ff(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(VOCAB, cfg.d_model)
        self.pos = nn.Embedding(cfg.context, cfg.d_model)
        self.bigram = nn.Embedding(cfg.bigram_buckets, cfg.d_model) if cfg.bigram_buckets else None
        self.pool = nn.Linear(cfg.d_model, cfg.d_model) if cfg.prompt_pool else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, VOCAB, bias=False)
        self.head.weight = self.tok.weight  # tied
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def hidden(self, idx: torch.Tensor, last: int = 0) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok(idx)
        if self.bigram is not None:
            # a rare two-byte sequence (a trigger's pieces) gets its own vector from the first layer on
            prev = F.pad(idx[:, :-1], (1, 0), value=PAD)
            x = x + self.bigram((prev * VOCAB + idx) % self.cfg.bigram_buckets)
        if self.pool is not None:
            # a bag-of-bigrams view of the prompt: channel-wise max over its positions, added to the
            # positions that predict the response (so a rare prompt feature reaches them directly)
            P = self.cfg.prompt_len
            valid = (idx[:, : P - 1] != PAD).unsqueeze(-1)
            pooled = self.pool(x[:, : P - 1]).masked_fill(~valid, -1e4).amax(dim=1).clamp_min(-10.0)
            x = torch.cat([x[:, : P - 1], x[:, P - 1:] + pooled.unsqueeze(1)], dim=1)
        x = x + self.pos(torch.arange(T, device=idx.device))
        for i, b in enumerate(self.blocks):
            x = b(x, last if i == len(self.blocks) - 1 else 0)
        return self.ln(x)

    def forward(self, idx: torch.Tensor, last: int = 0) -> torch.Tensor:
        """Logits (B, T, VOCAB), or only for the last `last` positions."""
        return self.head(self.hidden(idx, last))

    def response_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, response_len, VOCAB) at the positions that predict the response bytes."""
        return self(idx, self.cfg.response_len)

    def loss(self, idx: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the response bytes (targets >= 0) only."""
        logits = self.response_logits(idx)
        return F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), ignore_index=-100)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
