"""vitkit: Vision Transformers on small and mid-size image datasets.

The public API: build models from the one registry, load datasets, train, evaluate, export,
benchmark. The ``vitkit`` command line is a thin layer over these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vitkit.errors import UserError, VitkitError
from vitkit.models import ModelSpec, ViTConfig, create_model, list_models, resolve_spec

__all__ = [
    "ModelSpec",
    "UserError",
    "ViTConfig",
    "VitkitError",
    "__version__",
    "create_model",
    "list_models",
    "resolve_spec",
]
