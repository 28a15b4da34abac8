"""Metrics as pure tensor functions: no I/O, no model, easy to test by hand.

Conventions: ``logits`` are (N, C) or (N, K, C) for K output positions; ``labels`` (N,) or
(N, K); a confusion matrix has true classes on rows and predicted classes on columns. A ratio
whose denominator is zero (precision of a class never predicted, recall of a class with no
samples) is 0, as scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

import torch
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


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Share of labels among the top-k logits, in [0, 1]; multi-output: over all positions."""
    flat_logits, flat_labels = flatten_outputs(logits, labels)
    if len(flat_labels) == 0:
        return 0.0
    return int(topk_correct(flat_logits, flat_labels, k)) / len(flat_labels)


def flatten_outputs(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K, C), (N, K) -> (N*K, C), (N*K,): every output position counts as one sample."""
    if logits.ndim == 3:
        return logits.flatten(0, 1), labels.flatten()
    return logits, labels


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    preds, labels = preds.flatten().long(), labels.flatten().long()
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    idx = labels * num_classes + preds
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den is 0."""
    num, den = num.double(), den.double()
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def precision_recall_f1(cm: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class precision, recall, F1 (float64, (C,)) and support (int64, (C,)) from a CM.

    precision = TP / predicted, recall = TP / support, F1 = 2PR / (P + R); 0 where undefined.
    """
    tp = cm.diagonal()
    predicted = cm.sum(0)
    support = cm.sum(1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support.long()


def averages(
    precision: Tensor, recall: Tensor, f1: Tensor, support: Tensor
) -> dict[str, dict[str, float]]:
    """Macro (every class counts once, empty ones too), macro over the classes present (support
    above 0: a test set of 2 of 10 classes, all right, reads 1.0 there and 0.2 in ``macro``) and
    support-weighted averages."""
    w = support.double()
    total = float(w.sum())
    present = support > 0
    scores = (("precision", precision), ("recall", recall), ("f1", f1))
    macro = {name: float(v.mean()) for name, v in scores}
    macro_present = {
        name: float(v[present].mean()) if bool(present.any()) else 0.0 for name, v in scores
    }
    weighted = {name: float((v * w).sum() / total) if total > 0 else 0.0 for name, v in scores}
    return {"macro": macro, "macro_present": macro_present, "weighted": weighted}


def calibration_bins(
    confidence: Tensor, correct: Tensor, n_bins: int = 15
) -> tuple[Tensor, Tensor, Tensor]:
    """Per equal-width confidence bin on [0, 1]: count (int64), accuracy and mean confidence.

    Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to the first bin.
    Empty bins have accuracy and confidence 0.
    """
    conf = confidence.flatten().double()
    hit = correct.flatten().double()
    b = (conf * n_bins).ceil().long().sub(1).clamp(0, n_bins - 1)
    count = torch.bincount(b, minlength=n_bins)
    acc_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, hit)
    conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, conf)
    return count, _ratio(acc_sum, count), _ratio(conf_sum, count)


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy - mean confidence| (Guo et al., 2017)."""
    count, acc, conf = calibration_bins(confidence, correct, n_bins)
    n = int(count.sum())
    if n == 0:
        return 0.0
    return float((count.double() / n * (acc - conf).abs()).sum())
