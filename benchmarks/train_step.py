"""How much the training loop costs on top of the bare model step.

(a) bare: forward + backward + fused AdamW step on one fixed in-memory batch, nothing else.
(b) loop: `vitkit.train.train` over the real dataset (data, augmentation, schedule, logging,
    NaN checks), same model, batch size and process.
Both are timed in alternating windows of ``--window`` steps (a bare window runs between two
reports of the loop), so both see the same machine load; the first pair is warm-up; the medians
are compared.
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


class Bare:
    """(a): forward + backward + clip + fused AdamW on one fixed batch, nothing else."""

    def __init__(
        self,
        model_name: str,
        image_size: int,
        chans: int,
        classes: int,
        batch: int,
        device: torch.device,
        overrides: dict[str, Any],
    ) -> None:
        torch.manual_seed(0)
        self.model = create_model(
            model_name, image_size=image_size, in_chans=chans, num_classes=classes, **overrides
        ).to(device)
        self.opt = build_optimizer(self.model, lr=1e-3, weight_decay=0.05, device=device)
        self.x = torch.randn(batch, chans, image_size, image_size, device=device)
        self.y = torch.randint(0, classes, (batch,), device=device)
        self.device = device

    def window(self, steps: int) -> float:
        """Images per second over ``steps`` steps."""
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = loss_fn(self.model(self.x), self.y, 0.1)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return steps * len(self.x) / (time.perf_counter() - t0)


class Interleave(Callback):
    """Between two reports of the loop, time one bare window: both see the same machine load."""

    def __init__(self, bare: Bare, window: int) -> None:
        self.bare, self.window = bare, window
        self.loop_rates: list[float] = []
        self.bare_rates: list[float] = []

    def on_step(self, info: StepInfo) -> None:
        self.loop_rates.append(info.images_per_s)
        self.bare_rates.append(self.bare.window(self.window))


def measure(
    dataset: str,
    model_name: str,
    size: int,
    chans: int,
    classes: int,
    batch: int,
    device: torch.device,
    steps: int,
    window: int,
    overrides: dict[str, Any],
    data_root: Path,
) -> tuple[float, float]:
    bare = Bare(model_name, size, chans, classes, batch, device, overrides)
    cb = Interleave(bare, window)
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
        train(cfg, callbacks=[cb], data_root=data_root)
    # the first pair is warm-up
    return statistics.median(cb.bare_rates[1:]), statistics.median(cb.loop_rates[1:])


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
        a, b = measure(
            dataset, name, size, chans, classes, batch, device, args.steps, args.window, over, root
        )
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
