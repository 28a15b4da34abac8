"""The Vision Transformer: its config, the module, and the presets. Reads top to bottom.

    image -> PatchEmbed -> [cls] + pos_embed -> Block x depth -> LayerNorm -> pool -> head

Presets only fix width/depth/heads; image size, patch size, channels, classes and the
regularisation knobs are overrides, so one preset serves MNIST (28 px), CIFAR (32 px) and
ImageNet-sized inputs (224 px).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vitkit.errors import ConfigError, UserError, check_bool, is_count, setting, suggest
from vitkit.models._registry import Model, register_model
from vitkit.models.layers import Block, PatchEmbed, resample_pos_embed

POOLS = ("cls", "mean")
MAX_TOKENS = 65_536  # patches (256x256): far past any ViT recipe, still a buildable model
MAX_PARAMS = 4_000_000_000  # ViT-g is 1B; more would not fit in memory anyway (16 GB fp32)


def default_patch_size(image_size: int) -> int:
    """Patch side for an image side: 4 for 28 and 32 px, 5 for 30, 16 for 224.

    Small images (<= 64 px) aim at a grid of at most 8x8 tokens with patches of at least 4 px;
    larger ones at most 14x14 (ViT's 224/16). The smallest divisor of ``image_size`` that gets
    there is taken, as long as it leaves a grid of at least 2x2: a prime size such as 29 or 31
    would get a single patch (one token: no attention to speak of), so it is a ``ConfigError``.
    """
    if not is_count(image_size):  # numpy's integers pass (a sweep's grid), True does not
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    image_size = int(image_size)
    target = 8 if image_size <= 64 else 14
    for p in range(4, image_size // 2 + 1):
        if image_size % p == 0 and image_size // p <= target:
            return p
    raise ConfigError(
        f"no patch size of 4 px or more cuts image size {image_size} into a grid of 2x2 to "
        f"{target}x{target} patches; pass {setting('patch_size')}, or resize the images"
    )


@dataclass
class ViTConfig:
    """Every number that defines a ViT. Serialises to JSON and back with ``dataclasses.asdict``.

    Numpy numbers (a sweep's ``np.int64(4)``, ``np.True_``) are taken and stored as plain
    ``int``/``float``/``bool``, so the config stays JSON."""

    image_size: int = 32  # input side in pixels (images are square)
    patch_size: int = 4  # patch side in pixels; must divide image_size
    in_chans: int = 3  # input channels: 3 for RGB, 1 for grayscale
    num_classes: int = 10  # classes per output position
    num_outputs: int = 1  # output positions: 1 -> logits (B, C); K > 1 -> (B, K, C)
    embed_dim: int = 192  # token width; must be divisible by num_heads
    depth: int = 12  # number of transformer blocks
    num_heads: int = 3  # attention heads per block
    mlp_ratio: float = 4.0  # MLP hidden width as a multiple of embed_dim
    qkv_bias: bool = True  # bias on the q/k/v projection (ViT and timm use one)
    dropout: float = 0.0  # dropout on embeddings, projections, MLP and head input
    attn_dropout: float = 0.0  # dropout on attention probabilities
    drop_path: float = 0.0  # stochastic depth rate at the last block (linear from 0)
    pool: str = "cls"  # 'cls': read the class token; 'mean': average the patch tokens

    # what only training uses: the same network at inference (preset_overrides leaves them out)
    TRAIN_ONLY: ClassVar[tuple[str, ...]] = ("dropout", "attn_dropout", "drop_path")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field, and make numpy numbers plain Python ones (in place)."""

        def positive(name: str) -> None:
            v = getattr(self, name)
            if not is_count(v):  # numpy's integers pass; True, 2.0 and "2" do not
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))  # np.int64 is no JSON

        for name in (
            "image_size",
            "patch_size",
            "in_chans",
            "num_classes",
            "num_outputs",
            "embed_dim",
            "depth",
            "num_heads",
        ):
            positive(name)
        try:  # "yes", 1: truthy, and written to model.json; np.True_ is taken, as a bool
            self.qkv_bias = check_bool("qkv_bias", self.qkv_bias)
        except UserError as e:
            raise ConfigError(str(e)) from None
        if self.embed_dim % self.num_heads:
            raise ConfigError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
                f" (try {_near_divisible(self.embed_dim, self.num_heads)})"
            )
        if self.image_size % self.patch_size:
            divs = [p for p in range(2, self.image_size + 1) if self.image_size % p == 0][:6]
            raise ConfigError(
                f"patch_size {self.patch_size} does not divide image_size {self.image_size}"
                f" (patch sizes that do: {', '.join(map(str, divs))})"
            )
        for name in ("mlp_ratio", "dropout", "attn_dropout", "drop_path"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
            if type(v) not in (int, float):  # np.float32(0.1), np.int64(2): plain, for JSON
                setattr(self, name, int(v) if isinstance(v, numbers.Integral) else float(v))
        if self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.mlp_hidden < 1:  # Linear(dim, 0): a block with no MLP
            raise ConfigError(
                f"mlp_ratio {self.mlp_ratio:g} gives an MLP width of 0 at embed_dim "
                f"{self.embed_dim} (the width is embed_dim x mlp_ratio, rounded down)"
            )
        for name in ("dropout", "attn_dropout", "drop_path"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {v}")
        if self.grid_size**2 > MAX_TOKENS:
            raise ConfigError(
                f"image_size {self.image_size} with patch_size {self.patch_size} makes "
                f"{self.grid_size**2:,} patches; at most {MAX_TOKENS:,} (a larger patch_size, or "
                "a smaller image_size)"
            )
        if self.num_params() > MAX_PARAMS:
            raise ConfigError(
                f"this model would have {self.num_params():,} parameters (patch_size "
                f"{self.patch_size}, embed_dim {self.embed_dim}, depth {self.depth}); at most "
                f"{MAX_PARAMS:,}"
            )
        if not isinstance(self.pool, str) or self.pool not in POOLS:
            close = suggest(self.pool, POOLS) if isinstance(self.pool, str) else ""  # clss
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}{close}")

    # -- derived sizes ----------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.pool == "cls" else 0

    @property
    def num_tokens(self) -> int:
        return self.grid_size**2 + self.num_prefix_tokens

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- analytic counts --------------------------------------------------------------------
    def num_params(self) -> int:
        """Trainable parameters, counted from the config (equals the module's count)."""
        d, h, c, p = self.embed_dim, self.mlp_hidden, self.in_chans, self.patch_size
        patch = c * p * p * d + d
        tokens = self.num_prefix_tokens * d + self.num_tokens * d  # cls + pos_embed
        block = (
            4 * d  # two LayerNorms
            + 3 * d * d
            + (3 * d if self.qkv_bias else 0)  # qkv
            + d * d
            + d  # proj
            + d * h
            + h
            + h * d
            + d  # MLP
        )
        out = self.num_classes * self.num_outputs
        return patch + tokens + self.depth * block + 2 * d + d * out + out

    def flops(self) -> int:
        """FLOPs of ``forward`` per image (2 x multiply-adds of every matmul/conv, as
        FlopCounterMode counts them).

        With ``pool='cls'`` the last block computes the class token's output alone (keys and
        values still for every token), as ``VisionTransformer.forward`` does.
        """
        d, h, t = self.embed_dim, self.mlp_hidden, self.num_tokens
        n = self.grid_size**2

        def block(q: int) -> int:  # q query tokens out of t
            qkv = 2 * q * d * d + 2 * t * d * 2 * d
            return qkv + 2 * 2 * q * t * d + 2 * q * d * d + 2 * 2 * q * d * h

        patch = 2 * n * self.in_chans * self.patch_size**2 * d
        blocks = (self.depth - 1) * block(t) + block(1 if self.pool == "cls" else t)
        head = 2 * d * self.num_classes * self.num_outputs
        return patch + blocks + head


def _near_divisible(dim: int, heads: int) -> str:
    lo = dim - dim % heads
    return f"embed_dim {lo} or {lo + heads}" if lo > 0 else f"embed_dim {heads}"


def _trunc_normal(t: Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


class VisionTransformer(Model):
    """ViT (Dosovitskiy et al., 2021) with pre-norm blocks and SDPA attention."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = cfg = config
        d = cfg.embed_dim
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.patch_embed = PatchEmbed(
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            embed_dim=d,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, d))
        self.pos_drop = nn.Dropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks: nn.ModuleList = nn.ModuleList(
            Block(
                d,
                num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                drop=cfg.dropout,
                attn_drop=cfg.attn_dropout,
                drop_path=r,
            )
            for r in rates
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(d, cfg.num_classes * cfg.num_outputs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated normal weights (std 0.02, cut at 2 std), zero biases, LayerNorm weight 1."""
        _trunc_normal(self.pos_embed)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                _trunc_normal(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names (besides norms and biases) that take no weight decay."""
        return {"pos_embed", "cls_token"}

    # -- forward ----------------------------------------------------------------------------
    def _embed(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self.pos_embed)

    def forward_features(self, x: Tensor) -> Tensor:
        """Image (B, C, H, W) -> normalised tokens (B, T, D)."""
        x = self._embed(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Tokens (B, T, D) -> logits (B, C), or (B, K, C) when num_outputs = K > 1."""
        x = x[:, 0] if self.config.pool == "cls" else x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.head_drop(x)
        if pre_logits:
            return x
        x = self.head(x)
        k = self.config.num_outputs
        return x if k == 1 else x.unflatten(-1, (k, self.config.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Image (B, C, H, W) -> logits; equal to ``forward_head(forward_features(x))``.

        With ``pool='cls'`` nothing reads the patch tokens after the last block, so that block
        computes the class token's output alone (every token still serves as key and value): the
        same logits and gradients, for ~1/depth less work (``ViTConfig.flops`` counts it so).
        """
        if self.config.pool != "cls":
            return self.forward_head(self.forward_features(x))
        x = self._embed(x)
        *blocks, last = self.blocks
        for block in blocks:
            x = block(x)
        return self.forward_head(self.norm(last(x, queries=1)))

    def forward_attention(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits plus every block's attention probabilities, each (B, heads, T, T).

        An opt-in path with explicit softmax attention and every block in full, for
        visualisation; ``forward`` stays on the fused SDPA kernel (but for the class-token
        block's one-row attention).
        """
        x = self._embed(x)
        maps = []
        for block in self.blocks:
            assert isinstance(block, Block)
            x, attn = block.forward_with_attn(x)
            maps.append(attn)
        return self.forward_head(self.norm(x)), maps

    # -- sizes ------------------------------------------------------------------------------
    def flops(self) -> int:
        """Analytic forward FLOPs per image (see ``ViTConfig.flops``)."""
        return self.config.flops()

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # weights trained at another image size: resample the position embedding to our grid
        key = prefix + "pos_embed"
        if key in state_dict and state_dict[key].shape != self.pos_embed.shape:
            old = state_dict[key]
            if old.shape[-1] == self.pos_embed.shape[-1]:
                state_dict[key] = resample_pos_embed(
                    old, new_grid=self.config.grid_size, num_prefix_tokens=self.num_prefix_tokens
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# -- presets ---------------------------------------------------------------------------------
_FIELDS = [f.name for f in dataclasses.fields(ViTConfig)]


def make_vit_config(preset: dict[str, Any], overrides: dict[str, Any]) -> ViTConfig:
    """Merge a preset with user overrides; unknown names get a did-you-mean error."""
    for key in overrides:
        if key not in _FIELDS:
            raise ConfigError(f"unknown model option '{key}'{suggest(key, _FIELDS)}")
    merged = {**preset, **overrides}
    if merged.get("patch_size") is None:
        merged["patch_size"] = default_patch_size(merged.get("image_size", 32))
    if "num_heads" not in overrides and "embed_dim" in overrides:
        # keep the preset's head width (64) when only the width changes, if it divides
        hd = preset["embed_dim"] // preset["num_heads"]
        if overrides["embed_dim"] % hd == 0:
            merged["num_heads"] = overrides["embed_dim"] // hd
    return ViTConfig(**merged)


def _vit(name: str, embed_dim: int, depth: int, num_heads: int, doc: str, **extra: Any) -> None:
    preset = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **extra)

    def make(**overrides: Any) -> ViTConfig:
        return make_vit_config(preset, overrides)

    make.__doc__ = doc
    register_model(name, builder=VisionTransformer, description=doc)(make)


_vit("vit-nano", 64, 4, 2, "tiny 4-block ViT for tests and quick experiments", mlp_ratio=2.0)
_vit("vit-micro", 96, 6, 3, "small ViT for MNIST-sized data on a CPU", mlp_ratio=2.0)
_vit("vit-tiny", 192, 12, 3, "ViT-Ti (DeiT-Tiny widths): 192 dim, 12 blocks, 3 heads")
_vit("vit-small", 384, 12, 6, "ViT-S: 384 dim, 12 blocks, 6 heads")
_vit("vit-base", 768, 12, 12, "ViT-B: 768 dim, 12 blocks, 12 heads")
