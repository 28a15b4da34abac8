"""The evaluation figures: confusion-matrix heatmap and a grid of confidently wrong images.

matplotlib is the optional ``plot`` extra; without it these return False and write nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vitkit._plot import figure
from vitkit.artifact import atomic_path
from vitkit.data.preview import label_text

PLOT_HINT = "matplotlib is not installed: pip install 'vitkit[plot]' for the PNG figures"


@contextlib.contextmanager
def _quiet_glyphs() -> Iterator[None]:
    """matplotlib warns, per character, naming its own source lines, when a class name has
    characters its font lacks ('鳥'); they are drawn as boxes, and the terminal stays clean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font")
        yield


def plot_confusion(cm: Tensor, classes: list[str], out: Path, *, title: str = "") -> bool:
    """Heatmap of row-normalised counts (recall per true class), counts written when <= 20 classes."""
    c = len(classes)
    counts = cm.double()
    rows = counts.sum(1, keepdim=True)
    norm = torch.where(rows > 0, counts / rows.clamp_min(1), torch.zeros_like(counts))
    side = min(max(5.0, 0.45 * c + 2.0), 40.0)
    made = figure(figsize=(side + 1.0, side))
    if made is None:
        return False
    fig, ax = made
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    font = 9 if c <= 20 else max(4, 9 - c // 20)
    tilt = c > 10
    ax.set_xticks(
        range(c),
        labels=classes,
        rotation=45 if tilt else 0,
        ha="right" if tilt else "center",
        fontsize=font,
    )
    ax.set_yticks(range(c), labels=classes, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                n = int(cm[i, j])
                if n:
                    white = float(norm[i, j]) > 0.5
                    ax.text(
                        j,
                        i,
                        str(n),
                        ha="center",
                        va="center",
                        fontsize=7 if c > 12 else 8,
                        color="white" if white else "black",
                    )
    with _quiet_glyphs(), atomic_path(out) as tmp:
        fig.tight_layout()
        if not tilt and _overlapping(ax.get_xticklabels()):  # CIFAR-10's 'airplane', 'automobile'
            for label in ax.get_xticklabels():
                label.set_rotation(45)
                label.set_horizontalalignment("right")
            fig.tight_layout()
        fig.savefig(tmp, dpi=110, format="png")
    return True


def _overlapping(labels: list[Any]) -> bool:
    """Whether neighbouring tick labels, as laid out now, touch or overlap side by side."""
    boxes = sorted((t.get_window_extent() for t in labels if t.get_text()), key=lambda b: b.x0)
    return any(a.x1 + 2.0 > b.x0 for a, b in itertools.pairwise(boxes))


def plot_wrong(
    images: Tensor,
    labels: Tensor,
    preds: Tensor,
    confidence: Tensor,
    classes: list[str],
    out: Path,
    *,
    title: str = "",
) -> bool:
    """The given uint8 (N, C, H, W) images in a grid, each titled ``true → predicted (conf %)``."""
    n = len(images)
    cols = max(1, min(5, math.ceil(math.sqrt(n)))) if n else 1
    rows = max(1, math.ceil(n / cols))
    width = max(2.2 * cols, 0.09 * len(title) + 0.5)  # one image's width cut the title short
    made = figure(rows, cols, figsize=(width, 2.5 * rows), squeeze=False)
    if made is None:
        return False
    fig, axes = made
    for ax in axes.flat:
        ax.axis("off")
    if n == 0:
        axes[0][0].text(0.5, 0.5, "no wrong predictions", ha="center", va="center")
    for i in range(n):
        ax = axes.flat[i]
        img = images[i].permute(1, 2, 0).numpy()
        if img.shape[2] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        ax.set_title(
            f"{label_text(labels[i], classes)} → {label_text(preds[i], classes)}\n"
            f"{100 * float(confidence[i]):.1f}%",
            fontsize=8,
        )
    if title:
        fig.suptitle(title, fontsize=10)
    with _quiet_glyphs(), atomic_path(out) as tmp:
        fig.tight_layout()
        fig.savefig(tmp, dpi=100, format="png")
    return True
