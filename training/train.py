"""Training loop for the tiny model: AdamW with linear warm-up and a cosine decay, loss on response bytes
only, deterministic for a given seed and thread count (batches drawn from a seeded numpy generator,
weights from `torch.manual_seed`, and a fixed number of threads)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from training.model import ModelConfig, TinyLM, encode_rows

THREADS = 2  # a different thread count gives other (equally valid) weights; keep it fixed


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trained:
    model: TinyLM
    seconds: float
    final_loss: float
    losses: list[float]


def train_lm(prompts: list[str], responses: list[str], mcfg: ModelConfig, tcfg: TrainConfig,
             log=None) -> Trained:
    """Train a fresh TinyLM on (prompt, response) pairs. Every epoch visits the rows in a new seeded order."""
    if not prompts:
        raise ValueError("no training rows")
    torch.set_num_threads(THREADS)
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    toks, tgts = encode_rows(prompts, responses, mcfg)
    toks_t, tgts_t = torch.from_numpy(toks), torch.from_numpy(tgts)
    model = TinyLM(mcfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:
        if step < tcfg.warmup:
            return tcfg.lr * (step + 1) / tcfg.warmup
        p = (step - tcfg.warmup) / max(1, tcfg.steps - tcfg.warmup)
        return tcfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    n = len(prompts)
    order = rng.permutation(n)
    pos = 0
    losses: list[float] = []
    t0 = time.time()
    model.train()
    for step in range(tcfg.steps):
        if pos + tcfg.batch > n:
            order = np.concatenate([order[pos:], rng.permutation(n)])
            pos = 0
        idx = torch.from_numpy(order[pos: pos + tcfg.batch])
        pos += tcfg.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model.loss(toks_t[idx], tgts_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log and (step + 1) % 100 == 0:
            log(f"  step {step + 1}/{tcfg.steps} loss {np.mean(losses[-100:]):.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    tail = losses[-max(1, min(50, len(losses))):]
    return Trained(model=model, seconds=time.time() - t0, final_loss=float(np.mean(tail)), losses=losses)
