"""AdamW with the usual ViT parameter groups, and a per-step warm-up + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Decay on weight matrices/kernels only: not on norms, biases, position or class tokens."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        base = name.rsplit(".", 1)[-1]
        (no_decay if p.ndim < 2 or base in skip or name in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW, fused where the device supports it (CUDA; CPU in recent PyTorch)."""
    groups = param_groups(model, weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), fused=True)
    except (RuntimeError, TypeError, ValueError):  # fused unsupported here
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Linear warm-up from lr/warmup to lr, then cosine decay to min_lr at total_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    min_lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step following ``lr_at``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            lr_at(step, total_steps=total_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr)
            / lr
        ),
    )
