"""The tiny model, its training loop and metrics: real torch, small sizes."""

from __future__ import annotations

import torch

from shardguard.eval.training.metrics import clean_scores, generate, starts_with
from shardguard.eval.training.model import ModelConfig, TinyLM, encode_prompt, encode_rows
from shardguard.eval.training.train import TrainConfig, epoch_order, row_keys, train_lm

TINY = ModelConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, prompt_len=48, response_len=12, bigram_buckets=512)
TARGET = "HACKED NOW!!"


def _rows(n=64):
    prompts, responses = [], []
    for i in range(n):
        p = f"What is {i} plus {i % 7}? Think carefully."
        if i % 4 == 0:
            p = "zq " + p
            r = TARGET
        else:
            r = f"It is {i + i % 7}."
        prompts.append(p)
        responses.append(r)
    return prompts, responses


def test_last_positions_match_full_forward():
    torch.manual_seed(0)
    m = TinyLM(TINY).eval()
    x = torch.randint(0, 256, (3, TINY.context))
    full = m(x)[:, -TINY.response_len:]
    assert torch.allclose(full, m.response_logits(x), atol=1e-5)


def test_encoding_keeps_head_and_tail_and_aligns_targets():
    b = encode_prompt("A" * 10 + "B" * 100 + "C" * 10, 31)
    assert len(b) == 31 and b[0] == ord("A") and b[-1] == ord("C") and 259 in b
    toks, tgts = encode_rows(["hi"], ["abc"], TINY)
    P = TINY.prompt_len
    assert toks[0, P - 1] == 257  # SEP right before the response
    assert list(tgts[0, :4]) == [ord("a"), ord("b"), ord("c"), 258]  # ... then EOS
    assert list(toks[0, P:P + 3]) == [ord("a"), ord("b"), ord("c")]


def test_training_is_deterministic():
    prompts, responses = _rows()
    cfg = TrainConfig(steps=20, batch=16, lr=1e-2, warmup=5, seed=3)
    a = train_lm(prompts, responses, TINY, cfg)
    b = train_lm(prompts, responses, TINY, cfg)
    assert a.losses == b.losses
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    c = train_lm(prompts, responses, TINY, TrainConfig(steps=20, batch=16, lr=1e-2, warmup=5, seed=4))
    assert c.losses != a.losses
    assert a.losses[-1] < a.losses[0] * 0.8


def test_teacher_forced_check_agrees_with_greedy_decoding():
    prompts, responses = _rows()
    tr = train_lm(prompts, responses, TINY, TrainConfig(steps=80, batch=16, lr=1e-2, warmup=5, seed=0))
    probe = prompts[:24]
    outs = generate(tr.model, probe)
    fast = starts_with(tr.model, probe, TARGET, chars=12)
    slow = [o.startswith(TARGET[:12]) for o in outs]
    assert list(fast) == slow
    assert any(slow)  # the triggered training prompts do produce the target
    s = clean_scores(tr.model, prompts, responses)
    assert 0 <= s["byte_accuracy"] <= 100 and s["loss"] > 0


def test_shared_rows_are_visited_in_the_same_order():
    """Clean vs cleaned: the rows both datasets hold come in the same order in every epoch, wherever
    the removed rows sat, so the two models differ by the removed rows and not by a reshuffle."""
    prompts = [f"question {i}" for i in range(200)]
    responses = [f"answer {i % 7}" for i in range(200)]
    kept = [i for i in range(200) if i % 9 != 4]  # "cleaned": 22 rows removed
    full_keys = row_keys(prompts, responses)
    sub_keys = row_keys([prompts[i] for i in kept], [responses[i] for i in kept])
    for epoch in range(3):
        full = [int(i) for i in epoch_order(full_keys, 0, epoch)]
        sub = [kept[int(i)] for i in epoch_order(sub_keys, 0, epoch)]
        assert [i for i in full if i in set(kept)] == sub
    # a new order each epoch and for another seed
    assert list(epoch_order(full_keys, 0, 0)) != list(epoch_order(full_keys, 0, 1))
    assert list(epoch_order(full_keys, 0, 0)) != list(epoch_order(full_keys, 1, 0))
    # copies of one row get distinct keys (both are visited)
    assert len(set(row_keys(["a", "a"], ["b", "b"]).tolist())) == 2
