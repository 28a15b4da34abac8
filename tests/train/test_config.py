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
