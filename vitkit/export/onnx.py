"""export_onnx(): a verified, self-describing ONNX model of a run, in fp32 (+ fp16, int8).

    run ─► eager model ─► torch.onnx.export (dynamo; TorchScript as the fallback)
                               │ metadata_props: spec, classes, image size, mean/std, layout
                               ▼
            fp32 ─► [ORT transformer fusions] ─► fp16 ─► int8 (dynamic | static QDQ)
                               │
     every model: onnx.checker (full) + ONNX Runtime vs eager on real test images
                               ▼
              model.onnx, model.fp16.onnx, model.int8.onnx, export.json

A model is written under its name only once it has passed verification; one that fails is kept
as ``<name>.failed.onnx`` for inspection and the report says why. Nothing is written until every
model is built; then all the files go to temp files first and are renamed together, export.json
last, all or none: a rename that fails puts back the files renamed before it
(``artifact.Staged``). The library never prints: ``export_onnx`` returns an ``ExportReport``
and the CLI decides what to show.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import hashlib
import io
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from torch import nn

from vitkit.artifact import (
    LoadedModel,
    Staged,
    cpu_fp32,
    json_text,
    stale_notes,
    unwrap,
)
from vitkit.data.types import ProgressFn, no_progress
from vitkit.errors import (
    MissingEntry,
    UserError,
    VitkitError,
    brief,
    check_bool,
    check_callable,
    check_int,
    check_name,
    check_path,
    first_line,
    in_cli,
    setting,
    suggest,
)
from vitkit.export._quiet import silenced

if TYPE_CHECKING:
    from vitkit.data import Dataset

INPUT_NAME = "pixel_values"  # (batch, channels, image_size, image_size) float32, normalised
OUTPUT_NAME = "logits"  # (batch, num_classes), or (batch, num_outputs, num_classes)
# Gelu is one ONNX op from opset 20 (ONNX Runtime fuses it with its bias); 18 spells it in 5
DEFAULT_OPSET = 20
MIN_OPSET = 17
TRACE_BATCH = 2  # export with a batch >= 2 so the exporter cannot specialise the batch to 1
VERIFY_BATCHES = (1, 2, 7)  # batch sizes run through ORT against eager (dynamic batch)
RUN_BATCH = 64  # batch size of the full verification pass and of the speed figures
SPEED_MIN_RUNS, SPEED_MAX_RUNS, SPEED_SECONDS = 3, 25, 1.0  # timed batches: median of these
# --optimize's head-to-head: interleaved rounds, seconds per turn, seconds per batch size (soft)
RACE_ROUNDS, RACE_SECONDS, RACE_BUDGET = 5, 0.2, 10.0
INT8_MODES = ("auto", "dynamic", "static")
INPUT_LAYOUT = (
    "NCHW float32: x = (pixels / 255 - mean) / std per channel; pixels 0-255, "
    "RGB when channels = 3, grayscale when 1, resized to image_size x image_size (bilinear)"
)


@dataclass
class Tolerances:
    """What a model must meet to pass verification (against eager PyTorch, fp32, CPU)."""

    fp32_atol: float = 1e-4  # max |ORT logit - eager logit|: float reassociation is ~1e-6
    fp32_min_agreement: float = 1.0  # top-1 agreement with eager: an fp32 export changes none
    fp16_min_agreement: float = 0.995  # half precision may flip near-ties, not more
    int8_max_drop: float = 0.005  # top-1 accuracy may fall at most 0.5 points below eager


# the tolerances the CLI sets (`vitkit export`), for messages that name them; --int8-max-drop
# takes points, int8_max_drop a fraction (only non-finite values are refused: the same in both)
TOLERANCE_FLAGS = {"fp32_atol": "--atol", "int8_max_drop": "--int8-max-drop"}

# while `vitkit bench` makes the exports it times, the `vitkit export` command that would make
# them: bench's command line has neither --verify-images nor --int8-max-drop, export's has
_FOR_BENCH: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "vitkit_export_for_bench", default=None
)


@contextlib.contextmanager
def for_bench(*, optimize: bool) -> Iterator[None]:
    """Within it, the exports are bench's (``ensure_exports``): a hint names the flags of
    ``vitkit export``, whose models bench reuses (``--optimize`` ones for ``bench
    --optimize``), not flags ``vitkit bench`` lacks."""
    token = _FOR_BENCH.set("vitkit export RUN --int8 dynamic" + (" --optimize" if optimize else ""))
    try:
        yield
    finally:
        _FOR_BENCH.reset(token)


# -- ONNX Runtime helpers (shared with eval --onnx and bench) -------------------------------------
def _onnx_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``, which must name a file: a missing one is a one-line ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such ONNX file: {path}")
    return path


def ort_session(
    model: str | os.PathLike[str] | bytes | onnx.ModelProto,
    *,
    threads: int | None = None,
    providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` (CPU unless ``providers`` say otherwise; a provider
    is a name or a ``(name, options)`` pair).

    ``threads``: intra-op threads (default: ONNX Runtime's, one per physical core). A missing
    file, an unavailable provider or a model ORT cannot load is a one-line ``UserError``.
    """
    import onnxruntime as ort

    providers = list(providers or ["CPUExecutionProvider"])
    names = [p if isinstance(p, str) else p[0] for p in providers]
    missing = [p for p in names if p not in ort.get_available_providers()]
    if missing:
        have = ", ".join(ort.get_available_providers())
        raise UserError(f"ONNX Runtime here has no {', '.join(missing)} (it has: {have})")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the library never prints
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if isinstance(model, onnx.ModelProto):
        source: str | bytes = model.SerializeToString()
        name = "the model"
    elif isinstance(model, bytes):
        source, name = model, "the model"
    else:
        source = name = str(_onnx_file(model))
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as e:  # ORT raises its own pybind exception types
        raise UserError(f"ONNX Runtime cannot load {name}: {first_line(e)}") from None


def input_batch(session: Any) -> int | None:
    """The fixed batch size of a session's input, or ``None`` when the batch axis is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def chunks(x: np.ndarray, n: int, *, pad: bool = False) -> Iterator[tuple[np.ndarray, int]]:
    """``(chunk, valid)`` pairs of ``n`` rows; with ``pad`` the last chunk is filled up to ``n``
    by repeating its last row (for models with a fixed batch), ``valid`` says how many are real."""
    for i in range(0, len(x), n):
        c = x[i : i + n]
        valid = len(c)
        if pad and valid < n:
            c = np.concatenate([c, np.repeat(c[-1:], n - valid, axis=0)])
        yield np.ascontiguousarray(c), valid


def run_onnx(session: Any, x: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
    """Logits for ``x`` (normalised float32, N C H W) from an ORT session.

    A model with a dynamic batch takes ``x`` in one call, or in chunks of ``batch_size``; a model
    exported with a fixed batch gets chunks of exactly that size (the last one padded).
    """
    spec = session.get_inputs()[0]
    name = spec.name
    if not np.issubdtype(np.asarray(x).dtype, np.floating):  # 0..255 pixels: wrong logits
        raise UserError(
            f"the ONNX model takes normalised float images; got {np.asarray(x).dtype} "
            "(vitkit.predict normalises uint8 images as the model was trained)"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    want = list(spec.shape[1:])
    if len(want) != x.ndim - 1 or any(
        isinstance(w, int) and w != have for w, have in zip(want, x.shape[1:], strict=False)
    ):
        shown = "x".join(str(w) if isinstance(w, int) else "?" for w in want)
        raise UserError(
            f"the ONNX model takes {shown} inputs, these images are "
            f"{'x'.join(map(str, x.shape[1:]))} (was it exported from another model?)"
        )
    fixed = input_batch(session)
    if fixed is None and (batch_size is None or batch_size >= len(x)):
        return np.asarray(session.run(None, {name: x})[0])
    n = fixed or batch_size or len(x)
    outs = [session.run(None, {name: c})[0][:valid] for c, valid in chunks(x, n, pad=bool(fixed))]
    return np.concatenate(outs)


# -- metadata --------------------------------------------------------------------------------------
_JSON_KEYS = (
    "model_spec",
    "classes",
    "image_size",
    "channels",
    "num_outputs",
    "mean",
    "std",
    "dataset_options",
)


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of a module's weights (every state_dict tensor's name, dtype, shape and
    bytes): tells whether an export was made from these weights (``vitkit bench`` reuses one only
    then), whatever the files' times say."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def exports_spec_of(meta: dict[str, Any], lm: LoadedModel) -> bool:
    """Whether decoded export metadata (``read_onnx_metadata``) records ``lm``'s model spec."""
    return meta.get("model_spec") == json.loads(json.dumps(lm.spec.to_dict()))


def onnx_metadata(lm: LoadedModel, *, precision: str, batch: str | int) -> dict[str, str]:
    """The ``metadata_props`` of an exported model: everything a consumer needs besides it."""
    from vitkit import __version__

    k = lm.num_outputs
    return {
        "vitkit_version": __version__,
        "model_spec": json.dumps(lm.spec.to_dict()),
        "weights_sha256": weights_fingerprint(lm.model),
        "classes": json.dumps(lm.classes),
        "image_size": str(lm.image_size),
        "channels": str(lm.channels),
        "num_outputs": str(k),
        "mean": json.dumps(lm.mean),
        "std": json.dumps(lm.std),
        "input_name": INPUT_NAME,
        "input_layout": INPUT_LAYOUT,
        "output_name": OUTPUT_NAME,
        "output_layout": (
            "(batch, num_classes) logits" if k == 1 else f"(batch, {k}, num_classes) logits"
        ),
        "batch": str(batch),
        "precision": precision,
        "dataset": lm.dataset or "",
        "dataset_options": json.dumps(lm.meta.get("dataset_options") or {}),
        "trained": "true" if lm.meta else "false",
    }


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``meta`` and describe it in ``doc_string``."""
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    spec = json.loads(meta["model_spec"])
    model.doc_string = (
        f"vitkit {meta['vitkit_version']} export of {spec['model']} ({meta['precision']}); "
        f"input '{INPUT_NAME}': {INPUT_LAYOUT}; output '{OUTPUT_NAME}': {meta['output_layout']}"
    )


def load_onnx(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """An ONNX file, parsed; a missing or unreadable file is a one-line ``UserError``."""
    path = _onnx_file(path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise UserError(f"cannot read {path} as ONNX: {first_line(e)}") from None
    if model.ByteSize() == 0:  # protobuf parses an empty file (or zeros) as an empty model
        raise UserError(
            f"cannot read {path} as ONNX: the file holds no model (empty, or cut short)"
        )
    return model


def is_fused(model: onnx.ModelProto) -> bool:
    """Whether an ONNX model holds ONNX Runtime contrib ops (``com.microsoft``): a fused graph
    from ``--optimize`` (Attention, QAttention, SkipLayerNormalization, ...), which only ONNX
    Runtime can run."""
    return any(n.domain == "com.microsoft" for n in model.graph.node)


def read_onnx_metadata(source: str | os.PathLike[str] | onnx.ModelProto) -> dict[str, Any]:
    """The vitkit metadata of an exported ``.onnx`` file (or of a model already loaded with
    ``load_onnx``), decoded.

    Keys: ``model_spec`` (``{"model", "config"}``, for ``ModelSpec.from_dict``), ``classes``,
    ``image_size``, ``channels``, ``num_outputs``, ``mean``, ``std``, ``input_name``,
    ``input_layout``, ``output_name``, ``output_layout``, ``batch`` ("dynamic" or an int),
    ``precision``, ``dataset``, ``dataset_options`` (what the run recorded, e.g. a ``folder:``
    dataset's path), ``trained``, ``vitkit_version``, ``weights_sha256`` (the first 32
    hex digits of ``weights_fingerprint`` of the source model; absent from exports made before
    it was recorded, which ``vitkit bench`` therefore makes anew).
    """
    if isinstance(source, onnx.ModelProto):
        model, path = source, "the model"
    else:
        model, path = load_onnx(source), str(source)
    raw = {p.key: p.value for p in model.metadata_props}
    if "vitkit_version" not in raw:
        raise UserError(
            f"{path} carries no vitkit metadata (not made by `vitkit export`); "
            "its classes and preprocessing are unknown"
        )
    out: dict[str, Any] = dict(raw)
    try:
        for key in _JSON_KEYS:
            if key in raw:
                out[key] = json.loads(raw[key])
        key = "batch"
        if raw.get("batch", "dynamic") != "dynamic":
            out["batch"] = int(raw["batch"])
    except ValueError as e:  # JSONDecodeError is one
        raise UserError(f"{path} has damaged vitkit metadata ({key!r}: {first_line(e)})") from None
    out["trained"] = raw.get("trained") == "true"
    return out


# -- export ----------------------------------------------------------------------------------------
def export_graph(
    model: nn.Module,
    *,
    image_size: int,
    channels: int,
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    legacy: bool = False,
) -> tuple[onnx.ModelProto, str, list[str]]:
    """Trace ``model`` (eval mode, CPU, float32) to ONNX: ``(model, exporter, notes)``.

    The dynamo exporter (``torch.export``) by default, with the batch axis declared dynamic and
    traced at batch 2; if it fails, the TorchScript exporter, with a note saying why.
    ``legacy=True`` goes straight to the TorchScript exporter.
    """
    n = TRACE_BATCH if batch == "dynamic" else int(batch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, image_size, image_size, generator=g)
    notes: list[str] = []
    if not legacy:
        try:
            return (
                _export_dynamo(model, x, opset=opset, dynamic=batch == "dynamic"),
                "dynamo",
                notes,
            )
        except Exception as e:  # anything torch.export cannot handle: fall back, say so
            if _interrupted(e):  # Ctrl-C, which torch.export wraps in an export error
                raise KeyboardInterrupt from None
            notes.append(
                f"the dynamo exporter failed ({first_line(e)}); used the TorchScript exporter"
            )
    return (
        _export_torchscript(model, x, opset=opset, dynamic=batch == "dynamic"),
        "torchscript",
        notes,
    )


def _interrupted(e: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt) or "KeyboardInterrupt" in str(cur):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _export_dynamo(
    model: nn.Module, x: torch.Tensor, *, opset: int, dynamic: bool
) -> onnx.ModelProto:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with silenced():
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            opset_version=opset,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    assert program is not None
    _fold_weights(program.model)
    return program.model_proto


def _fold_weights(model: Any) -> None:
    """Fold, in place, the constant subgraphs over weights that the exporters leave.

    The class-token block slices its packed qkv weight into q and kv. The dynamo exporter folds
    only constants of at most 8,192 elements and the TorchScript one leaves the slices too, so
    they would run on every call, and int8 only quantizes weights that are initializers.
    ``model``: an ``onnx_ir`` model (the dynamo exporter's, folded without a copy).
    """
    import onnxscript.optimizer

    onnxscript.optimizer.fold_constants(model, input_size_limit=2**62, output_size_limit=2**62)
    onnxscript.optimizer.remove_unused_nodes(model)


def _export_torchscript(
    model: nn.Module, x: torch.Tensor, *, opset: int, dynamic: bool
) -> onnx.ModelProto:
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    with silenced():
        torch.onnx.export(
            model,
            (x,),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    from onnxscript import ir

    graph = ir.serde.deserialize_model(onnx.load_from_string(buf.getvalue()))
    _fold_weights(graph)
    return ir.serde.serialize_model(graph)


# -- verification data -----------------------------------------------------------------------------
@dataclass
class VerifyData:
    """Normalised images to verify on (and labels, when real), plus calibration images."""

    images: np.ndarray  # float32 (N, C, H, W), normalised as in training
    labels: np.ndarray | None  # int64 (N,) or (N, K); None for synthetic images
    calibration: np.ndarray  # float32 (M, C, H, W) from the training split
    source: str  # e.g. "mnist-mini test split (1,000 images)"
    synthetic: bool
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None  # why the dataset could not be loaded (then: synthetic)
    unfit: str | None = None  # why the loaded dataset does not fit the model (then: synthetic)
    foreign: str | None = None  # it has classes the model was not trained on (then: no labels)
    # why there are no calibration images though real ones verify (the train split could not
    # be had, the split verified on could): static int8 is then left out, as on synthetic ones
    uncalibrated: str | None = None
    split_images: int | None = None  # images the split verified on has (more than verified?)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "synthetic": self.synthetic,
            "images": len(self.images),
            "labelled": self.labels is not None,
            "calibration_images": len(self.calibration),
        }

    @property
    def why_synthetic(self) -> str:
        """Why there are no real images (for a synthetic set)."""
        return self.unavailable or self.unfit or "the model records no dataset"

    @property
    def why_uncalibrated(self) -> str | None:
        """Why no real images can calibrate static int8 (synthetic ones, or no train split to
        be had); None where they can."""
        return self.why_synthetic if self.synthetic else self.uncalibrated


SYNTHETIC_NOTE = "verified on synthetic (uniform random) images: no accuracy figures"


def _normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    from vitkit.eval.preprocess import normalize  # here: `import vitkit.export` stays light

    return normalize(x, mean, std).numpy()


def _subset(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """``n`` seeded-random indices of ``n_total`` (all of them, shuffled, when ``n`` is None or
    larger). Nested: the first ``k`` of a larger sample are the sample of ``k``."""
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return perm if n is None else perm[:n]


def verification_data(
    lm: LoadedModel,
    *,
    data_root: str | os.PathLike[str] | None = None,
    verify_images: int | None = None,
    calib_images: int = 512,
    download: bool = True,
    seed: int = 0,
    progress: ProgressFn = no_progress,
    trained: bool | None = None,
) -> VerifyData:
    """Real test images of the run's dataset (model.json "dataset" + "dataset_options"; data
    root: ``data_root``, else train.json's, else the default), or synthetic ones when the
    dataset cannot be had; ``notes`` says which and why. For a trained model (``trained``,
    default: it has model.json metadata) the labels become its class indices, as eval maps
    them; a dataset with classes it does not know keeps its images but loses its labels."""
    trained = bool(lm.meta) if trained is None else trained
    if data_root is not None and Path(data_root).exists() and not Path(data_root).is_dir():
        raise UserError(f"{setting('data_root', data_root)} is a file, not a folder")
    notes: list[str] = []
    ds, unavailable, unfit, uncalibrated = None, None, None, None
    if lm.dataset:
        scored_only = calib_images == 0  # no calibration: no train split to read
        ds, unavailable, unfit, uncalibrated = _run_dataset(
            lm, data_root, download, progress, trained, scored_only
        )
        notes.extend(n for n in (unavailable, unfit) if n)
    else:
        notes.append("the model records no dataset (a model with no run)")
    if ds is not None:
        calib = 0 if uncalibrated else calib_images  # never the scored split's own images
        data = _real_data(lm, ds, verify_images, calib, seed, trained, notes)
        data.uncalibrated = uncalibrated
        return data
    n = verify_images or 256
    g = torch.Generator().manual_seed(seed)
    shape = (lm.channels, lm.image_size, lm.image_size)
    images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return VerifyData(
        images=_normalize(images, lm.mean, lm.std),
        labels=None,
        # none: static int8 is refused on random pixels (their ranges are not a model's), and
        # export.json said "calibration_images: 512" of images nothing was calibrated on
        calibration=np.zeros((0, *shape), np.float32),
        source=f"synthetic uniform random images ({n:,})",
        synthetic=True,
        notes=[*notes, SYNTHETIC_NOTE],
        unavailable=unavailable,
        unfit=unfit,
    )


def _run_dataset(
    lm: LoadedModel,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    progress: ProgressFn,
    trained: bool,
    scored_only: bool = False,
) -> tuple[Dataset | None, str | None, str | None, str | None]:
    """``(dataset, unavailable, unfit, uncalibrated)``: the run's dataset, or None and why it
    cannot be had (``unavailable``) or does not fit the model (``unfit``). ``scored_only``: just
    the split ``_real_data`` scores (test, else val), for a catalog dataset that can load it
    alone (``load_dataset(splits=)``): its train files need not be there. Without it, a
    dataset whole (its train split calibrates static int8); where that cannot be had but the
    scored split alone can, that split, and why there is no train split (``uncalibrated``)."""
    from vitkit.data import get_dataset_spec, load_dataset

    assert lm.dataset  # the caller's check: a model with no dataset has none to open
    ds, unavailable, uncalibrated, size, channels = None, None, None, None, None
    try:
        name, options = lm.dataset_source() or (lm.dataset, {})
        spec = get_dataset_spec(name)
        size, channels = spec.image_size, spec.channels  # when the catalog knows them,
        scored = next(([s] for s in ("test", "val") if s in spec.splits), None)
        if not size or not channels or (size, channels) == (lm.image_size, lm.channels):
            root = data_root if data_root is not None else lm.run_settings()["data_root"]
            load = functools.partial(  # a mismatch is said without downloading or building it
                load_dataset, name, data_root=root, download=download, progress=progress
            )
            try:
                ds = load(splits=scored if scored_only else None, **options)
            except (VitkitError, OSError) as e:
                if scored_only or not spec.partial or scored is None:
                    raise
                # the train split (to calibrate on) is not to be had: the scored one alone
                try:
                    ds = load(splits=scored, **options)
                except (VitkitError, OSError):
                    raise e from None  # neither: the whole dataset's error, as before
                uncalibrated = f"the train split of dataset '{lm.dataset}' is unavailable"
                uncalibrated += f" ({first_line(e)})"
            size, channels = ds.image_size, ds.channels
    except (VitkitError, OSError) as e:
        unavailable = f"dataset '{lm.dataset}' is unavailable ({first_line(e)})"
    unfit = _unfit(lm, ds, size, channels, trained)
    return (None if unfit else ds), unavailable, unfit, uncalibrated


def _unfit(
    lm: LoadedModel, ds: Dataset | None, size: int | None, channels: int | None, trained: bool
) -> str | None:
    """Why the run's dataset (images of ``size`` x ``channels``; ``ds`` once loaded) does not
    fit the model; None when it does, as far as is known."""
    if size and channels and (size, channels) != (lm.image_size, lm.channels):
        return (
            f"dataset '{lm.dataset}' has {size} px x {channels} channel images, "
            f"the model takes {lm.image_size} px x {lm.channels}"
        )
    if ds is not None and ds.num_outputs != lm.num_outputs:
        return (
            f"dataset '{lm.dataset}' has {ds.num_outputs} label(s) per image, the model "
            f"predicts {lm.num_outputs}"
        )
    k = lm.spec.config.num_classes
    if ds is not None and not trained and ds.num_classes > k:  # labels past its outputs
        return f"dataset '{lm.dataset}' has {ds.num_classes} classes, the model predicts {k}"
    return None


def _real_data(
    lm: LoadedModel,
    ds: Dataset,
    verify_images: int | None,
    calib_images: int,
    seed: int,
    trained: bool,
    notes: list[str],
) -> VerifyData:
    """Images of ``ds``'s test split (else val, else train), labelled with the model's class
    indices when it was ``trained``, and calibration images of its train split."""
    notes = list(notes)
    remap, foreign = None, None
    if trained:
        from vitkit.eval.evaluate import label_map

        try:  # a folder may hold some of the classes, in any order
            remap = label_map(lm, ds)
        except UserError as e:  # "dataset 'NAME' has classes the model was not trained on: ..."
            foreign = str(e)
            notes.append(f"{foreign}: no accuracy figures")
    split_name = next((s for s in ("test", "val") if s in ds.splits), "train")
    if split_name == "train":
        notes.append(f"dataset '{ds.name}' has no test or val split: verified on train images")
    split = ds.splits[split_name]
    idx = _subset(len(split), verify_images, seed)
    train = ds.splits.get("train", split)  # a folder of images to score may have no train/
    cidx = _subset(len(train), calib_images, seed + 1)
    return VerifyData(
        images=_normalize(split.images[idx], lm.mean, lm.std),
        labels=(
            None
            if foreign
            else (split.labels[idx] if remap is None else remap[split.labels[idx]]).numpy()
        ),
        calibration=_normalize(train.images[cidx], lm.mean, lm.std),
        source=f"{ds.name} {split_name} split ({len(idx):,} of {len(split):,} images)",
        synthetic=False,
        notes=notes,
        foreign=foreign,
        split_images=len(split),
    )


# -- verification ----------------------------------------------------------------------------------
@dataclass
class EagerReference:
    """Eager PyTorch (fp32, CPU) logits on the verification images: what every model must match."""

    logits: np.ndarray  # (N, C) or (N, K, C)
    accuracy: float | None  # top-1 on the labels (per position for K > 1)
    images_per_s: float
    unsteady: bool = False  # its timed calls were disturbed (p90 over 2x p50)


def _timed(fn: Any, x: np.ndarray) -> tuple[float, bool]:
    """Images per second of ``fn`` on one batch of RUN_BATCH images: a warm-up call, then the
    median of SPEED_MIN_RUNS to SPEED_MAX_RUNS timed calls (as many as fit in SPEED_SECONDS);
    and whether those calls were unsteady (something else was running)."""
    from vitkit.bench.timing import measure, unsteady  # here: `import vitkit.export` stays light

    x = x[:RUN_BATCH]
    t = measure(
        lambda: fn(x),
        warmup=1,
        min_time=SPEED_SECONDS,
        min_runs=SPEED_MIN_RUNS,
        max_runs=SPEED_MAX_RUNS,
    )
    return len(x) / max(t.p50, 1e-9), unsteady(t.samples)


def _speed_notes(
    reference: EagerReference,
    precisions: list[PrecisionReport],
    threads: int,
    other_cores: float | None,
) -> list[str]:
    """Say so when the img/s column was measured on a busy machine, or with more threads than
    logical CPUs (as bench does): under load the int8-over-fp32 ratio of one export has read
    0.57x, and 2.38x a minute later."""
    from vitkit.bench.timing import UNSTEADY_P90, busy_note, load_average, oversubscribed_note

    shaky = ["eager"] if reference.unsteady else []
    shaky += [p.precision for p in precisions if p.speed_unsteady]
    during = "while the export was verified and timed"
    busy = busy_note(load_average(), threads, other_cores, during)
    notes = [n for n in (oversubscribed_note(threads), busy) if n]
    if shaky:
        notes.append(
            f"unsteady img/s ({', '.join(shaky)}: p90 over {UNSTEADY_P90:g}x p50): something "
            "else was running"
        )
    if notes:
        notes.append(
            "the img/s and vs fp32 columns are a quick check; `vitkit bench` times the runtimes "
            "in interleaved rounds"
        )
    return notes


def race(
    models: dict[str, onnx.ModelProto],
    images: np.ndarray | None,
    *,
    threads: int | None = None,
    batches: Sequence[int] = (1, RUN_BATCH),
    rounds: int = RACE_ROUNDS,
    budget: float = RACE_BUDGET,
) -> dict[str, dict[int, float]]:
    """Median seconds per call of each model in ONNX Runtime (CPU) at each batch size: the
    median over ``race_rounds``'s rounds (see there)."""
    turns = race_rounds(
        models, images, threads=threads, batches=batches, rounds=rounds, budget=budget
    )
    return {n: {b: float(np.median(t)) for b, t in per.items()} for n, per in turns.items()}


def race_rounds(
    models: dict[str, onnx.ModelProto],
    images: np.ndarray | None,
    *,
    threads: int | None = None,
    batches: Sequence[int] = (1, RUN_BATCH),
    rounds: int = RACE_ROUNDS,
    budget: float = RACE_BUDGET,
) -> dict[str, dict[int, list[float]]]:
    """Each model's median seconds per call in ONNX Runtime (CPU) in each round, at each batch
    size: ``{name: {batch: [round 1, round 2, ...]}}``. Every model takes one turn per round
    (a warm-up call first, then calls for ``RACE_SECONDS``), so that a burst of load on the
    machine slows every model alike rather than the one it happened to hit; the order rotates
    from round to round, so no model always follows the same one. Compare two models round by
    round (``paired_speedup``): a change of the machine's speed between rounds then cancels.
    Each model's turn starts once the last one's thread pool has stopped spinning (``settle``).

    ``images``: real inputs (their first ``batch`` rows), shared by every model; without them,
    or with fewer than ``batch``, random ones of each model's own input shape. A model with a
    fixed batch size runs at that size only (pass it in ``batches``; a size no model runs at is
    left out). A slow model (large images) gets fewer rounds, at least 2: about ``budget``
    seconds per batch size.
    """
    from vitkit.bench.timing import measure, settle  # here: `import vitkit.export` stays light

    sessions = {name: ort_session(m, threads=threads) for name, m in models.items()}
    fixed = {name: input_batch(s) for name, s in sessions.items()}
    times: dict[str, dict[int, list[float]]] = {name: {} for name in models}

    def feed(session: Any, b: int) -> dict[str, np.ndarray]:
        spec = session.get_inputs()[0]
        if images is not None and len(images) >= b:
            x = np.ascontiguousarray(images[:b], dtype=np.float32)
        else:
            shape = [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
            x = np.random.default_rng(0).standard_normal((b, *shape), dtype=np.float32)
        return {spec.name: x}

    for b in batches:
        live = [(n, s) for n, s in sessions.items() if fixed[n] in (None, b)]
        if not live:  # every model fixed at another size: nothing runs at this one
            continue
        feeds = {n: feed(s, b) for n, s in live}
        for n, s in live:
            s.run(None, feeds[n])  # warm-up
        r, wanted, begun, waited = 0, rounds, time.perf_counter(), 0.0
        while r < wanted:
            for n, s in live[r % len(live) :] + live[: r % len(live)]:
                waited += settle()
                call = functools.partial(s.run, None, feeds[n])
                turn = measure(call, warmup=0, min_time=RACE_SECONDS, min_runs=1)
                times[n].setdefault(b, []).append(float(np.median(turn.samples)))
            r += 1
            if r == 1:  # a slow model (large images) gets fewer rounds: about `budget` s
                per_round = time.perf_counter() - begun - waited  # timing, not waiting
                wanted = max(min(2, rounds), min(rounds, int(budget / max(per_round, 1e-9))))
    return times


def paired_speedup(base: Sequence[float], other: Sequence[float]) -> float:
    """How many times faster ``other`` is than ``base``, from ``race_rounds``' per-round
    seconds of each: the median over rounds of that round's ratio. A round compares the two
    models at (nearly) the same moment, so a slower or faster spell of the machine that lasts
    a round or more cancels, where the ratio of two medians over all rounds can keep it (the
    2-core VM here runs in spells ~40% apart in speed: a change in the middle of a race gives
    one model more slow turns than the other)."""
    return float(np.median([b / o for b, o in zip(base, other, strict=True)]))


def top1(logits: np.ndarray) -> np.ndarray:
    """Top-1 class per image (per position for (N, K, C) logits), flattened."""
    return np.asarray(logits.reshape(-1, logits.shape[-1]).argmax(axis=1))


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float((top1(logits) == labels.reshape(-1)).mean())


@torch.inference_mode()
def eager_reference(model: nn.Module, data: VerifyData) -> EagerReference:
    """Run the eager model on the verification images (batches of RUN_BATCH) and time it."""
    model = model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        outs = [model(torch.from_numpy(c)).numpy() for c, _ in chunks(x, RUN_BATCH)]
        return np.concatenate(outs)

    logits = run(data.images)
    images_per_s, shaky = _timed(run, data.images)
    return EagerReference(
        logits=logits,
        accuracy=_accuracy(logits, data.labels),
        images_per_s=images_per_s,
        unsteady=shaky,
    )


@dataclass
class PrecisionReport:
    """One exported model and how it verified."""

    precision: str  # fp32 | fp32-fused | fp16 | int8-dynamic | int8-static
    path: str | None  # where it was written (None: not kept)
    size_bytes: int
    passed: bool
    verified: bool  # False with --no-verify: only onnx.checker ran
    checker: str  # "ok" or the checker's message
    gate: str  # the rule this precision had to meet
    batches: dict[str, float] = field(default_factory=dict)  # batch size -> max |diff| there
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    top1_agreement: float | None = None  # share of images whose top-1 equals eager's
    accuracy: float | None = None  # top-1 on the labels
    accuracy_drop_points: float | None = None  # eager accuracy - this one, in points
    images_per_s: float | None = None  # ORT, batch RUN_BATCH, median of timed batches
    speed_unsteady: bool = False  # those timed batches were disturbed (p90 over 2x p50)
    build_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("top1_agreement", "accuracy"):
            if d[key] is not None:
                d[key] = round(d[key], 6)
        for key in ("images_per_s", "build_seconds", "accuracy_drop_points"):
            if d[key] is not None:
                d[key] = round(d[key], 3)
        return d


def _gate(precision: str, tol: Tolerances, labelled: bool) -> str:
    if precision.startswith("fp32"):
        return (
            f"max |logit diff| <= {tol.fp32_atol:g} and top-1 agreement "
            f">= {100 * tol.fp32_min_agreement:g}%"
        )
    if precision == "fp16":
        return f"top-1 agreement >= {100 * tol.fp16_min_agreement:g}%"
    if labelled:
        return f"top-1 accuracy at most {100 * tol.int8_max_drop:g} points below eager"
    return "none on synthetic images (accuracy needs labels): figures reported only"


def check_model(model: onnx.ModelProto) -> str:
    """``onnx.checker.check_model(full_check=True)``: "ok" or the checker's first line."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError
        return first_line(e)
    return "ok"


def verify_onnx(
    model: onnx.ModelProto | str | os.PathLike[str],
    reference: EagerReference,
    data: VerifyData,
    *,
    precision: str = "fp32",
    tolerances: Tolerances | None = None,
    threads: int | None = None,
) -> PrecisionReport:
    """Check ``model`` and run it in ONNX Runtime (CPU) against ``reference``.

    Runs the first 1, 2 and 7 images as batches of those sizes (a dynamic batch axis; a fixed
    one runs its own size), then every image in batches of RUN_BATCH; compares logits and top-1
    with eager and applies the precision's gate (``Tolerances``). Never raises for a model that
    fails: the report's ``failures`` say why.
    """
    tol = tolerances or Tolerances()
    proto = model if isinstance(model, onnx.ModelProto) else load_onnx(model)
    report = PrecisionReport(
        precision=precision,
        path=None if isinstance(model, onnx.ModelProto) else str(model),
        size_bytes=proto.ByteSize(),
        passed=False,
        verified=True,
        checker=check_model(proto),
        gate=_gate(precision, tol, data.labels is not None),
    )
    if report.checker != "ok":
        report.failures.append(f"{precision}: onnx.checker: {report.checker}")
    try:
        session = ort_session(proto, threads=threads)
    except UserError as e:
        report.failures.append(f"{precision}: {e}")
        return report
    ref = reference.logits
    fixed = input_batch(session)
    sizes = [fixed] if fixed else [b for b in VERIFY_BATCHES if b <= len(data.images)]
    diffs = _batch_diffs(session, data.images, ref, sizes, report)
    if diffs is None:  # an output of the wrong shape: nothing to compare
        return report
    out = run_onnx(session, data.images, batch_size=RUN_BATCH)
    if not np.isfinite(out).all():
        report.failures.append(f"{precision}: non-finite logits")
    every = np.concatenate([*diffs, np.abs(out.astype(np.float64) - ref).reshape(-1)])
    report.max_abs_diff = float(every.max())
    report.mean_abs_diff = float(every.mean())
    agree = top1(out) == top1(ref)
    report.top1_agreement = float(agree.mean())
    report.accuracy = _accuracy(out, data.labels)
    if report.accuracy is not None and reference.accuracy is not None:
        report.accuracy_drop_points = 100 * (reference.accuracy - report.accuracy)
    report.images_per_s, report.speed_unsteady = _timed(
        lambda x: run_onnx(session, x, batch_size=RUN_BATCH), data.images
    )
    where = (
        f"batch sizes {', '.join(map(str, sizes))} and {len(data.images):,} images in batches "
        f"of {fixed or RUN_BATCH}"
    )
    _apply_gate(report, reference, tol, int((~agree).sum()), where, _one_flip_hint(data, tol))
    report.passed = not report.failures
    return report


def _batch_diffs(
    session: Any, images: np.ndarray, ref: np.ndarray, sizes: list[int], report: PrecisionReport
) -> list[np.ndarray] | None:
    """|ORT - eager| on the first ``b`` images run as one batch, for each ``b`` in ``sizes``
    (each batch's max in ``report.batches``); None, the failure in ``report``, when an output
    has the wrong shape."""
    diffs: list[np.ndarray] = []
    for b in sizes:
        out = run_onnx(session, images[:b])
        if out.shape != ref[:b].shape:
            report.failures.append(
                f"{report.precision}: batch {b} gave output shape {out.shape}, "
                f"eager {ref[:b].shape}"
            )
            return None
        d = np.abs(out.astype(np.float64) - ref[:b])
        report.batches[str(b)] = float(d.max())
        diffs.append(d.reshape(-1))
    return diffs


def _one_flip_hint(data: VerifyData, tol: Tolerances) -> str:
    """For an int8 accuracy failure: when one image flipped (100 / N points) is more than the
    allowed drop by itself, the gate fails on noise; what one image is worth and what to do
    (verify on more images while the split has more, or allow more drop), else ""."""
    if data.labels is None or tol.int8_max_drop <= 0:
        return ""
    n = data.labels.size  # the accuracy is over every label: per position for K > 1
    one = 100 / n
    if one <= 100 * tol.int8_max_drop + 1e-9:
        return ""
    unit = "image" if data.labels.ndim == 1 else "label"
    hint = f"; one {unit} is {one:.2f} points of {n:,}"
    have = data.split_images or 0
    more = min(have, max(1000, math.ceil(1 / tol.int8_max_drop)))
    if have <= len(data.images):
        hint += ", all the split has"
    command = _FOR_BENCH.get()
    if in_cli() and command:  # vitkit bench has neither flag; it reuses export's models
        flags = ([f"--verify-images {more}"] if have > len(data.images) else []) + [
            "--int8-max-drop POINTS"
        ]
        return f"{hint}: export it with `{command}` and {' or '.join(flags)} (bench reuses it)"
    if in_cli():  # the flag takes points, as the message words the drop
        todo = ["allow more drop (--int8-max-drop POINTS)"]
    else:
        todo = ["allow more drop: tolerances=Tolerances(int8_max_drop=...)"]
    if have > len(data.images):  # verify_images took fewer than the split has
        todo.insert(0, f"verify on more images ({setting('verify_images', more)})")
    return hint + ": " + " or ".join(todo)


def _apply_gate(
    report: PrecisionReport,
    reference: EagerReference,
    tol: Tolerances,
    differ: int,
    where: str,
    small: str = "",
) -> None:
    """Add to ``report`` the failures of its precision's gate (``_gate`` words it): fp32 on
    logits and top-1, fp16 on top-1, int8 on accuracy (a note when there are no labels;
    ``small`` ends its failure when one image flipped is more than the drop allowed)."""
    precision = report.precision
    assert report.max_abs_diff is not None and report.top1_agreement is not None
    if precision.startswith("fp32") and report.max_abs_diff > tol.fp32_atol:
        report.failures.append(
            f"{precision}: max |logit difference| {report.max_abs_diff:.3g} exceeds the "
            f"tolerance {tol.fp32_atol:g} ({where})"
        )
    if precision.startswith("fp32") or precision == "fp16":
        needed = tol.fp16_min_agreement if precision == "fp16" else tol.fp32_min_agreement
        if report.top1_agreement < needed:
            report.failures.append(
                f"{precision}: top-1 agrees with eager on {100 * report.top1_agreement:.2f}% of "
                f"images ({differ} differ); needs >= {100 * needed:g}%"
            )
    elif report.accuracy_drop_points is None:
        report.notes.append("no labels: the int8 accuracy gate was not applied")
    elif report.accuracy_drop_points > 100 * tol.int8_max_drop + 1e-9:
        assert report.accuracy is not None and reference.accuracy is not None
        report.failures.append(
            f"{precision}: top-1 accuracy {100 * report.accuracy:.2f}% is "
            f"{report.accuracy_drop_points:.2f} points below eager's "
            f"{100 * reference.accuracy:.2f}% (allowed: {100 * tol.int8_max_drop:g}{small})"
        )


# -- the export ------------------------------------------------------------------------------------
@dataclass
class ExportReport:
    """What ``export_onnx`` did: files, verification per precision, timings, versions.

    ``passed`` is False when any written model failed verification; ``failures`` say why.
    """

    passed: bool
    verified: bool
    run: str | None  # the run exported, or its weights file if not its own (None: --model)
    model: dict[str, Any]  # ModelSpec.to_dict()
    out: str  # the fp32 model's path
    report_path: str
    files: list[str]
    exporter: str  # dynamo | torchscript
    opset: int
    batch: str | int
    input_name: str
    output_name: str
    data: dict[str, Any]
    eager: dict[str, Any]
    tolerances: dict[str, float]
    precisions: list[PrecisionReport]
    int8: dict[str, Any] | None
    optimize: dict[str, Any] | None
    failures: list[str]
    notes: list[str]
    export_seconds: float
    total_seconds: float
    threads: int | None
    versions: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["precisions"] = [p.to_json() for p in self.precisions]
        if self.int8 and "candidates" in self.int8:
            d["int8"]["candidates"] = [
                c.to_json() if isinstance(c, PrecisionReport) else c
                for c in self.int8["candidates"]
            ]
        return d

    def precision(self, name: str) -> PrecisionReport:
        """The report of ``fp32``, ``fp16`` or ``int8`` (any int8 mode)."""
        check_name("precision", name)  # precision(5): the + operator's TypeError
        for p in self.precisions:
            if p.precision == name or p.precision.startswith(name + "-"):
                return p
        made = [p.precision for p in self.precisions]
        raise MissingEntry(f"no {name} export in this report (it has: {', '.join(made)})")

    def raise_for_failure(self) -> None:
        if not self.passed:
            raise ExportVerificationError("; ".join(self.failures))


class ExportVerificationError(UserError):
    """An exported model failed verification."""


def versions() -> dict[str, str]:
    import onnxruntime as ort

    from vitkit import __version__

    out = {
        "vitkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    with contextlib.suppress(ImportError):
        import onnxscript

        out["onnxscript"] = str(onnxscript.__version__)
    return out


def loaded_for_export(source: LoadedModel | nn.Module | str | os.PathLike[str]) -> LoadedModel:
    """A ``LoadedModel`` for a run directory, a loaded run, or a bare registry-built module."""
    from vitkit.artifact import load_model

    if isinstance(source, LoadedModel):
        lm = source
    elif isinstance(source, nn.Module):
        module = unwrap(source)
        spec = getattr(module, "spec", None)
        if spec is None:
            raise UserError("can only export models built by the registry (vitkit.create_model)")
        cfg = spec.config
        return LoadedModel(
            model=module,
            spec=spec,
            classes=[str(i) for i in range(cfg.num_classes)],
            image_size=cfg.image_size,
            channels=cfg.in_chans,
            mean=[0.5] * cfg.in_chans,
            std=[0.5] * cfg.in_chans,
            dataset=None,
            meta={},
            path=Path("exports") / spec.name,
        )
    elif isinstance(source, (str, os.PathLike)):
        lm = load_model(source)
    else:  # load_model's error would not name the other things taken here
        raise UserError(
            "expected a run directory, vitkit.load_model(...)'s result or a registry-built "
            f"module, got {type(source).__name__}"
        )
    if lm.onnx_file:  # an exported .onnx file: no PyTorch weights to work from
        which = str(lm.run_dir) if lm.run_dir else "the run directory"
        raise UserError(
            f"{lm.onnx_file} is an ONNX file: export and bench work from the PyTorch weights; "
            f"pass {which} (bench times its ONNX exports beside eager PyTorch; "
            f"`vitkit eval {lm.onnx_file}` scores the file alone)"
        )
    return lm


def report_path(out: Path) -> Path:
    """``export.json`` next to ``model.onnx``; ``<stem>.export.json`` next to any other name."""
    return (
        out.parent / "export.json"
        if out.name == "model.onnx"
        else out.with_name(f"{out.stem}.export.json")
    )


def _weights_of(path: Path) -> str | None:
    """The ``weights_sha256`` an exported file records (None: none, or not readable)."""
    try:
        return read_onnx_metadata(path).get("weights_sha256")
    except UserError:
        return None


def sibling(out: Path, tag: str) -> Path:
    """``model.onnx`` -> ``model.<tag>.onnx``."""
    return out.with_name(f"{out.stem}.{tag}.onnx")


def newest_opset(legacy: bool = False) -> int:
    """The newest opset an export can ask for here: onnx's newest, capped by what torch's exporter
    converts to. The dynamo exporter converts its graph with onnxscript's version converter (up to
    opset 25 in onnxscript 0.7); asked for more, it keeps opset-18 declarations over newer ops, a
    model that does not check. The TorchScript exporter stops at torch's own maximum (20)."""
    newest = onnx.defs.onnx_opset_version()
    try:
        if legacy:
            from torch.onnx import _constants

            return min(newest, int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET))
        from onnxscript.version_converter import _version_converter

        return min(newest, int(_version_converter.SUPPORTED_MAX_ONNX_OPSET))
    except (ImportError, AttributeError, TypeError, ValueError):  # private names: may move
        return newest


def _check_options(
    batch: str | int,
    int8: str | None,
    opset: int,
    verify: bool,
    calib_images: int,
    verify_images: int | None = None,
    threads: int | None = None,
    tolerances: Tolerances | None = None,
    legacy: bool = False,
) -> None:
    if verify_images is not None:
        check_int(setting("verify_images"), verify_images)
    check_int(setting("calib_images"), calib_images, 0)
    check_int(setting("opset"), opset, 0)
    from vitkit.bench.timing import check_threads  # here: `import vitkit.export` stays light

    check_threads(threads)  # as bench: eager and ONNX Runtime both get that many
    if tolerances is not None and not isinstance(tolerances, Tolerances):  # a dict: asdict's error
        raise UserError(
            f"tolerances must be a Tolerances (vitkit.export.Tolerances), got {brief(tolerances)}"
        )
    tol = tolerances or Tolerances()
    for name, value in asdict(tol).items():  # NaN would pass every check vacuously
        if not math.isfinite(value):
            flag = TOLERANCE_FLAGS.get(name)  # the others have none: the CLI cannot set them
            raise UserError(
                f"{setting(f'tolerances.{name}', flag=flag)} must be a finite number, got {value}"
            )
    if tol.fp32_atol < 0:  # no model can pass it (a negative int8_max_drop demands a gain: ok)
        raise UserError(
            f"{setting('tolerances.fp32_atol', flag='--atol')} must be >= 0, got {tol.fp32_atol}"
        )
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UserError(
            f"{setting('batch')} must be 'dynamic' or a positive integer, got {batch!r}"
        )
    if int8 is not None and int8 not in INT8_MODES:
        close = suggest(int8, INT8_MODES) if isinstance(int8, str) else ""  # dinamic
        raise UserError(
            f"{setting('int8')} must be one of {', '.join(INT8_MODES)}, got {int8!r}{close}"
        )
    newest = newest_opset(legacy)
    if not MIN_OPSET <= opset <= newest:
        by = "torch's TorchScript exporter" if legacy else "this onnx and torch's exporter"
        raise UserError(
            f"{setting('opset')} must be {MIN_OPSET} to {newest} (what {by} can write), got {opset}"
        )
    if int8 == "auto" and not verify:
        raise UserError(
            f"{setting('int8', 'auto')} measures both int8 modes and needs verification; pass "
            f"{setting('int8', 'dynamic')} or {'static' if in_cli() else repr('static')} with "
            f"{setting('verify', False)}"
        )
    if int8 in ("auto", "static") and calib_images < 1:
        raise UserError(f"{setting('calib_images')} must be >= 1, got {calib_images}")


def export_onnx(
    source: LoadedModel | nn.Module | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    opset: int | None = None,
    batch: str | int = "dynamic",
    fp16: bool = False,
    int8: str | None = None,
    optimize: bool = False,
    verify: bool = True,
    legacy: bool = False,
    calib_images: int = 512,
    verify_images: int | None = None,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    threads: int | None = None,
    tolerances: Tolerances | None = None,
    progress: ProgressFn = no_progress,
) -> ExportReport:
    """Export a run (directory or ``LoadedModel``) or a registry-built module to ONNX, verified.

    Writes ``out`` (default ``RUN/export/model.onnx``, ``LoadedModel.output_dir``: beside another
    weights file of the run; ``exports/<model>/model.onnx`` for a bare module),
    ``model.fp16.onnx`` with ``fp16``, ``model.int8.onnx`` with ``int8`` ("dynamic", "static":
    calibrated on real training images, a ``UserError`` where there are none, or "auto": both,
    keep the faster that passes; dynamic only without real training images) and the report
    ``export.json``.
    ``optimize`` builds fused fp32 variants (vitkit's attention fusion, ONNX Runtime's
    transformer optimizer), verifies each and keeps the fastest that passes, or the plain model
    when none is faster (``report.optimize`` has the race).

    Returns an ``ExportReport`` (``passed``, ``failures``, ``precision(name)``, ``out``,
    ``to_json()``: export.json); a verification that fails is in the report, not raised: check
    ``report.passed`` or call ``report.raise_for_failure()``. Raises ``UserError`` for bad
    options (``int8``, ``batch``, ``opset``, counts), a run it cannot load, no real images for
    ``int8="static"``, or an argument of the wrong type (``fp16="yes"``, ``out=5``).
    """
    from vitkit.bench.timing import OtherCpuUse, torch_threads  # here: the import stays light

    t_start = time.perf_counter()
    others = OtherCpuUse()  # other processes' CPU use while eager and the exports are timed
    opset = opset or DEFAULT_OPSET
    fp16, optimize, verify, legacy, download = (
        check_bool(name, value)  # fp16="no" exported fp16: any truthy value passed as a flag
        for name, value in (
            ("fp16", fp16),
            ("optimize", optimize),
            ("verify", verify),
            ("legacy", legacy),
            ("download", download),
        )
    )
    check_path("out", out, optional=True)
    check_path("data_root", data_root, optional=True)
    check_callable("progress", progress)
    _check_options(
        batch, int8, opset, verify, calib_images, verify_images, threads, tolerances, legacy
    )
    tol = tolerances or Tolerances()
    threads = threads or torch.get_num_threads()  # eager's count, so that img/s compare
    lm = loaded_for_export(source)
    out_path = _out_path(lm, out)
    with _eval_mode(cpu_fp32(lm.model)) as module:
        data = None  # first: a static int8 with no real images to calibrate on fails at once
        if verify or int8 in ("static", "auto"):
            data = _export_verification_data(
                lm, int8, data_root, verify_images, calib_images, download, progress
            )
        traced = _trace(module, lm, opset=opset, batch=batch, legacy=legacy, progress=progress)
        reference = None
        if verify and data is not None:
            # ONNX Runtime's thread count: their img/s compare
            with torch_threads(threads), others.counting():
                reference = eager_reference(module, data)
    meta = onnx_metadata(lm, precision="fp32", batch=batch)  # the weights hashed once
    set_metadata(traced.proto, meta)
    check = _Checker(reference, data, tol, threads, progress)
    with _scratch_dir(out_path) as work, others.counting():  # the timed checks, for the busy note
        built = _build_models(
            lm, traced, out_path, work, check, meta, fp16=fp16, int8=int8, optimize=optimize
        )
    # every model built and checked: only now are files written, each to a temp file beside its
    # name; they replace the folder's files in one pass at the end (Ctrl-C or an error before
    # it, or a rename or removal that fails in it: the folder is as it was, no temp file left)
    with Staged() as staged:
        pending = built.stage(staged)
        # --no-verify: the images only calibrated static int8; notes on verifying with them are
        # untrue
        verified_on = data if reference is not None else None
        notes = [
            *traced.notes,
            *_data_notes(verified_on, int8),
            *built.notes,
            *_stale_evals(out_path, pending),
        ]
        if reference is not None:
            notes.extend(_speed_notes(reference, built.precisions, threads, others.cores()))
        report = _export_report(lm, out_path, traced, data, reference, tol, built, notes, threads)
        report.total_seconds = round(time.perf_counter() - t_start, 2)
        staged.write(report.report_path, json_text(report.to_json()))  # last: it describes them
        staged.commit(built.removals)
    return report


def _out_path(lm: LoadedModel, out: str | os.PathLike[str] | None) -> Path:
    """Where the fp32 model goes: ``out``, else ``model.onnx`` in the run's export folder (a bare
    module's ``exports/<model>``); a name not ending in .onnx, or ending in .fp16.onnx,
    .int8.onnx or .failed.onnx (another export's siblings), is a ``UserError``."""
    if out is not None:
        out_path = Path(out)
    else:
        out_path = (lm.output_dir("export") if lm.meta else lm.path) / "model.onnx"
    if out_path.suffix != ".onnx":
        raise UserError(f"{setting('out')} must name a .onnx file, got {out_path}")
    # the names an export gives the siblings of X.onnx: an fp32 model under one of them would
    # overwrite (or be taken for) X's fp16, int8 or failed model
    tag = Path(out_path.stem).suffix.lower()  # X.INT8.onnx is X.int8.onnx on macOS, Windows
    if tag in (".fp16", ".int8", ".failed"):
        raise UserError(
            f"{setting('out', out_path)}: *{tag}.onnx is the name of another export's "
            f"{tag[1:]} model "
            f"(beside {out_path.with_name(Path(out_path.stem).stem + '.onnx').name}); "
            "name the fp32 model otherwise"
        )
    return out_path


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode; it is put back in training mode afterwards if it was in it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _export_verification_data(
    lm: LoadedModel,
    int8: str | None,
    data_root: str | os.PathLike[str] | None,
    verify_images: int | None,
    calib_images: int,
    download: bool,
    progress: ProgressFn,
) -> VerifyData:
    """The verification images (and int8's calibration ones); a ``UserError`` when static int8
    would have to calibrate on synthetic images."""
    progress("verification data", 0, 1)
    data = verification_data(
        lm,
        data_root=data_root,
        verify_images=verify_images,
        calib_images=calib_images if int8 in ("static", "auto") else 0,
        download=download,
        progress=progress,
    )
    progress("verification data", 1, 1)
    why = data.why_uncalibrated
    if why and int8 == "static":  # random pixels' ranges: not a model's
        raise UserError(
            f"{setting('int8', 'static')} calibrates on real training images and none could "
            f"be had ({why}); use {setting('int8', 'dynamic')}, which needs none"
        )
    return data


@dataclass
class _Traced:
    """The fp32 graph an export traced, and what it has to say about it."""

    proto: onnx.ModelProto
    exporter: str  # dynamo | torchscript
    opset: int  # the opset it wrote: the exporter may not write the one asked for
    batch: str | int  # "dynamic" or its fixed batch size
    seconds: float
    notes: list[str]


def _trace(
    module: nn.Module,
    lm: LoadedModel,
    *,
    opset: int,
    batch: str | int,
    legacy: bool,
    progress: ProgressFn,
) -> _Traced:
    """The fp32 graph of ``module`` (``export_graph``), timed, with notes on what it could not
    be as asked (exporter, opset) and on a model with no run."""
    progress("export", 0, 1)
    t0 = time.perf_counter()
    proto, exporter, notes = export_graph(
        module,
        image_size=lm.image_size,
        channels=lm.channels,
        opset=opset,
        batch=batch,
        legacy=legacy,
    )
    seconds = time.perf_counter() - t0
    progress("export", 1, 1)
    if not lm.meta:
        notes.append(
            "a model with no run: its classes 0..N-1 and mean/std 0.5 are placeholders; the "
            "file says so (trained: false), and vitkit's eval and predict refuse it"
        )
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if written != opset:
        notes.append(f"asked for opset {opset}; the {exporter} exporter wrote opset {written}")
    return _Traced(proto, exporter, written, batch, seconds, notes)


def _data_notes(data: VerifyData | None, int8: str | None) -> list[str]:
    """The report's notes on the verification data: where it came from, what it lacks."""
    if data is None:
        return []
    notes = list(data.notes)
    why = data.why_uncalibrated
    if why and int8 == "auto":
        notes.append(
            f"{setting('int8', 'auto')}: static int8 left out, as it calibrates on real training "
            f"images and none could be had ({why}); int8 is dynamic"
        )
    return notes


@dataclass
class _Checker:
    """Checks each model an export builds: verified against eager when there is a ``reference``,
    else (--no-verify) by onnx.checker alone."""

    reference: EagerReference | None
    data: VerifyData | None
    tolerances: Tolerances
    threads: int
    progress: ProgressFn

    def __call__(self, model: onnx.ModelProto, precision: str, built: float) -> PrecisionReport:
        """The report on ``model`` as ``precision``, which took ``built`` seconds to make."""
        self.progress(f"verify {precision}", 0, 1)
        if self.reference is not None and self.data is not None:
            rep = verify_onnx(
                model,
                self.reference,
                self.data,
                precision=precision,
                tolerances=self.tolerances,
                threads=self.threads,
            )
        else:
            rep = _checked_only(model, precision)
        rep.build_seconds = built
        self.progress(f"verify {precision}", 1, 1)
        return rep


def _checked_only(model: onnx.ModelProto, precision: str) -> PrecisionReport:
    """The report on a model that only onnx.checker looks at (--no-verify)."""
    status = check_model(model)
    return PrecisionReport(
        precision=precision,
        path=None,
        size_bytes=model.ByteSize(),
        passed=status == "ok",
        verified=False,
        checker=status,
        gate=f"onnx.checker only ({setting('verify', False)})",
        failures=[] if status == "ok" else [f"{precision}: onnx.checker: {status}"],
    )


@contextlib.contextmanager
def _scratch_dir(out_path: Path) -> Iterator[Path]:
    """A temporary folder beside ``out_path``, removed afterwards; the output folder is made
    first, and one that cannot be written to is a ``UserError``."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:  # the first file made in the output folder: an unwritable one is named here
        scratch = tempfile.TemporaryDirectory(prefix=".vitkit-export-", dir=out_path.parent)
    except OSError as e:
        raise UserError(
            f"cannot write to {out_path.parent} ({setting('out', out_path)}): {e.strerror}"
        ) from None
    with scratch as tmp:
        yield Path(tmp)


def _keep(
    model: onnx.ModelProto, rep: PrecisionReport, path: Path, built: _Built
) -> PrecisionReport:
    """``rep``, with the path ``model`` goes to: ``path`` if it passed, else
    ``<name>.failed.onnx``. Nothing is written yet: ``built.stage`` writes every model once all
    of them are built, so an export cut short (Ctrl-C, an error) leaves the folder as it was."""
    failed = _failed(path)
    target = path if rep.passed else failed
    blob = model.SerializeToString()
    rep.size_bytes = len(blob)
    rep.path = str(target)
    built.writes.append((target, blob))
    # a stale failure from an earlier export, or an earlier export's under the real name
    built.removals.append(failed if rep.passed else path)
    if not rep.passed and path.is_file():
        built.notes.append(
            f"removed {path.name}, an earlier export's: {rep.precision} failed verification "
            f"(kept as {failed.name})"
        )
    return rep


def _stale_evals(out_path: Path, pending: dict[Path, str | None]) -> list[str]:
    """Notes on the eval reports beside ``out_path`` and its fp16 and int8 siblings that will
    have scored an earlier or removed file once ``pending`` (``_Built.stage``) is committed
    (kept: they are ``vitkit eval``'s output, not ours)."""
    files = [out_path, sibling(out_path, "fp16"), sibling(out_path, "int8")]
    return stale_notes(files, pending=pending)


def _failed(path: Path) -> Path:
    """Where a model that failed verification is kept: ``<name>.failed.onnx``."""
    return path.with_name(f"{path.stem}.failed.onnx")


def _earlier_siblings(
    out_path: Path, weights: str, asked: list[str], removals: list[Path]
) -> list[str]:
    """Notes on the fp16 and int8 files of an earlier export beside ``out_path`` that this one
    does not remake: removed when of other ``weights``, kept when of these; an earlier failed
    one is removed (nothing in this report would say what it is). The removals are added to
    ``removals`` (done when the export commits)."""
    notes: list[str] = []
    for tag in ("fp16", "int8"):
        old = sibling(out_path, tag)
        if tag in asked:
            continue
        if _failed(old).is_file():
            removals.append(_failed(old))
            notes.append(f"removed {_failed(old).name}: an earlier export's failed {tag} model")
        if not old.is_file():
            continue
        recorded = _weights_of(old)
        if recorded != weights:
            removals.append(old)
            notes.append(
                f"removed {old.name}: an earlier export of other weights"
                if recorded is not None
                else f"removed {old.name}: an earlier export that records no weights "
                "hash (or cannot be read), so it may be of other weights"
            )
        else:  # the same weights: kept, but not in this report
            notes.append(
                f"kept {old.name} from an earlier export of these weights (not verified "
                f"again, not in this report; --{tag} remakes it)"
            )
    return notes


@dataclass
class _Built:
    """The models an export wrote (each one's report) and what it noted on the way."""

    precisions: list[PrecisionReport]  # ExportReport.precisions
    notes: list[str]
    int8: dict[str, Any] | None = None  # ExportReport.int8
    optimize: dict[str, Any] | None = None  # ExportReport.optimize
    writes: list[tuple[Path, bytes]] = field(default_factory=list)  # (file, model), in order
    removals: list[Path] = field(default_factory=list)  # an earlier export's files

    def stage(self, staged: Staged) -> dict[Path, str | None]:
        """Write the models to ``staged``'s temp files (``staged.commit(self.removals)`` puts
        them in place and removes the earlier files they replace). Returns each file this
        changes as it will be: the SHA-256 of a model written, None for a file removed."""
        pending: dict[Path, str | None] = {path: None for path in self.removals}
        for path, blob in self.writes:
            staged.write(path, blob)
            pending[path] = hashlib.sha256(blob).hexdigest()
        self.writes.clear()  # the bytes are on disk: not held through the report
        return pending


def _build_models(
    lm: LoadedModel,
    traced: _Traced,
    out_path: Path,
    work: Path,
    check: _Checker,
    meta: dict[str, str],
    *,
    fp16: bool,
    int8: str | None,
    optimize: bool,
) -> _Built:
    """The fp32 model (fused by --optimize if faster), then fp16 and int8 from it if it passed:
    each checked and written, under its name if it passed, else as ``<name>.failed.onnx``."""
    proto, data, batch = traced.proto, check.data, traced.batch
    built = _Built(precisions=[], notes=[])
    model, rep = proto, check(proto, "fp32", traced.seconds)
    if optimize:
        images = data.images if data is not None else None
        model, rep, built.optimize = _optimized(
            lm, proto, rep, work, check, meta, images, check.threads, batch
        )
        built.notes.extend(built.optimize.pop("notes"))
    built.precisions.append(_keep(model, rep, out_path, built))
    asked = [tag for tag, wanted in (("fp16", fp16), ("int8", int8)) if wanted]
    built.notes.extend(_earlier_siblings(out_path, meta["weights_sha256"], asked, built.removals))
    if not rep.passed and asked:
        built.notes.append(f"fp32 failed verification: {' and '.join(asked)} not built from it")
        for tag in asked:  # an earlier export's, passed or failed: not of this fp32 model
            for old_file in (sibling(out_path, tag), _failed(sibling(out_path, tag))):
                if old_file.is_file():
                    built.removals.append(old_file)
                    built.notes.append(
                        f"removed {old_file.name}, an earlier export's: not of this fp32 model"
                    )
        return built
    if fp16:
        half, rep16 = _fp16(proto, meta, check)
        built.precisions.append(_keep(half, rep16, sibling(out_path, "fp16"), built))
    if int8:
        assert data is not None or int8 == "dynamic"
        fused = model if built.optimize and built.optimize["kept"] == "attention" else None
        model8, rep8, built.int8 = _int8(int8, proto, data, work, check, meta, batch, fused)
        built.precisions.append(_keep(model8, rep8, sibling(out_path, "int8"), built))
    return built


def _fp16(
    proto: onnx.ModelProto, meta: dict[str, str], check: _Checker
) -> tuple[onnx.ModelProto, PrecisionReport]:
    """The fp16 model of the fp32 ``proto``, and its report."""
    from vitkit.export.quantize import to_fp16

    check.progress("fp16", 0, 1)
    t0 = time.perf_counter()
    half = to_fp16(proto)
    set_metadata(half, {**meta, "precision": "fp16"})
    return half, check(half, "fp16", time.perf_counter() - t0)


def _export_report(
    lm: LoadedModel,
    out_path: Path,
    traced: _Traced,
    data: VerifyData | None,
    reference: EagerReference | None,
    tol: Tolerances,
    built: _Built,
    notes: list[str],
    threads: int,
) -> ExportReport:
    """The report of an export (its ``total_seconds`` still 0: the caller times the whole)."""
    failures = [f for p in built.precisions for f in p.failures]
    files = [p.path for p in built.precisions if p.path is not None]
    return ExportReport(
        passed=not failures,
        verified=reference is not None,
        run=str(lm.weights_file or lm.path) if lm.meta else None,
        model=lm.spec.to_dict(),
        out=str(out_path),
        report_path=str(report_path(out_path)),
        files=[*files, str(report_path(out_path))],
        exporter=traced.exporter,
        opset=traced.opset,
        batch=traced.batch,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        data=(
            data.describe()
            if data is not None and reference is not None
            else {"source": None, "calibration_images": len(data.calibration) if data else 0}
        ),
        eager={
            "accuracy": reference.accuracy if reference else None,
            "images_per_s": round(reference.images_per_s, 1) if reference else None,
            # the batch its img/s was timed at (``_timed``): fewer verification images, fewer;
            # None under --no-verify, where nothing was timed
            "batch": min(RUN_BATCH, len(data.images)) if data and reference else None,
            "torch_threads": threads,
        },
        tolerances=asdict(tol),
        precisions=built.precisions,
        int8=built.int8,
        optimize=built.optimize,
        failures=failures,
        notes=notes,
        export_seconds=round(traced.seconds, 2),
        total_seconds=0.0,
        threads=threads,
        versions=versions(),
    )


_Variant = tuple[str, onnx.ModelProto, PrecisionReport, dict[str, int]]  # name, model, report, ops


def _optimized(
    lm: LoadedModel,
    plain: onnx.ModelProto,
    plain_rep: PrecisionReport,
    work: Path,
    check: _Checker,
    meta: dict[str, str],
    images: np.ndarray | None,
    threads: int | None,
    batch: str | int = "dynamic",
) -> tuple[onnx.ModelProto, PrecisionReport, dict[str, Any]]:
    """Two fused variants of the fp32 model, each verified like any export: vitkit's attention
    fusion (``com.microsoft.Attention``) and ORT's transformer optimizer. Those that pass race
    the plain model head to head (``race``); the fastest is kept, and the report says which and
    why."""
    cfg = lm.spec.config
    info: dict[str, Any] = {"kept": "plain", "notes": [], "candidates": []}
    if not hasattr(cfg, "num_heads") or not hasattr(cfg, "embed_dim"):
        info["notes"].append(optimize_note("not a ViT config; no fusion was tried"))
        return plain, plain_rep, info
    variants, info["notes"] = _fused_variants(plain, cfg, work, check, meta)
    # --no-verify: an unverified fusion is never timed, never kept
    racing = {n: m for n, m, rep, _ in variants if rep.passed and rep.verified}
    sizes = (1, RUN_BATCH) if batch == "dynamic" else (int(batch),)  # a fixed batch: its own
    times = (
        race_rounds({"plain": plain, **racing}, images, threads=threads, batches=sizes)
        if racing
        else {}
    )
    if variants and not any(rep.verified for _, _, rep, _ in variants):
        unverified = setting("verify", False)
        info["notes"].append(optimize_note(f"with {unverified} no fused model is timed or kept"))
    best: tuple[onnx.ModelProto, PrecisionReport] = (plain, plain_rep)
    best_speedup = 1.0
    for name, model, rep, ops in variants:
        candidate = _candidate(name, rep, ops, times)
        info["candidates"].append(candidate)
        if not rep.passed:
            info["notes"].append(
                optimize_note(f"the {name} fusion failed verification ({'; '.join(rep.failures)})")
            )
        elif candidate["speedup"] is not None and candidate["speedup"] > best_speedup:
            best, info["kept"], best_speedup = (model, rep), name, candidate["speedup"]
    info["notes"].append(_kept_note(info["kept"], info["candidates"]))
    return best[0], best[1], info


def _fused_variants(
    plain: onnx.ModelProto, cfg: Any, work: Path, check: _Checker, meta: dict[str, str]
) -> tuple[list[_Variant], list[str]]:
    """The fused fp32 models built from ``plain``, each checked, and notes on the fusions that
    failed or found nothing to fuse."""
    from vitkit.export.quantize import fuse_attention, optimize_transformer

    variants: list[_Variant] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    try:
        attention, n = fuse_attention(plain, num_heads=cfg.num_heads)
    except Exception as e:  # a graph the pass does not understand: keep going without it
        attention, n = plain, 0
        notes.append(optimize_note(f"the attention fusion failed ({first_line(e)})"))
    if n:
        set_metadata(attention, meta)
        rep = check(attention, "fp32-attention", time.perf_counter() - t0)
        count = collections.Counter(node.op_type for node in attention.graph.node)
        fused_ops = {op: count[op] for op in ("Attention", "MultiHeadAttention") if count[op]}
        variants.append(("attention", attention, rep, fused_ops))
    elif not notes:
        notes.append(optimize_note("no attention block matched the fusion pattern"))
    t0 = time.perf_counter()
    try:
        fused, stats = optimize_transformer(
            plain, work, num_heads=cfg.num_heads, hidden_size=cfg.embed_dim
        )
    except Exception as e:  # ORT's optimizer raises its own errors on graphs it cannot fuse
        notes.append(optimize_note(f"ONNX Runtime's optimizer failed ({first_line(e)})"))
    else:
        set_metadata(fused, meta)
        rep = check(fused, "fp32-onnxruntime", time.perf_counter() - t0)
        variants.append(("onnxruntime", fused, rep, stats))
    return variants, notes


def _candidate(
    name: str, rep: PrecisionReport, ops: dict[str, int], times: dict[str, dict[int, list[float]]]
) -> dict[str, Any]:
    """The report's entry on one fused variant: its fused ops, its speed-up over the plain
    model at each raced batch size (``paired_speedup``; None when it was not raced) and its
    verification."""
    by_batch = (
        {b: paired_speedup(times["plain"][b], t) for b, t in times[name].items()}
        if name in times
        else {}
    )
    speedup = float(np.prod(list(by_batch.values())) ** (1 / len(by_batch))) if by_batch else None
    return {
        "name": name,
        "fused_ops": ops,
        "speedup": speedup,  # geometric mean over the raced batch sizes
        "speedup_by_batch": {str(b): round(v, 3) for b, v in by_batch.items()},
        "report": rep.to_json(),
    }


def optimize_note(text: str) -> str:
    """A note on ``optimize``'s fusions, led by the setting in its reader's words: ``--optimize:
    kept the plain model`` under the CLI, ``optimize=True: ...`` from Python. ``benchmark``
    passes on an export's notes that start so."""
    return f"{setting('optimize', True)}: {text}"


def _kept_note(kept: str, candidates: list[dict[str, Any]]) -> str:
    """The note saying which fp32 model --optimize kept, with the raced variants' speed-ups."""
    speeds = ", ".join(
        f"{c['name']} {c['speedup']:.2f}x"
        + f" ({', '.join(f'batch {b} {v:.2f}x' for b, v in c['speedup_by_batch'].items())})"
        for c in candidates
        if c["speedup"] is not None
    )
    return optimize_note(f"kept the {kept} model") + (
        f" (speed against the plain export: {speeds})" if speeds else ""
    )


def _int8(
    mode: str,
    proto: onnx.ModelProto,
    data: VerifyData | None,
    work: Path,
    check: _Checker,
    meta: dict[str, str],
    batch: str | int,
    fused: onnx.ModelProto | None = None,
) -> tuple[onnx.ModelProto, PrecisionReport, dict[str, Any]]:
    """Build the int8 model(s) of ``mode``; with "auto", keep the faster one that passes.

    ``fused``: the fused-attention fp32 model ``--optimize`` kept; dynamic int8 is built from
    it (its attention projections quantized too), static QDQ from the plain ``proto``."""
    candidates: list[tuple[onnx.ModelProto, PrecisionReport]] = []
    sources: dict[str, str] = {}
    kinds = ("dynamic",) if data is None or data.why_uncalibrated else ("dynamic", "static")
    for kind in kinds if mode == "auto" else (mode,):
        t0 = time.perf_counter()
        sources[kind] = "attention" if kind == "dynamic" and fused is not None else "plain"
        model = _int8_model(kind, proto, data, work, batch, fused)
        precision = f"int8-{kind}"
        set_metadata(model, {**meta, "precision": precision})
        candidates.append((model, check(model, precision, time.perf_counter() - t0)))
    info: dict[str, Any] = {"mode": mode, "sources": sources}  # which fp32 graph each came from
    if data is not None and "static" in sources:
        info["calibration"] = f"{len(data.calibration):,} training images"
    if mode != "auto":
        model, rep = candidates[0]
        info.update(chosen=mode, reason="asked for")
        return model, rep, info
    model, rep, reason = _faster_int8(candidates)
    chosen = rep.precision.removeprefix("int8-")
    info.update(chosen=chosen, reason=reason, candidates=[r for _, r in candidates])
    return model, rep, info


def _int8_model(
    kind: str,
    proto: onnx.ModelProto,
    data: VerifyData | None,
    work: Path,
    batch: str | int,
    fused: onnx.ModelProto | None,
) -> onnx.ModelProto:
    """The int8 model of ``kind``: "dynamic" (from ``fused`` when given) or "static" QDQ
    calibrated on ``data``."""
    from vitkit.export.quantize import quantize_int8_dynamic, quantize_int8_static

    if kind == "dynamic":
        return quantize_int8_dynamic(
            fused if fused is not None else proto, work, attention=fused is not None
        )
    assert data is not None
    fixed = batch != "dynamic"
    return quantize_int8_static(
        proto,
        data.calibration,
        work,
        input_name=INPUT_NAME,
        batch=int(batch) if fixed else RUN_BATCH,
        fixed_batch=fixed,
    )


def _faster_int8(
    candidates: list[tuple[onnx.ModelProto, PrecisionReport]],
) -> tuple[onnx.ModelProto, PrecisionReport, str]:
    """``(model, report, reason)``: the faster int8 model of those that pass (of all, when none
    does) and why it was chosen."""
    if len(candidates) == 1:  # no real training images: static was not built
        model, rep = candidates[0]
        return model, rep, "the only candidate: static needs real training images to calibrate"
    passing = [(m, r) for m, r in candidates if r.passed]
    model, rep = max(passing or candidates, key=lambda mr: mr[1].images_per_s or 0.0)
    speeds = ", ".join(
        f"{r.precision} {r.images_per_s:,.0f} img/s{'' if r.passed else ' (failed)'}"
        for _, r in candidates
        if r.images_per_s is not None
    )
    reason = (
        f"faster of those that pass verification ({speeds})"
        if passing
        else f"neither passed verification ({speeds})"
    )
    return model, rep, reason
