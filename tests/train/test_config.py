from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitkit.errors import ConfigError, UserError
from vitkit.train.config import TrainConfig, read_config_file
from vitkit.train.run import resolve_config


def test_config_round_trips_through_json() -> None:
    cfg = TrainConfig(dataset="cifar10", model_overrides={"embed_dim": 256}, lr=3e-4, mixup=0.8)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_option_names_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})


def test_precedence_recipe_then_file_then_cli(tmp_path: Path) -> None:
    recipe = resolve_config("mnist-mini")
    f = tmp_path / "c.toml"
    f.write_text("epochs = 7\nlr = 0.01\nbatch-size = 32\n")
    cfg = resolve_config("mnist-mini", file_options=read_config_file(f), lr=0.02)
    assert cfg.epochs == 7 and cfg.batch_size == 32  # from the file
    assert cfg.lr == 0.02  # the command line wins
    assert cfg.weight_decay == recipe.weight_decay  # untouched: the recipe's


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".json", '{"epochs": 3, "model": "vit-nano"}'),
        (".yaml", "epochs: 3\nmodel: vit-nano\n"),
        (".toml", 'epochs = 3\nmodel = "vit-nano"\n'),
    ],
)
def test_config_file_formats(tmp_path: Path, suffix: str, text: str) -> None:
    f = tmp_path / f"c{suffix}"
    f.write_text(text)
    assert read_config_file(f) == {"epochs": 3, "model": "vit-nano"}


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        read_config_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UserError, match="cannot parse"):
        read_config_file(bad)


def test_validate_catches_bad_values() -> None:
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        resolve_config("mnist-mini", epochs=0)
    with pytest.raises(ConfigError, match="val fraction"):
        resolve_config("mnist-mini", val_fraction=1.5)


def test_model_overrides_in_a_file_are_checked_like_the_top_level(tmp_path: Path) -> None:
    """`model_overrides: {num_classes: 3}` crashed the run with a TypeError traceback ("multiple
    values for keyword argument"), `{embed_dim: "64"}` too, and `{qkv_bias: "no"}` trained with
    the biases on (a non-empty string is true)."""
    bad = [
        ({"num_classes": 3}, "cannot set 'num_classes': the dataset decides it"),
        ({"image_size": 56}, "cannot set 'image_size'"),
        ({"embed_dim": "64"}, r"'model_overrides.embed_dim' must be an integer, got '64'"),
        ({"qkv_bias": "no"}, r"'model_overrides.qkv_bias' must be true or false"),
        ({"mlp_ratio": True}, r"'model_overrides.mlp_ratio' must be a number"),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict({"model_overrides": overrides})
        with pytest.raises(UserError, match="model_overrides"):  # ConfigError is one
            resolve_config("mnist-mini", file_options={"model_overrides": overrides})
    # names as at the top level: - or _; values kept as given
    cfg = TrainConfig.from_dict({"model_overrides": {"embed-dim": 32, "num_heads": 2}})
    assert cfg.model_overrides == {"embed_dim": 32, "num_heads": 2}
    # None is "not given" (a train.json may hold it): still read, so such runs still resume
    cfg = TrainConfig.from_dict({"model_overrides": {"dropout": None, "num_classes": None}})
    assert cfg.model_overrides == {"dropout": None, "num_classes": None}
