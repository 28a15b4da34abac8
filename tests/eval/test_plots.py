"""The evaluation figures."""

from __future__ import annotations

import importlib.util
import itertools
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


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib (the plot extra) is not installed",
)
@pytest.mark.parametrize("classes", [CIFAR10, [str(i) for i in range(10)]])
def test_confusion_class_names_on_the_x_axis_do_not_overlap(
    classes: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CIFAR-10's ten names were written level (only > 10 classes were tilted): 'airplane' and
    'automobile' ran into each other under the matrix. Digits still fit level."""
    import vitkit.eval.plots as plots

    made: list[tuple[object, object]] = []

    def capture(*args: object, **kwargs: object) -> object:
        made.append(plots_figure(*args, **kwargs))
        return made[-1]

    plots_figure = plots.figure
    monkeypatch.setattr(plots, "figure", capture)
    cm = torch.arange(100).reshape(10, 10)
    assert plot_confusion(cm, classes, tmp_path / "cm.png", title="cifar10 test")
    (fig, ax) = made[0]
    labels = ax.get_xticklabels()  # type: ignore[attr-defined]
    boxes = sorted((t.get_window_extent() for t in labels), key=lambda b: b.x0)
    assert [t.get_text() for t in labels] == classes
    if classes is CIFAR10:  # tilted (the boxes of tilted labels overlap; the text does not)
        assert {t.get_rotation() for t in labels} == {45.0}
    else:  # level, side by side
        assert {t.get_rotation() for t in labels} == {0.0}
        assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(boxes)), [
            (b.x0, b.x1) for b in boxes
        ]
    fig_width = fig.get_figwidth() * fig.dpi  # type: ignore[attr-defined]
    assert all(b.x0 >= 0 and b.x1 <= fig_width for b in boxes)  # none cut off at the edges
    assert ax.yaxis.label.get_window_extent().x0 >= 0  # type: ignore[attr-defined]  # "true"
