"""`vitkit eval`, `vitkit predict`, `vitkit explain`: what a trained run does, on a test set and on
one image. Thin: the work is in ``vitkit.eval``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vitkit.artifact import MODEL_JSON, MODEL_WEIGHTS, is_onnx_file
from vitkit.cli._common import (
    Json,
    console,
    default_run,
    emit_json,
    progress_bar,
    status,
    user_errors,
)
from vitkit.errors import UserError, check_int, listed

if TYPE_CHECKING:
    from vitkit.artifact import LoadedModel

Run = Annotated[
    Path, typer.Argument(help="A run directory (from `vitkit train`) or its model.json.")
]
RunOrOnnx = Annotated[
    Path,
    typer.Argument(
        help="A run directory (from `vitkit train`), its model.json, or a .onnx file from "
        "`vitkit export` (run with ONNX Runtime on the CPU)."
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
RunDataRoot = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Where datasets live (default: the run's, else $VITKIT_DATA, else ~/.cache/vitkit/data).",
    ),
]
PER_CLASS_ROWS = 30  # per-class table rows printed; eval.json has them all
ONNX_MISSING = "no ONNX export at {path}; make one with: vitkit export {run} --onnx"


def _load(run: Path, device: str) -> LoadedModel:
    from vitkit._device import on_cpu, resolve_device
    from vitkit.artifact import load_model  # here, not at import: `--help` needs no torch

    if is_onnx_file(run):  # ONNX Runtime on the CPU; any other --device is an error there
        return load_model(run, device="cpu" if on_cpu(device) else device)
    return load_model(run, device=str(resolve_device(device)))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


# -- eval -----------------------------------------------------------------------------------------
@user_errors
def eval_command(
    run: Annotated[
        Path | None,
        typer.Argument(
            help="A run directory (from `vitkit train`), its model.json, or a .onnx file from "
            "`vitkit export` (run with ONNX Runtime on the CPU). Default: the most recent run "
            "under ./runs.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Evaluate on this dataset instead of the run's (same classes), e.g. folder:PATH.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split to evaluate.")] = "test",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Images per batch (default: the run's eval batch size)."),
    ] = None,
    device: DeviceOpt = "auto",
    amp: Annotated[
        bool | None,
        typer.Option("--amp/--no-amp", help="Autocast on CUDA (default: as the run was trained)."),
    ] = None,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Evaluate RUN/export/model.onnx with ONNX Runtime.")
    ] = False,
    onnx_file: Annotated[
        Path | None, typer.Option("--onnx-file", help="Evaluate this .onnx file (implies --onnx).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where eval.json and the PNGs go (default RUN/eval; for a .onnx or .safetensors "
            "file, --onnx and --onnx-file included, eval-<name> beside it; with --data of "
            "another dataset or a --split other than test, that name with -<dataset>-<split>).",
        ),
    ] = None,
    data_root: RunDataRoot = None,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Never touch the network; local files only.")
    ] = False,
    json_: Json = False,
) -> None:
    """Evaluate RUN on a dataset split: accuracy, per-class metrics, confusion, calibration.

    Top-1 and top-5, per-class precision/recall/F1 and support, the confusion matrix, expected
    calibration error (15 bins) and the most confidently wrong images. Writes RUN/eval/ (for an .onnx file, --onnx included: eval-<name>/ beside it): eval.json, confusion.png and wrong.png (the PNGs need matplotlib).
    """
    from vitkit._device import on_cpu
    from vitkit.eval import evaluate
    from vitkit.eval.evaluate import report_dir

    if batch_size is not None:  # the flag's name (the library's says "batch size")
        check_int("--batch-size", batch_size)
    run = default_run(run, quiet=json_, model_option=False)  # as export and bench pick it
    is_onnx = is_onnx_file(run)
    if is_onnx and (onnx or onnx_file is not None):
        raise UserError(
            f"{run} is an ONNX file already; --onnx and --onnx-file apply to a run directory"
        )
    if (onnx or onnx_file is not None) and not on_cpu(device):
        flag = "--onnx-file" if onnx_file is not None else "--onnx"
        raise UserError(
            f"{flag} runs ONNX Runtime on the CPU; --device {device} does not apply "
            f"(without {flag}, the run's PyTorch weights run on {device})"
        )
    lm = _load(run, "cpu" if onnx or onnx_file is not None else device)
    scored = Path(run) if is_onnx else None  # a file scored: its report goes beside it
    if onnx or onnx_file is not None:
        from vitkit.eval.evaluate import OnnxModule, check_onnx_matches

        path = onnx_file if onnx_file is not None else lm.output_dir("export") / "model.onnx"
        if not Path(path).is_file():
            raise UserError(ONNX_MISSING.format(path=path, run=run))
        check_onnx_matches(lm, path)  # another model's or other weights' file: refused
        lm.model = OnnxModule(path)
        scored = Path(path)  # not RUN/eval: that is the eager weights' report
    out_dir = out if out is not None else report_dir(lm, data, split, file=scored)
    _check_out_dir(out_dir, given=out is not None)  # before the evaluation, not after it
    with progress_bar(not json_) as progress:
        report = evaluate(
            lm,
            data,
            split=split,
            batch_size=batch_size,
            amp=amp,
            data_root=data_root,
            download=not no_download,
            progress=progress,
        )
    # a file (an .onnx, other weights of the run): its own report, not the run's
    report.run = str(run) if is_onnx else str(lm.weights_file or report.run)
    saved = report.save(out_dir)
    notes = [*report.notes, *saved.notes]
    if json_:
        emit_json({**report.to_json(), "files": [str(f) for f in saved.files], "notes": notes})
        return
    from vitkit.models import model_label

    label = model_label(lm.spec.name, lm.spec.config)  # as export and bench name it
    status(
        f"[bold]vitkit eval[/] {escape(str(report.run))} · {escape(label)} · "
        f"{escape(report.dataset)} {escape(split)} · "
        f"{report.n:,} images · {report.device} · {report.images_per_s:,.0f} img/s"
    )
    if report.num_outputs > 1:
        positions = " ".join(f"{100 * p:.1f}" for p in report.per_position or [])
        status(
            f"exact match [bold]{_pct(report.exact_match)}[/] ({report.correct:,}/{report.n:,}) · "
            f"per position {positions} % · top-1 {_pct(report.top1)} · top-5 {_pct(report.top5)}"
        )
    else:
        status(
            f"top-1 [bold]{_pct(report.top1)}[/] ({report.correct:,}/{report.n:,}) · "
            f"top-5 {_pct(report.top5)}"
        )
    from vitkit.eval.evaluate import ECE_BINS

    present = report.classes_present
    subset = (  # a test set of some of the model's classes: macro F1 counts the others as 0
        f" ({report.macro_present['f1']:.4f} over the {present} classes present)"
        if present < len(report.per_class)
        else ""
    )
    status(
        f"ECE {report.ece:.4f} ({ECE_BINS} bins) · loss {report.loss:.4f} · "
        f"macro F1 {report.macro['f1']:.4f}{subset}"
    )
    table = Table(title="per class" + (" (all positions)" if report.num_outputs > 1 else ""))
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right", no_wrap=True)
    for c in report.per_class[:PER_CLASS_ROWS]:
        table.add_row(
            escape(c.name), f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", f"{c.support:,}"
        )
    console.print(table)
    if len(report.per_class) > PER_CLASS_ROWS:
        console.print(f"({len(report.per_class) - PER_CLASS_ROWS} more classes in eval.json)")
    if report.wrong:
        from rich.columns import Columns

        # one cell per image, so a narrow terminal wraps between images, never inside one
        shown = [
            f"{escape(w.file) if w.file else f'#{w.index}'} {escape(' '.join(w.true))} → "
            f"{escape(' '.join(w.predicted))}"
            f" ({100 * w.confidence:.0f}%)"
            for w in report.wrong[:5]
        ]
        console.print("most confidently wrong:")
        console.print(Columns(shown, padding=(0, 3)))
    for note in notes:
        console.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)
    console.print(
        f"wrote {escape(str(out_dir))}/: " + ", ".join(f.name for f in saved.files), soft_wrap=True
    )


def _check_out_dir(out_dir: Path, *, given: bool) -> None:
    """One-line errors for a report folder that cannot be written, checked before the
    evaluation (minutes on a large test set) rather than when the report is saved: a file
    where the folder belongs, or a folder that takes no files."""
    from vitkit.artifact import check_writable, file_in_the_way

    if out_dir.exists() and not out_dir.is_dir():  # as EvalReport.save says it
        raise UserError(f"{out_dir} is a file, not a folder")
    if (blocker := file_in_the_way(out_dir)) is not None:
        raise UserError(f"{blocker} is a file, not a folder (for {out_dir})")
    where = f"--out {out_dir}" if given else f"for {out_dir}; --out DIR writes the report elsewhere"
    check_writable(out_dir, where)


# -- predict --------------------------------------------------------------------------------------
@user_errors
def predict_command(
    run: RunOrOnnx,
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files (PNG, JPEG, WebP, BMP, ...), directories of them, or quoted glob "
            "patterns ('scans/**/*.png')."
        ),
    ],
    topk: Annotated[int, typer.Option("--topk", "-k", help="Classes shown per image.")] = 5,
    device: DeviceOpt = "cpu",
    json_: Json = False,
) -> None:
    """Top-k classes with probabilities for each image, preprocessed as RUN was trained.

    Any size, colour or grayscale. A path that does not exist is an error (a typo is not
    skipped); unreadable files are reported and skipped, and the exit code is 1 when none could
    be read.
    """
    from vitkit.eval import expand_inputs, predict
    from vitkit.eval.preprocess import is_glob

    check_int("--topk", topk)  # the flag's name (the library's says topk), before any work
    missing = [str(p) for p in images if not p.exists() and not is_glob(p)]
    if missing:
        raise UserError(f"no such file or directory: {listed(missing, 3)}")
    files = expand_inputs(images)
    lm = _load(run, device)  # a .onnx file: ONNX Runtime on the CPU, its metadata's preprocessing
    preds = predict(lm, files, topk=topk, skip_unreadable=True)
    good = [p for p in preds if p.ok]
    # the file that computed the predictions: the .onnx file itself, or the run's weights
    source = lm.model_file or lm.path / MODEL_WEIGHTS
    if json_:  # every file's outcome, its error included, even when none could be read
        emit_json(
            {
                "run": str(lm.run_dir) if lm.run_dir else None,  # an .onnx file's: or none
                "model_file": str(source),
                "predictions": [p.to_json() for p in preds],
                "read": len(good),
                "skipped": len(preds) - len(good),
            }
        )
    if not good:
        reason = preds[0].error if preds else None
        raise UserError(
            f"none of the {len(preds)} image(s) could be read" + (f": {reason}" if reason else "")
        )
    if json_:
        return
    multi = lm.num_outputs > 1
    table = Table(title=f"vitkit predict · {escape(str(source))}")
    table.add_column("image", overflow="fold")
    if multi:
        table.add_column("position", justify="right")
    for col in ("#", "class", "probability"):
        table.add_column(col, justify="left" if col == "class" else "right", no_wrap=True)
    for p in good:
        for pos, top in enumerate(p.topk):
            for rank, c in enumerate(top):
                head = pos == 0 and rank == 0
                name = escape(p.source) if head else ""
                size = f" ({p.size[0]}x{p.size[1]} {p.mode})" if head and p.size else ""
                row = [name + size] + ([str(pos + 1) if rank == 0 else ""] if multi else [])
                style = "bold" if rank == 0 else None
                table.add_row(
                    *row, str(rank + 1), escape(c.name), f"{100 * c.prob:.2f}%", style=style
                )
        table.add_section()
    console.print(table)
    for p in preds:
        if not p.ok:
            console.print(f"[yellow]skipped[/] {escape(p.error or '')}", soft_wrap=True)


# -- explain --------------------------------------------------------------------------------------
@user_errors
def explain_command(
    run: Run,
    image: Annotated[Path, typer.Argument(help="The image to explain.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The overlay PNG to write.")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="rollout (attention flow through every layer) or last-layer (CLS attention "
            "of the last block; mean attention received for pool='mean' models).",
        ),
    ] = "rollout",
    device: DeviceOpt = "cpu",
    json_: Json = False,
) -> None:
    """The image with the model's attention map overlaid, and the predicted class."""
    from vitkit.eval.attention import METHODS, attention_maps, write_overlay

    if method not in METHODS:
        raise UserError(f"unknown --method '{method}' (use {' or '.join(METHODS)})")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file, got {out}")
    if image.is_dir() or not image.exists():  # the library reads a folder or a glob as many
        if (image / MODEL_JSON).is_file():  # RUN and IMAGE swapped
            raise UserError(f"{image} is a run: RUN comes first (vitkit explain RUN IMAGE)")
        what = "is a directory" if image.is_dir() else "does not exist"
        raise UserError(f"{image} {what}: explain takes one image file")
    lm = _load(run, device)
    (am,) = attention_maps(lm, image, method=method)
    size = write_overlay(am, out)
    if json_:
        emit_json({**am.to_json(), "out": str(out), "out_size": list(size)})
        return
    p = am.prediction
    console.print(
        f"[bold]{escape(p.label)}[/] ({'lowest of its positions ' if len(p.topk) > 1 else ''}"
        f"{100 * p.confidence:.1f}%) · {method} attention over a "
        f"{am.map.shape[0]}x{am.map.shape[1]} patch grid"
    )
    console.print(f"wrote {escape(str(out))} ({size[0]}x{size[1]})", soft_wrap=True)
