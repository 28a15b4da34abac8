"""Other ONNX spellings of vit-tiny's attention at batch 1, against the fused one `--optimize` writes.

At batch 1 ONNX Runtime's fused ``com.microsoft.Attention`` splits its core (scores, softmax,
weighted sum) over batch x heads: 3 items for vit-tiny, so a second thread does little there
(docs/benchmarks.md). This script times exact rewrites that give the threads more to share, each
as a chain of 12 attention sublayers (qkv projection, attention, output projection + bias) of
vit-tiny's shape (65 tokens, width 192, 3 heads), in one process, in alternating blocks that each
start on an idle process (``settle``), at 1 and 2 threads:

- ``fused``: ``Attention(x, W, b)``, then ``MatMul`` + ``Add`` (what ``--optimize`` writes);
- ``mha``: ``MatMul`` + ``Split`` + ``MultiHeadAttention`` (q, k, v, bias);
- ``query_chunks``: the same with the 65 queries cut into 5 chunks of 13 as a batch of 5 (the
  keys and values expanded to it): 15 batch x head items instead of 3;
- ``head_major``: per-head weights, so the projections write (heads, tokens, 64) directly
  (batched ``MatMul``), scores by ``FusedMatMul`` (transB), ``Softmax``, ``MatMul``, then
  ``Transpose`` + ``Reshape`` into the output projection; the 1/8 scale folded into the query
  weights (exact: a power of two). Every op there is one ONNX Runtime parallelises whole.

    python benchmarks/attention_layouts.py [--threads 1,2] [--rounds 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
from _common import report
from onnx import NodeProto, TensorProto, helper, numpy_helper

from vitkit.bench.timing import settle

D, HEADS, TOKENS, DEPTH = 192, 3, 65, 12  # vit-tiny at 32 px, patch 4 (64 patches + cls)
HEAD = D // HEADS
CHUNKS = 5  # 65 = 5 x 13 queries


def weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = (rng.standard_normal((D, 3 * D)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(3 * D) * 0.05).astype(np.float32)
    wo = (rng.standard_normal((D, D)) * 0.05).astype(np.float32)
    bo = (rng.standard_normal(D) * 0.05).astype(np.float32)
    # head-major: [q | k | v] columns, heads in order -> (3, heads, D, 64); q scaled by 1/8
    per_head = w.reshape(D, 3, HEADS, HEAD).transpose(1, 2, 0, 3).copy()
    bias = b.reshape(3, HEADS, 1, HEAD).copy()
    per_head[0] *= np.float32(HEAD**-0.5)
    bias[0] *= np.float32(HEAD**-0.5)
    return {
        "W": w, "B": b, "Wo": wo, "Bo": bo,
        "Wq": per_head[0], "Wk": per_head[1], "Wv": per_head[2],
        "Bq": bias[0], "Bk": bias[1], "Bv": bias[2],
        "split": np.array([D, D, D], np.int64),
        "q_chunks": np.array([CHUNKS, TOKENS // CHUNKS, D], np.int64),
        "kv_chunks": np.array([CHUNKS, TOKENS, D], np.int64),
        "tokens": np.array([1, TOKENS, D], np.int64),
    }  # fmt: skip


def sublayer(kind: str, x: str, y: str, p: str) -> list[NodeProto]:
    """One attention sublayer from ``x`` to ``y``; ``p`` prefixes its tensor names."""
    n = helper.make_node
    ms = "com.microsoft"
    proj = [n("MatMul", [p + "o", "Wo"], [p + "po"]), n("Add", [p + "po", "Bo"], [y])]
    if kind == "fused":
        return [n("Attention", [x, "W", "B"], [p + "o"], domain=ms, num_heads=HEADS), *proj]
    if kind in ("mha", "query_chunks"):
        nodes = [
            n("MatMul", [x, "W"], [p + "m"]),
            n("Split", [p + "m", "split"], [p + "q", p + "k", p + "v"], axis=-1),
        ]
        q, k, v, o = p + "q", p + "k", p + "v", p + "o"
        if kind == "query_chunks":
            nodes += [
                n("Reshape", [q, "q_chunks"], [p + "qc"]),
                n("Expand", [k, "kv_chunks"], [p + "kc"]),
                n("Expand", [v, "kv_chunks"], [p + "vc"]),
            ]
            q, k, v, o = p + "qc", p + "kc", p + "vc", p + "oc"
        nodes.append(n("MultiHeadAttention", [q, k, v, "B"], [o], domain=ms, num_heads=HEADS))
        if kind == "query_chunks":
            nodes.append(n("Reshape", [o, "tokens"], [p + "o"]))
        return nodes + proj
    assert kind == "head_major"
    return [
        *(
            node
            for t in "qkv"
            for node in (
                n("MatMul", [x, f"W{t}"], [f"{p}m{t}"]),
                n("Add", [f"{p}m{t}", f"B{t}"], [p + t]),
            )
        ),
        n("FusedMatMul", [p + "q", p + "k"], [p + "s"], domain=ms, transB=1),
        n("Softmax", [p + "s"], [p + "a"], axis=-1),
        n("MatMul", [p + "a", p + "v"], [p + "hv"]),
        n("Transpose", [p + "hv"], [p + "t"], perm=[1, 0, 2]),
        n("Reshape", [p + "t", "tokens"], [p + "o"]),
        *proj,
    ]


KINDS = ("fused", "mha", "query_chunks", "head_major")


def model(kind: str, init: dict[str, np.ndarray]) -> bytes:
    nodes: list[NodeProto] = []
    for i in range(DEPTH):
        x = "x" if i == 0 else f"h{i - 1}"
        y = "y" if i == DEPTH - 1 else f"h{i}"
        nodes += sublayer(kind, x, y, f"l{i}_")
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, D])],
        [numpy_helper.from_array(v, k) for k, v in init.items() if k in used],
    )
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def block(run: Callable[[], object], seconds: float) -> float:
    """Median call time of one block: 20 untimed calls, then ``seconds`` of timed ones."""
    for _ in range(20):
        run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--block-s", type=float, default=0.3, help="timed seconds per block")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    init = weights(rng)
    x = rng.standard_normal((1, TOKENS, D)).astype(np.float32)
    sessions: dict[tuple[str, int], ort.InferenceSession] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        for kind in KINDS:
            sessions[kind, threads] = ort.InferenceSession(
                model(kind, init), options, providers=["CPUExecutionProvider"]
            )
    ref = next(iter(sessions.values())).run(None, {"x": x})[0]
    diffs = {k: float(np.abs(s.run(None, {"x": x})[0] - ref).max()) for k, s in sessions.items()}
    medians: dict[tuple[str, int], list[float]] = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for key, s in sessions.items():
            settle()  # the previous session's workers stop spinning first
            medians[key].append(block(lambda s=s: s.run(None, {"x": x}), args.block_s))
    rows = []
    for (kind, threads), ts in medians.items():
        t = statistics.median(ts)
        fused = statistics.median(medians["fused", threads])
        one = medians.get((kind, 1))
        rows.append(
            {
                "layout": kind,
                "threads": threads,
                "us_per_sublayer": round(t / DEPTH * 1e6, 1),
                "speed_vs_fused": round(fused / t, 3),
                "time_vs_1_thread": round(t / statistics.median(one), 3) if one else None,
                "rounds_us": [round(v / DEPTH * 1e6, 1) for v in ts],
                "max_abs_diff_vs_fused": diffs[kind, threads],
            }
        )
    for r in rows:
        print(
            f"{r['layout']:13s} {r['threads']} threads  {r['us_per_sublayer']:7.1f} us/sublayer"
            f"  x{r['speed_vs_fused']:.3f} of fused  diff {r['max_abs_diff_vs_fused']:.1e}"
        )
    report(
        "attention_layouts",
        {"onnxruntime": ort.__version__, "tokens": TOKENS, "width": D, "heads": HEADS,
         "sublayers": DEPTH, "rounds": args.rounds, "results": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
