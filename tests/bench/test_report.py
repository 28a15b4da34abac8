"""bench.json against the shipped schema; CSV and PNG written; the tables render."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from vitkit.bench import BenchReport
from vitkit.bench.report import DROP_ORDER, SCHEMA_PATH, RuntimeResult, _ms
from vitkit.errors import UserError

jsonschema = pytest.importorskip("jsonschema")


def test_bench_json_validates_against_the_schema(report: BenchReport, bench_run: Path) -> None:
    path = bench_run / "bench" / "bench.json"
    doc = json.loads(path.read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    assert doc["command"] == "pytest"
    assert doc["machine"]["cpu"]["model"]
    assert doc["versions"]["torch"] and doc["versions"]["onnxruntime"]
    assert doc["threads"]["torch"] == doc["threads"]["onnxruntime"]


def test_schema_rejects_a_broken_document(report: BenchReport) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    doc = report.to_json()
    bad_row = json.loads(json.dumps(doc))
    bad_row["rows"][0]["p50_ms"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_row, schema)
    skipped_without_reason = json.loads(json.dumps(doc))
    skipped = next(r for r in skipped_without_reason["runtimes"] if r["status"] == "skipped")
    skipped["reason"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(skipped_without_reason, schema)


def test_lookups_and_write_take_names_numbers_and_paths_only(
    report: BenchReport, tmp_path: Path
) -> None:
    """row("eager", "1") said "no row for eager at batch 1" (there is one, at batch 1 the
    integer); write(str) was str.mkdir's AttributeError, write(5) pathlib's TypeError."""
    row = report.rows[0]
    assert report.row(row.runtime, row.batch, row.device) is row
    with pytest.raises(UserError, match=f"^batch must be an integer, got '{row.batch}'"):
        report.row(row.runtime, str(row.batch), row.device)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^a runtime name is a string, got 5"):
        report.result(5)  # type: ignore[arg-type]
    mine = copy.deepcopy(report)  # write() records its files: not on the shared report
    with pytest.raises(UserError, match=r"^out_dir must be a path"):
        mine.write(5)  # type: ignore[arg-type]
    assert mine.write(str(tmp_path / "b"))[0] == str(tmp_path / "b" / "bench.json")


def test_csv_has_every_cell_and_every_skipped_runtime(report: BenchReport, bench_run: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((bench_run / "bench" / "bench.csv").read_text())))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(report.rows)
    assert {(r["runtime"], int(r["batch"])) for r in ok} == {
        (r.runtime, r.batch) for r in report.rows
    }
    not_run = [r for r in rows if r["status"] != "ok"]
    assert len(not_run) == sum(r.status != "ok" for r in report.runtimes)
    assert all(r["reason"] for r in not_run)
    for r in ok:  # Δ eager and the top-1 agreement, as the table and bench.json have them
        rt = report.result(r["runtime"], r["device"])
        assert float(r["max_abs_diff"]) == rt.max_abs_diff
        assert float(r["top1_agreement"]) == rt.top1_agreement


def test_png_is_written(report: BenchReport, bench_run: Path) -> None:
    png = bench_run / "bench" / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in report.files


def test_png_leaves_the_callers_matplotlib_backend_alone(
    report: BenchReport, tmp_path: Path
) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's choice; report.plot switched it to Agg for good
    try:
        assert report.plot(tmp_path / "bench.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_shows_every_cell_and_the_reasons(report: BenchReport) -> None:
    console = Console(width=250, record=True)
    console.print(report.table())
    text = console.export_text()
    for col in ("p50 ms", "p90 ms", "p99 ms", "img/s", "speed-up", "% peak", "size", "top-1"):
        assert col in text
    for name in ("eager", "compile", "ort-int8"):
        assert name in text
    skipped = report.skipped_table()
    assert skipped is not None
    console.print(skipped)
    text = console.export_text()
    assert "cuda only" in text
    # one line per device and reason: without CUDA every CUDA runtime shares one line
    not_run = [r for r in report.runtimes if r.status != "ok"]
    reasons = {(r.device, r.status, r.reason) for r in not_run}
    body = [ln for ln in text.splitlines() if ln.startswith("│ c")]  # rows begin with cpu/cuda
    assert len(body) == len(reasons) < len(not_run)


def test_batch_sizes_not_tried_are_one_line(report: BenchReport) -> None:
    """A runtime that failed at batch 8 listed batch 16, 64, ... each as its own line "not
    tried: batch 8 failed" in the "not measured" table: they are one line naming them all (and
    runtimes with the same line share it); bench.json keeps one cell each."""
    from dataclasses import replace

    from vitkit.bench import UntimedCell

    oom, after = "RuntimeError: out of memory", "not tried: batch 8 failed"
    cells = [
        UntimedCell(name, "cpu", b, "fp32", status, why)
        for name in ("a", "b")
        for b, status, why in ((8, "failed", oom), (16, "skipped", after), (64, "skipped", after))
    ]
    cells += [
        UntimedCell("c", "cpu", 16, "fp32", "failed", oom),
        UntimedCell("c", "cpu", 64, "fp32", "skipped", "not tried: batch 16 failed"),
        UntimedCell("c", "cpu", 256, "fp32", "skipped", "not tried: batch 16 failed"),
    ]
    console = Console(width=250, record=True)
    console.print(replace(report, untimed_cells=cells).skipped_table())
    lines = [
        [c.strip() for c in ln.split("│")[1:-1]]
        for ln in console.export_text().splitlines()
        if ln.startswith("│ cpu ") and "│ all " not in ln  # not the runtimes that did not run
    ]
    assert [tuple(ln[1:]) for ln in lines] == [
        ("a, b", "8", "failed", oom),
        ("a, b", "16, 64", "skipped", after),  # was a line for 16 and one for 64
        ("c", "16", "failed", oom),
        ("c", "64, 256", "skipped", "not tried: batch 16 failed"),
    ]


@pytest.mark.parametrize("width", [60, 80, 100, 250])
def test_table_fits_the_terminal_by_leaving_columns_out(report: BenchReport, width: int) -> None:
    """On a narrow terminal whole columns go (least needed first), never a figure cut to '1.…'."""
    console = Console(width=width, record=True)
    table, hidden = report.fit_table(console)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    body = "\n".join(lines)
    assert "…" not in body or width < 70  # below the core columns' width Rich must cut
    order = [c for c in DROP_ORDER if c != "device"]
    assert hidden == order[: len(hidden)]  # dropped in DROP_ORDER, nothing skipped over
    if width >= 80:
        for col in ("runtime", "batch", "p50 ms", "img/s", "speed-up", "top-1"):
            assert col in body
        for r in report.rows:  # every cell's median is shown in full
            assert _ms(r.p50_ms) in body
    if width == 250:
        assert hidden == []
    else:
        assert hidden and all(c not in lines[1] for c in hidden)
    assert "device" not in lines[1]  # one device: the header names it


def test_bench_cli_says_which_columns_it_left_out(bench_run: Path) -> None:
    from typer.testing import CliRunner

    from vitkit.cli import app

    doc = json.loads((bench_run / "bench" / "bench.json").read_text())
    assert doc["rows"]
    res = CliRunner().invoke(
        app,
        ["bench", str(bench_run), "--runtimes", "eager", "--batch-sizes", "1", "--min-time",
         "0.05", "--warmup", "1", "--accuracy-images", "0", "--out", str(bench_run / "narrow")],
        env={"COLUMNS": "80"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "left out at 80 columns: p90 ms" in " ".join(res.output.split())


def test_a_table_of_several_devices_keeps_its_device_column(report: BenchReport) -> None:
    from dataclasses import replace

    two = replace(report, rows=[*report.rows, *(replace(r, device="cuda") for r in report.rows)])
    console = Console(width=76, record=True)
    table, hidden = two.fit_table(console)
    console.print(table)
    text = console.export_text()
    assert "device" in text.splitlines()[1] and "device" not in hidden
    assert hidden and "…" not in text  # other columns went instead


def test_a_busy_machine_is_named_in_the_notes(report: BenchReport) -> None:
    """A 1,000x speed-up measured while other work shared the CPU must not read as a result."""
    import dataclasses

    from vitkit.bench.run import _busy_notes

    rows = list(report.rows)
    assert report.machine["load_average"] is None or len(report.machine["load_average"]) == 3
    assert not [n for n in _busy_notes(rows, [0.9, 1.0, 1.0], 1, 0.1) if "rerun" in n]
    busy = _busy_notes(rows, [4.2, 3.0, 2.0], 2, None)
    assert any("load average was 4.2" in n and "rerun on a quiet machine" in n for n in busy)
    # what other processes took while the cells ran says more than a minute's load average
    busy = _busy_notes(rows, [0.9, 1.0, 1.0], 2, 0.6)
    assert any("kept 0.60 of this machine's" in n and "rerun on a quiet" in n for n in busy)
    assert not [n for n in _busy_notes(rows, [4.2, 3.0, 2.0], 2, 0.05) if "rerun" in n]
    shaky = dataclasses.replace(rows[0], p90_ms=rows[0].p50_ms * 3)
    notes = _busy_notes([shaky, *rows[1:]], None, 1, None)
    assert any(f"{shaky.runtime} batch {shaky.batch} (cpu)" in n for n in notes), notes


def test_bench_json_is_written_first(
    report: BenchReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG (or CSV) path that fails late does not lose the figures: bench.json is already there."""
    import copy

    pytest.importorskip("matplotlib")  # without it, no PNG is attempted
    rep = copy.deepcopy(report)

    def broken(path: Path) -> bool:
        raise OSError(f"cannot write {path}")

    monkeypatch.setattr(rep, "plot", broken)
    with pytest.raises(OSError, match="cannot write"):
        rep.write(tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert len(doc["rows"]) == len(report.rows)


def test_a_cell_a_runtime_failed_at_is_listed_with_its_reason(
    bench_run: Path, fails_above_batch_1: str, tmp_path: Path
) -> None:
    """A runtime out of memory at batch 8 keeps its batch-1 row; the batch-8 cell is in the
    table, bench.json (schema-valid), bench.csv and --json as failed, with the error."""
    from typer.testing import CliRunner

    from vitkit.bench import benchmark
    from vitkit.cli import app

    rep = benchmark(
        bench_run, runtimes="eager,small", devices="cpu", batch_sizes=[1, 8], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=8, out=tmp_path / "lib",
    )  # fmt: skip
    oom = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    console = Console(width=250, record=True)
    console.print(rep.table())
    lines = console.export_text().splitlines()
    (failed,) = [ln for ln in lines if "small" in ln and "failed" in ln]
    cols = [c.strip() for c in failed.split("│")[1:-1]]
    assert cols[:4] == ["cpu", "small", "8", "failed"], failed  # where its p50 would be
    assert set(cols[4:]) == {"-"}
    assert [ln for ln in lines if "small" in ln and _ms(rep.row("small", 1).p50_ms) in ln]
    skipped = rep.skipped_table()
    assert skipped is not None
    console = Console(width=250, record=True)
    console.print(skipped)
    text = console.export_text()
    assert "batch" in text.splitlines()[2]  # under the title
    (line,) = [ln for ln in text.splitlines() if "small" in ln]
    assert [c.strip() for c in line.split("│")[1:-1]] == ["cpu", "small", "8", "failed", oom]

    doc = json.loads((tmp_path / "lib" / "bench.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert [(r["runtime"], r["batch"]) for r in doc["rows"]] == [
        ("eager", 1),
        ("small", 1),
        ("eager", 8),
    ]
    assert doc["untimed_cells"] == [
        {"runtime": "small", "device": "cpu", "batch": 8, "precision": "fp32", "status": "failed",
         "reason": oom}
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO((tmp_path / "lib" / "bench.csv").read_text())))
    cells = {(r["runtime"], r["batch"]): (r["status"], r["reason"], r["p50_ms"]) for r in rows}
    assert cells[("small", "1")][:2] == ("ok", "") and float(cells[("small", "1")][2]) > 0
    assert cells[("small", "8")] == ("failed", oom, "")
    assert len(rows) == 4  # the three rows and the failed cell

    res = CliRunner().invoke(
        app,
        ["bench", str(bench_run), "--runtimes", "eager,small", "--device", "cpu", "--batch-sizes",
         "1,8", "--min-time", "0.02", "--warmup", "1", "--rounds", "1", "--accuracy-images", "0",
         "--out", str(tmp_path / "cli"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(c["runtime"], c["batch"], c["status"], c["reason"]) for c in doc["untimed_cells"]] == [
        ("small", 8, "failed", oom)
    ]
    assert ("small", 1) in {(r["runtime"], r["batch"]) for r in doc["rows"]}
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def _table_lines(table: object) -> list[dict[str, str]]:
    """The table's lines as {column: text} (the header line excluded)."""
    console = Console(width=250, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    header = [c.strip() for c in lines[1].split("┃")[1:-1]]  # the header's rule is heavy
    assert "runtime" in header, lines[1]
    return [
        dict(zip(header, (c.strip() for c in ln.split("│")[1:-1]), strict=True))
        for ln in lines[3:]
        if ln.count("│") == len(header) + 1
    ]


def test_a_runtime_whose_accuracy_failed_reads_failed_not_blank(
    bench_run: Path, fails_when_scored: str, tmp_path: Path
) -> None:
    """A runtime timed but not scored (its outputs raised) keeps its rows; its top-1 and Δ eager
    read "failed" (not "-", as for no labels), the reason is in the 'not measured' table, and
    bench.json (schema-valid) and bench.csv carry it as accuracy_error."""
    from vitkit.bench import benchmark

    rep = benchmark(
        bench_run, runtimes="eager,unscored", devices="cpu", batch_sizes=[1, 2], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=8, out=tmp_path,
    )  # fmt: skip
    why = "outputs in batches of 2: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    lines = _table_lines(rep.table())
    assert [ln["runtime"] for ln in lines] == ["eager", "unscored"] * 2
    for cols in lines:
        if cols["runtime"] == "unscored":
            assert cols["top-1"] == cols["Δ eager"] == "failed", cols
            assert float(cols["p50 ms"]) > 0 and cols["speed-up"].endswith("x"), cols
        else:
            assert cols["top-1"].endswith("%"), cols
    skipped = rep.skipped_table()
    assert skipped is not None
    console = Console(width=250, record=True)
    console.print(skipped)
    (line,) = [ln for ln in console.export_text().splitlines() if "unscored" in ln]
    cols = [c.strip() for c in line.split("│")[1:-1]]
    assert cols == ["cpu", "unscored", "failed", f"accuracy not measured: {why}"]

    doc = json.loads((tmp_path / "bench.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    (res,) = [r for r in doc["runtimes"] if r["runtime"] == "unscored"]
    assert res["status"] == "ok" and res["accuracy_error"] == why and res["accuracy"] is None
    assert [r["accuracy_error"] for r in doc["runtimes"]] == [None, why]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "bench.csv").read_text())))
    errors = {(r["runtime"], r["batch"]): r["accuracy_error"] for r in rows}
    assert errors == {("eager", "1"): "", ("unscored", "1"): why, ("eager", "2"): "", ("unscored", "2"): why}  # fmt: skip
    # not scored: no count of non-finite images either (it read 0)
    assert {r["runtime"]: r["nonfinite_images"] for r in rows} == {"eager": "0", "unscored": ""}


def test_earlier_bench_json_without_accuracy_error_still_validates(report: BenchReport) -> None:
    doc = report.to_json()
    for r in doc["runtimes"]:
        del r["accuracy_error"]
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def test_an_unscored_runtime_on_unlabelled_images_fails_only_its_delta(
    fails_when_scored: str,
) -> None:
    """Without labels every top-1 reads "-"; a runtime whose outputs could not be scored read
    "failed" there too, as if it alone had lost a figure the others have. Only Δ eager fails."""
    import vitkit
    from vitkit.bench import benchmark

    model = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3)
    rep = benchmark(
        model, runtimes="eager,unscored", devices="cpu", batch_sizes=[1, 2], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=8, write=False,
    )  # fmt: skip
    assert rep.data["synthetic"] and not rep.data["labelled"]
    assert rep.result("unscored").accuracy_error is not None
    lines = _table_lines(rep.table())
    assert {ln["runtime"] for ln in lines} == {"eager", "unscored"} and len(lines) == 4
    for ln in lines:
        assert ln["top-1"] == "-", ln
        assert (ln["Δ eager"] == "failed") == (ln["runtime"] == "unscored"), ln


def test_the_header_says_where_eagers_top1_came_from_when_eager_failed(
    bench_run: Path, eager_fails_when_scored: None, tmp_path: Path
) -> None:
    """Eager timed but its outputs failed: its row's top-1 reads "failed", while the header read
    "eager top-1 N%", a figure of the fallback reference (the model in fp32 on the CPU in chunks
    of 64). The header names it; bench.json's reference_accuracy is that same figure."""
    from dataclasses import replace

    from typer.testing import CliRunner

    from vitkit.cli import app

    res = CliRunner().invoke(
        app,
        ["bench", str(bench_run), "--runtimes", "eager", "--device", "cpu", "--batch-sizes",
         "1,2", "--min-time", "0.02", "--warmup", "1", "--rounds", "1", "--accuracy-images",
         "16", "--out", str(tmp_path)],
        env={"COLUMNS": "250"},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "bench.json").read_text())
    (eager,) = doc["runtimes"]
    assert eager["accuracy_error"] and eager["accuracy"] is None
    pct = f"{100 * doc['reference_accuracy']:.2f}%"
    said = " ".join(res.output.split())
    assert "eager top-1" not in said
    assert (
        f"top-1 {pct} of the model in fp32 on the CPU in chunks of 64 (eager's own figure failed)"
        in said
    )
    assert "failed" in said.split("eager", 2)[-1]  # its row
    # --device cuda alone has no eager row on the CPU; a scored eager row is "eager top-1"
    rep = BenchReport(**{**doc, "runtimes": [], "rows": [], "untimed_cells": []})
    assert rep.reference_text() == (
        f"top-1 {pct} of the model in fp32 on the CPU in chunks of 64 (no eager on the CPU)"
    )
    scored = RuntimeResult(**{**eager, "accuracy_error": None})
    assert replace(rep, runtimes=[scored]).reference_text() == f"eager top-1 {pct}"
