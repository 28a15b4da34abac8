"""TrainConfig: every knob of a training run, with its unit. JSON in, JSON out, losslessly.

Precedence when the CLI builds one: the dataset's recipe < ``--config FILE`` < command-line
options. ``None`` on a field means "take it from the recipe".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitkit.errors import (
    ConfigError,
    UserError,
    brief,
    first_line,
    is_seed,
    numeric_text_hint,
    plain_number,
    setting,
    suggest,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# what a recipe may not set: where the run goes and how it is driven
_NOT_IN_RECIPES = {"dataset", "out", "resume", "overwrite", "config_file"}


@dataclass
class TrainConfig:
    """One training run. Units in the comments; every field survives a JSON round trip."""

    dataset: str = "mnist-mini"  # catalog name or folder:PATH
    dataset_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"image_size": 64}
    model: str = "vit-tiny"  # registry name
    model_overrides: dict[str, Any] = field(default_factory=dict)  # embed_dim, depth, ...
    epochs: int = 30  # passes over the training split
    batch_size: int = 128  # images per optimizer step (per device under DDP)
    lr: float = 1e-3  # peak AdamW learning rate, reached after warm-up
    min_lr: float = 1e-5  # learning rate at the end of the cosine decay
    weight_decay: float = 0.05  # AdamW decoupled decay; none on norms, biases, embeddings
    warmup_epochs: float = 2.0  # linear LR warm-up, in epochs (fractions allowed)
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    augment: bool = True  # the dataset's augmentation family (crop/flip or affine); False = none
    mixup: float = 0.0  # mixup Beta alpha (0 = off)
    cutmix: float = 0.0  # cutmix Beta alpha (0 = off)
    amp: bool = True  # bf16 autocast on CUDA (fp16 + GradScaler where bf16 is absent); no-op on CPU
    compile: bool = False  # torch.compile the model (slower start, faster steps on GPU)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    seed: int = 0  # init, data order, augmentation, dropout
    val_fraction: float = 0.1  # share of train held out for validation when there is no val split
    patience: int = 0  # stop after this many epochs without a better val accuracy (0 = off)
    eval_batch_size: int = 512  # images per batch in validation and test
    log_every: int = 50  # steps between metrics.jsonl step lines and live-view updates
    max_steps: int = 0  # stop after this many optimizer steps (0 = all epochs); for smoke tests
    tensorboard: bool = False  # write TensorBoard events to RUN/tb (needs the tensorboard extra)
    out: str | None = None  # run dir (default runs/<dataset>-<model>, -2, -3... if taken)
    overwrite: bool = False  # replace an existing run directory

    def validate(self) -> None:
        """Check every option, and make numpy numbers and paths plain ints, floats, bools and
        strs in place (as ``from_dict`` does): train.json is JSON."""

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        for f in dataclasses.fields(self):  # nan passes every comparison below; inf overflows
            # TrainConfig(epochs="3") from Python: no TypeError; epochs=np.int64(3): an int
            v = _typed(f.name, getattr(self, f.name), str(f.type))
            setattr(self, f.name, v)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name.replace('_', ' ')} must be a finite number, got {v}")
        # dataset_options={"seed": np.int64(1)}: load_dataset reads it as 1, train.json must too
        self.dataset_options = {k: plain_number(v) for k, v in self.dataset_options.items()}
        check(is_seed(self.seed), f"seed must be in [-2**63, 2**64), got {self.seed}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        check(
            self.eval_batch_size >= 1,
            f"eval batch size must be >= 1, got {self.eval_batch_size}",
        )
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.min_lr <= self.lr, f"min-lr must be in [0, lr], got {self.min_lr}")
        check(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        check(self.warmup_epochs >= 0, f"warmup epochs must be >= 0, got {self.warmup_epochs}")
        check(0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)")
        check(self.grad_clip >= 0, f"grad clip must be >= 0, got {self.grad_clip}")
        check(self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix alphas must be >= 0")
        check(
            0 <= self.val_fraction < 1, f"val fraction must be in [0, 1), got {self.val_fraction}"
        )
        check(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        check(self.log_every >= 1, f"log every must be >= 1, got {self.log_every}")
        check(self.max_steps >= 0, f"max steps must be >= 0, got {self.max_steps}")
        self.model_overrides = _model_overrides(self.model_overrides, self.model)  # as a file's

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, Mapping):  # from_dict(5): int has no .items
            raise ConfigError(f"a training config is a mapping of options, got {brief(d)}")
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        out = {}
        for key, value in d.items():
            if key not in types:
                raise ConfigError(f"unknown training option '{key}'{suggest(key, types)}")
            out[key] = _typed(key, value, types[key])
        if "model_overrides" in out:
            model = out.get("model", cls.model)
            out["model_overrides"] = _model_overrides(out["model_overrides"], model)
        return cls(**out)

    def merged(self, **updates: Any) -> TrainConfig:
        """A copy with ``updates`` applied; ``None`` values are ignored; dicts are merged."""
        d = self.to_dict()
        for k, v in updates.items():
            if v is None:
                continue
            if k not in d:
                raise ConfigError(f"unknown training option '{k}'{suggest(k, d)}")
            d[k] = {**d[k], **v} if isinstance(d[k], dict) and isinstance(v, dict) else v
        return TrainConfig.from_dict(d)


FROM_DATA = ("image_size", "in_chans", "num_classes", "num_outputs")  # the dataset sets these


def _model_overrides(overrides: dict[str, Any], model: str) -> dict[str, Any]:
    """A config file's ``model_overrides`` checked as the top level is: names (``-`` or ``_``),
    types against ViTConfig's fields for a ViT (another family's preset checks its own); the
    sizes the dataset decides are refused (they crashed the run with a traceback: "got
    multiple values for keyword argument 'num_classes'")."""
    from vitkit.errors import NotFoundError
    from vitkit.models import get_entry
    from vitkit.models.vit import VisionTransformer, ViTConfig

    vit = True
    with contextlib.suppress(NotFoundError):  # an unknown model: refused by name later
        builder = get_entry(model).builder
        vit = isinstance(builder, type) and issubclass(builder, VisionTransformer)
    types = {f.name: str(f.type) for f in dataclasses.fields(ViTConfig)} if vit else {}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = str(key).replace("-", "_")
        if value is None:  # "not given", as resolve_spec reads it (older train.json files hold it)
            out[name] = None
            continue
        if name in FROM_DATA:
            raise ConfigError(
                f"model_overrides cannot set '{name}': the dataset decides it (a folder: "
                "dataset's image size and channels are "
                f"{setting('dataset_options.image_size', flag='--image-size')} and "
                f"{setting('dataset_options.channels', flag='--channels')})"
            )
        out[name] = (
            _typed(f"model_overrides.{name}", value, types[name]) if name in types else value
        )
    return out


def _typed(key: str, value: Any, kind: str) -> Any:
    """``value`` checked against the field's annotation (a config file can hold anything) and
    normalised: numpy numbers and paths, from Python callers, become plain ints/floats/strs."""
    is_bool = isinstance(value, bool | np.bool_)
    is_text = isinstance(value, str | os.PathLike)
    ok = {
        "int": isinstance(value, numbers.Integral) and not is_bool,
        "float": isinstance(value, numbers.Real) and not is_bool,
        "bool": is_bool,
        "str": is_text,
        "str | None": value is None or is_text,
    }.get(kind, isinstance(value, dict) if kind.startswith("dict") else True)
    if not ok:
        want = {"int": "an integer", "float": "a number", "bool": "true or false"}
        what = want.get(kind, "a mapping" if kind.startswith("dict") else "a string")
        hint = numeric_text_hint(value)
        raise ConfigError(f"training option '{key}' must be {what}, got {value!r}{hint}")
    if value is None or kind.startswith("dict"):
        return value
    return {"int": int, "float": float, "bool": bool}.get(kind, os.fspath)(value)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a JSON, TOML or YAML file (keys as in TrainConfig, or CLI names with '-')."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"cannot parse {path}: not UTF-8 text ({e.reason})") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_once)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = _yaml_once(text)
        else:
            raise UserError(f"config file must be .json, .toml or .yaml, got {path.name}")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, ValueError) as e:
        raise UserError(f"cannot parse {path}: {e}") from None
    except Exception as e:  # yaml.YAMLError (PyYAML is optional: no import here to name it)
        if type(e).__module__.split(".")[0] != "yaml":
            raise
        mark = getattr(e, "problem_mark", None)  # where: PyYAML's first line says only what
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(e, "problem", None) or first_line(e)
        raise UserError(f"cannot parse {path}: {what}{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of options")
    options = _once_spelled(path, data)
    if isinstance(options.get("model_overrides"), dict):  # embed-dim and embed_dim there too
        _once_spelled(path, options["model_overrides"], "model_overrides.")
    return options


def _once_spelled(path: Path, data: dict[Any, Any], within: str = "") -> dict[str, Any]:
    """``data`` with '-' in its keys read as '_', refusing a key in both spellings
    (batch-size and batch_size: one of them would win unseen). Only a file's own mapping: a
    ``model_overrides`` merged over the recipe's may respell a key, and then replaces it."""
    options: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in options:
            raise UserError(f"{path} sets '{within}{name}' twice ('{spelled[name]}' and '{key}')")
        options[name], spelled[name] = value, str(key)
    return options


def _yaml_once(text: str) -> Any:
    """YAML as ``yaml.safe_load`` reads it, refusing a key given twice in a mapping (PyYAML
    keeps the last one without a word, as json does)."""
    try:
        import yaml
    except ImportError:
        raise UserError("YAML config files need PyYAML: pip install pyyaml") from None

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Loader, node: Any) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, whose keys may be set
                continue
            key = loader.construct_object(key_node)
            try:
                hash(key)
            except TypeError:  # `? [a, b]`: what safe_load itself says of it
                raise yaml.constructor.ConstructorError(
                    None, None, "found unhashable key", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' is set twice", key_node.start_mark
                )
            seen.add(key)
        return loader.construct_mapping(node)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last one without a word)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"'{key}' is set twice")
        out[key] = value
    return out


def recipe_for(dataset_recipe: dict[str, Any]) -> dict[str, Any]:
    """The dataset's recipe as TrainConfig updates (checked: recipes cannot set run plumbing)."""
    bad = _NOT_IN_RECIPES & set(dataset_recipe)
    if bad:
        raise ValueError(f"recipes may not set {sorted(bad)}")
    return dict(dataset_recipe)
