"""Shared by the benchmark scripts: machine/version record, timing, result files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VITKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    import importlib

    for name in ("torchvision", "onnx", "onnxruntime"):
        with contextlib.suppress(ImportError):
            info[name] = importlib.import_module(name).__version__
    import vitkit

    info["vitkit"] = vitkit.__version__
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def median_time(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Print the result as JSON (with command + machine) and save it under benchmarks/results/."""
    doc = {
        "benchmark": name,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return doc


def cifar10_jpeg_tree(explicit: str | None = None) -> Path:
    """The CIFAR-10 JPEG copy as a folder tree: ``explicit``, or extracted from shared/data."""
    if explicit:
        return Path(explicit)
    archive = SHARED_DATA / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        sys.exit(f"benchmark needs {archive} (or pass --data PATH to an extracted copy)")
    dest = Path(tempfile.gettempdir()) / "vitkit-bench" / "cifar10-jpeg"
    if not (dest / "train").is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest.parent, filter="data")
    return dest
