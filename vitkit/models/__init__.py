"""The model registry and the ViT family. Importing this module registers the presets."""

from vitkit.models._registry import (
    Model,
    ModelEntry,
    ModelSpec,
    check_registered,
    create_model,
    get_entry,
    list_models,
    model_flops,
    model_label,
    model_options,
    overrides_text,
    preset_overrides,
    register_model,
    resolve_spec,
)
from vitkit.models.vit import VisionTransformer, ViTConfig, default_patch_size

__all__ = [
    "Model",
    "ModelEntry",
    "ModelSpec",
    "ViTConfig",
    "VisionTransformer",
    "check_registered",
    "create_model",
    "default_patch_size",
    "get_entry",
    "list_models",
    "model_flops",
    "model_label",
    "model_options",
    "overrides_text",
    "preset_overrides",
    "register_model",
    "resolve_spec",
]
