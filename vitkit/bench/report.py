"""BenchReport: what ``benchmark`` measured, and its renderings (JSON, CSV, PNG, a Rich table).

One ``BenchRow`` per (runtime, device, batch) that ran; one ``RuntimeResult`` per (runtime,
device), which also carries the runtimes that were skipped and why; one ``UntimedCell`` per
batch size a runtime that ran at others was not timed at (it failed there, out of memory say,
or at a smaller one), with the reason. ``bench.json`` follows ``vitkit/bench/bench.schema.json``
(tested).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitkit.artifact import atomic_path, atomic_write, write_json
from vitkit.errors import MissingEntry, check_int, check_name, check_path, listed

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

SCHEMA_PATH = Path(__file__).with_name("bench.schema.json")
SCHEMA_VERSION = 1

TABLE_COLUMNS = (
    "device", "runtime", "batch", "p50 ms", "p90 ms", "p99 ms", "img/s",
    "speed-up", "GFLOP/s", "% peak", "size", "top-1", "Δ eager",
)  # fmt: skip
# left out, in this order, when the table is wider than the terminal
# (device is never left out of a table with several devices; with one, the header names it)
DROP_ORDER = ("p90 ms", "GFLOP/s", "size", "Δ eager", "p99 ms", "% peak")


@dataclass
class RuntimeResult:
    """One runtime on one device: whether it ran, and what it computed on the real images."""

    runtime: str
    device: str
    description: str
    precision: str  # what the arithmetic runs in: fp32 | bf16 | fp16 | int8
    status: str  # ok | skipped | failed
    reason: str | None = None  # why it was skipped or failed
    size_bytes: int | None = None  # ONNX file, or parameters + buffers for PyTorch
    accuracy: float | None = None  # top-1 on the labelled images (None: no labels)
    top1_agreement: float | None = None  # share of images whose top-1 equals eager fp32 (CPU)
    max_abs_diff: float | None = None  # max |logit - eager fp32 logit| on those images
    info: dict[str, Any] = field(default_factory=dict)  # providers, threads, compile time, file
    # why accuracy, top1_agreement and max_abs_diff are None though the runtime was timed
    # (status "ok": its outputs on the scored images raised); None when they were computed
    accuracy_error: str | None = None


@dataclass
class BenchRow:
    """One timed cell: a runtime on a device at a batch size."""

    runtime: str
    device: str
    batch: int
    precision: str
    p50_ms: float  # latency of one batch, median
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int  # timed calls (warm-up excluded)
    images_per_s: float  # batch / p50
    speedup: float | None  # eager fp32 p50 / this p50, same device and batch
    gflops: float | None  # achieved: analytic forward FLOPs x images/s (None: not counted)
    peak_share: float | None  # gflops / the measured matmul peak of this device (and dtype)
    size_bytes: int | None
    accuracy: float | None


@dataclass
class UntimedCell:
    """A batch size a runtime was not timed at, though it ran at others (a runtime timed at no
    batch size is a ``RuntimeResult`` that failed, as a whole)."""

    runtime: str
    device: str
    batch: int
    precision: str
    status: str  # failed (it raised at this batch) | skipped (not tried after a failure)
    reason: str  # the error's first line, or the batch size that failed


@dataclass
class BenchReport:
    schema_version: int
    vitkit_version: str
    created: str
    command: str | None
    run: str | None  # the run benchmarked, or its weights file if not its own (None: --model)
    model: dict[str, Any]  # ModelSpec.to_dict()
    params: int
    flops_per_image: int | None  # analytic forward FLOPs (None: the model does not count them)
    machine: dict[str, Any]  # cpu (model, ISA flags, cores), gpus, platform
    versions: dict[str, Any]
    threads: dict[str, Any]  # torch and ONNX Runtime intra-op threads (equal by construction)
    settings: dict[str, Any]  # batch sizes, warm-up, min time, rounds, devices, compile mode
    peaks: list[dict[str, Any]]  # matmul_peak() per device and dtype
    data: dict[str, Any]  # where the accuracy images came from
    # top-1 of eager fp32 on the CPU, on the same images: its own row's figure, or, where that
    # row has none (no eager on the CPU, or it failed or could not be scored), that of the model
    # run in fp32 on the CPU in chunks of 64 (``reference_text`` says which)
    reference_accuracy: float | None
    runtimes: list[RuntimeResult]
    rows: list[BenchRow]
    untimed_cells: list[UntimedCell]  # batch sizes a runtime with rows failed at, and after
    notes: list[str]
    files: list[str]
    wall_seconds: float

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def row(self, runtime: str, batch: int, device: str = "cpu") -> BenchRow:
        check_name("runtime", runtime)
        check_int("batch", batch)  # row("eager", "1") read "no row for eager at batch 1"
        check_name("device", device)
        for r in self.rows:
            if (r.runtime, r.batch, r.device) == (runtime, batch, device):
                return r
        for c in self.untimed_cells:
            if (c.runtime, c.batch, c.device) == (runtime, batch, device):
                raise MissingEntry(
                    f"no row for {runtime} at batch {batch} on {device}: not timed, {c.status} "
                    f"({c.reason})"
                )
        cells = sorted({f"{r.runtime} at batch {r.batch} on {r.device}" for r in self.rows})
        raise MissingEntry(
            f"no row for {runtime} at batch {batch} on {device} (rows: {listed(cells, 8)})"
        )

    def result(self, runtime: str, device: str = "cpu") -> RuntimeResult:
        check_name("runtime", runtime)
        check_name("device", device)
        for r in self.runtimes:
            if (r.runtime, r.device) == (runtime, device):
                return r
        names = [f"{r.runtime} on {r.device}" for r in self.runtimes]
        raise MissingEntry(
            f"no runtime {runtime} on {device} (the report has: {listed(names, 12)})"
        )

    # -- files ------------------------------------------------------------------------------
    def write(
        self,
        out_dir: str | os.PathLike[str],
        *,
        csv_path: str | os.PathLike[str] | None = None,
        plot_path: str | os.PathLike[str] | None = None,
        exports: Sequence[str] = (),
    ) -> list[str]:
        """bench.json, bench.csv and bench.png in ``out_dir`` (+ the extra paths asked for).
        ``files`` lists them, then ``exports``: the ONNX files the benchmark made for its
        runtimes (``benchmark`` passes those it wrote in OUT/export, not those it reused).

        bench.json goes first, so the figures are kept even if a CSV or PNG path fails."""
        import importlib.util

        check_path("out_dir", out_dir)  # a str was str.mkdir's AttributeError
        check_path("csv_path", csv_path, optional=True)
        check_path("plot_path", plot_path, optional=True)
        out_dir = Path(out_dir)
        csv_path = Path(csv_path) if csv_path is not None else None
        plot_path = Path(plot_path) if plot_path is not None else None
        out_dir.mkdir(parents=True, exist_ok=True)
        csvs = list(dict.fromkeys([out_dir / "bench.csv", *([csv_path] if csv_path else [])]))
        pngs = list(dict.fromkeys([out_dir / "bench.png", *([plot_path] if plot_path else [])]))
        if importlib.util.find_spec("matplotlib") is None:
            self.notes.append("matplotlib is not installed: no PNG (pip install 'vitkit[plot]')")
            pngs = []
        json_path = out_dir / "bench.json"
        self.files = list(dict.fromkeys([*map(str, (json_path, *csvs, *pngs)), *exports]))
        write_json(json_path, self.to_json())
        for path in csvs:
            with atomic_write(path, "w") as f:
                f.write(self.to_csv())
        for path in pngs:
            if not self.plot(path):  # matplotlib found but would not import: say so
                self.notes.append("matplotlib would not import: no PNG")
                self.files = [f for f in self.files if f not in {str(p) for p in pngs}]
                write_json(json_path, self.to_json())
                break
        return self.files

    def to_csv(self) -> str:
        """One line per timed cell, then one per cell not timed of a runtime that ran at other
        batch sizes, then one per runtime that did not run (status + reason; no batch)."""
        buf = io.StringIO()
        # the runtime's, against eager fp32 (Δ eager: over the images whose logits are finite;
        # nonfinite_images counts the others, NaN or inf, which count as wrong)
        # (accuracy_error: why those and accuracy are empty though the cell was timed)
        agree = ["top1_agreement", "max_abs_diff", "nonfinite_images", "accuracy_error"]
        cols = [f.name for f in BenchRow.__dataclass_fields__.values()] + agree
        cols += ["status", "reason"]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            rt = self.result(r.runtime, r.device)
            extra = {
                "top1_agreement": rt.top1_agreement,
                "max_abs_diff": rt.max_abs_diff,
                # not scored (accuracy_error): nothing counted, so no 0 either
                "nonfinite_images": "" if rt.accuracy_error else rt.info.get("nonfinite_images", 0),
                "accuracy_error": rt.accuracy_error or "",
            }
            w.writerow({**asdict(r), **extra, "status": "ok", "reason": ""})
        for c in self.untimed_cells:
            w.writerow(asdict(c))
        for rt in self.runtimes:
            if rt.status != "ok":
                w.writerow(
                    {
                        "runtime": rt.runtime,
                        "device": rt.device,
                        "precision": rt.precision,
                        "status": rt.status,
                        "reason": rt.reason,
                    }
                )
        return buf.getvalue()

    def plot(self, path: Path) -> bool:
        """Latency (p50) and throughput against batch size, one line per runtime and device."""
        from vitkit._plot import figure

        made = figure(1, 2, figsize=(11, 4.2))
        if made is None:
            return False
        fig, (ax_lat, ax_tp) = made
        series: dict[tuple[str, str], list[BenchRow]] = {}
        for r in self.rows:
            series.setdefault((r.runtime, r.device), []).append(r)
        for (runtime, device), rows in series.items():
            rows = sorted(rows, key=lambda r: r.batch)
            style = "-" if device == "cpu" else "--"
            label = f"{runtime} ({device})"
            b = [r.batch for r in rows]
            ax_lat.plot(b, [r.p50_ms for r in rows], style, marker="o", label=label)
            ax_tp.plot(b, [r.images_per_s for r in rows], style, marker="o", label=label)
        batches = sorted({r.batch for r in self.rows})
        for ax, ylabel in ((ax_lat, "latency per batch, p50 (ms)"), (ax_tp, "images / s")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        if series:
            ax_tp.legend(fontsize=8, loc="best")
        cpu = self.machine.get("cpu", {}).get("model", "")
        gpus = ", ".join(g["name"] for g in self.machine.get("gpus", []))
        from vitkit.models import model_label

        name = model_label(self.model["model"], self.model.get("config"))
        fig.suptitle(
            f"{name} {self.settings.get('image_size', '')}px · {cpu}"
            + (f" · {gpus}" if gpus else "")
            + f" · {self.threads.get('torch')} threads",
            fontsize=9,
        )
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        return True

    # -- the table ---------------------------------------------------------------------------
    def reference_text(self) -> str | None:
        """The header's figure, saying where it came from: "eager top-1 X%" when it is eager fp32's
        own row on the CPU; else (no such row, or its outputs failed: the row reads "failed") the
        model run in fp32 on the CPU in chunks of 64 (``_score``'s fallback). None: no figure."""
        if self.reference_accuracy is None:
            return None
        pct = _pct(self.reference_accuracy)
        eager = next((r for r in self.runtimes if (r.runtime, r.device) == ("eager", "cpu")), None)
        if eager is not None and eager.status == "ok" and not eager.accuracy_error:
            return f"eager top-1 {pct}"
        why = "no eager on the CPU" if eager is None else "eager's own figure failed"
        return f"top-1 {pct} of the model in fp32 on the CPU in chunks of 64 ({why})"

    def table(self, columns: Sequence[str] | None = None) -> Table:
        """The Rich table the CLI prints: one line per cell, grouped by device and batch size; a
        cell not timed (its runtime failed there) reads "failed" or "skipped", and so does the
        Δ eager of a runtime whose outputs could not be scored, and its top-1 when the images
        have labels (else "-", as every runtime's; the reasons are in ``skipped_table``).
        ``columns``: which of ``TABLE_COLUMNS`` to show (default: all)."""
        from rich.table import Table

        shown = [c for c in TABLE_COLUMNS if columns is None or c in columns]
        t = Table(show_lines=False, header_style="bold")
        for c in shown:
            t.add_column(c, justify="left" if c in ("device", "runtime") else "right", no_wrap=True)
        results = {(r.runtime, r.device): r for r in self.runtimes}
        order = {key: i for i, key in enumerate(results)}
        labelled = bool(self.data.get("labelled"))
        lines: list[BenchRow | UntimedCell] = [*self.rows, *self.untimed_cells]
        lines.sort(key=lambda r: (r.device, r.batch, order.get((r.runtime, r.device), 0)))
        last: tuple[str, int] | None = None
        for r in lines:
            if last is not None and (r.device, r.batch) != last:
                t.add_section()
            last = (r.device, r.batch)
            cells = (
                _cells(r, results.get((r.runtime, r.device)), labelled)
                if isinstance(r, BenchRow)
                else _untimed_cells(r)
            )
            t.add_row(*(cells[c] for c in shown))
        return t

    def fit_table(self, console: Console) -> tuple[Table, list[str]]:
        """The table at the console's width: on a narrow terminal the least needed columns go
        first (``DROP_ORDER``) rather than every figure being cut to "1.…". Returns the table and
        the columns left out (every figure stays in bench.json and bench.csv)."""
        one_device = len({r.device for r in self.rows}) <= 1  # the header names the one device
        return fit_columns(
            console,
            self.table,
            [c for c in TABLE_COLUMNS if not (one_device and c == "device")],
            DROP_ORDER,
        )

    def skipped_table(self) -> Table | None:
        """Runtimes that did not run, cells not timed of runtimes that did, and runtimes timed
        whose accuracy could not be computed, with the reason (None when there is none). A batch
        column appears with cells not timed ("all" for a runtime that did not run, "-" for an
        accuracy line, "16, 64" for the batch sizes not tried after a failure at 8: one line,
        where ``untimed_cells`` has one cell each)."""
        from rich.markup import escape
        from rich.table import Table

        skipped = [r for r in self.runtimes if r.status != "ok"]
        unscored = [r for r in self.runtimes if r.status == "ok" and r.accuracy_error]
        if not skipped and not self.untimed_cells and not unscored:
            return None
        t = Table(header_style="bold", title="not measured", title_justify="left")
        batch = ("batch",) if self.untimed_cells else ()
        for c in ("device", "runtime", *batch, "status", "reason"):
            t.add_column(c, no_wrap=c in ("device", "batch", "status"))
        # one line per device, status and reason: no CUDA is one line, not one per CUDA runtime
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for r in skipped:
            groups.setdefault((r.device, "all", r.status, r.reason or ""), []).append(r.runtime)
        for c, batches in _runs_of_cells(self.untimed_cells):  # "16, 64": not tried after 8
            groups.setdefault((c.device, batches, c.status, c.reason), []).append(c.runtime)
        for r in unscored:  # timed, but its top-1, agreement and Δ eager are missing
            why = f"accuracy not measured: {r.accuracy_error}"
            groups.setdefault((r.device, "-", "failed", why), []).append(r.runtime)
        for (device, size, status, reason), runtimes in groups.items():
            colour = "yellow" if status == "skipped" else "red"
            sizes = (size,) if batch else ()
            t.add_row(device, ", ".join(runtimes), *sizes, f"[{colour}]{status}[/]", escape(reason))
        return t


def _runs_of_cells(cells: list[UntimedCell]) -> list[tuple[UntimedCell, str]]:
    """Consecutive cells of one runtime, device, precision, status and reason (the batch sizes
    not tried after the one that failed) as one: its first cell and their batch sizes, "16, 64"."""
    runs: list[tuple[tuple[str, ...], UntimedCell, list[int]]] = []
    for c in cells:
        key = (c.runtime, c.device, c.precision, c.status, c.reason)
        if runs and runs[-1][0] == key:
            runs[-1][2].append(c.batch)
        else:
            runs.append((key, c, [c.batch]))
    return [(c, ", ".join(map(str, sizes))) for _, c, sizes in runs]


def _cells(r: BenchRow, res: RuntimeResult | None, labelled: bool) -> dict[str, str]:
    """A timed cell's line of the table, column by column (``labelled``: the accuracy images
    have labels, so a runtime's top-1 that could not be computed is "failed", not "-")."""
    speed = "-" if r.speedup is None else f"{r.speedup:.2f}x"
    unscored = res is not None and bool(res.accuracy_error)
    if r.speedup is not None and r.runtime != "eager":
        speed = f"[green]{speed}[/]" if r.speedup >= 1 else f"[red]{speed}[/]"
    return {
        "device": r.device,
        "runtime": r.runtime,
        "batch": str(r.batch),
        "p50 ms": _ms(r.p50_ms),
        "p90 ms": _ms(r.p90_ms),
        "p99 ms": _ms(r.p99_ms),
        "img/s": f"{r.images_per_s:,.0f}",
        "speed-up": speed,
        "GFLOP/s": "-" if r.gflops is None else f"{r.gflops:,.1f}",
        "% peak": _share(r.peak_share),
        "size": _size(r.size_bytes),
        "top-1": FAILED if unscored and labelled else _pct(r.accuracy),
        "Δ eager": _delta(res),
    }


FAILED = "[red]failed[/]"  # a figure that could not be computed (the reason: ``skipped_table``)


def _untimed_cells(c: UntimedCell) -> dict[str, str]:
    """A cell not timed: its status where its p50 would be, coloured as in ``skipped_table``."""
    colour = "yellow" if c.status == "skipped" else "red"
    figures = dict.fromkeys(TABLE_COLUMNS, "-")
    status = f"[{colour}]{c.status}[/]"
    return figures | {
        "device": c.device,
        "runtime": c.runtime,
        "batch": str(c.batch),
        "p50 ms": status,
    }


def _delta(res: RuntimeResult | None) -> str:
    """Δ eager's cell: NaN/inf when some logits were not finite (a note gives the count)."""
    if res is not None and res.info.get("nonfinite_images"):
        return "NaN/inf"
    if res is not None and res.accuracy_error:  # its outputs could not be scored
        return FAILED
    return "-" if res is None or res.max_abs_diff is None else f"{res.max_abs_diff:.1e}"


def _share(x: float | None) -> str:
    if x is None:
        return "-"
    pct = 100 * x
    return "<0.1%" if pct < 0.1 else f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become None (JSON has neither), tuples become lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def fit_columns(
    console: Console,
    build: Callable[[list[str]], Table],
    columns: Sequence[str],
    drop_order: Sequence[str],
) -> tuple[Table, list[str]]:
    """``build(columns)`` at the console's width: rather than cutting every figure to "1.…",
    the columns of ``drop_order`` are left out, first ones first, until the table fits.
    Returns the table and the columns left out (bench's and export's tables both use it)."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(100_000)  # measured at its natural width
    hidden: list[str] = []
    for drop in (None, *(d for d in drop_order if d in columns)):
        if drop is not None:
            hidden.append(drop)
        table = build([c for c in columns if c not in hidden])
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            break
    return table, hidden
