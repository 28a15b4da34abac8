"""Slow: the default recipes reach their accuracy targets (run with `nox -s tests -- -m slow`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vitkit.train import train
from vitkit.train.run import resolve_config


@pytest.mark.slow
def test_mnist_mini_default_recipe_reaches_97_percent_in_3_minutes(tmp_path: Path) -> None:
    cfg = resolve_config("mnist-mini", out=str(tmp_path / "run"))
    t0 = time.perf_counter()
    result = train(cfg)
    seconds = time.perf_counter() - t0
    print(f"mnist-mini default recipe: test {result.summary['test_acc']:.4f} in {seconds:.0f} s")
    assert result.summary["test_acc"] >= 0.97
    assert seconds < 180
