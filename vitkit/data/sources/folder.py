"""Any ImageFolder tree: ``PATH/{train,val,test}/<class>/*.jpg`` decoded to uint8 tensors.

Class names are the sorted subdirectories of ``train/``; ``val/`` and ``test/`` are optional and
may lack classes but not add any. Without ``train/`` (images to score, not to train on) the
classes are those of the splits there are; a folder with no split folders at all,
``PATH/<class>/*.jpg``, is one split named ``test``, what ``vitkit eval`` reads by default.

Files are decoded with PIL in a thread pool (PIL releases the GIL while it decodes) in chunks
that write straight into one preallocated array; images of at most 64x64 pixels use one thread,
since per-file Python work rules there (CIFAR-10 JPEGs on 2 cores: 60,000 files in 6.4 s on one
thread, 8.3 s on two). Unreadable files are skipped and listed in ``info["skipped"]``, never a
crash. ``fingerprint`` is the cheap cache key: names, sizes and mtimes, no file reads.

Channels, unless given, are 1 when every image decoded (all splits) is single-channel, else 3.
Each file's mode is seen as it is opened for decoding, so this costs nothing extra (a separate
header pass over every file would: 33 us a file against 96 us for the whole decode, CIFAR-10
JPEGs). A sample of headers picks the channels to decode to; when the decoded files disagree
with it, the result is corrected once: single-channel images decoded as 1 channel are copied
to 3 (what decoding them to RGB gives) and the colour ones decoded again, or, when no decoded
image is in colour (the sample's colour files were unreadable), the first channel is kept.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from vitkit.data.types import RawDataset, SourceContext, Split
from vitkit.errors import ConfigError, NotFoundError, UserError, in_cli, listed

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")  # each optional; training needs train/
_WIDE_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})  # grayscale, > 8 bits
SINGLE_CHANNEL_MODES = _WIDE_MODES | {"1", "L"}
PROBE_FILES = 64  # headers read (spread over train/) to choose size, threads, first channels
CHANNELS_RULE = "every image"  # info["channels_from"] when detected: see is_current
MAX_WORKERS = 8  # decode threads, also capped by os.cpu_count()
SMALL_IMAGE_PIXELS = 64 * 64  # at or below this, one thread: Python overhead, not decoding, rules
CHUNK = 256  # images per task; also how often progress is reported
SKIPPED_SHOWN = 5  # relative paths of skipped files kept in info["skipped"]["first"]

_LAYOUT = (
    "PATH/train/<class>/*.jpg (also .png, .bmp, ...), optional PATH/val/ and PATH/test/; or "
    "PATH/<class>/*.jpg, read as a test split"
)


@dataclass
class _SplitFiles:
    name: str
    folder: Path  # PATH/<name>, or PATH itself for a tree with no split folders
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


# -- the tree --------------------------------------------------------------------------------


def _is_image(entry: os.DirEntry[str]) -> bool:
    return (
        not entry.name.startswith(".")
        and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
        and entry.is_file()
    )


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one; a link to itself or a cycle of links (ELOOP) is neither."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _within(outer: str, inner: str) -> bool:
    """Whether the real path ``inner`` is ``outer`` or lies under it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def walk_images(directory: str, *, split: str | None = None) -> Iterator[os.DirEntry[str]]:
    """Image files under ``directory`` (recursively, hidden names skipped), in sorted order.

    Symlinked folders are followed, except a link that would read something twice or forever:
    into ``directory`` itself or to a folder above it (``ln -s .. loop``), to a target this walk
    has already followed, above the folder it is in, a link to itself, a cycle of links.
    ``split`` (the real path of a dataset's split folder, ``directory`` being one of its
    classes) widens the first rule to the split: a link into it would read other classes'
    images as this one's."""
    home = split or os.path.realpath(directory)
    yield from _walk(directory, home, frozenset({home}))


def _walk(directory: str, home: str, followed: frozenset[str]) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if not _is_dir(entry):
            if _is_image(entry):
                yield entry
            continue
        if not entry.is_symlink():
            yield from _walk(entry.path, home, followed)
            continue
        target = os.path.realpath(entry.path)  # real paths at links only: most trees have none
        if not (
            target in followed
            or _within(target, home)
            or _within(home, target)
            or _within(target, os.path.realpath(directory))
        ):
            yield from _walk(entry.path, home, followed | {target})


def _class_images(sdir: Path, name: str) -> Iterator[os.DirEntry[str]]:
    """The images of class ``name`` in split folder ``sdir``; a class folder that is a link to
    its split, to a folder above it, or into another class's folder is a ``UserError``."""
    cdir = sdir / name
    split = os.path.realpath(sdir)
    real = os.path.realpath(cdir)
    if real != os.path.join(split, name) and (_within(real, split) or _within(split, real)):
        what = (
            "its own split folder or one above it"
            if _within(real, split)
            else "another class's folder or one inside the split"
        )
        raise UserError(
            f"class folder {cdir} is a link to {real}, {what}: its images would be read twice"
        )
    yield from walk_images(str(cdir), split=split)


def _subdirs(directory: Path) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if _is_dir(e) and not e.name.startswith("."))


def _check_root(path: Path) -> None:
    if not path.is_dir():
        raise NotFoundError(f"folder dataset not found: {path} (expected {_LAYOUT})")


def _layout(path: Path) -> list[tuple[str, Path]]:
    """(split, folder) pairs: the split folders there are, in SPLITS order, or, when there are
    none, the folder itself as the test split (its subfolders are the classes)."""
    splits = [(s, path / s) for s in SPLITS if (path / s).is_dir()]
    return splits or [("test", path)]


def _classes(layout: list[tuple[str, Path]]) -> list[str]:
    """Sorted class names of train/ (val/ and test/ may not add classes of their own); without
    train/, of every split there is."""
    first = layout[0][1]
    if layout[0][0] == "train":
        classes = _subdirs(first)
    else:
        classes = sorted({c for _, d in layout for c in _subdirs(d)})
    if not classes:
        raise UserError(f"{first} has no class folders (expected {_LAYOUT})")
    for name in classes:  # names go into model.json, ONNX metadata and the terminal
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise UserError(
                f"class folder name is not valid UTF-8: '{shown}' in {first}; rename it"
            ) from None
    for _, sdir in layout[1:]:
        extra = sorted(set(_subdirs(sdir)) - set(classes))
        if extra:
            names = ", ".join(f"'{c}'" for c in extra)
            empty = [c for c in extra if next(walk_images(str(sdir / c)), None) is None]
            hint = (
                f" ({', '.join(empty)}: no images in {'it' if len(empty) == 1 else 'them'}; "
                "remove the empty folder)"
                if empty
                else ""
            )
            raise UserError(f"{sdir} has classes that train/ lacks: {names}{hint}")
    return classes


def _scan(path: Path) -> tuple[list[str], list[_SplitFiles]]:
    layout = _layout(path)
    classes = _classes(layout)
    splits = []
    for split, sdir in layout:
        sf = _SplitFiles(split, sdir)
        for label, name in enumerate(classes):
            if (sdir / name).is_dir():
                for entry in _class_images(sdir, name):
                    sf.files.append(Path(entry.path))
                    sf.labels.append(label)
        splits.append(sf)
    if layout[0][0] == "train":  # refused before any decoding; unreadable ones after it
        counts = collections.Counter(splits[0].labels)  # one pass: ImageNet has 1.28M x 1,000
        _refuse_empty(classes, [counts[i] for i in range(len(classes))], path)
    else:  # images to score: a folder of no image files (notes/) is no class
        kept = sorted({label for sf in splits for label in sf.labels})
        if not kept:
            raise UserError(f"no images in the class folders of {path} (expected {_LAYOUT})")
        new = {old: i for i, old in enumerate(kept)}
        classes = [classes[i] for i in kept]
        for sf in splits:
            sf.labels = [new[label] for label in sf.labels]
    return classes, splits


def list_classes(path: str | os.PathLike[str]) -> list[str]:
    """The classes ``build_folder`` gives the tree at ``path``, without opening an image, so that a
    caller (eval, bench) can refuse a folder of other classes before it is decoded and cached.

    With train/, its class folders (listed, no file walked: _scan keeps them all or refuses);
    without, the scan's, since a class folder with no image file is then no class. Raises as
    ``build_folder`` does for a tree that is not one (missing, no class folders, ...).
    """
    root = Path(os.path.realpath(Path(path).expanduser()))  # a symlink loop: not found
    _check_root(root)
    layout = _layout(root)
    return _classes(layout) if layout[0][0] == "train" else _scan(root)[0]


def check_train_classes(raw: RawDataset, path: str) -> None:
    """Every class of a folder dataset's train split has images it could read: one without is a
    class the model can never learn (torchvision's ImageFolder refuses empty class folders too).
    Checked on the loaded data, so a class of unreadable files and an old cache are caught."""
    train = raw.splits.get("train")
    if train is not None:
        counts = torch.bincount(train.labels.reshape(-1), minlength=len(raw.classes)).tolist()
        _refuse_empty(raw.classes, counts, Path(path))


def _refuse_empty(classes: list[str], counts: list[int], path: Path) -> None:
    empty = [f"'{c}'" for c, n in zip(classes, counts, strict=False) if n == 0]
    if empty:
        raise UserError(
            f"class folder(s) in {path / 'train'} with no readable images: {listed(empty)}; add "
            "images or remove them"
        )


def fingerprint(path: Path) -> str:
    """A 16-hex-digit hash of the tree (class folders, and each image's path, size, mtime_ns).

    Reads no file contents (os.scandir + stat), so it is cheap enough to compute on every load
    as the cache key: any added, removed, renamed or rewritten image changes it.
    """
    path = Path(path)
    _check_root(path)
    cut = len(str(path)) + 1
    parts = []
    for split, sdir in _layout(path):
        for name in _subdirs(sdir):
            parts.append(f"{split}/{name}/\n")
            for entry in _class_images(sdir, name):
                st = entry.stat()
                parts.append(f"{entry.path[cut:]}\0{st.st_size}\0{st.st_mtime_ns}\n")
    text = "".join(parts).encode("utf-8", "surrogateescape")  # file names need not be UTF-8
    return hashlib.blake2b(text, digest_size=8).hexdigest()


# -- decoding --------------------------------------------------------------------------------


def _probe(files: Sequence[Path]) -> list[tuple[str, tuple[int, int]]]:
    """(mode, size) from the headers of up to PROBE_FILES files spread evenly over ``files``.

    When none of those opens, the first readable header anywhere stands in for them.
    """
    step = max(1, len(files) // PROBE_FILES)
    found = [h for h in map(_header, files[::step][:PROBE_FILES]) if h is not None]
    return found or [h for h in map(_header, files) if h is not None][:1]


def _header(path: Path) -> tuple[str, tuple[int, int]] | None:
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except Exception:  # unreadable: the decode pass skips and reports it
        return None


def _to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float grayscale to 8-bit L by scaling (PIL's convert clips)."""
    a = np.asarray(im, dtype=np.float32)
    top = a.max(initial=0.0)
    scale = 65535.0 if im.mode.startswith("I;16") or top > 255.0 else 255.0
    if im.mode == "F" and top <= 1.0:
        scale = 1.0
    return Image.fromarray(np.clip(a * (255.0 / scale) + 0.5, 0, 255).astype(np.uint8), "L")


def convert_image(img: Image.Image, *, channels: int, size: int, resize: bool = True) -> np.ndarray:
    """A decoded PIL image -> (H, W, channels) uint8 exactly as training sees it: EXIF orientation
    applied, wide grayscale scaled to 8 bits, converted to RGB or L, resized to size x size."""
    mode = "RGB" if channels == 3 else "L"
    if "exif" in img.info and img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_MODES:
        img = _to_l(img)
    if img.mode != mode:
        img = img.convert(mode)  # RGBA/LA/P/CMYK/1 -> RGB or L (alpha dropped)
    if resize and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)  # antialiased downscale
    a = np.asarray(img)
    return a if a.ndim == 3 else a[:, :, None]


def _read(path: Path, channels: int, size: int, resize: bool) -> tuple[np.ndarray, bool]:
    """Decode one file to (H, W, channels) uint8, resized to size x size when ``resize``, and
    whether the file is in colour (its mode is not single-channel)."""
    with Image.open(path) as im:
        colour = im.mode not in SINGLE_CHANNEL_MODES  # before draft() turns a JPEG into L
        if im.format == "JPEG":  # libjpeg decodes straight to our mode and a scale >= size
            im.draft("RGB" if channels == 3 else "L", (size, size) if resize else None)
        return convert_image(im, channels=channels, size=size, resize=resize), colour


@dataclass
class _Job:
    files: list[Path]
    out: np.ndarray  # (N, C, S, S) uint8, written in place
    channels: int
    size: int
    resize: bool
    root: Path
    cancel: threading.Event = field(default_factory=threading.Event)


def _image_size_n() -> str:
    """How a caller resizes a folder's images: ``--image-size N``, or load_dataset's
    ``image_size=N``."""
    return "--image-size N" if in_cli() else "image_size=N"


def _decode_chunk(job: _Job, start: int, stop: int) -> tuple[list[int], list[int]]:
    """Decode files[start:stop] into out[start:stop]; return the indices that were skipped and
    those of colour files."""
    skipped, colour = [], []
    for i in range(start, stop):
        if job.cancel.is_set():
            break
        try:
            a, in_colour = _read(job.files[i], job.channels, job.size, job.resize)
        except Exception:  # truncated, not an image, zero bytes...: skipped and reported
            skipped.append(i)
            continue
        if in_colour:
            colour.append(i)
        if a.shape[:2] != (job.size, job.size):
            rel = job.files[i].relative_to(job.root).as_posix()
            raise UserError(
                f"images in {job.root} differ in size ({job.size}x{job.size} and "
                f"{a.shape[1]}x{a.shape[0]} in {rel}); pass {_image_size_n()} to resize all to "
                "NxN"
            )
        job.out[i] = a.transpose(2, 0, 1)
    return skipped, colour


def _workers(pixels: int) -> int:
    """Decode threads: one for tiny images (measured faster on CIFAR-sized files), else up to 8."""
    if pixels <= SMALL_IMAGE_PIXELS:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _decode_split(
    job: _Job, workers: int, ctx: SourceContext, desc: str
) -> tuple[list[int], list[int]]:
    """Decode ``job.files`` in chunks on ``workers`` threads; return the skipped indices and those
    of colour files, sorted."""
    n = len(job.files)
    ctx.progress(desc, 0, n)
    chunk = max(1, min(CHUNK, -(-n // (workers * 4))))
    skipped: list[int] = []
    colour: list[int] = []
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitkit-decode") as ex:
        sizes: dict[Future[tuple[list[int], list[int]]], int] = {
            # in the caller's context: a worker's error names --image-size under the CLI
            ex.submit(copy_context().run, _decode_chunk, job, s, min(s + chunk, n)): min(
                chunk, n - s
            )
            for s in range(0, n, chunk)
        }
        pending = set(sizes)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for f in finished:
                    bad, col = f.result()  # re-raises a worker's UserError (mixed sizes)
                    skipped += bad
                    colour += col
                    done += sizes[f]
                if finished:
                    ctx.progress(desc, done, n)
        except BaseException:
            job.cancel.set()
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return sorted(skipped), sorted(colour)


def _option(options: dict[str, Any], key: str, allowed: Sequence[int] | None) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"folder dataset: {key} must be a positive integer, got {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"folder dataset: {key} must be one of {list(allowed)}, got {value}")
    return value


def build_folder(ctx: SourceContext) -> RawDataset:
    """Decode an ImageFolder tree (``ctx.options["path"]``) into uint8 (N, C, S, S) splits.

    Options: ``path`` (required), ``image_size`` (None: every image must share one square size;
    else each image is resized to image_size x image_size, bilinear with antialiasing, no crop)
    and ``channels`` (1, 3, or None: 1 when every image decoded, in every split, is
    single-channel, else 3; ``info["channels_from"]`` says which).
    """
    if ctx.options.get("path") is None:
        raise UserError("folder dataset needs a path (use folder:PATH)")
    root = Path(ctx.options["path"]).expanduser().resolve()
    image_size = _option(ctx.options, "image_size", None)
    channels = _option(ctx.options, "channels", (1, 3))
    _check_root(root)
    classes, found = _scan(root)
    first = found[0].folder
    if not found[0].files:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"no images found in {first} (expected {_LAYOUT}; {exts})")
    splits = [s for s in found if s.files]  # an empty val/ or test/ is left out

    probe = _probe(splits[0].files)
    if not probe:
        raise UserError(f"no readable images in {first}: every file failed to open")
    detect = channels is None
    if channels is None:  # a first guess from the sample; the decoded files settle it below
        channels = 1 if all(mode in SINGLE_CHANNEL_MODES for mode, _ in probe) else 3
    resize = image_size is not None
    if image_size is None:
        sizes = sorted({s for _, s in probe})
        w, h = sizes[0]
        if len(sizes) > 1 or w != h:
            shown = ", ".join(f"{a}x{b}" for a, b in sizes[:4])
            raise UserError(
                f"images in {root} are not all one square size (seen {shown}); "
                f"pass {_image_size_n()} to resize them all to NxN"
            )
        image_size = w
    workers = _workers(max(a * b for _, (a, b) in probe))

    t0 = time.perf_counter()
    jobs = []  # per split: its decode job (images in job.out), the indices skipped, colour files
    for sf in splits:
        shape = (len(sf.files), channels, image_size, image_size)
        job = _Job(sf.files, np.empty(shape, np.uint8), channels, image_size, resize, root)
        jobs.append((job, *_decode_split(job, workers, ctx, f"decode {sf.name}")))
    in_colour = any(colour for *_, colour in jobs)
    decoded = [(job.out, bad) for job, bad, _ in jobs]
    if detect and channels == 1 and in_colour:  # colour files the sample missed
        channels = 3
        decoded = [
            _as_rgb(job, bad, colour, workers, ctx, f"decode {sf.name} again (colour)")
            for sf, (job, bad, colour) in zip(splits, jobs, strict=True)
        ]
    elif detect and channels == 3 and not in_colour:  # the sample's colour files were unreadable
        channels = 1
        decoded = [(a[:, :1].copy(), bad) for a, bad in decoded]
    del jobs

    out: dict[str, Split] = {}
    names: dict[str, list[str]] = {}  # per split, the file of each kept image (for eval)
    skipped_paths: list[str] = []
    skipped_count = 0
    for sf, (array, bad) in zip(splits, decoded, strict=True):
        n = len(sf.files)
        images = torch.from_numpy(array)
        labels = torch.tensor(sf.labels, dtype=torch.int64)
        if bad:
            keep = torch.ones(n, dtype=torch.bool)
            keep[bad] = False
            images, labels = images[keep], labels[keep]
            skipped_count += len(bad)
            room = SKIPPED_SHOWN - len(skipped_paths)
            skipped_paths += [sf.files[i].relative_to(root).as_posix() for i in bad[:room]]
        if len(images):
            out[sf.name] = Split(images, labels)
            dropped = set(bad)
            names[sf.name] = [
                _shown(f.relative_to(root)) for i, f in enumerate(sf.files) if i not in dropped
            ]
    if found[0].name not in out:
        raise UserError(f"no readable images in {first}: every file failed to decode")
    info = {
        "path": str(root),
        "image_size": image_size,
        "channels": channels,
        "channels_from": CHANNELS_RULE if detect else "given",
        "resized": resize,
        "skipped": {"count": skipped_count, "first": skipped_paths},
        "decode_workers": workers,
        "decode_seconds": round(time.perf_counter() - t0, 2),
        "split_files": names,
    }
    return RawDataset(splits=out, classes=classes, info=info)


def _as_rgb(
    job: _Job, bad: list[int], colour: list[int], workers: int, ctx: SourceContext, desc: str
) -> tuple[np.ndarray, list[int]]:
    """A split ``job`` decoded to 1 channel, as 3: each single-channel image copied to every
    channel (what decoding it to RGB gives), the ``colour`` files decoded again. Returns the
    images and the skipped indices."""
    rgb = np.repeat(job.out, 3, axis=1)
    if colour:
        shape = (len(colour), 3, job.size, job.size)
        files = [job.files[i] for i in colour]
        again = _Job(files, np.empty(shape, np.uint8), 3, job.size, job.resize, job.root)
        failed, _ = _decode_split(again, workers, ctx, desc)
        rgb[colour] = again.out
        bad = sorted({*bad, *(colour[i] for i in failed)})
    return rgb, bad


def is_current(info: dict[str, Any], options: dict[str, Any]) -> bool:
    """Whether a cache of a folder (its ``info``, built with ``options``) chose its channels as
    this code does: one detected from a sample of headers (before ``channels_from``) may differ."""
    return options.get("channels") is not None or info.get("channels_from") == CHANNELS_RULE


def _shown(path: Path) -> str:
    """A relative path as text that JSON and a terminal take (a name that is not UTF-8 gets
    replacement characters)."""
    return path.as_posix().encode("utf-8", "surrogateescape").decode("utf-8", "replace")
