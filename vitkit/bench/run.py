"""benchmark(): every runtime on every device, measured the same way, in one report.

    run / model ─► exports it needs (reused from RUN/export when current; made in OUT/export,
                   or a scratch folder with write=False)
                 ─► one Runner per (runtime, device)        (runtimes.py; skipped ones say why)
                 ─► per batch size: the same input tensor to every runner, timed in
                    interleaved rounds (timing.py), so machine drift hits all runtimes alike;
                    each cell waits until the last cell's spinning threads are idle; a runner
                    that breaks at a batch size (out of memory) keeps its smaller ones' cells
                 ─► logits of every runner on the same real test images: accuracy, agreement
                 ─► BenchReport (report.py): JSON, CSV, PNG, a table

Fair by construction: torch and ONNX Runtime get the same intra-op thread count, every runtime
gets the same inputs (already on the device for CUDA runtimes), warm-up is discarded, CUDA is
timed with events, and speed-ups compare with eager fp32 on the same device and batch.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import importlib.util
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vitkit._device import device_name, resolve_device
from vitkit.artifact import (
    MODEL_JSON,
    LoadedModel,
    check_writable,
    cpu_fp32,
    file_in_the_way,
)
from vitkit.bench.report import SCHEMA_VERSION, BenchReport, BenchRow, RuntimeResult, UntimedCell
from vitkit.bench.runtimes import (
    BenchModel,
    Runner,
    Skip,
    default_runtimes,
    get_runtime,
    parse_runtimes,
)
from vitkit.bench.timing import (
    SETTLE_LIMIT,
    SETTLE_SHORT,
    UNSTEADY_P90,
    OtherCpuUse,
    Timing,
    busy_note,
    cpu_info,
    gpu_info,
    load_average,
    matmul_peak,
    measure,
    oversubscribed_note,
    set_threads,
    settle,
)
from vitkit.data.types import ProgressFn, no_progress
from vitkit.errors import (
    NotFoundError,
    UserError,
    VitkitError,
    check_bool,
    check_callable,
    check_int,
    check_path,
    check_seconds,
    check_str,
    first_line,
    is_count,
    listed,
    name_list,
    setting,
    suggest,
)
from vitkit.models import model_flops

if TYPE_CHECKING:
    import onnx

    from vitkit.export.onnx import ExportReport

DEFAULT_BATCH_SIZES = (1, 8, 64)
ONNX_PRECISION = {"ort": "fp32", "ort-fp16": "fp16", "ort-int8": "int8", "trt": "fp32"}


def _same_device(a: torch.device, b: torch.device) -> bool:
    """cuda and cuda:N are one device when N is the current GPU."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def parse_devices(value: str | Sequence[str]) -> list[torch.device]:
    """``"cpu,cuda"`` -> devices; a name torch does not know is a one-line error, and so is CUDA
    asked for alone where there is none (beside cpu, its runtimes are reported as skipped).
    ``auto`` is the device training and eval pick, of those bench measures: cuda where there
    is one, else cpu (mps, which bench does not measure, included)."""
    names = name_list("devices", "device", value)
    out: list[torch.device] = []
    for n in map(device_name, names):  # CPU as cpu, as runtimes are
        try:
            d = resolve_device(n) if n == "auto" else torch.device(n)
        except RuntimeError:
            raise UserError(f"unknown device '{n}' (use auto, cpu, cuda or cuda:N)") from None
        if n == "auto" and d.type != "cuda":
            d = torch.device("cpu")
        if d.type not in ("cpu", "cuda"):
            raise UserError(f"bench measures cpu and cuda devices, not '{n}'")
        if d.type == "cpu" and d.index is not None:
            raise UserError(
                f"{setting('devices', n, flag='--device')}: the CPU takes no index (use cpu; "
                f"{setting('threads')} sets cores)"
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if d.type == "cuda" and count and (d.index or 0) >= count:
            raise UserError(
                f"{setting('devices', n, flag='--device')}: this machine has {count} GPU(s)"
            )
        if not any(_same_device(o, d) for o in out):
            out.append(d)
    if not out:
        raise UserError(
            f"{setting('devices', flag='--device')} is empty; use cpu, cuda or cpu,cuda"
        )
    if all(d.type == "cuda" for d in out) and not torch.cuda.is_available():
        # beside cpu, a missing GPU is a row of skips; asked for alone, nothing could be measured
        raise UserError(
            f"{setting('devices', ','.join(map(str, out)), flag='--device')}: CUDA is not "
            f"available here (use {setting('devices', 'cpu', flag='--device')}, or cpu,cuda to "
            "list the CUDA runtimes as skipped)"
        )
    return out


def parse_batch_sizes(value: str | Sequence[int]) -> list[int]:
    try:
        sizes = (
            [int(s) for s in value.split(",") if s.strip()]
            if isinstance(value, str)
            else list(value)
        )
    except (ValueError, TypeError):  # "1,x", or a bare 8 (no list of sizes)
        raise UserError(
            f"{setting('batch_sizes')} must be integers like 1,8,64, got '{value}'"
        ) from None
    if not sizes or not all(is_count(b) for b in sizes):
        raise UserError(f"{setting('batch_sizes')} must be positive integers, got '{value}'")
    sizes = [int(b) for b in sizes]  # numpy's too
    return sorted(dict.fromkeys(sizes))


# -- exports -----------------------------------------------------------------------------------
VERIFY_IMAGES = 1000  # test images an export made for the bench is verified on (all, if fewer)
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def _current(
    path: Path, lm: LoadedModel, precision: str, fingerprint: str, notes: list[str]
) -> onnx.ModelProto | None:
    """The parsed ``path`` if it is an export of this model (same spec, same weights by
    ``weights_fingerprint``, same precision, dynamic batch), else None. The weights are compared
    by content, not by file times: an untrained ``--model`` (another ``--seed``) or another run
    benchmarked into the same ``--out`` has the same spec and other weights. A file passed over
    gets a note saying why (not in silence: it may be the user's, just exported)."""
    import onnx

    from vitkit.export.onnx import exports_spec_of, load_onnx, read_onnx_metadata

    if not path.is_file():
        return None
    try:
        model = load_onnx(path)
        meta = read_onnx_metadata(model)
        onnx.checker.check_model(model)  # metadata intact, graph damaged: made anew, not skipped
    except UserError as e:
        notes.append(f"passed over {path}: {first_line(e)}")
        return None
    except onnx.checker.ValidationError as e:
        notes.append(f"passed over {path}: not a valid ONNX graph ({first_line(e)})")
        return None
    why = None
    if not exports_spec_of(meta, lm):
        why = "an export of another model"
    elif not str(meta.get("precision", "")).startswith(precision):
        why = f"its precision is {meta.get('precision', 'not recorded')}, not {precision}"
    elif meta.get("batch", "dynamic") != "dynamic":
        why = f"a fixed batch-{meta['batch']} export (bench times every batch size)"
    elif meta.get("weights_sha256") != fingerprint:
        why = "exported from other weights (weights_sha256 differs)"
    if why is not None:
        notes.append(f"passed over {path}: {why}")
        return None
    return model


def _export_json(export_dir: Path) -> dict[str, Any]:
    """The export.json of the export in a folder ({} when there is none, or it cannot be read)."""
    from vitkit.artifact import read_json

    report = export_dir / "export.json"
    try:
        info = read_json(report) if report.is_file() else {}
    except UserError:
        info = {}
    return info if isinstance(info, dict) else {}


def _optimized(export: dict[str, Any]) -> tuple[bool, str]:
    """(``--optimize`` made the export, the fp32 variant it kept), from its export.json;
    (False, "plain") when it does not say."""
    info = export.get("optimize")
    if not isinstance(info, dict):
        return False, "plain"
    return True, str(info.get("kept", "plain"))


def _unverified(export: dict[str, Any]) -> set[str]:
    """The names of the files an export.json records as not verified against eager (made with
    ``--no-verify``: only onnx.checker looked at them)."""
    precisions = export.get("precisions")
    if not isinstance(precisions, list):
        return set()
    return {
        Path(p["path"]).name
        for p in precisions
        if isinstance(p, dict) and isinstance(p.get("path"), str) and p.get("verified") is False
    }


def unverified_note() -> str:
    """What a file exported without verification is worth, as bench reads it."""
    return (
        f"exported with {setting('verify', False)}: its agreement with eager is only what this "
        "bench's top-1 and Δ eager columns show"
    )


def _unlike_optimize(
    model: onnx.ModelProto, precision: str, optimize: bool, optimized: bool, kept: str
) -> str | None:
    """Why a current export is not the kind ``optimize`` asks for (None: it is). The fp32 and
    int8 models only: fp16 is never fused."""
    from vitkit.export.onnx import is_fused

    if precision not in ("fp32", "int8"):
        return None
    if optimize:  # the --optimize export's own: int8 is fused when attention was kept
        want = kept != "plain" if precision == "fp32" else kept == "attention"
        if not optimized or is_fused(model) != want:
            return f"not the {setting('optimize', True)} export's model"
    elif is_fused(model):  # judged by the file itself, not by export.json
        return f"a fused {setting('optimize', True)} model (pass {setting('optimize', True)})"
    return None


def _reused(
    lm: LoadedModel, precisions: set[str], search: list[Path], optimize: bool, notes: list[str]
) -> dict[str, Path]:
    """The current export of each of ``precisions`` found in ``search``, the first folder first;
    each file taken or passed over gets a note, which says so when its export.json records it
    as not verified (``vitkit export --no-verify``)."""
    from vitkit.export.onnx import weights_fingerprint

    files: dict[str, Path] = {}
    fingerprint = weights_fingerprint(lm.model)
    for folder in search:
        export = _export_json(folder)
        optimized, kept = _optimized(export)
        unverified = _unverified(export)
        for p in sorted(precisions - set(files)):
            path = folder / ONNX_FILES[p]
            model = _current(path, lm, p, fingerprint, notes)
            if model is None:
                continue
            if (why := _unlike_optimize(model, p, optimize, optimized, kept)) is not None:
                notes.append(f"passed over {path}: {why}")
                continue
            files[p] = path
            # timed as it is (the accuracy columns show what it does), but not as if checked
            unchecked = f", {unverified_note()}" if path.name in unverified else ""
            notes.append(f"reused {path}{unchecked}")
    return files


def ensure_exports(
    lm: LoadedModel,
    precisions: set[str],
    search: list[Path],
    make_in: Path,
    *,
    data_root: str | os.PathLike[str] | None,
    verify_images: int,
    threads: int,
    progress: ProgressFn,
    optimize: bool = False,
    scratch: bool = False,
) -> tuple[dict[str, Path], dict[str, str], list[str], list[str]]:
    """The ONNX files for ``precisions`` ("fp32", "fp16", "int8"): the first current one in the
    ``search`` folders (RUN/export, then the bench's own), else made in ``make_in`` with
    ``export_onnx`` (verified). Nothing in RUN/export is ever overwritten. The fp32 and int8
    models must match ``optimize``: a fused ``--optimize`` model (or an int8 one quantized from
    it) is not timed as the plain one, nor the reverse. ``scratch``: ``make_in`` is removed
    afterwards (``benchmark(write=False)``), and the notes say so rather than name it. Returns
    (files, failures, notes, written): ``written`` lists the files the export wrote in
    ``make_in`` (the models and export.json; none when reused, or in ``scratch``)."""
    from vitkit.export import export_onnx
    from vitkit.export.onnx import for_bench, optimize_note

    notes: list[str] = []
    files = _reused(lm, precisions, search, optimize, notes)
    missing = precisions - set(files)
    if not missing:
        return files, {}, notes, []
    progress("export", 0, 1)
    try:
        # a failure's hint names `vitkit export`'s flags, which bench lacks
        with for_bench(optimize=optimize):
            report = export_onnx(
                lm,
                make_in / "model.onnx",
                fp16="fp16" in missing,
                int8="dynamic" if "int8" in missing else None,
                optimize=optimize,
                verify_images=verify_images,
                data_root=data_root,
                download=False,
                threads=threads,
            )
    except Exception as e:  # any export failure skips the ONNX runtimes, never the benchmark
        why = str(e) if isinstance(e, VitkitError) else f"{type(e).__name__}: {first_line(e)}"
        return files, dict.fromkeys(missing, f"export failed: {why}"), notes, []
    progress("export", 1, 1)
    checks = ", ".join(
        f"{r.precision} {'passed' if r.passed else 'failed'}" for r in report.precisions
    )
    made_names = ", ".join(r.precision for r in report.precisions)  # fp32 always: fp16 is of it
    where = "a scratch folder, removed afterwards (write=False)" if scratch else make_in
    notes.append(f"exported {made_names} to {where} (verification: {checks})")
    if report.optimize:  # which fused variant the export kept, and how fast each was
        notes.extend(n for n in report.notes if n.startswith(optimize_note("")))
    made, failures = _verified(report, missing, make_in)
    return {**files, **made}, failures, notes, [] if scratch else list(report.files)


def _verified(
    report: ExportReport, missing: set[str], made_in: Path
) -> tuple[dict[str, Path], dict[str, str]]:
    """The files ``report`` made in ``made_in`` that passed verification, and why each other
    precision of ``missing`` has none."""
    files: dict[str, Path] = {}
    failures: dict[str, str] = {}
    for p in sorted(missing):
        try:
            rep = report.precision(p)
        except NotFoundError:
            failures[p] = f"export made no {p} model"
            continue
        if not rep.passed:
            failures[p] = "export failed verification: " + "; ".join(rep.failures)
        else:
            files[p] = made_in / ONNX_FILES[p]
    return files, failures


# -- data ------------------------------------------------------------------------------------------
def bench_data(
    lm: LoadedModel,
    *,
    dataset: str | None,
    images: int,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    progress: ProgressFn,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], list[str]]:
    """Normalised images (real test images when the run's dataset, or ``dataset``, is here; else
    synthetic), their labels (or None), a description, notes."""
    from vitkit.data import get_dataset_spec
    from vitkit.export.onnx import SYNTHETIC_NOTE, verification_data

    spec = get_dataset_spec(dataset) if dataset else None  # an unknown name fails here, named
    source = lm
    if dataset and dataset != lm.dataset:  # another dataset: its own default options
        # (a folder of the user's images is decoded at the model's size and channels, as eval does)
        options = {"image_size": lm.image_size, "channels": lm.channels}
        options = options if spec is not None and spec.name == "folder" else {}
        if options and lm.meta:  # a trained model: a folder of other classes, before decoding it
            from vitkit.eval.evaluate import check_folder_classes

            try:
                check_folder_classes(lm, dataset)
            except UserError as e:  # what data.foreign would say below, once it was all decoded
                raise UserError(f"{setting('dataset', dataset, flag='--data')}: {e}") from None
        source = replace(lm, dataset=dataset, meta={**lm.meta, "dataset_options": options})
    data = verification_data(
        source,
        data_root=data_root,
        verify_images=max(1, images),
        calib_images=0,  # nothing calibrates here: the test split alone is read
        download=download,
        progress=progress,
        trained=bool(lm.meta),
    )
    desc = data.describe()
    desc.pop("calibration_images", None)
    if dataset and data.foreign:  # images of classes the model does not know: no accuracy
        raise UserError(f"{setting('dataset', dataset, flag='--data')}: {data.foreign}")
    if (dataset or (download and lm.dataset)) and data.synthetic:
        # asked for by name, or to be downloaded: no silent stand-in
        why = data.why_synthetic
        fetchable = spec is not None and spec.name != "folder" and data.unavailable is not None
        hint = (
            f"; pass {setting('download', True)} to fetch it" if fetchable and not download else ""
        )
        asked = setting("dataset", dataset, flag="--data") if dataset else setting("download", True)
        raise UserError(f"{asked}: {why}{hint}")
    notes = [  # the export's wording; here nothing is verified, runtimes are compared
        "synthetic (uniform random) inputs: no accuracy figures, only each runtime's agreement "
        "with eager"
        if n == SYNTHETIC_NOTE
        else n
        for n in data.notes
    ]
    return data.images, data.labels, desc, notes


def _inputs(images: np.ndarray, batch: int) -> torch.Tensor:
    """The first ``batch`` images (repeated when there are fewer) as one CPU float32 tensor."""
    reps = -(-batch // len(images))
    x = np.concatenate([images] * reps)[:batch] if reps > 1 else images[:batch]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


@dataclass(frozen=True)
class _Data:
    """The images every cell is timed on, those scored for accuracy, and the data's report."""

    images: np.ndarray  # at least one: a timed batch repeats them if short
    scored: np.ndarray  # the first --accuracy-images of them
    labels: np.ndarray | None  # of the scored images (None: unlabelled)
    desc: dict[str, Any]


def _bench_images(
    lm: LoadedModel,
    accuracy_images: int,
    dataset: str | None,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    notes: list[str],
    progress: ProgressFn,
) -> _Data:
    """The images to time and score: real test images when the dataset is here, else synthetic
    (agreement only); the data's notes go to ``notes``."""
    with _step(progress, "data"):
        # the accuracy images, whatever the batch sizes
        images, labels, desc, data_notes = bench_data(
            lm,
            dataset=dataset,
            images=max(1, accuracy_images),
            data_root=data_root,
            download=download,
            progress=progress,
        )
        notes.extend(data_notes)
        if not accuracy_images:  # one image to time with, none scored: not "1 of N, labelled"
            desc = {**desc, "images": 0, "labelled": False}
            zero = setting("accuracy_images", 0)
            desc["source"] = f"{desc['source']}; timing inputs only ({zero})"
        scored_labels = labels[:accuracy_images] if labels is not None else None
        return _Data(images, images[:accuracy_images], scored_labels, desc)


# -- the benchmark -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    """The checked options of one benchmark: what is timed, where, and for how long."""

    names: list[str] | None  # the runtimes asked for (None: each device's defaults)
    devs: list[torch.device]
    sizes: list[int]
    warmup: int
    min_time: float
    rounds: int
    accuracy_images: int
    compile_mode: str

    @property
    def accuracy_batch(self) -> int:
        """The batch the outputs are scored at: int8 dynamic's logits depend on it a little."""
        return max(self.sizes)


def _checked(
    runtimes: str | Sequence[str] | None,
    devices: str | Sequence[str],
    batch_sizes: str | Sequence[int],
    warmup: int,
    min_time: float,
    rounds: int,
    accuracy_images: int,
    compile_mode: str,
) -> _Options:
    """The options as ``_Options``, or a one-line ``UserError`` for the first one that is wrong."""
    check_int(setting("warmup"), warmup, 0)
    check_seconds(setting("min_time"), min_time)
    check_int(setting("rounds"), rounds)
    check_int(setting("accuracy_images"), accuracy_images, 0)
    check_str("compile_mode", compile_mode)  # 5: an AttributeError from the closest-name search
    if compile_mode not in COMPILE_MODES:
        raise UserError(
            f"unknown {setting('compile_mode')} '{compile_mode}'"
            f"{suggest(compile_mode, COMPILE_MODES)} "
            f"(modes: {', '.join(COMPILE_MODES)})"
        )
    names = parse_runtimes(runtimes)
    devs = parse_devices(devices)
    sizes = parse_batch_sizes(batch_sizes)
    return _Options(names, devs, sizes, warmup, min_time, rounds, accuracy_images, compile_mode)


def _out_dir(lm: LoadedModel, out: str | os.PathLike[str] | None) -> Path:
    """Where the report goes: ``out``, else RUN/bench beside the weights benchmarked, else
    bench/<model> for a bare module."""
    if out is not None:
        return Path(out)
    return lm.output_dir("bench") if lm.meta else Path("bench") / lm.spec.name


# -- the benchmark -------------------------------------------------------------------------------
def benchmark(
    source: LoadedModel | nn.Module | str | os.PathLike[str],
    *,
    runtimes: str | Sequence[str] | None = None,
    devices: str | Sequence[str] = ("cpu", "cuda"),
    batch_sizes: str | Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: int | None = None,
    warmup: int = 10,
    min_time: float = 2.0,
    rounds: int = 3,
    dataset: str | None = None,
    accuracy_images: int = 1000,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = False,
    out: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    plot_path: str | os.PathLike[str] | None = None,
    compile_mode: str = "default",
    optimize: bool = False,
    command: str | None = None,
    write: bool = True,
    progress: ProgressFn = no_progress,
) -> BenchReport:
    """Benchmark a run (directory or ``LoadedModel``) or a registry-built module.

    ``runtimes``: names from ``list_runtimes()`` (default: each device's set; eager fp32 is
    always measured, as the baseline). ``devices``: "cpu", "cuda" or both ("auto": cuda where
    there is one, else cpu); runtimes that cannot run here are reported as skipped with the
    reason, never dropped. Each (runtime, batch)
    cell: ``warmup`` calls discarded, then ``rounds`` interleaved rounds of ``min_time /
    rounds`` seconds each. Accuracy: top-1 of every runtime on ``accuracy_images`` test images
    of the run's dataset (or ``dataset``). ``optimize``: ONNX models made with
    ``export_onnx(optimize=True)`` (fused variants, kept only if faster). Writes bench.json,
    bench.csv and bench.png to ``out`` (default RUN/bench, or bench/<model> for a bare module),
    and the ONNX exports it has to make to ``out``/export, unless ``write`` is False: then
    nothing is written there, and those exports go to a scratch folder removed at the end
    (current ones already in RUN/export or ``out``/export are still reused).

    Returns a ``BenchReport``: ``rows`` (one ``BenchRow`` per cell: latency percentiles,
    images/s, ``speedup`` over eager, ``accuracy``, ...), ``row(runtime, batch)``,
    ``result(runtime)``, ``to_json()`` (bench.json, as ``vitkit bench --json`` prints it).
    Raises ``UserError`` for an unknown runtime, device or compile mode, bad batch sizes,
    counts or times, a run it cannot load, or an argument of the wrong type (``write="no"``,
    ``out=5``); a runtime that cannot run here is a skipped row, not an error.
    """
    from vitkit import __version__
    from vitkit.export.onnx import loaded_for_export, versions

    t_start = time.perf_counter()
    cfg = _checked(
        runtimes, devices, batch_sizes, warmup, min_time, rounds, accuracy_images, compile_mode
    )
    download, optimize, write = (
        check_bool(name, value)  # write="no" wrote: any truthy value passed as a flag
        for name, value in (("download", download), ("optimize", optimize), ("write", write))
    )
    for name, path in (
        ("data_root", data_root),
        ("out", out),
        ("csv_path", csv_path),
        ("plot_path", plot_path),
    ):
        check_path(name, path, optional=True)
    if command is not None:
        check_str("command", command)
    check_callable("progress", progress)
    lm = loaded_for_export(source)
    out_dir = _out_dir(lm, out)
    if write:  # before minutes of timing, not after
        check_outputs(out_dir, csv_path, plot_path, lm if lm.meta else None)
    with _session(threads) as s:
        module = cpu_fp32(lm.model)
        module.eval()
        over = oversubscribed_note(s.threads)
        notes = [over] if over else []
        plan, results = _plan(cfg.names, cfg.devs, notes)
        notes.extend(_compile_mode_note(compile_mode, results))
        data = _bench_images(lm, accuracy_images, dataset, data_root, download, notes, progress)
        # write=False: the exports it must make go to the session's scratch folder, removed
        # at its end, so that nothing is written to OUT (nor reused from there by a later call)
        make_in = (out_dir if write else s.workdir) / "export"
        files, exported = _onnx_files(
            lm, plan, results, out_dir, make_in, data_root, s.threads, optimize, notes, progress
        )
        bm = _bench_model(lm, module, s, files, compile_mode)
        peaks = _peaks(cfg.devs, progress)
        s.stack.enter_context(_fresh_dynamo(_graphs(plan, results, cfg.sizes)))
        _prepare(plan, results, bm, s.runners, progress)
        cells = _time(s.runners, results, data.images, cfg, progress)
        peaks = _peaks_again(peaks, cfg.devs, notes, progress)
        at = _scoring_batches(s.runners, cells, cfg.accuracy_batch)
        ref_acc = _score(s.runners, results, module, data.scored, data.labels, at, progress)
        notes.extend(_smaller_batch_notes(results, at, cfg.accuracy_batch, len(data.scored)))
        notes.extend(_nonfinite_note(results, len(data.scored)))
        flops = model_flops(module)
        rows = _rows(cells.timings, results, flops, peaks)
        # as rows: only a runtime still "ok" has cells (scoring records accuracy_error and
        # keeps it ok; the filter holds should a later step fail one as a whole)
        untimed = [c for c in cells.untimed if results[(c.runtime, c.device)].status == "ok"]
        notes.extend(_baseline_notes(rows, results, untimed))
        notes.extend(_caveats(rows, peaks, cells, s.threads))
        if not write:  # the scratch folder goes with the session: its files are not kept
            _forget_files_in(s.workdir, results)
    report = BenchReport(
        schema_version=SCHEMA_VERSION,
        vitkit_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command,
        run=str(lm.weights_file or lm.path) if lm.meta else None,
        model=lm.spec.to_dict(),
        params=sum(p.numel() for p in module.parameters()),
        flops_per_image=flops,
        machine=_machine(cfg.devs, cells),
        versions=_versions(versions()),
        threads=_threads(results, s.threads, threads),
        settings=_settings(cfg, cells.settled, len(data.scored), optimize, lm),
        peaks=peaks,
        data=data.desc,
        reference_accuracy=ref_acc,
        runtimes=list(results.values()),
        rows=rows,
        untimed_cells=untimed,
        notes=notes,
        files=[],
        wall_seconds=round(time.perf_counter() - t_start, 2),
    )
    if write:
        report.write(
            out_dir,
            csv_path=Path(csv_path) if csv_path else None,
            plot_path=Path(plot_path) if plot_path else None,
            exports=exported,
        )
    return report


def check_outputs(
    out_dir: Path,
    csv_path: str | os.PathLike[str] | None,
    plot_path: str | os.PathLike[str] | None,
    run: LoadedModel | None = None,
) -> None:
    """One-line errors for output paths that cannot be written, checked before the benchmark:
    a file where a folder is needed, a folder that refuses files, ``--out`` on the run itself
    (bench's exports would replace ``vitkit export``'s), ``--csv``/``--plot`` not named .csv/.png
    (``--plot weights.safetensors`` replaced the weights with a PNG), ``--plot`` without
    matplotlib."""
    out = setting("out", out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out} is a file, not a folder")
    if (b := file_in_the_way(out_dir)) is not None:
        raise UserError(f"{out}: {b} is a file, not a folder")
    _check_not_a_run(out_dir, run)
    check_writable(out_dir, out)
    for param, flag, value, suffix in (
        ("csv_path", "--csv", csv_path, ".csv"),
        ("plot_path", "--plot", plot_path, ".png"),
    ):
        if value is not None:
            _check_file(param, flag, Path(value), suffix)
    if plot_path is not None and importlib.util.find_spec("matplotlib") is None:
        plot = setting("plot_path", plot_path, flag="--plot")
        raise UserError(f"{plot} needs matplotlib: pip install 'vitkit[plot]'")


def _check_not_a_run(out_dir: Path, run: LoadedModel | None) -> None:
    """A one-line error when ``out_dir`` is ``run`` itself, another run, or a run's export
    folder: bench's exports and reports would replace or mix with ``vitkit export``'s files."""
    exports = run.output_dir("export") if run is not None else None
    default = f" (default {run.output_dir('bench')})" if run is not None else ""
    out = setting("out", out_dir)
    if run is not None and out_dir.resolve() == run.path.resolve():
        raise UserError(
            f"{out} is the run itself: bench's own exports would replace those of "
            f"`vitkit export` in {run.path / 'export'}; name another folder{default}"
        )
    if (out_dir / MODEL_JSON).is_file():  # another run: its exports would be replaced
        raise UserError(
            f"{out} is a run directory: bench's own exports would replace its "
            f"`vitkit export` files in {out_dir / 'export'}; name another folder{default}"
        )
    seen = {Path(os.path.abspath(out_dir)), out_dir.resolve()}  # as given, and a link's target
    theirs = {Path(os.path.abspath(exports)), exports.resolve()} if exports is not None else set()
    if seen & theirs or any(p.name == "export" and (p.parent / MODEL_JSON).is_file() for p in seen):
        raise UserError(
            f"{out} is a run's export folder: bench's reports and exports would mix "
            f"with `vitkit export`'s files; name another folder{default}"
        )


def _check_file(param: str, flag: str, path: Path, suffix: str) -> None:
    """A one-line error when ``path`` cannot be the ``suffix`` file that ``param`` (``flag`` on
    the command line) writes."""
    given = setting(param, path, flag=flag)
    if path.is_dir():
        raise UserError(f"{given} is a folder; give a file name")
    if path.suffix.lower() != suffix:
        raise UserError(f"{setting(param, flag=flag)} must name a {suffix} file, got {path}")
    if (b := file_in_the_way(path)) is not None:
        raise UserError(f"{given}: {b} is a file, not a folder")
    check_writable(path.parent, given)


def _busy_notes(
    rows: list[BenchRow], load: list[float] | None, threads: int, other_cores: float | None
) -> list[str]:
    """Say so when other work shared the CPU: a speed-up of 1,000x from a busy machine must not
    read as a result. Three signs: the CPU time other processes took while the cells were timed
    (``other_cores``), the load average (less this benchmark's own threads) and cells whose p90
    is over ``UNSTEADY_P90`` x their p50."""
    cpu = [r for r in rows if r.device == "cpu"]
    notes: list[str] = []
    busy = busy_note(load, threads, other_cores, "while the cells were timed")
    if cpu and busy:
        notes.append(busy)
    unstable = [r for r in rows if r.p90_ms > UNSTEADY_P90 * r.p50_ms]
    if unstable:
        shown = listed([f"{r.runtime} batch {r.batch} ({r.device})" for r in unstable], 4)
        notes.append(
            f"unsteady timings (p90 over {UNSTEADY_P90:g}x p50): {shown}; something else "
            "was running, so compare those cells with care"
        )
    return notes


# -- the phases --------------------------------------------------------------------------------
Key = tuple[str, str]  # (runtime, device)


@dataclass
class _Session:
    """What a benchmark borrows from the process, given back by ``_session`` whatever happens."""

    threads: int  # the intra-op threads of torch and of every ONNX Runtime session
    workdir: Path
    runners: dict[Key, Runner] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@contextlib.contextmanager
def _session(threads: int | None) -> Iterator[_Session]:
    """A ``_Session`` with ``threads`` set and a scratch folder; on the way out, its runners are
    closed, the folder removed and the caller's thread count restored."""
    threads_before = torch.get_num_threads()
    s = _Session(set_threads(threads), Path(tempfile.mkdtemp(prefix="vitkit-bench-")))
    try:
        yield s
    finally:
        s.stack.close()
        for runner in s.runners.values():
            with contextlib.suppress(Exception):
                runner.close()
        s.runners.clear()
        gc.collect()
        shutil.rmtree(s.workdir, ignore_errors=True)
        torch.set_num_threads(threads_before)  # the caller's setting, as it was


@contextlib.contextmanager
def _step(progress: ProgressFn, what: str) -> Iterator[None]:
    """Report ``what`` as begun, and as done only if the block ends without an error."""
    progress(what, 0, 1)
    yield
    progress(what, 1, 1)


def _plan(
    names: list[str] | None, devs: list[torch.device], notes: list[str]
) -> tuple[list[tuple[str, torch.device]], dict[Key, RuntimeResult]]:
    """(runtime, device) pairs, eager first on every device (the baseline), and their results:
    "ok" so far, or "skipped" with the reason it cannot run here."""
    plan: list[tuple[str, torch.device]] = []
    for d in devs:
        chosen = names if names is not None else default_runtimes(d)
        if "eager" not in chosen:
            chosen = ["eager", *chosen]
            if names is not None and get_runtime("eager").why_not(d) is None:  # not on no CUDA
                notes.append(f"eager fp32 added on {d}: it is the baseline of every speed-up")
        plan.extend((n, d) for n in chosen)
    results: dict[Key, RuntimeResult] = {}
    for n, d in plan:
        rt = get_runtime(n)
        reason = rt.why_not(d)
        results[(n, str(d))] = RuntimeResult(
            runtime=n,
            device=str(d),
            description=rt.description,
            precision=rt.precision,
            status="skipped" if reason else "ok",
            reason=reason,
        )
    return plan, results


def _live(
    plan: list[tuple[str, torch.device]], results: dict[Key, RuntimeResult]
) -> list[tuple[str, torch.device]]:
    """The (runtime, device) pairs of ``plan`` that are still "ok"."""
    return [(n, d) for n, d in plan if results[(n, str(d))].status == "ok"]


def _compile_mode_note(compile_mode: str, results: dict[Key, RuntimeResult]) -> list[str]:
    """A note when ``--compile-mode reduce-overhead`` meets torch.compile on the CPU (else none)."""
    on_cpu = results.get(("compile", "cpu"))
    if compile_mode != "reduce-overhead" or not on_cpu or on_cpu.status != "ok":
        return []
    return [  # CUDA graphs are its point; the CPU has none to capture
        f"{setting('compile_mode', 'reduce-overhead')} captures CUDA graphs: on the CPU it "
        "compiles as 'default' does"
    ]


def _onnx_files(
    lm: LoadedModel,
    plan: list[tuple[str, torch.device]],
    results: dict[Key, RuntimeResult],
    out_dir: Path,
    make_in: Path,
    data_root: str | os.PathLike[str] | None,
    threads: int,
    optimize: bool,
    notes: list[str],
    progress: ProgressFn,
) -> tuple[dict[str, Path], list[str]]:
    """The ONNX file of each precision the planned ONNX runtimes need (reused from RUN/export or
    OUT/export, else made in ``make_in``: OUT/export, or a scratch folder), and the files made
    in OUT/export (for the report's ``files``); a runtime whose file could not be made is marked
    skipped, with the reason."""
    needed = {ONNX_PRECISION[n] for n, _ in _live(plan, results) if n in ONNX_PRECISION}
    if not needed:
        return {}, []
    own = out_dir / "export"
    files, failures, export_notes, written = ensure_exports(
        lm,
        needed,
        [lm.output_dir("export"), own] if lm.meta else [own],
        make_in,
        data_root=data_root,
        verify_images=VERIFY_IMAGES,  # the int8 gate (0.5 points) needs ~1,000 images
        threads=threads,
        progress=progress,
        optimize=optimize,
        scratch=make_in != own,
    )
    notes.extend(export_notes)
    for (n, _), res in results.items():
        if res.status == "ok" and ONNX_PRECISION.get(n) in failures:
            res.status, res.reason = "skipped", failures[ONNX_PRECISION[n]]
    return files, written


def _bench_model(
    lm: LoadedModel, module: nn.Module, s: _Session, files: dict[str, Path], compile_mode: str
) -> BenchModel:
    """What every runtime prepares its runner from; asking for an ONNX precision that has no
    file in ``files`` raises ``Skip``."""

    def onnx_file(precision: str) -> Path:
        if precision not in files:
            raise Skip(f"no {precision} ONNX model")
        return files[precision]

    return BenchModel(
        module=module,
        image_size=lm.image_size,
        channels=lm.channels,
        threads=s.threads,
        workdir=s.workdir,
        onnx_file=onnx_file,
        compile_mode=compile_mode,
    )


def _graphs(
    plan: list[tuple[str, torch.device]], results: dict[Key, RuntimeResult], sizes: list[int]
) -> int:
    """How many graphs torch.compile will build: one per batch size and one for the accuracy
    pass, for each torch.compile runtime still "ok"."""
    compiles = sum(n == "compile" for n, _ in _live(plan, results))
    return compiles * (len(sizes) + 1)


def _prepare(
    plan: list[tuple[str, torch.device]],
    results: dict[Key, RuntimeResult],
    bm: BenchModel,
    runners: dict[Key, Runner],
    progress: ProgressFn,
) -> None:
    """Put a runner into ``runners`` for each pair still "ok" (as soon as it is made, so that it
    is closed whatever happens next); one that cannot be made is recorded in ``results``."""
    for n, d in _live(plan, results):
        with _step(progress, f"prepare {n} ({d})"), _recorded(results, (n, str(d))), _on(str(d)):
            runners[(n, str(d))] = get_runtime(n).prepare(bm, d)


def _on(device: str) -> contextlib.AbstractContextManager[Any]:
    """Make ``device`` the current CUDA device (events, streams and synchronise act on the
    current one); a no-op for the CPU."""
    d = torch.device(device)
    if d.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(d)


@contextlib.contextmanager
def _fresh_dynamo(graphs: int) -> Iterator[None]:
    """For ``graphs`` > 0 compiled shapes: start from a fresh torch.compile cache (graphs of
    earlier models count against the recompile limit, since every ViT shares one ``forward``),
    allow ``graphs`` recompiles, and make hitting the limit an error rather than a silent fall
    back to eager that would be timed as "compile"."""
    if graphs <= 0:
        yield
        return
    import torch._dynamo

    torch._dynamo.reset()
    cfg = torch._dynamo.config
    patch: dict[str, Any] = {}
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            patch[name] = max(int(getattr(cfg, name)), graphs + 8)
    for name in ("fail_on_recompile_limit_hit", "fail_on_cache_limit_hit"):
        if hasattr(cfg, name):
            patch[name] = True
    with cfg.patch(patch):
        yield


@contextlib.contextmanager
def _recorded(results: dict[Key, RuntimeResult], key: Key, where: str = "") -> Iterator[None]:
    """A runtime that cannot run (``Skip``) or breaks is recorded, never raised: it must not
    take the other runtimes down."""
    try:
        yield
    except Skip as e:
        results[key].status, results[key].reason = "skipped", str(e)
    except Exception as e:
        results[key].status = "failed"
        results[key].reason = f"{where}{type(e).__name__}: {first_line(e)}"


def _peaks(devs: list[torch.device], progress: ProgressFn) -> list[dict[str, Any]]:
    """The yardsticks: a GEMM per device, fp32 (and bf16 on CUDA)."""
    peaks = []
    for d in devs:
        if d.type == "cuda" and not torch.cuda.is_available():
            continue
        for dt in [torch.float32] + ([torch.bfloat16] if d.type == "cuda" else []):
            with _step(progress, f"matmul peak {d} {str(dt).removeprefix('torch.')}"), _on(str(d)):
                peaks.append(matmul_peak(d, dtype=dt))
    return peaks


def _higher(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each yardstick as the higher of its two measurements (before and after the cells), both
    recorded: the machine's ceiling, as near as this run saw it."""
    out = []
    for a, b in zip(before, after, strict=True):
        out.append({**max(a, b, key=lambda p: p["gflops"]), "measured": [a["gflops"], b["gflops"]]})
    return out


def _peaks_again(
    peaks: list[dict[str, Any]], devs: list[torch.device], notes: list[str], progress: ProgressFn
) -> list[dict[str, Any]]:
    """``peaks`` timed again after the cells, each the higher of its two measurements: a load
    spike may have sunk the first. If that fails the first stands, with a note."""
    try:
        return _higher(peaks, _peaks(devs, progress))
    except Exception as e:  # a cell left CUDA out of memory, say: never lose the timings
        notes.append(f"the matmul peak was timed once (again after the cells: {first_line(e)})")
        return [{**p, "measured": [p["gflops"]]} for p in peaks]


def _over_peak_note(rows: list[BenchRow], peaks: list[dict[str, Any]]) -> list[str]:
    """A share over 100% of the GEMM yardstick: the yardstick was measured low (the machine was
    busy both times), not a model faster than the machine's matmul."""
    over = [r for r in rows if r.peak_share is not None and r.peak_share > 1.0]
    if not over:
        return []
    seen = "; ".join(
        f"{p['device']} {p['dtype']} {' and '.join(f'{g:g}' for g in p['measured'])}" for p in peaks
    )
    return [
        f"% peak over 100% in {len(over)} cell(s) (up to {max(r.peak_share or 0 for r in over):.0%}): "
        f"the matmul peak was measured low, the machine busy both times (GFLOP/s: {seen}); "
        "read % peak with care"
    ]


@dataclass(frozen=True)
class _Cells:
    """The timed cells' samples, and what the machine did while they were timed."""

    timings: dict[tuple[str, str, int], list[float]]  # (runtime, device, batch) -> seconds
    settled: float  # the longest wait for idle threads before a cell
    stayed_busy: int  # cells before which a thread of this process stayed busy
    other_cores: float | None  # cores other processes used on average (None: not known)
    load: list[float] | None  # 1, 5, 15 min load average when the timing ended (None: not known)
    untimed: list[UntimedCell]  # where a runtime timed at smaller batch sizes broke, and after


def _time(
    runners: dict[Key, Runner],
    results: dict[Key, RuntimeResult],
    images: np.ndarray,
    cfg: _Options,
    progress: ProgressFn,
) -> _Cells:
    """Per batch size: every runner on the same tensor, timed in interleaved rounds, each cell
    started once the process is idle (``settle``; after a thread stayed busy through a whole
    wait, waits are cut short). A runner that breaks is not tried at larger batch sizes.
    Returns the samples, the cells not timed, and what the machine did meanwhile."""
    others = OtherCpuUse()  # over the timed calls
    sizes, warmup, min_time, rounds = cfg.sizes, cfg.warmup, cfg.min_time, cfg.rounds
    timings: dict[tuple[str, str, int], list[float]] = {}
    longest, limit, stayed_busy = 0.0, SETTLE_LIMIT, 0
    total, done = len(sizes) * rounds * max(1, len(runners)), 0
    min_runs = -(-5 // rounds)  # at least 5 timed calls per cell over all rounds
    broke_at: dict[Key, int] = {}  # the batch size each runner failed (or was skipped) at
    for b in sizes:
        x = _inputs(images, b)
        calls: dict[Key, Any] = {}
        for key, runner in runners.items():
            if results[key].status != "ok":  # failed at an earlier batch size: its reason stays
                continue
            with _recorded(results, key, f"batch {b}: "), _on(key[1]):
                calls[key] = runner.bind(x)
            if results[key].status != "ok":
                broke_at[key] = b
        for r in range(rounds):
            for key, call in calls.items():
                if results[key].status != "ok":
                    continue
                progress("timing", done, total)
                waited = settle(limit=limit)  # the last cell's threads stop spinning
                longest = max(longest, waited)
                if waited >= limit:  # something never stops: say so, and stop paying for it
                    stayed_busy, limit = stayed_busy + 1, SETTLE_SHORT
                with _recorded(results, key, f"batch {b}: "), _on(key[1]):
                    t = measure(
                        call,
                        warmup=warmup if r == 0 else min(warmup, 2),
                        min_time=min_time / rounds,
                        min_runs=min_runs,
                        cuda=runners[key].cuda_timing,
                        others=others,
                    )
                    timings.setdefault((*key, b), []).extend(t.samples)
                if results[key].status != "ok":
                    broke_at[key] = b
                done += 1
    progress("timing", total, total)
    untimed = _untimed(timings, results, broke_at, sizes)
    return _Cells(timings, longest, stayed_busy, others.cores(), load_average(), untimed)


def _untimed(
    timings: dict[tuple[str, str, int], list[float]],
    results: dict[Key, RuntimeResult],
    broke_at: dict[Key, int],
    sizes: list[int],
) -> list[UntimedCell]:
    """The cells not timed of each runner that broke at a batch size after smaller ones were
    timed (out of memory at 64, say): that one failed (its earlier rounds' samples go) and the
    larger ones were not tried. Such a runner is "ok" again, its timed cells kept; one that broke
    at its first batch size stays failed (or skipped) as a whole, with "batch N: " in the reason."""
    cells: list[UntimedCell] = []
    for key, b in broke_at.items():
        res = results[key]
        timings.pop((*key, b), None)  # cut short: not a cell's figures
        if not any((*key, s) in timings for s in sizes if s < b):
            continue
        reason = (res.reason or "").removeprefix(f"batch {b}: ")
        cells.append(UntimedCell(key[0], key[1], b, res.precision, res.status, reason))
        after = f"not tried: batch {b} {'failed' if res.status == 'failed' else 'was skipped'}"
        cells.extend(
            UntimedCell(key[0], key[1], s, res.precision, "skipped", after) for s in sizes if s > b
        )
        res.status, res.reason = "ok", None
    return cells


def _score(
    runners: dict[Key, Runner],
    results: dict[Key, RuntimeResult],
    module: nn.Module,
    images: np.ndarray,
    labels: np.ndarray | None,
    at: dict[Key, int],
    progress: ProgressFn,
) -> float | None:
    """Every runner's logits on the same images, in chunks of its batch size in ``at``: top-1,
    agreement with and max |difference| from eager fp32 on the CPU; a runner whose outputs
    raise gets ``accuracy_error`` instead (``_unscored``). Returns eager's own top-1 (None
    without labels)."""
    from vitkit.export.onnx import top1  # not at import: `import vitkit` stays light

    live = [(k, r) for k, r in runners.items() if results[k].status == "ok"]
    for key, runner in live:
        results[key].size_bytes = runner.size_bytes
        results[key].info = dict(runner.info)
    if not len(images):
        return None
    # the reference is eager fp32 on the CPU in the runners' chunks of its batch: eager's own
    # row is then exact (in chunks of 64, eager at batch 1 differed from itself by ~1e-6, and
    # the header's eager top-1 could differ from its row's), and eager's outputs are reused
    own = dict(live).get(("eager", "cpu"))
    reference = None
    if own is not None:
        with contextlib.suppress(Exception):  # its failure is recorded below, as any runner's
            reference = own.outputs(images, at[("eager", "cpu")])
    if reference is None:  # --device cuda (no eager runner on the CPU), or eager failed
        own = None
        with torch.inference_mode():
            chunks = [module(torch.from_numpy(images[i : i + 64])) for i in range(0, len(images), 64)]  # fmt: skip
        reference = torch.cat(chunks).numpy()
    truth = labels.reshape(-1) if labels is not None else None
    # eager's own non-finite images (a diverged run's weights): no reference there, and wrong
    ref_finite = np.isfinite(reference.reshape(len(reference), -1)).all(axis=1)
    per_image = len(top1(reference)) // len(images)  # positions of a multi-output model
    for i, (key, runner) in enumerate(live):
        progress("accuracy", i, len(live))
        res = results[key]
        with _unscored(res, at[key]), _on(key[1]):
            # a batch size already compiled / built
            logits = reference if runner is own else runner.outputs(images, at[key])
            # NaN or inf (an fp16 overflow, damaged weights): such an image's answer is wrong,
            # never argmax's pick among NaNs, and Δ eager is that of the finite ones (a NaN
            # maximum was null in bench.json, read as "not measured"); a note names the count
            finite = np.isfinite(logits.reshape(len(logits), -1)).all(axis=1)
            both = finite & ref_finite
            diff = np.abs(logits[both].astype(np.float64) - reference[both])
            res.max_abs_diff = float(diff.max()) if diff.size else None
            if not finite.all():
                res.info["nonfinite_images"] = int((~finite).sum())
            answered = np.repeat(finite, per_image)
            agreed = (top1(logits) == top1(reference)) & np.repeat(both, per_image)
            res.top1_agreement = float(agreed.mean())
            if truth is not None:
                res.accuracy = float(((top1(logits) == truth) & answered).mean())
        res.info = dict(runner.info) | {  # compile time grows with the shapes compiled
            k: v for k, v in res.info.items() if k == "nonfinite_images"
        }
    progress("accuracy", len(live), len(live))
    right = (top1(reference) == truth) & np.repeat(ref_finite, per_image) if truth is not None else None  # fmt: skip
    return None if right is None else float(right.mean())


@contextlib.contextmanager
def _unscored(res: RuntimeResult, batch: int) -> Iterator[None]:
    """A runtime whose outputs could not be scored (in batches of ``batch``) keeps its timed
    cells, status "ok": its accuracy, agreement and Δ eager are None and ``accuracy_error``
    says why (it was "failed" as a whole, its rows dropped though their latency was real)."""
    try:
        yield
    except Exception as e:
        res.accuracy = res.top1_agreement = res.max_abs_diff = None
        res.info.pop("nonfinite_images", None)
        res.accuracy_error = f"outputs in batches of {batch}: {type(e).__name__}: {first_line(e)}"


def _scoring_batches(
    runners: dict[Key, Runner], cells: _Cells, accuracy_batch: int
) -> dict[Key, int]:
    """The batch size each runner is scored at: ``accuracy_batch`` (the largest), or, for one
    that broke at a larger batch size, the largest it was timed at (out of memory at 64, it
    would be again)."""
    at = dict.fromkeys(runners, accuracy_batch)
    for c in cells.untimed:
        key = (c.runtime, c.device)
        at[key] = max(b for n, d, b in cells.timings if (n, d) == key)
    return at


def _smaller_batch_notes(
    results: dict[Key, RuntimeResult], at: dict[Key, int], accuracy_batch: int, scored: int
) -> list[str]:
    """A note for each runner scored at a smaller batch size than the others (recorded in its
    ``info.accuracy_batch``): an int8 dynamic model's answers move a little with the batch."""
    notes = []
    for key, b in at.items():
        res = results[key]
        if b == accuracy_batch or not scored or res.status != "ok":
            continue
        res.info["accuracy_batch"] = b
        if res.accuracy_error is not None:  # tried at b, and it failed: the table says so
            continue
        notes.append(
            f"{res.runtime} ({res.device}) was scored in batches of {b}, the largest it was "
            f"timed at, not {accuracy_batch} (settings.accuracy_batch) as the others"
        )
    return notes


def _baseline_notes(
    rows: list[BenchRow], results: dict[Key, RuntimeResult], untimed: list[UntimedCell]
) -> list[str]:
    """A note for each device where rows have no speed-up because eager fp32, their baseline,
    was not timed at their batch size (it broke there or at a smaller one, or did not run),
    saying why: the table shows "-" there, and nothing else would explain it."""
    notes = []
    timed = {(r.device, r.batch) for r in rows if r.runtime == "eager"}
    for dev in dict.fromkeys(r.device for r in rows):
        missing = sorted({r.batch for r in rows if r.device == dev and (dev, r.batch) not in timed})
        if not missing:
            continue
        cells = [c for c in untimed if (c.runtime, c.device) == ("eager", dev)]
        cells.sort(key=lambda c: c.batch)
        if cells:  # timed at smaller batch sizes: the first cell not timed says why
            first = cells[0]
            why = f"it {first.status} at batch {first.batch}: {first.reason}"
            why += "; larger ones were not tried" if len(cells) > 1 else ""
        else:
            eager = results.get(("eager", dev))
            why = "it did not run"
            if eager is not None:  # "batch 1: RuntimeError: ..." as "it failed at batch 1: ..."
                at, sep, rest = (eager.reason or "").partition(": ")
                where = f" at {at}" if sep and re.fullmatch(r"batch \d+", at) else ""
                why = f"it {eager.status}{where}: {rest if where else eager.reason}"
        notes.append(
            f"no speed-up on {dev} at batch {', '.join(map(str, missing))}: eager fp32, the "
            f"baseline, was not timed there ({why})"
        )
    return notes


def _forget_files_in(folder: Path, results: dict[Key, RuntimeResult]) -> None:
    """``info["file"]`` None for each runtime whose file was in ``folder``, the session's
    scratch folder, removed when ``benchmark(write=False)`` returns (a note says the exports
    were made there): the report must not name a file that is gone."""
    for res in results.values():
        file = res.info.get("file")
        if file is not None and Path(file).is_relative_to(folder):
            res.info["file"] = None


def _nonfinite_note(results: dict[Key, RuntimeResult], scored: int) -> list[str]:
    """A note naming each runtime that gave NaN or infinite logits on some of the ``scored``
    images."""
    bad = [
        f"{r.runtime} ({r.device}) on {r.info['nonfinite_images']}"
        for r in results.values()
        if r.info.get("nonfinite_images")
    ]
    if not bad:
        return []
    return [
        f"non-finite logits (NaN or inf) from {listed(bad, 4)} of the {scored} scored images: "
        "those "
        "count as wrong in top-1 and agreement, and Δ eager is over the other images "
        "(an fp16 overflow or a damaged export)"
    ]


def _rows(
    timings: dict[tuple[str, str, int], list[float]],
    results: dict[Key, RuntimeResult],
    flops: int | None,
    peaks: list[dict[str, Any]],
) -> list[BenchRow]:
    """A row per timed cell of a runtime still "ok", in the order of the plan within each
    device and batch size."""
    peak_of = {(p["device"], p["dtype"]): p["gflops"] for p in peaks}
    rows: list[BenchRow] = []
    for (n, dev, b), samples in timings.items():
        res = results[(n, dev)]
        if res.status != "ok":
            continue
        tm = Timing(samples)
        base = timings.get(("eager", dev, b))
        speedup = Timing(base).p50 / tm.p50 if base and results[("eager", dev)].status == "ok" else None  # fmt: skip
        ips = b / tm.p50
        gflops = None if flops is None else flops * ips / 1e9
        # a share of a GEMM in the same arithmetic only: an int8 row against the fp32 GEMM
        # reads 200% and means nothing (there is no int8 or CPU half-precision yardstick)
        half = res.precision in ("bf16", "fp16") and dev.startswith("cuda")
        yardstick = "bfloat16" if half else "float32" if res.precision == "fp32" else None
        if res.info.get("tf32"):  # TensorRT's fp32 may run TF32 maths: not the fp32 GEMM's
            yardstick = None
        peak = peak_of.get((dev, yardstick)) if yardstick else None
        s = tm.summary()
        rows.append(
            BenchRow(
                runtime=n,
                device=dev,
                batch=b,
                precision=res.precision,
                p50_ms=s["p50_ms"],
                p90_ms=s["p90_ms"],
                p99_ms=s["p99_ms"],
                mean_ms=s["mean_ms"],
                runs=s["runs"],
                images_per_s=round(ips, 2),
                speedup=None if speedup is None else round(speedup, 3),
                gflops=None if gflops is None else round(gflops, 2),
                peak_share=None if not peak or gflops is None else round(gflops / peak, 4),
                size_bytes=res.size_bytes,
                accuracy=res.accuracy,
            )
        )
    order = {key: i for i, key in enumerate(results)}
    rows.sort(key=lambda r: (r.device, r.batch, order[(r.runtime, r.device)]))
    return rows


def _caveats(
    rows: list[BenchRow], peaks: list[dict[str, Any]], cells: _Cells, threads: int
) -> list[str]:
    """The notes on figures to read with care: a busy machine, a yardstick measured low, a
    thread that never went idle."""
    notes = _busy_notes(rows, cells.load, threads, cells.other_cores)
    notes.extend(_over_peak_note(rows, peaks))
    if cells.stayed_busy:
        notes.append(
            f"a thread in this process stayed busy through the wait before {cells.stayed_busy} "
            "timed cell(s) (settle: it never used under a quarter of a core), so those "
            "cells shared the cores with it; OMP_WAIT_POLICY=ACTIVE or a busy thread of "
            "your own does this"
        )
    return notes


# -- the report's sections -----------------------------------------------------------------------
def _machine(devs: list[torch.device], cells: _Cells) -> dict[str, Any]:
    """The machine: CPU, GPUs, platform, and how busy it was while the cells were timed."""
    return {
        "cpu": cpu_info(),
        "gpus": [gpu_info(d) for d in devs if d.type == "cuda" and torch.cuda.is_available()],
        "platform": platform.platform(),
        "load_average": cells.load,  # 1, 5, 15 min, read when the timing ended (None: not known)
        # cores other processes used on average while the cells were timed (None: not known)
        "other_cores": None if cells.other_cores is None else round(cells.other_cores, 3),
    }


def _threads(
    results: dict[Key, RuntimeResult], torch_threads: int, requested: int | None
) -> dict[str, Any]:
    """The intra-op threads torch and the ONNX Runtime sessions used, and whether they agree."""
    ort_threads = sorted(
        {int(r.info["ort_intra_op_threads"]) for r in results.values() if "ort_intra_op_threads" in r.info}
    )  # fmt: skip
    return {
        "torch": torch_threads,
        "onnxruntime": (ort_threads[0] if len(ort_threads) == 1 else ort_threads) or None,
        "requested": requested,
        "equal": all(t == torch_threads for t in ort_threads),
    }


def _settings(
    cfg: _Options, settled: float, scored: int, optimize: bool, lm: LoadedModel
) -> dict[str, Any]:
    """The settings the cells were timed and scored with."""
    return {
        "devices": [str(d) for d in cfg.devs],
        "runtimes": cfg.names,
        "batch_sizes": cfg.sizes,
        "warmup": cfg.warmup,
        "min_time_s": cfg.min_time,
        "rounds": cfg.rounds,
        "settle_max_s": round(settled, 3),  # longest wait for idle threads before a cell
        "compile_mode": cfg.compile_mode,
        "optimize": optimize,
        "accuracy_images": scored,
        "accuracy_batch": cfg.accuracy_batch,
        "image_size": lm.image_size,
        "channels": lm.channels,
    }


def _versions(base: dict[str, str]) -> dict[str, Any]:
    """``base`` with the CUDA and cuDNN versions and ONNX Runtime's providers."""
    import onnxruntime as ort

    out: dict[str, Any] = dict(base)
    out["cuda"] = torch.version.cuda
    out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    out["ort_providers"] = list(ort.get_available_providers())
    return out
