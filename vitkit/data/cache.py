"""Materialise a dataset once as uint8 tensors; read it back in well under 2 s.

One directory per (dataset, options): ``<split>.safetensors`` holding ``images`` (uint8 N,C,H,W)
and ``labels`` (int64), plus ``meta.json`` (classes, per-channel mean/std, source info). No
pickle anywhere; files are written atomically, ``meta.json`` last, so a cache without it is
incomplete and is rebuilt.
"""

from __future__ import annotations

import json
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
    """Write every split and then ``meta.json`` (the commit marker)."""
    directory.mkdir(parents=True, exist_ok=True)
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


def load_cache(directory: Path) -> tuple[RawDataset, dict[str, Any]] | None:
    """The cached dataset and its meta, or ``None`` when absent, incomplete or of an old format."""
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
    splits = {}
    for name in names:
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            splits[name] = Split(tensors["images"], tensors["labels"])
        except Exception:  # truncated or foreign file: rebuild
            return None
    raw = RawDataset(splits=splits, classes=[str(c) for c in classes], info=meta.get("info", {}))
    return raw, meta


def cache_key(options: dict[str, Any]) -> str:
    """A stable, short, readable name for a set of builder options."""
    if not options:
        return "default"
    import hashlib

    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
