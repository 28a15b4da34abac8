"""The standard runtime matrix: exported ONNX in ONNX Runtime against eager PyTorch (and
torch.compile), through `vitkit.bench.benchmark`, the library behind `vitkit bench`.

1. architecture: untrained vit-tiny and vit-small at 32 px, patch 4, 10 classes, batch 1, 8, 64,
   on CPU (and CUDA when present), every default runtime of each device;
2. accuracy: a trained run (the mnist-mini default recipe, trained here if --run is not given)
   on its 1,000 test images: top-1 of every runtime beside its speed.

Each benchmark's full report is saved next to the summary (benchmarks/results/onnx_vs_eager*.json).

    python benchmarks/onnx_vs_eager.py [--device cpu|cuda|cpu,cuda] [--models vit-tiny,vit-small]
        [--run runs/mnist-mini-vit-micro] [--skip-run] (--models '': the trained run only) [--min-time 2] [--threads N] [--tag NAME]
        [--repeats N] (the architecture matrix N times: on a shared VM one run's ratios can be off
        by 30 %; the summary's "speedups" gives each cell's median and range over the N runs)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import RESULTS, report

from vitkit.artifact import write_json
from vitkit.bench import benchmark
from vitkit.models import resolve_spec


def summary(rep: Any) -> dict[str, Any]:
    """The figures docs/benchmarks.md quotes: per device and batch, each runtime's p50 and
    speed-up over eager; per runtime, accuracy and size."""
    cells = [
        {
            "device": r.device,
            "batch": r.batch,
            "runtime": r.runtime,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "images_per_s": r.images_per_s,
            "speedup_vs_eager": r.speedup,
            "gflops": r.gflops,
            "peak_share": r.peak_share,
        }
        for r in rep.rows
    ]
    runtimes = [
        {
            "runtime": r.runtime,
            "device": r.device,
            "status": r.status,
            "reason": r.reason,
            "size_bytes": r.size_bytes,
            "accuracy": r.accuracy,
            "top1_agreement": r.top1_agreement,
            "max_abs_diff": r.max_abs_diff,
        }
        for r in rep.runtimes
    ]
    return {
        "model": rep.model["model"],
        "image_size": rep.settings["image_size"],
        "patch_size": rep.model["config"]["patch_size"],
        "threads": rep.threads,
        "peaks": rep.peaks,
        "cpu": rep.machine["cpu"],
        "gpus": rep.machine["gpus"],
        "reference_accuracy": rep.reference_accuracy,
        "data": rep.data,
        "cells": cells,
        "runtimes": runtimes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="vit-tiny,vit-small")
    p.add_argument("--batch-sizes", default="1,8,64")
    p.add_argument("--run", help="a trained run for the accuracy part (default: train mnist-mini)")
    p.add_argument("--skip-run", action="store_true", help="architecture matrix only")
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runtimes", default=None, help="default: each device's set")
    p.add_argument("--compile-mode", default="default")
    p.add_argument("--optimize", action="store_true", help="ONNX from `vitkit export --optimize`")
    p.add_argument("--tag", default="", help="suffix of the result file (e.g. 'h100')")
    p.add_argument("--repeats", type=int, default=1, help="architecture matrix runs (medians)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vitkit-onnx-vs-eager-"))
    results: dict[str, Any] = {"architecture": [], "trained": None}
    full: dict[str, Any] = {}
    name = "onnx_vs_eager" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step, atomically: a run cut short keeps what it measured
        write_json(RESULTS / f"{name}.full.json", full)

    def bench(source: Any, out: Path, images: int) -> Any:
        return benchmark(
            source,
            runtimes=args.runtimes,
            devices=args.device,
            batch_sizes=args.batch_sizes,
            threads=args.threads,
            min_time=args.min_time,
            rounds=args.rounds,
            accuracy_images=images,
            compile_mode=args.compile_mode,
            optimize=args.optimize,
            out=out,
            command="python " + " ".join(sys.argv),
        )

    ratios: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for model_name in filter(None, args.models.split(",")):
            torch.manual_seed(0)
            model = resolve_spec(model_name, image_size=32, patch_size=4, num_classes=10).build()
            rep = bench(model, tmp / model_name, 256)  # later repeats reuse the exports
            results["architecture"].append(summary(rep) | {"repeat": repeat})
            full[model_name if repeat == 0 else f"{model_name}#{repeat}"] = rep.to_json()
            for r in rep.rows:
                if r.speedup is not None and r.runtime != "eager":
                    key = f"{model_name} {r.device} batch {r.batch} {r.runtime}"
                    ratios.setdefault(key, []).append(r.speedup)
            save()
            print(f"{model_name} #{repeat}: {rep.wall_seconds:.0f} s", file=sys.stderr, flush=True)
    results["speedups"] = {  # speed-up over eager per cell: median and every run's figure
        k: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
        for k, v in ratios.items()
    }
    if not args.skip_run:
        run = Path(args.run) if args.run else None
        if run is None:
            run = tmp / "runs" / "mnist-mini-vit-micro"
            subprocess.run(
                [sys.executable, "-m", "vitkit", "train", "mnist-mini", "--out", str(run)],
                check=True,
            )
        rep = bench(run, tmp / "trained", 1000)
        results["trained"] = summary(rep) | {"run": str(run)}
        if (run / "summary.json").is_file():  # the training run's own figures (img/s, accuracy)
            results["trained"]["train_summary"] = json.loads((run / "summary.json").read_text())
        full["trained"] = rep.to_json()
        save()
    report(name, results)
    shutil.rmtree(tmp, ignore_errors=True)  # exports, bench folders, the trained run


if __name__ == "__main__":
    main()
