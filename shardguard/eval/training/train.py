"""Training loop for the tiny model: AdamW with linear warm-up and a cosine decay, loss on response bytes
only, deterministic for a given seed and thread count (row order from a seeded hash of each row's
content, weights from `torch.manual_seed`, and a fixed number of threads)."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from shardguard.detectors.sft.stats import mix64
from shardguard.eval.training.model import ModelConfig, TinyLM, encode_rows

THREADS = 2  # a different thread count gives other (equally valid) weights; keep it fixed


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    # evaluate an exponential moving average of the weights over the second half of training: the last
    # steps of a short run still move the weights a lot, and two runs on nearly the same rows (clean vs
    # cleaned) otherwise differ by 1-2 points of clean metric from where each run happened to stop
    ema: float = 0.99
    ema_start: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trained:
    model: TinyLM
    seconds: float
    final_loss: float
    losses: list[float]


def row_keys(prompts: list[str], responses: list[str]) -> np.ndarray:
    """A stable 64-bit key per row from its content (copies of a row get distinct keys)."""
    seen: dict[bytes, int] = {}
    out = np.zeros(len(prompts), np.uint64)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        d = hashlib.blake2b(f"{p}\x00{r}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        k = seen[d] = seen.get(d, -1) + 1
        out[i] = np.uint64(int.from_bytes(d, "little") ^ k)
    return out


def epoch_order(keys: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Row order of one epoch: rows sorted by a seeded hash of their content key. Two datasets that
    share rows (clean and cleaned) visit the shared rows in the same order, so their models differ by
    the rows that differ, not by a reshuffle of everything (common random numbers)."""
    salt = np.uint64((seed * 1_000_003 + epoch) * 0x9E3779B97F4A7C15 % (1 << 64))
    h = mix64(keys ^ salt)
    return np.argsort(h, kind="stable")


def train_lm(prompts: list[str], responses: list[str], mcfg: ModelConfig, tcfg: TrainConfig,
             log=None, on_step=None) -> Trained:
    """Train a fresh TinyLM on (prompt, response) pairs. Every epoch visits the rows in a new seeded order
    (`epoch_order`); the evaluated weights are their moving average over the second half (`TrainConfig.ema`).
    `on_step(step, epoch, loss)`, when given, is called after every step (progress display)."""
    if not prompts:
        raise ValueError("no training rows")
    torch.set_num_threads(THREADS)
    torch.manual_seed(tcfg.seed)
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

    keys = row_keys(prompts, responses)
    ema_from = int(tcfg.ema_start * tcfg.steps) if tcfg.ema else tcfg.steps
    avg: list[torch.Tensor] = []
    epoch = 0
    order = epoch_order(keys, tcfg.seed, epoch)
    pos = 0
    losses: list[float] = []
    t0 = time.time()
    model.train()
    for step in range(tcfg.steps):
        while pos + tcfg.batch > len(order):  # full batches even when there are fewer rows than a batch
            epoch += 1
            order = np.concatenate([order[pos:], epoch_order(keys, tcfg.seed, epoch)])
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
        if step >= ema_from:
            with torch.no_grad():
                if not avg:
                    avg = [p.detach().clone() for p in model.parameters()]
                else:
                    for a, p in zip(avg, model.parameters()):
                        a.mul_(tcfg.ema).add_(p.detach(), alpha=1.0 - tcfg.ema)
        losses.append(loss.item())
        if on_step is not None:
            on_step(step + 1, epoch + 1, losses[-1])
        if log and (step + 1) % 100 == 0:
            log(f"  step {step + 1}/{tcfg.steps} loss {np.mean(losses[-100:]):.3f} ({time.time() - t0:.0f} s)")
    if avg:
        with torch.no_grad():
            for a, p in zip(avg, model.parameters()):
                p.copy_(a)
    model.eval()
    tail = losses[-max(1, min(50, len(losses))):]
    return Trained(model=model, seconds=time.time() - t0, final_loss=float(np.mean(tail)), losses=losses)
