from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from vitkit.artifact import LoadedModel

SHARED_DATA = Path(
    os.environ.get("VITKIT_SHARED_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")
).resolve()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real MNIST and the CIFAR-10 JPEG copy); skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root laid out from ../shared/data: <root>/mnist/*.gz (symlinks), one per session."""
    root = tmp_path_factory.mktemp("data-root")
    (root / "mnist").mkdir()
    for f in (shared_data / "mnist").glob("*.gz"):
        (root / "mnist" / f.name).symlink_to(f)
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_data_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test writes to the user's ~/.cache: the default data root is a temp folder. Session
    scoped, so that it is set before the session fixtures that train (as a function-scoped one,
    it came after them, and their folder: caches went to ~/.cache/vitkit/data)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VITKIT_DATA", str(tmp_path_factory.getbasetemp() / "default-data-root"))
        yield


@pytest.fixture(scope="session")
def train_nano(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``train_nano(name, epochs, max_steps=0)``: a vit-nano (patch 7) run trained on the shipped
    mnist-mini (a few seconds per epoch) in a fresh ``<name>/runs/mnist-mini-vit-nano`` folder."""
    from vitkit.train import TrainConfig, train

    def make(name: str, epochs: int, max_steps: int = 0) -> Path:
        out = tmp_path_factory.mktemp(name) / "runs" / "mnist-mini-vit-nano"
        config = TrainConfig(
            dataset="mnist-mini",
            model="vit-nano",
            model_overrides={"patch_size": 7},
            epochs=epochs,
            batch_size=64,
            lr=2e-3,
            warmup_epochs=0.5,
            seed=0,
            max_steps=max_steps,
            out=str(out),
        )
        return train(config, data_root=tmp_path_factory.getbasetemp() / "default-data-root").run_dir

    return make


@pytest.fixture
def test_files_only(tmp_path: Path) -> Path:
    """A data root holding Fashion-MNIST's t10k files and no train files: a run copied to a
    machine with only the test split on disk. They hold mnist-mini's 1,000 test digits and
    labels (Fashion-MNIST's files are not checked against official checksums), so a model
    trained on mnist-mini scores them exactly as it scores mnist-mini's test split."""
    import gzip

    import numpy as np

    from vitkit.data import load_dataset

    def idx(array: np.ndarray) -> bytes:
        dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
        return bytes([0, 0, 0x08, array.ndim]) + dims + array.astype(np.uint8).tobytes()

    test = load_dataset("mnist-mini", data_root=tmp_path / "mini")["test"]
    root = tmp_path / "test-files-only"
    (root / "fashion-mnist").mkdir(parents=True)
    for name, array in (("images-idx3", test.images[:, 0]), ("labels-idx1", test.labels)):
        path = root / "fashion-mnist" / f"t10k-{name}-ubyte.gz"
        path.write_bytes(gzip.compress(idx(array.numpy())))
    return root


@pytest.fixture(scope="session")
def fashion_run() -> Callable[[LoadedModel], LoadedModel]:
    """``fashion_run(lm)``: ``lm`` as if its run had trained on fashion-mnist (its dataset and
    class names; ``.meta`` is the model.json that says so), to score with ``test_files_only``."""
    from vitkit.data import get_dataset_spec

    def make(lm: LoadedModel) -> LoadedModel:
        classes = list(get_dataset_spec("fashion-mnist").classes or ())
        meta = {**lm.meta, "dataset": "fashion-mnist", "dataset_options": {}, "classes": classes}
        return dataclasses.replace(lm, dataset="fashion-mnist", classes=classes, meta=meta)

    return make
