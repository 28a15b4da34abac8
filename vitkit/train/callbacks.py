"""What the loop reports, and the library's own listeners (metrics file, TensorBoard, curves).

The loop calls ``on_start``, ``on_step`` (every ``log_every`` steps), ``on_epoch`` and ``on_end``
on each callback; a callback implements only what it needs. The live view lives in the CLI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitkit.artifact import strict_json


@dataclass
class StepInfo:
    step: int  # optimizer steps done
    total_steps: int
    epoch: int  # 0-based
    epochs: int
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    loss: float  # mean training loss since the last report (a resume's first: the stop's too)
    lr: float
    images_per_s: float  # training throughput since the last report
    elapsed: float  # seconds since the run (or the resume) started


@dataclass
class EpochInfo:
    epoch: int  # 0-based
    epochs: int
    step: int
    train_loss: float
    val: dict[str, Any] | None  # {"acc", "loss", "per_position", "exact"} or None (no val split)
    lr: float
    images_per_s: float  # training throughput of this epoch (validation excluded)
    seconds: float  # wall time of this epoch, validation included
    best_acc: float | None
    is_best: bool
    partial: bool = False  # stopped by --max-steps mid-epoch: not a contender for best


@dataclass
class StartInfo:
    run_dir: Path | None
    config: dict[str, Any]
    model: str
    params: int
    gflops: float | None  # forward GFLOPs per image; None: the model does not count them
    train_size: int
    val_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int  # linear LR warm-up (the schedule's own figure)
    device: str
    resumed_from_step: int
    world_size: int
    extended: dict[str, Any] = field(default_factory=dict)  # option -> [old, new] on a resume
    notes: list[str] = field(default_factory=list)  # what the user should know, e.g. changed data
    # a resume of a run that had stopped early (its patience spent), which so trains nothing:
    # the epochs it had done; None otherwise
    stopped_early_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # the model's resolved config, as model.json's "config" (models.model_label names it by it)
    model_config: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Base: every hook does nothing."""

    def on_start(self, info: StartInfo) -> None: ...
    def on_step(self, info: StepInfo) -> None: ...
    def on_epoch(self, info: EpochInfo) -> None: ...
    def on_end(self, summary: dict[str, Any]) -> None: ...


class MetricsFile(Callback):
    """Append one JSON line per report to ``metrics.jsonl`` (kind: step or epoch)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, kind: str, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(strict_json({"kind": kind, **record}), allow_nan=False) + "\n")

    def on_step(self, info: StepInfo) -> None:
        self._write("step", asdict(info))

    def on_epoch(self, info: EpochInfo) -> None:
        self._write("epoch", asdict(info))


class TensorBoard(Callback):
    """TensorBoard scalars in ``RUN/tb`` (needs the tensorboard extra)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def on_step(self, info: StepInfo) -> None:
        self.writer.add_scalar("train/loss", info.loss, info.step)
        self.writer.add_scalar("train/lr", info.lr, info.step)
        self.writer.add_scalar("train/images_per_s", info.images_per_s, info.step)

    def on_epoch(self, info: EpochInfo) -> None:
        self.writer.add_scalar("epoch/train_loss", info.train_loss, info.step)
        if info.val:
            self.writer.add_scalar("epoch/val_acc", info.val["acc"], info.step)
            self.writer.add_scalar("epoch/val_loss", info.val["loss"], info.step)
        self.writer.flush()

    def on_end(self, summary: dict[str, Any]) -> None:
        self.writer.close()


def read_epochs(metrics_path: Path) -> list[dict[str, Any]]:
    """The epoch lines of a metrics.jsonl (the last one per epoch, so resumed runs read right).

    A line that is not a JSON record (cut short by a killed process, or damaged) is skipped: the
    log is a record of the run, not something to fail a finished run on."""
    by_epoch: dict[int, dict[str, Any]] = {}
    if metrics_path.is_file():
        for line in metrics_path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("kind") == "epoch" and "epoch" in rec:
                by_epoch[rec["epoch"]] = rec
    return [by_epoch[k] for k in sorted(by_epoch)]


CURVES_PNG = "curves.png"
CURVES_HINT = f"no {CURVES_PNG}: matplotlib is not installed (pip install 'vitkit[plot]')"


def plot_curves(metrics_path: Path, out: Path) -> bool:
    """Loss and accuracy per epoch as a PNG; False when matplotlib is not installed (a PNG
    already at ``out``, drawn before a resume, is removed: it no longer shows the run). No
    epoch line yet: nothing to draw, and True."""
    from vitkit._plot import figure
    from vitkit.artifact import atomic_path

    epochs = read_epochs(metrics_path)
    if not epochs:
        return True
    made = figure(1, 2, figsize=(10, 4))
    if made is None:
        out.unlink(missing_ok=True)
        return False
    fig, (ax1, ax2) = made
    x = [e["epoch"] + 1 for e in epochs]
    ax1.plot(x, [e["train_loss"] for e in epochs], label="train")
    if any(e["val"] for e in epochs):
        ax1.plot(x, [e["val"]["loss"] if e["val"] else None for e in epochs], label="val")
        ax2.plot(x, [100 * e["val"]["acc"] if e["val"] else None for e in epochs], label="val")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no validation: nothing in the accuracy plot
            ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return True
