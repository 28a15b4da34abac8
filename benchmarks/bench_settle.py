"""What waiting for idle threads before each cell changes in ``vitkit bench``'s numbers.

ONNX Runtime's intra-op workers spin for ~60 ms after a call, torch's OpenMP threads ~10 ms. In
the interleaved rounds of ``vitkit.bench.benchmark`` a cell that starts inside another
runtime's spin shares the cores with it: eager after ort-int8, ort-int8 after ort. Since this
change each cell first waits until the process is idle (``vitkit.bench.timing.settle``). This
runs the same benchmark (vit-tiny at 32 px, batch 1, eager / ort / ort-int8, ``--optimize``
exports) with the wait and with it replaced by a no-op, alternating which goes first. Over the
pairs whose halves ran in one host regime (eager's p50 within 10%) it reports the median p50
ratio (wait / no wait), each runtime's median p99 both ways, and the speed-ups over eager.

First it times the window itself: eager calls right after a burst of ONNX Runtime calls (and
ONNX Runtime calls right after eager ones), binned by the time since the burst ended.

    python benchmarks/bench_settle.py [--pairs 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _common import report

import vitkit
from vitkit.bench import benchmark
from vitkit.bench import run as run_module

RUNTIMES = ("eager", "ort", "ort-int8")
TRIALS = 25  # bursts per direction


def after_burst(
    burst: Callable[[], object], probe: Callable[[], object], span_ms: float, bin_ms: float
) -> dict[str, float]:
    """Median ms of ``probe()`` calls by time since 20 ``burst()`` calls ended (bins of bin_ms)."""
    bins: dict[int, list[float]] = {}
    for _ in range(TRIALS):
        for _ in range(20):
            burst()
        end = time.perf_counter()
        while (t0 := time.perf_counter()) - end < span_ms / 1e3:
            probe()
            since = (t0 - end) * 1e3
            bins.setdefault(int(since // bin_ms), []).append((time.perf_counter() - t0) * 1e3)
    return {
        f"{k * bin_ms:g}-{(k + 1) * bin_ms:g} ms": round(statistics.median(v), 2)
        for k, v in sorted(bins.items())
    }


def spin_window(model: torch.nn.Module, onnx_path: Path, threads: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    feed, xt = {sess.get_inputs()[0].name: x}, torch.from_numpy(x)

    def eager() -> None:
        with torch.inference_mode():
            model(xt)

    def onnx() -> None:
        sess.run(None, feed)

    for _ in range(20):
        eager()
        onnx()
    return {
        "onnx": f"{onnx_path.parent.name}/{onnx_path.name}",
        "onnx_variant": run_module._optimized(onnx_path.parent)[1],  # what --optimize kept
        "eager_ms_after_ort": after_burst(onnx, eager, 160, 20),
        "ort_ms_after_eager": after_burst(eager, onnx, 100, 10),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model = vitkit.create_model("vit-tiny", image_size=32, num_classes=10)
    real_settle = run_module.settle
    cells: dict[str, list[dict[str, dict[str, float]]]] = {"settle": [], "no wait": []}
    waits: list[float] = []
    with tempfile.TemporaryDirectory() as out:  # exports made once, then reused
        for i in range(args.pairs):
            modes = ("settle", "no wait") if i % 2 == 0 else ("no wait", "settle")
            for mode in modes:
                run_module.settle = real_settle if mode == "settle" else (lambda **_: 0.0)  # type: ignore[assignment]
                try:
                    rep = benchmark(
                        model,
                        runtimes=",".join(RUNTIMES),
                        devices="cpu",
                        batch_sizes=[1],
                        threads=args.threads,
                        accuracy_images=0,
                        optimize=True,
                        out=out,
                    )
                finally:
                    run_module.settle = real_settle  # type: ignore[assignment]
                if mode == "settle":
                    waits.append(rep.settings["settle_max_s"])
                row = {
                    r.runtime: {"p50": r.p50_ms, "p90": r.p90_ms, "p99": r.p99_ms} for r in rep.rows
                }
                row["speedup"] = {n: row["eager"]["p50"] / row[n]["p50"] for n in RUNTIMES[1:]}
                cells[mode].append(row)
                print(i, mode, {n: round(v["p50"], 2) for n, v in row.items() if n != "speedup"})
        fp32 = [
            p for p in Path(out).rglob("*.onnx") if "int8" not in p.name and "fp16" not in p.name
        ]
        window = spin_window(model.eval(), fp32[0], args.threads)
    # a pair whose two halves ran in different host regimes (eager's p50 off by > 10%) compares
    # the host, not the wait: summarised apart
    same = [
        i
        for i, (a, b) in enumerate(zip(cells["settle"], cells["no wait"], strict=True))
        if abs(a["eager"]["p50"] / b["eager"]["p50"] - 1) <= 0.10
    ]

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3) if values else float("nan")

    summary = {
        n: {
            "p50_settle_over_no_wait": med(
                [cells["settle"][i][n]["p50"] / cells["no wait"][i][n]["p50"] for i in same]
            ),
            "p99_ms_settle": med([cells["settle"][i][n]["p99"] for i in same]),
            "p99_ms_no_wait": med([cells["no wait"][i][n]["p99"] for i in same]),
            "p99_lower_with_settle": sum(
                cells["settle"][i][n]["p99"] < cells["no wait"][i][n]["p99"] for i in same
            ),
        }
        for n in RUNTIMES
    }
    speedups = {
        mode: {n: med([cells[mode][i]["speedup"][n] for i in same]) for n in RUNTIMES[1:]}
        for mode in cells
    }
    report(
        "bench_settle",
        {
            "model": "vit-tiny",
            "image_size": 32,
            "batch": 1,
            "threads": args.threads,
            "pairs": args.pairs,
            "spin_window": window,
            "settle_max_s": {"min": min(waits), "max": max(waits)},
            "pairs_in_one_regime": same,
            "median_over_those_pairs": summary,
            "speedup_median_over_those_pairs": speedups,
            "pairs_ms": cells,
        },
    )


if __name__ == "__main__":
    main()
