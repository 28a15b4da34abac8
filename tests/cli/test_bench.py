from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vitkit.artifact import LoadedModel
from vitkit.cli import app
from vitkit.cli._common import console

runner = CliRunner()
FAST = ["--batch-sizes", "1,2", "--min-time", "0.02", "--warmup", "1", "--rounds", "1"]


def one_error_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return str(lines[0])


@pytest.fixture(scope="session")
def run_dir(train_nano: Callable[[str, int], Path]) -> Path:
    """vit-nano (patch 7), one epoch on mnist-mini: a few seconds."""
    return train_nano("cli-bench", 1)


@pytest.fixture
def runs_here(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, dest)
    return dest


def test_default_run_in_json(runs_here: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["bench", "--runtimes", "eager,ort,ort-int8", "--device", "cpu,cuda", "--json",
         "--accuracy-images", "100", "--threads", "1", "--csv", "extra.csv",
         "--plot", "extra.png", *FAST],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert Path(doc["run"]).resolve() == runs_here.resolve()
    assert doc["command"].startswith("vitkit ")
    assert doc["threads"]["torch"] == doc["threads"]["onnxruntime"] == 1
    # FAST's timing options, not the defaults (10 warm-up calls, 2 s, 3 rounds): a dropped one
    # only made the bench slower
    settings = doc["settings"]
    assert (settings["warmup"], settings["min_time_s"], settings["rounds"]) == (1, 0.02, 1)
    assert settings["batch_sizes"] == [1, 2] and settings["accuracy_images"] == 100
    assert json.loads((runs_here / "bench" / "bench.json").read_text()) == doc  # the same report
    ok = {(r["runtime"], r["device"]) for r in doc["runtimes"] if r["status"] == "ok"}
    assert {("eager", "cpu"), ("ort", "cpu"), ("ort-int8", "cpu")} <= ok
    assert {(r["runtime"], r["batch"]) for r in doc["rows"] if r["device"] == "cpu"} == {
        (n, b) for n in ("eager", "ort", "ort-int8") for b in (1, 2)
    }
    assert doc["data"]["labelled"] and doc["data"]["images"] == 100
    for name in ("bench.json", "bench.csv", "bench.png"):
        assert (runs_here / "bench" / name).is_file(), name
    assert (tmp_path / "extra.csv").read_text() == (runs_here / "bench" / "bench.csv").read_text()
    assert (tmp_path / "extra.png").read_bytes() == (runs_here / "bench" / "bench.png").read_bytes()
    assert {"extra.csv", "extra.png"} <= set(doc["files"])


def test_human_output_is_a_table_on_stderr(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 250)  # a wide terminal: whole column headers
    result = runner.invoke(
        app,
        ["bench", str(runs_here), "--runtimes", "eager,ort,trt", "--device", "cpu",
         "--accuracy-images", "50", *FAST],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    err = " ".join(result.stderr.split())
    for text in ("p50 ms", "p99 ms", "img/s", "speed-up", "% peak", "threads: torch"):
        assert text in err, text
    assert "trt runs on cuda only" in err  # asked for, cannot run: listed with the reason
    assert "bench/bench.json" in err


def test_accuracy_needs_only_the_test_files(
    runs_here: Path,
    test_files_only: Path,
    fashion_run: Callable[[LoadedModel], LoadedModel],
) -> None:
    """The accuracy column of a run copied with only its dataset's test files here: the data
    was 'unavailable' (train-images missing), so the bench timed synthetic images and scored
    nothing. The copy "trained on fashion-mnist" scores the digits it holds as the run scores
    mnist-mini's (the same 200 of 1,000 test images, the run's own mean/std)."""
    from vitkit.artifact import load_model

    original = json.loads((runs_here / "model.json").read_text())
    bench = ["bench", str(runs_here), "--runtimes", "eager", "--device", "cpu", "--json",
             "--accuracy-images", "200", "--threads", "1", *FAST]  # fmt: skip
    want = runner.invoke(app, bench)
    assert want.exit_code == 0, want.output
    (runs_here / "model.json").write_text(json.dumps(fashion_run(load_model(runs_here)).meta))
    result = runner.invoke(app, [*bench, "--data-root", str(test_files_only)])
    assert result.exit_code == 0, result.output
    doc, before = json.loads(result.stdout), json.loads(want.stdout)
    assert doc["data"]["source"] == "fashion-mnist test split (200 of 1,000 images)"
    assert doc["data"]["labelled"] and not doc["data"]["synthetic"]
    assert [r["accuracy"] for r in doc["runtimes"]] == [r["accuracy"] for r in before["runtimes"]]
    assert doc["runtimes"][0]["accuracy"] is not None and original["dataset"] == "mnist-mini"


def test_untrained_model_goes_to_bench_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--model", "vit-nano", "--image-size", "16", "--patch-size", "8"]
    result = runner.invoke(app, [*args, "--runtimes", "eager", "--device", "cpu", "--json", *FAST])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"] is None and doc["model"]["model"] == "vit-nano"
    # the options' model, not vit-nano's 32 px and patch 4
    assert (doc["model"]["config"]["image_size"], doc["model"]["config"]["patch_size"]) == (16, 8)
    assert doc["settings"]["image_size"] == 16
    assert json.loads((tmp_path / "bench" / "vit-nano" / "bench.json").read_text()) == doc
    # the header names what the options change of vit-nano (at 16 px its patch would be 4)
    result = runner.invoke(app, [*args, "--runtimes", "eager", "--device", "cpu", *FAST])
    assert result.exit_code == 0, result.output
    assert "untrained vit-nano · vit-nano (patch_size 8) 16px " in " ".join(result.stderr.split())


def test_device_auto_as_train_takes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device auto` was "unknown device 'auto' (use cpu, cuda or cuda:N)" in bench alone."""
    import torch

    monkeypatch.chdir(tmp_path)
    args = ["bench", "--model", "vit-nano", "--image-size", "16", "--patch-size", "4"]
    result = runner.invoke(app, [*args, "--runtimes", "eager", "--device", "auto", "--json", *FAST])
    assert result.exit_code == 0, result.output
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert json.loads(result.stdout)["settings"]["devices"] == [here]


def test_the_exports_it_makes_are_listed_with_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bench wrote OUT/export/model*.onnx and export.json but named them in a note only
    ("exported fp32, int8-dynamic to ..."): bench.json's files (and --json's) and the closing
    "wrote" line list every file it wrote, the exports among them, and none it reused."""
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--model", "vit-nano", "--image-size", "16", "--patch-size", "4",
            "--device", "cpu", "--runtimes", "eager,ort,ort-int8", "--accuracy-images", "8"]  # fmt: skip
    result = runner.invoke(app, [*args, "--json", *FAST])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    out = Path("bench") / "vit-nano"
    made = [out / "export" / name for name in ("model.onnx", "model.int8.onnx", "export.json")]
    assert doc["files"] == [str(p) for p in (out / "bench.json", out / "bench.csv", out / "bench.png", *made)]  # fmt: skip
    assert json.loads((out / "bench.json").read_text())["files"] == doc["files"]
    assert all(p.is_file() for p in made)
    result = runner.invoke(app, [*args, *FAST])  # now they are current: reused, not written
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert f"reused {made[0]}" in err
    wrote = err.rsplit(" · wrote ", 1)[1]
    assert wrote == f"{out / 'bench.json'}, {out / 'bench.csv'}, {out / 'bench.png'}", wrote


def test_no_runs_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["bench"]))
    assert "vitkit train mnist-mini" in line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--runtimes", "onnx"], "unknown runtime 'onnx'"),
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--batch-sizes", "a,b"], "--batch-sizes must be integers"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--model", "vit-nano"], "give a RUN or --model NAME, not both"),
        (["--embed-dim", "128"], "go with --model"),
        (["--compile-mode", "turbo"], "unknown --compile-mode"),
        (["--data", "cifar1O"], "unknown dataset 'cifar1O'; did you mean 'cifar10'"),
        # said before the grids are built (or their MNIST downloaded): the catalog knows the size
        (["--data", "mnist-grid", "--data-root", "empty"], "has 56 px x 1 channel images"),
        (["--min-time", "nan"], "--min-time must be > 0 seconds, got nan"),
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--accuracy-images", "-5"], "--accuracy-images must be >= 0, got -5"),
        (["--threads", "99999999999"], "more than 4x this machine's"),
        (["--out", "afile"], "--out afile is a file, not a folder"),
        (["--plot", "afile/x.png"], "--plot afile/x.png: afile is a file, not a folder"),
        (["--csv", "."], "--csv . is a folder; give a file name"),
        (["--data-root", "afile"], "--data-root afile is a file, not a folder"),
        # --plot weights.safetensors replaced the weights with a PNG; --csv bench.json the report
        (["--plot", "model.safetensors"], "--plot must name a .png file, got model.safetensors"),
        (["--csv", "out/bench.json"], "--csv must name a .csv file"),
        (["--out", "{run}"], "is the run itself: bench's own exports would replace"),
        # another run's exports were replaced by this one's (and eval --onnx of it then failed)
        (["--out", "other"], "--out other is a run directory: bench's own exports would"),
        (["--out", "{run}/export"], "is a run's export folder: bench's reports and exports"),
    ],
)
def test_bad_options_are_one_line_errors(runs_here: Path, args: list[str], message: str) -> None:
    Path("afile").write_text("not a folder")  # runs_here's cwd is tmp_path
    Path("other").mkdir(exist_ok=True)
    Path("other/model.json").write_text("{}")
    args = [a.replace("{run}", str(runs_here)) for a in args]
    result = runner.invoke(app, ["bench", str(runs_here), *args])
    assert message in one_error_line(result)
    assert not (runs_here / "bench").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_unwritable_outputs_fail_before_measuring(runs_here: Path) -> None:
    """A --csv in a folder that takes no files failed after every cell was timed, naming a temp
    file; now before, naming the option."""
    line = one_error_line(runner.invoke(app, ["bench", str(runs_here), "--csv", "/proc/x.csv"]))
    assert line.startswith("error: cannot write to /proc (--csv /proc/x.csv)")
    assert not (runs_here / "bench").exists()


def test_plot_without_matplotlib_fails_up_front(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    line = one_error_line(runner.invoke(app, ["bench", str(runs_here), "--plot", "x.png"]))
    assert "--plot x.png needs matplotlib" in line


def test_unknown_model_and_bad_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["bench", "--model", "vit-nanoo"]))
    assert "did you mean 'vit-nano'" in line
    line = one_error_line(
        runner.invoke(
            app, ["bench", "--model", "vit-nano", "--image-size", "30", "--patch-size", "4"]
        )
    )
    assert "patch" in line


def test_missing_run_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(runner.invoke(app, ["bench", str(tmp_path / "nope")]))
    assert "no such run" in line or "not a run directory" in line


def test_the_checkpoints_weights_are_benchmarked_beside_them(runs_here: Path) -> None:
    """bench of RUN/checkpoint/last.safetensors wrote RUN/bench/, the best weights' report."""
    last = runs_here / "checkpoint" / "last.safetensors"
    made = runner.invoke(app, ["export", str(last), "--verify-images", "32"])  # export-last/
    assert made.exit_code == 0, made.output
    args = ["bench", str(last), "-r", "ort", "-b", "1", "--min-time", "0.02", "--json"]
    result = runner.invoke(app, [*args, "--warmup", "1", "--accuracy-images", "8"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"] == str(last)
    mine = runs_here / "checkpoint" / "export-last" / "model.onnx"  # these weights' export
    assert f"reused {mine}" in report["notes"], report["notes"]
    assert (runs_here / "checkpoint" / "bench-last" / "bench.json").is_file()
    assert not (runs_here / "bench").exists()


def test_out_dot_inside_a_runs_export_folder_is_refused(
    runs_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (runs_here / "export").mkdir(exist_ok=True)
    monkeypatch.chdir(runs_here / "export")  # `.` has no name: the folder is known resolved
    line = one_error_line(runner.invoke(app, ["bench", str(runs_here), "-o", "."]))
    assert "--out . is a run's export folder" in line and str(runs_here / "bench") in line
    last = runs_here / "checkpoint" / "last.safetensors"  # those weights' export folder too
    mine = runs_here / "checkpoint" / "export-last"
    line = one_error_line(runner.invoke(app, ["bench", str(last), "-o", str(mine)]))
    assert "is a run's export folder" in line and "bench-last" in line
