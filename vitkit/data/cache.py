"""Materialise a dataset once as uint8 tensors; read it back in well under 2 s.

One directory per (dataset, options): ``<split>.safetensors`` holding ``images`` (uint8 N,C,H,W)
and ``labels`` (int64), plus ``meta.json`` (classes, per-channel mean/std, source info). No
pickle anywhere; files are written atomically, ``meta.json`` last, so a cache without it is
incomplete and is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from vitkit.artifact import atomic_write, read_json, write_json
from vitkit.data.types import RawDataset, Split

CACHE_FORMAT = 1


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) in [0, 1] units, in float64 chunks."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].to(torch.float64).div_(255.0).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        total_sq += (x * x).sum(1)
    n = images.numel() // c
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt()
    return [round(v, 4) for v in mean.tolist()], [round(max(v, 1e-3), 4) for v in std.tolist()]


def save_cache(directory: Path, raw: RawDataset, meta: dict[str, Any]) -> None:
    """Write every split and then ``meta.json`` (the commit marker). An earlier (or damaged)
    ``meta.json`` goes first: until the new one is written the cache reads as a build under way,
    which no reader pairs with the old meta and ``--prune`` leaves alone."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").unlink(missing_ok=True)
    for name, split in raw.splits.items():
        blob = save({"images": split.images.contiguous(), "labels": split.labels.contiguous()})
        with atomic_write(directory / f"{name}.safetensors") as f:
            f.write(blob)
    write_json(
        directory / "meta.json",
        {
            "format": CACHE_FORMAT,
            "classes": raw.classes,
            "splits": list(raw.splits),
            "info": raw.info,
            **meta,
        },
    )


def read_cache_meta(
    directory: Path, *, only: tuple[str, ...] | None = None
) -> dict[str, Any] | None:
    """A complete cache's ``meta.json``, without reading its tensors: None when absent,
    incomplete, damaged or of an old format, or (``only``) lacking one of these splits; every
    split's file must be there. What ``load_cache`` checks before it reads them."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
    except Exception:
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    names, classes = meta.get("splits"), meta.get("classes")
    if not isinstance(names, (list, dict)) or not isinstance(classes, list):
        return None  # a damaged meta.json: rebuild
    if not isinstance(meta.get("info", {}), dict):
        return None
    if not all(isinstance(meta.get(k), list) for k in ("mean", "std")):
        return None
    if only is not None and not set(only) <= set(names):
        return None
    if not all((directory / f"{name}.safetensors").is_file() for name in names):
        return None
    return meta


def load_cache(
    directory: Path, *, only: tuple[str, ...] | None = None
) -> tuple[RawDataset, dict[str, Any]] | None:
    """The cached dataset and its meta, or ``None`` when absent, incomplete or of an old format.
    ``only``: read just these splits (None when the cache lacks one; every split's file must
    still be there, as for a full read), None: all."""
    meta = read_cache_meta(directory, only=only)
    if meta is None:
        return None
    splits = {}
    for name in meta["splits"]:
        if only is not None and name not in only:
            continue
        try:
            tensors = load_file(directory / f"{name}.safetensors")
            splits[name] = Split(tensors["images"], tensors["labels"])
        except Exception:  # truncated or foreign file: rebuild
            return None
    classes = meta["classes"]
    raw = RawDataset(splits=splits, classes=[str(c) for c in classes], info=meta.get("info", {}))
    return raw, meta


def cache_key(options: dict[str, Any]) -> str:
    """A stable, short, readable name for a set of builder options."""
    if not options:
        return "default"
    import hashlib

    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# -- what is cached, and what can go ----------------------------------------------------------------
_CACHE_KEY = re.compile(r"default|[0-9a-f]{12}")  # cache_key's names
INCOMPLETE_AFTER_S = 3600.0  # a cache without meta.json this long after its last write: cut off


@dataclass
class CacheEntry:
    """One cached dataset under a data root (``vitkit data cache``)."""

    dataset: str  # a catalog name, or folder:PATH
    directory: Path  # <root>/<name>/cache/<key>, or <root>/folder/<name>-<hash>/cache/<key>
    options: dict[str, Any]  # the builder options it was made with (a folder's fingerprint too)
    bytes: int
    stale: str | None  # why nothing will read it again; None while it is current
    complete: bool = True  # False: no readable meta.json (a build cut off or under way; damage)

    @property
    def building(self) -> bool:
        """No ``meta.json``, and written within the hour: a build under way, which neither
        ``--prune`` nor ``--clear`` touches."""
        return not self.complete and self.stale is None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "directory": str(self.directory)}


def list_caches(data_root: Path) -> list[CacheEntry]:
    """Every cache under ``data_root``: ``<catalog name>/cache/<key>`` and
    ``folder/<name>-<hash>/cache/<key>``, ``key`` being ``default`` or 12 hex digits (nothing
    else there is ours to judge). Stale: of a folder that is gone, or of a folder cached again
    since with the same options (its files changed, so the older cache's fingerprint will not
    match again), or incomplete (no ``meta.json``) for over an hour: a build cut off, not one
    under way; or with a ``meta.json`` that cannot be read (a rebuild removes it first); or of a
    folder whose channels were chosen the old way (``folder.is_current``): its next use rebuilds
    it."""
    from vitkit.data.catalog import FOLDER_PREFIX, list_datasets
    from vitkit.data.sources.folder import is_current

    found = [
        (d, False)
        for name in list_datasets()
        if name != "folder"
        for d in sorted(data_root.glob(f"{name}/cache/*"))
    ]
    # which glob found it says what it is: a data root may itself be named "folder"
    found += [(d, True) for d in sorted(data_root.glob("folder/*/cache/*"))]
    entries: list[CacheEntry] = []
    infos: dict[Path, Any] = {}  # a folder cache's info, for is_current
    for directory, folder in found:
        if not directory.is_dir() or not _CACHE_KEY.fullmatch(directory.name):
            continue
        meta: Any = None
        with contextlib.suppress(Exception):
            meta = read_json(directory / "meta.json")
        options = meta.get("options") if isinstance(meta, dict) else None
        options = options if isinstance(options, dict) else {}
        name = f"folder:{options.get('path', '?')}" if folder else directory.parent.parent.name
        size = sum(_stat(f).st_size for f in directory.rglob("*") if f.is_file())
        stale = None
        if meta is None and (directory / "meta.json").is_file():  # written atomically: corrupt
            stale = "unreadable meta.json"
            name = name if not folder else f"folder:? ({directory.parent.parent.name})"
        elif meta is None:
            age = time.time() - max(
                (_stat(f).st_mtime for f in directory.iterdir()), default=_stat(directory).st_mtime
            )
            stale = "incomplete (no meta.json)" if age > INCOMPLETE_AFTER_S else None
            name = name if not folder else f"folder:? ({directory.parent.parent.name})"
        elif folder and not Path(str(options.get("path"))).is_dir():
            stale = "its folder is gone"
        elif folder:
            infos[directory] = meta.get("info", {})  # as load_cache reads it
        entries.append(CacheEntry(name, directory, options, size, stale, meta is not None))
    newest: dict[str, CacheEntry] = {}
    for e in entries:  # per folder and options, all but the newest are superseded
        if e.stale or not e.dataset.startswith(FOLDER_PREFIX):
            continue
        same = json.dumps(
            {k: v for k, v in e.options.items() if k != "fingerprint"}, sort_keys=True
        )
        key = f"{e.dataset}\0{same}"
        other = newest.get(key)
        if other is None:
            newest[key] = e
            continue
        old, new = sorted((other, e), key=lambda c: (c.directory / "meta.json").stat().st_mtime)
        old.stale = "superseded: its folder changed and was cached again"
        newest[key] = new
    for e in entries:  # the newest of its folder, but load_dataset would not read it: rebuilt
        info = infos.get(e.directory)
        if e.stale is None and isinstance(info, dict) and not is_current(info, e.options):
            e.stale = "channels chosen from a sample of headers: rebuilt on next use"
    return entries


def _stat(path: Path) -> os.stat_result:
    """A file's stat, or zeros for one a build under way has just replaced (``.tmp`` files)."""
    try:
        return path.stat()
    except FileNotFoundError:
        return os.stat_result((0,) * 10)


def clean_caches(
    data_root: Path, *, stale: bool = False, dataset: str | None = None
) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Delete the stale caches (``stale``) and every cache of ``dataset`` (a catalog name or
    ``folder:PATH``), never a build under way; returns the caches kept and those removed."""
    from vitkit.data.catalog import absolute_name, folder_path

    if dataset is not None:
        folder_path(dataset)  # a bare folder (or folder: with no PATH) names no cache: refused
    target = absolute_name(dataset) if dataset is not None else None
    kept: list[CacheEntry] = []
    removed: list[CacheEntry] = []
    for e in list_caches(data_root):
        gone = (stale and e.stale) or (target is not None and e.dataset == target)
        (removed if gone and not e.building else kept).append(e)
    for e in removed:
        remove_cache(e)
    return kept, removed


def remove_cache(entry: CacheEntry) -> None:
    """Delete one cache directory (never the raw downloads beside it)."""
    import shutil

    if entry.directory.parent.name != "cache":  # only ever <...>/cache/<key>
        raise ValueError(f"not a cache directory: {entry.directory}")
    from vitkit.data.catalog import FOLDER_PREFIX

    shutil.rmtree(entry.directory)
    empties = [entry.directory.parent]  # cache/
    if entry.dataset.startswith(FOLDER_PREFIX):  # a catalog dataset's folder keeps its downloads
        empties.append(entry.directory.parent.parent)  # folder/<name>-<hash>/
    for empty in empties:
        with contextlib.suppress(OSError):  # not empty: kept
            empty.rmdir()
