from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.artifact import LoadedModel, StaleReport, stale_reports
from vitkit.data import load_dataset
from vitkit.data.download import file_sha256
from vitkit.errors import UserError
from vitkit.eval import evaluate, plots
from vitkit.eval.evaluate import compute_logits, report_dir, report_from_logits


def _write_folder(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    """root/{train,test}/<class>/NNN.png from uint8 arrays."""
    for split in ("train", "test"):
        for cls, arrays in images.items():
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i, a in enumerate(arrays):
                Image.fromarray(a).save(root / split / cls / f"{i:03d}.png")
    return root


# -- acceptance: the same top-1 as summary.json ----------------------------------------------------
def test_top1_matches_the_runs_summary_to_the_image(mnist_run: Path) -> None:
    summary = json.loads((mnist_run / "summary.json").read_text())
    n = summary["test"]["n"]
    report = vitkit.evaluate(mnist_run)  # a path: loaded on the CPU, the run's dataset and split
    assert (report.dataset, report.split, report.n) == ("mnist-mini", "test", n)
    assert report.correct == round(summary["test_acc"] * n)
    assert report.acc == pytest.approx(summary["test_acc"], abs=1e-6)
    # the batch size does not change a single prediction
    assert evaluate(mnist_run, batch_size=77).correct == report.correct


def test_report_is_consistent(mnist_model: LoadedModel) -> None:
    report = evaluate(mnist_model)
    cm = torch.tensor(report.confusion)
    assert cm.shape == (10, 10) and int(cm.sum()) == report.n
    assert int(cm.trace()) == report.correct  # single output: top-1 correct = the diagonal
    assert [c.support for c in report.per_class] == cm.sum(1).tolist() == [100] * 10
    assert report.top1 <= report.top5 <= 1.0
    assert 0.0 <= report.ece <= 1.0
    assert report.macro["recall"] == pytest.approx(np.mean([c.recall for c in report.per_class]))
    assert sum(b["count"] for b in report.calibration) == report.n
    # most confidently wrong: really wrong, sorted, and the images are the split's
    ds = load_dataset("mnist-mini")
    confs = [w.confidence for w in report.wrong]
    assert len(report.wrong) == min(25, report.n - report.correct)
    assert confs == sorted(confs, reverse=True)
    assert all(w.true != w.predicted for w in report.wrong)
    assert report.wrong_images is not None
    for w, img in zip(report.wrong, report.wrong_images, strict=True):
        assert torch.equal(img, ds["test"].images[w.index])
        assert w.true == [str(int(ds["test"].labels[w.index]))]
    doc = report.to_json()
    json.dumps(doc)  # serialisable
    assert doc["acc"] == report.acc and "exact_match" not in doc
    assert doc["confusion"]["classes"] == [str(i) for i in range(10)]


def test_report_from_logits_multi_output_by_hand() -> None:
    # 3 images x 2 positions x 3 classes
    logits = torch.tensor(
        [
            [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]],  # predicts 0 1
            [[0.0, 0.0, 5.0], [0.0, 4.0, 0.0]],  # predicts 2 1
            [[0.0, 3.0, 0.0], [0.0, 0.0, 2.0]],  # predicts 1 2
        ]
    )
    labels = torch.tensor([[0, 1], [2, 0], [0, 0]])
    r = report_from_logits(logits, labels, ["a", "b", "c"], dataset="x", split="test")
    assert r.num_outputs == 2 and r.n == 3
    assert r.per_position == pytest.approx([2 / 3, 1 / 3])
    assert r.exact_match == pytest.approx(1 / 3) and r.acc == r.exact_match and r.correct == 1
    assert r.top1 == pytest.approx(3 / 6)  # over all positions
    # per class over all 6 predictions: true a x4 (right once), b x1 (right), c x1 (right)
    assert r.confusion == [[1, 2, 1], [0, 1, 0], [0, 0, 1]]
    assert [c.support for c in r.per_class] == [4, 1, 1]
    assert r.per_class[0].recall == pytest.approx(1 / 4) and r.per_class[0].precision == 1.0
    assert r.per_class[1].precision == pytest.approx(1 / 3)
    # wrong images: 1 (b at 4.0 logit) and 2 (b at 3.0): image 1 first
    assert [w.index for w in r.wrong] == [1, 2]
    assert r.wrong[0].true == ["c", "a"] and r.wrong[0].predicted == ["c", "b"]
    doc = r.to_json()
    assert doc["exact_match"] == r.exact_match and doc["per_position"] == r.per_position
    assert doc["most_confident_wrong"][0]["true"] == ["c", "a"]


def test_save_to_a_path_that_is_not_a_path_is_a_one_line_error() -> None:
    """report.save(5) was pathlib's TypeError."""
    r = report_from_logits(torch.eye(3), torch.arange(3), ["a", "b", "c"])
    with pytest.raises(UserError, match=r"^out_dir must be a path \(str or os.PathLike\), got 5"):
        r.save(5)  # type: ignore[arg-type]


def test_save_writes_json_and_figures(
    mnist_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = evaluate(mnist_model)
    saved = report.save(tmp_path / "eval")
    assert [f.name for f in saved.files] == ["eval.json", "confusion.png", "wrong.png"]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text()) == json.loads(
        json.dumps(report.to_json())
    )
    for name in ("confusion.png", "wrong.png"):
        with Image.open(tmp_path / "eval" / name) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert not list((tmp_path / "eval").glob(".*"))  # no temp files left behind
    # without matplotlib: eval.json only, and a note that says how to get the figures
    monkeypatch.setattr(plots, "figure", lambda *a, **k: None)
    saved = report.save(tmp_path / "bare")
    assert [f.name for f in saved.files] == ["eval.json"]
    assert "vitkit[plot]" in saved.notes[0]
    # a file where the folder goes: the CLI's one line, not FileExistsError from deep inside
    with pytest.raises(UserError, match=r"eval\.json is a file, not a folder"):
        report.save(tmp_path / "eval" / "eval.json")
    # over an earlier eval's folder: its figures go, they would contradict the new eval.json
    report.save(tmp_path / "eval")
    assert not (tmp_path / "eval" / "confusion.png").exists()
    assert not (tmp_path / "eval" / "wrong.png").exists()


# -- other datasets ----------------------------------------------------------------------------------
def test_folder_with_a_subset_of_the_classes(mnist_model: LoadedModel, tmp_path: Path) -> None:
    """A folder: of the user's own files (here: 3s and 7s from the test split) is evaluated with
    its labels mapped onto the model's classes, pixel for pixel as in the original split."""
    test = load_dataset("mnist-mini")["test"]
    idx = {c: torch.nonzero(test.labels == int(c)).flatten()[:8] for c in ("3", "7")}
    root = _write_folder(
        tmp_path / "digits", {c: [test.images[i, 0].numpy() for i in ix] for c, ix in idx.items()}
    )
    report = evaluate(mnist_model, f"folder:{root}")
    assert report.n == 16 and report.classes == mnist_model.classes
    assert [c.support for c in report.per_class] == [0, 0, 0, 8, 0, 0, 0, 8, 0, 0]
    # macro F1 counts the 8 absent classes as 0; macro_present averages classes 3 and 7 only
    f1 = {c.name: c.f1 for c in report.per_class}
    assert report.macro_present["f1"] == pytest.approx((f1["3"] + f1["7"]) / 2)
    assert report.macro["f1"] == pytest.approx((f1["3"] + f1["7"]) / 10)
    both = torch.cat([idx["3"], idx["7"]])
    logits = compute_logits(mnist_model, test.subset(both))
    assert report.correct == int((logits.argmax(-1) == test.labels[both]).sum())


def test_a_folder_of_class_folders_is_scored_as_its_test_split(
    mnist_model: LoadedModel, tmp_path: Path
) -> None:
    """docs/eval.md's `--data folder:~/digits`: PATH/<class>/*.png, no train/ (it needed one)."""
    test = load_dataset("mnist-mini")["test"]
    for c in ("3", "7"):
        (tmp_path / "digits" / c).mkdir(parents=True)
        for i in torch.nonzero(test.labels == int(c)).flatten()[:4].tolist():
            Image.fromarray(test.images[i, 0].numpy()).save(tmp_path / "digits" / c / f"{i}.png")
    report = evaluate(mnist_model, f"folder:{tmp_path / 'digits'}")
    assert report.split == "test" and report.n == 8
    assert [c.support for c in report.per_class] == [0, 0, 0, 4, 0, 0, 0, 4, 0, 0]


def test_unreadable_files_in_a_folder_are_named_in_the_report(
    mnist_model: LoadedModel, tmp_path: Path
) -> None:
    """A truncated PNG was left out of n with no word in eval's output or eval.json."""
    blank = np.zeros((28, 28), np.uint8)
    root = _write_folder(tmp_path / "digits", {"1": [blank, blank], "2": [blank]})
    (root / "test" / "2" / "zz.png").write_bytes(b"\x89PNG cut short")
    report = evaluate(mnist_model, f"folder:{root}")
    assert report.n == 3
    assert report.notes == [f"skipped 1 unreadable image(s) in folder:{root}, first: test/2/zz.png"]
    assert report.to_json()["notes"] == report.notes
    # three identical blank images under two labels: one at least is wrong, and named by its
    # file (the index alone did not say which, and skipped files shift the indices)
    files = ["test/1/000.png", "test/1/001.png", "test/2/000.png"]
    assert report.wrong and all(w.file == files[w.index] for w in report.wrong)
    assert report.to_json()["most_confident_wrong"][0]["file"] == report.wrong[0].file


def test_class_mismatch_is_refused(mnist_model: LoadedModel, tmp_path: Path) -> None:
    blank = np.zeros((28, 28), np.uint8)
    root = _write_folder(tmp_path / "pets", {"cat": [blank], "dog": [blank], "7": [blank]})
    with pytest.raises(UserError, match=r"classes the model was not trained on: 'cat', 'dog'"):
        evaluate(mnist_model, f"folder:{root}")


def test_a_folder_of_other_classes_is_refused_before_it_is_decoded(
    mnist_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MNIST run scored on a CIFAR-10 folder decoded all 60,000 JPEGs (15 s) and wrote their
    cache (49 MB) under the data root, then refused: the classes are known from the listing."""
    from vitkit.data.sources import folder

    opened: list[Path] = []
    for fn in ("_read", "_header"):  # decoding, and the header probe before it
        real = getattr(folder, fn)
        monkeypatch.setattr(folder, fn, lambda p, *a, real=real: opened.append(p) or real(p, *a))
    blank = np.zeros((28, 28), np.uint8)
    pets = _write_folder(tmp_path / "pets", {"cat": [blank], "dog": [blank], "7": [blank]})
    root = tmp_path / "data-root"
    digits = ", ".join(f"'{d}'" for d in range(10))
    with pytest.raises(UserError) as err:
        evaluate(mnist_model, f"folder:{pets}", data_root=root)
    assert str(err.value) == (  # the message it had once all was decoded
        f"dataset 'folder:{pets}' has classes the model was not trained on: 'cat', 'dog' "
        f"(the model knows {digits})"
    )
    assert opened == [] and not root.exists()  # no image opened, no cache written
    # PATH/<class>/ with no split folders: a class folder with no image file (notes/) is none,
    # as the loader has it, so a folder of 3s and notes is scored; one with cats is refused
    for cls in ("3", "notes", "cat"):
        (tmp_path / "mixed" / cls).mkdir(parents=True)
    Image.fromarray(blank).save(tmp_path / "mixed" / "3" / "0.png")
    (tmp_path / "mixed" / "notes" / "readme.txt").write_text("not an image")
    Image.fromarray(blank).save(tmp_path / "mixed" / "cat" / "0.png")
    with pytest.raises(UserError, match=r"^dataset 'folder:.*' has classes .*: 'cat' \(the"):
        evaluate(mnist_model, f"folder:{tmp_path / 'mixed'}", data_root=root)
    assert opened == [] and not root.exists()
    (tmp_path / "mixed" / "cat" / "0.png").unlink()
    report = evaluate(mnist_model, f"folder:{tmp_path / 'mixed'}", data_root=root)
    assert report.n == 1 and opened and root.is_dir()  # decoded and cached as before


def test_size_and_split_mismatches_are_refused(mnist_model: LoadedModel, tmp_path: Path) -> None:
    big = np.zeros((32, 32), np.uint8)
    root = _write_folder(tmp_path / "big", {"1": [big], "2": [big]})
    ds = load_dataset(f"folder:{root}")  # as is: 32x32, not resized
    with pytest.raises(UserError, match=r"has 32x32x1 images but the model takes 28x28x1"):
        evaluate(mnist_model, ds)
    assert evaluate(mnist_model, f"folder:{root}").n == 2  # by name: resized to the model's size
    # a catalog dataset of another size is refused before it is downloaded or built (this one
    # built 60k grids, or failed on the download, before saying so)
    with pytest.raises(UserError, match=r"'mnist-grid' has 56x56x1 images but the model takes"):
        evaluate(mnist_model, "mnist-grid", data_root=tmp_path / "empty", download=False)
    with pytest.raises(UserError, match=r"has no split 'tset'.*did you mean 'test'"):
        evaluate(mnist_model, split="tset")
    with pytest.raises(UserError, match="batch size must be >= 1"):
        evaluate(mnist_model, batch_size=0)
    with pytest.raises(UserError, match="batch size must be an integer, got True"):
        evaluate(mnist_model, batch_size=True)  # was taken as a batch of 1


def test_an_onnx_export_of_a_folder_run_finds_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained on a relative folder: path, exported, then scored from another directory by
    its .onnx file alone. The file's metadata carries the run's dataset options (the folder's
    absolute path), and a file in RUN/export/ takes RUN's data root and eval settings."""
    from vitkit.export import export_onnx
    from vitkit.train import TrainConfig, train

    work = tmp_path / "work"
    for split, n in (("train", 16), ("test", 6)):
        for c, shade in (("dark", 30), ("light", 220)):
            (work / "imgs" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (16, 16), color=shade + i).save(
                    work / "imgs" / split / c / f"{i}.png"
                )
    monkeypatch.chdir(work)
    droot = tmp_path / "droot"
    result = train(
        TrainConfig(
            dataset="folder:imgs",  # relative: only the recorded options say where it is
            model="vit-nano",
            model_overrides={"patch_size": 4},
            epochs=1,
            batch_size=8,
            eval_batch_size=5,
            val_fraction=0.0,
            seed=0,
            device="cpu",
            out=str(tmp_path / "run"),
        ),
        data_root=droot,
    )
    rep = export_onnx(result.run_dir, result.run_dir / "export" / "model.onnx", verify=False)
    monkeypatch.chdir(tmp_path)  # "folder:imgs" names nothing here
    onnx_model = vitkit.load_model(rep.files[0])
    assert onnx_model.run_settings() == vitkit.load_model(result.run_dir).run_settings()
    assert onnx_model.run_settings()["data_root"] == str(droot)
    alone = evaluate(onnx_model, download=False)
    assert alone.n == 12 and alone.correct == evaluate(result.run_dir, download=False).correct
    assert alone.device == f"onnxruntime-cpu ({rep.files[0]})" and alone.run == rep.files[0]
    # eval.json names the file it scored and its bytes' hash, so a re-export shows it stale
    assert alone.model_file == rep.files[0]
    assert alone.to_json()["model_sha256"] == file_sha256(rep.files[0])
    assert alone.model == vitkit.load_model(result.run_dir).spec.to_dict()  # from its metadata
    (work / "imgs").rename(work / "moved")  # the run's own folder is gone: say how to name it
    with pytest.raises(UserError, match=r"folder dataset not found: .*if the images are elsewhere"):
        evaluate(result.run_dir, download=False)


def test_no_wrong_predictions_figure_keeps_its_title(tmp_path: Path) -> None:
    """With nothing wrong the figure was one image wide (220 px), its title cut at both ends."""
    from vitkit.eval.plots import plot_wrong

    title = "most confidently wrong (0 shown)"
    empty = torch.zeros(0, dtype=torch.long)
    images = torch.zeros(0, 1, 28, 28, dtype=torch.uint8)
    assert plot_wrong(
        images, empty, empty, torch.zeros(0), ["0", "1"], tmp_path / "w.png", title=title
    )
    assert Image.open(tmp_path / "w.png").width >= 0.09 * len(title) * 100


def test_a_run_whose_folder_moved_is_told_how_to_name_it(
    mnist_model: LoadedModel, tmp_path: Path
) -> None:
    """The error showed where the images were expected, not that `--data` can point elsewhere;
    from Python it named both ways, where dataset= is the caller's."""
    from vitkit.errors import cli_words

    gone = f"folder:{tmp_path / 'moved-away'}"
    meta = {**mnist_model.meta, "dataset": gone, "dataset_options": {"image_size": 28}}
    moved = dataclasses.replace(mnist_model, dataset=gone, meta=meta)
    with pytest.raises(UserError, match=r"not found.*name them \(dataset='folder:PATH'\)$") as err:
        evaluate(moved)
    assert "\n" not in str(err.value)
    with cli_words(), pytest.raises(UserError, match=r"not found.*\(--data folder:PATH\)$"):
        evaluate(moved)
    with pytest.raises(UserError) as named:  # a --data the user named: its own error, as it was
        evaluate(moved, gone)
    assert "name them" not in str(named.value)


# -- what a report scored, and when it no longer describes it -------------------------------------
def test_eval_json_records_the_weights_it_scored(mnist_run: Path, tmp_path: Path) -> None:
    """model_file and model_sha256 of the run's model.safetensors; new weights written over it
    (a resumed run) make RUN/eval stale, and the note says how to redo it."""
    import shutil

    from vitkit.artifact import load_weights, save_weights

    run = tmp_path / "run"
    shutil.copytree(mnist_run, run, ignore=shutil.ignore_patterns("eval*", "export"))
    weights = run / "model.safetensors"
    lm = vitkit.load_model(run)
    assert lm.model_file == weights
    report = evaluate(lm)
    assert report.model_file == str(weights) and report.model_sha256 == file_sha256(weights)
    report.save(report_dir(lm, None, "test"))
    doc = json.loads((run / "eval" / "eval.json").read_text())
    assert doc["model_sha256"] == file_sha256(weights) and doc["model_file"] == str(weights)
    # and which model, as export.json and bench.json name it (ModelSpec.to_dict)
    assert doc["model"] == json.loads(json.dumps(lm.spec.to_dict()))
    assert doc["model"]["model"] == lm.spec.name and doc["model"]["config"]["patch_size"] == 7
    assert stale_reports([weights]) == []
    state = load_weights(weights)
    lm.model.load_state_dict({k: v + 0.01 for k, v in state.items()})
    save_weights(weights, lm.model)
    (stale,) = stale_reports([weights])
    assert (stale.folder, stale.removed) == (run / "eval", False)
    assert (
        stale.note()
        == f"{run / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {run}`"
    )


def _eval_json(folder: Path, file: Path | None, sha: str | None, **doc: str) -> None:
    folder.mkdir(parents=True)
    fields = {"model_file": str(file), "model_sha256": sha} if file is not None else {}
    payload = {"dataset": "mnist-mini", "split": "test", **fields, **doc}
    (folder / "eval.json").write_text(json.dumps(payload))


def test_stale_reports_beside_exported_files(tmp_path: Path) -> None:
    """Reports of a changed or removed file are listed; unchanged ones, and ones made before
    eval.json recorded a hash, are not."""
    export = tmp_path / "export"
    export.mkdir()
    onnx, fp16, int8 = (export / f"model{t}.onnx" for t in ("", ".fp16", ".int8"))
    for f in (onnx, fp16, int8):
        f.write_bytes(f.name.encode())
    _eval_json(export / "eval-model", onnx, file_sha256(onnx))
    digits = "folder:/data/digits"
    _eval_json(
        export / "eval-model-digits-train", onnx, file_sha256(onnx), dataset=digits, split="train"
    )
    _eval_json(export / "eval-model.int8", int8, file_sha256(int8))
    _eval_json(export / "eval-model.fp16", None, None)  # before model_sha256: cannot tell
    files = [onnx, fp16, int8]
    assert stale_reports(files) == []
    onnx.write_bytes(b"other weights")
    fp16.write_bytes(b"other weights too")
    int8.unlink()
    stale = stale_reports(files)
    assert [(s.folder.name, s.removed) for s in stale] == [
        ("eval-model", False),
        ("eval-model-digits-train", False),
        ("eval-model.int8", True),
    ]
    assert stale[0].note() == (
        f"{export / 'eval-model'}/ scored an earlier model.onnx: rerun `vitkit eval {onnx}`"
    )
    assert stale[1].command() == f"vitkit eval {onnx} --data {digits} --split train"
    assert (
        stale[2]
        .note()
        .startswith(f"{export / 'eval-model.int8'}/ scored model.int8.onnx, which is removed")
    )
    assert all(s.folder.is_dir() for s in stale)  # listed, never deleted


def test_stale_reports_of_a_runs_weights(tmp_path: Path) -> None:
    """RUN/eval* for model.safetensors, checkpoint/eval-last* for the last checkpoint's; an
    eval* folder whose eval.json names another file (eval RUN --onnx) is that file's."""
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    best, last = run / "model.safetensors", run / "checkpoint" / "last.safetensors"
    best.write_bytes(b"best")
    last.write_bytes(b"last")
    (run / "model.json").write_text("{}")  # a run's own weights: their report is RUN/eval
    _eval_json(run / "eval", best, file_sha256(best))
    _eval_json(run / "eval-mnist-mini-train", best, file_sha256(best), split="train")
    _eval_json(run / "eval-onnx", run / "export" / "model.onnx", "0" * 64)
    _eval_json(run / "checkpoint" / "eval-last", last, file_sha256(last))
    _eval_json(run / "eval-x", best, file_sha256(best), split="val")  # an --out of its own
    assert stale_reports([best, last]) == []
    best.write_bytes(b"resumed best")
    last.write_bytes(b"resumed last")
    stale = stale_reports([best, last])
    assert [s.folder for s in stale] == [
        run / "eval",
        run / "eval-mnist-mini-train",
        run / "eval-x",
        run / "checkpoint" / "eval-last",
    ]
    assert [s.command() for s in stale] == [
        f"vitkit eval {run}",
        f"vitkit eval {run} --data mnist-mini --split train",
        f"vitkit eval {run} --data mnist-mini --split val --out {run / 'eval-x'}",
        f"vitkit eval {last}",
    ]
    assert isinstance(stale[0], StaleReport) and not any(s.removed for s in stale)


def test_stale_reports_name_a_folder_dataset_absolutely_and_pass_over_what_they_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun command names a folder: dataset by its absolute path (eval.json keeps it as
    typed, relative to wherever eval ran); a file that cannot be read adds no note and raises
    nothing (export and train call this after their own files are written)."""
    import vitkit.data.download

    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    onnx = tmp_path / "export" / "model.onnx"
    onnx.parent.mkdir()
    onnx.write_bytes(b"first")
    _eval_json(
        onnx.parent / "eval-model-digits-test", onnx, file_sha256(onnx), dataset="folder:digits"
    )
    onnx.write_bytes(b"second")
    (stale,) = stale_reports([onnx])
    assert f"--data folder:{tmp_path / 'digits'} --split test" in stale.command()

    def unreadable(path: object) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(vitkit.data.download, "file_sha256", unreadable)
    assert stale_reports([onnx]) == []


def test_a_model_built_in_memory_has_no_file() -> None:
    from vitkit.export.onnx import loaded_for_export

    lm = loaded_for_export(vitkit.create_model("vit-nano", image_size=16, patch_size=4))
    assert lm.model_file is None


# -- a run copied to a machine with only its test files ---------------------------------------------
def test_a_run_is_scored_with_only_its_test_files_on_disk(
    mnist_model: LoadedModel,
    test_files_only: Path,
    fashion_run: Callable[[LoadedModel], LoadedModel],
) -> None:
    """The run's model.json holds its mean/std, so its test split is all evaluate needs; it
    read the train split too (to compute statistics nobody used) and failed: "missing
    train-images-idx3-ubyte.gz". The same weights score the same digits as on mnist-mini's
    test split, image for image: the run's normalisation, not one computed from the data."""
    lm = fashion_run(mnist_model)
    report = evaluate(lm, data_root=test_files_only, download=False)
    want = evaluate(mnist_model)
    assert (report.dataset, report.split, report.n) == ("fashion-mnist", "test", 1000)
    assert report.correct == want.correct and report.confusion == want.confusion
    assert not (test_files_only / "fashion-mnist" / "cache").exists()  # a split alone: uncached
    # the split scored is what must be there: --split train says which file is missing
    with pytest.raises(UserError, match=r"fashion-mnist: missing train-images-idx3-ubyte.gz"):
        evaluate(lm, split="train", data_root=test_files_only, download=False)
