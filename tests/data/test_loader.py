from __future__ import annotations

import pytest
import torch

from vitkit.data.augment import AugmentConfig
from vitkit.data.loader import DeviceLoader
from vitkit.data.types import Split
from vitkit.errors import ConfigError, UserError


def toy(n: int = 100) -> Split:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return Split(images, torch.arange(n, dtype=torch.int64))


def loader(split: Split, **kw: object) -> DeviceLoader:
    args: dict = dict(batch_size=10, mean=[0.0], std=[1.0 / 255], num_classes=100)
    args.update(kw)
    return DeviceLoader(split, **args)


def test_epoch_is_a_permutation_and_changes_per_epoch() -> None:
    L = loader(toy())
    seen = torch.cat([y for _, y in L])
    assert sorted(seen.tolist()) == list(range(100))
    L.set_epoch(1)
    assert not torch.equal(torch.cat([y for _, y in L]), seen)


def test_images_stay_aligned_with_labels() -> None:
    for x, y in loader(toy()):
        torch.testing.assert_close(x[:, 0, 0, 0], y.float())  # pixel value == index (std 1/255)


def test_drop_last_and_len() -> None:
    assert len(loader(toy(105))) == 10
    assert len(loader(toy(105), drop_last=False)) == 11
    assert sum(len(y) for _, y in loader(toy(105), drop_last=False, shuffle=False)) == 105


def test_same_seed_same_batches_and_resume_mid_epoch() -> None:
    aug = AugmentConfig.preset("natural", 4)
    a = loader(toy(), augment=aug, seed=3)
    b = loader(toy(), augment=aug, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    full = list(a)
    tail = list(b.iter_from(4))
    assert len(tail) == len(full) - 4
    for (xf, yf), (xt, yt) in zip(full[4:], tail, strict=True):
        assert torch.equal(xf, xt) and torch.equal(yf, yt)


def test_ranks_get_disjoint_shards() -> None:
    shards = [
        torch.cat([y for _, y in loader(toy(), rank=r, world_size=2, batch_size=5)]) for r in (0, 1)
    ]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    assert len(shards[0]) == len(shards[1]) == 50


def test_batch_larger_than_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match="larger than the 100 images"):
        loader(toy(), batch_size=101)


def test_a_batch_size_that_is_no_integer_is_one_line() -> None:
    # "10" was TypeError: '<' not supported between instances of 'str' and 'int'
    for bad in ("10", 2.5, True):
        with pytest.raises(UserError, match="batch size must be an integer, got"):
            loader(toy(), batch_size=bad)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", r"unknown device in device='tpu'"),
        pytest.param(
            "cuda",
            r"device='cuda' was asked for but CUDA is not available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here"),
        ),
    ],
)
def test_a_device_name_that_is_not_here_is_one_line(device: str, message: str) -> None:
    # data.md's example passes device="cuda": without CUDA it was torch's RuntimeError ("Found
    # no NVIDIA driver...", from deep inside .to()), and "tpu" torch's list of device types
    with pytest.raises(UserError, match=message) as e:
        loader(toy(), device=device)
    assert "\n" not in str(e.value)


def test_a_device_by_name_or_object_or_auto() -> None:
    assert loader(toy(), device="cpu").device == torch.device("cpu")
    assert loader(toy(), device=torch.device("cpu")).device == torch.device("cpu")
    assert loader(toy(), device="auto").images.device.type in ("cpu", "cuda", "mps")
