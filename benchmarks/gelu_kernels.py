"""What one erf-GELU costs in ONNX Runtime's CPU kernels and in eager PyTorch, at vit-tiny's MLP shape.

vit-tiny at 32 px, patch 4, batch 1: the MLP's hidden activation is [1, 65, 768] and the block
applies ``gelu(x + bias)`` to it 12 times. The ``--optimize`` export writes that as ONNX Runtime's
fused ``com.microsoft.BiasGelu``; its profile (``ort_profile.py --threads 1,2``) shows it barely
gains from a second thread. This times, per call and at 1 and 2 threads, in alternating blocks
(medians over rounds):

- ``ort BiasGelu``: the fused node vitkit's optimized graph uses;
- ``ort Add+Gelu``: the opset-20 ``Gelu`` op after a plain ``Add``;
- ``ort Add+Erf``: the decomposition (Add, Mul, Erf, Add, Mul, Mul) a plain export writes;
- ``ort FastGelu``: the tanh approximation (different numbers: shown for speed only);
- ``torch gelu(x+b)``: eager, what ``vitkit bench``'s eager row runs.

Each ONNX graph chains 12 nodes (or node groups) so the per-call time excludes most of the
session's run overhead. Every block starts once the block before has left no thread spinning
(``vitkit.bench.timing.settle``): ONNX Runtime's workers spin ~60 ms after a call, longer than
a block here. Batch 8 (8x the work per call) is timed beside batch 1. Last, ONNX Runtime's
profiler times ``BiasGelu`` between the two MLP ``MatMul``s, where it sits in the model.

    python benchmarks/gelu_kernels.py [--rounds 20] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from _common import report
from onnx import TensorProto, helper, numpy_helper

from vitkit.bench.timing import settle

TOKENS, HIDDEN, DEPTH = 65, 768, 12  # vit-tiny's MLP at 32 px, patch 4, batch 1
CALLS = 50  # timed session runs per block


def graph(kind: str, rng: np.random.Generator, batch: int = 1) -> bytes:
    nodes, inits, x = [], [], "x"
    n = helper.make_node
    for i in range(DEPTH):
        b, y = f"b{i}", f"y{i}"
        inits.append(
            numpy_helper.from_array((0.1 * rng.standard_normal(HIDDEN)).astype(np.float32), b)
        )
        if kind == "BiasGelu":
            nodes.append(n("BiasGelu", [x, b], [y], domain="com.microsoft"))
        elif kind == "FastGelu":
            nodes.append(n("FastGelu", [x, b], [y], domain="com.microsoft"))
        elif kind == "Add+Gelu":
            nodes += [n("Add", [x, b], [f"a{i}"]), n("Gelu", [f"a{i}"], [y])]
        else:  # Add+Erf
            for name, value in (("r", 2**-0.5), ("one", 1.0), ("half", 0.5)):
                inits.append(numpy_helper.from_array(np.array(value, np.float32), f"{name}{i}"))
            nodes += [
                n("Add", [x, b], [f"a{i}"]),
                n("Mul", [f"a{i}", f"r{i}"], [f"s{i}"]),
                n("Erf", [f"s{i}"], [f"e{i}"]),
                n("Add", [f"e{i}", f"one{i}"], [f"p{i}"]),
                n("Mul", [f"a{i}", f"p{i}"], [f"q{i}"]),
                n("Mul", [f"q{i}", f"half{i}"], [y]),
            ]
        x = y
    shape = [batch, TOKENS, HIDDEN]
    g = helper.make_graph(
        nodes, kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)],
        inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(g, opset_imports=opsets).SerializeToString()


def measure(batch: int, rounds: int, rng: np.random.Generator) -> dict[str, object]:
    x = rng.standard_normal((batch, TOKENS, HIDDEN)).astype(np.float32)
    calls = {}
    for kind in ("BiasGelu", "Add+Gelu", "Add+Erf", "FastGelu"):
        model = graph(kind, rng, batch)
        for threads in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.graph_optimization_level = (
                ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            )  # keep the nodes as written
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            calls[(f"ort {kind}", threads)] = (lambda s=sess: s.run(None, {"x": x}), DEPTH)
    xt, bt = torch.from_numpy(x), torch.from_numpy(rng.standard_normal(HIDDEN).astype(np.float32))

    def eager() -> None:
        with torch.inference_mode():
            F.gelu(xt + bt)

    for threads in (1, 2):
        calls[("torch gelu(x+b)", threads)] = (eager, 1)
    times: dict[tuple[str, int], list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for (name, threads), (fn, per_run) in calls.items():
            torch.set_num_threads(threads)
            settle()  # the last block's spinning threads (another session's, torch's) go idle
            for _ in range(5):
                fn()
            t0 = time.perf_counter()
            for _ in range(CALLS):
                fn()
            times[(name, threads)].append((time.perf_counter() - t0) / CALLS / per_run * 1e6)
    us = {f"{name} @{t}": round(statistics.median(v), 1) for (name, t), v in times.items()}
    names = dict.fromkeys(n for n, _ in calls)
    return {
        "shape": [batch, TOKENS, HIDDEN],
        "us_per_call": us,
        "time_ratio_2_threads_vs_1": {n: round(us[f"{n} @2"] / us[f"{n} @1"], 3) for n in names},
        "ort_biasgelu_vs_torch_at_2_threads": round(
            us["ort BiasGelu @2"] / us["torch gelu(x+b) @2"], 3
        ),
    }


def after_matmul(rounds: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """ONNX Runtime's profile of vit-tiny's MLP shape at batch 1: 12 x (MatMul 192->768, BiasGelu,
    MatMul 768->192), so each BiasGelu reads what a MatMul just wrote, as in the model. Median
    kernel time per node type (us) at 1 and 2 threads, sessions in alternating blocks of 20."""
    nodes, inits, x = [], [], "x"
    for i in range(DEPTH):
        for name, shape in (
            (f"w1_{i}", (192, HIDDEN)),
            (f"b1_{i}", (HIDDEN,)),
            (f"w2_{i}", (HIDDEN, 192)),
        ):
            inits.append(
                numpy_helper.from_array(
                    (0.05 * rng.standard_normal(shape)).astype(np.float32), name
                )
            )
        nodes += [
            helper.make_node("MatMul", [x, f"w1_{i}"], [f"m{i}"]),
            helper.make_node("BiasGelu", [f"m{i}", f"b1_{i}"], [f"g{i}"], domain="com.microsoft"),
            helper.make_node("MatMul", [f"g{i}", f"w2_{i}"], [f"y{i}"]),
        ]
        x = f"y{i}"
    io = [[1, TOKENS, 192]]
    g = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, io[0])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, io[0])],
        inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(g, opset_imports=opsets).SerializeToString()
    feed = {"x": rng.standard_normal((1, TOKENS, 192)).astype(np.float32)}
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for threads in (1, 2):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / f"mlp{threads}")
            sessions[threads] = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        for _ in range(rounds):
            for sess in sessions.values():
                settle()
                for _ in range(20):
                    sess.run(None, feed)
        for threads, sess in sessions.items():
            per: dict[str, list[float]] = {}
            for e in json.loads(Path(sess.end_profiling()).read_text()):
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    per.setdefault(e["args"]["op_name"], []).append(e["dur"])
            result[f"@{threads}"] = {op: round(statistics.median(v), 1) for op, v in per.items()}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    report(
        "gelu_kernels",
        {
            "rounds": args.rounds,
            "by_batch": {str(b): measure(b, args.rounds, rng) for b in batches},
            "after_matmul_us": after_matmul(args.rounds, rng),
        },
    )


if __name__ == "__main__":
    main()
