"""The evaluation figures."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

from vitkit.eval.plots import plot_confusion


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib (the plot extra) is not installed",
)
def test_class_names_the_font_lacks_leave_the_terminal_clean(tmp_path: Path) -> None:
    """'鳥' as a class name printed one matplotlib warning per character, with its source
    lines, among eval's output."""
    cm = torch.tensor([[3, 1], [0, 4]])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert plot_confusion(cm, ["鳥", "dög"], tmp_path / "cm.png", title="鳥")
    assert (tmp_path / "cm.png").stat().st_size > 0
    assert not [w for w in seen if "Glyph" in str(w.message)], [str(w.message) for w in seen]


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib (the plot extra) is not installed",
)
def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path: Path) -> None:
    """Every figure vitkit draws set the process-wide backend to Agg: a notebook calling
    vitkit.evaluate(...).save() lost its plt.show() (bench's figure: tests/bench/test_report.py)."""
    import matplotlib

    from vitkit.train.callbacks import plot_curves

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # what a caller chose; not Agg, so a switch to Agg shows
    try:
        assert plot_confusion(torch.tensor([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png")
        metrics = tmp_path / "metrics.jsonl"
        metrics.write_text(
            '{"kind": "epoch", "epoch": 0, "train_loss": 2.0, "val": {"loss": 1.5, "acc": 0.4}}\n'
        )
        assert plot_curves(metrics, tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    for name in ("cm.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
