"""What a fused attention node would buy ONNX Runtime on the CPU, for vit-tiny's block shape.

One ViT attention (packed qkv projection + 3 heads over 65 tokens, width 192: vit-tiny at 32 px,
patch 4) as two ONNX graphs: the unfused ops our exporter writes (MatMul, Add, Reshape,
Transpose, Split, Squeeze, MatMul, Mul, Softmax, MatMul, Transpose, Reshape) and ONNX Runtime's
fused ``com.microsoft.Attention``. Both run in ORT's CPU EP with the same threads, timed in
alternating blocks (medians). The saving x 12 blocks bounds what attention fusion could add to
``vitkit bench``'s ort row (docs/benchmarks.md).

    python benchmarks/ort_attention_fusion.py [--threads 2] [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from _common import report
from onnx import ModelProto, TensorProto, helper, numpy_helper

from vitkit.bench.timing import settle

D, HEADS, TOKENS, DEPTH = 192, 3, 65, 12  # vit-tiny at 32 px, patch 4 (64 patches + cls)
HEAD = D // HEADS


def graphs(w: np.ndarray, b: np.ndarray) -> dict[str, ModelProto]:
    io_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", TOKENS, D])]
    io_out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", TOKENS, D])]
    weights = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    fused = helper.make_graph(
        [helper.make_node("Attention", ["x", "W", "B"], ["y"], domain="com.microsoft", num_heads=HEADS)],
        "fused", io_in, io_out, weights,
    )  # fmt: skip
    consts = [
        numpy_helper.from_array(np.array([0, TOKENS, 3, HEADS, HEAD], np.int64), "s1"),
        numpy_helper.from_array(np.array([0, TOKENS, D], np.int64), "s2"),
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array(HEAD**-0.5, np.float32), "scale"),
    ]
    n = helper.make_node
    plain = helper.make_graph(
        [
            n("MatMul", ["x", "W"], ["m"]),
            n("Add", ["m", "B"], ["qkv"]),
            n("Reshape", ["qkv", "s1"], ["r"]),
            n("Transpose", ["r"], ["t"], perm=[2, 0, 3, 1, 4]),
            n("Split", ["t"], ["q3", "k3", "v3"], axis=0, num_outputs=3),
            n("Squeeze", ["q3", "ax0"], ["q"]),
            n("Squeeze", ["k3", "ax0"], ["k"]),
            n("Squeeze", ["v3", "ax0"], ["v"]),
            n("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
            n("MatMul", ["q", "kt"], ["a"]),
            n("Mul", ["a", "scale"], ["a2"]),
            n("Softmax", ["a2"], ["p"], axis=-1),
            n("MatMul", ["p", "v"], ["o"]),
            n("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
            n("Reshape", ["ot", "s2"], ["y"]),
        ],
        "plain", io_in, io_out, weights + consts,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    return {
        "fused": helper.make_model(fused, opset_imports=opsets),
        "plain": helper.make_model(plain, opset_imports=opsets[:1]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((D, 3 * D)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(3 * D) * 0.05).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    sessions = {
        k: ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for k, m in graphs(w, b).items()
    }
    results = []
    for batch, calls in ((1, 300), (64, 20)):
        x = rng.standard_normal((batch, TOKENS, D)).astype(np.float32)
        outs = {k: s.run(None, {"x": x})[0] for k, s in sessions.items()}
        diff = float(np.abs(outs["fused"] - outs["plain"]).max())
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.rounds):
            for k, s in sessions.items():
                settle()  # the other session's workers stop spinning first
                for _ in range(calls):
                    t0 = time.perf_counter()
                    s.run(None, {"x": x})
                    times[k].append(time.perf_counter() - t0)
        fused, plain = (statistics.median(times[k]) for k in ("fused", "plain"))
        results.append(
            {
                "batch": batch,
                "plain_ms": round(plain * 1e3, 4),
                "fused_ms": round(fused * 1e3, 4),
                "saving_per_model_ms": round((plain - fused) * DEPTH * 1e3, 3),
                "max_abs_diff": diff,
            }
        )
    report(
        "ort_attention_fusion",
        {"threads": args.threads, "onnxruntime": ort.__version__, "results": results},
    )


if __name__ == "__main__":
    main()
