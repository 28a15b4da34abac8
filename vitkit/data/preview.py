"""A labelled grid of samples as a PIL image (what `vitkit data preview` writes)."""

from __future__ import annotations

import math

import torch
from PIL import Image, ImageDraw, ImageFont

from vitkit.data.augment import AugmentConfig, BatchAugment
from vitkit.data.catalog import Dataset
from vitkit.errors import UserError, check_seed


def label_text(label: torch.Tensor, classes: list[str]) -> str:
    if label.ndim == 0:
        return classes[int(label)]
    return " ".join("·" if classes[int(v)] == "empty" else classes[int(v)] for v in label)


def make_preview(
    dataset: Dataset,
    *,
    split: str = "train",
    n: int = 64,
    augmented: bool = False,
    seed: int = 0,
    cell: int = 96,
) -> Image.Image:
    """``n`` random samples of ``split`` in a square grid, each with its label underneath.

    ``augmented`` shows them after the dataset's default training augmentation.
    """
    if n < 1:
        raise UserError(f"the number of samples must be >= 1, got {n}")
    check_seed("seed", seed)
    s = dataset[split]
    g = torch.Generator().manual_seed(seed)
    n = min(n, len(s))
    idx = torch.randperm(len(s), generator=g)[:n]
    images, labels = s.images[idx], s.labels[idx]
    if augmented:
        cfg = AugmentConfig.preset(dataset.spec.augment, dataset.image_size)
        aug = BatchAugment(
            cfg, mean=dataset.mean, std=dataset.std, num_classes=dataset.num_classes, device="cpu"
        )
        x, _ = aug(images, labels, g)
        images = ((x - aug.shift) / aug.scale).round().clamp(0, 255).to(torch.uint8)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    side = dataset.image_size
    scale = max(1, cell // side)
    tile = side * scale
    text_h = 16
    canvas = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + text_h + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i in range(n):
        arr = images[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).convert("RGB")
        img = img.resize((tile, tile), Image.Resampling.NEAREST)
        r, c = divmod(i, cols)
        x0, y0 = 4 + c * (tile + 4), 4 + r * (tile + text_h + 4)
        canvas.paste(img, (x0, y0))
        draw.text(
            (x0, y0 + tile + 1),
            label_text(labels[i], dataset.classes)[:24],
            fill="black",
            font=font,
        )
    return canvas
