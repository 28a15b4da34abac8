"""Derived ONNX models: float16, int8 (dynamic or static QDQ) and ORT's transformer fusions.

Every function takes an fp32 ``ModelProto`` and returns a new one; none of them writes the
result anywhere (``export_onnx`` verifies a model before it writes it, atomically). ONNX
Runtime's tools work on files, so they run in a scratch directory the caller passes.

What stays in float, and why:

- fp16: ``LayerNormalization`` and ``Softmax`` (their reductions overflow or lose the small
  probabilities in half precision) plus ORT's default block list; inputs and outputs stay
  float32, so a consumer feeds the same tensor to every precision.
- int8: only the weight-bearing ``MatMul`` / ``Gemm`` nodes (the qkv, projection, MLP and head
  layers) are quantized. The attention matmuls (activation x activation), LayerNorm, Softmax,
  GELU and the residual adds keep float inputs: their ranges are wide and data dependent, and
  quantizing them costs accuracy for little speed. With ``export --optimize`` keeping the fused
  attention model, int8 dynamic is built from that model and each ``Attention`` node's qkv
  projection is quantized as well (``QAttention``); its softmax and head matmuls stay float.
  The patch embedding (a ``Conv``) stays float
  too: it is a sliver of the FLOPs, and its error reaches every block (on a weak vit-nano,
  quantizing it took top-1 agreement with eager from 95% to 90%). ONNX Runtime requantizes a
  quantized MatMul's output (so that it can run one QLinearMatMul); the bias Add after it reads
  that value and adds in float.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

# ops whose every input/output stays float32 in the fp16 model
FP16_KEEP_FLOAT = ("LayerNormalization", "Softmax")
# the only op types int8 quantization touches (and of those, only the ones with a weight)
INT8_OP_TYPES = ("MatMul", "Gemm")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantization tools log advice through the root logger; the library stays silent."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def weight_nodes(model: onnx.ModelProto, op_types: tuple[str, ...] = INT8_OP_TYPES) -> list[str]:
    """Names of the nodes of ``op_types`` (MatMul/Gemm) that multiply by a weight (an
    initializer)."""
    inits = {i.name for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in op_types and any(i in inits for i in n.input)
    ]


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every node has a unique name (quantization selects nodes by name)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    seen: set[str] = set()
    for i, node in enumerate(out.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return out


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and activations in float16; float32 inputs/outputs, LayerNorm/Softmax in float32."""
    from onnxruntime.transformers import float16

    block = sorted({*float16.DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT})
    with _quiet():
        converted: onnx.ModelProto = float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=block, disable_shape_infer=False
        )
    # some converter versions (onnxruntime 1.31) cast a float32 initializer that several kept-float
    # nodes share once per consumer, under one output name: keep one of the identical casts
    dedupe_nodes(converted.graph)
    toposort(converted.graph)  # the converter appends its input casts after their consumers
    # some intermediate type annotations still say float32 where the value is now float16;
    # they are optional (ONNX infers them), so drop them rather than leave them wrong
    del converted.graph.value_info[:]
    return converted


def dedupe_nodes(graph: onnx.GraphProto) -> int:
    """Drop nodes that repeat an earlier node exactly (same op, inputs, outputs, attributes),
    which would break single assignment. Returns how many were dropped."""
    seen: set[bytes] = set()
    keep: list[onnx.NodeProto] = []
    for node in graph.node:
        key = onnx.NodeProto()
        key.CopyFrom(node)
        key.ClearField("name")
        blob = key.SerializeToString(deterministic=True)
        if blob in seen:
            continue
        seen.add(blob)
        keep.append(node)
    dropped = len(graph.node) - len(keep)
    if dropped:
        copies = [onnx.NodeProto() for _ in keep]
        for dst, src in zip(copies, keep, strict=True):
            dst.CopyFrom(src)
        del graph.node[:]
        graph.node.extend(copies)
    return dropped


def toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so every node comes after the nodes it reads from."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    producers = {o for n in graph.node for o in n.output}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            # names no node produces come from an outer scope: treat them as available
            if all(i in available or i not in producers for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("the graph has a cycle")
        pending = rest
    copies = [onnx.NodeProto() for _ in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(copies)


def quantize_int8_dynamic(
    model: onnx.ModelProto, workdir: Path, *, attention: bool = False
) -> onnx.ModelProto:
    """int8 weights of MatMul/Gemm (per tensor); activations quantized on the fly per batch.

    ``attention``: ``model`` has fused ``com.microsoft.Attention`` nodes (``fuse_attention``);
    their qkv projection is quantized too (ONNX Runtime's ``QAttention``: int8 input and
    weight, the attention itself in float). On the 2-core CPU that int8 model ran 1.19-1.44x
    faster than the plain graph's at batch 1 and 1.10-1.28x at batch 64 in three runs of
    ``benchmarks/onnx_graphs.py`` (docs/export.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = workdir / "int8-dynamic-in.onnx", workdir / "int8-dynamic.onnx"
    named = _named(model)
    onnx.save(named, src)
    ops = (*INT8_OP_TYPES, "Attention") if attention else INT8_OP_TYPES
    with _quiet():
        quantize_dynamic(
            src,
            dst,
            op_types_to_quantize=list(ops),
            nodes_to_quantize=weight_nodes(named, ops),
            weight_type=QuantType.QInt8,
            per_channel=False,
            # ONNX's shape inference gives no types past a contrib op: say they are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT} if attention else {},
        )
    return onnx.load(dst)


def quantize_int8_static(
    model: onnx.ModelProto,
    calibration: np.ndarray,
    workdir: Path,
    *,
    input_name: str,
    batch: int = 64,
    fixed_batch: bool = False,
) -> onnx.ModelProto:
    """QDQ int8, calibrated (min/max) on ``calibration`` (normalised float32 images, N C H W).

    uint8 activations (asymmetric) and int8 per-channel weights, the combination ORT's x86
    kernels are fastest with; only weight-bearing MatMul/Gemm nodes get Q/DQ pairs.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from vitkit.export.onnx import chunks

    class Batches(CalibrationDataReader):
        """The calibration images, in the batches the model takes."""

        def __init__(self) -> None:
            x = calibration.astype(np.float32)
            self._it = iter([{input_name: c} for c, _ in chunks(x, batch, pad=fixed_batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    src, dst = workdir / "int8-static-in.onnx", workdir / "int8-static.onnx"
    named = _named(model)
    onnx.save(named, src)
    reader: Any = Batches()
    with _quiet():
        quantize_static(
            src,
            dst,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(INT8_OP_TYPES),
            nodes_to_quantize=weight_nodes(named),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    return onnx.load(dst)


def optimize_transformer(
    model: onnx.ModelProto, workdir: Path, *, num_heads: int, hidden_size: int
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """ORT's transformer optimizer (``model_type='vit'``): fused attention, LayerNorm, GELU, bias.

    Python-level fusions only (``opt_level=0``), so the file stays portable across execution
    providers; ONNX Runtime applies its own graph optimisations when it loads the model.
    Returns the fused model and the count of each fused operator that appeared.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    src, dst = workdir / "optimize-in.onnx", workdir / "optimized.onnx"
    onnx.save(model, src)
    with _quiet():
        opt = optimize_model(
            str(src),
            model_type="vit",
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            use_gpu=False,
        )
        stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
        opt.save_model_to_file(str(dst))
    return onnx.load(dst), stats


def fuse_attention(model: onnx.ModelProto, *, num_heads: int) -> tuple[onnx.ModelProto, int]:
    """Replace every ViT self-attention subgraph with one of ONNX Runtime's fused attention
    nodes; returns (new model, how many were fused).

    The match is structural: a ``Softmax`` -> ``MatMul`` -> ``Transpose`` -> ``Reshape`` back to
    (B, S, D), reached only through nodes used by nothing else from either
    - one ``MatMul`` by a (D, 3D) weight (+ its bias ``Add``): the region becomes
      ``com.microsoft.Attention(x, W, b)``; q, k, v packed as [q | k | v] with the heads in
      order (as ``layers.Attention`` packs them); or
    - a (D, D) and a (D, 2D) ``MatMul`` (+ bias ``Add``): queries for some tokens, keys and values
      packed [k | v] for all (the class-token block, ``Attention._forward_queries``). Both
      projections stay; the rest becomes ``Split`` + ``com.microsoft.MultiHeadAttention``.
    Both use the default 1/sqrt(head) scale. Anything that does not match is left as it is, and
    the caller verifies the result against eager (``export_onnx --optimize`` does).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def only(name: str, op: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def packs(n: onnx.NodeProto) -> int:
        """How many of q, k, v a ``MatMul`` projects to (its weight is (D, k*D)); 0: none."""
        if n.op_type != "MatMul" or len(n.input) != 2 or n.input[1] not in inits:
            return 0
        dims = list(inits[n.input[1]].dims)
        ok = len(dims) == 2 and dims[1] in (dims[0], 2 * dims[0], 3 * dims[0])
        return dims[1] // dims[0] if ok else 0

    def bias_of(proj: onnx.NodeProto, region: list[onnx.NodeProto]) -> str | None:
        """The 1-D initializer a region's ``Add`` puts on ``proj``'s output (None: no bias)."""
        adds = (n for n in region if n.op_type == "Add" and proj.output[0] in n.input)
        biases = (i for n in adds for i in n.input if i in inits and len(inits[i].dims) == 1)
        return next(biases, None)

    def bias_values(name: str | None, width: int) -> np.ndarray:
        if name is None:
            return np.zeros(width, np.float32)
        return onnx.numpy_helper.to_array(inits[name])

    position = {id(n): i for i, n in enumerate(g.node)}
    replaced: dict[int, onnx.NodeProto] = {}  # id(qkv projection) -> Attention node
    after: dict[int, list[onnx.NodeProto]] = {}  # id(a kept node) -> nodes to insert after it
    dropped: set[int] = set()
    fused = 0
    for softmax in [n for n in g.node if n.op_type == "Softmax"]:
        pv = only(softmax.output[0], "MatMul")
        tr = only(pv.output[0], "Transpose") if pv is not None else None
        rs = only(tr.output[0], "Reshape") if tr is not None else None
        if rs is None or tr is None:
            continue
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        if perm != [0, 2, 1, 3]:  # heads back next to tokens: (B, S, H, D)
            continue
        end = rs.output[0]
        # the region: ancestors of `end`, walked back until the q/k/v projections
        region: list[onnx.NodeProto] = []
        projs: list[onnx.NodeProto] = []
        stack, seen = [rs], set()
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if packs(n):
                projs.append(n)
                continue
            region.append(n)
            stack.extend(producer[i] for i in n.input if i in producer)
            if len(region) > 64:  # not an attention block: do not scan the whole graph
                break
        kinds = sorted(packs(p) for p in projs)
        if kinds not in ([3], [1, 2]) or len(region) > 64:
            continue
        proj_out = {p.output[0] for p in projs}
        names = {o for n in region for o in n.output}
        inside = {id(n) for n in region}
        closed = all(
            all(id(c) in inside for c in consumers.get(o, [])) and o not in outputs
            for n in region
            for o in n.output
            if o != end
        ) and all(id(c) in inside for o in proj_out for c in consumers.get(o, []))
        sources_ok = all(
            i in names or i in inits or i in proj_out or i == "" for n in region for i in n.input
        )
        if not (closed and sources_ok) or any(id(n) in dropped for n in region):
            continue
        if kinds == [3]:
            (qkv,) = projs
            b_name = bias_of(qkv, region)
            if b_name is None:
                b_name = f"{qkv.name or qkv.output[0]}_zero_bias"
                g.initializer.append(
                    onnx.numpy_helper.from_array(
                        np.zeros(inits[qkv.input[1]].dims[1], np.float32), b_name
                    )
                )
            replaced[id(qkv)] = onnx.helper.make_node(
                "Attention",
                [qkv.input[0], qkv.input[1], b_name],
                [end],
                name=f"Attention_{fused}",
                domain="com.microsoft",
                num_heads=num_heads,
            )
        else:
            q, kv = sorted(projs, key=packs)
            d = int(inits[q.input[1]].dims[1])
            if int(inits[kv.input[1]].dims[0]) != d:
                continue
            b_q, b_kv = bias_of(q, region), bias_of(kv, region)
            packed = np.concatenate([bias_values(b_q, d), bias_values(b_kv, 2 * d)])
            if packed.shape != (3 * d,):  # a broadcast bias of another shape: not this pattern
                continue
            base = f"MultiHeadAttention_{fused}"
            mha_inputs = [q.output[0], f"{base}_k", f"{base}_v"]
            if b_q is not None or b_kv is not None:  # MultiHeadAttention adds [b_q | b_k | b_v]
                g.initializer.append(onnx.numpy_helper.from_array(packed, f"{base}_bias"))
                mha_inputs.append(f"{base}_bias")
            g.initializer.append(
                onnx.numpy_helper.from_array(np.array([d, d], np.int64), f"{base}_split")
            )
            last = max(projs, key=lambda p: position[id(p)])
            after[id(last)] = [
                onnx.helper.make_node(
                    "Split",
                    [kv.output[0], f"{base}_split"],
                    [f"{base}_k", f"{base}_v"],
                    name=f"{base}_split_kv",
                    axis=-1,
                ),
                onnx.helper.make_node(
                    "MultiHeadAttention",
                    mha_inputs,
                    [end],
                    name=base,
                    domain="com.microsoft",
                    num_heads=num_heads,
                ),
            ]
        dropped.update(inside)
        fused += 1
    if not fused:
        return out, 0
    nodes: list[onnx.NodeProto] = []
    for n in g.node:
        if id(n) in replaced:
            nodes.append(replaced[id(n)])
        elif id(n) not in dropped:
            nodes.append(n)
        nodes.extend(after.get(id(n), []))
    copies = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(copies, nodes, strict=True):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(copies)
    del g.value_info[:]  # stale for the removed tensors; optional anyway
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return out, fused
