"""Accuracy and wall time of the default training recipes, through the `vitkit train` CLI.

Each case is the exact command in docs/benchmarks.md; the run's summary.json is collected.
Long: mnist-mini ~2.5 min, mnist ~16 min (1 thread), cifar10-jpeg 5 epochs ~14 min (1 thread)
on a 2-core CPU. Pass case names to run only some: mnist-mini, mnist, cifar10-cpu (the results
file keeps the other cases' last results, each with its date and command).

    python benchmarks/train_recipes.py [mnist-mini] [mnist] [cifar10-cpu]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, SHARED_DATA, cifar10_jpeg_tree, report


def main() -> None:
    wanted = sys.argv[1:] or ["mnist-mini", "mnist", "cifar10-cpu"]
    tmp = Path(tempfile.gettempdir()) / "vitkit-bench"
    root = tmp / "data-root"
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    for f in (SHARED_DATA / "mnist").glob("*.gz"):
        if not (root / "mnist" / f.name).exists():
            (root / "mnist" / f.name).symlink_to(f)
    cases = {
        "mnist-mini": (["vitkit", "train", "mnist-mini"], {}),
        "mnist": (["vitkit", "train", "mnist"], {"OMP_NUM_THREADS": "1"}),
        "cifar10-cpu": (
            [
                "vitkit",
                "train",
                f"folder:{cifar10_jpeg_tree()}",
                "--model",
                "vit-micro",
                "--epochs",
                "5",
                "--mixup",
                "0",
                "--cutmix",
                "0",
                "--drop-path",
                "0",
                "--batch-size",
                "128",
                "--warmup-epochs",
                "1",
            ],
            {"OMP_NUM_THREADS": "1"},
        ),
    }
    results = []
    for name in wanted:
        cmd, env = cases[name]
        out = tmp / "runs" / name
        full = [*cmd, "--data-root", str(root), "--out", str(out), "--overwrite", "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(full, capture_output=True, text=True, env={**os.environ, **env})
        if proc.returncode != 0:
            sys.exit(proc.stderr[-2000:])
        summary = json.loads(proc.stdout)
        results.append(
            {
                "case": name,
                "date": time.strftime("%Y-%m-%d"),
                "script": "python benchmarks/train_recipes.py " + " ".join(wanted),
                "command": " ".join(cmd),
                "env": env,
                "command_seconds": round(time.perf_counter() - t0, 1),
                **{
                    k: summary[k]
                    for k in (
                        "model",
                        "params",
                        "epochs_done",
                        "steps",
                        "test_acc",
                        "best_val_acc",
                        "wall_seconds",
                        "train_images_per_s",
                    )
                },
            }
        )
    # cases not run this time keep their last result (each one says when and how it was made)
    kept = []
    previous = RESULTS / "train_recipes.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        for r in old.get("results", []):
            if r.get("case") not in wanted:
                note = r.get("note", old.get("note"))
                kept.append(
                    r
                    | {
                        "date": r.get("date", old.get("date")),
                        "script": r.get("script", old.get("command")),
                    }
                    | ({"note": note} if note is not None else {})
                )
    report("train_recipes", {"results": kept + results})


if __name__ == "__main__":
    main()
