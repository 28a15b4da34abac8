"""Metrics as pure tensor functions: no I/O, no model, easy to test by hand."""

from __future__ import annotations

from torch import Tensor


def correct_counts(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-position correct counts (K,) and exact-match count () for one batch.

    ``logits`` (B, C) or (B, K, C); ``labels`` (B,) or (B, K). Single-output batches give K = 1.
    """
    pred = logits.argmax(-1)
    hit = pred == labels
    if hit.ndim == 1:
        hit = hit[:, None]
    return hit.sum(0), hit.all(1).sum()


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in [0, 1] (per position, averaged, for multi-output logits)."""
    per_pos, _ = correct_counts(logits, labels)
    return float(per_pos.float().mean() / len(labels))


def topk_correct(logits: Tensor, labels: Tensor, k: int) -> Tensor:
    """How many rows have their label among the top-k logits (single-output)."""
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == labels[:, None]).any(-1).sum()
