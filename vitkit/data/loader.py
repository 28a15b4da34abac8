"""DeviceLoader: the whole split lives on the training device as uint8; batches are cut there.

Per epoch: one permutation; per batch: an index gather, the batched augmentation and the
normalisation, all on the device. Every batch has its own seed (seed, epoch, batch), so an epoch
can be resumed at any batch and gives the same batches as an uninterrupted run. With several
ranks (DDP) each rank serves its own shard of every epoch's permutation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from vitkit._device import resolve_device
from vitkit.data.augment import AugmentConfig, BatchAugment
from vitkit.data.types import Split
from vitkit.errors import ConfigError, check_int, plural


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """A distinct 63-bit seed per (seed, epoch, batch)."""
    return (seed * 1_000_003 + epoch * 10_007 + batch) % (2**63 - 1)


class DeviceLoader:
    """Iterate ``(x, y)`` batches of a split held on ``device``.

    ``x`` is float32 normalised (B, C, H, W); ``y`` is int64 labels, or soft float labels
    (B, classes) when mixup/cutmix is on. ``augment=None`` gives plain normalised batches in
    order (evaluation). A ``device`` given by name (``"cuda"``, ``"auto"``, ...) that is not
    here, or a ``batch_size`` that is not a count of images the split has, is a ``UserError``.
    """

    def __init__(
        self,
        split: Split,
        *,
        batch_size: int,
        mean: list[float],
        std: list[float],
        num_classes: int,
        device: torch.device | str = "cpu",
        augment: AugmentConfig | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        check_int("batch size", batch_size)  # "10", 2.5, True, 0: one line, not a TypeError
        per_rank = len(split) // world_size
        if drop_last and batch_size > per_rank:
            raise ConfigError(
                f"batch size {batch_size} is larger than the {per_rank} "
                f"{plural(per_rank, 'image')} per device"
            )
        if isinstance(device, str):  # checked as load_model checks it, not deep inside .to()
            device = resolve_device(device)
        self.device = torch.device(device)  # an int is a CUDA index, as torch reads it
        self.images = split.images.to(self.device, non_blocking=True)
        self.labels = split.labels.to(self.device, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.training = augment is not None
        self.transform = BatchAugment(
            augment or AugmentConfig(),
            mean=mean,
            std=std,
            num_classes=num_classes,
            device=self.device,
        )
        self._per_rank = per_rank

    def __len__(self) -> int:
        n = self._per_rank
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> Tensor:
        """This rank's image indices for the current epoch."""
        n = len(self.images)
        if self.shuffle:
            g = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, -1))
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        perm = perm[: self._per_rank * self.world_size][self.rank :: self.world_size]
        return perm.to(self.device)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start_batch..`` of the current epoch (for resuming mid-epoch)."""
        order = self.order()
        g = torch.Generator(device=self.device) if self.training else None
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if g is not None:
                g.manual_seed(batch_seed(self.seed, self.epoch, b))
            yield self.transform(self.images[idx], self.labels[idx], g)
