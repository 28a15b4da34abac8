"""vitkit: Vision Transformers on small and mid-size image datasets.

The public API: build models from the one registry, load datasets, configure a training run
(``vitkit.train.train`` runs it), load a trained run, evaluate it, predict with it, look at its
attention, export it to ONNX and benchmark it across runtimes.
The ``vitkit`` command line is a thin layer over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from vitkit._lazy import lazy_exports

if TYPE_CHECKING:
    from vitkit.artifact import LoadedModel, load_model
    from vitkit.bench import BenchReport, benchmark
    from vitkit.data import list_datasets, load_dataset
    from vitkit.errors import UserError, VitkitError
    from vitkit.eval.attention import AttentionMap, attention_maps
    from vitkit.eval.evaluate import EvalReport, evaluate
    from vitkit.eval.predict import Prediction, predict
    from vitkit.export import ExportReport, export_onnx
    from vitkit.models import ModelSpec, ViTConfig, create_model, list_models, resolve_spec
    from vitkit.train import TrainConfig, TrainResult, resolve_config

# the public API, imported on first use: `vitkit --help` starts without importing torch
_LAZY = {
    "LoadedModel": "vitkit.artifact",
    "load_model": "vitkit.artifact",
    "BenchReport": "vitkit.bench",
    "benchmark": "vitkit.bench",
    "list_datasets": "vitkit.data",
    "load_dataset": "vitkit.data",
    "UserError": "vitkit.errors",
    "VitkitError": "vitkit.errors",
    "AttentionMap": "vitkit.eval",
    "EvalReport": "vitkit.eval",
    "Prediction": "vitkit.eval",
    "attention_maps": "vitkit.eval",
    "evaluate": "vitkit.eval",
    "predict": "vitkit.eval",
    "ExportReport": "vitkit.export",
    "export_onnx": "vitkit.export",
    "ModelSpec": "vitkit.models",
    "ViTConfig": "vitkit.models",
    "create_model": "vitkit.models",
    "list_models": "vitkit.models",
    "resolve_spec": "vitkit.models",
    "TrainConfig": "vitkit.train",
    "TrainResult": "vitkit.train",
    "resolve_config": "vitkit.train",
    # train() itself is vitkit.train.train: the name vitkit.train is the subpackage
}


if not TYPE_CHECKING:  # type checkers see the real imports above, and no catch-all
    __getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)

__all__ = [
    "AttentionMap",
    "BenchReport",
    "EvalReport",
    "ExportReport",
    "LoadedModel",
    "ModelSpec",
    "Prediction",
    "TrainConfig",
    "TrainResult",
    "UserError",
    "ViTConfig",
    "VitkitError",
    "__version__",
    "attention_maps",
    "benchmark",
    "create_model",
    "evaluate",
    "export_onnx",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "predict",
    "resolve_config",
    "resolve_spec",
]
