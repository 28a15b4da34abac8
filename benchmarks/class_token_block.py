"""What computing the last block for the class token alone buys: ``VisionTransformer.forward``
(pool='cls') against the full path ``forward_head(forward_features(x))`` of the same weights.

Per model, in one process, the two take turns cell by cell (interleaved rounds, medians; a
shared machine's speed can shift for minutes, so each pair runs back to back, first one then the
other going first): eager inference at
batch 1 and 64, a training step (forward + backward + fused AdamW) at batch 128, and ONNX
Runtime fp32 on each one's export with the attention fusion (what ``export --optimize`` keeps)
at batch 1 and 64. Logits and gradients of the two are checked equal first.

    python benchmarks/class_token_block.py [--models vit-micro,vit-tiny] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import report
from torch import Tensor, nn

from vitkit import create_model
from vitkit.bench.timing import settle
from vitkit.export.onnx import export_graph, ort_session
from vitkit.export.quantize import fuse_attention
from vitkit.train.loop import loss_fn
from vitkit.train.optim import build_optimizer

SHAPES = {"vit-micro": (28, 1), "vit-nano": (28, 1)}  # MNIST-sized; others CIFAR (32 px, RGB)


class Full(nn.Module):
    """The same model with every block computed for every token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.model.forward_features(x))


def _median_time(fn: Callable[[], Any], seconds: float) -> float:
    settle()  # the last cell's thread pool (ONNX Runtime's workers spin ~60 ms) goes idle first
    fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _order(round_: int) -> tuple[str, str]:
    """Which variant goes first: alternates by round, so neither always runs second."""
    return ("full", "class-token") if round_ % 2 == 0 else ("class-token", "full")


def bench_model(name: str, threads: int, rounds: int, seconds: float) -> dict[str, Any]:
    size, chans = SHAPES.get(name, (32, 3))
    torch.manual_seed(0)
    model = create_model(name, image_size=size, in_chans=chans, num_classes=10)
    with torch.no_grad():  # non-zero biases, so that a wrong slice would show
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    full = Full(model)
    x = torch.randn(128, chans, size, size)
    y = torch.randint(0, 10, (128,))

    # the same function: logits and gradients
    grads = []
    for fn in (full, model):
        model.zero_grad()
        loss_fn(fn(x), y, 0.1).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    grad_diff = max((a - b).abs().max().item() for a, b in zip(*grads, strict=True))
    model.eval()
    with torch.inference_mode():
        logit_diff = (full(x) - model(x)).abs().max().item()

    sessions = {}
    xs = x[:64].numpy()
    for variant, module in (("full", full), ("class-token", model)):
        plain, _, _ = export_graph(module, image_size=size, channels=chans)
        fused, _ = fuse_attention(plain, num_heads=model.config.num_heads)
        sessions[variant] = ort_session(fused, threads=threads)
    onnx_diff = float(
        np.abs(
            sessions["full"].run(None, {"pixel_values": xs})[0]
            - sessions["class-token"].run(None, {"pixel_values": xs})[0]
        ).max()
    )

    def train_step(fn: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(fn(x), y, 0.1).backward()
            opt.step()

        return step

    cells: dict[str, dict[str, Callable[[], Any]]] = {}
    for variant, module in (("full", full), ("class-token", model)):
        sess = sessions[variant]
        per: dict[str, Callable[[], Any]] = {}
        for b in (1, 64):
            xb, xn = x[:b].contiguous(), xs[:b].copy()
            per[f"eager b{b}"] = lambda m=module, xb=xb: m(xb)
            per[f"ort b{b}"] = lambda s=sess, xn=xn: s.run(None, {"pixel_values": xn})
        cells[variant] = per
    times: dict[str, dict[str, list[float]]] = {v: {} for v in cells}
    model.eval()
    with torch.inference_mode():
        for r in range(rounds):
            for cell in cells["full"]:  # the two variants back to back, cell by cell
                for variant in _order(r):
                    fn = cells[variant][cell]
                    times[variant].setdefault(cell, []).append(_median_time(fn, seconds))
    # training: fresh copies of the weights per variant, so both step the same model
    for r in range(rounds):
        for variant in _order(r):
            m = create_model(name, image_size=size, in_chans=chans, num_classes=10)
            m.load_state_dict(model.state_dict())
            m.train()
            fn = Full(m) if variant == "full" else m
            opt = build_optimizer(m, lr=1e-3, weight_decay=0.05, device=torch.device("cpu"))
            t = _median_time(train_step(fn, opt), seconds)
            times[variant].setdefault("train step b128", []).append(t)
    med = {v: {c: statistics.median(ts) for c, ts in per.items()} for v, per in times.items()}
    return {
        "image": [chans, size, size],
        "depth": model.config.depth,
        "flops_per_image": {"full": _full_flops(model), "class-token": model.flops()},
        "max_abs_diff": {"logits": logit_diff, "gradients": grad_diff, "onnx": onnx_diff},
        "p50_ms": {v: {c: round(t * 1e3, 3) for c, t in per.items()} for v, per in med.items()},
        "rounds_ms": {
            v: {c: [round(t * 1e3, 3) for t in ts] for c, ts in per.items()}
            for v, per in times.items()
        },
        "speedup": {c: round(med["full"][c] / med["class-token"][c], 3) for c in med["full"]},
    }


def _full_flops(model: nn.Module) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    c = model.config
    x = torch.randn(1, c.in_chans, c.image_size, c.image_size)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        Full(model)(x)
    return int(fc.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vit-micro,vit-tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.5, help="timing per cell and round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "threads": {"torch": torch.get_num_threads(), "onnxruntime": args.threads},
        "rounds": args.rounds,
        "models": {
            name: bench_model(name, args.threads, args.rounds, args.seconds)
            for name in args.models.split(",")
        },
    }
    report("class_token_block", result)


if __name__ == "__main__":
    main()
