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
from vitkit.errors import UserError
from vitkit.eval.metrics import correct_counts
from vitkit.train.callbacks import Callback, EpochInfo, StepInfo
from vitkit.train.config import TrainConfig


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: the run stops, keeping its last good checkpoint.
    ``summary`` is what ``train`` wrote to summary.json (status "diverged")."""

    summary: dict[str, Any] | None = None


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
    batches = len(train_loader)
    check_every_step = device.type == "cpu"  # a scalar read is free on the CPU
    smoothing = config.label_smoothing
    t_run = time.perf_counter()
    train_seconds, images = 0.0, 0
    first_step_s, first_images = 0.0, 0
    last_val: dict[str, Any] | None = None
    status = "completed"
    if config.max_steps and state.step >= config.max_steps:  # a resumed run that was done
        return FitResult(state, "max_steps", train_seconds=0.0, images=0, last_val=None)
    if state.batch == 0 and state.patience_spent(config.patience):
        # a resumed run that had stopped early: its patience is still spent
        return FitResult(state, "early_stopped", train_seconds=0.0, images=0, last_val=None)

    def step_lr() -> float:
        return float(optimizer.param_groups[0]["lr"])

    while state.epoch < config.epochs:
        epoch = state.epoch
        train_loader.set_epoch(epoch)
        model.train()
        t_epoch = time.perf_counter()
        t_report, imgs_report = t_epoch, 0
        epoch_imgs = 0
        window_loss = torch.zeros((), device=device)
        window_n = 0
        # resumed mid-epoch: the epoch's mean loss counts the batches before the stop too
        carried = float(state.epoch_loss_sum or 0.0) if state.batch else 0.0
        epoch_loss = torch.full((), carried, device=device)
        epoch_n = state.batch
        interrupted = hit_max = False
        for x, y in train_loader.iter_from(state.batch):
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                logits = model(x)
                loss = loss_fn(logits, y, smoothing)
            if check_every_step and not torch.isfinite(loss):
                raise _non_finite(float(loss.detach()), state)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            d = loss.detach()
            window_loss += d
            epoch_loss += d
            window_n += 1
            epoch_n += 1
            state.batch += 1
            state.step += 1
            n = len(x)
            if not first_images:  # one sync per call, to time the compile
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                elif device.type == "mps":
                    torch.mps.synchronize()
                first_step_s, first_images = time.perf_counter() - t_epoch, n
            imgs_report += n
            epoch_imgs += n
            hit_max = bool(config.max_steps) and state.step >= config.max_steps
            last = state.batch == batches or hit_max
            if state.step % config.log_every == 0 or last:
                mean_loss = float(window_loss) / window_n  # one sync per report
                if not torch.isfinite(torch.tensor(mean_loss)):
                    raise _non_finite(float(mean_loss), state)
                now = time.perf_counter()
                info = StepInfo(
                    step=state.step,
                    total_steps=total_steps,
                    epoch=epoch,
                    epochs=config.epochs,
                    batch=state.batch,
                    batches=batches,
                    loss=mean_loss,
                    lr=step_lr(),
                    images_per_s=imgs_report / max(now - t_report, 1e-9),
                    elapsed=now - t_run,
                )
                for cb in callbacks:
                    cb.on_step(info)
                t_report, imgs_report = time.perf_counter(), 0
                window_loss.zero_()
                window_n = 0
                if _any_rank(stop.requested, device, world_size):
                    interrupted = True
            elif world_size == 1 and stop.requested:
                interrupted = True
            if interrupted or hit_max:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_train_s = time.perf_counter() - t_epoch
        train_seconds += epoch_train_s
        images += epoch_imgs
        train_loss = float(epoch_loss) / max(epoch_n, 1)
        if interrupted:
            state.checkpoint_step = state.step
            state.epoch_loss_sum = float(epoch_loss)
            save("checkpoint", state)
            status = "interrupted"
            break
        epoch_done = state.batch >= batches
        if not epoch_done and not hit_max:
            break  # defensive: the loader ended early
        val = evaluate_loader(model, val_loader, autocast_dtype) if val_loader else None
        if val is not None and not math.isfinite(val["loss"]):
            # weights gone to inf/NaN though each training loss was finite: never saved as
            # best or as a checkpoint
            raise _non_finite(val["loss"], state, where="validation loss")
        last_val = val
        acc = val["exact"] if val and _multi(val) else (val["acc"] if val else None)
        if not epoch_done:  # --max-steps mid-epoch: validated for the summary, but not a
            # contender for best, so that a resume picks the best an uninterrupted run would
            is_best = False
            if state.best_epoch < 0:  # no best yet: these weights for now
                save("best", state)  # (the first full epoch of a resume replaces them)
        else:
            # no validation: every full epoch's weights become model.safetensors, and say so
            # (metrics.jsonl had is_best false beside summary.json's best_epoch)
            is_best = val is None or (
                acc is not None and (state.best_acc is None or acc > state.best_acc)
            )
            if is_best:
                state.best_acc, state.best_epoch, state.epochs_since_best = acc, epoch, 0
                save("best", state)
            else:
                state.epochs_since_best += 1
        if epoch_done:
            state.epoch, state.batch, state.epoch_loss_sum = epoch + 1, 0, 0.0
        else:  # --max-steps mid-epoch: an extension resumes inside this epoch
            state.epoch_loss_sum = float(epoch_loss)
        state.checkpoint_step = state.step
        save("checkpoint", state)
        info_e = EpochInfo(
            epoch=epoch,
            epochs=config.epochs,
            step=state.step,
            train_loss=train_loss,
            val=val,
            lr=step_lr(),
            images_per_s=epoch_imgs / max(epoch_train_s, 1e-9),
            seconds=time.perf_counter() - t_epoch,
            best_acc=state.best_acc,
            is_best=is_best,
            partial=not epoch_done,
        )
        for cb in callbacks:
            cb.on_epoch(info_e)
        if hit_max:
            status = "max_steps"
            break
        if state.patience_spent(config.patience):
            status = "early_stopped"
            break
    return FitResult(
        state=state,
        status=status,
        train_seconds=train_seconds,
        images=images,
        last_val=last_val,
        first_step_seconds=first_step_s,
        first_step_images=first_images,
    )


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
        f"{kept}; try a lower --lr or --grad-clip"
    )
