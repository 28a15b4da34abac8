"""bench.json against the shipped schema; CSV and PNG written; the tables render."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from vitkit.bench import BenchReport
from vitkit.bench.report import SCHEMA_PATH

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


def test_png_is_written(report: BenchReport, bench_run: Path) -> None:
    png = bench_run / "bench" / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in report.files


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
