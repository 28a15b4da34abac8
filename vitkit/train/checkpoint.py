"""Atomic save / resume of everything a run needs to continue exactly where it stopped.

``checkpoint/last.safetensors`` holds the weights, ``checkpoint/state.pt`` the optimizer,
scheduler, grad-scaler and RNG states plus the counters. Both carry the step they belong to and
are checked against each other on load. ``state.pt`` holds only tensors and plain containers
and is read with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from vitkit.artifact import atomic_write, load_weights, save_weights, unwrap
from vitkit.errors import UserError, first_line, state_dict_mismatch

CHECKPOINT_DIR = "checkpoint"
WEIGHTS = "last.safetensors"
STATE = "state.pt"


def _complete(d: Path) -> bool:
    return (d / WEIGHTS).is_file() and (d / STATE).is_file()


def checkpoint_dir(run_dir: Path) -> Path:
    """Where the run's checkpoint is: ``checkpoint/``, or, when a save was cut off while it
    swapped folders (a crash, a second Ctrl-C), the complete ``checkpoint.new/`` it was writing
    (newer) or the ``checkpoint.old/`` it was replacing."""
    final, new, old = _folders(run_dir)
    return next((d for d in (final, new, old) if _complete(d)), final)


def _folders(run_dir: Path) -> tuple[Path, Path, Path]:
    """checkpoint/, the checkpoint.new/ a save writes, the checkpoint.old/ it replaces."""
    final = run_dir / CHECKPOINT_DIR
    return final, final.with_name(final.name + ".new"), final.with_name(final.name + ".old")


def checkpoint_exists(run_dir: Path) -> bool:
    return _complete(checkpoint_dir(run_dir))


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    counters: dict[str, Any],
    device: torch.device,
) -> None:
    """Write the weights and the state (``counters['step']`` ties them) as one unit: both go
    to ``checkpoint.new/``, which then replaces ``checkpoint/``. Cut off at any point, the run
    keeps a complete pair, the new one or the previous one (``checkpoint_dir`` finds it)."""
    final, new, old = _folders(run_dir)
    step = int(counters["step"])
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(device),
        "counters": counters,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    _clear(new)  # a save cut off earlier
    new.mkdir(parents=True)
    save_weights(new / WEIGHTS, model, metadata={"step": str(step)})
    with atomic_write(new / STATE) as f:  # last: a complete folder has both files
        f.write(buf.getvalue())
    if final.exists():
        _clear(old)
        os.replace(final, old)
    os.replace(new, final)
    _clear(old)


def _clear(path: Path) -> None:
    """Remove a folder; one that will not go (a file held open on NFS or Windows) is moved
    out of the way instead, so the next save never trips over it."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(f"{path.name}-stale-{os.getpid()}-{time.time_ns()}"))


def load_checkpoint(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    device: torch.device,
) -> dict[str, Any]:
    """Restore everything saved by ``save_checkpoint``; returns the counters."""
    d = checkpoint_dir(run_dir)
    if not checkpoint_exists(run_dir):
        raise UserError(f"no checkpoint to resume in {run_dir} (expected {d}/{WEIGHTS}, {STATE})")
    try:
        # on the CPU: RNG states must stay CPU ByteTensors; the optimizer moves its own state
        state = torch.load(d / STATE, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        why = first_line(e)
        if not zipfile.is_zipfile(d / STATE):  # torch.save writes a zip archive
            why = "not a PyTorch checkpoint (no torch.save archive)"
        elif "weights only load failed" in why.lower():  # not torch's advice to unpickle it
            why = "it holds objects other than tensors and plain data (never unpickled)"
        raise UserError(f"corrupt checkpoint {d / STATE}: {why}") from None
    try:
        with safe_open(str(d / WEIGHTS), "pt") as f:
            weights_step = (f.metadata() or {}).get("step")
        step = state["counters"]["step"]
    except Exception as e:  # a truncated safetensors header, a state without counters
        raise UserError(f"corrupt checkpoint in {d}: {first_line(e)}") from None
    _check_counters(state, d / STATE)
    if weights_step is not None and str(weights_step) != str(step):
        raise UserError(
            f"checkpoint in {d} is inconsistent (weights at step {weights_step}, "
            f"state at step {step})"
        )
    try:
        unwrap(model).load_state_dict(load_weights(d / WEIGHTS))
    except RuntimeError as e:  # another model's checkpoint copied in
        raise UserError(
            f"checkpoint {d / WEIGHTS} does not fit this run's model: {state_dict_mismatch(e)}"
        ) from None
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
    except (KeyError, ValueError) as e:  # another run's optimizer (parameter groups, sizes)
        raise UserError(f"checkpoint {d / STATE} does not fit this run: {first_line(e)}") from None
    try:
        set_rng_state(rng, device)
    except (TypeError, RuntimeError, KeyError) as e:
        raise UserError(f"corrupt checkpoint {d / STATE}: its RNG state: {first_line(e)}") from None
    return dict(state["counters"])


COUNTERS = (
    "epoch",
    "batch",
    "step",
    "best_epoch",
    "epochs_since_best",
    "checkpoint_step",
    "window_batches",
)
# a number, or null (checkpoints before them: absent)
FLOATS = ("best_acc", "epoch_loss_sum", "window_loss_sum")


def _check_counters(state: Any, path: Path) -> None:
    """The counters a resume continues from (``FitState``): known keys, integers, a number or
    null for ``best_acc``."""
    counters = state.get("counters") if isinstance(state, dict) else None
    ok = isinstance(counters, dict) and not set(counters) - {*COUNTERS, *FLOATS}
    if ok:
        assert isinstance(counters, dict)
        ints = [counters.get(k, 0) for k in COUNTERS]
        floats = [counters.get(k) for k in FLOATS]
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in ints) and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in floats
        )
    if not ok:
        raise UserError(f"corrupt checkpoint {path}: its step counters are damaged")
