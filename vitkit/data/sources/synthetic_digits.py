"""Multi-digit tasks made from MNIST: ``mnist-grid`` and ``mnist-layout``.

Both are generated deterministically from a seed, train images only from MNIST's train split and
test images only from its test split, so no test digit is ever seen in training.
"""

from __future__ import annotations

import torch

from vitkit.data.types import RawDataset, SourceContext, Split
from vitkit.errors import ConfigError

EMPTY = 10  # the label of an empty cell in mnist-layout


def tile(cells: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, grid*grid, C, h, w) cells in row-major order -> (N, C, grid*h, grid*w) images."""
    n, k, c, h, w = cells.shape
    assert k == grid * grid
    x = cells.reshape(n, grid, grid, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c, grid * h, grid * w)


def _mnist(ctx: SourceContext) -> dict[str, Split]:
    from vitkit.data.catalog import load_dataset

    return load_dataset(
        "mnist",
        data_root=ctx.data_root,
        download=ctx.download,
        progress=ctx.progress,
        splits=ctx.splits,  # a test split alone needs MNIST's test files alone
    ).splits


def compose(base: Split, *, grid: int, empty_prob: float, seed: int, n: int) -> Split:
    """``n`` images of grid x grid cells, each an MNIST digit from ``base`` or empty."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(base), (n, grid * grid), generator=g)
    cells = base.images[idx]  # (n, k, 1, 28, 28)
    labels = base.labels[idx].clone()
    if empty_prob > 0:
        empty = torch.rand(n, grid * grid, generator=g) < empty_prob
        cells[empty] = 0
        labels[empty] = EMPTY
    return Split(tile(cells, grid), labels)


def _build(ctx: SourceContext, *, grid: int, empty_prob: float, classes: list[str]) -> RawDataset:
    seed = int(ctx.options.get("seed", 0))
    base = _mnist(ctx)
    splits = {}
    for offset, name in enumerate(("train", "test")):  # the seed of a split, built alone or not
        if not ctx.wants(name):
            continue
        ctx.progress(f"compose {name}", 0, 1)
        splits[name] = compose(
            base[name],
            grid=grid,
            empty_prob=empty_prob,
            seed=seed * 1000 + offset,
            n=len(base[name]),
        )
        ctx.progress(f"compose {name}", 1, 1)
    return RawDataset(
        splits=splits, classes=classes, info={"grid": grid, "empty_prob": empty_prob, "seed": seed}
    )


def build_grid(ctx: SourceContext) -> RawDataset:
    """56x56: a 2x2 grid of four digits; label (4,) = the digits, row-major."""
    return _build(ctx, grid=2, empty_prob=0.0, classes=[str(i) for i in range(10)])


def build_layout(ctx: SourceContext) -> RawDataset:
    """grid x grid cells, each a digit or empty (label 10, class 'empty'); label per cell."""
    grid = int(ctx.options.get("grid", 2))
    p = float(ctx.options.get("empty_prob", 0.3))
    if grid not in (2, 3, 4):
        raise ConfigError(f"mnist-layout grid must be 2, 3 or 4, got {grid}")
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"mnist-layout empty_prob must be in [0, 1), got {p}")
    return _build(ctx, grid=grid, empty_prob=p, classes=[*(str(i) for i in range(10)), "empty"])
