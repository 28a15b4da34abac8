from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vitkit
from vitkit.artifact import LoadedModel
from vitkit.cli import app
from vitkit.data import load_dataset
from vitkit.errors import UserError
from vitkit.train import TrainConfig, train

runner = CliRunner()


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run tests/eval/conftest.py trains (same directory: trained once per session)."""
    out = tmp_path_factory.getbasetemp() / "eval-mnist-mini-run"
    if not (out / "summary.json").is_file():
        train(
            TrainConfig(
                dataset="mnist-mini",
                model="vit-nano",
                model_overrides={"patch_size": 7},
                epochs=2,
                batch_size=64,
                lr=2e-3,
                warmup_epochs=0.5,
                augment=False,
                seed=0,
                device="cpu",
                out=str(out),
                overwrite=True,
            )
        )
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of MNIST test digits as files: grayscale PNG, RGBA PNG, 500x300 JPEG."""
    d = tmp_path_factory.mktemp("digits")
    test = load_dataset("mnist-mini")["test"]
    a = test.images[0, 0].numpy()
    Image.fromarray(a).save(d / "a-gray.png")
    Image.fromarray(np.dstack([a, a, a, np.full_like(a, 255)])).save(d / "b-rgba.png")
    Image.fromarray(a).convert("RGB").resize((500, 300)).save(d / "c-wide.jpg", quality=95)
    return d


# -- eval -----------------------------------------------------------------------------------------
def test_eval_json_matches_summary_and_writes_files(run: Path) -> None:
    result = runner.invoke(app, ["eval", str(run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    summary = json.loads((run / "summary.json").read_text())
    n = summary["test"]["n"]
    assert doc["n"] == n and doc["correct"] == round(summary["test_acc"] * n)
    assert doc["split"] == "test" and doc["dataset"] == "mnist-mini"
    assert {"top1", "top5", "ece", "per_class", "confusion", "most_confident_wrong"} <= set(doc)
    assert len(doc["confusion"]["matrix"]) == 10
    assert doc["files"] == [
        str(run / "eval" / f) for f in ("eval.json", "confusion.png", "wrong.png")
    ]
    assert json.loads((run / "eval" / "eval.json").read_text())["correct"] == doc["correct"]


def test_eval_human_output_and_out_dir(run: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", str(run), "--out", str(tmp_path / "ev"), "--batch-size", "100"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # human output is on stderr
    assert "top-1" in result.stderr and "ECE" in result.stderr and "precision" in result.stderr
    assert "eval.json, confusion.png, wrong.png" in result.stderr
    for name in ("confusion.png", "wrong.png"):
        assert (tmp_path / "ev" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    # the figures printed are the report's, and the report is the run's test split, scored as
    # training scored it (only the words were checked: any number passed)
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert (doc["n"], doc["correct"]) == (1000, round(summary["test_acc"] * 1000))
    err = " ".join(result.stderr.split())
    # the header names the model as train, export and bench do: what it changes of vit-nano
    # (whose patch for 28 px is 4), after the run; it named no model before
    assert err.startswith(f"vitkit eval {run} "), err
    assert " vit-nano (patch_size 7) · mnist-mini test · 1,000 images · " in err, err
    top1, top5 = (f"{100 * doc[k]:.2f}%" for k in ("top1", "top5"))
    assert f"top-1 {top1} ({doc['correct']:,}/1,000) · top-5 {top5}" in err, err
    assert f"ECE {doc['ece']:.4f} (15 bins) · loss {doc['loss']:.4f}" in err, err
    assert f"macro F1 {doc['macro']['f1']:.4f}" in err, err
    for c in doc["per_class"]:  # one table row a class: precision, recall, F1, support
        row = f"{c['precision']:.3f} │ {c['recall']:.3f} │ {c['f1']:.3f} │ {c['support']:,}"
        assert f"│ {c['name']} │ {row} │" in err, (c, err)


def test_eval_of_a_copied_run_needs_only_its_test_files(
    run: Path,
    tmp_path: Path,
    test_files_only: Path,
    fashion_run: Callable[[LoadedModel], LoadedModel],
) -> None:
    """A run copied to a machine with only its dataset's test files (t10k-*): `vitkit eval`
    said "missing train-images-idx3-ubyte.gz", though model.json records the mean/std the run
    was trained with. The copy "trained on fashion-mnist" scores the same digits as the run
    does on mnist-mini's test split (summary.json), image for image."""
    from vitkit.artifact import load_model

    copy = tmp_path / "copied-run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval*", "export", "bench"))
    meta = fashion_run(load_model(copy)).meta
    (copy / "model.json").write_text(json.dumps(meta))
    args = ["eval", str(copy), "--data-root", str(test_files_only), "--no-download"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert (doc["dataset"], doc["n"]) == ("fashion-mnist", 1000)
    assert doc["correct"] == round(summary["test_acc"] * 1000)
    # training needs the train files: the same one-line error as before
    train = ["train", "fashion-mnist", "--data-root", str(test_files_only), "--no-download"]
    error = one_error_line(runner.invoke(app, [*train, "--out", str(tmp_path / "t")]))
    assert error.endswith(
        "fashion-mnist: missing train-images-idx3-ubyte.gz; place it in "
        f"{test_files_only / 'fashion-mnist'} (downloads are off)"
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--onnx"], "no ONNX export at"),
        (["--onnx-file", "m.onnx"], "make one with: vitkit export"),
        # ONNX Runtime runs on the CPU: --device cuda was ignored on a GPU, and named a missing
        # CUDA as the problem on a CPU-only machine
        (["--onnx", "--device", "cuda"], "--onnx runs ONNX Runtime on the CPU; --device cuda does"),
        (["--onnx-file", "m.onnx", "--device", "cuda:1"], "--onnx-file runs ONNX Runtime on the"),
        (["--split", "tset"], "has no split 'tset'"),
        (["--batch-size", "0"], "error: --batch-size must be >= 1, got 0"),
        (["--data", "cifar1O"], "did you mean 'cifar10'"),
    ],
)
def test_eval_errors_are_one_line(run: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", str(run), *args])
    assert message in one_error_line(result)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_out_fails_before_evaluating(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --out` a folder that takes no files (or below a file) failed only once the whole
    split was scored (minutes on a large test set), as `Permission denied: 'ro/eval'`; now
    before, naming the folder and the option."""

    def scored(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated before the report folder was checked")

    monkeypatch.setattr("vitkit.eval.evaluate", scored)
    line = one_error_line(runner.invoke(app, ["eval", str(run), "--out", "/proc/ev"]))
    assert line.startswith("error: cannot write to /proc (--out /proc/ev)"), line
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "ev"
    line = one_error_line(runner.invoke(app, ["eval", str(run), "--out", str(out)]))
    assert f"{tmp_path / 'afile'} is a file, not a folder (for {out})" in line
    # the default folder (RUN/eval) in a run that takes no files: the line says what to do
    module = importlib.import_module("vitkit.eval.evaluate")
    monkeypatch.setattr(module, "report_dir", lambda *args, **kwargs: Path("/proc/eval"))
    line = one_error_line(runner.invoke(app, ["eval", str(run)]))
    assert "cannot write to /proc (for /proc/eval; --out DIR writes the report elsewhere)" in line


def test_another_split_or_dataset_does_not_replace_the_runs_report(
    run: Path, tmp_path: Path
) -> None:
    """`eval RUN --data OTHER` (or `--split train`) wrote over RUN/eval/, the test report."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval*"))
    (tmp_path / "digits" / "3").mkdir(parents=True)  # images to score: read as a test split
    Image.new("L", (28, 28)).save(tmp_path / "digits" / "3" / "0.png")
    for args, folder in (
        ([], "eval"),
        (["--data", f"folder:{tmp_path / 'digits'}/"], "eval-digits-test"),
        (["--split", "train"], "eval-mnist-mini-train"),
        (["--data", "mnist-mini", "--split", "train"], "eval-mnist-mini-train"),
    ):
        result = runner.invoke(app, ["eval", str(copy), *args, "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files"][0] == str(copy / folder / "eval.json")
    test = json.loads((copy / "eval" / "eval.json").read_text())
    assert test["split"] == "test"  # still the test split's


def test_eval_of_a_folder_run_on_its_folder_decodes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained on folder:PATH as it is (size and channels from the images), then
    `eval RUN --data folder:PATH` with PATH spelled otherwise (relative here): eval passes the
    model's size and channels, a cache key the run's cache did not have, and the folder was
    decoded into a second cache of the same images. The run's cache is read now."""
    from vitkit.data.cache import list_caches
    from vitkit.data.sources import folder

    g = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("3", "7"):
            (tmp_path / "digits" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = g.integers(0, 256, (28, 28), np.uint8)
                Image.fromarray(pixels, "L").save(tmp_path / "digits" / split / c / f"{i}.png")
    data_root = tmp_path / "data"
    config = TrainConfig(
        dataset=f"folder:{tmp_path / 'digits'}",
        model="vit-nano",
        model_overrides={"patch_size": 4},
        epochs=1,
        batch_size=4,
        seed=0,
        device="cpu",
        out=str(tmp_path / "run"),
    )
    run = train(config, data_root=data_root).run_dir
    (cache,) = list_caches(data_root)
    decoded: list[object] = []
    real = folder.build_folder
    monkeypatch.setattr(folder, "build_folder", lambda ctx: decoded.append(ctx) or real(ctx))
    monkeypatch.chdir(tmp_path)
    args = ["eval", str(run), "--data", "folder:digits", "--json", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 4
    assert decoded == [] and [c.directory for c in list_caches(data_root)] == [cache.directory]


def test_eval_refuses_a_class_mismatch_and_a_missing_run(run: Path, tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        (tmp_path / "pets" / "train" / cls).mkdir(parents=True)
        Image.new("L", (28, 28)).save(tmp_path / "pets" / "train" / cls / "0.png")
    args = ["eval", str(run), "--data", f"folder:{tmp_path / 'pets'}", "--split", "train"]
    line = one_error_line(runner.invoke(app, args))
    assert "classes the model was not trained on: 'cat', 'dog'" in line
    line = one_error_line(runner.invoke(app, ["eval", str(tmp_path / "nope")]))
    assert "nope" in line
    if not torch.cuda.is_available():
        line = one_error_line(runner.invoke(app, ["eval", str(run), "--device", "cuda"]))
        assert "CUDA is not available" in line


def test_eval_without_run_takes_the_most_recent_one_as_export_does(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vitkit eval` with no RUN was "Missing argument 'run'" (exit 2), where export and bench
    take the most recent run under ./runs and say which."""
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["eval", "--device", "cpu"]))
    assert "no run given and none found: no runs/ directory here" in line
    assert "(or pass RUN)" in line and "--model" not in line  # eval takes no --model
    older, newer = tmp_path / "runs" / "older", tmp_path / "runs" / "newer"
    fresh = shutil.ignore_patterns("eval*")  # the shared run may hold other tests' reports
    shutil.copytree(run, older, ignore=fresh)
    shutil.copytree(run, newer, ignore=fresh)
    (newer / "model.json").touch()  # written last: the most recent run
    os.utime(older / "model.json", (0, 0))
    result = runner.invoke(app, ["eval", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "using the most recent run: runs/newer (pass RUN to choose another)" in err
    assert (newer / "eval" / "eval.json").is_file() and not (older / "eval").exists()
    result = runner.invoke(app, ["eval", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert "most recent" not in result.output  # --json: one document on stdout, no note
    assert json.loads(result.stdout)["run"] == str(Path("runs/newer"))


def test_a_runs_other_json_files_say_to_pass_the_run(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vitkit eval runs/X/train.json` said "... is not a valid model.json: 'model' must be a
    name and 'config' an object", as if the file were a damaged model.json, not the wrong one."""
    copy = tmp_path / "runs" / "x"
    shutil.copytree(run, copy)
    (copy / "export").mkdir(exist_ok=True)
    (copy / "export" / "export.json").write_text('{"passed": true}')
    for name in ("train.json", "summary.json", "export/export.json"):
        line = one_error_line(runner.invoke(app, ["eval", str(copy / name)]))
        assert line.endswith(
            f"{copy / name} is a run's {name}, not a model: pass the run directory {copy}"
        ), line
    monkeypatch.chdir(copy / "export")  # named as given: `..` from inside export/
    line = one_error_line(runner.invoke(app, ["predict", "export.json", str(tmp_path)]))
    expected = "export.json is a run's export/export.json, not a model: pass the run directory .."
    assert line.endswith(expected), line
    with pytest.raises(UserError, match=r"is a run's train\.json, not a model"):
        vitkit.load_model(copy / "train.json")
    # a JSON file in no run is still a model.json that does not parse as one
    stray = tmp_path / "stray.json"
    stray.write_text((copy / "train.json").read_text())
    line = one_error_line(runner.invoke(app, ["eval", str(stray)]))
    assert "is not a valid model.json" in line, line


def test_eval_multi_output_human_output(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vitkit.eval
    from vitkit.eval.evaluate import report_from_logits

    logits = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]], [[0.0, 0.0, 5.0], [0.0, 4.0, 0.0]]])
    labels = torch.tensor([[0, 1], [2, 0]])
    images = torch.zeros((2, 1, 8, 8), dtype=torch.uint8)
    report = report_from_logits(
        logits, labels, ["a", "b", "empty"], images=images, dataset="grid", split="test"
    )
    monkeypatch.setattr(vitkit.eval, "evaluate", lambda *a, **k: report)
    result = runner.invoke(app, ["eval", str(run), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert (
        "exact match 50.00% (1/2)" in result.stderr and "per position 100.0 50.0" in result.stderr
    )
    assert "(all positions)" in result.stderr
    assert "#1 empty a → empty b (" in result.stderr  # one image's labels never split by a wrap
    doc = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert doc["exact_match"] == 0.5 and doc["per_position"] == [1.0, 0.5]
    assert (tmp_path / "ev" / "wrong.png").is_file()


# -- predict --------------------------------------------------------------------------------------
def test_predict_table_json_and_directory(run: Path, images: Path) -> None:
    result = runner.invoke(app, ["predict", str(run), str(images), "--json", "--topk", "3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [Path(p["source"]).name for p in doc["predictions"]] == [
        "a-gray.png",
        "b-rgba.png",
        "c-wide.jpg",
    ]
    assert doc["read"] == 3 and doc["skipped"] == 0
    assert [p["mode"] for p in doc["predictions"]] == ["L", "RGBA", "RGB"]
    assert all(len(p["topk"]) == 3 for p in doc["predictions"])
    gray, rgba, _ = doc["predictions"]
    # same pixels, same answer (to float rounding: rows of one batch may take different GEMM paths)
    assert [t["class"] for t in gray["topk"]] == [t["class"] for t in rgba["topk"]]
    for a, b in zip(gray["topk"], rgba["topk"], strict=True):
        assert a["prob"] == pytest.approx(b["prob"], abs=1e-6)
    assert doc["model_file"] == str(run / "model.safetensors")  # the file that answered
    human = runner.invoke(app, ["predict", str(run), str(images / "a-gray.png")])
    assert human.exit_code == 0, human.output
    assert "(28x28 L)" in human.stderr and "probability" in human.stderr
    assert f"│ 1 │ {gray['label']}" in human.stderr


def test_predict_with_an_onnx_file_names_the_file(
    run: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.export import export_onnx

    onnx_file = tmp_path / "mine.onnx"  # the title names the file that answered
    export_onnx(run, onnx_file, legacy=True, verify=False)
    result = runner.invoke(app, ["predict", str(onnx_file), str(images / "a-gray.png"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model_file"] == str(onnx_file) and doc["predictions"][0]["topk"]
    assert doc["run"] is None  # it was the file's folder: tmp_path is no run
    copy = tmp_path / "copy"  # the shared run stays without an export
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint"))
    in_run = export_onnx(copy, legacy=True, verify=False).files[0]
    result = runner.invoke(app, ["predict", str(in_run), str(images / "a-gray.png"), "--json"])
    assert json.loads(result.stdout)["run"] == str(copy)  # not copy/export
    monkeypatch.chdir(copy / "export")
    result = runner.invoke(app, ["predict", "model.onnx", str(images / "a-gray.png"), "--json"])
    assert json.loads(result.stdout)["run"] == str(copy.resolve())  # a relative path too
    human = runner.invoke(app, ["predict", str(onnx_file), str(images / "a-gray.png")])
    assert human.exit_code == 0, human.output
    assert "mine.onnx" in " ".join(human.stderr.split())
    # the flag as typed, not the library's "device 'cuda'"; a library caller gets its keyword
    for command in (["eval", str(onnx_file)], ["predict", str(onnx_file), str(images / "a-gray.png")]):  # fmt: skip
        result = runner.invoke(app, [*command, "--device", "cuda"])
        assert one_error_line(result).endswith(
            "runs with ONNX Runtime on the CPU; --device cuda does not apply (pass the run"
            " directory to use another device)"
        )
    with pytest.raises(UserError, match=r"; device='cuda:1' does not apply \(load the run dir"):
        vitkit.load_model(onnx_file, device="cuda:1")


def test_predict_skips_unreadable_files(run: Path, images: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = runner.invoke(app, ["predict", str(run), str(bad), str(images / "a-gray.png")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "bad.png" in result.stderr
    result = runner.invoke(
        app, ["predict", str(run), str(bad), str(images / "a-gray.png"), "--json"]
    )
    doc = json.loads(result.stdout)
    assert doc["skipped"] == 1 and "cannot read" in doc["predictions"][0]["error"]
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(bad)]))
    assert "none of the 1 image(s) could be read" in line and "bad.png" in line
    # --json: the document says why for each file (stdout was empty), and the exit code is 1
    result = runner.invoke(app, ["predict", str(run), str(bad), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["read"] == 0 and "cannot read" in doc["predictions"][0]["error"]
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "empty")]))
    assert line.endswith(f"no such file or directory: {tmp_path / 'empty'}")
    # a mistyped path beside good ones: an error up front (it was skipped, exit 0)
    typo = tmp_path / "a-grey.png"
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(images / "a-gray.png"), str(typo)]))  # fmt: skip
    assert line.endswith(f"no such file or directory: {typo}")
    (tmp_path / "dir").mkdir()
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(tmp_path / "dir")]))
    assert "no image files in" in line
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(bad), "--topk", "0"]))
    assert line.endswith("error: --topk must be >= 1, got 0"), line  # the flag, as typed


# -- explain --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["rollout", "last-layer"])
def test_explain_writes_an_overlay(run: Path, images: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / f"{method}.png"
    args = ["explain", str(run), str(images / "c-wide.jpg"), "--out", str(out), "--method", method]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["method"] == method and doc["out"] == str(out)
    grid = doc["grid"]
    assert grid == [4, 4] and sum(map(sum, doc["attention"])) == pytest.approx(1.0, abs=1e-4)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (500, 300) == tuple(doc["out_size"])
    human = runner.invoke(app, args)
    assert human.exit_code == 0 and f"wrote {out} (500x300)" in human.stderr
    assert doc["prediction"]["label"] in human.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--method", "gradcam"], "unknown --method 'gradcam' (use rollout or last-layer)"),
        (["--out", "x.jpg"], "--out must be a .png file"),
    ],
)
def test_explain_errors_are_one_line(
    run: Path, images: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["explain", str(run), str(images / "a-gray.png"), "--out", str(tmp_path / "x.png")]
    assert message in one_error_line(runner.invoke(app, [*base, *args]))


def test_predict_glob_and_explain_folder(run: Path, images: Path, tmp_path: Path) -> None:
    """A quoted glob was 'no such file or directory'; explain of a folder (many images, now
    that the library reads a folder) must stay a one-line error, not an unpacking traceback."""
    result = runner.invoke(app, ["predict", str(run), str(images / "a-*.png"), "--json"])
    assert result.exit_code == 0, result.output
    assert [p["source"] for p in json.loads(result.stdout)["predictions"]] == [
        str(images / "a-gray.png")
    ]
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(images / "*.gif")]))
    assert "no files match" in line
    # a real folder named like a pattern is a folder: a pattern inside it reads it, and a typo
    # inside it is a missing file (it read v/, and said 'no files match')
    (tmp_path / "[v1]").mkdir()
    shutil.copy(images / "a-gray.png", tmp_path / "[v1]" / "a.png")
    (tmp_path / "v").mkdir()
    shutil.copy(images / "a-gray.png", tmp_path / "v" / "b.png")
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "[v1]" / "*"), "--json"])
    assert result.exit_code == 0, result.output
    sources = [p["source"] for p in json.loads(result.stdout)["predictions"]]
    assert sources == [str(tmp_path / "[v1]" / "a.png")]
    typo = tmp_path / "[v1]" / "b.png"
    line = one_error_line(runner.invoke(app, ["predict", str(run), str(typo)]))
    assert line.endswith(f"no such file or directory: {typo}")
    args = ["explain", str(run), str(images), "--out", str(tmp_path / "x.png")]
    assert "is a directory: explain takes one image file" in one_error_line(
        runner.invoke(app, args)
    )
    # RUN and IMAGE swapped: said so (it read "RUN is a directory: explain takes one image")
    args = ["explain", str(images / "a-gray.png"), str(run), "--out", str(tmp_path / "x.png")]
    line = one_error_line(runner.invoke(app, args))
    assert line.endswith(f"{run} is a run: RUN comes first (vitkit explain RUN IMAGE)")
    # weights with no model.json beside them: why that file is needed ("missing file: ...")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(run / "model.safetensors", loose / "model.safetensors")
    line = one_error_line(
        runner.invoke(app, ["predict", str(loose / "model.safetensors"), str(images)])
    )
    assert "holds weights only: the model they are for is described by a model.json" in line


def test_a_quoted_home_path_is_the_home_folders(
    run: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'~/a.png' quoted (no shell to expand it) was 'no such file or directory' in predict and
    explain, though the library reads it, and '~/*.png' worked."""
    monkeypatch.setenv("HOME", str(images))
    result = runner.invoke(app, ["predict", str(run), "~/a-gray.png", "--json"])
    assert result.exit_code == 0, result.output
    sources = [p["source"] for p in json.loads(result.stdout)["predictions"]]
    assert sources == [str(images / "a-gray.png")]
    out = tmp_path / "x.png"
    result = runner.invoke(app, ["explain", str(run), "~/a-gray.png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_explain_unreadable_image(run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    args = ["explain", str(run), str(bad), "--out", str(tmp_path / "x.png")]
    assert "cannot read" in one_error_line(runner.invoke(app, args))
    assert not (tmp_path / "x.png").exists()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    for command in ("eval", "predict", "explain"):
        assert command in result.stdout


def test_checkpoint_weights_by_their_path(
    run: Path, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUN/checkpoint/last.safetensors: predict named RUN/model.safetensors as the file that
    answered, and eval wrote over the best weights' RUN/eval/ report."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval*", "export"))
    last = copy / "checkpoint" / "last.safetensors"
    result = runner.invoke(app, ["predict", str(last), str(images / "a-gray.png"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_file"] == str(last)
    result = runner.invoke(app, ["eval", str(last), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == str(last)
    assert (copy / "checkpoint" / "eval-last" / "eval.json").is_file()
    assert not (copy / "eval").exists()
    top1 = json.loads(result.stdout)["top1"]
    # its export goes beside it too, and eval --onnx of the same weights finds it there
    result = runner.invoke(app, ["export", str(last), "--verify-images", "32", "--json"])
    assert result.exit_code == 0, result.output
    made = copy / "checkpoint" / "export-last" / "model.onnx"
    assert made.is_file() and not (copy / "export").exists()
    result = runner.invoke(app, ["eval", str(last), "--onnx", "--json", "-o", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["top1"] == top1
    from vitkit import load_model

    alone = load_model(made)  # the file knows its run, and takes the run's settings
    assert alone.run_dir == copy.resolve()
    assert alone.run_settings() == load_model(copy).run_settings()
    # the run as it was typed, as for RUN and RUN/model.json (it was made absolute)
    monkeypatch.chdir(tmp_path)
    args = [str(images / "a-gray.png"), "--json"]
    for given in ("run", "run/model.json", "run/checkpoint/last.safetensors"):
        result = runner.invoke(app, ["predict", given, *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["run"] == "run", given
    monkeypatch.chdir(copy / "checkpoint")  # a relative path: its folder is still checkpoint/
    result = runner.invoke(app, ["predict", "last.safetensors", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"] == ".."
