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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from vitkit.export._quiet import silenced

# ops whose every input/output stays float32 in the fp16 model
FP16_KEEP_FLOAT = ("LayerNormalization", "Softmax")
# the only op types int8 quantization touches (and of those, only the ones with a weight)
INT8_OP_TYPES = ("MatMul", "Gemm")


def weight_nodes(model: onnx.ModelProto, op_types: tuple[str, ...] = INT8_OP_TYPES) -> list[str]:
    """Names of the nodes of ``op_types`` (MatMul/Gemm) that multiply by a weight (an
    initializer)."""
    inits = {i.name for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in op_types and any(i in inits for i in n.input)
    ]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of ``model``, to edit without touching the caller's."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _set_nodes(graph: onnx.GraphProto, nodes: Sequence[onnx.NodeProto]) -> None:
    """Make ``nodes`` the graph's node list, in that order; returns nothing."""
    # copy first: ``nodes`` are usually elements of graph.node, which clearing it would detach
    copies = [onnx.NodeProto() for _ in nodes]
    for dst, src in zip(copies, nodes, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(copies)


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every node has a unique name (quantization selects nodes by name)."""
    out = _copy(model)
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
    with silenced():  # ORT's tools log advice through the root logger
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
        _set_nodes(graph, keep)
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
    _set_nodes(graph, ordered)


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
    with silenced():
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
    with silenced():
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
    with silenced():
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


# a walk back from an attention output that passes this many nodes is not in one block: stop
# rather than scan the whole graph
_MAX_REGION = 64


@dataclass(frozen=True)
class _Lookups:
    """A graph's initializers and data flow, indexed once before ``fuse_attention`` edits it."""

    inits: dict[str, onnx.TensorProto]
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    outputs: set[str]  # the graph's output names
    position: dict[int, int]  # id(node) -> its index in graph.node

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _Lookups:
        """The lookups for ``graph`` as it is now."""
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        return cls(
            inits={i.name: i for i in graph.initializer},
            producer={o: n for n in graph.node for o in n.output},
            consumers=consumers,
            outputs={o.name for o in graph.output},
            position={id(n): i for i, n in enumerate(graph.node)},
        )

    def only(self, name: str, op: str) -> onnx.NodeProto | None:
        """The one node reading ``name``, if it is the only reader and of type ``op``."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def packs(self, n: onnx.NodeProto) -> int:
        """How many of q, k, v a ``MatMul`` projects to (its weight is (D, k*D)); 0: none."""
        if n.op_type != "MatMul" or len(n.input) != 2 or n.input[1] not in self.inits:
            return 0
        dims = list(self.inits[n.input[1]].dims)
        ok = len(dims) == 2 and dims[1] in (dims[0], 2 * dims[0], 3 * dims[0])
        return dims[1] // dims[0] if ok else 0

    def bias_of(self, proj: onnx.NodeProto, region: list[onnx.NodeProto]) -> str | None:
        """The 1-D initializer a region's ``Add`` puts on ``proj``'s output (None: no bias)."""
        inits = self.inits
        adds = (n for n in region if n.op_type == "Add" and proj.output[0] in n.input)
        biases = (i for n in adds for i in n.input if i in inits and len(inits[i].dims) == 1)
        return next(biases, None)

    def bias_values(self, name: str | None, width: int) -> np.ndarray:
        """The bias initializer ``name`` as an array (zeros of ``width``: None, no bias)."""
        if name is None:
            return np.zeros(width, np.float32)
        return onnx.numpy_helper.to_array(self.inits[name])


@dataclass(frozen=True)
class _Block:
    """One self-attention block ``fuse_attention`` can replace."""

    end: str  # the output of the Reshape back to (B, S, D): the fused node writes it
    region: list[onnx.NodeProto]  # the nodes the fused node(s) replace
    projs: list[onnx.NodeProto]  # the q/k/v projections feeding the region
    kinds: list[int]  # sorted ``packs`` of ``projs``: [3] (packed qkv) or [1, 2] (q and kv)


def _attention_end(lk: _Lookups, softmax: onnx.NodeProto) -> onnx.NodeProto | None:
    """The ``Reshape`` closing ``softmax``'s Softmax -> MatMul -> Transpose -> Reshape chain
    (None: no such chain)."""
    pv = lk.only(softmax.output[0], "MatMul")
    tr = lk.only(pv.output[0], "Transpose") if pv is not None else None
    rs = lk.only(tr.output[0], "Reshape") if tr is not None else None
    if rs is None or tr is None:
        return None
    perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
    if perm != [0, 2, 1, 3]:  # heads back next to tokens: (B, S, H, D)
        return None
    return rs


def _walk_back(
    lk: _Lookups, end: onnx.NodeProto
) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]] | None:
    """(region, projections): ``end`` and its ancestors up to the q/k/v projections (None: the
    walk passed ``_MAX_REGION`` nodes)."""
    region: list[onnx.NodeProto] = []
    projs: list[onnx.NodeProto] = []
    stack, seen = [end], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if lk.packs(n):
            projs.append(n)
            continue
        region.append(n)
        stack.extend(lk.producer[i] for i in n.input if i in lk.producer)
        if len(region) > _MAX_REGION:
            return None
    return region, projs


def _self_contained(lk: _Lookups, block: _Block) -> bool:
    """Whether only ``block.end`` leaves the region (nothing else reads its values or the
    projections') and the region reads only its own values, initializers and the projections."""
    proj_out = {p.output[0] for p in block.projs}
    names = {o for n in block.region for o in n.output}
    inside = {id(n) for n in block.region}
    closed = all(
        all(id(c) in inside for c in lk.consumers.get(o, [])) and o not in lk.outputs
        for n in block.region
        for o in n.output
        if o != block.end
    ) and all(id(c) in inside for o in proj_out for c in lk.consumers.get(o, []))
    sources_ok = all(
        i in names or i in lk.inits or i in proj_out or i == ""
        for n in block.region
        for i in n.input
    )
    return closed and sources_ok


def _match_block(lk: _Lookups, softmax: onnx.NodeProto, dropped: set[int]) -> _Block | None:
    """The attention block around ``softmax`` (None: not one of the two shapes, not
    self-contained, or overlapping a block already fused)."""
    rs = _attention_end(lk, softmax)
    walked = _walk_back(lk, rs) if rs is not None else None
    if rs is None or walked is None:
        return None
    region, projs = walked
    block = _Block(rs.output[0], region, projs, sorted(lk.packs(p) for p in projs))
    if block.kinds not in ([3], [1, 2]) or not _self_contained(lk, block):
        return None
    if any(id(n) in dropped for n in region):
        return None
    return block


def _packed_attention(
    graph: onnx.GraphProto, lk: _Lookups, block: _Block, *, name: str, num_heads: int
) -> onnx.NodeProto:
    """The ``com.microsoft.Attention`` node for a block with one packed qkv projection; adds a
    zero bias initializer to ``graph`` when the projection has none (the op needs one)."""
    (qkv,) = block.projs
    b_name = lk.bias_of(qkv, block.region)
    if b_name is None:
        b_name = f"{qkv.name or qkv.output[0]}_zero_bias"
        width = lk.inits[qkv.input[1]].dims[1]
        graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(width, np.float32), b_name))
    return onnx.helper.make_node(
        "Attention",
        [qkv.input[0], qkv.input[1], b_name],
        [block.end],
        name=name,
        domain="com.microsoft",
        num_heads=num_heads,
    )


def _split_attention(
    graph: onnx.GraphProto, lk: _Lookups, block: _Block, *, name: str, num_heads: int
) -> list[onnx.NodeProto] | None:
    """[``Split`` of kv, ``com.microsoft.MultiHeadAttention``] for a block with q and kv
    projections, their initializers added to ``graph`` (None: the widths do not fit)."""
    q, kv = sorted(block.projs, key=lk.packs)
    d = int(lk.inits[q.input[1]].dims[1])
    if int(lk.inits[kv.input[1]].dims[0]) != d:
        return None
    b_q, b_kv = lk.bias_of(q, block.region), lk.bias_of(kv, block.region)
    packed = np.concatenate([lk.bias_values(b_q, d), lk.bias_values(b_kv, 2 * d)])
    if packed.shape != (3 * d,):  # a broadcast bias of another shape: not this pattern
        return None
    mha_inputs = [q.output[0], f"{name}_k", f"{name}_v"]
    if b_q is not None or b_kv is not None:  # MultiHeadAttention adds [b_q | b_k | b_v]
        graph.initializer.append(onnx.numpy_helper.from_array(packed, f"{name}_bias"))
        mha_inputs.append(f"{name}_bias")
    graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([d, d], np.int64), f"{name}_split")
    )
    return [
        onnx.helper.make_node(
            "Split",
            [kv.output[0], f"{name}_split"],
            [f"{name}_k", f"{name}_v"],
            name=f"{name}_split_kv",
            axis=-1,
        ),
        onnx.helper.make_node(
            "MultiHeadAttention",
            mha_inputs,
            [block.end],
            name=name,
            domain="com.microsoft",
            num_heads=num_heads,
        ),
    ]


def _rewired(
    graph: onnx.GraphProto,
    replaced: dict[int, onnx.NodeProto],
    after: dict[int, list[onnx.NodeProto]],
    dropped: set[int],
) -> list[onnx.NodeProto]:
    """``graph.node`` in order with each ``replaced`` node swapped, each ``after`` list inserted
    behind its node and the ``dropped`` nodes left out."""
    nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if id(n) in replaced:
            nodes.append(replaced[id(n)])
        elif id(n) not in dropped:
            nodes.append(n)
        nodes.extend(after.get(id(n), []))
    return nodes


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers no node reads (the replaced blocks' weights); returns nothing."""
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


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
    out = _copy(model)
    g = out.graph
    lk = _Lookups.of(g)
    replaced: dict[int, onnx.NodeProto] = {}  # id(qkv projection) -> Attention node
    after: dict[int, list[onnx.NodeProto]] = {}  # id(a kept node) -> nodes to insert after it
    dropped: set[int] = set()
    fused = 0
    for softmax in [n for n in g.node if n.op_type == "Softmax"]:
        block = _match_block(lk, softmax, dropped)
        if block is None:
            continue
        if block.kinds == [3]:
            name = f"Attention_{fused}"
            attention = _packed_attention(g, lk, block, name=name, num_heads=num_heads)
            replaced[id(block.projs[0])] = attention
        else:
            name = f"MultiHeadAttention_{fused}"
            nodes = _split_attention(g, lk, block, name=name, num_heads=num_heads)
            if nodes is None:
                continue
            # both projections stay; the Split must come after the later of them
            last = max(block.projs, key=lambda p: lk.position[id(p)])
            after[id(last)] = nodes
        dropped.update(id(n) for n in block.region)
        fused += 1
    if not fused:
        return out, 0
    _set_nodes(g, _rewired(g, replaced, after, dropped))
    del g.value_info[:]  # stale for the removed tensors; optional anyway
    _drop_unused_initializers(g)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return out, fused
