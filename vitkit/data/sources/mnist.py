"""MNIST and Fashion-MNIST from the official IDX files, and the shipped mnist-mini subset.

Files are looked for in the dataset directory (``<data_root>/mnist/``), gzipped or not; what is
missing is downloaded (gzip md5 verified) when allowed. Local files are checked against the md5
of the official *uncompressed* bytes where we know it, so a re-compressed copy is accepted.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitkit.data.types import RawDataset, SourceContext, Split
from vitkit.errors import UserError

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


@dataclass(frozen=True)
class IdxFile:
    name: str  # without .gz
    gz_md5: str  # md5 of the official .gz download
    raw_md5: str | None  # md5 of the uncompressed bytes, where known


MNIST_FILES = {
    "train-images": IdxFile(
        "train-images-idx3-ubyte",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "6bbc9ace898e44ae57da46a324031adb",
    ),
    "train-labels": IdxFile(
        "train-labels-idx1-ubyte",
        "d53e105ee54ea40749a09fcc2a8b6e7b",
        "a25bea736e30d166cdddb491f175f624",
    ),
    "test-images": IdxFile(
        "t10k-images-idx3-ubyte",
        "9fb629c4189551a2d022fa330f9573f3",
        "2646ac647ad5339dbf082846283269ea",
    ),
    "test-labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        "ec29112dd5afa0611ce80d1b7f02629c",
        "27ae3e4e09519cfbb04c329615203637",
    ),
}
FASHION_FILES = {
    "train-images": IdxFile("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", None),
    "train-labels": IdxFile("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe", None),
    "test-images": IdxFile("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79", None),
    "test-labels": IdxFile("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310", None),
}


def parse_idx(data: bytes, *, source: str) -> np.ndarray:
    """Decode an IDX file of unsigned bytes (magic 0x0000080N) into an array."""
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{source} is not an IDX file of unsigned bytes (corrupt or wrong file)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise UserError(f"{source} is truncated: {len(data) - header} bytes for shape {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx(ctx: SourceContext, f: IdxFile, mirrors: tuple[str, ...], dataset: str) -> np.ndarray:
    """Find ``f`` under ctx.root (.gz or raw, also in raw/), else download it; parse it."""
    candidates = [d / n for d in (ctx.root, ctx.root / "raw") for n in (f.name + ".gz", f.name)]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if not ctx.download:
            raise UserError(
                f"{dataset}: missing {f.name}.gz; place it in {ctx.root} (downloads are off)"
            )
        from vitkit.data.download import fetch

        path = fetch(
            [m + f.name + ".gz" for m in mirrors],
            ctx.root / (f.name + ".gz"),
            md5=f.gz_md5,
            progress=ctx.progress,
        )
    ctx.progress(f"read {path.name}", 0, 1)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a damaged deflate stream
        raise UserError(f"{dataset}: cannot read {path}: {e}; delete it and run again") from None
    if f.raw_md5 is not None and hashlib.md5(data).hexdigest() != f.raw_md5:
        raise UserError(
            f"{dataset}: {path} does not match the official {f.name} (md5 of its bytes is"
            f" {hashlib.md5(data).hexdigest()}, expected {f.raw_md5}); delete it and run again"
        )
    ctx.progress(f"read {path.name}", 1, 1)
    return parse_idx(data, source=str(path))


def _build_idx(
    ctx: SourceContext,
    files: dict[str, IdxFile],
    mirrors: tuple[str, ...],
    dataset: str,
    classes: list[str],
) -> RawDataset:
    splits = {}
    for split in filter(ctx.wants, ("train", "test")):  # only the asked-for splits' files
        images = _read_idx(ctx, files[f"{split}-images"], mirrors, dataset)
        labels = _read_idx(ctx, files[f"{split}-labels"], mirrors, dataset)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(
                f"{dataset}: {split} images {images.shape} and labels {labels.shape} do not match"
            )
        splits[split] = Split(
            torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
        )
    return RawDataset(splits=splits, classes=classes, info={"files": str(ctx.root)})


def build_mnist(ctx: SourceContext) -> RawDataset:
    return _build_idx(ctx, MNIST_FILES, MNIST_MIRRORS, "mnist", [str(i) for i in range(10)])


def build_fashion_mnist(ctx: SourceContext) -> RawDataset:
    from vitkit.data.catalog import get_dataset_spec

    classes = list(get_dataset_spec("fashion-mnist").classes or ())
    return _build_idx(ctx, FASHION_FILES, FASHION_MIRRORS, "fashion-mnist", classes)


# -- mnist-mini: a stratified subset shipped inside the package ----------------------------------
MINI_ASSET = "mnist-mini.npz"
MINI_PER_CLASS = {"train": 500, "test": 100}


def build_mnist_mini(ctx: SourceContext) -> RawDataset:
    """Read the shipped subset (5,000 train / 1,000 test, 500 / 100 per digit)."""
    ref = importlib.resources.files("vitkit.data") / "assets" / MINI_ASSET
    with importlib.resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        splits = {
            s: Split(
                torch.from_numpy(z[f"{s}_images"]).unsqueeze(1),
                torch.from_numpy(z[f"{s}_labels"].astype(np.int64)),
            )
            for s in ("train", "test")
        }
    return RawDataset(
        splits=splits, classes=[str(i) for i in range(10)], info={"files": "shipped with vitkit"}
    )


def make_mnist_mini(mnist_dir: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write the mnist-mini asset from official MNIST files: ``python -m vitkit.data.sources.mnist``.

    Per split and digit, ``MINI_PER_CLASS`` images drawn without replacement with ``seed``.
    """
    raw = build_mnist(SourceContext(root=mnist_dir, download=False))
    g = torch.Generator().manual_seed(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in MINI_PER_CLASS.items():
        s = raw.splits[split]
        picks = []
        for digit in range(10):
            idx = (s.labels == digit).nonzero().squeeze(1)
            picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
        index = torch.cat(picks).sort().values
        arrays[f"{split}_images"] = s.images[index, 0].numpy()
        arrays[f"{split}_labels"] = s.labels[index].numpy().astype(np.uint8)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return {k: len(v) for k, v in arrays.items()}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="Write vitkit/data/assets/mnist-mini.npz")
    p.add_argument("mnist_dir", type=Path, help="folder with the official MNIST IDX files")
    p.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "assets" / MINI_ASSET)
    args = p.parse_args()
    print(make_mnist_mini(args.mnist_dir, args.out))
