"""`vitkit export [RUN] --onnx`: a verified, self-describing ONNX model (+ fp16, int8) of a run.

Thin: the work is in ``vitkit.export``; this module turns options into ``export_onnx``'s
arguments and its ``ExportReport`` into a table (or one JSON document with --json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vitkit.cli._common import (
    Depth,
    EmbedDim,
    Heads,
    ImageSize,
    InChans,
    Json,
    MlpRatio,
    NumClasses,
    NumOutputs,
    PatchSize,
    Pool,
    console,
    emit_json,
    fail,
    model_overrides,
    options_given,
    progress_bar,
    run_or_model,
    status,
    user_errors,
)
from vitkit.errors import UserError

_O = "Output"
_V = "Verification"
_Q = "Precision"


def _opt(help: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel)


def _batch(value: str) -> str | int:
    if value == "dynamic":
        return value
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got '{value}'") from None
    if n < 1:
        raise UserError(f"--batch must be 'dynamic' or a positive integer, got {n}")
    return n


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


@user_errors
def export_command(
    ctx: typer.Context,
    run: Annotated[
        Path | None,
        typer.Argument(help="Run directory (default: the most recent one under ./runs)."),
    ] = None,
    onnx: Annotated[
        bool, _opt("Export to ONNX (the one format so far, and the default).", _O, "--onnx")
    ] = True,
    out: Annotated[
        Path | None,
        _opt(
            "The fp32 model file (default RUN/export/model.onnx, or RUN/checkpoint/export-last/"
            "model.onnx for RUN/checkpoint/last.safetensors; fp16/int8 go next to it as "
            "model.fp16.onnx / model.int8.onnx).",
            _O,
            "--out",
            "-o",
        ),
    ] = None,
    opset: Annotated[
        int | None,
        _opt(
            "ONNX opset, 17 to the newest torch's exporter writes (25 with onnxscript 0.7; 20 "
            "with --legacy-exporter). Default 20.",
            _O,
            "--opset",
        ),
    ] = None,
    batch: Annotated[
        str, _opt("Batch axis: 'dynamic', or a fixed size N.", _O, "--batch")
    ] = "dynamic",
    legacy_exporter: Annotated[
        bool,
        _opt("Use the TorchScript exporter instead of dynamo.", _O, "--legacy-exporter"),
    ] = False,
    fp16: Annotated[
        bool, _opt("Also write a float16 model (float32 inputs/outputs).", _Q, "--fp16")
    ] = False,
    int8: Annotated[
        str | None,
        _opt(
            "Also write an int8 model: 'dynamic' (weights int8, activations per batch), 'static' "
            "(QDQ calibrated on real training images; refused where none can be had) or 'auto' "
            "(build both, keep the faster one that passes the accuracy gate; dynamic only where "
            "no real training images can be had).",
            _Q,
            "--int8",
        ),
    ] = None,
    calib_images: Annotated[
        int, _opt("Training images that calibrate --int8 static.", _Q, "--calib-images")
    ] = 512,
    optimize: Annotated[
        bool,
        _opt(
            "Fused variants for ONNX Runtime (vitkit's attention fusion, ORT's transformer "
            "optimizer), each verified and raced against the plain model here; the fastest is "
            "kept. With --int8 dynamic, int8 is then quantized from the fused attention model.",
            _Q,
            "--optimize/--no-optimize",
        ),
    ] = False,
    verify: Annotated[
        bool,
        _opt(
            "Check every model against eager PyTorch (fails the export).",
            _V,
            "--verify/--no-verify",
        ),
    ] = True,
    verify_images: Annotated[
        int | None,
        _opt("Verify on this many test images (default: the whole test split).", _V),
    ] = None,
    atol: Annotated[
        float, _opt("fp32: max |logit difference| allowed against eager.", _V, "--atol")
    ] = 1e-4,
    int8_max_drop: Annotated[
        float,
        typer.Option(
            "--int8-max-drop",
            help="int8: how many points of top-1 accuracy it may fall below eager's (a negative "
            "value demands a gain; recorded in export.json as a fraction, "
            "tolerances.int8_max_drop).",
            rich_help_panel=_V,
            metavar="POINTS",
        ),
    ] = 0.5,  # Tolerances.int8_max_drop (0.005) in points; vitkit.export is imported lazily
    threads: Annotated[
        int | None,
        _opt(
            "Intra-op threads of ONNX Runtime and of the eager reference alike (default: torch's, "
            "one per core; recorded in export.json).",
            _V,
            "--threads",
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        _opt(
            "Where datasets live (default: the run's, else $VITKIT_DATA, else ~/.cache/vitkit/data).",
            _V,
            "--data-root",
        ),
    ] = None,
    no_download: Annotated[
        bool, _opt("Never download the run's dataset.", _V, "--no-download")
    ] = False,
    model: Annotated[
        str | None,
        _opt("Export an untrained registry model instead of a run.", "Model", "--model", "-m"),
    ] = None,
    image_size: ImageSize = None,
    patch_size: PatchSize = None,
    channels: InChans = None,
    num_classes: NumClasses = None,
    num_outputs: NumOutputs = None,
    embed_dim: EmbedDim = None,
    depth: Depth = None,
    heads: Heads = None,
    mlp_ratio: MlpRatio = None,
    pool: Pool = None,
    seed: Annotated[int, _opt("Seed of an untrained --model's weights.", "Model", "--seed")] = 0,
    json_: Json = False,
) -> None:
    """Export RUN to ONNX, verified against eager PyTorch on the run's test images.

    Writes RUN/export/: model.onnx (+ model.fp16.onnx, model.int8.onnx) with the classes and
    preprocessing in the model's metadata, and export.json (the verification report). A model
    that fails verification is kept as *.failed.onnx and the command exits 1.
    """
    from vitkit.export import Tolerances, export_onnx

    if not onnx:  # pragma: no cover - the flag has no off switch; kept for the future formats
        raise fail("only --onnx export exists so far")
    overrides = model_overrides(
        image_size=image_size,
        patch_size=patch_size,
        in_chans=channels,
        num_classes=num_classes,
        num_outputs=num_outputs,
        embed_dim=embed_dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        pool=pool,
    )
    source = run_or_model(run, model, overrides, seed=seed, quiet=json_)
    for note in _idle_options(ctx, int8=int8, verify=verify):
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    with progress_bar(not json_) as progress:
        report = export_onnx(
            source,
            out,
            opset=opset,
            batch=_batch(batch),
            fp16=fp16,
            int8=int8,
            optimize=optimize,
            verify=verify,
            legacy=legacy_exporter,
            calib_images=calib_images,
            verify_images=verify_images,
            data_root=data_root,
            download=not no_download,
            threads=threads,
            # points on the command line (as the failure words it: "allowed: 0.5"), a fraction
            # in Tolerances
            tolerances=Tolerances(fp32_atol=atol, int8_max_drop=int8_max_drop / 100),
            progress=progress,
        )
    if json_:
        emit_json(report.to_json())
    else:
        _print(report)
    if not report.passed:  # on stderr under --json too: a script sees why it exited 1
        raise fail("verification failed: " + "; ".join(report.failures))


def _idle_options(ctx: typer.Context, *, int8: str | None, verify: bool) -> list[str]:
    """Notes for options given that this export does not use (they were ignored silently)."""
    given = options_given(ctx)
    notes = []
    if "--calib-images" in given and int8 not in ("static", "auto"):
        notes.append("--calib-images does nothing without --int8 static or auto")
    if "--int8-max-drop" in given and int8 is None:
        notes.append("--int8-max-drop does nothing without --int8")
    flags = ("--verify-images", "--atol") + (("--int8-max-drop",) if int8 else ())
    idle = [flag for flag in flags if flag in given]
    if idle and not verify:
        notes.append(
            f"{' and '.join(idle)} do{'es' if len(idle) == 1 else ''} nothing with --no-verify"
        )
    return notes


TABLE_COLUMNS = ("precision", "size", "max|Δ|", "agree", "top-1", "img/s", "vs fp32", "check")
DROP_ORDER = ("img/s", "size", "max|Δ|")  # on a narrow terminal: "vs fp32" still says speed


def _print(report: Any) -> None:
    from vitkit.models import model_label

    name = report.model["model"]
    what = report.run or f"untrained {name}"
    label = model_label(name, report.model.get("config"))  # vit-tiny (embed_dim 96, depth 4)
    status(
        f"[bold]vitkit export[/] {what} · {escape(label)} · {report.exporter} exporter · opset "
        f"{report.opset} · batch {report.batch} · export {report.export_seconds:.1f} s"
    )
    eager = report.eager
    if report.verified:
        acc = f" top-1 {_pct(eager['accuracy'])}" if eager["accuracy"] is not None else ""
        status(
            f"verified on {report.data['source']} · eager PyTorch{acc} · "
            f"{eager['images_per_s']:,.0f} img/s"
        )
    rows = []
    fp32 = next((p for p in report.precisions if p.precision.startswith("fp32")), None)
    for p in report.precisions:
        ratio = "-"
        if fp32 is not None and fp32.images_per_s and p.images_per_s and p is not fp32:
            ratio = f"{p.images_per_s / fp32.images_per_s:.2f}x"
        if not p.verified:
            result = "[yellow]checker only[/]" if p.passed else "[red]FAILED[/]"
        else:
            result = "[green]ok[/]" if p.passed else "[red]FAILED[/]"
        rows.append(
            {
                "precision": p.precision,
                "size": _size(p.size_bytes),
                "max|Δ|": "-" if p.max_abs_diff is None else f"{p.max_abs_diff:.1e}",
                "agree": _pct(p.top1_agreement),
                "top-1": _pct(p.accuracy),
                "img/s": "-" if p.images_per_s is None else f"{p.images_per_s:,.0f}",
                "vs fp32": ratio,
                "check": result,
            }
        )

    def build(columns: list[str]) -> Table:
        table = Table()
        for col in columns:
            left = col in ("precision", "check")
            table.add_column(col, justify="left" if left else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        return table

    from vitkit.bench.report import fit_columns

    # a column of dashes only (all of them with --no-verify; top-1 on synthetic images) is not
    # shown, nor named as "left out"
    shown = [
        c for c in TABLE_COLUMNS if c in ("precision", "check") or any(r[c] != "-" for r in rows)
    ]
    table, hidden = fit_columns(console, build, shown, DROP_ORDER)
    console.print(table)
    if hidden:
        console.print(
            f"[dim]left out at {console.width} columns: {', '.join(hidden)} (in export.json)[/]"
        )
    if report.int8 and report.int8.get("mode") == "auto":
        console.print(f"int8 auto: kept {report.int8['chosen']}: {report.int8['reason']}")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"{report.total_seconds:.1f} s in all · wrote {', '.join(report.files)}")
