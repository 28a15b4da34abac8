"""vitkit: Vision Transformers on small and mid-size image datasets.

The public API: build models from the one registry, load datasets, train, load a trained run.
The ``vitkit`` command line is a thin layer over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vitkit.artifact import LoadedModel, load_model
from vitkit.data import list_datasets, load_dataset
from vitkit.errors import UserError, VitkitError
from vitkit.models import ModelSpec, ViTConfig, create_model, list_models, resolve_spec

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "UserError",
    "ViTConfig",
    "VitkitError",
    "__version__",
    "create_model",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "resolve_spec",
]
