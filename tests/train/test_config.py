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


def test_from_dict_of_what_is_not_a_mapping_is_a_config_error() -> None:
    """TrainConfig.from_dict(5) was an AttributeError ('int' object has no attribute 'items')."""
    with pytest.raises(ConfigError, match=r"^a training config is a mapping of options, got 5"):
        TrainConfig.from_dict(5)  # type: ignore[arg-type]


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


def test_numpy_numbers_become_plain_python_when_checked() -> None:
    """TrainConfig(epochs=np.int64(3)) passed validate() as it was, and train() then failed
    writing train.json ("Object of type int64 is not JSON serializable"); model_overrides'
    np.int64 was refused by the model ('depth must be a positive integer, got np.int64(2)')."""
    import numpy as np

    cfg = TrainConfig(
        epochs=np.int64(3),
        lr=np.float32(0.5),
        augment=np.False_,
        seed=np.uint8(7),
        model="vit-nano",
        model_overrides={"depth": np.int64(2), "qkv_bias": np.True_, "dropout": np.float32(0.5)},
        out=Path("runs/x"),
    )
    cfg.validate()
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.seed, cfg.out) == (3, 0.5, False, 7, "runs/x")
    assert cfg.model_overrides == {"depth": 2, "qkv_bias": True, "dropout": 0.5}
    d = cfg.to_dict()
    assert [type(v) for v in (d["epochs"], d["lr"], d["augment"], d["seed"])] == [int, float, bool, int]  # fmt: skip
    assert [type(v) for v in d["model_overrides"].values()] == [int, bool, float]
    assert TrainConfig.from_dict(json.loads(json.dumps(d))) == cfg
    resolve_config("mnist-mini", model="vit-nano", model_overrides={"depth": np.int64(2)})
    for bad, message in [
        ({"epochs": 3.0}, "'epochs' must be an integer, got 3.0"),
        ({"epochs": np.True_}, "'epochs' must be an integer, got "),
        ({"augment": np.int64(1)}, "'augment' must be true or false, got "),
    ]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**bad).validate()


def test_numpy_dataset_options_become_plain_python_when_checked() -> None:
    """dataset_options={"seed": np.int64(1)} (a sweep over data seeds) passed the checks and
    loaded, then train() failed writing train.json ("Object of type int64 is not JSON
    serializable"): the options stayed numpy's where the other fields were made plain."""
    import numpy as np

    options = {"grid": np.int64(3), "empty_prob": np.float32(0.25), "seed": np.uint8(1)}
    cfg = resolve_config("mnist-layout", dataset_options=options)
    assert cfg.dataset_options == {"grid": 3, "empty_prob": 0.25, "seed": 1}
    assert [type(v) for v in cfg.dataset_options.values()] == [int, float, int]
    assert json.loads(json.dumps(cfg.to_dict()))["dataset_options"] == cfg.dataset_options
    folder = TrainConfig(dataset="folder:x", dataset_options={"image_size": np.int64(16)})
    folder.validate()
    assert type(folder.dataset_options["image_size"]) is int


def test_resolve_config_refuses_what_train_would() -> None:
    """resolve_config returned configs that train() then refused (the CLI's --print-config
    checked them, the library did not): sizes, dataset options, a device name."""
    with pytest.raises(UserError, match=r"embed.dim 100 .*divisible by num_heads"):
        resolve_config("mnist-mini", model_overrides={"embed_dim": 100})
    with pytest.raises(UserError, match="gpu"):
        resolve_config("mnist-mini", device="gpu")
    with pytest.raises(UserError, match="image_size"):
        resolve_config("mnist-mini", dataset_options={"image_size": 3})
    # a device this machine lacks is not refused: the config may be for another machine
    assert resolve_config("mnist-mini", device="cuda:7").device == "cuda:7"


def test_a_dataset_name_or_config_of_the_wrong_type_is_one_line() -> None:
    # each was an AttributeError ('NoneType' object has no attribute 'startswith'; 'dict'
    # object has no attribute 'validate')
    from vitkit.data import load_dataset
    from vitkit.train import train

    with pytest.raises(UserError, match=r"^a dataset name is a string, got None$"):
        resolve_config(None)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^a dataset name is a string, got 3$"):
        load_dataset(3)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"takes a TrainConfig .*TrainConfig.from_dict.*got dict$"):
        train({"dataset": "mnist-mini"})  # type: ignore[arg-type]


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


def test_a_registered_model_of_another_family_trains_on_a_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's CNN in the registry: the mnist-mini recipe's ViT option (patch_size 7) made
    resolve_config's run fail with "unexpected keyword argument 'patch_size'". A recipe's option
    the model does not take is now dropped; one the user gives is a one-line error."""
    import dataclasses

    import torch

    from vitkit.models import Model, _registry, model_options, register_model, resolve_spec
    from vitkit.train import train

    @dataclasses.dataclass
    class CNNConfig:
        image_size: int = 28
        in_chans: int = 1
        num_classes: int = 10
        num_outputs: int = 1
        width: int = 8

    class TinyCNN(Model):
        def __init__(self, c: CNNConfig) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(c.in_chans, c.width, 3, padding=1)
            self.head = torch.nn.Linear(c.width, c.num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).relu().mean((2, 3)))

        def flops(self) -> int:
            return 1

    def make(
        image_size: int = 28,
        in_chans: int = 1,
        num_classes: int = 10,
        num_outputs: int = 1,
        width: int = 8,
    ) -> CNNConfig:
        return CNNConfig(image_size, in_chans, num_classes, num_outputs, width)

    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))  # restored afterwards
    register_model("test-cnn", builder=TinyCNN)(make)
    assert model_options("test-cnn") == {
        "image_size",
        "in_chans",
        "num_classes",
        "num_outputs",
        "width",
    }
    assert model_options("vit-nano") is None  # takes any name, and checks it itself
    with pytest.raises(
        ConfigError,
        match=r"model 'test-cnn' takes no option 'patch_size' \(it takes: image_size, in_chans",
    ):
        resolve_spec("test-cnn", patch_size=7)
    cfg = resolve_config("mnist-mini", model="test-cnn", max_steps=2, out=str(tmp_path / "r"))
    assert cfg.model_overrides == {}  # the recipe's patch_size 7 is for its ViT
    assert train(cfg).status == "max_steps"

    @dataclasses.dataclass
    class PlainConfig:  # a family with no num_outputs at all
        image_size: int = 28
        in_chans: int = 1
        num_classes: int = 10
        width: int = 8

    def make_plain(
        image_size: int = 28, in_chans: int = 1, num_classes: int = 10, width: int = 8
    ) -> PlainConfig:
        return PlainConfig(image_size, in_chans, num_classes, width)

    register_model("test-cnn-plain", builder=TinyCNN)(make_plain)
    plain = resolve_config(
        "mnist-mini", model="test-cnn-plain", max_steps=2, out=str(tmp_path / "p")
    )
    result = train(plain)  # it failed: "takes no option 'num_outputs'", never given
    assert result.status == "max_steps"
    from vitkit.artifact import load_model

    assert load_model(result.run_dir).num_outputs == 1
    # its options are its own: not type-checked as a ViT's (a ResNet's depth is a list), also
    # for a preset that takes any name, as the ViT presets do
    register_model("test-cnn-any", builder=TinyCNN)(lambda **kw: make(**kw))
    for name in ("test-cnn", "test-cnn-any"):
        TrainConfig(model=name, model_overrides={"depth": [2, 2]}).validate()
    with pytest.raises(ConfigError, match=r"'model_overrides\.depth' must be an integer"):
        TrainConfig(model="vit-nano", model_overrides={"depth": [2, 2]}).validate()
    for spelled in ("patch_size", "patch-size"):  # given, either way: refused, not dropped
        with pytest.raises(ConfigError, match="takes no option 'patch_size'"):
            resolve_config("mnist-mini", model="test-cnn", model_overrides={spelled: 4})
