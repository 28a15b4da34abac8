"""The dataset registry: name -> DatasetSpec, and ``load_dataset`` (materialise once, then cache).

A spec says what a dataset is (classes, size, channels, splits, how to augment it, the default
training recipe) and names its builder, a function ``SourceContext -> RawDataset`` in
``vitkit.data.sources``. ``load_dataset`` runs the builder once, stores uint8 tensors in the
data root, and serves every later call from that cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitkit.data.cache import cache_key, channel_stats, load_cache, read_cache_meta, save_cache
from vitkit.data.types import ProgressFn, RawDataset, SourceContext, Split, no_progress
from vitkit.errors import (
    ConfigError,
    NotFoundError,
    UserError,
    check_bool,
    check_callable,
    check_name,
    check_path,
    in_cli,
    is_count,
    name_list,
    numeric_text_hint,
    plain_number,
    setting,
    suggest,
    unknown_name,
)

FOLDER_PREFIX = "folder:"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, before any byte of it is read."""

    name: str
    description: str
    builder: str  # "module:function" taking SourceContext, returning RawDataset
    classes: tuple[str, ...] | None  # None: known only once loaded (folder:)
    image_size: int | None  # side in pixels; None: chosen at load time
    channels: int | None  # 1 or 3; None: detected at load time
    splits: dict[str, int] = field(default_factory=dict)  # expected split sizes
    num_outputs: int = 1  # labels per image: 1, or K for multi-digit tasks (labels (N, K))
    augment: str = "natural"  # augmentation family: 'natural' (crop+flip), 'digits', 'none'
    options: dict[str, Any] = field(default_factory=dict)  # builder options with defaults
    recipe: dict[str, Any] = field(default_factory=dict)  # default training recipe
    license: str = ""
    source: str = ""  # where the data comes from (URL or "shipped with vitkit")
    partial: bool = False  # its builder builds any of ``splits`` alone (SourceContext.splits)
    # option -> (whether a value is one its builder takes, those values in words): checked with
    # the options, before any file is read, not when the data is built
    option_ranges: dict[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)

    def load_builder(self) -> Callable[[SourceContext], RawDataset]:
        module, fn = self.builder.split(":")
        builder: Callable[[SourceContext], RawDataset] = getattr(
            importlib.import_module(module), fn
        )
        return builder


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the catalog; refuses duplicates."""
    if spec.name in _DATASETS:
        raise ValueError(f"dataset '{spec.name}' is already registered")
    _DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """Return the registered dataset names (``folder:PATH`` is accepted too and is not listed)."""
    return list(_DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of a catalog name (each of ``list_datasets``) or of ``folder:PATH``. A bare
    ``folder`` is the spec of every image folder; loading one needs its PATH (``folder_path``)."""
    check_name("dataset", name)
    if name.startswith(FOLDER_PREFIX):
        return _DATASETS["folder"]
    try:
        return _DATASETS[name]
    except KeyError:
        names = [n for n in _DATASETS if n != "folder"]  # spelled folder:PATH
        raise unknown_name("dataset", name, [*names, "folder:PATH"]) from None


def env_data_root() -> Path | None:
    """``$VITKIT_DATA`` (``~`` expanded), or None when it is not set."""
    env = os.environ.get("VITKIT_DATA")
    return Path(env).expanduser() if env else None


def default_data_root() -> Path:
    """``$VITKIT_DATA``, else ``~/.cache/vitkit/data``."""
    return env_data_root() or Path.home() / ".cache" / "vitkit" / "data"


def check_data_root(root: Path) -> None:
    """A one-line ``UserError`` when the data root is a file, or lies under one: said before a
    dataset is read (a folder: dataset's images were all decoded, then its cache could not be
    written; MNIST was said to be missing, "place it in FILE/mnist")."""
    from vitkit.artifact import file_in_the_way

    blocker = root if root.exists() and not root.is_dir() else file_in_the_way(root)
    if blocker == root:
        raise UserError(f"the data root {root} is a file, not a folder")
    if blocker is not None:
        raise UserError(f"{blocker} is a file, not a folder (for the data root {root})")


@dataclass
class Dataset:
    """A dataset in memory: uint8 splits plus everything needed to train and preprocess."""

    name: str
    spec: DatasetSpec
    splits: dict[str, Split]
    classes: list[str]
    # per channel, in [0, 1] units, computed from the train split; None when only some splits
    # were built from their own files (``load_dataset(splits=...)`` with no full cache to read
    # them from): a model is scored with its own recorded ones
    mean: list[float] | None
    std: list[float] | None
    options: dict[str, Any]
    info: dict[str, Any]
    cache_dir: Path
    from_cache: bool

    @property
    def image_size(self) -> int:
        return int(next(iter(self.splits.values())).images.shape[-1])

    @property
    def channels(self) -> int:
        return int(next(iter(self.splits.values())).images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_outputs(self) -> int:
        """Labels per image: 1, or K for multi-output tasks (labels of shape (N, K))."""
        labels = next(iter(self.splits.values())).labels
        return 1 if labels.ndim == 1 else int(labels.shape[1])

    def skipped_note(self) -> str | None:
        """``"skipped 3 unreadable images in folder:x, first: a.png, b.png"`` when a folder had
        files it could not decode (left out of every split), else None."""
        skipped = self.info.get("skipped") or {}
        if not skipped.get("count"):
            return None
        first = ", ".join(skipped.get("first") or [])
        return f"skipped {skipped['count']:,} unreadable image(s) in {self.name}" + (
            f", first: {first}" if first else ""
        )

    def file_of(self, split: str, index: int) -> str | None:
        """The file (relative to the folder) of image ``index`` of ``split``, for a ``folder:``
        dataset; None for the others (and for a cache made before vitkit recorded it)."""
        by_split = self.info.get("split_files")
        files = by_split.get(split) if isinstance(by_split, dict) else None
        return str(files[index]) if isinstance(files, list) and 0 <= index < len(files) else None

    def __repr__(self) -> str:  # not the default one, which prints every pixel
        splits = ", ".join(f"{k}: {len(v):,}" for k, v in self.splits.items())
        return (
            f"Dataset('{self.name}', {{{splits}}}, {self.channels}x{self.image_size}x"
            f"{self.image_size}, {self.num_classes} classes)"
        )

    def __contains__(self, split: object) -> bool:
        return split in self.splits

    def __iter__(self) -> Iterator[str]:
        """The split names, as a mapping's keys: ``for name in ds: ds[name]``."""
        return iter(self.splits)

    def __getitem__(self, split: str) -> Split:
        if not isinstance(split, str):  # ds[0]: an image of which split?
            raise TypeError(
                f"a Dataset is indexed by split name ({', '.join(map(repr, self.splits))}), "
                f"got {split!r}; an image is ds['{next(iter(self.splits))}'].images[i]"
            )
        try:
            return self.splits[split]
        except KeyError:
            raise no_split(self.name, split, self.splits) from None

    def stats(self) -> dict[str, Any]:
        """Computed from the data: per split size, class balance and per-channel mean/std."""
        from vitkit.data.cache import channel_stats

        out: dict[str, Any] = {}
        for name, s in self.splits.items():
            counts = torch.bincount(s.labels.flatten(), minlength=self.num_classes).tolist()
            mean, std = channel_stats(s.images)
            out[name] = {
                "size": len(s),
                "mean": mean,
                "std": std,
                "class_counts": dict(zip(self.classes, counts, strict=False)),
            }
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: sizes, classes, preprocessing."""
        return {
            "name": self.name,
            "classes": self.classes,
            "num_classes": self.num_classes,
            "num_outputs": self.num_outputs,
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
            "splits": {k: len(v) for k, v in self.splits.items()},
            "options": self.options,
            "cache_dir": str(self.cache_dir),
            "info": {k: v for k, v in self.info.items() if k != "split_files"},  # one per image
        }


# an option's type, by its default's: what a value must be, in words (True is no count)
# (numbers.Integral and Real: numpy's integers and floats too, read as plain numbers)
_OPTION_TYPES: dict[type, tuple[tuple[type, ...], str]] = {
    int: ((numbers.Integral,), "an integer"),
    float: ((numbers.Real,), "a number"),
}


def check_dataset_options(
    spec: DatasetSpec, given: dict[str, Any], name: str | None = None
) -> None:
    """Refuse an option the dataset's builder does not take (None values mean "not given"), and
    a value of another type than the option's default (``grid="3"`` for ``grid=2``: the builder
    took ``int("3")`` while the cache key and train.json kept the text, a second cache of the
    same images), and a number its builder would refuse (``spec.option_ranges``) or that is not
    finite (``empty_prob=nan``), which passed ``resolve_config`` and ``--print-config`` and
    failed once the data was built. ``name``: the dataset as the caller gave it
    (``folder:~/pets``, not the spec's ``folder``)."""
    name = name or spec.name
    for key, value in given.items():
        if value is None:
            continue
        if key not in spec.options:
            allowed = ", ".join(spec.options) or "none"
            raise ConfigError(
                f"dataset '{name}' has no option '{key}'{suggest(key, spec.options)}"
                f" (options: {allowed}){fixed_shape_hint(spec, key)}"
            )
        # None: any type; its range test (folder: sizes), if any, checks the type too
        kind = _OPTION_TYPES.get(type(spec.options[key]))
        if kind is not None and not _of_type(value, kind[0]):
            hint = numeric_text_hint(value)  # as training options say it
            raise ConfigError(
                f"dataset '{name}' option '{key}' must be {kind[1]}, got {value!r}{hint}"
            )
        test, values = spec.option_ranges.get(key, (None, "a finite number"))
        # a typed option is a number here: nan and inf fail every range
        if (kind is not None and not _finite(value)) or (test is not None and not test(value)):
            shown = plain_number(value) if isinstance(value, numbers.Real) else repr(value)
            raise ConfigError(
                f"dataset '{name}' option {option_words(key)} must be {values},"
                f" got {shown}{numeric_text_hint(value)}"
            )


# the dataset options the command line has a flag for (--image-size, --channels, --grid)
FLAGGED_OPTIONS = ("image_size", "channels", "grid")


def option_words(key: str) -> str:
    """A dataset option as a message names it (``setting``): a library caller's keyword
    (``empty_prob``); under the CLI its flag (``--grid``), or for one with none the key a
    config file sets (``dataset_options.empty_prob``)."""
    if in_cli() and key not in FLAGGED_OPTIONS:
        return f"dataset_options.{key}"
    return setting(key)


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def fixed_shape_hint(spec: DatasetSpec, key: str, word: str | None = None) -> str:
    """For ``image_size`` / ``channels`` given to a dataset whose images have a fixed shape
    (``--image-size 30`` on cifar10): what its images are, and which datasets take the option
    (named ``word``: the CLI's flag, else ``key``)."""
    if key not in ("image_size", "channels") or spec.image_size is None or spec.channels is None:
        return ""
    return (
        f"; its images are {spec.image_size}x{spec.image_size}x{spec.channels}, and"
        f" {word or key} is an option of folder:PATH datasets only"
    )


def _of_type(value: Any, types: tuple[type, ...]) -> bool:
    return not isinstance(value, bool) and isinstance(value, types)


def recorded_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Dataset options as a run recorded them (train.json's config, model.json), in the types
    ``check_dataset_options`` takes. A run made before it checked types may record text
    (``grid: "3"`` from a config file): its builder took ``int("3")``, so the run was trained
    on the 3x3 layouts; such a value is read as the number the builder made of it, and the
    run resumes and evaluates on the same images. One the builder could not have read either is
    left as it is, for the check to refuse. numpy's numbers become plain ones."""
    out = dict(options)
    for key, value in options.items():
        as_type = type(spec.options.get(key))
        kind = _OPTION_TYPES.get(as_type)
        if kind is None:  # the builder checks it (folder: sizes): np.int64(16) as 16, for it too
            out[key] = plain_number(value)
            continue
        if value is None or type(value) in (as_type, int):
            continue  # a plain number already (an int for a float option too)
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            out[key] = int(value) if as_type is int else float(value)  # as the builders read it
    return out


def cache_options(spec: DatasetSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The builder options ``load_dataset`` resolves ``options`` to, and names the cache by
    (``cache_key``; a ``folder:`` dataset adds its path and fingerprint)."""
    return {**spec.options, **{k: v for k, v in options.items() if v is not None}}


def folder_path(name: str) -> Path | None:
    """PATH of ``folder:PATH`` (``~`` expanded), None for a catalog name. A bare ``folder`` and
    ``folder:`` with no PATH are refused (``Path("")`` would be the current directory)."""
    if name != "folder" and not name.startswith(FOLDER_PREFIX):
        return None
    path = name[len(FOLDER_PREFIX) :]
    if name == "folder" or not path.strip():
        raise UserError("folder: needs a path: folder:PATH, e.g. folder:~/digits")
    return Path(path).expanduser()


def _resolve_options(spec: DatasetSpec, name: str, options: dict[str, Any]) -> dict[str, Any]:
    given = {k: v for k, v in options.items() if v is not None}
    check_dataset_options(spec, given, name)
    given = recorded_options(spec, given)  # np.int64(3) -> 3: the cache key and info hold JSON
    resolved = cache_options(spec, given)
    path = folder_path(name)
    if path is not None:
        if not path.is_dir():
            raise NotFoundError(
                f"folder dataset not found: {path} (expected {path}/train/<class>/*.jpg, or "
                f"{path}/<class>/*.jpg for images to score)"
            )
        resolved["path"] = str(path.resolve())
    return resolved


def absolute_name(name: str) -> str:
    """``folder:PATH`` with PATH absolute (``~`` expanded, links resolved), as train.json and the
    caches record it, so it names the same folder from any directory; other names as they are."""
    if not name.startswith(FOLDER_PREFIX):
        return name
    # os.path.realpath, not Path.resolve: that raises RuntimeError on a symlink loop (Python
    # 3.11), where the folder's loading says "folder dataset not found"
    return FOLDER_PREFIX + os.path.realpath(Path(name[len(FOLDER_PREFIX) :]).expanduser())


def short_name(name: str) -> str:
    """A dataset's name for a folder name: ``folder:~/data/pets/`` -> ``pets`` (``folder:.``
    -> the current folder's name), other names as they are."""
    if not name.startswith(FOLDER_PREFIX):
        return name
    return Path(absolute_name(name)[len(FOLDER_PREFIX) :]).name or "folder"


def dataset_dir(name: str, spec: DatasetSpec, options: dict[str, Any], data_root: Path) -> Path:
    """Where a dataset's files (raw downloads) live under the data root."""
    if spec.name == "folder":
        path = Path(options["path"])
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        return data_root / "folder" / f"{path.name}-{digest}"
    return data_root / spec.name


def _check_folder(spec: DatasetSpec, raw: RawDataset, opts: dict[str, Any]) -> None:
    """A folder dataset's train classes all have images it could read (see the source)."""
    if spec.name == "folder":
        from vitkit.data.sources.folder import check_train_classes

        check_train_classes(raw, opts["path"])


def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressFn = no_progress,
    rebuild: bool = False,
    splits: Sequence[str] | None = None,
    **options: Any,
) -> Dataset:
    """Load ``name`` (``cifar10``, ``mnist``, ``mnist-grid``, ``folder:PATH``, ...) into memory.

    The first call builds the dataset (reading official files, downloading them if allowed) and
    caches uint8 tensors under ``data_root``; later calls read the cache. ``options`` are the
    dataset's builder options (``image_size`` for folders, ``grid`` for mnist-layout, ...).
    ``data_root``: else ``$VITKIT_DATA``, else ``~/.cache/vitkit/data``.

    Returns a ``Dataset``: ``ds["train"]`` / ``ds["test"]`` are ``Split``s of uint8 images
    (N, C, H, W) and int64 labels; ``classes``, ``mean``, ``std``, ``image_size``,
    ``num_classes`` describe it. Raises ``NotFoundError`` for an unknown name or a missing
    ``folder:`` path, ``ConfigError`` for an option the dataset does not take (or of the wrong
    type), ``UserError`` for files that are missing with ``download=False`` or fail to download,
    and for an argument of the wrong type (``data_root=5``, ``download="no"``).

    ``splits`` (e.g. ``["test"]``, to score a trained model): only these are needed. A catalog
    dataset built from its own files (mnist, cifar10, mnist-grid, ...; ``DatasetSpec.partial``)
    then holds just these: read from its full cache when there is one (with the train split's
    ``mean`` and ``std`` it records), else built from their own files alone (no train files
    needed) and not cached, with ``mean`` and ``std`` None (no train split to compute them
    from; a model is scored with those it recorded). Others
    (``folder:``, mnist-mini) load whole, as without ``splits``. A split the dataset does not
    have is a ``UserError`` naming those it has, for every dataset (a ``folder:``'s once it is
    read).
    """
    spec = get_dataset_spec(name)
    check_path("data_root", data_root, optional=True)
    download, rebuild = check_bool("download", download), check_bool("rebuild", rebuild)
    check_callable("progress", progress)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    check_data_root(root)
    opts = _resolve_options(spec, name, options)
    asked = _asked_splits(spec, name, splits)
    wanted = asked if spec.partial else None  # the others load whole
    directory = dataset_dir(name, spec, opts, root)
    key_opts = dict(opts)
    if spec.name == "folder":
        from vitkit.data.sources.folder import fingerprint

        key_opts["fingerprint"] = fingerprint(Path(opts["path"]))
    cdir = directory / "cache" / cache_key(key_opts)
    cached = None if rebuild else load_cache(cdir, only=wanted)
    if wanted is not None:  # some splits: the full cache's, else from their own files
        ctx = SourceContext(
            root=directory,
            download=download,
            progress=progress,
            options=opts,
            data_root=root,
            splits=wanted,
        )
        return _load_splits(name, spec, ctx, cached, cdir)
    if cached is not None and spec.name == "folder":
        from vitkit.data.sources.folder import is_current

        if not is_current(cached[0].info, opts):  # channels chosen the old way: rebuilt
            cached = None
    if cached is None and not rebuild and spec.name == "folder":
        cdir, cached = _same_images_cache(directory, key_opts) or (cdir, None)
    from_cache = cached is not None
    if cached is not None:
        raw, meta = cached
        _check_folder(spec, raw, opts)  # a cache made before the check
    else:
        ctx = SourceContext(
            root=directory, download=download, progress=progress, options=opts, data_root=root
        )
        t0 = time.perf_counter()
        raw = spec.load_builder()(ctx)
        if not raw.splits:
            raise UserError(f"dataset '{name}' has no splits")
        _check_folder(spec, raw, opts)  # before it is cached
        # the train split's statistics (a folder of images to score may have no train/)
        mean, std = channel_stats(raw.splits.get("train", next(iter(raw.splits.values()))).images)
        meta = {
            "mean": mean,
            "std": std,
            "options": key_opts,
            "build_seconds": round(time.perf_counter() - t0, 2),
        }
        progress("write cache", 0, 1)
        save_cache(cdir, raw, meta)
        progress("write cache", 1, 1)
    for split in asked or ():  # a folder's splits are known once it is read
        if split not in raw.splits:
            raise no_split(name, split, raw.splits)
    return Dataset(
        name=name,
        spec=spec,
        splits=raw.splits,
        classes=raw.classes,
        mean=meta["mean"],
        std=meta["std"],
        options=opts,
        info=raw.info,
        cache_dir=cdir,
        from_cache=from_cache,
    )


def _same_images_cache(
    directory: Path, key_opts: dict[str, Any]
) -> tuple[Path, tuple[RawDataset, dict[str, Any]]] | None:
    """A folder's cache made with ``image_size`` and/or ``channels`` left to its images (None),
    that came to the ones ``key_opts`` gives: its images are those these options decode (a
    square size resized to itself is not resized; detected channels decode as given ones), so
    it is read, not a second cache made. A run trained on ``folder:PATH`` as it is and scored
    by eval, which gives the model's size and channels, decoded the folder twice. Each
    candidate's ``meta.json`` is read first; the tensors only of the one that came to these.
    Its directory and contents, or None."""
    from vitkit.data.sources.folder import is_current

    given = [k for k in ("image_size", "channels") if key_opts.get(k) is not None]
    for n in range(len(given), 0, -1):
        for left in itertools.combinations(given, n):
            opts = {**key_opts, **dict.fromkeys(left)}
            cdir = directory / "cache" / cache_key(opts)
            meta = read_cache_meta(cdir)  # its info first: another size's tensors are not read
            info = meta.get("info", {}) if meta is not None else None
            if info is None or not is_current(info, opts):
                continue
            if not all(info.get(k) == key_opts[k] for k in left):  # came to others
                continue
            cached = load_cache(cdir)
            if cached is not None:
                return cdir, cached
    return None


def _asked_splits(
    spec: DatasetSpec, name: str, splits: Sequence[str] | None
) -> tuple[str, ...] | None:
    """The split names ``splits`` asks for (None: not given), in order, once each. One the
    dataset does not have is refused, as ``ds[split]`` is: here when the catalog lists its
    splits (a ``partial`` dataset loads just these, the others load whole), else (``folder:``)
    once it is read."""
    if splits is None:
        return None
    splits = name_list("splits", "split", splits)  # "test", "train, test" or a list of names
    if not splits:
        raise UserError(f"no split named to load of dataset '{name}' (splits=[])")
    for split in splits if spec.splits else ():
        if split not in spec.splits:
            raise no_split(name, split, spec.splits)
    return tuple(dict.fromkeys(splits))


def no_split(name: str, split: str, have: Iterable[str]) -> UserError:
    """The error for a split a dataset does not have, naming those it has."""
    have = list(have)
    return UserError(
        f"dataset '{name}' has no split '{split}' (it has: {', '.join(have)}){suggest(split, have)}"
    )


def _load_splits(
    name: str,
    spec: DatasetSpec,
    ctx: SourceContext,
    cached: tuple[RawDataset, dict[str, Any]] | None,
    cdir: Path,
) -> Dataset:
    """``ctx.splits`` of a ``partial`` dataset: the full cache's (``cached``), with the train
    split's statistics it records, else built from their own files, with none (``mean`` and
    ``std`` None). Never cached: a cache holds every split and the train split's statistics,
    and one of some splits would be read as a full one (by training, by ``vitkit data cache``)."""
    raw, meta = cached if cached is not None else (spec.load_builder()(ctx), {})
    wanted = ctx.splits or ()
    return Dataset(
        name=name,
        spec=spec,
        splits={s: raw.splits[s] for s in wanted},  # a builder may have built more
        classes=raw.classes,
        mean=meta.get("mean"),
        std=meta.get("std"),
        options=ctx.options,
        info=raw.info,
        cache_dir=cdir,
        from_cache=cached is not None,
    )


def is_cached(name: str, *, data_root: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``name`` with default options is already materialised under the data root."""
    spec = get_dataset_spec(name)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    return (root / spec.name / "cache" / cache_key(dict(spec.options)) / "meta.json").is_file()


# -- default training recipes (TrainConfig fields; command-line options override them) -----------
# Digits: a small ViT with 7x7 patches (16 tokens) trains fast on a CPU; random affine, no flip.
DIGITS_MINI_RECIPE: dict[str, Any] = {
    "model": "vit-micro",
    "model_overrides": {"patch_size": 7},
    "epochs": 50,
    "batch_size": 64,
    "lr": 1.5e-3,
    "warmup_epochs": 3.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
}
DIGITS_RECIPE: dict[str, Any] = {
    "model": "vit-micro",
    "model_overrides": {"patch_size": 7},
    "epochs": 20,
    "batch_size": 128,
    "lr": 1.5e-3,
    "warmup_epochs": 2.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
}
# Natural 32 px images: ViT-Tiny with 4x4 patches, DeiT-style regularisation (a GPU recipe).
NATURAL_RECIPE: dict[str, Any] = {
    "model": "vit-tiny",
    "model_overrides": {"drop_path": 0.1},
    "epochs": 100,
    "batch_size": 256,
    "lr": 1e-3,
    "warmup_epochs": 5.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "mixup": 0.8,
    "cutmix": 1.0,
}
# Multi-digit grids: the class token reads all four cells; no augmentation (it would move
# digits across cells).
GRID_RECIPE: dict[str, Any] = {
    "model": "vit-micro",
    "epochs": 15,
    "batch_size": 128,
    "lr": 1e-3,
    "warmup_epochs": 1.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.0,
}

# -- the catalog --------------------------------------------------------------------------------
# CIFAR-100's fine labels in the order of the archive's meta file (alphabetical); the archive's
# own list is what a loaded dataset uses, this one lets `data list` and `train` know the count.
_CIFAR100_FINE = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
    crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house
    kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
    mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
    plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
    skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank
    telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf
    woman worm
    """.split()  # noqa: SIM905 (a hundred names, one per line otherwise)
)

_DIGITS = tuple(str(i) for i in range(10))
# the grids seed each split with seed * 1000 + split (0, 1), which torch.manual_seed must take
_SEEDS = (-(2**63 // 1000), (2**64 - 2) // 1000)
_GRID_SEED = (lambda v: _SEEDS[0] <= v <= _SEEDS[1], f"in [{_SEEDS[0]}, {_SEEDS[1]}]")
_MNIST_LICENSE = "MNIST: Yann LeCun and Corinna Cortes, CC BY-SA 3.0"

register_dataset(
    DatasetSpec(
        name="mnist",
        recipe=DIGITS_RECIPE,
        description="MNIST handwritten digits, official IDX files",
        builder="vitkit.data.sources.mnist:build_mnist",
        classes=_DIGITS,
        image_size=28,
        channels=1,
        splits={"train": 60000, "test": 10000},
        augment="digits",
        license=_MNIST_LICENSE,
        source="https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of yann.lecun.com/exdb/mnist)",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        recipe=DIGITS_RECIPE,
        description="Fashion-MNIST clothing images, official IDX files",
        builder="vitkit.data.sources.mnist:build_fashion_mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        image_size=28,
        channels=1,
        splits={"train": 60000, "test": 10000},
        augment="natural",
        license="Fashion-MNIST: Zalando SE, MIT",
        source="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="mnist-mini",
        recipe=DIGITS_MINI_RECIPE,
        description="5,000/1,000 stratified MNIST subset shipped with vitkit",
        builder="vitkit.data.sources.mnist:build_mnist_mini",
        classes=_DIGITS,
        image_size=28,
        channels=1,
        splits={"train": 5000, "test": 1000},
        augment="digits",
        license=_MNIST_LICENSE,
        source="shipped with vitkit (vitkit/data/assets/mnist-mini.npz)",
    )
)
register_dataset(
    DatasetSpec(
        name="cifar10",
        recipe=NATURAL_RECIPE,
        description="CIFAR-10, official python archive",
        builder="vitkit.data.sources.cifar:build_cifar10",
        classes=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        image_size=32,
        channels=3,
        splits={"train": 50000, "test": 10000},
        augment="natural",
        license="CIFAR-10: Alex Krizhevsky, 2009",
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="cifar100",
        recipe=NATURAL_RECIPE,
        description="CIFAR-100 (fine labels), official python archive",
        builder="vitkit.data.sources.cifar:build_cifar100",
        classes=_CIFAR100_FINE,
        image_size=32,
        channels=3,
        splits={"train": 50000, "test": 10000},
        augment="natural",
        license="CIFAR-100: Alex Krizhevsky, 2009",
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="mnist-grid",
        recipe=GRID_RECIPE,
        description="56x56 2x2 grids of MNIST digits; label = the four digits",
        builder="vitkit.data.sources.synthetic_digits:build_grid",
        classes=_DIGITS,
        image_size=56,
        channels=1,
        splits={"train": 60000, "test": 10000},
        num_outputs=4,
        augment="none",
        options={"seed": 0},
        option_ranges={"seed": _GRID_SEED},
        license=_MNIST_LICENSE,
        source="generated from mnist",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="mnist-layout",
        recipe=GRID_RECIPE,
        description="2x2 (or --grid 3) layouts of MNIST digits or empty cells; label per cell",
        builder="vitkit.data.sources.synthetic_digits:build_layout",
        classes=(*_DIGITS, "empty"),
        image_size=None,
        channels=1,
        splits={"train": 60000, "test": 10000},
        num_outputs=4,
        augment="none",
        options={"grid": 2, "empty_prob": 0.3, "seed": 0},
        option_ranges={
            "grid": (lambda v: v in (2, 3, 4), "2, 3 or 4"),
            "empty_prob": (lambda v: 0 <= v < 1, "in [0, 1)"),
            "seed": _GRID_SEED,
        },
        license=_MNIST_LICENSE,
        source="generated from mnist",
        partial=True,
    )
)
register_dataset(
    DatasetSpec(
        name="folder",
        recipe=NATURAL_RECIPE,
        description="folder:PATH, any ImageFolder tree (PATH/train/<class>/*.jpg)",
        builder="vitkit.data.sources.folder:build_folder",
        classes=None,
        image_size=None,
        channels=None,
        augment="natural",
        options={"image_size": None, "channels": None},
        # checked with the options, so --print-config refuses --channels 2 as the builder does
        option_ranges={
            "image_size": (is_count, "a positive integer"),
            "channels": (lambda v: is_count(v) and v in (1, 3), "1 or 3"),
        },
        source="your files",
    )
)
