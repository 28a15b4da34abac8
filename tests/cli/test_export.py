from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from vitkit.cli.export import export_command
from vitkit.export import onnx as onnx_module
from vitkit.export.onnx import newest_opset

runner = CliRunner()
app = typer.Typer()
app.command("export")(export_command)


@app.callback()
def _root() -> None:
    """A local app: the lead registers `export` in vitkit.cli."""


def one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return str(lines[0])


@pytest.fixture(scope="session")
def run_dir(train_nano: Callable[[str, int], Path]) -> Path:
    """A short vit-nano run on mnist-mini (2 epochs, a few seconds)."""
    return train_nano("cli-export", 2)


@pytest.fixture
def runs_here(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the run under ./runs in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, dest)
    return dest


def test_no_runs_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["export", "--onnx"]))
    assert "no run given and none found" in line and "vitkit train mnist-mini" in line


def test_default_run_acceptance_export_in_json(runs_here: Path) -> None:
    result = runner.invoke(app, ["export", "--onnx", "--fp16", "--int8", "static", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert report["passed"] is True and report["exporter"] == "dynamo"
    assert Path(report["run"]).resolve() == runs_here.resolve()
    export = runs_here / "export"
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json"):
        assert (export / name).is_file(), name
    assert [p["precision"] for p in report["precisions"]] == ["fp32", "fp16", "int8-static"]
    assert json.loads((export / "export.json").read_text())["passed"] is True


def test_each_option_reaches_the_export(runs_here: Path) -> None:
    """The options were checked for their errors only: --batch 4 (or --opset, --verify-images,
    --calib-images, --threads, --atol, --int8-max-drop) dropped on the way to export_onnx
    exported with the defaults and passed. Each is given a value other than its default and found in the report
    and in the model written."""
    from vitkit.export import ort_session, read_onnx_metadata

    out = runs_here.parent / "elsewhere" / "m.onnx"
    args = ["--legacy-exporter", "--batch", "4", "--opset", "18", "--verify-images", "16",
            "--int8", "static", "--calib-images", "8", "--threads", "1", "--atol", "0.001",
            "--int8-max-drop", "50", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, ["export", str(runs_here), *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["exporter"] == "torchscript" and (report["batch"], report["opset"]) == (4, 18)
    assert report["data"]["source"] == "mnist-mini test split (16 of 1,000 images)"
    assert report["data"]["calibration_images"] == 8 and report["threads"] == 1
    assert report["tolerances"]["fp32_atol"] == 0.001
    assert report["tolerances"]["int8_max_drop"] == 0.5  # 50 points, as a fraction
    assert [p["precision"] for p in report["precisions"]] == ["fp32", "int8-static"]
    assert report["files"][:2] == [str(out), str(out.with_name("m.int8.onnx"))]
    assert not (runs_here / "export").exists()
    meta = read_onnx_metadata(out)
    assert meta["batch"] == 4 and ort_session(out).get_inputs()[0].shape[0] == 4
    import onnx

    model = onnx.load(str(out), load_external_data=False)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]


def test_the_checkpoints_weights_are_exported_beside_them(runs_here: Path) -> None:
    """`export RUN/checkpoint/last.safetensors` wrote RUN/export/model.onnx: the run's own
    export was replaced by other weights' (and eval --onnx of the run then refused it)."""
    last = runs_here / "checkpoint" / "last.safetensors"
    result = runner.invoke(app, ["export", str(last), "--verify-images", "64", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"] == str(last)  # what was exported, as eval names it
    assert Path(report["files"][0]) == runs_here / "checkpoint" / "export-last" / "model.onnx"
    assert not (runs_here / "export").exists()


def test_human_output_names_the_run_taken_and_the_files(runs_here: Path) -> None:
    result = runner.invoke(
        app, ["export", "--legacy-exporter", "--verify-images", "64", "--int8", "dynamic"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # human output goes to stderr
    err = " ".join(result.stderr.split())
    assert f"using the most recent run: runs/{runs_here.name}" in err
    assert "torchscript exporter" in err and "int8-dynamic" in err and "ok" in err
    assert "export/model.int8.onnx" in err and "export/export.json" in err


def test_weights_changed_after_tracing_exit_nonzero(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = onnx_module.export_graph

    def trace_then_change(model: torch.nn.Module, **kwargs: Any) -> Any:
        traced = original(model, **kwargs)
        with torch.no_grad():
            model.head.bias.add_(0.01)  # type: ignore[operator]
        return traced

    monkeypatch.setattr("vitkit.export.onnx.export_graph", trace_then_change)
    result = runner.invoke(app, ["export", str(runs_here), "--legacy-exporter", "--fp16"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "FAILED" in result.stderr  # the table says so
    line = result.stderr.strip().splitlines()[-1]  # then one red line says why
    assert "error: verification failed: fp32: max |logit difference|" in line
    assert "exceeds the tolerance 0.0001" in line
    report = json.loads((runs_here / "export" / "export.json").read_text())
    assert report["passed"] is False and report["failures"]
    assert (runs_here / "export" / "model.failed.onnx").is_file()
    assert not (runs_here / "export" / "model.onnx").exists()


def test_a_rename_that_fails_leaves_the_export_folder_as_it_was(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rename of the final pass failed (EACCES; a full or read-only disk alike):
    the new model.onnx stayed beside the earlier export's files and its export.json. Now the
    files renamed before it are put back: the folder is byte for byte as it was, and the
    error is one line naming the file."""
    first = runner.invoke(app, ["export", str(runs_here), "--no-verify", "--int8", "dynamic"])
    assert first.exit_code == 0, first.output
    export = runs_here / "export"
    before = {p.name: p.read_bytes() for p in export.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "export.json"} <= set(before)
    replace = os.replace

    def fp16_fails(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "model.fp16.onnx" and str(src).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))
        replace(src, dst)

    monkeypatch.setattr("vitkit.artifact.os.replace", fp16_fails)
    # another exporter: a model.onnx of other bytes, renamed before model.fp16.onnx
    args = ["export", str(runs_here), "--no-verify", "--legacy-exporter", "--fp16"]
    line = one_error_line(runner.invoke(app, args))
    assert line.startswith("error: Permission denied: ") and "model.fp16.onnx'" in line
    assert {p.name: p.read_bytes() for p in export.iterdir()} == before


def test_wrong_tolerance_exits_nonzero_with_the_report(runs_here: Path) -> None:
    result = runner.invoke(
        app,
        ["export", str(runs_here), "--legacy-exporter", "--atol", "1e-12", "--json"],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False and "1e-12" in report["failures"][0]
    # stderr says why (it was empty under --json: a script saw a silent exit 1)
    assert "error: verification failed: fp32" in result.stderr.strip().splitlines()[-1]


def test_int8_max_drop_loosens_a_failing_int8_gate(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The int8 gate's 0.5 points had no flag: on a small test split (one image more than 0.5
    points) a command-line user could not pass it, and the failure suggested only
    --verify-images. --int8-max-drop POINTS sets it, export.json records it (a fraction, as
    Tolerances takes it), and the failure names it."""
    original = onnx_module.eager_reference

    def five_more_right(model: torch.nn.Module, data: Any) -> Any:  # as if int8 flipped five
        from dataclasses import replace

        ref = original(model, data)
        return replace(ref, accuracy=ref.accuracy + 5 / len(data.images))

    monkeypatch.setattr("vitkit.export.onnx.eager_reference", five_more_right)
    args = ["export", str(runs_here), "--legacy-exporter", "--int8", "dynamic"]
    args += ["--verify-images", "100", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    (failure,) = report["failures"]
    assert failure.startswith("int8-dynamic: top-1 accuracy ") and "(allowed: 0.5; " in failure
    assert failure.endswith(
        "one image is 1.00 points of 100: verify on more images (--verify-images 1000) or "
        "allow more drop (--int8-max-drop POINTS))"
    ), failure
    assert report["tolerances"]["int8_max_drop"] == 0.005
    result = runner.invoke(app, [*args, "--int8-max-drop", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["tolerances"]["int8_max_drop"] == 0.2
    recorded = json.loads((runs_here / "export" / "export.json").read_text())
    assert recorded["passed"] is True and recorded["tolerances"]["int8_max_drop"] == 0.2
    (int8,) = [p for p in report["precisions"] if p["precision"] == "int8-dynamic"]
    assert int8["passed"] is True and int8["accuracy_drop_points"] > 0.5  # failed by default


def test_untrained_model_is_exported_on_synthetic_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.export import ort_session, read_onnx_metadata

    monkeypatch.chdir(tmp_path)
    args = ["export", "--model", "vit-nano", "--image-size", "28", "--channels", "1"]
    result = runner.invoke(app, [*args, "--patch-size", "7", "--legacy-exporter"])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.stderr
    # the header names what the options change of vit-nano (at 28 px its patch would be 4)
    assert "untrained vit-nano · vit-nano (patch_size 7) " in " ".join(result.stderr.split())
    onnx_file = tmp_path / "exports" / "vit-nano" / "model.onnx"
    # the model the options describe, not vit-nano's defaults (32 px, 3 channels, patch 4)
    meta = read_onnx_metadata(onnx_file)
    assert (meta["image_size"], meta["channels"], meta["trained"]) == (28, 1, False)
    config = meta["model_spec"]["config"]
    assert (config["patch_size"], config["in_chans"], config["image_size"]) == (7, 1, 28)
    assert ort_session(onnx_file).get_inputs()[0].shape[1:] == [1, 28, 28]
    report = json.loads((tmp_path / "exports" / "vit-nano" / "export.json").read_text())
    assert report["passed"] is True and report["data"]["synthetic"] is True
    assert report["model"]["config"] == config and report["exporter"] == "torchscript"
    assert report["files"] == ["exports/vit-nano/model.onnx", "exports/vit-nano/export.json"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--batch", "0"], "--batch must be 'dynamic' or a positive integer"),
        (["--batch", "big"], "--batch must be 'dynamic' or a positive integer"),
        (["--int8", "int4"], "--int8 must be one of auto, dynamic, static"),
        (["--int8", "dinamic"], "got 'dinamic'; did you mean 'dynamic'?"),  # the closest, as names
        (["--opset", "9"], "--opset must be 17 to"),
        # past what torch's exporter converts to, it wrote a model that failed to check
        (["--opset", str(newest_opset() + 1)], f"--opset must be 17 to {newest_opset()} "),
        (["--opset", "21", "--legacy-exporter"], "--opset must be 17 to 20 (what torch's"),
        (["--int8", "auto", "--no-verify"], "needs verification"),
        (["--model", "vit-nano"], "give a RUN or --model NAME, not both"),
        (["--embed-dim", "128"], "go with --model"),
        (["--out", "model.bin"], "--out must name a .onnx file"),
        # an fp32 model there would overwrite another export's int8 model (or pass for one)
        (["--out", "model.int8.onnx"], "*.int8.onnx is the name of another export's int8"),
        (["--out", "model.fp16.onnx"], "name the fp32 model otherwise"),
        (["--out", "model.failed.onnx"], "another export's failed model"),
        (["--out", "model.INT8.onnx"], "another export's int8 model"),  # one file on macOS
        # named by its flag, as --atol -1 is (it read "tolerance fp32_atol")
        (["--atol", "nan"], "--atol must be a finite number, got nan"),
        (["--atol", "inf"], "--atol must be a finite number, got inf"),
        # a tolerance named by its flag too (it had none: "tolerances.int8_max_drop")
        (
            ["--int8", "dynamic", "--int8-max-drop", "nan"],
            "--int8-max-drop must be a finite number, got nan",
        ),
        (
            ["--int8", "dynamic", "--int8-max-drop", "-inf"],
            "--int8-max-drop must be a finite number, got -inf",
        ),
    ],
)
def test_bad_options_are_one_line_errors(runs_here: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["export", str(runs_here), *args])
    assert message in one_error_line(result)
    assert not (runs_here / "export").exists()


def test_unknown_model_suggests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "--model", "vit-tinyy"])
    assert "did you mean 'vit-tiny'" in one_error_line(result)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_table_fits_the_terminal_by_leaving_columns_out(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns (and in a pipe, where Rich assumes 80) figures used to be cut to "1,9…"."""
    from types import SimpleNamespace

    from vitkit.cli import _common
    from vitkit.cli import export as export_cli

    def precision(name: str, ips: float) -> SimpleNamespace:
        return SimpleNamespace(
            precision=name,
            size_bytes=1_920_000,
            max_abs_diff=2.6e-6,
            top1_agreement=1.0,
            accuracy=0.978,
            images_per_s=ips,
            verified=True,
            passed=True,
        )

    report = SimpleNamespace(
        model={"model": "vit-micro"},
        run="runs/mnist-mini-vit-micro",
        exporter="dynamo",
        opset=20,
        batch="dynamic",
        export_seconds=4.5,
        eager={"accuracy": 0.978, "images_per_s": 1609},
        verified=True,
        data={"source": "mnist-mini test split (1,000 of 1,000 images)"},
        precisions=[precision("fp32-onnxruntime", 2400), precision("int8-dynamic", 3600)],
        int8=None,
        notes=[],
        total_seconds=24.7,
        files=["model.onnx"],
    )
    monkeypatch.setattr(_common.console, "width", width)
    with _common.console.capture() as out:
        export_cli._print(report)
    text = out.get()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    assert "1.50x" in text and "100.00%" in text  # speed and agreement survive every width
    assert ("left out at" in text) == (width < 120)


def test_no_verify_shows_no_empty_columns(runs_here: Path) -> None:
    """--no-verify measures nothing: its table said "left out at 80 columns: img/s", of a
    column that would only have held dashes."""
    result = runner.invoke(app, ["export", str(runs_here), "--legacy-exporter", "--no-verify"])
    assert result.exit_code == 0, result.output
    assert "left out" not in result.stderr
    assert "checker only" in result.stderr
    for column in ("img/s", "agree", "top-1", "vs fp32"):
        assert column not in result.stderr, column
    assert "note:" not in result.stderr
    # options this export does not use get a note (they were ignored without a word)
    args = ["--no-verify", "--atol", "0.5", "--calib-images", "10", "--int8-max-drop", "2"]
    result = runner.invoke(app, ["export", str(runs_here), "--legacy-exporter", *args, "--json"])
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "--calib-images does nothing without --int8 static or auto" in err
    assert "--int8-max-drop does nothing without --int8" in err
    assert "--atol does nothing with --no-verify" in err
    args = ["--no-verify", "--int8", "dynamic", "--int8-max-drop", "2", "--json"]
    result = runner.invoke(app, ["export", str(runs_here), "--legacy-exporter", *args])
    assert result.exit_code == 0, result.output
    assert "--int8-max-drop does nothing with --no-verify" in " ".join(result.stderr.split())


def test_static_int8_is_never_calibrated_on_random_images(runs_here: Path) -> None:
    """Where the run's dataset could not be had, --int8 static was calibrated on random pixels,
    reported 'ok' on synthetic images, and lost a point on real ones."""
    meta = json.loads((runs_here / "model.json").read_text())  # a dataset that is not here
    (runs_here / "model.json").write_text(json.dumps({**meta, "dataset": "mnist"}))
    args = ["export", str(runs_here), "--data-root", "empty", "--no-download"]
    line = one_error_line(runner.invoke(app, [*args, "--int8", "static"]))
    assert "--int8 static calibrates on real training images and none could be had" in line
    assert "use --int8 dynamic" in line and not (runs_here / "export").exists()
    result = runner.invoke(app, [*args, "--int8", "auto", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [c["precision"] for c in report["int8"]["candidates"]] == ["int8-dynamic"]
    assert any(n.startswith("--int8 auto: static int8 left out") for n in report["notes"])
    # not "faster of those that pass the accuracy gate": one candidate, and no labels to gate on
    assert report["int8"]["reason"].startswith("the only candidate: static needs real")
    assert report["data"]["calibration_images"] == 0  # it said 512, of images never used


def test_int8_auto_with_only_the_test_files_verifies_on_them(
    runs_here: Path,
    test_files_only: Path,
    fashion_run: Callable[[Any], Any],
) -> None:
    """A run whose dataset's test files alone are here (t10k-*): --int8 auto wanted training
    images to calibrate static int8 on, so the whole dataset was loaded, which failed, and the
    export verified on synthetic images, with no accuracy. It verifies on the test split and
    keeps int8 dynamic, saying why static was left out; --int8 static is refused, naming it."""
    from vitkit.artifact import load_model

    meta = fashion_run(load_model(runs_here)).meta  # mnist-mini's test digits, as fashion-mnist
    (runs_here / "model.json").write_text(json.dumps(meta))
    args = ["export", str(runs_here), "--data-root", str(test_files_only), "--no-download"]
    result = runner.invoke(app, [*args, "--int8", "auto", "--verify-images", "200", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["source"] == "fashion-mnist test split (200 of 1,000 images)"
    assert not report["data"]["synthetic"] and report["data"]["labelled"]
    assert report["data"]["calibration_images"] == 0
    assert report["eager"]["accuracy"] is not None
    assert [c["precision"] for c in report["int8"]["candidates"]] == ["int8-dynamic"]
    assert report["int8"]["chosen"] == "dynamic"
    (note,) = [n for n in report["notes"] if n.startswith("--int8 auto: static int8 left out")]
    assert "the train split of dataset 'fashion-mnist' is unavailable" in note, note
    assert "missing train-images-idx3-ubyte.gz" in note and note.endswith("int8 is dynamic")
    assert not any("synthetic" in n for n in report["notes"]), report["notes"]
    line = one_error_line(runner.invoke(app, [*args, "--int8", "static"]))
    assert "--int8 static calibrates on real training images and none could be had (the " in line
    assert "train split of dataset 'fashion-mnist' is unavailable" in line, line


def test_more_threads_than_cpus_is_named(runs_here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vitkit export RUN --threads 3` on 2 CPUs timed its img/s column without a word, where
    bench says "3 threads on 2 logical CPU(s): ..." of the same timing: the note is bench's."""
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    args = ["export", str(runs_here), "--legacy-exporter", "--verify-images", "32", "--json"]
    result = runner.invoke(app, [*args, "--threads", "2"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any(n.startswith("2 threads on 1 logical CPU(s): the threads time-share") for n in notes)
    assert any("are a quick check" in n for n in notes), notes
    result = runner.invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert not any("logical CPU(s)" in n for n in json.loads(result.stdout)["notes"])
