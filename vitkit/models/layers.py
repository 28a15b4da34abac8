"""The pieces of a Vision Transformer, one small class each.

Read top to bottom: PatchEmbed turns an image into tokens, Block = pre-norm Attention + Mlp with
residuals and stochastic depth. Attention uses ``F.scaled_dot_product_attention`` (flash / memory
efficient kernels where the device has them); ``Attention.forward_with_attn`` is the explicit,
slower path used only when a caller asks for the attention probabilities, and ``queries=``
(the class-token block: one query row, nothing for a fused kernel to save) is explicit too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _tracing() -> bool:
    """Under torch.fx's symbolic trace or TorchScript's tracer (a shape is a proxy there)."""
    fx = getattr(torch.fx, "_symbolic_trace", None)
    symbolic = getattr(fx, "is_fx_symbolic_tracing", None) or getattr(fx, "is_fx_tracing", None)
    return bool(torch.jit.is_tracing() or (symbolic is not None and symbolic()))


class PatchEmbed(nn.Module):
    """Image (B, C, H, W) -> tokens (B, N, D) with one strided convolution."""

    def __init__(self, *, image_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.image_size, self.in_chans = image_size, in_chans
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size * self.grid_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        c, s = self.in_chans, self.image_size
        if _tracing():  # symbolic tracers cannot branch on shapes; torch.export/compile can
            return self.proj(x).flatten(2).transpose(1, 2)
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            # the convolution would crop a larger image silently, or fail deep inside on a smaller one
            raise ValueError(
                f"this model takes images of shape (B, {c}, {s}, {s}); got {tuple(x.shape)} "
                "(resize first, or use vitkit.predict, which does)"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"this model takes normalised float images; got {x.dtype} "
                "(vitkit.predict normalises uint8 images as the model was trained)"
            )
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each (B, heads, N, head_dim)

    def _out(self, x: Tensor) -> Tensor:
        b, _, n, _ = x.shape
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, -1)))

    def forward(self, x: Tensor, *, queries: int | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D); with ``queries=Q``, the output of the first Q tokens only."""
        if queries is not None:
            return self._forward_queries(x, queries)
        q, k, v = self._qkv(x)
        p = self.attn_drop if self.training else 0.0
        return self._out(F.scaled_dot_product_attention(q, k, v, dropout_p=p))

    def _forward_queries(self, x: Tensor, queries: int) -> Tensor:
        # Every token is still a key and a value; only the first `queries` rows are projected to
        # queries, attended and projected out. The scores are (queries x N): for one class token
        # a single row, where a fused kernel saves nothing, and the explicit form exports to a
        # smaller ONNX graph than SDPA's with a different query length.
        b, n, _ = x.shape
        d = self.qkv.in_features  # a Python int: the slices below trace to constants
        w, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, :queries], w[:d], None if bias is None else bias[:d])
        kv = F.linear(x, w[d:], None if bias is None else bias[d:])
        q = q.reshape(b, queries, self.num_heads, self.head_dim).transpose(1, 2)
        kv = kv.reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q * self.head_dim**-0.5) @ kv[0].transpose(-2, -1)).softmax(dim=-1)
        if self.training and self.attn_drop > 0:
            attn = F.dropout(attn, self.attn_drop)
        return self._out(attn @ kv[1])

    def forward_with_attn(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Same output as ``forward`` (in eval mode) plus the attention probabilities (B, H, N, N)."""
        q, k, v = self._qkv(x)
        attn = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        return self._out(attn @ v), attn


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, *, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(Mlp(LN(x)))."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, *, queries: int | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D); with ``queries=Q``, (B, Q, D): the first Q tokens' outputs only
        (every token still attended to), the same values as ``forward(x)[:, :Q]`` for less work."""
        if queries is None:
            x = x + self.drop_path1(self.attn(self.norm1(x)))
        else:
            x = x[:, :queries] + self.drop_path1(self.attn(self.norm1(x), queries=queries))
        return x + self.drop_path2(self.mlp(self.norm2(x)))

    def forward_with_attn(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, attn = self.attn.forward_with_attn(self.norm1(x))
        x = x + self.drop_path1(y)
        return x + self.drop_path2(self.mlp(self.norm2(x))), attn


def resample_pos_embed(
    pos_embed: Tensor, *, new_grid: int, num_prefix_tokens: int, mode: str = "bicubic"
) -> Tensor:
    """Interpolate a (1, prefix + g*g, D) position embedding to a new square grid (pure function)."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = round(grid.shape[1] ** 0.5)
    if old * old != grid.shape[1]:
        raise ValueError(f"position embedding of {grid.shape[1]} tokens is not a square grid")
    if old == new_grid:
        return pos_embed
    d = grid.shape[-1]
    grid = grid.reshape(1, old, old, d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, d).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)
