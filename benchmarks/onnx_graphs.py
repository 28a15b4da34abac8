"""Which ONNX graph of the same model ONNX Runtime runs fastest on the CPU: opset 18 against 20
(GELU as five ops or as one), with and without vitkit's attention fusion and ONNX Runtime's
transformer optimizer (and both together), and int8 dynamic from the plain and the fused graph, all raced head to
head in one process (``vitkit.export.onnx.race_rounds``: interleaved rounds, the order
rotating), against the opset-18 export: a graph's speed-up is the median over rounds of that
round's ratio (``paired_speedup``, as ``--optimize`` compares), its p50 the median of its rounds.

One model (untrained, default vit-tiny at 32 px, patch 4, 10 classes); every graph is checked
against eager first (max |difference| in the result). The figures behind the opset-20 default
and the --optimize notes in docs/benchmarks.md.

    python benchmarks/onnx_graphs.py [--model vit-tiny] [--threads 2] [--rounds 15]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import report

from vitkit.export.onnx import export_graph, ort_session, paired_speedup, race_rounds
from vitkit.export.quantize import fuse_attention, optimize_transformer, quantize_int8_dynamic
from vitkit.models import resolve_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit-tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batch-sizes", default="1,64")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = resolve_spec(args.model, image_size=32, patch_size=4, num_classes=10)
    model = spec.build().eval()
    cfg = spec.config
    graphs = {}
    for opset in (18, 20):
        plain, exporter, _ = export_graph(model, image_size=32, channels=3, opset=opset)
        graphs[f"opset{opset}"] = plain
        graphs[f"opset{opset}+attention"] = fuse_attention(plain, num_heads=cfg.num_heads)[0]
    with tempfile.TemporaryDirectory() as tmp:
        graphs["opset20+ort-optimizer"] = optimize_transformer(
            graphs["opset20"], Path(tmp), num_heads=cfg.num_heads, hidden_size=cfg.embed_dim
        )[0]
        # both: fused attention, then ORT's SkipLayerNormalization / BiasGelu around it
        graphs["opset20+attention+ort-optimizer"] = optimize_transformer(
            graphs["opset20+attention"],
            Path(tmp),
            num_heads=cfg.num_heads,
            hidden_size=cfg.embed_dim,
        )[0]
        # int8 dynamic as `vitkit export --int8 dynamic` builds it, without and with --optimize
        graphs["opset20 int8"] = quantize_int8_dynamic(graphs["opset20"], Path(tmp))
        graphs["opset20+attention int8"] = quantize_int8_dynamic(
            graphs["opset20+attention"], Path(tmp), attention=True
        )
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    checks = {}
    for name, g in graphs.items():
        out = ort_session(g, threads=args.threads).run(None, {"pixel_values": x})[0]
        checks[name] = {
            "max_abs_diff": float(np.abs(out - ref).max()),
            "nodes": len(g.graph.node),
            "ops": dict(collections.Counter(n.op_type for n in g.graph.node).most_common()),
        }
    sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    rounds = race_rounds(
        graphs, x, threads=args.threads, batches=sizes, rounds=args.rounds, budget=1e9
    )
    base = rounds["opset18"]
    speedups = {
        name: {b: paired_speedup(base[b], t) for b, t in per.items()}
        for name, per in rounds.items()
    }
    result = {
        "model": args.model,
        "exporter": exporter,
        "threads": {"torch": torch.get_num_threads(), "onnxruntime": args.threads},
        "rounds": args.rounds,
        "graphs": {
            name: checks[name]
            | {
                "p50_ms": {str(b): round(statistics.median(t) * 1e3, 3) for b, t in per.items()},
                "speedup_vs_opset18": {str(b): round(v, 3) for b, v in speedups[name].items()},
            }
            for name, per in rounds.items()
        },
        "geomean_speedup_vs_opset18": {
            name: round(statistics.geometric_mean(list(per.values())), 3)
            for name, per in speedups.items()
        },
    }
    report("onnx_graphs", result)


if __name__ == "__main__":
    main()
