"""vitkit: Vision Transformers on small and mid-size image datasets.

The public API: build models from the one registry, load datasets, train, load a trained run,
evaluate it, predict with it, look at its attention and benchmark it across runtimes.
The ``vitkit`` command line is a thin layer over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vitkit.artifact import LoadedModel, load_model
from vitkit.bench import BenchReport, benchmark
from vitkit.data import list_datasets, load_dataset
from vitkit.errors import UserError, VitkitError
from vitkit.eval import (
    AttentionMap,
    EvalReport,
    Prediction,
    attention_maps,
    evaluate,
    predict,
)
from vitkit.models import ModelSpec, ViTConfig, create_model, list_models, resolve_spec

__all__ = [
    "AttentionMap",
    "BenchReport",
    "EvalReport",
    "LoadedModel",
    "ModelSpec",
    "Prediction",
    "UserError",
    "ViTConfig",
    "VitkitError",
    "__version__",
    "attention_maps",
    "benchmark",
    "create_model",
    "evaluate",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "predict",
    "resolve_spec",
]
