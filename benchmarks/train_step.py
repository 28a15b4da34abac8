"""How much the training loop costs on top of the bare model step.

(a) bare: forward + backward + fused AdamW step on one fixed in-memory batch, nothing else.
(b) loop: `vitkit.train.train` over the real dataset (data, augmentation, schedule, logging,
    NaN checks), same model, batch size and process.
Both are timed in windows of ``--window`` steps after a warm-up; the medians are compared.
Achieved GFLOP/s uses the model's analytic FLOPs x 3 (forward + backward) per image.

    python benchmarks/train_step.py [--device cpu] [--steps 30] [--window 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import cifar10_jpeg_tree, report

from vitkit import create_model
from vitkit.train import TrainConfig, train
from vitkit.train.callbacks import Callback, StepInfo
from vitkit.train.loop import loss_fn
from vitkit.train.optim import build_optimizer


def bare(
    model_name: str,
    image_size: int,
    chans: int,
    classes: int,
    batch: int,
    device: torch.device,
    steps: int,
    window: int,
    overrides: dict[str, Any],
) -> float:
    torch.manual_seed(0)
    model = create_model(
        model_name, image_size=image_size, in_chans=chans, num_classes=classes, **overrides
    ).to(device)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, device=device)
    x = torch.randn(batch, chans, image_size, image_size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    rates = []
    for i in range(steps // window + 1):
        t0 = time.perf_counter()
        for _ in range(window):
            loss = loss_fn(model(x), y, 0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # the first window is warm-up
            rates.append(window * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


class Rates(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_step(self, info: StepInfo) -> None:
        self.rates.append(info.images_per_s)


def loop(
    dataset: str,
    model_name: str,
    batch: int,
    device: torch.device,
    steps: int,
    window: int,
    overrides: dict[str, Any],
    data_root: Path,
) -> float:
    rates = Rates()
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            dataset=dataset,
            model=model_name,
            model_overrides=overrides,
            epochs=1,
            batch_size=batch,
            max_steps=steps + window,
            log_every=window,
            val_fraction=0.0,
            device=str(device),
            out=out + "/run",
            overwrite=True,
        )
        train(cfg, callbacks=[rates], data_root=data_root)
    return statistics.median(rates.rates[1:])  # the first window is warm-up


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--window", type=int, default=5, help="steps per timing window")
    p.add_argument("--data", help="extracted cifar10-jpeg folder (default: from shared/data)")
    args = p.parse_args()
    device = torch.device(args.device)
    from _common import SHARED_DATA

    root = Path(tempfile.gettempdir()) / "vitkit-bench" / "data-root"
    mnist = root / "mnist"
    mnist.mkdir(parents=True, exist_ok=True)
    for f in (SHARED_DATA / "mnist").glob("*.gz"):
        if not (mnist / f.name).exists():
            (mnist / f.name).symlink_to(f)
    cases = [
        ("vit-tiny", f"folder:{cifar10_jpeg_tree(args.data)}", 32, 3, 10, 64, {}),
        ("vit-nano", "mnist", 28, 1, 10, 128, {}),
    ]
    results = []
    for name, dataset, size, chans, classes, batch, over in cases:
        a = bare(name, size, chans, classes, batch, device, args.steps, args.window, over)
        b = loop(dataset, name, batch, device, args.steps, args.window, over, root)
        flops = create_model(
            name, image_size=size, in_chans=chans, num_classes=classes, **over
        ).flops()
        results.append(
            {
                "model": name,
                "dataset": dataset.split("/")[-1],
                "image_size": size,
                "batch_size": batch,
                "bare_images_per_s": round(a, 1),
                "loop_images_per_s": round(b, 1),
                "ratio": round(b / a, 3),
                "bare_gflops_per_s": round(a * 3 * flops / 1e9, 1),
                "loop_gflops_per_s": round(b * 3 * flops / 1e9, 1),
            }
        )
    report("train_step", {"device": str(device), "results": results})


if __name__ == "__main__":
    main()
