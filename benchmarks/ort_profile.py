"""Where ONNX Runtime's time goes in one exported graph: its own profiler, per operator type.

The graph is what ``vitkit export --optimize`` keeps (opset 20 + vitkit's attention fusion) for an
untrained model; ``--plain`` profiles the plain export instead. Each node's median kernel time
over ``--runs`` calls (after 20 warm-up calls), summed per operator type.

    python benchmarks/ort_profile.py [--model vit-tiny] [--batch 1] [--threads 2] [--runs 300]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _common import report

from vitkit.export.onnx import export_graph
from vitkit.export.quantize import fuse_attention
from vitkit.models import resolve_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit-tiny")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--plain", action="store_true", help="the plain export, not the fused one")
    args = p.parse_args()
    torch.manual_seed(0)
    spec = resolve_spec(args.model, image_size=32, patch_size=4, num_classes=10)
    model = spec.build().eval()
    graph, _, _ = export_graph(model, image_size=32, channels=3)
    if not args.plain:
        graph, _ = fuse_attention(graph, num_heads=spec.config.num_heads)
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 32, 32), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(
            graph.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        for _ in range(20 + args.runs):
            session.run(None, {"pixel_values": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = collections.defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"].removesuffix("_kernel_time")
            times[name].append(e["dur"])
            op_of[name] = e["args"].get("op_name", "?")
    node_us = {n: statistics.median(ts[20:] or ts) for n, ts in times.items()}  # warm-up out
    total = sum(node_us.values())
    per_op: collections.Counter[str] = collections.Counter()
    for n, us in node_us.items():
        per_op[op_of[n]] += us
    report(
        "ort_profile",
        {
            "model": args.model,
            "graph": "plain" if args.plain else "opset20+attention",
            "batch": args.batch,
            "threads": args.threads,
            "runs": args.runs,
            "nodes_run": len(node_us),
            "kernel_us_total": round(total, 1),
            "per_op_us": {k: round(v, 1) for k, v in per_op.most_common()},
            "per_op_share": {k: round(v / total, 3) for k, v in per_op.most_common()},
        },
    )


if __name__ == "__main__":
    main()
