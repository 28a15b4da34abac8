"""Any image file or PIL image -> the tensor the model was trained on.

The steps are the ``folder:`` source's (``vitkit.data.sources.folder``), so a file gives the same
pixels here as it did in training: EXIF orientation applied, 16-bit and float grayscale scaled
to 8 bits, converted to L or RGB by the model's channel count (alpha dropped), resized to
image_size x image_size with bilinear antialiased resampling (no crop), then
``(x / 255 - mean) / std`` with the run's mean and std, computed exactly as the training loader
does.
"""

from __future__ import annotations

import glob
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from vitkit.data.augment import AugmentConfig, BatchAugment
from vitkit.data.catalog import Dataset
from vitkit.data.sources.folder import IMAGE_EXTENSIONS, convert_image, walk_images
from vitkit.data.types import Split
from vitkit.errors import UserError

ImageInput = Image.Image | str | os.PathLike[str] | np.ndarray | Tensor | BinaryIO
IMAGE_TYPES = (Image.Image, str, os.PathLike)
ACCEPTED = (
    "a file path (or a folder, or a glob pattern), an open binary file, a PIL image, a numpy "
    "array (H, W) or (H, W, C) or a tensor (C, H, W), uint8 or float in [0, 1]"
)
_GLOB_MAGIC = re.compile(r"[*?[]")


def _as_pattern(path: str | os.PathLike[str]) -> str | None:
    """The glob pattern ``path`` is, or None for a literal path.

    An existing path is literal, whatever its name holds. Otherwise its longest leading folder
    that exists is literal too, escaped (``data/[v1]/*.png`` with a real folder ``data/[v1]``
    matches the files in that folder, not in ``data/v/``), and the rest is a pattern if it holds
    ``*``, ``?`` or ``[``.
    """
    pattern = os.path.expanduser(os.fspath(path))  # "~/[x].png": the file in the home folder
    if not _GLOB_MAGIC.search(pattern) or Path(pattern).exists():
        return None
    seps = {os.sep, os.altsep} - {None}
    for cut in reversed([i for i, c in enumerate(pattern) if c in seps and i > 0]):
        head, rest = pattern[:cut], pattern[cut:]
        if _GLOB_MAGIC.search(head) and os.path.isdir(head):  # the longest existing folder
            return glob.escape(head) + rest if _GLOB_MAGIC.search(rest) else None
    return pattern


def is_glob(path: str | os.PathLike[str]) -> bool:
    """A pattern (``*``, ``?`` or ``[``) that names no existing file (``_as_pattern``)."""
    return _as_pattern(path) is not None


def is_file_like(x: object) -> bool:
    """An open binary file or stream (``open(p, 'rb')``, ``io.BytesIO``, an upload's file)."""
    return callable(getattr(x, "read", None)) and not isinstance(x, (str, os.PathLike))


# what PIL raises on a truncated, corrupt or non-image file
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(path: object, e: BaseException) -> UserError:
    if isinstance(e, UnidentifiedImageError):
        return UserError(f"cannot read {path}: not an image file PIL can decode")
    first = next(iter(str(e).splitlines()), "") or type(e).__name__
    return UserError(f"cannot read {path}: {first}")


def to_uint8(img: Image.Image, *, channels: int, size: int) -> Tensor:
    """A PIL image -> (channels, size, size) uint8, as the folder: loader decodes a file."""
    if img.width == 0 or img.height == 0:
        raise UserError(f"an empty image ({img.width}x{img.height} pixels)")
    try:
        a = convert_image(img, channels=channels, size=size)
    except (ValueError, OSError) as e:  # PIL has no conversion to L/RGB from e.g. LAB
        raise UserError(f"cannot convert a {img.mode} image to {_target(channels)}: {e}") from None
    # a contiguous copy: torch.from_numpy warns on PIL's read-only buffer
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def _target(channels: int) -> str:
    return "RGB" if channels == 3 else "L"


def _channels_last(a: np.ndarray) -> bool:
    return a.ndim == 3 and a.shape[-1] in (1, 3, 4)


def split_images(images: object) -> Iterable[Any]:
    """What ``predict`` and ``attention_maps`` take, as single images: a list, or for a
    generator an iterator over it.

    One path or PIL image. A numpy array in PIL's layout: one image (H, W) or (H, W, C) with C
    of 1, 3 or 4, or a batch (N, H, W, C), or (N, H, W) of grayscale images. A tensor in
    torchvision's: one image (H, W) or (C, H, W) with C of 1, 3 or 4, or a batch (N, C, H, W).
    A shape that reads both ways, a numpy (3, 28, 28) (three images, or one channels-first
    image?), is refused rather than guessed; (1, H, W) is one grayscale image either way.
    Anything else iterable (a list, an array of paths, a generator) is a sequence of images;
    each is checked when it is read, and a generator is read as it goes, not all at once.
    A folder among them gives every image file inside it, a glob pattern that names no file
    (``"scans/*.png"``, ``"**/*.jpg"``) the files it matches (``expand_inputs``)."""
    if isinstance(images, (str, os.PathLike)):
        return list(_expand_path(images))
    if isinstance(images, Image.Image) or is_file_like(images):
        return [images]
    if isinstance(images, Tensor):
        shape = tuple(images.shape)
        if images.ndim == 2 or (images.ndim == 3 and shape[0] in (1, 3, 4)):
            return [images]
        if images.ndim == 4:
            return list(images)
        raise UserError(
            f"a tensor of shape {shape} is neither one image, (H, W) or (C, H, W) with C of "
            "1, 3 or 4, nor a batch (N, C, H, W)"
        )
    if isinstance(images, np.ndarray):
        if images.dtype.kind in "USO":  # file paths (or objects) in an array: a sequence
            return list(_expand_paths(images.tolist()))
        if images.ndim == 2:
            return [images]
        if images.ndim == 3:
            if images.shape[0] == 1 and not _channels_last(images):
                return [images[0]]  # one grayscale image, read either way
            if images.shape[-1] == 2 or (
                images.shape[0] in (1, 3, 4) and not _channels_last(images)
            ):
                raise UserError(
                    f"an array of shape {images.shape} is ambiguous: pass one image as "
                    "(H, W, C), a batch as (N, H, W, C), or a list of arrays"
                )
            return [images] if _channels_last(images) else list(images)
        if images.ndim == 4:
            if images.shape[-1] not in (1, 3, 4):
                raise UserError(
                    f"an array of shape {images.shape} is not a batch (N, H, W, C) with C of "
                    "1, 3 or 4"
                )
            return list(images)
        raise UserError(f"an array of shape {images.shape} is not an image or a batch")
    if isinstance(images, (bytes, bytearray)):
        raise UserError(
            f"cannot read bytes as images (an encoded file's bytes: pass io.BytesIO(data)); "
            f"pass {ACCEPTED}"
        )
    if isinstance(images, (Dataset, Split)):  # a Dataset iterates its split names
        where = "ds['test'].images" if isinstance(images, Dataset) else "split.images"
        raise UserError(f"pass a split's image tensor ({where}), not the {type(images).__name__}")
    if isinstance(images, Sequence):
        return list(_expand_paths(images))
    try:  # a generator (a camera, a stream of decoded frames): read as it comes, never held
        return _expand_paths(iter(images))  # type: ignore[call-overload]
    except TypeError:
        raise UserError(
            f"cannot read an object of type {type(images).__name__} as images: pass {ACCEPTED}"
        ) from None


def array_to_pil(a: np.ndarray | Tensor) -> Image.Image:
    """One image as an array -> a PIL image: numpy (H, W) / (H, W, C), tensor (H, W) / (C, H, W);
    uint8 as it is, floats in [0, 1] scaled to 0-255 (rounded), bool as 0 / 255."""
    shape = tuple(a.shape)
    if isinstance(a, Tensor):
        t = a.detach().cpu()
        if t.is_floating_point():
            t = t.float()  # bfloat16 and float16 have no numpy twin PIL reads
        if not (t.ndim == 2 or (t.ndim == 3 and t.shape[0] in (1, 3, 4))):
            raise UserError(f"a tensor of shape {shape} is not one (H, W) or (C, H, W) image")
        a = (t.permute(1, 2, 0) if t.ndim == 3 else t).numpy()
    if not (a.ndim == 2 or _channels_last(a)):
        raise UserError(f"an array of shape {shape} is not one image: pass {ACCEPTED}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise UserError(f"a float image must hold values in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        a = np.rint(a * 255.0).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise UserError(f"an image array must be uint8 or float in [0, 1], got {a.dtype}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UserError(f"an empty image ({a.shape[1]}x{a.shape[0]} pixels)")
    return Image.fromarray(np.ascontiguousarray(a))


def _image_file(path: str | os.PathLike[str]) -> Path:
    """``path``, which must name a file: a missing one or a folder is a one-line ``UserError``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():  # `vitkit predict DIR` takes one: the library's own call for it, named
        raise UserError(
            f"{path} is a directory, not an image (vitkit.eval.expand_inputs([path]) lists the "
            "images in it)"
        )
    return path


def _source(path: str | os.PathLike[str] | BinaryIO) -> Any:
    """What ``Image.open`` reads: a checked path, or an open file rewound to its start."""
    if not is_file_like(path):
        return _image_file(path)  # type: ignore[arg-type]
    problem = None
    if getattr(path, "closed", False) is True:  # its read and seek raise a bare ValueError
        problem = "the file is closed"
    elif isinstance(path, io.TextIOBase) or isinstance(getattr(path, "encoding", None), str):
        # open(p), io.StringIO, or a wrapper of a text file (SpooledTemporaryFile(mode="w+"),
        # NamedTemporaryFile(mode="w+"): not TextIOBase, but with its encoding): str, not bytes
        problem = f"a text-mode file ({type(path).__name__}) reads str, not bytes"
    if problem:
        raise UserError(
            f"cannot read {_name(path)}: {problem}; pass an open binary file (open(path, 'rb'), "
            "still open when it is read), bytes as io.BytesIO(data), or the path"
        )
    if getattr(path, "seekable", lambda: False)():
        path.seek(0)  # type: ignore[union-attr]
    return path


def _name(path: object) -> str:
    """A file's name for messages: the path, an open file's ``name``, or 'the stream'."""
    if is_file_like(path):
        name = getattr(path, "name", None)
        return str(name) if isinstance(name, (str, os.PathLike)) else "the stream"
    return str(path)


def open_image(path: str | os.PathLike[str] | BinaryIO) -> Image.Image:
    """Open and fully decode an image file (a path, or an open binary file); anything
    unreadable is a one-line ``UserError``."""
    path = _source(path)
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except _DECODE_ERRORS as e:
        raise _unreadable(_name(path), e) from None


def read_image(
    path: str | os.PathLike[str] | BinaryIO, *, channels: int, size: int
) -> tuple[Tensor, tuple[int, int], str]:
    """Decode a file to (channels, size, size) uint8, its original (width, height) and mode.

    JPEGs are decoded through libjpeg's draft mode at a scale >= size, as the folder: loader
    does, so a file gives exactly the pixels it gave in training. ``path`` may be an open binary
    file (``io.BytesIO(uploaded_bytes)``), read from its start.
    """
    path = _source(path)
    mode = "RGB" if channels == 3 else "L"
    try:
        with Image.open(path) as im:
            original, original_mode = im.size, im.mode
            if im.format == "JPEG":
                im.draft(mode, (size, size))
            return to_uint8(im, channels=channels, size=size), original, original_mode
    except _DECODE_ERRORS as e:
        raise _unreadable(_name(path), e) from None


def normalize(x: Tensor, mean: list[float], std: list[float]) -> Tensor:
    """uint8 (B, C, H, W) -> float32 ``(x / 255 - mean) / std``, the training loader's arithmetic."""
    return BatchAugment(
        AugmentConfig(), mean=mean, std=std, num_classes=1, device=x.device
    ).normalize(x)


def _expand_paths(items: Iterable[Any]) -> Iterator[Any]:
    """``items`` as they are, each folder or glob pattern among them replaced by its files."""
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            yield from _expand_path(item)
        else:
            yield item


def _images_in(folder: Path) -> list[Path]:
    """A folder's image files, recursively, sorted; symlinked folders followed, as a folder:
    dataset does (rglob passed them over)."""
    return sorted(Path(e.path) for e in walk_images(str(folder)))


def _expand_path(item: str | os.PathLike[str]) -> list[Any]:
    """A folder's image files, a glob pattern's matches, or a plain path (``~`` expanded, as
    in a pattern)."""
    given = os.fspath(item)
    expanded = os.path.expanduser(given)
    path = Path(expanded)
    if path.is_dir():
        found = _images_in(path)
        if not found:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise UserError(f"no image files in {path} (looked for {exts})")
        return found
    pattern = _as_pattern(expanded)
    if pattern is not None:
        # sorted, hidden names skipped (glob's own rule); folders matched give their images, as
        # a folder given does; other files matched are passed over, as in a folder; each image
        # once ("scans/**" matches a folder, its subfolders and their files alike)
        matches = sorted(glob.glob(pattern, recursive=True))
        files: dict[Path, None] = {}
        for m in map(Path, matches):
            if m.is_dir():
                files.update(dict.fromkeys(_images_in(m)))
            elif m.suffix.lower() in IMAGE_EXTENSIONS:
                files[m] = None
        if not files:
            what = "files" if not matches else "image files"
            raise UserError(f"no {what} match {given}")
        return list(files)
    return [item if expanded == given else path]


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a directory gives every image file inside it (recursively, sorted), a
    glob pattern that names no file (``scans/*.png``, ``**/*.jpg``) the files it matches (the
    longest existing folder it starts with read literally: ``_as_pattern``).

    Hidden names are skipped. A directory without images, or a pattern that matches nothing, is
    a ``UserError``.
    """
    return [Path(p) for p in _expand_paths(paths)]
