from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vitkit.cli import app

runner = CliRunner()
TINY = ["--model", "vit-nano", "--patch-size", "7", "--batch-size", "64"]


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["mnist-mino"], "did you mean 'mnist-mini'"),
        (["mnist-mini", "--embed-dim", "100", "--heads", "3"], "not divisible by num_heads"),
        (["mnist-mini", "--patch-size", "5"], "does not divide image_size 28"),
        (["mnist-mini", "--device", "cuda"], "CUDA is not available"),
        # with the size that fits (mnist-mini: 4,500 training images after the val hold-out)
        (
            ["mnist-mini", "--batch-size", "100000"],
            "batch size 100000 is larger than the 4500 images per device of mnist-mini's training"
            " split; use --batch-size 4500 or less",
        ),
        (["mnist-mini", "--model", "vit-tinyy"], "did you mean 'vit-tiny'"),
        (["mnist-mini", "--epochs", "0"], "epochs must be >= 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "r")])
    assert message in one_error_line(result)
    assert not (tmp_path / "r" / "checkpoint").exists()  # nothing ran


def test_train_json_then_existing_out_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1", "--max-steps", "5", "--out", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "max_steps" and summary["steps"] == 5
    assert (out / "model.safetensors").is_file()
    again = runner.invoke(app, args)
    assert "--resume" in one_error_line(again) and "--overwrite" in again.stderr


def test_the_header_says_1_epoch_not_1_epochs_and_the_closing_line_the_runs_figures(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1", "--max-steps", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert " · 1 epoch x " in err and "1 epochs" not in err, err
    # what the model changes of its preset (vit-nano's patch for 28 px is 4), with its size
    assert " vit-nano (patch_size 7; 0.14M params, " in err, err
    assert " steps of " in err  # mnist-mini's 4,500 training images: many steps an epoch
    # the closing line's figures are summary.json's (no test read them: any number passed)
    s = json.loads((out / "summary.json").read_text())
    val, test = (f"{100 * x:.2f}%" for x in (s["last_val"]["acc"], s["test_acc"]))
    speed = f"{s['train_images_per_s']:,.0f} img/s, {s['wall_seconds']:.0f} s"
    assert (
        f"done (max_steps): val {val} (a partial epoch: no best yet), test {test}; {speed}" in err
    )
    files = "model.json, model.safetensors, train.json, metrics.jsonl, summary.json, curves.png"
    assert f"wrote {out}/: {files}, checkpoint/" in err, err


def test_the_closing_line_of_a_multi_output_run_gives_exact_match(tmp_path: Path) -> None:
    """mnist-grid --max-steps 3 closed with "val 10.43% (a partial epoch: no best yet), test
    0.01%": last_val's mean over positions beside test_acc's exact match, where its epoch line
    had said "val 0.02% exact". Every figure of the line is exact match now, and says so."""
    from vitkit.cli import _common
    from vitkit.cli.train import _print_done

    def val(acc: float, exact: float, positions: int) -> dict[str, Any]:
        return {"acc": acc, "exact": exact, "per_position": [acc] * positions, "n": 10}

    base = {"status": "max_steps", "train_images_per_s": 900.0, "wall_seconds": 2.0}
    cases = [
        (dict(last_val=val(0.1043, 0.0002, 4), test=val(0.1023, 0.0001, 4), test_acc=0.0001),
         "val 0.02% exact (a partial epoch: no best yet), test 0.01% exact;"),
        (dict(last_val=val(0.5, 0.25, 4), best_val_acc=0.3, best_epoch=2, test_acc=None),
         "best val 30.00% exact (epoch 2), no test split;"),
        (dict(last_val=val(0.5, 0.5, 1), test=val(0.4, 0.4, 1), test_acc=0.4),
         "val 50.00% (a partial epoch: no best yet), test 40.00%;"),  # one output: as before
    ]  # fmt: skip
    for summary, expected in cases:
        with _common.console.capture() as out:
            _print_done({**base, **summary}, tmp_path)
        assert f"done (max_steps): {expected}" in " ".join(out.get().split())


def test_a_resume_prints_which_eval_reports_scored_the_old_weights(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1", "--max-steps", "3", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    (out / "eval").mkdir()  # as `vitkit eval RUN` wrote it, of weights since replaced
    doc = {"model_file": str(out / "model.safetensors"), "model_sha256": "0" * 64}
    (out / "eval" / "eval.json").write_text(json.dumps(doc))
    result = runner.invoke(app, ["train", "--resume", str(out), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert (
        f"note: {out / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {out}`"
        in err
    )
    assert err.index("done") < err.index("scored an earlier"), err  # at the end, not the start


def test_a_resume_that_diverges_prints_which_eval_reports_it_made_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume that rewrote the weights (epoch 1's end) and then diverged printed only the
    error: the notes on RUN/eval were in the finished run's output alone (and in its --json)."""
    import shutil

    from vitkit.data.download import file_sha256
    from vitkit.train import loop as loop_module

    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1", "--max-steps", "3", "--out", str(out)]
    assert runner.invoke(app, [*args, "--val-fraction", "0"]).exit_code == 0  # 78 steps/epoch
    (out / "eval").mkdir()  # as `vitkit eval RUN` writes it, of the weights now on disk
    doc = {"model_file": str(out / "model.safetensors")}
    doc["model_sha256"] = file_sha256(out / "model.safetensors")
    (out / "eval" / "eval.json").write_text(json.dumps(doc))
    shutil.copytree(out, tmp_path / "again")
    real, calls = loop_module.loss_fn, {"n": 0}

    def poisoned(*a, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1  # steps 4..78 finish epoch 1 (and save), then NaN
        return real(*a, **kw) * (float("nan") if calls["n"] > 75 else 1.0)

    monkeypatch.setattr(loop_module, "loss_fn", poisoned)
    resume = ["train", "--resume", str(out), "--epochs", "2", "--max-steps", "0"]
    result = runner.invoke(app, resume)
    assert result.exit_code == 1, result.output
    err = " ".join(result.stderr.split())
    note = f"note: {out / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {out}`"
    assert note in err and "error: loss became nan at step 79" in err, err
    assert result.stderr.strip().splitlines()[-1].startswith("error:")  # the error ends it
    calls["n"] = 0
    resume[2] = str(tmp_path / "again")
    as_json = runner.invoke(app, [*resume, "--json"])
    assert as_json.exit_code == 1, as_json.output
    again = tmp_path / "again"
    note = f"{again / 'eval'}/ scored an earlier model.safetensors: rerun `vitkit eval {again}`"
    summary = json.loads(as_json.stdout)
    assert summary["status"] == "diverged" and summary["notes"][1:] == [note]
    assert summary["notes"][0].startswith(f"extending {again}: epochs 1 -> 2")  # the start's


def test_without_matplotlib_no_curves_png_is_claimed_and_a_note_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closing line listed curves.png though none was written, with no word of why; a
    resume left the old curves.png, which no longer showed the run's metrics."""
    import vitkit._plot

    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1", "--max-steps", "3", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert (out / "curves.png").is_file()
    monkeypatch.setattr(vitkit._plot, "figure", lambda *a, **k: None)  # no matplotlib
    result = runner.invoke(app, ["train", "--resume", str(out), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    assert not (out / "curves.png").exists()
    err = " ".join(result.stderr.split())
    assert "wrote" in err and "curves.png" not in err.split("wrote")[1].split("note:")[0], err
    assert "note: no curves.png: matplotlib is not installed" in err, err
    summary = json.loads((out / "summary.json").read_text())
    assert any("vitkit[plot]" in n for n in summary["notes"]), summary


def test_config_file_and_cli_override(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "model": "vit-nano",
                "model_overrides": {"patch_size": 7},
                "epochs": 1,
                "max_steps": 3,
                "batch_size": 32,
            }
        )
    )
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "mnist-mini",
            "--config",
            str(cfg),
            "--batch-size",
            "16",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "train.json").read_text())["config"]
    assert saved["batch_size"] == 16 and saved["max_steps"] == 3 and saved["model"] == "vit-nano"


@pytest.mark.parametrize(
    ("extended", "verb"),
    [
        ({"max_steps": [3, 6]}, "extending"),
        ({"max_steps": [400, 0]}, "extending"),  # 0: no cap
        ({"max_steps": [0, 300]}, "shortening"),
        ({"max_steps": [400, 300]}, "shortening"),  # it said "extending ...: 400 -> 300"
        ({"epochs": [10, 5]}, "shortening"),
        ({"epochs": [10, 20], "max_steps": [400, 300]}, "changing"),
        ({"patience": [3, 5]}, "extending"),
        ({"patience": [3, 0]}, "extending"),  # 0: no early stopping
        ({"patience": [0, 3]}, "shortening"),
    ],
)
def test_a_resumed_run_says_whether_it_gets_longer(
    extended: dict[str, list[int]], verb: str
) -> None:
    from types import SimpleNamespace

    from vitkit.cli.train import start_notes

    info = SimpleNamespace(
        extended=extended,
        run_dir="runs/r",
        notes=[],
        resumed_from_step=6,
        total_steps=6,
        stopped_early_at=None,
    )
    (note,) = start_notes(info)  # type: ignore[arg-type]
    assert note.startswith(f"{verb} runs/r: "), note


def test_a_finished_run_resumed_as_is_says_there_is_nothing_to_train(tmp_path: Path) -> None:
    """`vitkit train --resume RUN` on a finished run printed the old closing line and 'wrote
    RUN/: model.json, ...' with no word that nothing was trained, nor how to train further."""
    from types import SimpleNamespace

    from vitkit.cli.train import start_notes

    out = tmp_path / "run"
    first = runner.invoke(
        app, ["train", "mnist-mini", *TINY, "--max-steps", "3", "--out", str(out)]
    )
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(out)])
    assert again.exit_code == 0, again.output
    err = " ".join(again.stderr.split())
    assert f"nothing left to train: {out} stopped at its --max-steps cap (step 3)" in err, err
    assert "resume with a larger --max-steps (or --max-steps 0)" in err
    again = runner.invoke(app, ["train", "--resume", str(out), "--json"])  # in its notes too
    assert again.exit_code == 0, again.output
    (note,) = [n for n in json.loads(again.stdout)["notes"] if n.startswith("nothing left")]
    assert note.startswith(f"nothing left to train: {out} stopped at its --max-steps cap"), note
    assert "nothing left" not in " ".join(first.stderr.split())
    # a run that trained all its epochs (a 2-epoch run of 10 steps an epoch, at step 20)
    info = SimpleNamespace(
        extended={},
        run_dir="runs/r",
        notes=[],
        resumed_from_step=20,
        total_steps=20,
        config={"epochs": 2, "max_steps": 0},
        stopped_early_at=None,
    )
    (note,) = start_notes(info)  # type: ignore[arg-type]
    assert note.startswith("nothing left to train: runs/r has trained all its 2 epochs;"), note
    assert note.endswith("resume with --epochs N (more than 2)"), note
    info.resumed_from_step = 12  # interrupted mid-run: no such note
    assert start_notes(info) == []  # type: ignore[arg-type]


def test_an_early_stopped_run_resumed_as_is_says_there_is_nothing_to_train(
    tmp_path: Path,
) -> None:
    """`vitkit train --resume RUN` of a run its --patience had stopped trained nothing and
    printed the old closing line, with no word why nor how to train on; --patience, the
    option that does, was ignored on a resume."""
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "6", "--lr", "1e-9", "--min-lr", "0", "--warmup-epochs", "0"]
    first = runner.invoke(app, ["train", "mnist-mini", *args, "--patience", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output  # lr ~0: validation never improves after epoch 1
    assert json.loads((out / "summary.json").read_text())["epochs_done"] == 2
    again = runner.invoke(app, ["train", "--resume", str(out), "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["status"] == "early_stopped"
    err = " ".join(again.stderr.split())
    note = (
        f"nothing left to train: {out} stopped early at epoch 2 of 6 (no better validation "
        "accuracy in its last 1 epoch, --patience 1); only the test split is scored again. "
        "To train on, resume with --patience N (more than 1, or 0 for no early stopping), or "
        "--epochs N (more than 6), which restarts the patience count"
    )
    assert note in err, err
    # and in the --json summary's notes, first (it was on stderr alone: a script reading
    # stdout saw a resume that trained nothing without a word why), not in summary.json's
    assert summary["notes"][0] == note, summary.get("notes")
    assert note not in json.loads((out / "summary.json").read_text()).get("notes", [])
    # its own --epochs is no change: the same note; fewer than it stopped at, one error line
    # that names the early stop and both ways on (it said only "--epochs must be more")
    same = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "6", "--json"])
    assert same.exit_code == 0, same.output
    assert f"nothing left to train: {out} stopped early at epoch 2 of 6 " in " ".join(
        same.stderr.split()
    )
    line = one_error_line(runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2"]))
    assert line == (
        f"error: {out} stopped early at epoch 2 of 6 (no better validation accuracy in its last 1 "
        "epoch): --epochs 2 trains nothing; to train on, resume with --epochs more than 2 (the "
        "patience count restarts), or --patience alone more than 1 (or --patience 0 for no early "
        "stopping)"
    ), line
    more = runner.invoke(app, ["train", "--resume", str(out), "--patience", "2", "--json"])
    assert more.exit_code == 0, more.output
    err = " ".join(more.stderr.split())
    assert f"extending {out}: patience 1 -> 2" in err and "schedule" not in err, err
    assert "nothing left" not in err and "ignored" not in err, err
    assert json.loads(more.stdout)["epochs_done"] == 3  # one more epoch without improvement


def test_resume_with_max_steps_extends_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = runner.invoke(
        app, ["train", "mnist-mini", *TINY, "--max-steps", "3", "--out", str(out)]
    )
    assert first.exit_code == 0, first.output
    assert "epoch   1/" in first.stderr and "(partial: --max-steps)" in first.stderr  # unsaid
    args = ["train", "--resume", str(out), "--max-steps", "6", "--lr", "1", "--seed", "2"]
    more = runner.invoke(app, [*args, "--no-aug"])
    assert more.exit_code == 0, more.output
    err = " ".join(more.stderr.split())
    assert f"extending {out}: max-steps 3 -> 6" in err
    # each ignored option named (--seed, --no-aug and most others were ignored unsaid)
    assert "ignored: --lr, --no-aug, --seed (only --epochs, --max-steps and --patience" in err, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    again = runner.invoke(app, ["train", "mnist-mini", "--resume", str(out), "--max-steps", "7"])
    assert "ignored: DATASET (only" in " ".join(again.stderr.split())


def test_sigint_leaves_a_resumable_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "vitkit",
        "train",
        "mnist-mini",
        *TINY,
        "--epochs",
        "50",
        "--log-every",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 3
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"vitkit train --resume {out}" in err
    state_step = json.loads((out / "summary.json").read_text())["steps"]
    assert state_step >= 3
    # the checkpoint continues: resume in-process and stop again one step later
    from vitkit.train import StopFlag, train
    from vitkit.train.callbacks import Callback

    stop = StopFlag()

    class Once(Callback):
        def on_step(self, info) -> None:  # type: ignore[no-untyped-def]
            stop.request()

    resumed = train(resume=out, callbacks=[Once()], stop=stop)
    assert resumed.summary["resumed_from_step"] == state_step
    assert resumed.summary["steps"] == state_step + 1


def test_ctrl_c_outside_the_steps_prints_the_json_and_the_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the data loaded or the test split was scored (or a second one during a
    save) printed nothing on stdout under --json, and no resume command either way, though the
    run had a checkpoint to resume from."""
    from vitkit.train import run as run_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "run"
    args = ["train", "mnist-mini", *TINY, "--max-steps", "2", "--out", str(out), "--json"]
    with monkeypatch.context() as m:
        m.setattr(run_module, "load_dataset", interrupted)  # a new run: nothing to resume
        result = runner.invoke(app, args)
        assert result.exit_code == 130, result.output
        doc = {"error": "interrupted", "status": "interrupted", "run_dir": None}
        assert json.loads(result.stdout) == {**doc, "resume_command": None}
        assert result.stderr.strip() == "interrupted"
    with monkeypatch.context() as m:
        m.setattr(run_module, "_test", interrupted)  # the steps are done: the test split is cut
        result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    cmd = f"vitkit train --resume {out}"
    doc = {**doc, "run_dir": str(out), "resume_command": cmd}
    assert json.loads(result.stdout) == doc
    with monkeypatch.context() as m:  # a resume cut short keeps its new length in the command
        m.setattr(run_module, "load_dataset", interrupted)
        result = runner.invoke(app, ["train", "--resume", str(out), "--max-steps", "3", "--json"])
        assert result.exit_code == 130, result.output
        assert json.loads(result.stdout) == {**doc, "resume_command": f"{cmd} --max-steps 3"}
        result = runner.invoke(app, ["train", "--resume", str(out)])  # and on the terminal
        assert result.exit_code == 130, result.output
        assert f"interrupted: checkpoint kept. Resume with: {cmd}" in " ".join(
            result.stderr.split()
        )
    result = runner.invoke(app, [*cmd.split()[1:], "--json"])  # the command does what it says
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_acc"] is not None


def test_torchrun_ddp_two_cpu_processes(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.run")
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "vitkit",
        "train",
        "mnist-mini",
        *TINY,
        "--epochs",
        "1",
        "--max-steps",
        "6",
        "--out",
        str(out),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert summary["ddp"]["in_sync"] is True
    assert len(summary["ddp"]["rank_weight_checksums"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one run directory


def _step(step: int = 20, total: int = 140) -> object:
    from vitkit.train.callbacks import StepInfo

    return StepInfo(
        step=step, total_steps=total, epoch=0, epochs=2, batch=step, batches=70,
        loss=2.2891, lr=1.5e-3, images_per_s=3743.0, elapsed=1.0,
    )  # fmt: skip


@pytest.mark.parametrize("width", [50, 60, 80, 100, 160])
def test_live_line_fits_the_terminal(width: int) -> None:
    """The live line never wraps: the bar shrinks, then step, lr, img/s, % are left out."""
    from vitkit.cli.train import LiveView

    line = LiveView()._render(_step(), width=width).plain  # type: ignore[arg-type]
    assert len(line) <= width, line
    for must in ("epoch 1/2", "loss 2.2891", "ETA", "val -"):
        assert must in line
    if width >= 120:
        assert "█" * 4 in line and "░" * 26 in line  # 30-cell bar, 14% done
        assert "lr 1.50e-03" in line and "step 20/140" in line and "3,743 img/s" in line
    if width <= 80:
        assert "step 20/140" not in line


def test_train_in_a_pipe_prints_progress_lines_and_warns_of_a_long_warmup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal (CI, nohup): plain progress lines instead of a live display; the header
    names the --max-steps cap and says when the warm-up outlasts the run."""
    import vitkit.cli.train as train_cli

    monkeypatch.setattr(train_cli, "PLAIN_EVERY", 0.0)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["train", "mnist-mini", *TINY, "--epochs", "2", "--max-steps", "6",
         "--warmup-epochs", "3", "--log-every", "1", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "stops at step 6 (--max-steps)" in err
    assert "the lr climbs" in err and "never decays (--warmup-epochs sets it)" in err
    progress = [ln for ln in result.stderr.splitlines() if ln.strip().startswith("epoch 1/2 ·")]
    assert len(progress) >= 5 and "step 6/6" in progress[-1], result.stderr
    assert "\n\n" not in result.stderr  # no blank line left by a live display
    # --json: the summary on stdout, and the notes still on stderr (they went with the view)
    args = ["train", "mnist-mini", *TINY, "--max-steps", "2", "--warmup-epochs", "3", "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "json")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "max_steps"
    assert "never decays" in " ".join(result.stderr.split())
    assert any("never decays" in n for n in json.loads(result.stdout)["notes"])  # the library's


def test_print_config_shows_the_recipe_merged_with_options_and_trains_nothing(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    args = ["train", "mnist-mini", "--epochs", "3", "--out", str(out), "--print-config"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    assert cfg["epochs"] == 3 and cfg["dataset"] == "mnist-mini"
    assert cfg["model_overrides"]["patch_size"] == 7  # from the mnist-mini recipe
    assert not out.exists()
    # every option reaches the config, each at a value that is neither its default nor the
    # recipe's (only --epochs was checked: an option dropped on its way went unnoticed)
    given = {
        "--model": ("model", "vit-nano"),
        "--embed-dim": ("model_overrides.embed_dim", 96),
        "--depth": ("model_overrides.depth", 2),
        "--heads": ("model_overrides.num_heads", 3),
        "--patch-size": ("model_overrides.patch_size", 4),
        "--mlp-ratio": ("model_overrides.mlp_ratio", 3.0),
        "--dropout": ("model_overrides.dropout", 0.1),
        "--drop-path": ("model_overrides.drop_path", 0.2),
        "--pool": ("model_overrides.pool", "mean"),
        "--epochs": ("epochs", 3),
        "--batch-size": ("batch_size", 32),
        "--lr": ("lr", 0.003),
        "--weight-decay": ("weight_decay", 0.01),
        "--warmup-epochs": ("warmup_epochs", 0.5),
        "--min-lr": ("min_lr", 0.0001),
        "--label-smoothing": ("label_smoothing", 0.2),
        "--grad-clip": ("grad_clip", 2.0),
        "--mixup": ("mixup", 0.4),
        "--cutmix": ("cutmix", 0.6),
        "--patience": ("patience", 4),
        "--val-fraction": ("val_fraction", 0.2),
        "--device": ("device", "cpu"),
        "--seed": ("seed", 7),
        "--out": ("out", str(out)),
        "--max-steps": ("max_steps", 9),
        "--log-every": ("log_every", 5),
    }
    switches = {  # each the other way round from its default
        "--no-aug": ("augment", False),
        "--no-amp": ("amp", False),
        "--compile": ("compile", True),
        "--overwrite": ("overwrite", True),
        "--tensorboard": ("tensorboard", True),
    }
    args = [a for flag, (_, value) in given.items() for a in (flag, str(value))]
    result = runner.invoke(app, ["train", "mnist-mini", *args, *switches, "--print-config"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)
    for flag, (key, value) in {**given, **switches}.items():
        *parents, name = key.split(".")
        assert (cfg[parents[0]] if parents else cfg)[name] == value, flag
    # and the dataset's options, for the datasets that take them
    result = runner.invoke(app, ["train", "mnist-layout", "--grid", "3", "--print-config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset_options"] == {"grid": 3}
    for cls in ("a", "b"):
        (tmp_path / "pics" / "train" / cls).mkdir(parents=True)
    args = ["train", f"folder:{tmp_path / 'pics'}", "--image-size", "20", "--channels", "3"]
    result = runner.invoke(app, [*args, "--print-config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dataset_options"] == {"image_size": 20, "channels": 3}
    assert not out.exists()


def test_print_config_refuses_what_the_run_would_refuse(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "mnist-mini", "--model", "vit-tinyy", "--print-config"])
    assert "did you mean 'vit-tiny'" in one_error_line(result)
    assert result.stdout == ""
    result = runner.invoke(app, ["train", "mnist-mini", "--device", "gpu", "--print-config"])
    assert "unknown device in --device gpu" in one_error_line(result)
    # but a GPU's config written on a machine without one is printed: it is for another machine
    result = runner.invoke(app, ["train", "mnist-mini", "--device", "cuda:1", "--print-config"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["device"] == "cuda:1"
    result = runner.invoke(app, ["train", "mnist-mini", "-o", "runs/x", "--print-config"])
    assert json.loads(result.stdout)["out"] == "runs/x"  # -o, as export, bench and eval take it


def test_print_config_refuses_dataset_options_out_of_range(tmp_path: Path) -> None:
    """A config file's empty_prob = nan printed "empty_prob": null (and 1.5 printed), --grid 5
    too: refused only when the run built the data. Refused now, naming each as it was given."""
    for value in ("nan", "inf", "1.5"):
        cfg = tmp_path / f"{value}.toml"
        cfg.write_text(f"[dataset_options]\nempty_prob = {value}\n")
        result = runner.invoke(app, ["train", "mnist-layout", "--config", str(cfg), "--print-config"])  # fmt: skip
        assert one_error_line(result) == (
            "error: dataset 'mnist-layout' option dataset_options.empty_prob must be in [0, 1),"
            f" got {value}"
        )
        assert result.stdout == ""
    result = runner.invoke(app, ["train", "mnist-layout", "--grid", "5", "--print-config"])
    assert one_error_line(result).endswith("option --grid must be 2, 3 or 4, got 5")


def test_print_config_refuses_folder_options_its_builder_refuses(tmp_path: Path) -> None:
    """train folder:PATH --channels 2 --print-config printed a config (exit 0) that the run
    refused once it read the folder ("folder dataset: channels must be one of [1, 3]"); it is
    refused now with the options, nothing read (the folder need not exist), naming the flag."""
    name = f"folder:{tmp_path / 'none'}"
    for args, message in [
        (["--channels", "2"], "option --channels must be 1 or 3, got 2"),
        (["--image-size", "0"], "option --image-size must be a positive integer, got 0"),
    ]:
        result = runner.invoke(app, ["train", name, *args, "--print-config"])
        assert one_error_line(result) == f"error: dataset '{name}' {message}"
        assert result.stdout == ""
    result = runner.invoke(app, ["train", name, "--channels", "1", "--image-size", "16", "--print-config"])  # fmt: skip
    assert json.loads(result.stdout)["dataset_options"] == {"image_size": 16, "channels": 1}


def test_a_diverged_run_prints_its_summary_with_json(tmp_path: Path) -> None:
    """--json scripts get the summary.json a diverged run leaves (status "diverged") on stdout,
    and the error line on stderr, exit code 1."""
    out = tmp_path / "nan"
    args = ["train", "mnist-mini", *TINY, "--epochs", "1"]
    result = runner.invoke(app, [*args, "--lr", "1e10", "--warmup-epochs", "0", "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "diverged" and "became" in doc["error"]
    assert doc == json.loads((out / "summary.json").read_text())
    assert result.stderr.strip().splitlines() == [f"error: {doc['error']}"]


def test_a_print_config_file_runs_on_its_own(tmp_path: Path) -> None:
    """`vitkit train --config cfg.json` with the file from --print-config said "give a DATASET",
    though the file names it."""
    cfg = runner.invoke(app, ["train", "mnist-mini", *TINY, "--max-steps", "2", "--print-config"])
    assert cfg.exit_code == 0, cfg.output
    (tmp_path / "cfg.json").write_text(cfg.stdout)
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "--config", str(tmp_path / "cfg.json"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "train.json").read_text())["config"]
    assert saved["dataset"] == "mnist-mini" and saved["max_steps"] == 2
    # another DATASET with that file: said, not silent (the file's recipe was for mnist-mini)
    other = runner.invoke(app, ["train", "mnist-grid", "--config", str(tmp_path / "cfg.json"), "--print-config"])  # fmt: skip
    assert other.exit_code == 0, other.output
    assert "was written for 'mnist-mini'; training 'mnist-grid'" in " ".join(other.stderr.split())


def test_no_download_is_taken_by_train_too(tmp_path: Path) -> None:
    """eval, export and data took --no-download and train did not ("No such option")."""
    root = tmp_path / "empty"
    args = [
        "train",
        "mnist",
        "--no-download",
        "--data-root",
        str(root),
        "--out",
        str(tmp_path / "r"),
    ]
    line = one_error_line(runner.invoke(app, args))
    assert line.endswith("(downloads are off)") and "missing train-images-idx3-ubyte.gz" in line
    assert not (tmp_path / "r").exists()
