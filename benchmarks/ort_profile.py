"""Where ONNX Runtime's time goes in one exported graph: its own profiler, per operator type.

The graph is what ``vitkit export --optimize`` keeps (opset 20 + vitkit's attention fusion) for an
untrained model; ``--plain`` profiles the plain export instead. Each node's median kernel time
over ``--runs`` calls (after 20 warm-up calls), summed per operator type.

``--threads 1,2`` profiles one session per thread count in the same process (their calls in
alternating blocks, so that both see the same machine) and adds each operator type's time at the
later counts over its time at the first: 0.5 is perfect scaling, 1.0 or more means the extra
thread only cost synchronisation.

    python benchmarks/ort_profile.py [--model vit-tiny] [--batch 1] [--threads 2] [--runs 300] [--heads N] [--plain]
        [--tag NAME]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from _common import report

from vitkit.bench.timing import settle
from vitkit.export.onnx import export_graph
from vitkit.export.quantize import fuse_attention
from vitkit.models import resolve_spec

WARMUP = 20  # calls per session in turn; each session's first block is its warm-up, left out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit-tiny")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", default="2", help="intra-op threads; a list (1,2) compares them")
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--heads", type=int, help="override the preset's attention heads")
    p.add_argument("--plain", action="store_true", help="the plain export, not the fused one")
    p.add_argument("--tag", default="", help="suffix of the result file (e.g. 'b64-plain')")
    args = p.parse_args()
    torch.manual_seed(0)
    spec = resolve_spec(
        args.model, image_size=32, patch_size=4, num_classes=10, num_heads=args.heads
    )
    model = spec.build().eval()
    graph, _, _ = export_graph(model, image_size=32, channels=3)
    if not args.plain:
        graph, _ = fuse_attention(graph, num_heads=spec.config.num_heads)
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 32, 32), dtype=np.float32)
    counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for n in counts:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / f"profile-{n}")
            sessions[n] = ort.InferenceSession(
                graph.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
        for _ in range(0, WARMUP + args.runs, WARMUP):
            for session in sessions.values():
                settle()  # the other session's workers stop spinning first
                for _ in range(WARMUP):
                    session.run(None, {"pixel_values": x})
        profiles = {n: _per_op(Path(s.end_profiling())) for n, s in sessions.items()}
    first = profiles[counts[0]]
    result: dict[str, Any] = {
        "model": args.model,
        "graph": "plain" if args.plain else "opset20+attention",
        "batch": args.batch,
        "heads": spec.config.num_heads,
        "threads": counts[0] if len(counts) == 1 else counts,
        "runs": args.runs,
        **first,
    }
    if len(counts) > 1:
        result["by_threads"] = {str(n): profiles[n] for n in counts}
        result["time_ratio_vs_first"] = {
            str(n): {
                op: round(us / first["per_op_us"][op], 3)
                for op, us in profiles[n]["per_op_us"].items()
                if first["per_op_us"].get(op)
            }
            | {"total": round(profiles[n]["kernel_us_total"] / first["kernel_us_total"], 3)}
            for n in counts[1:]
        }
    name = "ort_profile" if len(counts) == 1 else "ort_profile_threads"
    name += f"_heads{args.heads}" if args.heads else ""
    name += f"_{args.tag}" if args.tag else ""  # another batch or graph keeps the others' files
    report(name, result)


def _per_op(profile: Path) -> dict[str, Any]:
    """Each node's median kernel time (warm-up calls out), summed per operator type."""
    events = json.loads(profile.read_text())
    times: dict[str, list[float]] = collections.defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removesuffix("_kernel_time")
            times[name].append(e["dur"])
            op_of[name] = e["args"].get("op_name", "?")
    node_us = {n: statistics.median(ts[WARMUP:] or ts) for n, ts in times.items()}
    total = sum(node_us.values())
    per_op: collections.Counter[str] = collections.Counter()
    for n, us in node_us.items():
        per_op[op_of[n]] += us
    return {
        "nodes_run": len(node_us),
        "kernel_us_total": round(total, 1),
        "per_op_us": {k: round(v, 1) for k, v in per_op.most_common()},
        "per_op_share": {k: round(v / total, 3) for k, v in per_op.most_common()},
    }


if __name__ == "__main__":
    main()
