from __future__ import annotations

import itertools
import math

import pytest
import torch

from vitkit import create_model
from vitkit.train.optim import build_optimizer, build_scheduler, lr_at, param_groups


def test_no_decay_on_norms_biases_and_embeddings() -> None:
    model = create_model("vit-nano")
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {"pos_embed", "cls_token", "norm.weight", "head.bias", "blocks.0.norm1.bias"} <= skipped
    assert {"blocks.0.attn.qkv.weight", "head.weight", "patch_embed.proj.weight"} <= decayed
    assert len(decayed) + len(skipped) == len(names)


def test_warmup_then_cosine() -> None:
    kw = dict(total_steps=100, warmup_steps=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, **kw) == pytest.approx(0.1)
    values = [lr_at(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_scheduler_steps_per_iteration() -> None:
    model = create_model("vit-nano")
    opt = build_optimizer(model, lr=0.5, weight_decay=0.0, device=torch.device("cpu"))
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4, lr=0.5, min_lr=0.0)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.125) and max(seen) == pytest.approx(0.5)
    assert seen[-1] < 0.01
