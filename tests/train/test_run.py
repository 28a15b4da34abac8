from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import vitkit
from vitkit.artifact import load_model, load_weights
from vitkit.errors import UserError
from vitkit.train import NonFiniteLoss, StopFlag, TrainConfig, train
from vitkit.train import loop as loop_module
from vitkit.train.callbacks import Callback, StepInfo


def tiny(tmp_path: Path, name: str = "run", **kw: Any) -> TrainConfig:
    """vit-nano, patch 7, on the shipped mnist-mini: about a second per epoch on 2 cores."""
    base: dict[str, Any] = dict(
        dataset="mnist-mini",
        model="vit-nano",
        model_overrides={"patch_size": 7},
        epochs=2,
        batch_size=64,
        lr=2e-3,
        warmup_epochs=0.5,
        log_every=10,
        out=str(tmp_path / name),
        val_fraction=0.1,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


class StopAt(Callback):
    def __init__(self, flag: StopFlag, step: int) -> None:
        self.flag, self.step = flag, step

    def on_step(self, info: StepInfo) -> None:
        if info.step >= self.step:
            self.flag.request()


def test_run_directory_and_load_model(tmp_path: Path) -> None:
    result = train(tiny(tmp_path))
    run = result.run_dir
    for f in (
        "model.json",
        "model.safetensors",
        "train.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoint/last.safetensors",
        "checkpoint/state.pt",
    ):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 2
    assert 0.3 < summary["test_acc"] <= 1.0  # it learned something in two epochs
    # a count over 1,000 images: three decimals at most, not float32's 0.28999999165534973
    assert round(summary["test_acc"], 3) == summary["test_acc"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines if x["kind"] == "epoch"] == [0, 1]
    loaded = load_model(run)
    assert loaded.classes == [str(i) for i in range(10)] and loaded.image_size == 28
    assert loaded.channels == 1 and len(loaded.mean) == 1
    assert loaded.spec.config.patch_size == 7
    # the saved weights are the best-by-validation ones and reproduce the test accuracy
    from vitkit.data import load_dataset
    from vitkit.data.loader import DeviceLoader
    from vitkit.train.loop import evaluate_loader

    ds = load_dataset("mnist-mini")
    test = DeviceLoader(
        ds["test"],
        batch_size=256,
        mean=loaded.mean,
        std=loaded.std,
        num_classes=10,
        shuffle=False,
        drop_last=False,
    )
    assert evaluate_loader(loaded.model, test)["acc"] == pytest.approx(summary["test_acc"])
    assert vitkit.load_model is load_model


def test_resume_is_bit_identical_to_uninterrupted(tmp_path: Path) -> None:
    full = train(tiny(tmp_path, "full"))
    stop = StopFlag()
    first = train(tiny(tmp_path, "split"), callbacks=[StopAt(stop, 50)], stop=stop)
    assert first.interrupted and first.summary["steps"] == 50  # mid-epoch 1 (70 steps/epoch)
    # a config with resume= would be ignored (the run's train.json rules): refused, not dropped
    other = tiny(tmp_path, "other", epochs=99)
    with pytest.raises(UserError, match=r"own train\.json, so config= would be ignored"):
        train(other, resume=first.run_dir)
    with pytest.raises(UserError, match=r"needs a config .* or resume= a run"):
        train()
    resumed = train(resume=first.run_dir)
    assert resumed.status == "completed" and resumed.summary["resumed_from_step"] == 50
    a = load_weights(full.run_dir / "checkpoint" / "last.safetensors")
    b = load_weights(resumed.run_dir / "checkpoint" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.summary["test_acc"] == resumed.summary["test_acc"]


def test_resume_with_dropout_and_drop_path_is_bit_identical(tmp_path: Path) -> None:
    over = {"patch_size": 7, "dropout": 0.1, "drop_path": 0.2}
    full = train(tiny(tmp_path, "full", epochs=1, model_overrides=over))
    stop = StopFlag()
    train(
        tiny(tmp_path, "split", epochs=1, model_overrides=over),
        callbacks=[StopAt(stop, 20)],
        stop=stop,
    )
    resumed = train(resume=tmp_path / "split")
    a = load_weights(full.run_dir / "model.safetensors")
    b = load_weights(resumed.run_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_and_keeps_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_module.loss_fn
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        calls["n"] += 1
        loss = real(logits, y, smoothing)
        return loss * float("nan") if calls["n"] == 80 else loss  # step 80: in epoch 2

    monkeypatch.setattr(loop_module, "loss_fn", poisoned)
    cfg = tiny(tmp_path, val_fraction=0.0)  # no validation: loss_fn only sees training steps
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 80 .*checkpoint \(step 78\)"):
        train(cfg)
    run = Path(cfg.out or "")
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    assert state["counters"]["step"] == 78  # the end of epoch 1 (5000 // 64 steps)
    weights = load_weights(run / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    # it ends with a summary.json, as every other ending does
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["checkpoint_step"] == 78
    assert "loss became nan at step 80" in summary["error"] and summary["epochs_done"] == 1
    assert summary["best_epoch"] == 1 and summary["best_val_acc"] is None  # no validation


def test_a_run_killed_between_checkpoints_resumes_with_each_step_logged_once(
    tmp_path: Path,
) -> None:
    """Lines past the checkpoint (a kill -9 after it) are dropped on resume, not logged twice."""
    stop = StopFlag()
    cfg = tiny(tmp_path, epochs=1)
    train(cfg, callbacks=[StopAt(stop, 30)], stop=stop)  # checkpoint at step 30
    metrics = Path(cfg.out or "") / "metrics.jsonl"
    ghost = [json.dumps({"kind": "step", "step": k, "loss": 9.0}) + "\n" for k in (40, 50)]
    with open(metrics, "a") as f:  # what a run killed at step ~55 had written after it
        f.writelines([*ghost, '{"kind": "step", "st'])  # the last line cut short by the kill
    train(resume=Path(cfg.out or ""))
    steps = [
        r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if r["kind"] == "step"
    ]
    assert (
        steps == sorted(set(steps))
        and 40 in steps
        and 9.0 not in [r.get("loss") for r in map(json.loads, metrics.read_text().splitlines())]
    )


def test_a_resume_on_changed_data_says_so(tmp_path: Path) -> None:
    from PIL import Image

    from vitkit.train.run import data_changed

    root = tmp_path / "imgs"
    for split, n in (("train", 12), ("test", 4)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("L", (16, 16), color=40 * i + (c == "b") * 100).save(
                    root / split / c / f"{i}.png"
                )
    cfg = tiny(
        tmp_path,
        dataset=f"folder:{root}",
        epochs=2,
        batch_size=8,
        model_overrides={"patch_size": 4},
    )
    stop = StopFlag()
    train(cfg, callbacks=[StopAt(stop, 2)], stop=stop, data_root=tmp_path / "data")
    run = Path(cfg.out or "")
    saved = json.loads((run / "train.json").read_text())["data"]
    assert saved["sizes"] == {"train": 22, "val": 2, "test": 8}
    Image.new("L", (16, 16)).save(root / "train" / "a" / "new.png")
    notes: list[str] = []

    class Notes(Callback):
        def on_start(self, info: Any) -> None:
            notes.extend(info.notes)

    train(resume=run, callbacks=[Notes()], data_root=tmp_path / "data")
    assert len(notes) == 1 and "the dataset differs from the one the run began on" in notes[0]
    assert "train 22 -> 23" in notes[0]
    assert json.loads((run / "summary.json").read_text())["notes"] == notes  # --json sees it
    same = {"sizes": saved["sizes"], "cache_key": "x"}
    assert data_changed(same, {**same}) is None and data_changed(None, same) is None
    assert "other files" in (data_changed(same, {**same, "cache_key": "y"}) or "")
    # a class folder renamed: same count, labels re-sorted. The resume went on with every image
    # under the other class's index (exit 0); it is refused, by train.json's record or, for a
    # run from before it kept one, by model.json's classes
    assert saved["classes"] == ["a", "b"]
    (root / "train" / "a").rename(root / "train" / "z")
    (root / "test" / "a").rename(root / "test" / "z")
    with pytest.raises(UserError, match=r"began on the classes a, b; .* now has b, z: resuming"):
        train(resume=run, data_root=tmp_path / "data")
    record = json.loads((run / "train.json").read_text())
    record["data"].pop("classes")
    (run / "train.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match="would train on other labels"):
        train(resume=run, data_root=tmp_path / "data")


def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    """`kill`, `timeout`, SLURM and `docker stop` send SIGTERM: a checkpoint, not a lost run."""
    import signal

    class Term(Callback):  # two at once, as a job scheduler and torchrun may send them
        def on_step(self, info: StepInfo) -> None:
            if info.step == 20:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    result = train(tiny(tmp_path, epochs=1), callbacks=[Term()], stop=stop)
    assert stop.signal == signal.SIGTERM  # the CLI exits 128 + 15
    assert result.status == "interrupted" and result.summary["steps"] == 20
    state = torch.load(result.run_dir / "checkpoint" / "state.pt", weights_only=True)
    assert state["counters"]["step"] == 20
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the run


def test_non_finite_loss_before_any_checkpoint_says_nothing_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_module.loss_fn

    def poisoned(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        return real(logits, y, smoothing) * float("nan")

    monkeypatch.setattr(loop_module, "loss_fn", poisoned)
    cfg = tiny(tmp_path, val_fraction=0.0)
    with pytest.raises(NonFiniteLoss, match=r"at step 1 .*before the first checkpoint") as e:
        train(cfg)
    assert "kept the last good" not in str(e.value)
    assert not (Path(cfg.out or "") / "checkpoint").exists()
    # summary.json said best_epoch 0 beside best_val_acc null: there is no best epoch yet
    summary = json.loads((Path(cfg.out or "") / "summary.json").read_text())
    assert summary["best_epoch"] is None and summary["best_val_acc"] is None


def test_non_finite_validation_loss_stops_before_saving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights can blow up while every training loss was finite: the validation loss says so,
    and such weights are never saved as best or as the checkpoint."""
    real = loop_module.evaluate_loader
    calls = {"n": 0}

    def poisoned(*a: Any, **k: Any) -> dict[str, Any]:
        calls["n"] += 1
        out = real(*a, **k)
        return {**out, "loss": float("nan")} if calls["n"] == 2 else out

    monkeypatch.setattr(loop_module, "evaluate_loader", poisoned)
    cfg = tiny(tmp_path)
    with pytest.raises(NonFiniteLoss, match=r"validation loss became nan after step 140 .*step 70"):
        train(cfg)
    state = torch.load(Path(cfg.out or "") / "checkpoint" / "state.pt", weights_only=True)
    assert state["counters"]["step"] == 70  # epoch 1's, not the diverged epoch 2's


def test_resume_with_foreign_best_weights_is_a_user_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    stop = StopFlag()
    first = train(tiny(tmp_path, "split"), callbacks=[StopAt(stop, 75)], stop=stop)
    assert first.interrupted and (first.run_dir / "model.safetensors").is_file()  # epoch 1 best
    save_file({"head.weight": torch.zeros(3, 3)}, str(first.run_dir / "model.safetensors"))
    with pytest.raises(UserError, match=r"model.safetensors does not fit this run's model"):
        train(resume=first.run_dir)


def test_resume_with_a_damaged_or_foreign_model_json_is_a_user_error(tmp_path: Path) -> None:
    """A resume checked that model.json was JSON, nothing more: it trained on and, with no new
    best, left a run that `vitkit eval` could not read."""
    first = train(tiny(tmp_path, epochs=1, max_steps=3))
    meta_path = first.run_dir / "model.json"
    good = meta_path.read_text()
    meta_path.write_text('{"x": 1}')
    with pytest.raises(UserError, match=r"model\.json is not a valid model\.json: 'model' must"):
        train(resume=first.run_dir, extend={"max_steps": 6})
    other = json.loads(good)
    other["config"]["embed_dim"] = 32  # another run's, of another model
    meta_path.write_text(json.dumps(other))
    with pytest.raises(UserError, match=r"model\.json describes another model .*embed_dim 32"):
        train(resume=first.run_dir, extend={"max_steps": 6})
    meta_path.write_text(good)
    assert train(resume=first.run_dir, extend={"max_steps": 6}).summary["steps"] == 6


def test_a_resume_of_a_model_not_registered_here_says_how_to_make_it_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of a user's registered model, resumed or loaded in a process that had not imported
    the module registering it, read "model.json is not a valid model.json: unknown model", as
    if the file were damaged."""
    import re

    from vitkit.models import _registry, register_model
    from vitkit.models.vit import VisionTransformer, make_vit_config

    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))  # restored afterwards
    register_model("my-vit", builder=VisionTransformer)(
        lambda **kw: make_vit_config({"embed_dim": 32, "depth": 1, "num_heads": 2}, kw)
    )
    first = train(tiny(tmp_path, model="my-vit", epochs=1, max_steps=3))
    del _registry._MODELS["my-vit"]  # as in a process that did not import it

    def unregistered(path: Path) -> str:
        return (
            re.escape(f"{path} names the model 'my-vit', which is not registered in this process")
            + ": import the module that registers it .*register_model.*from Python$"
        )

    run = first.run_dir
    with pytest.raises(UserError, match=unregistered(run / "model.json")):
        train(resume=run, extend={"max_steps": 6})
    with pytest.raises(UserError, match=unregistered(run / "model.json")):
        load_model(run)  # as vitkit eval, export and bench read it
    (run / "model.json").unlink()  # a run with no best weights yet: train.json names it
    with pytest.raises(UserError, match=unregistered(run / "train.json")):
        train(resume=run, extend={"max_steps": 6})


def test_a_stop_while_the_test_split_is_scored_keeps_the_runs_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or a kill) after the last step, while the test split was scored, left no
    summary.json: the resume that scores it then read 0 img/s, 0 s and no last validation."""
    from vitkit.train import run as run_module

    real_test = run_module._test

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_test", interrupted)
    cfg = tiny(tmp_path, epochs=1, max_steps=5)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    run_dir = Path(cfg.out or "")
    kept = json.loads((run_dir / "summary.json").read_text())
    assert kept["status"] == "max_steps" and "test_acc" not in kept
    assert kept["train_images_per_s"] > 0 and kept["last_val"]["n"] > 0
    monkeypatch.setattr(run_module, "_test", real_test)
    done = train(resume=run_dir)  # nothing left to train: it scores the test split
    for key in ("train_images_per_s", "wall_seconds", "last_val"):
        assert done.summary[key] == kept[key], key
    assert done.summary["test_acc"] is not None


def test_a_stop_while_a_resume_with_nothing_to_train_rescores_keeps_the_test_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume that trains nothing wrote summary.json again before scoring the test split:
    Ctrl-C there took the test figures the finished run had (its weights unchanged)."""
    from vitkit.train import run as run_module

    first = train(tiny(tmp_path, epochs=1, max_steps=5))
    before = (first.run_dir / "summary.json").read_text()
    assert json.loads(before)["test_acc"] is not None

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_test", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(resume=first.run_dir)  # nothing left to train
    assert (first.run_dir / "summary.json").read_text() == before


def test_a_run_that_recorded_a_dataset_option_as_text_still_resumes_and_evaluates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before dataset options were type-checked, a config file's "seed": "1" (or grid "3") was
    trained on (the builder took int("1")) and recorded as text in train.json and model.json;
    the check then refused those runs' own records: their resume and `vitkit eval`, export and
    bench read "option 'seed' must be an integer, got '1'". The recorded text is read as the
    number the builder made of it, and the resume does not take it for changed data."""
    from dataclasses import replace as replace_spec

    from vitkit.data import catalog
    from vitkit.data.cache import cache_key
    from vitkit.eval import evaluate

    mini = catalog.get_dataset_spec("mnist-mini")  # the shipped subset, with an integer option
    monkeypatch.setattr(
        catalog,
        "_DATASETS",
        {**catalog._DATASETS, "mini-seeded": replace_spec(mini, options={"seed": 0})},
    )
    cfg = tiny(tmp_path, dataset="mini-seeded", dataset_options={"seed": 1}, epochs=1, max_steps=2)
    run = train(cfg, data_root=tmp_path / "data").run_dir
    for name, key in (("train.json", "config"), ("model.json", None)):  # as they were recorded
        doc = json.loads((run / name).read_text())
        (doc[key] if key else doc)["dataset_options"] = {"seed": "1"}
        if key:
            doc["data"]["cache_key"] = cache_key({"seed": "1"})
        (run / name).write_text(json.dumps(doc))
    assert load_model(run).dataset_source() == ("mini-seeded", {"seed": 1})
    assert evaluate(run).n == 1000
    resumed = train(resume=run, extend={"max_steps": 3})
    assert resumed.status == "max_steps" and resumed.summary["steps"] == 3
    assert not [n for n in resumed.summary.get("notes", []) if "dataset differs" in n]
    record = json.loads((run / "train.json").read_text())  # rewritten by the extension
    assert record["config"]["dataset_options"] == {"seed": 1}
    assert record["data"]["cache_key"] == cache_key({"seed": 1})


def test_the_summary_written_before_the_test_split_is_scored_is_the_final_one_less_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """summary.json, written before the test split is scored (so that a Ctrl-C there keeps
    one), lacked the resumed_from_step and the closing notes (eval reports of the replaced
    weights, no curves.png) that only the final write had."""
    import vitkit._plot
    from vitkit.eval import evaluate
    from vitkit.train import run as run_module

    first = train(tiny(tmp_path, epochs=1, max_steps=3))
    evaluate(first.run_dir).save(first.run_dir / "eval")  # made stale by the resume's new best
    monkeypatch.setattr(vitkit._plot, "figure", lambda *a, **k: None)  # no matplotlib: a note
    real_test, early = run_module._test, []

    def scored(*args: Any, **kwargs: Any) -> Any:  # summary.json as a Ctrl-C here would leave it
        early.append(json.loads((first.run_dir / "summary.json").read_text()))
        return real_test(*args, **kwargs)

    monkeypatch.setattr(run_module, "_test", scored)
    done = train(resume=first.run_dir, extend={"max_steps": 0})
    final = json.loads((first.run_dir / "summary.json").read_text())
    assert done.status == "completed" and final["resumed_from_step"] == 3
    assert len(final["notes"]) == 2, final["notes"]  # the stale eval/, and no curves.png
    assert early == [{k: v for k, v in final.items() if k not in ("test", "test_acc")}]


def test_numpy_numbers_train_and_resume_into_json(tmp_path: Path) -> None:
    """A sweep's numpy numbers: TrainConfig(max_steps=np.int64(2)) passed the checks and then
    failed writing train.json ("Object of type int64 is not JSON serializable"), as did
    extend={"max_steps": np.int64(4)} on resume; model_overrides' np.int64 was refused."""
    import numpy as np

    cfg = tiny(tmp_path, epochs=np.int64(1), max_steps=np.int64(2), augment=np.True_)
    cfg.model_overrides = {"patch_size": np.int64(7), "depth": np.int64(2)}
    first = train(cfg)
    assert first.summary["steps"] == 2
    saved = json.loads((first.run_dir / "train.json").read_text())
    assert saved["config"]["max_steps"] == 2
    assert saved["config"]["model_overrides"] == {"patch_size": 7, "depth": 2}
    assert json.loads((first.run_dir / "model.json").read_text())["config"]["depth"] == 2
    longer = train(resume=first.run_dir, extend={"max_steps": np.int64(4)})
    assert longer.summary["steps"] == 4
    saved = json.loads((first.run_dir / "train.json").read_text())
    assert saved["extended"] == [{"at_step": 2, "max_steps": [2, 4]}]


def test_a_resumed_run_can_be_extended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped by its --max-steps cap continues when the resume raises the cap."""

    first = train(tiny(tmp_path, "short", max_steps=30))
    assert first.status == "max_steps" and first.summary["steps"] == 30
    same = train(resume=first.run_dir)  # nothing left to do at the old cap
    assert same.summary["steps"] == 30
    longer = train(resume=first.run_dir, extend={"max_steps": 60})
    assert longer.status == "max_steps" and longer.summary["steps"] == 60
    assert longer.summary["resumed_from_step"] == 30
    saved = json.loads((first.run_dir / "train.json").read_text())
    assert saved["config"]["max_steps"] == 60
    assert saved["extended"] == [{"at_step": 30, "max_steps": [30, 60]}]
    with pytest.raises(UserError, match="can change only epochs, max_steps and patience, not lr"):
        train(resume=first.run_dir, extend={"lr": 1})
    with pytest.raises(
        UserError, match=r"at step 60, at or past its max_steps cap .*max_steps=0 for none"
    ):
        train(resume=first.run_dir, extend={"epochs": 3})  # still capped
    # a smaller cap asked for: named as the one asked for (it read "its cap (40)")
    with pytest.raises(UserError, match=r"at step 60, at or past max_steps \(40\)"):
        train(resume=first.run_dir, extend={"max_steps": 40})
    done = train(resume=first.run_dir, extend={"max_steps": 0})  # uncapped
    assert done.status == "completed" and done.summary["steps"] == 2 * 70  # tiny: 2 epochs
    with pytest.raises(UserError, match=r"has done 2 epoch.*; epochs must be more"):
        train(resume=first.run_dir, extend={"epochs": 1})
    import vitkit.train.run as run_module

    real_fit, seen = run_module.fit, []

    def fit(*a: Any, **k: Any) -> Any:  # the lr the first resumed step will use
        seen.append(k["optimizer"].param_groups[0]["lr"])
        return real_fit(*a, **k)

    monkeypatch.setattr(run_module, "fit", fit)
    more = train(resume=first.run_dir, extend={"epochs": 3})
    assert more.status == "completed" and more.summary["steps"] == 3 * 70
    # the new schedule's lr at step 140 of 210, not the old one's final min_lr (restored with
    # the optimizer's state)
    assert seen[0] > 0.1 * tiny(tmp_path).lr, seen
    with pytest.raises(UserError, match="pass resume= too"):
        train(tiny(tmp_path, "x"), extend={"epochs": 3})


def test_a_single_class_dataset_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(4):
        p = tmp_path / "one" / "train" / "cat" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (200, 10, 10)).save(p)
    cfg = tiny(tmp_path, dataset=f"folder:{tmp_path / 'one'}", model_overrides={"patch_size": 4})
    with pytest.raises(UserError, match=r"1 class \(cat\); a classifier needs two or more"):
        train(cfg, data_root=tmp_path / "cache")


def test_a_run_on_a_relative_folder_resumes_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    for c, colour in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
        for i in range(40):
            p = tmp_path / "work" / "pics" / "train" / c / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), colour).save(p)
    monkeypatch.chdir(tmp_path / "work")
    cfg = tiny(tmp_path, dataset="folder:pics", model_overrides={"patch_size": 4}, batch_size=8)
    stop = StopFlag()
    first = train(cfg, data_root=tmp_path / "cache", callbacks=[StopAt(stop, 3)], stop=stop)
    saved = json.loads((first.run_dir / "train.json").read_text())
    assert saved["config"]["dataset"] == f"folder:{tmp_path / 'work' / 'pics'}"
    monkeypatch.chdir(tmp_path)  # where folder:pics does not exist
    resumed = train(resume=first.run_dir)
    assert first.interrupted and resumed.status == "completed"
    assert resumed.summary["resumed_from_step"] == first.summary["steps"]


def test_a_run_with_a_relative_data_root_resumes_from_any_directory(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.json records --data-root as an absolute path: `--data-root data` then a resume from
    another directory read ./data there (a download, or "missing ..." with --no-download)."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(mnist_root)
    monkeypatch.chdir(tmp_path / "work")
    cfg = tiny(tmp_path, dataset="mnist", batch_size=128, max_steps=2)
    first = train(cfg, data_root="data", download=False)
    saved = json.loads((first.run_dir / "train.json").read_text())
    # absolute, a link kept as a link (repointed later, a resume follows it)
    assert saved["data_root"] == str(tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path)  # where ./data does not exist
    resumed = train(resume=first.run_dir, extend={"max_steps": 4}, download=False)
    assert resumed.status == "max_steps" and resumed.summary["steps"] == 4


def test_a_run_on_a_relative_vitkit_data_records_it_absolute(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train(data_root=None) with $VITKIT_DATA set recorded null in train.json (the CLI passes
    the variable as --data-root, and recorded it): a resume from another directory, or with
    another $VITKIT_DATA, looked for the data elsewhere."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "data").symlink_to(mnist_root)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("VITKIT_DATA", "data")
    cfg = tiny(tmp_path, dataset="mnist", batch_size=128, max_steps=2)
    first = train(cfg, download=False)
    saved = json.loads((first.run_dir / "train.json").read_text())
    assert saved["data_root"] == str(tmp_path / "work" / "data")  # absolute, the link kept
    monkeypatch.chdir(tmp_path)  # where ./data does not exist
    monkeypatch.setenv("VITKIT_DATA", str(tmp_path / "elsewhere"))
    resumed = train(resume=first.run_dir, extend={"max_steps": 4}, download=False)
    assert resumed.status == "max_steps" and resumed.summary["steps"] == 4


def test_multi_output_training_reports_positions(tmp_path: Path, mnist_root: Path) -> None:
    cfg = tiny(
        tmp_path,
        dataset="mnist-grid",
        epochs=1,
        max_steps=20,
        eval_batch_size=1000,
        model_overrides={},
    )
    result = train(cfg, data_root=mnist_root)
    test = result.summary["test"]
    assert len(test["per_position"]) == 4
    assert result.summary["test_acc"] == test["exact"]
    assert load_model(result.run_dir).num_outputs == 4


@pytest.mark.parametrize("out", [5, ["runs/x"]])
def test_an_out_that_is_not_a_string_is_a_one_line_error(tmp_path: Path, out: object) -> None:
    """train(TrainConfig(out=5)) was expanduser's TypeError once a config's '~' was expanded:
    the config is checked first, as before."""
    with pytest.raises(UserError, match=r"^training option 'out' must be a string, got "):
        train(tiny(tmp_path, out=out))


def test_existing_out_is_refused(tmp_path: Path) -> None:

    cfg = tiny(tmp_path, epochs=1, max_steps=2)
    train(cfg)
    with pytest.raises(
        UserError,
        match=r"already exists; use resume='.*' to continue it or overwrite=True to replace it",
    ):
        train(cfg)
    cfg.overwrite = True
    # a replacement that cannot start (its data is missing) leaves the old run as it was
    missing = TrainConfig(
        **{
            **cfg.to_dict(),
            "dataset": f"folder:{tmp_path / 'nothing'}",
            "model_overrides": {"patch_size": 4},
        }
    )
    with pytest.raises(UserError, match="nothing"):
        train(missing)
    assert (Path(cfg.out or "") / "model.safetensors").is_file()
    assert train(cfg).status == "max_steps"


def test_a_checkpoint_save_cut_off_keeps_a_complete_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights and state are replaced as one unit: a crash or a second Ctrl-C between the two
    used to leave weights at step N+1 beside a state at step N, and no resumable checkpoint."""
    from vitkit.train import checkpoint as ck
    from vitkit.train.optim import build_scheduler

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_scheduler(opt, total_steps=10, warmup_steps=0, lr=0.1, min_lr=0.0)
    cpu = torch.device("cpu")

    def save(step: int) -> None:
        with torch.no_grad():
            model.weight.fill_(step)
        ck.save_checkpoint(
            tmp_path, model=model, optimizer=opt, scheduler=sched, scaler=None,
            counters={"step": step}, device=cpu,
        )  # fmt: skip

    def resumed_step() -> int:
        counters = ck.load_checkpoint(
            tmp_path, model=model, optimizer=opt, scheduler=sched, scaler=None, device=cpu
        )
        assert float(model.weight[0, 0].detach()) == counters["step"]  # weights and state agree
        return int(counters["step"])

    save(1)
    real = os.replace

    def cut_after_first(src: Any, dst: Any) -> None:
        if Path(dst).name == "checkpoint":  # checkpoint/ moved aside, .new not yet in place
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(ck.os, "replace", cut_after_first)
    with pytest.raises(KeyboardInterrupt):
        save(2)
    monkeypatch.setattr(ck.os, "replace", real)
    assert not (tmp_path / "checkpoint").exists() and ck.checkpoint_exists(tmp_path)
    assert resumed_step() == 2  # the complete new pair
    save(3)  # the next save tidies up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]

    def weights_then_crash(path: Any, *a: Any, **k: Any) -> None:
        Path(path).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_weights", weights_then_crash)
    with pytest.raises(KeyboardInterrupt):
        save(4)
    assert resumed_step() == 3  # the cut-off save touched nothing that was complete


def test_an_early_stopped_run_resumes_to_nothing_unless_extended(tmp_path: Path) -> None:
    """It trained one more epoch (and stopped again) at every resume."""
    cfg = tiny(tmp_path, epochs=6, lr=1e-9, min_lr=0.0, warmup_epochs=0, patience=1)
    first = train(cfg)  # lr ~0: validation never improves after epoch 1
    assert first.status == "early_stopped" and first.summary["epochs_done"] == 2
    shutil.copytree(first.run_dir, tmp_path / "patient")

    class Start(Callback):
        def on_start(self, info: Any) -> None:
            self.info = info

    start = Start()
    again = train(resume=first.run_dir, callbacks=[start])
    assert again.status == "early_stopped" and again.summary["steps"] == first.summary["steps"]
    # the start says why nothing trains (the CLI's note: tests/cli/test_train.py)
    assert start.info.stopped_early_at == 2
    # fewer epochs than it stopped at train nothing: the error said only "epochs must be more",
    # not that its patience had stopped it, nor that a new patience trains on
    for epochs in (1, 2):
        with pytest.raises(
            UserError,
            match=r"stopped early at epoch 2 of 6 \(no better validation accuracy in its last 1 "
            rf"epoch\): epochs={epochs} trains nothing; to train on, resume with epochs more "
            r"than 2 \(the patience count restarts\), or patience alone more than 1 \(or "
            r"patience=0 for no early stopping\)$",
        ):
            train(resume=first.run_dir, extend={"epochs": epochs})
    more = train(resume=first.run_dir, extend={"epochs": 8}, callbacks=[start])
    assert start.info.stopped_early_at is None
    assert more.summary["epochs_done"] == 3  # patience counts afresh: one more epoch, then stop

    # a new patience alone trains on, counting the epochs already waited (1): as if the run had
    # had patience 2 from the start, one more epoch; --patience was refused on a resume
    run = tmp_path / "patient"
    longer = train(resume=run, extend={"patience": 2}, callbacks=[start])
    assert start.info.extended == {"patience": [1, 2]} and start.info.stopped_early_at is None
    assert longer.status == "early_stopped" and longer.summary["epochs_done"] == 3
    assert json.loads((run / "train.json").read_text())["config"]["patience"] == 2
    with pytest.raises(UserError, match=r"gone 2 epochs without .*patience must be more than 2"):
        train(resume=run, extend={"patience": 1})
    done = train(resume=run, extend={"patience": 0})  # no early stopping: every epoch
    assert done.status == "completed" and done.summary["epochs_done"] == 6
    with pytest.raises(UserError, match=r"trained all its 6 epochs: a new patience alone"):
        train(resume=run, extend={"patience": 3})


def test_a_mid_epoch_resume_logs_the_uninterrupted_epoch_loss(tmp_path: Path) -> None:
    """The resumed epoch's train_loss counted only the steps after the stop, and wall_seconds
    only the last segment: the curves and the time read differently from an unbroken run."""

    def epoch_losses(run: Path) -> list[float]:
        lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [r["train_loss"] for r in lines if r["kind"] == "epoch"]

    full = train(tiny(tmp_path, "full", epochs=1))
    stop = StopFlag()
    first = train(tiny(tmp_path, "split", epochs=1), callbacks=[StopAt(stop, 30)], stop=stop)
    resumed = train(resume=tmp_path / "split")
    assert epoch_losses(resumed.run_dir) == pytest.approx(epoch_losses(full.run_dir), rel=1e-5)
    total = resumed.summary["wall_seconds_total"]
    assert total == pytest.approx(
        first.summary["wall_seconds"] + resumed.summary["wall_seconds"], abs=0.02
    )


def test_a_mid_epoch_resume_logs_the_uninterrupted_step_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step line averages the steps since the one before it; after a stop at step 25 the
    resumed run's line at step 30 averaged steps 26-30 only (21-25 were reported nowhere)."""

    def step_losses(run: Path) -> list[tuple[int, float]]:
        lines = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        return [(r["step"], r["loss"]) for r in lines if r["kind"] == "step"]

    full = train(tiny(tmp_path, "full", epochs=1))  # log_every 10
    stop, real, calls = StopFlag(), loop_module._optimizer_step, []

    def step(*args: Any, **kwargs: Any) -> Any:  # Ctrl-C during step 25, between two lines
        calls.append(1)
        if len(calls) == 25:
            stop.request()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "_optimizer_step", step)
    first = train(tiny(tmp_path, "split", epochs=1), stop=stop)
    monkeypatch.setattr(loop_module, "_optimizer_step", real)
    assert first.interrupted and first.summary["steps"] == 25
    train(resume=first.run_dir)
    whole, split = step_losses(full.run_dir), step_losses(first.run_dir)
    assert [s for s, _ in split] == [s for s, _ in whole] == list(range(10, 71, 10))
    assert [loss for _, loss in split] == pytest.approx([loss for _, loss in whole], rel=1e-5)


def test_a_max_steps_stop_mid_epoch_does_not_change_the_best_weights(tmp_path: Path) -> None:
    """A --max-steps stop mid-epoch validated the partial epoch and kept it as best when it
    scored higher: the resumed run then kept other best weights than an unbroken one did."""

    def weights(run: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
        return load_weights(run / name)

    full = train(tiny(tmp_path, "full", max_steps=100))  # 70 steps an epoch: stops in the 2nd
    first = train(tiny(tmp_path, "split", max_steps=30))  # before any full epoch: its
    assert (first.run_dir / "model.safetensors").is_file()  # weights, for now
    assert first.summary["best_epoch"] is None
    resumed = train(resume=first.run_dir, extend={"max_steps": 100})
    for run in (full, resumed):
        lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
        ends = [x for x in map(json.loads, lines) if x["kind"] == "epoch" and x["step"] == 100]
        assert len(ends) == 1 and ends[0]["partial"] and not ends[0]["is_best"]
        assert run.summary["best_epoch"] == 1  # the one full epoch
    a, b = weights(full.run_dir, "checkpoint/last.safetensors"), weights(resumed.run_dir, "checkpoint/last.safetensors")  # fmt: skip
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same training
    a, b = weights(full.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)  # and the same best weights
    # with no validation split the best is the last full epoch's, not the partial one's
    blind = train(tiny(tmp_path, "no-val", val_fraction=0.0, max_steps=100))
    assert blind.summary["best_epoch"] == 1
    lines = (blind.run_dir / "metrics.jsonl").read_text().splitlines()  # and metrics.jsonl
    ends = [x for x in map(json.loads, lines) if x["kind"] == "epoch"]  # says so (is_best was
    assert [(x["epoch"], x["is_best"]) for x in ends] == [(0, True), (1, False)]  # false)
    a, b = weights(blind.run_dir), weights(blind.run_dir, "checkpoint/last.safetensors")
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_patience_without_validation_is_named(tmp_path: Path) -> None:
    """--patience with --val-fraction 0 trained every epoch without a word."""
    result = train(tiny(tmp_path, val_fraction=0.0, patience=1, max_steps=3))
    notes = result.summary.get("notes", [])
    assert any("patience=1 does nothing here: there is no validation split" in n for n in notes)
    quiet = train(tiny(tmp_path, "with-val", patience=1, max_steps=3))
    assert not any("patience" in n for n in quiet.summary.get("notes", []))


def test_a_run_directory_in_use_is_refused(tmp_path: Path) -> None:
    """Two trains into one run directory both 'succeeded', each overwriting the other's
    checkpoints. The one that comes second is refused, naming the holder; the lock goes with
    the first, and its file with it."""

    from vitkit.train.run import RunLock

    cfg = tiny(tmp_path, epochs=1, max_steps=2)
    held = RunLock(Path(cfg.out or ""))
    assert held.acquire()
    assert not RunLock(Path(cfg.out or "")).acquire()  # another open file: as another process
    with pytest.raises(
        UserError, match=rf"run is in use: another vitkit train \(pid {os.getpid()}"
    ):
        train(cfg)
    assert not Path(cfg.out or "").exists()  # refused before any work
    held.release()
    assert not held.path.exists()
    result = train(cfg)
    assert result.status == "max_steps"
    assert not held.path.exists()  # released with the train
    assert held.acquire()
    with pytest.raises(UserError, match=r"in use: .*wait for it to end$"):  # a resume too,
        train(resume=result.run_dir)  # with no advice to train elsewhere
    held.release()


def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A killed train (kill -9, OOM) leaves no lock behind to block its resume."""
    from vitkit.train.run import RunLock

    code = (
        "import sys, time; from pathlib import Path; from vitkit.train.run import RunLock; "
        f"assert RunLock(Path({str(tmp_path / 'run')!r})).acquire(); print('held', flush=True); "
        "time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        lock = RunLock(tmp_path / "run")
        assert not lock.acquire()
        assert lock.holder() == f"pid {proc.pid}"
    finally:
        proc.kill()
        proc.wait()
    assert lock.acquire()  # the file is still there; its lock is not
    lock.release()


def test_default_run_names_step_past_a_run_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.train.run import RunLock, claim_run_dir

    runs = tmp_path / "runs"
    cfg = replace(tiny(tmp_path), out="")
    (runs / "mnist-mini-vit-nano-2").mkdir(parents=True)  # taken: exists
    other = RunLock(runs / "mnist-mini-vit-nano")  # taken: another train is starting in it
    assert other.acquire()
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as held:
        assert claim_run_dir(cfg, False, held) == (Path("runs/mnist-mini-vit-nano-3"), None)
        assert not RunLock(runs / "mnist-mini-vit-nano-3").acquire()
    assert RunLock(runs / "mnist-mini-vit-nano-3").acquire()  # released with `held`
    other.release()


def test_the_first_step_is_timed_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--compile compiles in the first step, and img/s counted it: the throughput without the
    first step, and that step's time, are in summary.json beside the overall figure."""
    import time

    real, calls = loop_module.loss_fn, []

    def slow_first(*args: Any, **kwargs: Any) -> torch.Tensor:
        if not calls:
            time.sleep(1.0)  # a compile, as far as the clock can tell
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "loss_fn", slow_first)
    s = train(tiny(tmp_path, epochs=1, max_steps=20)).summary
    assert s["compiled"] is False
    assert 1.0 <= s["first_step_seconds"] < 5
    steady = s["train_images_per_s_after_first_step"]
    assert steady > s["train_images_per_s"]  # however busy the machine: the slow step is out
    seconds = 20 * 64 / s["train_images_per_s"]  # the identity, to summary.json's rounding
    assert steady == pytest.approx(19 * 64 / (seconds - s["first_step_seconds"]), rel=0.02)


def test_a_lock_file_removed_under_a_waiting_acquire_is_taken_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder releases (unlinks, unlocks) between another's open and its flock: that one
    then holds a file no longer in the folder, and a third process could lock a new one. The
    inode check sends it round again, onto the new file."""
    import fcntl

    from vitkit.train.run import RunLock

    holder, waiting = RunLock(tmp_path / "run"), RunLock(tmp_path / "run")
    assert holder.acquire()
    real = fcntl.flock

    def released_first(fd: int, op: int) -> None:
        if holder._fd is not None:
            holder.release()  # after `waiting` opened the old file, before its flock
        real(fd, op)

    monkeypatch.setattr(fcntl, "flock", released_first)
    assert waiting.acquire()
    monkeypatch.setattr(fcntl, "flock", real)
    assert waiting.path.read_text() == str(os.getpid())
    assert not RunLock(tmp_path / "run").acquire()  # the file in the folder is the held one
    waiting.release()


def test_no_flock_or_no_write_access_trains_unlocked_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without flock (Lustre without -o flock, some FUSE/SMB mounts) or a parent
    folder this user cannot write in: every train there failed with "cannot write in ...". It
    now trains unlocked, as before the lock, and says so."""
    import errno
    import fcntl

    from vitkit.train.run import RunLock

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    open_before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None
    lock = RunLock(tmp_path / "run")
    assert lock.acquire() and "its filesystem has no flock (Function not implemented)" in (
        lock.unavailable or ""
    )
    assert not lock.path.exists()  # no lock file left behind, and no descriptor
    if open_before is not None:
        assert len(os.listdir("/proc/self/fd")) == open_before
    result = train(tiny(tmp_path, epochs=1, max_steps=2))
    assert any("is not locked against a second train" in n for n in result.summary["notes"])
    monkeypatch.undo()

    real_open = os.open
    owner = RunLock(tmp_path / "theirs")
    assert owner.acquire()

    def not_ours(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".lock") and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", not_ours)
    # another user's lock file, held: locked read-only, so still refused (it trained unlocked)
    assert not RunLock(tmp_path / "theirs").acquire()
    owner.release()
    # no lock file can be made: an existing run directory trains unlocked, with a note ...
    (tmp_path / "made").mkdir()
    lock = RunLock(tmp_path / "made")
    assert lock.acquire() and "(Permission denied)" in (lock.unavailable or "")
    # ... and a new one is refused at once (it failed only after the data and the model)

    from vitkit.train.run import _lock

    with pytest.raises(UserError, match=r"cannot write in .*: Permission denied"):
        _lock(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)  # the pid is best-effort; the lock is not
    lock = RunLock(tmp_path / "full")
    assert lock.acquire() and not RunLock(tmp_path / "full").acquire()
    lock.release()
    assert not lock.path.exists()


def test_a_refused_run_leaves_no_folders_behind(tmp_path: Path) -> None:
    """The lock made --out's parent folders before any check: a run that could not start (a
    typo in the dataset's path) left tmp/typo/a behind."""

    out = tmp_path / "typo" / "a" / "run"
    cfg = TrainConfig(
        **{
            **tiny(tmp_path).to_dict(),
            "dataset": f"folder:{tmp_path / 'nope'}",
            "model_overrides": {"patch_size": 4},
            "out": str(out),
        }
    )
    with pytest.raises(UserError, match="folder dataset not found"):
        train(cfg)
    assert not (tmp_path / "typo").exists()


def test_a_resume_names_the_eval_reports_of_the_old_weights(tmp_path: Path) -> None:
    """RUN/eval scored the weights before the resume: the result and summary.json say so (and
    how to redo it); a report from before eval.json recorded a hash is left unnamed."""
    from vitkit.data.download import file_sha256
    from vitkit.eval import evaluate

    first = train(tiny(tmp_path, epochs=1))
    run, weights = first.run_dir, first.run_dir / "model.safetensors"
    assert first.notes == []
    evaluate(run).save(run / "eval")
    before = file_sha256(weights)
    (run / "eval-mnist-mini-train").mkdir()  # an older vitkit's: no model_sha256
    (run / "eval-mnist-mini-train" / "eval.json").write_text('{"split": "train"}')
    resumed = train(resume=run, extend={"epochs": 2})
    assert file_sha256(weights) != before  # the second epoch's best replaced the first's
    note = f"{run / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {run}`"
    assert resumed.notes == [note]
    assert note in json.loads((run / "summary.json").read_text())["notes"]


def test_a_resume_that_diverges_names_the_eval_reports_its_new_weights_made_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run that wrote new best and last weights and then diverged (NonFiniteLoss)
    said nothing of RUN/eval, which scored the weights they replaced; one that diverged before
    writing any has nothing to say."""
    import shutil

    from vitkit.data.download import file_sha256

    first = train(tiny(tmp_path, epochs=1, max_steps=3, val_fraction=0.0))  # 78 steps an epoch
    run = first.run_dir
    (run / "eval").mkdir()  # as `vitkit eval RUN` writes it, of the weights now on disk
    doc = {"model_file": str(run / "model.safetensors")}
    doc["model_sha256"] = file_sha256(run / "model.safetensors")
    (run / "eval" / "eval.json").write_text(json.dumps(doc))
    shutil.copytree(run, tmp_path / "early")
    real = loop_module.loss_fn
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        calls["n"] += 1
        loss = real(logits, y, smoothing)
        return loss * float("nan") if calls["n"] > 75 else loss  # epoch 2's first step

    monkeypatch.setattr(loop_module, "loss_fn", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"at step 79 ") as e:
        train(resume=run, extend={"epochs": 2, "max_steps": 0})  # epoch 1's end saves, then NaN
    note = f"{run / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {run}`"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["notes"] == [note]
    assert list(e.value.notes) == [note] and e.value.summary == summary
    calls["n"] = 75  # NaN at once: the weights on disk are those RUN/eval scored
    with pytest.raises(NonFiniteLoss, match=r"at step 4 ") as e:
        train(resume=tmp_path / "early", extend={"max_steps": 0})
    assert list(e.value.notes) == [] and "notes" not in (e.value.summary or {})


def test_fit_calls_saves_and_callbacks_in_this_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order of step reports, epoch ends and saves through a full epoch, a --max-steps stop
    mid-epoch and a resume that finishes it (pinned when fit() was split into named steps)."""
    from vitkit.train import run as run_module
    from vitkit.train.callbacks import EpochInfo

    events: list[tuple[Any, ...]] = []
    real_fit = run_module.fit

    def traced_fit(*args: Any, save: Any, **kwargs: Any) -> Any:
        def traced_save(kind: str, state: Any) -> None:
            events.append(("save", kind, state.step, state.epoch, state.batch))
            save(kind, state)

        result = real_fit(*args, save=traced_save, **kwargs)
        events.append(("end", result.status, result.state.step))
        return result

    class Trace(Callback):
        def on_step(self, info: StepInfo) -> None:
            events.append(("step", info.step, info.epoch, info.batch))

        def on_epoch(self, info: EpochInfo) -> None:
            events.append(("epoch", info.epoch, info.step, info.is_best, info.partial))

    monkeypatch.setattr(run_module, "fit", traced_fit)
    cfg = tiny(tmp_path, val_fraction=0.0, max_steps=100, log_every=40)
    first = train(cfg, callbacks=[Trace()])
    train(resume=first.run_dir, extend={"max_steps": 0}, callbacks=[Trace()])
    assert events == [  # 78 steps an epoch (mnist-mini, no validation split, batch 64)
        ("step", 40, 0, 40),
        ("step", 78, 0, 78),  # the epoch's last batch always reports
        ("save", "best", 78, 0, 78),  # no validation: every full epoch's weights are the best
        ("save", "checkpoint", 78, 1, 0),
        ("epoch", 0, 78, True, False),
        ("step", 80, 1, 2),
        ("step", 100, 1, 22),  # --max-steps reports, saves a checkpoint inside the epoch
        ("save", "checkpoint", 100, 1, 22),
        ("epoch", 1, 100, False, True),  # partial: validated, never the best
        ("end", "max_steps", 100),
        ("step", 120, 1, 42),  # resumed inside epoch 1
        ("step", 156, 1, 78),
        ("save", "best", 156, 1, 78),
        ("save", "checkpoint", 156, 2, 0),
        ("epoch", 1, 156, True, False),
        ("end", "completed", 156),
    ]


def test_the_warm_up_note_says_1_epoch_not_1_epochs() -> None:
    """mnist-grid (warm-up 1 epoch) with --max-steps 3 noted "the warm-up (1 epochs, 1,687
    steps) is as long as the whole run"; 1 epoch is one, 0.5 and 3 are still epochs."""
    from types import SimpleNamespace

    from vitkit.train.run import _option_notes

    parts = SimpleNamespace(warmup_steps=10, total_steps=10)
    for epochs, words in [(1.0, "1 epoch,"), (0.5, "0.5 epochs,"), (3.0, "3 epochs,")]:
        (note,) = _option_notes(TrainConfig(warmup_epochs=epochs), parts, None)  # type: ignore[arg-type]
        assert note.startswith(f"the warm-up ({words} 10 steps) is as long as the whole run")
    # a 3-image folder at batch 2: "the warm-up (5 epochs, 5 steps) ... (1 steps)"
    one = SimpleNamespace(warmup_steps=1, total_steps=1)
    (note,) = _option_notes(TrainConfig(warmup_epochs=5.0), one, None)  # type: ignore[arg-type]
    assert note.startswith("the warm-up (5 epochs, 1 step) is as long as the whole run (1 step):")
