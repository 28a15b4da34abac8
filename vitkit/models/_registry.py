"""The one model registry: name -> (config factory, builder). Every command builds models here.

A preset is a function that takes keyword overrides and returns a resolved, validated config;
``ModelSpec`` (name + config) is everything needed to rebuild the model and is what a run
directory stores next to the weights.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from vitkit.errors import (
    ConfigError,
    NotFoundError,
    UserError,
    check_name,
    check_str,
    suggest,
    unknown_name,
)


class Model(nn.Module):
    """What every registered builder returns: an image classifier that knows its ``spec`` (set
    by ``ModelSpec.build``), its parameter count and its forward FLOPs per image."""

    spec: ModelSpec

    def num_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops(self) -> int:
        """Forward FLOPs per image (multiply-adds count 2)."""
        raise NotImplementedError


def model_flops(model: nn.Module) -> int | None:
    """Forward FLOPs per image, or None for a module that does not count them."""
    try:
        return int(model.flops()) if isinstance(model, Model) else None
    except NotImplementedError:
        return None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    make_config: Callable[..., Any]  # keyword overrides -> resolved config dataclass
    builder: Callable[[Any], Model]  # config -> module
    description: str = ""


_MODELS: dict[str, ModelEntry] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register_model(
    name: str, *, builder: Callable[[Any], Model], description: str = ""
) -> Callable[[F], F]:
    """Decorator: register a preset (``**overrides -> config``) under ``name``; refuses duplicates."""

    def deco(fn: F) -> F:
        if name in _MODELS:
            raise ValueError(f"model '{name}' is already registered")
        doc = description or next(iter((fn.__doc__ or "").strip().splitlines()), "")
        _MODELS[name] = ModelEntry(name, fn, builder, doc)
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[str]:
    """Return the registered model names (in registration order), those containing ``pattern``
    when given. Raises ``UserError`` for a ``pattern`` that is not a string."""
    if pattern is not None:
        check_str("pattern", pattern)  # 3 in "vit-tiny" was the in operator's TypeError
    return [n for n in _MODELS if pattern is None or pattern in n]


def get_entry(name: str) -> ModelEntry:
    check_name("model", name)
    try:
        return _MODELS[name]
    except KeyError:
        raise unknown_name("model", name, _MODELS) from None


def check_registered(name: str, where: object) -> None:
    """Refuse a model ``where`` names (a run's model.json or train.json) that this process has
    not registered: a user's own model is registered by the module that defines it, which the
    CLI never imports."""
    if name not in _MODELS:
        raise NotFoundError(
            f"{where} names the model '{name}', which is not registered in this process: import "
            "the module that registers it (vitkit.models.register_model), then load or resume "
            f"the run from Python{suggest(name, _MODELS)}"
        )


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: the registry name and the resolved config."""

    name: str
    config: Any  # a config dataclass (ViTConfig for the ViT family)

    def build(self) -> Model:
        model = get_entry(self.name).builder(self.config)
        model.spec = self
        return model

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.config)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if "model" not in d or "config" not in d:
            raise ConfigError("model spec needs the keys 'model' and 'config'")
        return resolve_spec(d["model"], **d["config"])


def resolve_spec(name: str, **overrides: Any) -> ModelSpec:
    """Validate ``overrides`` against the preset ``name`` and return the resolved spec.

    ``None`` values are ignored (they mean "not given"), so a CLI can pass every option through.
    Returns a ``ModelSpec`` (``.build()`` makes the model); no weights are allocated. Raises
    ``NotFoundError`` for an unknown name (naming the closest) and ``ConfigError`` for options
    that are unknown, of the wrong type or that cannot go together (patch vs image size, ...).
    """
    entry = get_entry(name)
    given = {k: v for k, v in overrides.items() if v is not None}
    takes = model_options(name)
    if takes is not None:  # a preset with named options (a user's CNN, say): say which it takes
        unknown = sorted(set(given) - takes)
        if unknown:
            raise ConfigError(
                f"model '{name}' takes no option '{unknown[0]}' (it takes: "
                f"{', '.join(sorted(takes))})"
            )
    config = entry.make_config(**given)
    return ModelSpec(name, config)


# the config fields the data decides (a run's image size, channels, classes), not the model
DATA_FIELDS = ("image_size", "in_chans", "num_classes", "num_outputs")


def preset_overrides(name: str, config: Any) -> dict[str, Any]:
    """What a model changes of its preset ``name`` (``vit-tiny`` built with ``embed_dim=96``:
    ``{"embed_dim": 96}``): the fields of ``config`` (a config dataclass, or its dict as
    model.json holds it) that differ from the preset's for the same data (``DATA_FIELDS``,
    which the dataset decides), in field order. Fields a config lists in ``TRAIN_ONLY``
    (ViTConfig's dropout rates) are left out: the network is the same. Empty when nothing
    differs, and for a preset not registered here or not rebuildable at these sizes."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict) or name not in _MODELS:
        return {}
    takes = model_options(name)
    data = {k: config[k] for k in DATA_FIELDS if k in config and (takes is None or k in takes)}
    try:
        preset = resolve_spec(name, **data).config
    except UserError:  # e.g. an image size no default patch divides: nothing to compare with
        return {}
    if not dataclasses.is_dataclass(preset) or isinstance(preset, type):
        return {}
    base = dataclasses.asdict(preset)
    skip = {*DATA_FIELDS, *getattr(preset, "TRAIN_ONLY", ())}
    return {k: v for k, v in config.items() if k in base and k not in skip and base[k] != v}


def overrides_text(name: str, config: Any) -> str:
    """``preset_overrides`` in words: ``embed_dim 96, depth 4``; empty when there are none."""
    changed = preset_overrides(name, config)
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changed.items()
    )


def model_label(name: str, config: Any) -> str:
    """The model as a header names it: the preset, and what it changes of it
    (``vit-tiny (embed_dim 96, depth 4)``), so two models of one preset read apart; the name
    alone when nothing is changed."""
    text = overrides_text(name, config)
    return f"{name} ({text})" if text else name


def model_options(name: str) -> frozenset[str] | None:
    """The option names the preset ``name`` takes; None when it takes any name (``**overrides``,
    as the ViT presets do: they check the names against ``ViTConfig`` themselves)."""
    params = inspect.signature(get_entry(name).make_config).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def create_model(name: str, **overrides: Any) -> Model:
    """Build the model ``name`` with ``overrides`` (image_size, num_classes, embed_dim, ...).

    Returns a freshly initialised ``nn.Module`` (in training mode) that carries
    ``.spec`` (a ``ModelSpec``) so it can be saved and rebuilt. Raises as ``resolve_spec`` does:
    ``NotFoundError`` for an unknown name, ``ConfigError`` for bad overrides.
    """
    return resolve_spec(name, **overrides).build()
