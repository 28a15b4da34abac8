from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest

from vitkit.artifact import LoadedModel, load_model
from vitkit.train import TrainConfig, train

CIFAR_TRAIN_PER_CLASS = 60
CIFAR_TEST_PER_CLASS = 10


def train_mnist_mini(base: Path) -> Path:
    """vit-nano (patch 7) on the shipped mnist-mini, 2 epochs: ~15-25 s on 2 cores, ~55% test.

    Trained once per session into the session's base temp dir (tests/cli/test_eval.py reuses it).
    """
    run = base / "eval-mnist-mini-run"
    if not (run / "summary.json").is_file():
        train(
            TrainConfig(
                dataset="mnist-mini",
                model="vit-nano",
                model_overrides={"patch_size": 7},
                epochs=2,
                batch_size=64,
                lr=2e-3,
                warmup_epochs=0.5,
                augment=False,
                seed=0,
                device="cpu",  # summary.json's test_acc in fp32, as eval on the CPU
                out=str(run),
                overwrite=True,
            )
        )
    return run


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_mnist_mini(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def mnist_model(mnist_run: Path) -> LoadedModel:
    return load_model(mnist_run)


@pytest.fixture(scope="session")
def cifar_folder(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageFolder cut from the CIFAR-10 JPEG copy: 60 train and 10 test files a class."""
    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    out = tmp_path_factory.mktemp("cifar-small")
    budget = {"train": CIFAR_TRAIN_PER_CLASS, "test": CIFAR_TEST_PER_CLASS}
    taken: Counter[tuple[str, str]] = Counter()
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")  # cifar10-jpeg/<split>/<class>/NNNN.jpg
            if not member.isfile() or len(parts) != 4 or parts[1] not in budget:
                continue
            key = (parts[1], parts[2])
            if taken[key] < budget[parts[1]]:
                taken[key] += 1
                tar.extract(member, out, filter="data")
    return out / "cifar10-jpeg"


@pytest.fixture(scope="session")
def cifar_run(cifar_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit-nano (patch 8) on 600 CIFAR-10 JPEGs, 3 epochs: a few seconds; better than chance."""
    run = tmp_path_factory.getbasetemp() / "eval-cifar-run"
    train(
        TrainConfig(
            dataset=f"folder:{cifar_folder}",
            model="vit-nano",
            model_overrides={"patch_size": 8},
            epochs=3,
            batch_size=50,
            lr=2e-3,
            warmup_epochs=0.5,
            augment=False,
            seed=0,
            device="cpu",
            out=str(run),
            overwrite=True,
        )
    )
    return run
