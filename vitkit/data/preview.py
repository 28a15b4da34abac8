"""A labelled grid of samples as a PIL image (what `vitkit data preview` writes)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vitkit.data.augment import AugmentConfig, BatchAugment
from vitkit.data.catalog import Dataset
from vitkit.errors import UserError, check_seed

LABEL_FONT_SIZE = 10  # px: Pillow's default font's size, for which the 16 px text row is sized


@functools.cache
def label_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font the labels are drawn in: DejaVu Sans, which matplotlib ships (Latin, Greek,
    Cyrillic: 'café', 'Ελλάδα', 'Москва'), else Pillow's default (ASCII and a few more: 'é' is a
    box). Loaded on first use, so that importing vitkit.data imports no matplotlib."""
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), LABEL_FONT_SIZE)
    except (ImportError, OSError):  # no matplotlib (the `plot` extra), or no such file in it
        return ImageFont.load_default()


def _ink(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, ch: str) -> bytes | None:
    """``ch`` drawn in ``font``, or None where the font cannot take it at all (Pillow built
    without FreeType: its default is a bitmap font of Latin-1, and raises on anything else)."""
    im = Image.new("L", (3 * LABEL_FONT_SIZE, 2 * LABEL_FONT_SIZE))
    try:
        ImageDraw.Draw(im).text((0, 0), ch, fill=255, font=font)
    except UnicodeEncodeError:
        return None
    return im.tobytes()


def missing_glyphs(texts: Iterable[str]) -> list[str]:
    """The ``texts`` (class names) with a character the label font lacks ('日本'): drawn as the
    font's 'missing' box, as it draws a private-use code point (U+10FFFD), or one it cannot
    take at all."""
    font = label_font()
    box = _ink(font, "\U0010fffd")

    @functools.cache
    def lacks(ch: str) -> bool:
        if not ch.isprintable():
            return False
        ink = _ink(font, ch)
        return ink is None or ink == box

    return [t for t in texts if any(lacks(ch) for ch in t)]


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

    ``augmented`` shows them after the dataset's default training augmentation. Labels are
    drawn in :func:`label_font`; :func:`missing_glyphs` names the classes it cannot draw.
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
        if dataset.mean is None or dataset.std is None:  # load_dataset(splits=...): no train
            raise UserError(
                f"dataset '{dataset.name}' was loaded without its train statistics (splits=); "
                "load it whole to preview its augmentation"
            )
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
    font = label_font()
    for i in range(n):
        arr = images[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).convert("RGB")
        img = img.resize((tile, tile), Image.Resampling.NEAREST)
        r, c = divmod(i, cols)
        x0, y0 = 4 + c * (tile + 4), 4 + r * (tile + text_h + 4)
        canvas.paste(img, (x0, y0))
        _label(draw, (x0, y0 + tile + 1), label_text(labels[i], dataset.classes)[:24], font)
    return canvas


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """``text`` at ``xy``; with Pillow's Latin-1 bitmap font (no FreeType), each character it
    cannot take as '?' (it raised UnicodeEncodeError: 'Москва' failed the whole preview)."""
    try:
        draw.text(xy, text, fill="black", font=font)
    except UnicodeEncodeError:
        draw.text(xy, text.encode("latin-1", "replace").decode("latin-1"), fill="black", font=font)
