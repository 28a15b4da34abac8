"""fit(): the training loop and nothing else. Setup lives in ``vitkit.train.run``.

Per step: forward under autocast, loss (summed over output positions for multi-output heads),
backward, gradient clipping, AdamW step, schedule step. Per epoch: validation, best weights,
checkpoint, early stopping. Nothing here syncs the GPU per step: losses accumulate on the device
and are read every ``log_every`` steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitkit.data.loader import DeviceLoader
from vitkit.errors import UserError, setting
from vitkit.eval.metrics import correct_counts
from vitkit.train.callbacks import Callback, EpochInfo, StepInfo
from vitkit.train.config import TrainConfig


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: the run stops, keeping its last good checkpoint.
    ``summary`` is what ``train`` wrote to summary.json (status "diverged"); ``notes``, as
    ``TrainResult.notes``: the eval reports that a resume's new weights made stale."""

    summary: dict[str, Any] | None = None
    notes: Sequence[str] = ()


class StopFlag:
    """Set by the SIGINT handler (or a test) to end the run cleanly after the current step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None  # the signal that asked, if one did (SIGINT, SIGTERM)

    def request(self, signum: int | None = None) -> None:
        self.requested = True
        if signum is not None and self.signal is None:
            self.signal = signum


@dataclass
class FitState:
    """The counters a checkpoint carries; a resumed run starts from them."""

    epoch: int = 0  # current epoch, 0-based
    batch: int = 0  # batches already done in the current epoch
    step: int = 0  # optimizer steps done
    best_acc: float | None = None  # best validation accuracy so far
    best_epoch: int = -1
    epochs_since_best: int = 0
    checkpoint_step: int = 0  # step of the last checkpoint written
    epoch_loss_sum: float = 0.0  # the current epoch's batch losses so far (a mid-epoch stop)
    # the batch losses since the last step report, and their count (a stop between reports):
    # a resume's first step line averages the same steps as an unbroken run's
    window_loss_sum: float = 0.0
    window_batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def patience_spent(self, patience: int) -> bool:
        """``patience`` epochs (0: no early stopping) have passed without a better validation."""
        return bool(patience) and self.epochs_since_best >= patience


@dataclass
class FitResult:
    state: FitState
    status: str  # completed | early_stopped | interrupted | max_steps
    train_seconds: float  # time in training steps (validation excluded)
    images: int  # training images processed in this call
    last_val: dict[str, Any] | None
    # the call's first step (torch.compile compiles in it; CUDA warms up): its time and images
    first_step_seconds: float = 0.0
    first_step_images: int = 0

    @property
    def images_per_s(self) -> float:
        return self.images / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def images_per_s_after_first_step(self) -> float | None:
        """Throughput without the first step; None when there was no step after it."""
        images = self.images - self.first_step_images
        seconds = self.train_seconds - self.first_step_seconds
        return images / seconds if images > 0 and seconds > 0 else None


def loss_fn(logits: Tensor, y: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross-entropy; multi-output logits (B, K, C) sum the per-position means over K."""
    if logits.ndim == 3:
        k = logits.shape[1]
        return (
            F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), label_smoothing=smoothing)
            * k
        )
    return F.cross_entropy(logits.float(), y, label_smoothing=smoothing)


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader: DeviceLoader, autocast_dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Accuracy (mean over positions), exact match, per-position accuracy and loss."""
    was_training = model.training
    model.eval()
    dev = loader.device
    per_pos = torch.zeros((), device=dev)
    exact = torch.zeros((), dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), device=dev)
    n = 0
    for x, y in loader:
        with torch.autocast(
            dev.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            logits = model(x)
        loss_sum += loss_fn(logits, y) * len(y)
        hits, ex = correct_counts(logits, y)
        per_pos = per_pos + hits
        exact += ex
        n += len(y)
    model.train(was_training)
    # counts / n in float64 (Python's), so 29 of 100 reads 0.29, not float32's 0.28999999165
    per_position = [c / max(n, 1) for c in per_pos.flatten().tolist()]
    return {
        "acc": sum(per_position) / len(per_position),
        "exact": float(exact) / max(n, 1),
        "per_position": per_position,
        "loss": float(loss_sum) / max(n, 1),
        "n": n,
    }


def _any_rank(flag: bool, device: torch.device, world_size: int) -> bool:
    if world_size == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


@dataclass(frozen=True)
class _Parts:
    """What every optimizer step uses, fixed for the call."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    autocast_dtype: torch.dtype | None  # None: no autocast
    device: torch.device  # the training device
    smoothing: float  # label smoothing
    grad_clip: float  # max gradient norm (0: off)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass
class _Run:
    """One fit() call: what every epoch reports to, and the totals it carries across epochs."""

    config: TrainConfig
    callbacks: Sequence[Callback]
    save: Callable[[str, FitState], None]
    total_steps: int
    batches: int  # per epoch
    t_start: float  # perf_counter at the call's start
    train_seconds: float = 0.0  # in training steps, validation excluded
    images: int = 0
    first_step_seconds: float = 0.0
    first_step_images: int = 0
    last_val: dict[str, Any] | None = None

    def time_first_step(self, device: torch.device, t_epoch: float, n: int) -> None:
        """One sync per call, to time the compile."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()
        self.first_step_seconds, self.first_step_images = time.perf_counter() - t_epoch, n

    def result(self, state: FitState, status: str) -> FitResult:
        return FitResult(
            state=state,
            status=status,
            train_seconds=self.train_seconds,
            images=self.images,
            last_val=self.last_val,
            first_step_seconds=self.first_step_seconds,
            first_step_images=self.first_step_images,
        )


@dataclass
class _Epoch:
    """One epoch's running totals. The losses stay on the device: nothing here syncs."""

    index: int  # 0-based
    t_start: float  # perf_counter at the epoch's start
    loss: Tensor  # sum of the epoch's batch losses (a resumed epoch's earlier ones included)
    batches: int  # batches in ``loss``
    window_loss: Tensor  # sum of the batch losses since the last step report
    window_n: int = 0  # batches in ``window_loss``
    t_report: float = 0.0  # perf_counter at the last step report
    report_images: int = 0  # images since the last step report
    images: int = 0  # images trained in this epoch by this call (none from before a resume)
    train_seconds: float = 0.0  # set at the epoch's end, validation excluded
    interrupted: bool = False
    hit_max: bool = False  # --max-steps reached

    @classmethod
    def begin(cls, state: FitState, device: torch.device) -> _Epoch:
        t = time.perf_counter()
        # resumed mid-epoch: the epoch's mean loss, and the first step report's, count the
        # batches before the stop too
        carried = float(state.epoch_loss_sum or 0.0) if state.batch else 0.0
        loss = torch.full((), carried, device=device)
        n = state.window_batches if state.batch else 0
        window = torch.full((), float(state.window_loss_sum or 0.0) if n else 0.0, device=device)
        return cls(state.epoch, t, loss, state.batch, window, n, t_report=t)

    def add(self, loss: Tensor, n: int) -> None:
        d = loss.detach()
        self.window_loss += d
        self.loss += d
        self.window_n += 1
        self.batches += 1
        self.report_images += n
        self.images += n


def fit(
    model: nn.Module,
    *,
    config: TrainConfig,
    train_loader: DeviceLoader,
    val_loader: DeviceLoader | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    state: FitState,
    total_steps: int,
    autocast_dtype: torch.dtype | None = None,
    callbacks: Sequence[Callback] = (),
    stop: StopFlag | None = None,
    save: Callable[[str, FitState], None] = lambda kind, state: None,
    world_size: int = 1,
) -> FitResult:
    """Train until the epochs (or ``max_steps``) are done, patience runs out, or ``stop`` is set.

    ``save("best", state)`` is called when validation improves and ``save("checkpoint", state)``
    after every epoch and on interruption; the caller decides where files go (rank 0 only).
    """
    device = train_loader.device
    stop = stop or StopFlag()
    check_every_step = device.type == "cpu"  # a scalar read is free on the CPU
    run = _Run(config, callbacks, save, total_steps, len(train_loader), time.perf_counter())
    parts = _Parts(
        model,
        optimizer,
        scheduler,
        scaler,
        autocast_dtype,
        device,
        config.label_smoothing,
        config.grad_clip,
    )
    if config.max_steps and state.step >= config.max_steps:  # a resumed run that was done
        return FitResult(state, "max_steps", train_seconds=0.0, images=0, last_val=None)
    if state.batch == 0 and state.patience_spent(config.patience):
        # a resumed run that had stopped early: its patience is still spent
        return FitResult(state, "early_stopped", train_seconds=0.0, images=0, last_val=None)
    status = "completed"
    while state.epoch < config.epochs:
        train_loader.set_epoch(state.epoch)
        model.train()
        ep = _Epoch.begin(state, device)
        for x, y in train_loader.iter_from(state.batch):
            loss = _optimizer_step(parts, x, y, state, check_every_step)
            ep.add(loss, len(x))
            state.batch += 1
            state.step += 1
            if not run.first_step_images:
                run.time_first_step(device, ep.t_start, len(x))
            ep.hit_max = bool(config.max_steps) and state.step >= config.max_steps
            if state.step % config.log_every == 0 or state.batch == run.batches or ep.hit_max:
                _report_steps(run, ep, state, parts.lr())  # one sync per report
                ep.interrupted = _any_rank(stop.requested, device, world_size)
            else:
                ep.interrupted = world_size == 1 and stop.requested
            if ep.interrupted or ep.hit_max:
                break
        ended = _end_epoch(parts, run, ep, state, val_loader)
        if ended is not None:
            status = ended
            break
    return run.result(state, status)


def _optimizer_step(p: _Parts, x: Tensor, y: Tensor, state: FitState, check_finite: bool) -> Tensor:
    """Forward under autocast, backward (scaled), clip, optimizer and schedule step; the loss.

    ``check_finite`` reads the loss (a sync) to stop before a NaN reaches the weights."""
    with torch.autocast(
        p.device.type,
        dtype=p.autocast_dtype or torch.float32,
        enabled=p.autocast_dtype is not None,
    ):
        logits = p.model(x)
        loss = loss_fn(logits, y, p.smoothing)
    if check_finite and not torch.isfinite(loss):
        raise _non_finite(float(loss.detach()), state)
    p.optimizer.zero_grad(set_to_none=True)
    if p.scaler is not None:
        p.scaler.scale(loss).backward()
        p.scaler.unscale_(p.optimizer)
    else:
        loss.backward()
    if p.grad_clip > 0:
        nn.utils.clip_grad_norm_(p.model.parameters(), p.grad_clip)
    if p.scaler is not None:
        p.scaler.step(p.optimizer)
        p.scaler.update()
    else:
        p.optimizer.step()
    p.scheduler.step()
    return loss


def _report_steps(run: _Run, ep: _Epoch, state: FitState, lr: float) -> None:
    """The mean loss since the last report (read here: a sync) as a StepInfo to the callbacks."""
    mean_loss = float(ep.window_loss) / ep.window_n
    if not torch.isfinite(torch.tensor(mean_loss)):
        raise _non_finite(float(mean_loss), state)
    now = time.perf_counter()
    info = StepInfo(
        step=state.step,
        total_steps=run.total_steps,
        epoch=ep.index,
        epochs=run.config.epochs,
        batch=state.batch,
        batches=run.batches,
        loss=mean_loss,
        lr=lr,
        images_per_s=ep.report_images / max(now - ep.t_report, 1e-9),
        elapsed=now - run.t_start,
    )
    for cb in run.callbacks:
        cb.on_step(info)
    ep.t_report, ep.report_images = time.perf_counter(), 0
    ep.window_loss.zero_()
    ep.window_n = 0


def _end_epoch(
    p: _Parts, run: _Run, ep: _Epoch, state: FitState, val_loader: DeviceLoader | None
) -> str | None:
    """After an epoch's batches (or a stop inside it): validation, best weights, checkpoint and
    the EpochInfo. Returns the status that ends the run, or None to go on."""
    if p.device.type == "cuda":
        torch.cuda.synchronize(p.device)
    ep.train_seconds = time.perf_counter() - ep.t_start
    run.train_seconds += ep.train_seconds
    run.images += ep.images
    train_loss = float(ep.loss) / max(ep.batches, 1)
    if ep.interrupted:
        state.checkpoint_step = state.step
        state.epoch_loss_sum = float(ep.loss)
        state.window_loss_sum, state.window_batches = float(ep.window_loss), ep.window_n
        run.save("checkpoint", state)
        return "interrupted"
    epoch_done = state.batch >= run.batches
    if not epoch_done and not ep.hit_max:
        return "completed"  # defensive: the loader ended early
    val = evaluate_loader(p.model, val_loader, p.autocast_dtype) if val_loader else None
    if val is not None and not math.isfinite(val["loss"]):
        # weights gone to inf/NaN though each training loss was finite: never saved as
        # best or as a checkpoint
        raise _non_finite(val["loss"], state, where="validation loss")
    run.last_val = val
    is_best = _update_best(state, val, ep.index, epoch_done, run.save)
    state.window_loss_sum, state.window_batches = 0.0, 0  # every report made
    if epoch_done:
        state.epoch, state.batch, state.epoch_loss_sum = ep.index + 1, 0, 0.0
    else:  # --max-steps mid-epoch: an extension resumes inside this epoch
        state.epoch_loss_sum = float(ep.loss)
    state.checkpoint_step = state.step
    run.save("checkpoint", state)
    info = EpochInfo(
        epoch=ep.index,
        epochs=run.config.epochs,
        step=state.step,
        train_loss=train_loss,
        val=val,
        lr=p.lr(),
        images_per_s=ep.images / max(ep.train_seconds, 1e-9),
        seconds=time.perf_counter() - ep.t_start,
        best_acc=state.best_acc,
        is_best=is_best,
        partial=not epoch_done,
    )
    for cb in run.callbacks:
        cb.on_epoch(info)
    if ep.hit_max:
        return "max_steps"
    if state.patience_spent(run.config.patience):
        return "early_stopped"
    return None


def _update_best(
    state: FitState,
    val: dict[str, Any] | None,
    epoch: int,
    epoch_done: bool,
    save: Callable[[str, FitState], None],
) -> bool:
    """Best and patience bookkeeping for a validated epoch (``save("best")`` when it is best);
    whether it is the best."""
    acc = val["exact"] if val and _multi(val) else (val["acc"] if val else None)
    if not epoch_done:  # --max-steps mid-epoch: validated for the summary, but not a
        # contender for best, so that a resume picks the best an uninterrupted run would
        if state.best_epoch < 0:  # no best yet: these weights for now
            save("best", state)  # (the first full epoch of a resume replaces them)
        return False
    # no validation: every full epoch's weights become model.safetensors, and say so
    # (metrics.jsonl had is_best false beside summary.json's best_epoch)
    is_best = val is None or (acc is not None and (state.best_acc is None or acc > state.best_acc))
    if is_best:
        state.best_acc, state.best_epoch, state.epochs_since_best = acc, epoch, 0
        save("best", state)
    else:
        state.epochs_since_best += 1
    return is_best


def _multi(val: dict[str, Any]) -> bool:
    return len(val["per_position"]) > 1


def _non_finite(value: float, state: FitState, where: str = "loss") -> NonFiniteLoss:
    kept = (
        f"stopped and kept the last good checkpoint (step {state.checkpoint_step}) and the best "
        "weights"
        if state.checkpoint_step
        else "stopped before the first checkpoint, so nothing was kept"
    )
    return NonFiniteLoss(
        f"{where} became {value} "
        + (f"at step {state.step + 1}" if where == "loss" else f"after step {state.step}")
        + f" (epoch {state.epoch + 1}); "
        f"{kept}; try a lower {setting('lr')} or {setting('grad_clip')}"
    )
