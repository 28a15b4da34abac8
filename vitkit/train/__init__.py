"""Training: TrainConfig, the loop, optimizer/schedule, checkpoints, callbacks."""

from vitkit.train.config import TrainConfig
from vitkit.train.loop import FitState, NonFiniteLoss, StopFlag, fit
from vitkit.train.run import TrainResult, resolve_config, train

__all__ = [
    "FitState",
    "NonFiniteLoss",
    "StopFlag",
    "TrainConfig",
    "TrainResult",
    "fit",
    "resolve_config",
    "train",
]
