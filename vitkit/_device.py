"""Which device a name means here, and the autocast dtype training and eval use on it."""

from __future__ import annotations

import torch

from vitkit.errors import UserError, check_name, setting


def device_name(name: str) -> str:
    """``name`` as torch spells it: ``CPU``, `` Cuda:0 `` and ``AUTO`` are cpu, cuda:0 and auto
    (torch knows lower case only; every command takes a device in any case, as bench does)."""
    return name.strip().lower()


def on_cpu(name: str) -> bool:
    """Whether the device ``name`` is the CPU, ``auto`` included (what ONNX Runtime runs on
    here); an unknown name is not."""
    name = device_name(name)
    try:
        return name == "auto" or torch.device(name).type == "cpu"
    except (RuntimeError, TypeError):
        return False


def resolve_device(name: str, *, here: bool = True) -> torch.device:
    """auto -> cuda, else mps, else cpu; a device that is not there is a one-line error. The
    name is read in any case (``CPU`` is cpu).

    Those errors name the setting as ``setting`` does: ``device='cuda'`` for a library caller,
    ``--device cuda`` under the CLI. ``here=False`` checks only the name (a config written on
    a laptop for a GPU machine)."""
    check_name("device", name)  # device=5: one line, not str.strip's AttributeError
    asked, instead = setting("device", name), setting("device", "cpu")
    name = device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device in {asked} (use auto, cpu, cuda, cuda:N or mps)") from None
    if not here and dev.type in ("cpu", "cuda", "mps"):
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"{asked} was asked for but CUDA is not available here "
                f"(no GPU, or a CPU-only PyTorch build); use {instead}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"{asked}: only {torch.cuda.device_count()} GPU(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{asked} was asked for but MPS is not available here")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unsupported device in {asked} (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 autocast on CUDA with ``amp`` (fp16 where bf16 is absent: training adds a grad
    scaler then), else none."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
