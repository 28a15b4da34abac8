from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitkit.data.augment import (
    AugmentConfig,
    BatchAugment,
    cutmix,
    mixup,
    one_hot,
    random_affine,
    random_crop,
    random_flip,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=25, deadline=None)
@given(pad=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_random_crop_is_a_shifted_window_of_the_padded_image(pad: int, seed: int) -> None:
    x = torch.randint(1, 255, (6, 3, 8, 8), dtype=torch.uint8)
    out = random_crop(x, pad, gen(seed))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    for i in range(6):
        windows = [
            padded[i, :, dy : dy + 8, dx : dx + 8]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        ]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_crop_offsets_vary_across_the_batch() -> None:
    x = torch.randint(1, 255, (64, 1, 8, 8), dtype=torch.uint8)
    out = random_crop(x, 4, gen())
    assert len({int((o == 0).sum()) for o in out}) > 3


def test_flip_mirrors_about_half() -> None:
    x = torch.arange(64 * 4, dtype=torch.float32).view(64, 1, 2, 2)
    out = random_flip(x, gen())
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert (flipped | same).all() and 16 < int(flipped.sum()) < 48


def test_affine_keeps_shape_and_mass_roughly() -> None:
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = random_affine(x, gen(), degrees=10, translate=0.1, scale=(0.9, 1.1))
    assert out.shape == x.shape
    mass = out.sum((1, 2, 3))
    assert ((mass > 40) & (mass < 90)).all()  # 64 pixels, scaled by 0.9^2..1.1^2 and resampled
    assert not torch.allclose(out[0], out[1])


def test_mixup_and_cutmix_keep_label_mass() -> None:
    x = torch.randn(16, 3, 8, 8)
    y = one_hot(torch.randint(0, 10, (16,)), 10)
    for fn in (mixup, cutmix):
        xm, ym = fn(x, y, 1.0, gen(3))
        assert xm.shape == x.shape
        torch.testing.assert_close(ym.sum(1), torch.ones(16))


def test_cutmix_label_weight_is_pasted_area() -> None:
    x = torch.zeros(2, 1, 10, 10)
    x[1] = 1.0
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xm, ym = cutmix(x, y, 1.0, gen(5))
    area = xm[0].mean().item()  # image 0 got the pasted ones
    assert abs(ym[0, 1].item() - area) < 1e-6


def test_batch_augment_normalises_and_is_reproducible() -> None:
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 10, (32,))
    aug = BatchAugment(
        AugmentConfig.preset("natural", 16),
        mean=[0.5] * 3,
        std=[0.25] * 3,
        num_classes=10,
        device="cpu",
    )
    plain, _ = aug(x, y, None)
    torch.testing.assert_close(plain, (x.float() / 255 - 0.5) / 0.25)
    a, ya = aug(x, y, gen(1))
    b, yb = aug(x, y, gen(1))
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, plain)


def test_digits_preset_has_no_flip_and_mixing_gives_soft_labels() -> None:
    assert not AugmentConfig.preset("digits").flip
    aug = BatchAugment(
        AugmentConfig.preset("natural", 8, mixup=0.8, cutmix=1.0),
        mean=[0.5],
        std=[0.5],
        num_classes=4,
        device="cpu",
    )
    _, soft = aug(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.randint(0, 4, (8,)), gen())
    assert soft.shape == (8, 4) and soft.dtype == torch.float32


def test_crop_with_flip_gives_windows_of_the_image_or_its_mirror() -> None:
    x = torch.randint(1, 255, (32, 2, 6, 6), dtype=torch.uint8)
    out = random_crop(x, 2, gen(7), flip_p=0.5)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    mirrored = 0
    for i in range(32):
        plain = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        flipped = [w.flip(2) for w in plain]
        is_plain = any(torch.equal(out[i], w) for w in plain)
        is_flip = any(torch.equal(out[i], w) for w in flipped)
        assert is_plain or is_flip
        mirrored += is_flip and not is_plain
    assert 6 < mirrored < 26
