"""The plain types every data module shares (no torch work here, just containers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# progress(description, completed, total): total None when unknown. The library never prints;
# the CLI passes a callback that drives a Rich progress bar.
ProgressFn = Callable[[str, int, "int | None"], None]


def no_progress(description: str, completed: int, total: int | None) -> None:
    """The default progress callback: does nothing."""


@dataclass
class Split:
    """One split in memory: uint8 images (N, C, H, W) and int64 labels (N,) or (N, K)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or len(self.labels) != len(self.images):
            raise ValueError("labels must be int64 with one row per image")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:  # not the default one, which prints every pixel
        return (
            f"Split(images={str(self.images.dtype).removeprefix('torch.')}"
            f"{tuple(self.images.shape)}, labels={str(self.labels.dtype).removeprefix('torch.')}"
            f"{tuple(self.labels.shape)}, device={self.images.device})"
        )

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass
class RawDataset:
    """What a source builder returns: the splits it has and the class names."""

    splits: dict[str, Split]
    classes: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # e.g. skipped files, source paths


@dataclass
class SourceContext:
    """What a source builder gets: where its files live and what it may do."""

    root: Path  # this dataset's directory: <data_root>/<dataset dir>/
    download: bool = True  # allowed to fetch from the network
    progress: ProgressFn = no_progress
    options: dict[str, Any] = field(default_factory=dict)  # builder options (image_size, grid, ...)
    data_root: Path | None = None  # the data root itself, for datasets built from others
    # the splits to build, None: all of them; a spec with ``partial=True`` promises its builder
    # builds these alone, reading no other split's files (a test split to score, no train files)
    splits: tuple[str, ...] | None = None

    def wants(self, split: str) -> bool:
        """Whether ``split`` is one to build."""
        return self.splits is None or split in self.splits
