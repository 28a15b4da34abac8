"""Any image file or PIL image -> the tensor the model was trained on.

The steps are the ``folder:`` source's (``vitkit.data.sources.folder``), so a file gives the same
pixels here as it did in training: EXIF orientation applied, 16-bit and float grayscale scaled
to 8 bits, converted to L or RGB by the model's channel count (alpha dropped), resized to
image_size x image_size with bilinear antialiased resampling (no crop), then
``(x / 255 - mean) / std`` with the run's mean and std, computed exactly as the training loader
does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vitkit.data.augment import AugmentConfig, BatchAugment
from vitkit.data.sources.folder import IMAGE_EXTENSIONS, convert_image
from vitkit.errors import UserError

ImageInput = Image.Image | str | os.PathLike[str]

# what PIL raises on a truncated, corrupt or non-image file
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(path: Path, e: BaseException) -> UserError:
    if isinstance(e, UnidentifiedImageError):
        return UserError(f"cannot read {path}: not an image file PIL can decode")
    first = next(iter(str(e).splitlines()), "") or type(e).__name__
    return UserError(f"cannot read {path}: {first}")


def to_uint8(img: Image.Image, *, channels: int, size: int) -> Tensor:
    """A PIL image -> (channels, size, size) uint8, as the folder: loader decodes a file."""
    a = convert_image(img, channels=channels, size=size)
    # a contiguous copy: torch.from_numpy warns on PIL's read-only buffer
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file; anything unreadable is a one-line ``UserError``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except _DECODE_ERRORS as e:
        raise _unreadable(path, e) from None


def read_image(
    path: str | os.PathLike[str], *, channels: int, size: int
) -> tuple[Tensor, tuple[int, int], str]:
    """Decode a file to (channels, size, size) uint8, its original (width, height) and mode.

    JPEGs are decoded through libjpeg's draft mode at a scale >= size, as the folder: loader
    does, so a file gives exactly the pixels it gave in training.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not an image")
    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(path) as im:
            original, original_mode = im.size, im.mode
            if im.format == "JPEG":
                im.draft(mode, (size, size))
            return to_uint8(im, channels=channels, size=size), original, original_mode
    except _DECODE_ERRORS as e:
        raise _unreadable(path, e) from None


def normalize(x: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``, the training loader's arithmetic."""
    return BatchAugment(
        AugmentConfig(), mean=mean, std=std, num_classes=1, device=x.device
    ).normalize(x)


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a directory gives every image file inside it (recursively, sorted).

    Hidden names are skipped. A directory without images is a ``UserError``.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.is_file()
            )
            if not found:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise UserError(f"no image files in {p} (looked for {exts})")
            out.extend(found)
        else:
            out.append(p)
    return out
