"""Where the model looks: attention rollout or the last layer's attention, as a patch-grid map.

The attention probabilities come from the model's opt-in ``forward_attention`` (explicit
softmax attention), never from the default fused forward.

- **rollout** (Abnar & Zuidema, 2020): per layer, the head-averaged attention plus the residual
  connection, ``0.5 * A + 0.5 * I`` with rows renormalised, multiplied through the layers; the
  result says how much each input token flows into each output token.
- **last-layer**: the last block's head-averaged attention.

A model with a CLS token (pool='cls') reads its prediction from that token, so the map is the
CLS row over the patches. A pool='mean' model has no CLS token and averages every patch, so the
map is the mean attention each patch receives. Maps are normalised to sum to 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from vitkit.artifact import LoadedModel
from vitkit.errors import UserError, check_int
from vitkit.eval.predict import Prediction, as_loaded, model_device, prepare, topk_from_logits
from vitkit.eval.preprocess import ImageInput, array_to_pil, normalize, open_image, split_images

METHODS = ("rollout", "last-layer")


# -- pure tensor functions ------------------------------------------------------------------------
def attention_rollout(attentions: Sequence[Tensor], *, residual: bool = True) -> Tensor:
    """Per-layer (B, heads, T, T) attention -> (B, T, T) rollout, rows summing to 1.

    Row i says how much each input token contributes to output token i after the last layer.
    ``residual`` adds the skip connection as ``0.5 * A + 0.5 * I`` before multiplying.
    """
    if not attentions:
        raise ValueError("attention rollout needs at least one layer")
    b, _, t, _ = attentions[0].shape
    eye = torch.eye(t, dtype=torch.float64, device=attentions[0].device)
    joint = eye.expand(b, t, t)
    for attn in attentions:
        a = attn.double().mean(1)
        if residual:
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(-1, keepdim=True)
        joint = a @ joint
    return joint


def token_relevance(joint: Tensor, num_prefix_tokens: int) -> Tensor:
    """(B, T, T) token-to-token attention -> (B, patches) relevance of each patch, summing to 1.

    With a CLS token (``num_prefix_tokens`` = 1): the CLS row over the patches. Without one
    (pool='mean'): the mean over all query tokens of the attention each patch receives.
    """
    p = num_prefix_tokens
    rel = joint[:, 0, p:] if p > 0 else joint.mean(1)
    total = rel.sum(-1, keepdim=True)
    n = rel.shape[-1]
    return torch.where(total > 0, rel / total.clamp_min(1e-30), torch.full_like(rel, 1.0 / n))


def patch_attention(
    attentions: Sequence[Tensor], *, num_prefix_tokens: int, method: str = "rollout"
) -> Tensor:
    """Per-layer attention -> (B, grid, grid) float32 maps summing to 1 over the patch grid."""
    if method == "rollout":
        joint = attention_rollout(attentions)
    elif method == "last-layer":
        joint = attentions[-1].double().mean(1)
    else:
        raise UserError(f"unknown attention method '{method}' (use {' or '.join(METHODS)})")
    rel = token_relevance(joint, num_prefix_tokens)
    g = math.isqrt(rel.shape[-1])
    if g * g != rel.shape[-1]:
        raise ValueError(f"{rel.shape[-1]} patch tokens do not form a square grid")
    return rel.view(-1, g, g).float()


# -- on a model -----------------------------------------------------------------------------------
@dataclass
class AttentionMap:
    """One image's attention map over the patch grid, with what the model predicted."""

    map: Tensor  # (grid, grid) float32, sums to 1; row 0 is the top of the image
    method: str  # rollout | last-layer
    prediction: Prediction
    image: Image.Image | None = None  # the input as decoded (for overlays), if there is one

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.prediction.source,
            "method": self.method,
            "prediction": self.prediction.to_json(),
            "grid": list(self.map.shape),
            "attention": [[round(v, 6) for v in row] for row in self.map.tolist()],
        }


@torch.inference_mode()
def attention_maps(
    model: LoadedModel | str | os.PathLike[str],
    images: ImageInput | Iterable[ImageInput],
    *,
    method: str = "rollout",
    topk: int = 5,
) -> list[AttentionMap]:
    """Attention maps (rollout or last layer) and predictions for images, as ``predict`` takes.

    Images are preprocessed as in ``predict``; the maps come from ``forward_attention``.
    Returns one ``AttentionMap`` per image, in order: ``.map`` (grid, grid) summing to 1,
    ``.prediction`` (a ``Prediction``), ``.image``. Raises ``UserError`` for an unknown
    ``method``, a bad ``topk``, an unreadable image, or an ONNX model (it has no attention).
    """
    if method not in METHODS:
        raise UserError(f"unknown attention method '{method}' (use {' or '.join(METHODS)})")
    check_int("topk", topk)  # as predict checks it
    lm = as_loaded(model)
    net = lm.model
    if not hasattr(net, "forward_attention"):
        if lm.onnx_file:
            raise UserError(
                f"attention maps need the PyTorch model: pass the run directory, not an ONNX "
                f"file ({lm.spec.name})"
            )
        raise UserError(f"model '{lm.spec.name}' has no attention maps (no forward_attention)")
    inputs = split_images(images)
    out = []
    device = model_device(lm)
    for i, image in enumerate(inputs):
        x, source, size, mode = prepare(lm, image, i)
        logits, attns = net.forward_attention(normalize(x[None].to(device), lm.mean, lm.std))
        grid = patch_attention(attns, num_prefix_tokens=int(net.num_prefix_tokens), method=method)[
            0
        ].cpu()
        pred = Prediction(source=source, size=size, mode=mode)
        pred.topk = topk_from_logits(logits.cpu(), lm.classes, topk)[0]
        if isinstance(image, (np.ndarray, torch.Tensor)):
            shown = array_to_pil(image)
        else:
            shown = image if isinstance(image, Image.Image) else open_image(image)
        out.append(AttentionMap(map=grid, method=method, prediction=pred, image=shown))
    return out


# -- drawing --------------------------------------------------------------------------------------
# a perceptually ordered dark-to-bright ramp (close to matplotlib's 'inferno'), so the overlay
# needs no matplotlib
_RAMP = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
     [250, 193, 39], [252, 255, 164]],
    dtype=np.float64,
)  # fmt: skip


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (..., 3) on the dark-to-bright ramp."""
    v = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    stops = np.arange(len(_RAMP))
    rgb = np.stack([np.interp(v, stops, _RAMP[:, c]) for c in range(3)], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def overlay_size(
    width: int, height: int, *, min_side: int = 256, max_side: int = 1024
) -> tuple[int, int]:
    """The overlay's size: the input's aspect ratio, long side scaled into [min_side, max_side]."""
    long = max(width, height)
    scale = 1.0
    if long < min_side:
        scale = math.ceil(min_side / long)  # whole multiples keep small images crisp
    elif long > max_side:
        scale = max_side / long
    return max(1, round(width * scale)), max(1, round(height * scale))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def render_overlay(
    image: Image.Image, attention: Tensor, *, label: str | None = None, alpha: float = 0.5
) -> Image.Image:
    """The image with the attention map blended over it (and ``label`` in the top-left corner).

    The output keeps the image's aspect ratio; the patch grid is stretched over the whole image,
    as the model saw it (resized without cropping).
    """
    w, h = overlay_size(*image.size)
    # a small image scaled by a whole factor keeps its pixels (a 32 px CIFAR image is a blur
    # bilinearly); other scales are smoothed
    whole = w > image.width and w % image.width == 0 and h % image.height == 0
    resample = Image.Resampling.NEAREST if whole else Image.Resampling.BILINEAR
    base = image.convert("RGB").resize((w, h), resample)
    a = attention.detach().float().cpu().numpy()
    span = float(a.max() - a.min())
    a = (a - a.min()) / span if span > 0 else np.zeros_like(a)  # the map's own range: contrast
    heat = Image.fromarray(a.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR)
    colour = colormap(np.asarray(heat, dtype=np.float64))
    out = Image.fromarray(
        np.clip(
            (1 - alpha) * np.asarray(base, dtype=np.float64) + alpha * colour + 0.5, 0, 255
        ).astype(np.uint8)
    )
    if label:
        draw = ImageDraw.Draw(out, "RGBA")
        font = _font(max(10, min(w, h) // 14))
        pad = max(2, min(w, h) // 80)
        box = draw.textbbox((pad, pad), label, font=font)
        draw.rectangle(
            (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=(0, 0, 0, 170)
        )
        draw.text((pad, pad), label, fill=(255, 255, 255, 255), font=font)
    return out


def explanation_label(pred: Prediction) -> str:
    """``"7 (98.1%)"``, or the positions' labels with the lowest confidence for multi-output."""
    return f"{pred.label} ({100 * pred.confidence:.1f}%)"


def write_overlay(am: AttentionMap, path: str | os.PathLike[str]) -> tuple[int, int]:
    """Write the overlay with the predicted label as a PNG (atomically); return its size."""
    from pathlib import Path

    from vitkit.artifact import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"the explanation is a PNG: give an output path ending in .png, not {path}")
    if am.image is None:
        raise UserError("no image to draw the attention map on")
    img = render_overlay(am.image, am.map, label=explanation_label(am.prediction))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return img.size
