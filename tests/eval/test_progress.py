"""Progress of bench, compare and demo: training reports every step with its epoch and loss (without
changing the result), the bench counts its runs, and nothing is shown off a terminal."""

from __future__ import annotations

import io
import re
import sys

import torch

from shardguard.eval.progress import NO_BARS, Bars
from shardguard.eval.training.model import ModelConfig
from shardguard.eval.training.train import TrainConfig, train_lm

TINY = ModelConfig(n_layer=1, d_model=32, n_head=2, d_ff=64, prompt_len=24, response_len=8, bigram_buckets=256)


def _rows(n=40):
    return [f"question {i}: what is {i} plus one?" for i in range(n)], [str(i + 1) for i in range(n)]


def test_training_reports_each_step_with_its_epoch_and_loss_without_changing_the_result():
    prompts, responses = _rows()
    cfg = TrainConfig(steps=12, batch=16, lr=1e-2, warmup=2, seed=1)
    seen = []
    a = train_lm(prompts, responses, TINY, cfg, on_step=lambda s, ep, loss: seen.append((s, ep, loss)))
    b = train_lm(prompts, responses, TINY, cfg)
    assert [s for s, _, _ in seen] == list(range(1, 13))
    epochs = [ep for _, ep, _ in seen]
    assert epochs == sorted(epochs) and epochs[0] == 1 and epochs[-1] == 5  # 12 * 16 rows over 40 rows a epoch
    assert [loss for _, _, loss in seen] == a.losses == b.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_bars_show_count_rate_and_note_and_write_lines_apart():
    buf = io.StringIO()
    bars = Bars(on=True, stream=buf)
    with bars.bar("train clean", total=3, unit="step") as b:
        for _ in range(3):
            b.update(1)
        b.note("epoch 2 (40 rows), loss 1.234")
        bars.write("scan: 3 rows flagged poison")
    out = buf.getvalue()
    assert "train clean" in out and re.search(r"3/3", out) and "step/s" in out
    assert "scan: 3 rows flagged poison\n" in out


def test_no_bars_off_a_terminal_or_with_quiet(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file
    assert not Bars.for_terminal(quiet=False).on and not Bars.for_terminal(quiet=True).on
    with NO_BARS.bar("x", total=2) as b:
        b.update(2)
        b.note("n")
    assert sys.stderr.getvalue() == ""


def test_bench_bar_counts_every_run(tmp_path):
    from shardguard.eval.bench.run import run_bench

    buf = io.StringIO()
    bench = run_bench(tmp_path, attacks=["sft_refusal_backdoor"], rates=[0.05, 0.1], datasets=["dolly"], limit=40,
                      only=["trigger"], echo=lambda s: None, bars=Bars(on=True, stream=buf))
    assert len(bench["results"]) == 2 and len(bench["clean"]) == 1
    assert re.search(r"bench: 100%\|.*\| 3/3", buf.getvalue())
