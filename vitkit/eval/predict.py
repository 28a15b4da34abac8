"""predict(): top-k classes with probabilities for image files, PIL images or arrays."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitkit.artifact import LoadedModel, load_model
from vitkit.errors import UserError, check_bool, check_int
from vitkit.eval.preprocess import (
    ACCEPTED,
    ImageInput,
    array_to_pil,
    is_file_like,
    normalize,
    read_image,
    split_images,
    to_uint8,
)


@dataclass
class ClassProb:
    """One class and its softmax probability."""

    name: str
    index: int
    prob: float  # in [0, 1]

    def to_json(self) -> dict[str, Any]:
        return {"class": self.name, "index": self.index, "prob": self.prob}


@dataclass
class Prediction:
    """What the model says about one image; ``error`` is set (and ``topk`` empty) if unreadable."""

    source: str  # the file path, or "<image N>" for a PIL image or an array
    topk: list[list[ClassProb]] = field(default_factory=list)  # per output position, best first
    size: tuple[int, int] | None = None  # the input's (width, height) before resizing
    mode: str | None = None  # the input's PIL mode (L, RGB, RGBA, I;16, ...)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def labels(self) -> list[str]:
        """The top-1 class per output position."""
        return [pos[0].name for pos in self.topk]

    @property
    def label(self) -> str:
        """The top-1 class (positions joined by spaces for multi-output models)."""
        return " ".join(self.labels)

    @property
    def confidence(self) -> float:
        """Top-1 probability (the lowest over positions for multi-output models)."""
        return min((pos[0].prob for pos in self.topk), default=0.0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.error is not None:
            return {**out, "error": self.error}
        out.update(
            label=self.label,
            confidence=self.confidence,
            size=list(self.size) if self.size else None,
            mode=self.mode,
        )
        if len(self.topk) == 1:
            out["topk"] = [c.to_json() for c in self.topk[0]]
        else:
            out["labels"] = self.labels
            out["positions"] = [[c.to_json() for c in pos] for pos in self.topk]
        return out


def as_loaded(model: LoadedModel | str | os.PathLike[str]) -> LoadedModel:
    """A ``LoadedModel`` as given, or the run at that path loaded on the CPU."""
    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, os.PathLike)):
        bare = (
            ": a bare module has no classes or preprocessing (a run's model.json holds them)"
            if isinstance(model, torch.nn.Module)
            else ""
        )
        raise UserError(
            "expected a run directory, a .onnx file or vitkit.load_model(...)'s result, got "
            f"{type(model).__name__}{bare}"
        )
    return load_model(model)


def model_device(lm: LoadedModel) -> torch.device:
    p = next(lm.model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def prepare(
    lm: LoadedModel, image: object, index: int = 0
) -> tuple[Tensor, str, tuple[int, int], str]:
    """One input -> ((C, S, S) uint8, source name, original (w, h), original mode)."""
    if isinstance(image, (np.ndarray, Tensor)):
        image = array_to_pil(image)
    if isinstance(image, Image.Image):
        x = to_uint8(image, channels=lm.channels, size=lm.image_size)
        return x, f"<image {index}>", image.size, image.mode
    if is_file_like(image):  # an open binary file: an upload, io.BytesIO(data)
        x, size, mode = read_image(image, channels=lm.channels, size=lm.image_size)  # type: ignore[arg-type]
        name = getattr(image, "name", None)
        return x, str(name) if isinstance(name, str) else f"<image {index}>", size, mode
    if not isinstance(image, (str, os.PathLike)):
        raise UserError(
            f"cannot read an object of type {type(image).__name__} as an image: pass {ACCEPTED}"
        )
    x, size, mode = read_image(image, channels=lm.channels, size=lm.image_size)
    return x, str(image), size, mode


def topk_from_logits(logits: Tensor, classes: Sequence[str], k: int) -> list[list[list[ClassProb]]]:
    """(B, C) or (B, K, C) logits -> per image, per position, the top-k classes (softmax)."""
    if logits.ndim == 2:
        logits = logits[:, None]
    probs = logits.float().softmax(-1)
    k = max(1, min(k, probs.shape[-1]))
    values, indices = probs.topk(k, dim=-1)
    names = list(classes) or [str(i) for i in range(probs.shape[-1])]
    return [
        [
            [
                ClassProb(names[i], i, float(p))
                for p, i in zip(vs.tolist(), ix.tolist(), strict=True)
            ]
            for vs, ix in zip(v_img, i_img, strict=True)
        ]
        for v_img, i_img in zip(values, indices, strict=True)
    ]


@torch.inference_mode()
def predict(
    model: LoadedModel | str | os.PathLike[str],
    images: ImageInput | Iterable[ImageInput],
    *,
    topk: int = 5,
    batch_size: int = 64,
    skip_unreadable: bool = False,
) -> list[Prediction]:
    """Classify image files, PIL images or arrays, preprocessed exactly as the model was trained.

    ``images``: one image or a sequence of them; a numpy array is one image (H, W) or (H, W, C)
    (C of 1, 3 or 4), or a batch (N, H, W, C) or (N, H, W); a tensor one image (H, W) or
    (C, H, W), or a batch (N, C, H, W); a shape that reads both ways is refused
    (``split_images``). Arrays are uint8, bool, or float in [0, 1].
    Any size, any mode (grayscale, RGB, RGBA, palette, 16-bit): converted to the model's channels,
    resized to its image size, normalised with its mean and std (all from model.json). Runs on
    the device the model is on.

    Returns one ``Prediction`` per image, in order (a folder or glob counts as its files):
    ``.label``, ``.confidence`` and ``.topk`` (per output position, the ``topk`` most probable
    ``ClassProb``s, best first). Raises ``UserError`` for a missing path, a bad ``topk`` or
    ``batch_size``, a ``skip_unreadable`` that is not a bool, or an unreadable file (with
    ``skip_unreadable``, that image's ``Prediction`` has ``error`` saying why instead).
    """
    check_int("topk", topk)
    check_int("batch size", batch_size)
    skip_unreadable = check_bool("skip_unreadable", skip_unreadable)
    lm = as_loaded(model)
    inputs = split_images(images)
    device = model_device(lm)
    results: list[Prediction] = []
    pending: list[tuple[int, Tensor]] = []  # one batch at a time: memory stays flat

    def run_pending() -> None:
        x = torch.stack([t for _, t in pending]).to(device)
        logits = lm.model(normalize(x, lm.mean, lm.std))
        for (slot, _), top in zip(
            pending, topk_from_logits(logits.cpu(), lm.classes, topk), strict=True
        ):
            results[slot].topk = top
        pending.clear()

    for i, image in enumerate(inputs):
        try:
            x, source, size, mode = prepare(lm, image, i)
        except UserError as e:
            if not skip_unreadable:
                raise
            label = image if isinstance(image, (str, os.PathLike)) else f"<image {i}>"
            results.append(Prediction(source=str(label), error=str(e)))
            continue
        results.append(Prediction(source=source, size=size, mode=mode))
        pending.append((len(results) - 1, x))
        if len(pending) == batch_size:
            run_pending()
    if pending:
        run_pending()
    return results
