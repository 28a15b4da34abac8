"""Training: TrainConfig, the loop, optimizer/schedule, checkpoints, callbacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitkit._lazy import lazy_exports

if TYPE_CHECKING:
    from vitkit.train.callbacks import Callback, EpochInfo, StartInfo, StepInfo
    from vitkit.train.config import TrainConfig
    from vitkit.train.loop import FitState, NonFiniteLoss, StopFlag, fit
    from vitkit.train.run import TrainResult, resolve_config, train

# imported on first use: the CLI's callbacks (vitkit.train.callbacks) need no torch
_LAZY = {
    "Callback": "vitkit.train.callbacks",
    "EpochInfo": "vitkit.train.callbacks",
    "StartInfo": "vitkit.train.callbacks",
    "StepInfo": "vitkit.train.callbacks",
    "TrainConfig": "vitkit.train.config",
    "FitState": "vitkit.train.loop",
    "NonFiniteLoss": "vitkit.train.loop",
    "StopFlag": "vitkit.train.loop",
    "fit": "vitkit.train.loop",
    "TrainResult": "vitkit.train.run",
    "resolve_config": "vitkit.train.run",
    "train": "vitkit.train.run",
}
if not TYPE_CHECKING:  # type checkers see the real imports above, and no catch-all
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

__all__ = [
    "Callback",
    "EpochInfo",
    "FitState",
    "NonFiniteLoss",
    "StartInfo",
    "StepInfo",
    "StopFlag",
    "TrainConfig",
    "TrainResult",
    "fit",
    "resolve_config",
    "train",
]
