"""Batched, vectorised augmentation on the training device. No per-image Python, no PIL.

Each function takes a whole batch and a ``torch.Generator`` on the batch's device, so a batch's
augmentation is a handful of kernel launches and is reproducible from a seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitkit.errors import ConfigError


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def random_crop(x: Tensor, pad: int, g: torch.Generator, *, flip_p: float = 0.0) -> Tensor:
    """Zero-pad by ``pad``, crop back to the input size at a random offset per image, and
    (with ``flip_p`` > 0) mirror left-right with that probability, all in one gather."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad)) if pad > 0 else x
    wp = w + 2 * pad
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip_p > 0:
        flip = torch.rand(b, generator=g, device=dev) < flip_p
        cols = torch.where(flip[:, None], w - 1 - cols, cols)
    rows = dy[:, None] + torch.arange(h, device=dev)  # (B, H)
    index = rows[:, :, None] * wp + (dx[:, None] + cols)[:, None, :]  # (B, H, W) into padded
    out = padded.reshape(b, c, -1).gather(2, index.reshape(b, 1, -1).expand(b, c, -1))
    return out.view(b, c, h, w)


def random_flip(x: Tensor, g: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p``."""
    mask = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def random_affine(
    x: Tensor,
    g: torch.Generator,
    *,
    degrees: float = 10.0,
    translate: float = 0.1,
    scale: tuple[float, float] = (0.9, 1.1),
) -> Tensor:
    """Random rotation, scale and translation per image (float input), bilinear, zero fill."""
    b, dev = x.shape[0], x.device
    angle = _uniform(b, -degrees, degrees, g, dev) * (math.pi / 180)
    s = _uniform(b, scale[0], scale[1], g, dev)
    tx = _uniform(b, -translate, translate, g, dev) * 2  # affine_grid units: [-1, 1] = full side
    ty = _uniform(b, -translate, translate, g, dev) * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(
        x.dtype
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def one_hot(y: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    off = smoothing / num_classes
    return F.one_hot(y, num_classes).float() * (1.0 - smoothing) + off


def mixup(x: Tensor, y: Tensor, alpha: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Blend the batch with its reverse: x = l*x + (1-l)*x[::-1], soft labels likewise."""
    lam = _beta(alpha, g, x.device)
    return x.lerp(x.flip(0), 1 - lam), y.lerp(y.flip(0), 1 - lam)


def cutmix(x: Tensor, y: Tensor, alpha: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Paste a random box from the reversed batch; labels weighted by the pasted area."""
    _, _, h, w = x.shape
    lam = float(_beta(alpha, g, x.device))
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=g, device=x.device))
    cx = int(torch.randint(0, w, (1,), generator=g, device=x.device))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
    area = (y1 - y0) * (x1 - x0) / (h * w)
    return x, y.lerp(y.flip(0), area)


def _beta(alpha: float, g: torch.Generator, device: torch.device) -> Tensor:
    # Beta(a, a) from two Gammas, drawn with our generator so it is reproducible
    a = torch.full((2,), alpha, device=device)
    gam = torch._standard_gamma(a, generator=g)
    return gam[0] / gam.sum()


@dataclass
class AugmentConfig:
    """Which augmentations run per batch. Serialises to JSON with ``asdict``."""

    crop_pad: int = 0  # random crop after zero padding by this many pixels (0 = off)
    flip: bool = False  # random horizontal flip (off for digits: a mirrored 2 is not a 2)
    affine: bool = False  # random rotation / scale / translation (digits)
    affine_degrees: float = 10.0  # max rotation, degrees
    affine_translate: float = 0.1  # max shift, fraction of the side
    affine_scale: float = 0.1  # scale in [1 - s, 1 + s]
    mixup: float = 0.0  # mixup Beta alpha (0 = off)
    cutmix: float = 0.0  # cutmix Beta alpha (0 = off); with both on, one is picked per batch

    @classmethod
    def preset(cls, family: str, image_size: int = 32, **overrides: Any) -> AugmentConfig:
        """The default for a dataset's augmentation family: natural, digits or none."""
        if family == "natural":
            base = cls(crop_pad=max(1, image_size // 8), flip=True)
        elif family == "digits":
            base = cls(affine=True)
        elif family == "none":
            base = cls()
        else:
            raise ConfigError(f"unknown augmentation family '{family}'")
        return cls(**{**asdict(base), **overrides})

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


class BatchAugment:
    """uint8 batch on the device -> augmented, normalised float batch (+ soft labels if mixing)."""

    def __init__(
        self,
        config: AugmentConfig,
        *,
        mean: list[float],
        std: list[float],
        num_classes: int,
        device: torch.device | str,
    ) -> None:
        self.config = config
        self.num_classes = num_classes
        std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
        # x/255 normalised in one multiply-add: (x / 255 - mean) / std = x * scale + shift
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) / std_t

    def normalize(self, x: Tensor) -> Tensor:
        return x.float().mul_(self.scale).add_(self.shift)

    def __call__(self, x: Tensor, y: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
        c = self.config
        if g is None:  # evaluation: normalisation only
            return self.normalize(x), y
        if c.crop_pad:
            x = random_crop(x, c.crop_pad, g, flip_p=0.5 if c.flip else 0.0)
        elif c.flip:
            x = random_flip(x, g)
        x = self.normalize(x)
        if c.affine:
            # affine in normalised space would fill with -mean/std; shift so background stays 0
            x = (
                random_affine(
                    x - self.shift,
                    g,
                    degrees=c.affine_degrees,
                    translate=c.affine_translate,
                    scale=(1 - c.affine_scale, 1 + c.affine_scale),
                )
                + self.shift
            )
        if c.mixes and y.ndim == 1:
            soft = one_hot(y, self.num_classes)
            use_cutmix = c.cutmix > 0 and (
                c.mixup <= 0 or bool(torch.rand(1, generator=g, device=x.device) < 0.5)
            )
            x, soft = cutmix(x, soft, c.cutmix, g) if use_cutmix else mixup(x, soft, c.mixup, g)
            return x, soft
        return x, y
