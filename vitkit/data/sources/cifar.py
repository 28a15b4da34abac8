"""CIFAR-10 and CIFAR-100 from the official *python* archives (Krizhevsky, 2009).

Each file in the archive is a pickled dict (written by Python 2, read with ``encoding="bytes"``)::

    {b"data": uint8 array (N, 3072),           # per row: 1024 R, then 1024 G, then 1024 B bytes,
                                               # each plane row-major 32 x 32
     b"labels": [int] * N,                     # CIFAR-10; CIFAR-100 has b"fine_labels" and
                                               # b"coarse_labels" instead
     b"filenames": [bytes] * N, b"batch_label": bytes}

and the meta file holds the class names (``b"label_names"``; ``b"fine_label_names"``).

We look in ``ctx.root`` for the extracted folder, then for the archive (md5 checked), then
download it when allowed. Pickles are read with an unpickler that only builds numpy arrays:
a pickle from disk can otherwise run any code.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from vitkit.data.download import NotDownloaded, fetch, file_md5, safe_extract
from vitkit.data.types import RawDataset, SourceContext, Split
from vitkit.errors import UserError

IMAGE_BYTES = 3 * 32 * 32  # one official row: the R, G and B planes of a 32 x 32 image


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's files are and which keys hold what."""

    name: str  # shown in messages
    archive: str  # the official archive's file name
    md5: str  # md5 of the official archive (as in torchvision)
    urls: tuple[str, ...]  # where to download it from, tried in order
    folder: str  # the top-level folder inside the archive
    train: tuple[str, ...]  # files of the train split, in order
    test: tuple[str, ...]  # files of the test split
    meta: str  # the file holding the class names
    label_key: str  # key of the labels in a batch file
    names_key: str  # key of the class names in the meta file
    other_copy: str = ""  # ends a message that says the files are not here: another way in


CIFAR10 = CifarLayout(
    name="CIFAR-10",
    archive="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    folder="cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    meta="batches.meta",
    label_key="labels",
    names_key="label_names",
    # docs/data.md: the ImageFolder copy trains and scores as folder:PATH, classes in this order
    other_copy="; for a CIFAR-10 copy as image files (PATH/train/<class>/*.jpg), use folder:PATH",
)

CIFAR100 = CifarLayout(
    name="CIFAR-100",
    archive="cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    folder="cifar-100-python",
    train=("train",),
    test=("test",),
    meta="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
)


def build_cifar10(ctx: SourceContext) -> RawDataset:
    """CIFAR-10: 50,000 train and 10,000 test uint8 images (3, 32, 32), 10 classes."""
    return _build(ctx, CIFAR10)


def build_cifar100(ctx: SourceContext) -> RawDataset:
    """CIFAR-100: 50,000 train and 10,000 test uint8 images (3, 32, 32), 100 fine classes."""
    return _build(ctx, CIFAR100)


# ── restricted unpickling ──────────────────────────────────────────────────────────────────


def _numpy_core(module: str) -> Any:
    """``numpy._core.<module>`` (numpy >= 2), else ``numpy.core.<module>``, without warnings."""
    try:
        return importlib.import_module(f"numpy._core.{module}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{module}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR pickle may name: what numpy arrays and scalars need."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spellings
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds dicts, lists, bytes, numbers and numpy arrays, nothing else."""

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UserError(f"refusing to unpickle {module}.{name} from {self._path}") from None


# What unpickling a truncated or garbled file can raise (UserError from find_class passes).
_CORRUPT_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    MemoryError,
)


def _load_pickle(path: Path, layout: CifarLayout) -> dict[bytes | str, Any]:
    """Read one CIFAR pickle safely; a missing, corrupt or truncated file is a ``UserError``."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, path).load()
    except FileNotFoundError:
        raise UserError(
            f"missing {path}; the folder {path.parent} is incomplete (delete it and run again)"
            f"{layout.other_copy}"
        ) from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except _CORRUPT_PICKLE as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"corrupt or truncated file {path}: {reason}") from None
    if not isinstance(obj, dict):
        raise UserError(f"unexpected contents in {path}: a {type(obj).__name__}, not a dict")
    return obj


def _field(d: dict[bytes | str, Any], key: str, path: Path) -> Any:
    """``d[b"key"]`` (Python 2 pickles) or ``d["key"]`` (re-saved by Python 3)."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise UserError(f"unexpected contents in {path}: no '{key}' entry")


# ── loading ────────────────────────────────────────────────────────────────────────────────


def _locate(ctx: SourceContext, layout: CifarLayout) -> Path:
    """The extracted folder: found, extracted from the archive, or downloaded first."""
    folder = ctx.root / layout.folder
    if folder.is_dir():
        return folder
    archive = ctx.root / layout.archive
    if ctx.download:  # returns at once, without network, when the archive is there and intact
        try:
            fetch(layout.urls, archive, md5=layout.md5, progress=ctx.progress)
        except NotDownloaded as e:
            raise NotDownloaded(f"{e}{layout.other_copy}") from None
    elif not archive.is_file():
        raise UserError(
            f"{layout.name} not found and downloads are off: place {layout.archive} "
            f"(from {layout.urls[0]}) or the extracted {layout.folder}/ folder in {ctx.root}"
            f"{layout.other_copy}"
        )
    elif (actual := file_md5(archive)) != layout.md5:
        raise UserError(
            f"{archive} is corrupt or incomplete: md5 {actual}, expected {layout.md5}; "
            "delete it and run again"
        )
    safe_extract(archive, ctx.root, progress=ctx.progress)
    if not folder.is_dir():
        raise UserError(f"{archive} does not contain the folder {layout.folder}/")
    return folder


def _read_batch(path: Path, layout: CifarLayout, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: uint8 images (N, 3, 32, 32) and int64 labels (N,), checked."""
    batch = _load_pickle(path, layout)
    data = _field(batch, "data", path)
    if not (isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == IMAGE_BYTES):
        shape = getattr(data, "shape", type(data).__name__)
        raise UserError(f"unexpected contents in {path}: data is {shape}, not (N, {IMAGE_BYTES})")
    if data.dtype != np.uint8:
        raise UserError(f"unexpected contents in {path}: data is {data.dtype}, not uint8")
    try:
        labels = np.asarray(_field(batch, layout.label_key, path), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError(f"unexpected contents in {path}: labels are not integers") from None
    if len(labels) != len(data):
        raise UserError(f"unexpected contents in {path}: {len(data)} images, {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"unexpected contents in {path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels  # row = R plane, G plane, B plane


def _build(ctx: SourceContext, layout: CifarLayout) -> RawDataset:
    folder = _locate(ctx, layout)
    meta_path = folder / layout.meta
    names = _field(_load_pickle(meta_path, layout), layout.names_key, meta_path)
    if not isinstance(names, list) or not names:
        raise UserError(f"unexpected contents in {meta_path}: no class names")
    classes = [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]

    description = f"load {layout.name}"
    split_files = {
        s: files for s, files in (("train", layout.train), ("test", layout.test)) if ctx.wants(s)
    }
    total = sum(len(files) for files in split_files.values())
    done = 0
    ctx.progress(description, done, total)
    splits: dict[str, Split] = {}
    for split, files in split_files.items():
        images, labels = [], []
        for file in files:
            x, y = _read_batch(folder / file, layout, len(classes))
            images.append(x)
            labels.append(y)
            done += 1
            ctx.progress(description, done, total)
        splits[split] = Split(
            torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
        )
    return RawDataset(
        splits=splits,
        classes=classes,
        info={"source": str(folder), "format": "cifar-python"},
    )
