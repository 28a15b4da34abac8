from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vitkit import create_model, list_models
from vitkit.errors import ConfigError, NotFoundError
from vitkit.models import ModelSpec, VisionTransformer, ViTConfig, resolve_spec
from vitkit.models.layers import resample_pos_embed

# default input per preset for the forward test: the sizes our datasets use
DEFAULT_INPUT = dict(image_size=32, in_chans=3, num_classes=10)


def vit_params(
    *,
    d: int,
    depth: int,
    img: int,
    patch: int,
    chans: int,
    classes: int,
    mlp: float = 4.0,
    cls: bool = True,
) -> int:
    """ViT parameter count written out by hand, independently of the package."""
    n = (img // patch) ** 2
    h = int(d * mlp)
    embed = chans * patch * patch * d + d + (n + int(cls)) * d + int(cls) * d
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)
    return embed + depth * block + 2 * d + d * classes + classes


def test_vit_tiny_param_count_matches_formula() -> None:
    model = create_model("vit-tiny", image_size=32, patch_size=4, num_classes=10)
    expected = vit_params(d=192, depth=12, img=32, patch=4, chans=3, classes=10)
    assert expected == 5_362_762
    assert model.num_params() == expected
    assert model.config.num_params() == expected


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("num_outputs", [1, 4])
def test_analytic_params_equal_module(pool: str, num_outputs: int) -> None:
    m = create_model("vit-nano", image_size=28, in_chans=1, pool=pool, num_outputs=num_outputs)
    assert m.num_params() == m.config.num_params()


@pytest.mark.parametrize("name", list_models())
def test_every_preset_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **DEFAULT_INPUT)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0


def test_presets_have_the_documented_widths() -> None:
    for name, (d, depth, heads) in {
        "vit-tiny": (192, 12, 3),
        "vit-small": (384, 12, 6),
        "vit-base": (768, 12, 12),
    }.items():
        c = resolve_spec(name).config
        assert (c.embed_dim, c.depth, c.num_heads) == (d, depth, heads)


@pytest.mark.parametrize(
    "image_size,patch", [(28, 4), (32, 4), (30, 5), (8, 4), (224, 16), (56, 7), (64, 8)]
)
def test_default_patch_size(image_size: int, patch: int) -> None:
    assert resolve_spec("vit-nano", image_size=image_size).config.patch_size == patch


@pytest.mark.parametrize("image_size", [13, 29, 31, 4])
def test_no_default_patch_gives_a_single_token(image_size: int) -> None:
    """A prime size got patch = image size: a one-token ViT, built without a word."""
    with pytest.raises(ConfigError, match=f"cuts image size {image_size} into a grid of 2x2"):
        resolve_spec("vit-nano", image_size=image_size)
    assert resolve_spec("vit-nano", image_size=image_size, patch_size=image_size)  # if asked


def test_multi_output_head_shape() -> None:
    m = create_model("vit-nano", image_size=56, in_chans=1, num_outputs=4, num_classes=11)
    assert m(torch.randn(3, 1, 56, 56)).shape == (3, 4, 11)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(embed_dim=100, num_heads=3), "not divisible by num_heads"),
        (dict(image_size=32, patch_size=5), "does not divide image_size"),
        (dict(pool="avg"), "pool must be one of cls, mean, got 'avg'$"),  # nothing close
        (dict(pool="clss"), "pool must be one of cls, mean, got 'clss'; did you mean 'cls'\\?$"),
        (dict(pool=5), "pool must be one of cls, mean, got 5$"),
        (dict(dropout=1.5), "dropout must be in"),
        (dict(depth=0), "depth must be a positive integer"),
        (dict(mlp_ratio=0.001), "mlp_ratio 0.001 gives an MLP width of 0 at embed_dim 192"),
        (dict(embed_dimm=64), "did you mean 'embed_dim'"),
    ],
)
def test_bad_overrides_raise_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model("vit-tiny", **overrides)


def test_unknown_model_names_closest() -> None:
    with pytest.raises(NotFoundError, match="did you mean 'vit-nano'"):
        create_model("vit-nan")


def test_a_model_name_that_is_no_string_is_one_line() -> None:
    # create_model(3) was AttributeError: 'int' object has no attribute 'casefold' (the
    # closest-name search), ModelSpec.from_dict's model too
    from vitkit.errors import UserError
    from vitkit.models import ModelSpec, resolve_spec

    for call in (
        lambda: create_model(3),  # type: ignore[arg-type]
        lambda: resolve_spec(None),  # type: ignore[arg-type]
        lambda: ModelSpec.from_dict({"model": ["vit-tiny"], "config": {}}),
    ):
        with pytest.raises(
            UserError, match=r"^a model name is a string, got (3|None|\['vit-tiny'\])$"
        ):
            call()


def test_registry_refuses_duplicates() -> None:
    from vitkit.models import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("vit-tiny", builder=VisionTransformer)(lambda **kw: ViTConfig())


def test_embed_dim_override_keeps_head_width() -> None:
    c = resolve_spec("vit-tiny", embed_dim=384).config
    assert c.num_heads == 6  # 64-wide heads, as the preset


def test_spec_round_trips_through_json() -> None:
    model = create_model("vit-nano", image_size=28, in_chans=1, drop_path=0.1, pool="mean")
    spec: ModelSpec = model.spec
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    rebuilt = again.build()
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_init_follows_the_recipe() -> None:
    torch.manual_seed(0)
    m = create_model("vit-small")
    w = m.blocks[0].mlp.fc1.weight
    # N(0, 0.02) cut at +-2 std has std 0.0176
    assert abs(w.std().item() - 0.0176) < 0.001 and w.abs().max() <= 0.04 + 1e-6
    assert torch.all(m.blocks[0].mlp.fc1.bias == 0) and torch.all(m.head.bias == 0)
    assert torch.all(m.norm.weight == 1) and torch.all(m.blocks[3].norm1.weight == 1)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_analytic_flops_match_flop_counter(pool: str) -> None:
    for name, kw in [("vit-nano", dict(image_size=28, in_chans=1)), ("vit-tiny", {})]:
        m = create_model(name, pool=pool, **kw).eval()
        c = m.config
        x = torch.randn(1, c.in_chans, c.image_size, c.image_size)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            m(x)
        counted = counter.get_total_flops()
        assert abs(m.flops() - counted) / counted < 1e-6, (name, m.flops(), counted)


def test_attention_maps_opt_in_path() -> None:
    torch.manual_seed(0)
    m = create_model("vit-nano", image_size=28, in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    logits, maps = m.forward_attention(x)
    torch.testing.assert_close(logits, m(x), atol=1e-5, rtol=1e-4)
    assert len(maps) == m.config.depth
    assert maps[0].shape == (2, m.config.num_heads, 50, 50)
    torch.testing.assert_close(maps[-1].sum(-1), torch.ones(2, m.config.num_heads, 50))


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_class_token_last_block_gives_the_full_models_logits_and_gradients(qkv_bias: bool) -> None:
    """forward computes the last block for the class token alone; the full path is the reference."""
    torch.manual_seed(0)
    m = create_model("vit-nano", num_outputs=2, qkv_bias=qkv_bias)
    for p in m.parameters():  # zero-initialised biases would hide a wrong bias slice
        p.data.add_(0.02 * torch.randn_like(p))
    x = torch.randn(3, 3, 32, 32)

    def full(x: torch.Tensor) -> torch.Tensor:
        return m.forward_head(m.forward_features(x))

    m.eval()
    torch.testing.assert_close(m(x), full(x), atol=1e-5, rtol=1e-4)
    m.train()  # no dropout configured: the gradients must match too
    grads = []
    for fn in (m, full):
        m.zero_grad()
        fn(x).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    block = m.blocks[-1]
    h = torch.randn(2, 65, 64)
    torch.testing.assert_close(block(h, queries=3), block(h)[:, :3], atol=1e-5, rtol=1e-4)


def test_class_token_last_block_regularisation() -> None:
    """Dropouts off in eval mode; stochastic depth on both branches of the class-token block."""
    torch.manual_seed(0)
    kw = dict(dropout=0.3, attn_dropout=0.3, drop_path=0.5)
    m = create_model("vit-nano", **kw).eval()
    x = torch.randn(8, 3, 32, 32)

    def full(x: torch.Tensor) -> torch.Tensor:
        return m.forward_head(m.forward_features(x))

    torch.testing.assert_close(m(x), full(x), atol=1e-5, rtol=1e-4)
    # drop_path alone draws the same (B, 1, 1) masks in the same order on both paths
    m = create_model("vit-nano", depth=2, drop_path=0.9).train()
    outs = []
    for fn in (m, full):
        torch.manual_seed(1)
        outs.append(fn(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-4)


def test_class_token_last_block_runs_less() -> None:
    """Fewer FLOPs counted for forward than for the full path, and the analytic count follows."""
    m = create_model("vit-tiny").eval()
    x = torch.randn(1, 3, 32, 32)
    counts = []
    for fn in (m, lambda x: m.forward_head(m.forward_features(x))):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn(x)
        counts.append(counter.get_total_flops())
    ours, full = counts
    assert ours < full * 0.94  # one of 12 blocks mostly skipped
    mean = create_model("vit-tiny", pool="mean").config
    assert m.flops() == ours and mean.flops() > ours


def test_pos_embed_resampled_when_loading_other_size() -> None:
    small = create_model("vit-nano", image_size=32, patch_size=4)
    big = create_model("vit-nano", image_size=64, patch_size=4)
    big.load_state_dict(small.state_dict())
    assert big.pos_embed.shape == (1, 1 + 16 * 16, 64)
    torch.testing.assert_close(big.pos_embed[:, :1], small.pos_embed[:, :1])  # cls untouched
    assert big(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_resample_pos_embed_keeps_constant_field() -> None:
    pe = torch.cat([torch.zeros(1, 1, 8), torch.full((1, 16, 8), 0.5)], dim=1)
    out = resample_pos_embed(pe, new_grid=7, num_prefix_tokens=1)
    assert out.shape == (1, 50, 8)
    torch.testing.assert_close(out[:, 1:], torch.full((1, 49, 8), 0.5))
    assert resample_pos_embed(pe, new_grid=4, num_prefix_tokens=1) is pe


def test_drop_path_and_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    m = create_model("vit-nano", drop_path=0.5, dropout=0.2)
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))


def test_config_is_lossless_json() -> None:
    c = resolve_spec("vit-small", image_size=224, num_classes=100).config
    d = json.loads(json.dumps(dataclasses.asdict(c)))
    assert ViTConfig(**d) == c


def test_numpy_numbers_are_taken_and_stored_as_plain_python() -> None:
    """A sweep over a numpy grid: create_model(depth=np.int64(4)) said 'depth must be a positive
    integer, got np.int64(4)', qkv_bias=np.True_ 'must be True or False', dropout=np.float32(0.1)
    'must be a finite number'; now taken, and stored as int/bool/float (model.json is JSON)."""
    import numpy as np

    m = create_model(
        "vit-nano",
        image_size=np.int32(28),  # no patch_size: the default is computed from it
        depth=np.int64(2),
        embed_dim=np.int64(32),
        qkv_bias=np.False_,
        dropout=np.float32(0.25),
        mlp_ratio=np.float64(2.0),
    )
    c = m.spec.config
    assert (c.image_size, c.patch_size, c.depth, c.embed_dim, c.qkv_bias) == (28, 4, 2, 32, False)
    for name, kind in [("image_size", int), ("depth", int), ("embed_dim", int), ("num_heads", int),
                       ("qkv_bias", bool), ("dropout", float), ("mlp_ratio", float)]:  # fmt: skip
        assert type(getattr(c, name)) is kind, name
    assert m.blocks[0].attn.qkv.bias is None and len(m.blocks) == 2
    assert ModelSpec.from_dict(json.loads(json.dumps(m.spec.to_dict()))).config == c
    # what was refused still is, with the same lines
    for overrides, message in [
        (dict(depth=4.0), "depth must be a positive integer, got 4.0"),
        (dict(depth=True), "depth must be a positive integer, got True"),
        (dict(depth=np.True_), f"depth must be a positive integer, got {np.True_!r}"),
        (dict(depth=np.int64(0)), f"depth must be a positive integer, got {np.int64(0)!r}"),
        (dict(image_size=np.float64(28)), "image_size must be a positive integer, got "),
        (dict(qkv_bias=1), "qkv_bias must be True or False, got 1 (int)"),
        (dict(qkv_bias=np.int64(1)), "qkv_bias must be True or False, got "),
        (dict(dropout=np.True_), "dropout must be a finite number, got "),
    ]:
        with pytest.raises(ConfigError, match="^" + re.escape(message)):
            create_model("vit-nano", **overrides)


def test_torch_compile_vit_nano() -> None:
    pytest.importorskip("torch._inductor")
    torch.manual_seed(0)
    m = create_model("vit-nano", image_size=28, in_chans=1).eval()
    x = torch.randn(4, 1, 28, 28)
    compiled = torch.compile(m)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x), atol=1e-4, rtol=1e-4)


def test_importing_models_does_not_import_the_cli() -> None:
    code = (
        "import sys, vitkit.models; assert 'typer' not in sys.modules and 'rich' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matches_timm_with_copied_weights() -> None:
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    ours = create_model("vit-tiny", image_size=32, patch_size=4, num_classes=10).eval()
    ref = timm_vit.VisionTransformer(
        img_size=32,
        patch_size=4,
        num_classes=10,
        embed_dim=192,
        depth=12,
        num_heads=3,
    ).eval()
    assert sum(p.numel() for p in ref.parameters()) == ours.num_params()
    # timm's names are ours (blocks.i.attn.qkv, ...) except the patch projection
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_forward_names_the_input_it_takes(caplog: pytest.LogCaptureFixture) -> None:
    """A wrong size was cropped silently (29-34 px on a 28 px model) or failed deep inside."""
    m = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7).eval()
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert not caplog.records  # asking torch.fx whether it traces must not log a warning per call
    for shape in [(1, 1, 34, 34), (1, 1, 56, 56), (1, 1, 28, 35), (1, 3, 28, 28), (1, 28, 28)]:
        with pytest.raises(ValueError, match=r"takes images of shape \(B, 1, 28, 28\)"):
            m(torch.randn(shape))
    with pytest.raises(ValueError, match=r"normalised float images; got torch\.uint8"):
        m(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    traced = torch.fx.symbolic_trace(m)  # FX quantization and feature extractors trace it
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(traced(x), m(x))


def test_create_model_is_typed_as_a_model() -> None:
    from vitkit.models import Model

    m = create_model("vit-nano")
    assert isinstance(m, Model) and m.num_params() > 0 and m.flops() > 0
    assert m.spec.name == "vit-nano"


def test_preset_overrides_name_what_a_model_changes_of_its_preset() -> None:
    """Headers named a model by its preset alone: vit-tiny with embed_dim 96 and depth 4 read as
    vit-tiny. What differs from the preset at the same data sizes is named now; the sizes the
    data decides, the preset's own default patch for them and the dropout rates are not."""
    from vitkit.models import model_label, preset_overrides

    for name in list_models():  # every preset, at any data sizes: nothing changed
        for sizes in (
            DEFAULT_INPUT,
            dict(image_size=28, in_chans=1, num_classes=11, num_outputs=4),
        ):
            spec = resolve_spec(name, **sizes)
            assert (
                preset_overrides(name, spec.config) == {} and model_label(name, spec.config) == name
            )
    spec = resolve_spec("vit-tiny", embed_dim=96, depth=4, drop_path=0.1, dropout=0.2)
    assert model_label("vit-tiny", spec.config) == "vit-tiny (embed_dim 96, depth 4)"
    config = spec.to_dict()["config"]  # as model.json, export.json and bench.json hold it
    assert preset_overrides("vit-tiny", config) == {"embed_dim": 96, "depth": 4}
    spec = resolve_spec("vit-micro", image_size=28, in_chans=1, patch_size=7, mlp_ratio=2.5)
    assert model_label("vit-micro", spec.config) == "vit-micro (patch_size 7, mlp_ratio 2.5)"
    spec = resolve_spec("vit-small", embed_dim=256, pool="mean")  # the heads follow the width
    assert (
        model_label("vit-small", spec.config) == "vit-small (embed_dim 256, num_heads 4, pool mean)"
    )
    # a preset this process lacks, or a config that is none: the name as it is
    assert model_label("my-cnn", config) == "my-cnn" and model_label("vit-tiny", None) == "vit-tiny"
