from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitkit.data import load_dataset
from vitkit.data.sources.synthetic_digits import EMPTY, tile
from vitkit.errors import ConfigError


def cells_of(images: torch.Tensor, grid: int, side: int = 28) -> torch.Tensor:
    """(N, 1, grid*side, grid*side) -> (N, grid*grid, side*side) cell pixels, row-major."""
    n = images.shape[0]
    x = images.reshape(n, grid, side, grid, side).permute(0, 1, 3, 2, 4)
    return x.reshape(n, grid * grid, side * side)


def test_tile_places_cells_row_major() -> None:
    cells = torch.arange(4, dtype=torch.uint8).view(1, 4, 1, 1, 1).expand(1, 4, 1, 2, 2)
    img = tile(cells, 2)[0, 0]
    assert img.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_mnist_grid_cells_hold_the_labelled_digits(mnist_root: Path) -> None:
    grid = load_dataset("mnist-grid", data_root=mnist_root, download=False)
    mnist = load_dataset("mnist", data_root=mnist_root, download=False)
    assert grid.image_size == 56 and grid.num_outputs == 4 and grid.classes == list("0123456789")
    for split in ("train", "test"):
        s = grid[split]
        assert s.labels.shape == (len(mnist[split]), 4)
        # every cell of the first images is an MNIST image of *this* split with that label
        lookup = {
            bytes(img.numpy().tobytes()): int(lab)
            for img, lab in zip(
                mnist[split].images[:, 0].reshape(-1, 784), mnist[split].labels, strict=True
            )
        }
        cells = cells_of(s.images[:64], 2)
        for i in range(64):
            for k in range(4):
                key = bytes(cells[i, k].numpy().tobytes())
                assert key in lookup, f"{split} image {i} cell {k} is not from MNIST {split}"
                assert lookup[key] == int(s.labels[i, k])


def test_mnist_grid_is_deterministic(mnist_root: Path) -> None:
    a = load_dataset("mnist-grid", data_root=mnist_root, download=False)
    b = load_dataset("mnist-grid", data_root=mnist_root, download=False, rebuild=True)
    assert torch.equal(a["train"].labels, b["train"].labels)
    assert torch.equal(a["test"].images[:100], b["test"].images[:100])


@pytest.mark.parametrize("grid", [2, 3])
def test_mnist_layout_cells_are_digits_or_empty(mnist_root: Path, grid: int) -> None:
    ds = load_dataset("mnist-layout", data_root=mnist_root, download=False, grid=grid)
    mnist = load_dataset("mnist", data_root=mnist_root, download=False)
    assert ds.image_size == 28 * grid and ds.num_outputs == grid * grid
    assert ds.classes[EMPTY] == "empty" and len(ds.classes) == 11
    s = ds["test"]
    empty = s.labels == EMPTY
    assert 0.2 < empty.float().mean() < 0.4  # default empty_prob 0.3
    cells = cells_of(s.images[:200], grid)
    assert (cells[empty[:200]] == 0).all()  # empty cells are blank
    assert (cells[~empty[:200]].amax(1) > 0).all()  # digit cells are not
    lookup = {
        bytes(img.numpy().tobytes()): int(lab)
        for img, lab in zip(
            mnist["test"].images[:, 0].reshape(-1, 784), mnist["test"].labels, strict=True
        )
    }
    for i, k in (~empty[:50]).nonzero().tolist():
        assert lookup[bytes(cells[i, k].numpy().tobytes())] == int(s.labels[i, k])


def test_mnist_layout_validates_grid(mnist_root: Path) -> None:
    with pytest.raises(ConfigError, match="grid must be"):
        load_dataset("mnist-layout", data_root=mnist_root, download=False, grid=7)


def test_dataset_options_of_another_type_are_refused(tmp_path: Path) -> None:
    # grid="3" built the 3x3 layouts (the builder took int("3")) under a cache key of its own
    # (a second copy of 70,000 images) and Dataset.options / train.json recorded the text
    from vitkit.train import resolve_config

    empty = dict(data_root=tmp_path / "empty", download=False)  # refused before any file is read
    for name, options, message in [
        ("mnist-layout", {"grid": "3"}, "option 'grid' must be an integer, got '3'"),
        ("mnist-layout", {"grid": 3.0}, "option 'grid' must be an integer, got 3.0"),
        ("mnist-layout", {"empty_prob": "0.2"}, "option 'empty_prob' must be a number"),
        # YAML reads 1e-1 as text: the hint training options give
        (
            "mnist-layout",
            {"empty_prob": "1e-1"},
            r"option 'empty_prob' must be a number, got '1e-1' \(a number in quotes is text; ",
        ),
        ("mnist-grid", {"seed": True}, "option 'seed' must be an integer, got True"),
    ]:
        with pytest.raises(ConfigError, match=f"dataset '{name}' {message}"):
            load_dataset(name, **empty, **options)
        with pytest.raises(ConfigError, match=message):
            resolve_config(name, dataset_options=options)
    # what the builders take still passes the check (an int for a float option too)
    assert resolve_config(
        "mnist-layout", dataset_options={"grid": 3, "empty_prob": 0}
    ).dataset_options == {"grid": 3, "empty_prob": 0}


def test_dataset_options_out_of_range_are_refused_with_the_options(tmp_path: Path) -> None:
    """empty_prob=nan (or inf, or 1.5), grid=5 and a seed torch cannot take passed
    resolve_config and --print-config, and were refused (or crashed, the seed) only once
    MNIST was read and the data built. They are refused with the other options, naming it."""
    import numpy as np

    from vitkit.data.catalog import get_dataset_spec, list_datasets
    from vitkit.train import resolve_config

    empty = dict(data_root=tmp_path / "empty", download=False)  # no file is read
    low, high = (-(2**63 // 1000), (2**64 - 2) // 1000)
    seeds, probs = rf"seed must be in \[{low}, {high}\]", r"empty_prob must be in \[0, 1\)"
    for name, options, message in [
        ("mnist-layout", {"empty_prob": float("nan")}, f"{probs}, got nan"),
        ("mnist-layout", {"empty_prob": np.float32("inf")}, f"{probs}, got inf"),
        ("mnist-layout", {"empty_prob": -float("inf")}, f"{probs}, got -inf"),
        ("mnist-layout", {"empty_prob": 1.5}, f"{probs}, got 1.5"),
        ("mnist-layout", {"empty_prob": 10**400}, f"{probs}, got 1000"),  # no float holds it
        ("mnist-layout", {"grid": 5}, "grid must be 2, 3 or 4, got 5"),
        ("mnist-layout", {"grid": np.int64(1)}, "grid must be 2, 3 or 4, got 1"),
        ("mnist-grid", {"seed": 2**62}, f"{seeds}, got {2**62}$"),
        ("mnist-layout", {"seed": low - 1}, f"{seeds}, got {low - 1}$"),
    ]:
        with pytest.raises(ConfigError, match=f"^dataset '{name}' option {message}"):
            load_dataset(name, **empty, **options)
        with pytest.raises(ConfigError, match=message):
            resolve_config(name, dataset_options=options)
    # the bounds are what the builders take: each split's seed is seed * 1000 + 0 or 1
    for seed in (low, high):
        torch.Generator().manual_seed(seed * 1000)
        torch.Generator().manual_seed(seed * 1000 + 1)
    for name in ("mnist-grid", "mnist-layout"):
        assert resolve_config(name, dataset_options={"seed": high}).dataset_options["seed"] == high
    options = {"empty_prob": 0.0, "grid": 4, "seed": low}
    assert resolve_config("mnist-layout", dataset_options=options).dataset_options == options
    # every float option of the catalog refuses nan, with or without a range of its own
    floats = [
        (spec.name, key)
        for spec in map(get_dataset_spec, list_datasets())
        for key, default in spec.options.items()
        if isinstance(default, float)
    ]
    assert floats
    for name, key in floats:
        with pytest.raises(ConfigError, match=f"option {key} must be .*, got nan$"):
            load_dataset(name, **empty, **{key: float("nan")})


def test_numpy_numbers_are_taken_as_plain_ones(mnist_root: Path) -> None:
    # np.int64(3) (a grid from a numpy sweep) was refused as "not an integer" by the type check;
    # it is one, and the options the dataset records (cache key, train.json) are plain JSON
    import json

    import numpy as np

    ds = load_dataset(
        "mnist-layout", data_root=mnist_root, download=False, grid=np.int64(3), seed=np.int32(0)
    )
    assert ds.options["grid"] == 3 and type(ds.options["grid"]) is int
    assert type(ds.options["seed"]) is int
    json.dumps(ds.options)
    assert ds["test"].images.shape[-1] == 3 * 28


@pytest.mark.parametrize("name", ["mnist-grid", "mnist-layout"])
def test_a_test_split_alone_needs_only_mnist_test_files(
    mnist_root: Path, tmp_path: Path, name: str
) -> None:
    """The test grids built alone (from MNIST's t10k files) are the whole build's, image for
    image: each split has its own seed, whether or not the other split is built."""
    (tmp_path / "mnist").mkdir()
    for f in (mnist_root / "mnist").glob("t10k-*.gz"):
        (tmp_path / "mnist" / f.name).symlink_to(f.resolve())
    alone = load_dataset(name, data_root=tmp_path, download=False, splits=["test"])
    whole = load_dataset(name, data_root=mnist_root, download=False)
    assert list(alone) == ["test"] and not alone.from_cache
    assert torch.equal(alone["test"].images, whole["test"].images)
    assert torch.equal(alone["test"].labels, whole["test"].labels)
    assert not (tmp_path / name).exists() and not (tmp_path / "mnist" / "cache").exists()
