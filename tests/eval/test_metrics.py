from __future__ import annotations

import importlib
import math

import pytest
import torch

from vitkit.eval import metrics

# 8 samples, 5 classes: class 3 has no samples but is predicted once; class 4 has no samples and
# is never predicted.
LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
PREDS = torch.tensor([0, 1, 1, 1, 0, 2, 3, 0])
C = 5


def test_confusion_matrix_by_hand() -> None:
    cm = metrics.confusion_matrix(PREDS, LABELS, C)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [
        [2, 1, 0, 0, 0],  # true 0: samples 0, 1, 7 -> predicted 0, 1, 0
        [1, 2, 0, 0, 0],  # true 1: samples 2, 3, 4 -> predicted 1, 1, 0
        [0, 0, 1, 1, 0],  # true 2: samples 5, 6 -> predicted 2, 3
        [0, 0, 0, 0, 0],  # true 3: no samples
        [0, 0, 0, 0, 0],  # true 4: no samples
    ]
    assert int(cm.sum()) == len(LABELS)
    with pytest.raises(ValueError, match="predictions for"):
        metrics.confusion_matrix(PREDS[:3], LABELS, C)


def test_precision_recall_f1_by_hand_with_empty_classes() -> None:
    cm = metrics.confusion_matrix(PREDS, LABELS, C)
    p, r, f1, support = metrics.precision_recall_f1(cm)
    assert p.tolist() == pytest.approx([2 / 3, 2 / 3, 1.0, 0.0, 0.0])  # predicted: 3, 3, 1, 1, 0
    assert r.tolist() == pytest.approx([2 / 3, 2 / 3, 0.5, 0.0, 0.0])  # support: 3, 3, 2, 0, 0
    # F1 = 2PR / (P + R): class 2 = 2 * 1 * 0.5 / 1.5 = 2/3; empty classes 0, not NaN
    assert f1.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0.0, 0.0])
    assert support.tolist() == [3, 3, 2, 0, 0]
    assert not torch.isnan(f1).any()
    avg = metrics.averages(p, r, f1, support)
    assert avg["macro"]["precision"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 5)
    assert avg["macro"]["recall"] == pytest.approx((2 / 3 + 2 / 3 + 0.5) / 5)
    assert avg["macro"]["f1"] == pytest.approx(2 / 5)
    # over the 3 classes with samples only (a test set of some of the model's classes)
    assert avg["macro_present"]["f1"] == pytest.approx(2 / 3)
    assert avg["macro_present"]["precision"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert avg["weighted"]["f1"] == pytest.approx((3 * 2 / 3 + 3 * 2 / 3 + 2 * 2 / 3) / 8)
    assert avg["weighted"]["recall"] == pytest.approx(5 / 8)  # weighted recall = accuracy


def test_f1_is_not_truncated_below_one() -> None:
    # precision 0.5 and recall 0.25 -> F1 = 2 * 0.125 / 0.75 = 1/3 (ratios < 1 are not clamped)
    cm = torch.tensor([[1, 3], [1, 0]])
    _, _, f1, _ = metrics.precision_recall_f1(cm)
    assert float(f1[0]) == pytest.approx(1 / 3)


def _reference(
    labels: list[int], preds: list[int], n: int
) -> tuple[list[list[int]], list[float], list[float], list[float], list[int]]:
    """Confusion matrix, precision, recall, F1 and support counted one sample at a time, with
    scikit-learn's conventions (zero_division=0)."""
    cm = [[0] * n for _ in range(n)]
    for t, p in zip(labels, preds, strict=True):
        cm[t][p] += 1
    support = [sum(cm[c]) for c in range(n)]
    predicted = [sum(cm[t][c] for t in range(n)) for c in range(n)]
    precision = [cm[c][c] / predicted[c] if predicted[c] else 0.0 for c in range(n)]
    recall = [cm[c][c] / support[c] if support[c] else 0.0 for c in range(n)]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall, strict=True)]
    return cm, precision, recall, f1, support


def test_matches_a_sample_by_sample_reference() -> None:
    """Checked against scikit-learn, which no test environment installs (not in the dev extra):
    the test was always skipped. A sample-by-sample count is the reference, and scikit-learn
    too where it is there."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (500,), generator=g)
    preds = torch.where(
        torch.rand(500, generator=g) < 0.6, labels, torch.randint(0, 8, (500,), generator=g)
    )
    cm = metrics.confusion_matrix(preds, labels, 8)  # class 7 is predicted, never true
    want_cm, *want = _reference(labels.tolist(), preds.tolist(), 8)
    assert cm.tolist() == want_cm
    p, r, f1, s = metrics.precision_recall_f1(cm)
    for mine, theirs in zip((p, r, f1, s), want, strict=True):
        assert mine.tolist() == pytest.approx(theirs)
    try:
        sk = importlib.import_module("sklearn.metrics")
    except ImportError:
        return
    assert cm.tolist() == sk.confusion_matrix(labels, preds, labels=list(range(8))).tolist()
    theirs = sk.precision_recall_fscore_support(
        labels, preds, labels=list(range(8)), zero_division=0
    )
    for mine, t in zip((p, r, f1, s), theirs, strict=True):
        assert mine.tolist() == pytest.approx(list(t))


def test_topk_accuracy_single_and_multi_output() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 3])
    assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(logits, labels, 2) == pytest.approx(1 / 3)
    assert metrics.topk_accuracy(logits, labels, 3) == pytest.approx(2 / 3)
    assert metrics.topk_accuracy(logits, labels, 10) == 1.0  # k above the class count: all
    multi = torch.stack([logits, logits.flip(-1)], dim=1)  # (3, 2, 4)
    multi_labels = torch.tensor([[0, 3], [1, 1], [3, 0]])
    # position 0 as above: row 0 right; position 1 (argmax 3, 0, 2): row 0 right
    assert metrics.topk_accuracy(multi, multi_labels, 1) == pytest.approx(2 / 6)
    per_pos, exact = metrics.correct_counts(multi, multi_labels)
    assert per_pos.tolist() == [1, 1] and int(exact) == 1


def test_calibration_bins_and_ece_by_hand() -> None:
    conf = torch.tensor([0.95, 0.95, 0.55, 0.55, 0.25])
    correct = torch.tensor([True, False, True, True, False])
    count, acc, mean_conf = metrics.calibration_bins(conf, correct, 15)
    # (b/15, (b+1)/15]: 0.95 -> bin 14, 0.55 -> bin 8, 0.25 -> bin 3
    assert count.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2]
    assert float(acc[14]) == 0.5 and float(acc[8]) == 1.0 and float(acc[3]) == 0.0
    assert float(mean_conf[14]) == pytest.approx(0.95)
    # 2/5 * |0.5 - 0.95| + 2/5 * |1 - 0.55| + 1/5 * |0 - 0.25|
    want = 0.4 * 0.45 + 0.4 * 0.45 + 0.2 * 0.25
    assert metrics.expected_calibration_error(conf, correct, 15) == pytest.approx(want)


def test_calibration_bin_edges() -> None:
    conf = torch.tensor([0.0, 1 / 15, 1 / 15 + 1e-6, 1.0], dtype=torch.float64)
    count, _, _ = metrics.calibration_bins(conf, torch.ones(4, dtype=torch.bool), 15)
    assert count[0] == 2 and count[1] == 1 and count[14] == 1  # right-closed bins


def test_ece_zero_when_calibrated_and_one_when_certain_and_wrong() -> None:
    # in every bin the accuracy equals the confidence
    conf = torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    correct = torch.tensor([True, False, True, False, True, True])
    assert metrics.expected_calibration_error(conf, correct) == pytest.approx(0.0)
    wrong = torch.zeros(6, dtype=torch.bool)
    assert metrics.expected_calibration_error(torch.ones(6), wrong) == pytest.approx(1.0)
    assert metrics.expected_calibration_error(torch.tensor([]), torch.tensor([])) == 0.0
    assert math.isfinite(metrics.expected_calibration_error(conf, correct, n_bins=1))
