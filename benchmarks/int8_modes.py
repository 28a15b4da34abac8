"""int8 dynamic against int8 static (QDQ) against fp32 in ONNX Runtime on the CPU: speed (raced
head to head, ``vitkit.export.race_rounds``: interleaved rounds, the order rotating; a speed-up
over fp32 is the median over rounds of that round's ratio, ``paired_speedup``, as ``--optimize``
compares) and top-1 accuracy.

Two models: a trained run (the mnist-mini default recipe, trained here unless --run is given;
accuracy on its 1,000 test images, as `vitkit export` verifies it) and an untrained vit-tiny at
32 px, patch 4 (synthetic inputs: speed only). Each int8 model is made by `vitkit export
--int8 dynamic` / `--int8 static` (plain graph, default opset), except the untrained model's
static one: `vitkit export` refuses to calibrate on random pixels, so the script quantizes
its fp32 export with the same quantizer on 512 random images (their scales are no model's,
its accuracy means nothing; its speed is the graph's). The figures behind the int8 table in
docs/export.md.

    python benchmarks/int8_modes.py [--run runs/mnist-mini-vit-micro] [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import report

from vitkit.export.onnx import export_onnx, load_onnx, paired_speedup, race_rounds
from vitkit.models import resolve_spec


def static_on_random_images(fp32: Path, work: Path) -> Path:
    """Static QDQ int8 of an untrained model's export, calibrated on random images."""
    import onnx

    from vitkit.export.onnx import INPUT_NAME, RUN_BATCH
    from vitkit.export.quantize import quantize_int8_static

    proto = load_onnx(fp32)
    dims = proto.graph.input[0].type.tensor_type.shape.dim[1:]
    shape = (512, *(d.dim_value for d in dims))
    calibration = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    work.mkdir(parents=True, exist_ok=True)
    model = quantize_int8_static(proto, calibration, work, input_name=INPUT_NAME, batch=RUN_BATCH)
    out = fp32.with_name("model.int8.onnx")
    onnx.save(model, out)
    return out


def measure(source: Any, tmp: Path, *, threads: int, rounds: int) -> dict[str, Any]:
    files, accuracy, eager, data = {}, {}, None, None
    for mode in ("dynamic", "static"):
        random_calibration = mode == "static" and not isinstance(source, Path)  # untrained
        rep = export_onnx(
            source,
            tmp / mode / "model.onnx",
            int8=None if random_calibration else mode,
            threads=threads,
        )
        if random_calibration:
            files["int8-static"] = static_on_random_images(Path(rep.files[0]), tmp / "static")
            accuracy["int8-static"] = None
            continue
        if not rep.passed:
            raise SystemExit(f"int8 {mode} export failed verification: {rep.failures}")
        doc = rep.to_json()
        eager, data = doc["eager"], doc["data"]
        for p in doc["precisions"]:
            name = "fp32" if p["precision"] == "fp32" else p["precision"]
            files[name] = Path(p["path"])
            accuracy[name] = p["accuracy"]
    models = {name: load_onnx(path) for name, path in files.items()}
    rounds_ = race_rounds(models, None, threads=threads, batches=(1, 64), rounds=rounds, budget=1e9)
    times = {n: {b: float(np.median(t)) for b, t in per.items()} for n, per in rounds_.items()}
    return {
        "data": data,
        "eager_accuracy": (eager or {}).get("accuracy"),
        "models": {
            name: {
                "size_bytes": files[name].stat().st_size,
                "accuracy": accuracy[name],
                "images_per_s": {str(b): round(b / t, 1) for b, t in times[name].items()},
                "speedup_vs_fp32": {
                    str(b): round(paired_speedup(rounds_["fp32"][b], t), 3)
                    for b, t in rounds_[name].items()
                },
            }
            for name in models
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained run (default: train mnist-mini here)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="vitkit-int8-"))
    try:
        run = Path(args.run) if args.run else tmp / "runs" / "mnist-mini-vit-micro"
        if not args.run:
            cmd = [sys.executable, "-m", "vitkit", "train", "mnist-mini", "--out", str(run)]
            subprocess.run(cmd, check=True)
        results: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds}
        results["trained"] = {"run": str(run)} | measure(
            run, tmp / "trained", threads=args.threads, rounds=args.rounds
        )
        torch.manual_seed(0)
        model = resolve_spec("vit-tiny", image_size=32, patch_size=4, num_classes=10).build()
        results["vit-tiny"] = measure(
            model.eval(), tmp / "vit-tiny", threads=args.threads, rounds=args.rounds
        )
        report("int8_modes", results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
