"""`vitkit bench [RUN | --model NAME]`: every runtime on every device, in one honest table.

Thin: the work is in ``vitkit.bench``; this module turns options into ``benchmark``'s arguments
and its ``BenchReport`` into tables (or one JSON document with --json).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
    model_overrides,
    progress_bar,
    run_or_model,
    status,
    user_errors,
)

_W = "What to measure"
_T = "Timing"
_A = "Accuracy"
_O = "Output"


def _opt(help: str, panel: str, *names: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel)


@user_errors
def bench_command(
    run: Annotated[
        Path | None,
        typer.Argument(help="Run directory (default: the most recent one under ./runs)."),
    ] = None,
    runtimes: Annotated[
        str | None,
        _opt(
            "Comma-separated runtimes: eager, eager-bf16, eager-fp16, compile, ort, ort-fp16, "
            "ort-int8, trt (default: eager, compile, ort, ort-int8 on cpu; eager, eager-bf16, "
            "compile, ort, ort-fp16, trt on cuda). Eager fp32 always runs: it is the baseline.",
            _W,
            "--runtimes",
            "-r",
        ),
    ] = None,
    device: Annotated[
        str,
        _opt(
            "Devices: cpu, cuda or cpu,cuda; auto is cuda where there is one, else cpu (as "
            "train's auto). Runtimes that cannot run here are listed as skipped, with the reason.",
            _W,
            "--device",
        ),
    ] = "cpu,cuda",
    batch_sizes: Annotated[
        str, _opt("Comma-separated batch sizes.", _W, "--batch-sizes", "-b")
    ] = "1,8,64",
    threads: Annotated[
        int | None,
        _opt(
            "Intra-op threads for torch AND ONNX Runtime (default: torch's, one per core).",
            _T,
            "--threads",
        ),
    ] = None,
    warmup: Annotated[int, _opt("Untimed calls before each cell.", _T, "--warmup")] = 10,
    min_time: Annotated[
        float, _opt("Seconds of timed calls per cell (at least 5 calls).", _T, "--min-time")
    ] = 2.0,
    rounds: Annotated[
        int,
        _opt(
            "Interleaved rounds per batch size: each runtime is timed min-time/rounds per "
            "round, so drift in machine load hits every runtime alike.",
            _T,
            "--rounds",
        ),
    ] = 3,
    compile_mode: Annotated[
        str,
        _opt(
            "torch.compile mode: default, reduce-overhead (CUDA graphs), max-autotune, "
            "max-autotune-no-cudagraphs.",
            _T,
            "--compile-mode",
        ),
    ] = "default",
    optimize: Annotated[
        bool,
        _opt(
            "Benchmark the ONNX models of `vitkit export --optimize` (fp32: fused attention or "
            "ORT's fusions, kept only if verified and faster; int8 quantized from the fused "
            "attention model); re-exported if RUN/export was not.",
            _W,
            "--optimize",
        ),
    ] = False,
    data: Annotated[
        str | None,
        _opt("Dataset for the accuracy column (default: the run's own).", _A, "--data"),
    ] = None,
    accuracy_images: Annotated[
        int, _opt("Test images each runtime classifies (0: skip accuracy).", _A)
    ] = 1000,
    data_root: Annotated[
        Path | None,
        _opt(
            "Where datasets live (default: the run's, else $VITKIT_DATA, else "
            "~/.cache/vitkit/data).",
            _A,
            "--data-root",
        ),
    ] = None,
    download: Annotated[
        bool, _opt("Download the dataset if it is not here.", _A, "--download")
    ] = False,
    out: Annotated[
        Path | None,
        _opt(
            "Folder for bench.json, bench.csv, bench.png (default RUN/bench, or "
            "bench/<model> with --model).",
            _O,
            "--out",
            "-o",
        ),
    ] = None,
    csv: Annotated[Path | None, _opt("Also write the CSV here.", _O, "--csv")] = None,
    plot: Annotated[Path | None, _opt("Also write the PNG here.", _O, "--plot")] = None,
    model: Annotated[
        str | None,
        _opt(
            "Benchmark an untrained registry model instead of a run (architecture only).",
            "Model",
            "--model",
            "-m",
        ),
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
    """Benchmark RUN (or --model NAME): eager PyTorch, torch.compile and ONNX Runtime, on CPU and
    CUDA, in one table.

    Every runtime (ONNX Runtime on CPU, CUDA and the TensorRT EP among them) gets the same inputs
    and thread count. Reported: p50/p90/p99 latency, images/s, speed-up over eager, achieved
    GFLOP/s against this machine's measured matmul peak, model size and top-1 accuracy.

    Exports it needs are reused from RUN/export, or made (verified) in OUT/export. Writes
    bench.json (machine, versions, thread counts, command line), bench.csv and bench.png.
    """
    from vitkit.bench import benchmark

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
    command = "vitkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with progress_bar(not json_) as progress:
        report = benchmark(
            source,
            runtimes=runtimes,
            devices=device,
            batch_sizes=batch_sizes,
            threads=threads,
            warmup=warmup,
            min_time=min_time,
            rounds=rounds,
            dataset=data,
            accuracy_images=accuracy_images,
            data_root=data_root,
            download=download,
            out=out,
            csv_path=csv,
            plot_path=plot,
            compile_mode=compile_mode,
            optimize=optimize,
            command=command,
            progress=progress,
        )
    if json_:
        emit_json(report.to_json())
        return
    _print(report)


def _print(report: Any) -> None:
    cpu = report.machine["cpu"]
    gpus = ", ".join(g["name"] for g in report.machine["gpus"])
    from vitkit.models import model_label

    what = report.run or f"untrained {report.model['model']}"
    label = model_label(report.model["model"], report.model.get("config"))
    status(
        f"[bold]vitkit bench[/] {what} · {escape(label)} "
        f"{report.settings['image_size']}px · {report.params:,} params"
        + (
            ""
            if report.flops_per_image is None
            else f" · {report.flops_per_image / 1e9:.3f} GFLOP/image"
        )
    )
    peaks = ", ".join(
        f"{p['device']} {p['dtype']} {p['gflops']:,.0f} GFLOP/s" for p in report.peaks
    )
    status(
        f"CPU {cpu['model']} ({', '.join(cpu['isa']) or 'no AVX'})"
        + (f" · GPU {gpus}" if gpus else "")
    )
    status(
        f"threads: torch {report.threads['torch']}"
        + (
            f", ONNX Runtime {report.threads['onnxruntime']}"
            if report.threads["onnxruntime"]
            else ""
        )
        + f" · matmul peak: {peaks or '-'}"
    )
    data = report.data
    reference = report.reference_text()
    acc = f" · {reference}" if reference else ""
    if data.get("synthetic"):
        status(f"inputs: {data.get('source')} · no labels: agreement with eager only")
    elif report.settings.get("accuracy_images"):
        status(f"accuracy on {data.get('source')}{acc}")
    else:
        status(f"inputs: {data.get('source')} · accuracy not measured (--accuracy-images 0)")
    table, hidden = report.fit_table(console)
    console.print(table)
    if hidden:
        console.print(
            f"[dim]left out at {console.width} columns: {', '.join(hidden)}"
            " (all in bench.json and bench.csv; a wider terminal shows them)[/]"
        )
    skipped = report.skipped_table()
    if skipped is not None:
        console.print(skipped)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"{report.wall_seconds:.1f} s in all · wrote {', '.join(report.files)}")
