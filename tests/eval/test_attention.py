from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import vitkit
from vitkit.artifact import LoadedModel
from vitkit.errors import UserError
from vitkit.eval.attention import (
    attention_rollout,
    colormap,
    overlay_size,
    patch_attention,
    render_overlay,
    token_relevance,
    write_overlay,
)
from vitkit.models import VisionTransformer, ViTConfig


def _vit(pool: str, depth: int = 3, heads: int = 2, image: int = 16) -> VisionTransformer:
    """A random 1-channel ViT with 4-pixel patches."""
    cfg = ViTConfig(
        image_size=image,
        patch_size=4,
        in_chans=1,
        embed_dim=32,
        depth=depth,
        num_heads=heads,
        num_classes=5,
        pool=pool,
    )
    return VisionTransformer(cfg).eval()


def _identity_blocks(model: VisionTransformer) -> VisionTransformer:
    """Every block the identity: zero q/k (uniform attention) and zero residual branches."""
    with torch.no_grad():
        for block in model.blocks:
            for p in (*block.attn.qkv.parameters(), *block.attn.proj.parameters()):
                p.zero_()
            for p in block.mlp.fc2.parameters():
                p.zero_()
    return model


# -- pure functions -------------------------------------------------------------------------------
def test_rollout_by_hand() -> None:
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    # 0.5 * A + 0.5 * I = all 0.5, a fixed point under further layers
    half = torch.full((1, 2, 2), 0.5, dtype=torch.float64)
    assert torch.allclose(attention_rollout([swap]), half)
    assert torch.allclose(attention_rollout([swap, swap, swap]), half)
    # without the residual term, layers multiply: swap twice is the identity
    assert torch.allclose(attention_rollout([swap, swap], residual=False)[0], torch.eye(2).double())
    # heads are averaged
    two_heads = torch.cat([swap, torch.eye(2).view(1, 1, 2, 2)], dim=1)
    assert torch.allclose(attention_rollout([two_heads], residual=False), half)


def test_token_relevance_cls_and_mean() -> None:
    joint = torch.tensor(
        [[[0.5, 0.25, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 1.0], [0.25] * 4]],
        dtype=torch.float64,
    )
    # CLS row over the 3 patches (0.25, 0.25, 0.0), renormalised
    assert token_relevance(joint, 1).tolist() == [[0.5, 0.5, 0.0]]
    # no CLS: the mean attention each token receives (column means, which sum to 1)
    assert token_relevance(joint, 0)[0].tolist() == pytest.approx(joint[0].mean(0).tolist())


@settings(max_examples=25, deadline=None)
@given(
    depth=st.integers(1, 6),
    heads=st.integers(1, 4),
    grid=st.integers(1, 5),
    prefix=st.integers(0, 1),
    batch=st.integers(1, 3),
)
def test_rollout_of_uniform_attention_is_uniform(
    depth: int, heads: int, grid: int, prefix: int, batch: int
) -> None:
    t = grid * grid + prefix
    uniform = [torch.full((batch, heads, t, t), 1.0 / t) for _ in range(depth)]
    for method in ("rollout", "last-layer"):
        m = patch_attention(uniform, num_prefix_tokens=prefix, method=method)
        assert m.shape == (batch, grid, grid)
        assert torch.allclose(m, torch.full_like(m, 1.0 / grid**2), atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(
    pool=st.sampled_from(["cls", "mean"]),
    depth=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_rollout_on_a_model_whose_blocks_are_identity_is_uniform(
    pool: str, depth: int, seed: int
) -> None:
    model = _identity_blocks(_vit(pool, depth=depth))
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits, attns = model.forward_attention(x)
        assert torch.allclose(logits, model(x), atol=1e-5)
    for method in ("rollout", "last-layer"):
        m = patch_attention(attns, num_prefix_tokens=model.num_prefix_tokens, method=method)
        assert torch.allclose(m, torch.full_like(m, 1 / 16), atol=1e-6)


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("method", ["rollout", "last-layer"])
def test_shapes_and_sums_on_a_random_model(pool: str, method: str) -> None:
    torch.manual_seed(0)
    model = _vit(pool, depth=3, heads=2, image=20)  # 5x5 grid
    with torch.no_grad():
        _, attns = model.forward_attention(torch.randn(3, 1, 20, 20))
    assert len(attns) == 3
    t = 25 + (1 if pool == "cls" else 0)
    assert all(a.shape == (3, 2, t, t) for a in attns)
    assert all(torch.allclose(a.sum(-1), torch.ones(3, 2, t)) for a in attns)  # softmax rows
    m = patch_attention(attns, num_prefix_tokens=model.num_prefix_tokens, method=method)
    assert m.shape == (3, 5, 5) and m.dtype == torch.float32
    assert (m >= 0).all() and torch.allclose(m.sum((1, 2)), torch.ones(3))
    with pytest.raises(UserError, match="unknown attention method"):
        patch_attention(attns, num_prefix_tokens=1, method="gradcam")


# -- on images ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("topk", "message"),
    [
        ("3", "topk must be an integer, got '3'"),
        (True, "got True"),
        (0, "topk must be >= 1, got 0"),
    ],
)
def test_attention_maps_checks_topk_as_predict_does(topk: object, message: str) -> None:
    # "3" was TypeError: '<' not supported between instances of 'int' and 'str'; 0 and True
    # were taken as a top-1; the check comes first, before the (here missing) run is opened
    with pytest.raises(UserError, match=message):
        vitkit.attention_maps("no-such-run", "a.png", topk=topk)  # type: ignore[arg-type]


def test_overlay_keeps_the_aspect_ratio() -> None:
    assert overlay_size(28, 28) == (280, 280)  # small: a whole multiple
    assert overlay_size(500, 300) == (500, 300)
    assert overlay_size(3000, 1000) == (1024, 341)
    assert overlay_size(10, 200) == (20, 400)
    img = Image.new("RGB", (500, 300), "white")
    out = render_overlay(img, torch.rand(4, 4), label="7 (99.0%)")
    assert out.size == (500, 300) and out.mode == "RGB"
    a = np.asarray(out)
    assert a.std() > 0  # the overlay is not flat


def test_attention_maps_on_a_trained_run(
    mnist_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = vitkit.load_dataset("mnist-mini")["test"]
    digit = Image.fromarray(test.images[0, 0].numpy())
    wide = tmp_path / "wide.png"
    digit.resize((500, 300), Image.Resampling.BICUBIC).convert("RGBA").save(wide)

    # the maps come from forward_attention, not from the default forward
    def no_forward(*args: object, **kwargs: object) -> None:
        raise AssertionError("forward() called")

    monkeypatch.setattr(mnist_model.model, "forward", no_forward)
    maps = vitkit.attention_maps(mnist_model, [digit, wide], method="rollout")
    last = vitkit.attention_maps(mnist_model, wide, method="last-layer")
    grid = mnist_model.image_size // mnist_model.spec.config.patch_size
    for am in (*maps, *last):
        assert am.map.shape == (grid, grid) and float(am.map.sum()) == pytest.approx(1.0)
        assert (am.map >= 0).all()
    assert not torch.equal(maps[1].map, last[0].map)
    assert float(maps[1].map.max() - maps[1].map.min()) > 1e-3  # a trained model is not flat
    assert maps[1].prediction.size == (500, 300) and maps[1].prediction.mode == "RGBA"
    out = tmp_path / "explain.png"
    size = write_overlay(maps[1], out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == size
        assert abs(im.size[0] / im.size[1] - 500 / 300) < 0.01
    doc = maps[1].to_json()
    assert doc["grid"] == [grid, grid] and doc["prediction"]["label"] == maps[1].prediction.label
    with pytest.raises(UserError, match=r"ending in \.png"):
        write_overlay(maps[1], tmp_path / "explain.jpg")
    with pytest.raises(UserError, match="unknown attention method 'grad'"):
        vitkit.attention_maps(mnist_model, wide, method="grad")


def test_a_small_image_is_scaled_up_crisp() -> None:
    """A 32 px CIFAR image was scaled up 8x bilinearly: the overlay was a blur, though the whole
    factor was chosen to keep its pixels crisp. Each pixel is now an 8x8 block."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    flat = torch.zeros(8, 8)  # one colour of heat everywhere: only the image varies
    a = np.asarray(render_overlay(img, flat)).astype(np.int64)
    assert a.shape == (256, 256, 3)
    blocks = a.reshape(32, 8, 32, 8, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()  # every 8x8 block is one colour
    expected = np.round(0.5 * np.asarray(img, dtype=np.float64) + 0.5 * colormap(np.zeros(1))[0])
    assert np.abs(blocks[:, 0, :, 0] - expected).max() <= 1  # that pixel, half-blended
    big = Image.new("RGB", (500, 300), "white")  # not a whole factor: smoothed, as before
    assert render_overlay(big, flat).size == (500, 300)
