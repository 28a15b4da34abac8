"""The evaluation figures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from vitkit.eval.plots import have_matplotlib, plot_confusion


@pytest.mark.skipif(not have_matplotlib(), reason="matplotlib (the plot extra) is not installed")
def test_class_names_the_font_lacks_leave_the_terminal_clean(tmp_path: Path) -> None:
    """'鳥' as a class name printed one matplotlib warning per character, with its source
    lines, among eval's output."""
    cm = torch.tensor([[3, 1], [0, 4]])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert plot_confusion(cm, ["鳥", "dög"], tmp_path / "cm.png", title="鳥")
    assert (tmp_path / "cm.png").stat().st_size > 0
    assert not [w for w in seen if "Glyph" in str(w.message)], [str(w.message) for w in seen]
