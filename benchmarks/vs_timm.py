"""Our eager ViT against timm's VisionTransformer of the same dims, same machine, same process.

vit-tiny at 32 px, patch 4, 10 classes, inference (no_grad, eval). Timings alternate between
the two models (one timed block each, repeated), after warm-up; medians of per-batch latency.
timm is a benchmark/test dependency only: `pip install timm`.

    python benchmarks/vs_timm.py [--batch-sizes 1,64] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import report

from vitkit import create_model


def block(model: torch.nn.Module, x: torch.Tensor, n: int) -> float:
    """Seconds per batch over ``n`` batches."""
    t0 = time.perf_counter()
    for _ in range(n):
        model(x)
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        raise SystemExit("this benchmark needs timm: pip install timm") from None
    torch.manual_seed(0)
    ours = create_model("vit-tiny", image_size=32, patch_size=4, num_classes=10).eval()
    theirs = VisionTransformer(
        img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=12, num_heads=3
    ).eval()
    theirs.load_state_dict(ours.state_dict())
    results = []
    with torch.no_grad():
        for b in (int(s) for s in args.batch_sizes.split(",")):
            x = torch.randn(b, 3, 32, 32)
            torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=1e-4)
            n = max(1, 64 // b)  # batches per timed block
            for _ in range(3):  # warm-up
                block(ours, x, n), block(theirs, x, n)
            t_ours, t_timm = [], []
            for _ in range(args.repeats):
                t_ours.append(block(ours, x, n))
                t_timm.append(block(theirs, x, n))
            a, t = statistics.median(t_ours), statistics.median(t_timm)
            results.append(
                {
                    "batch_size": b,
                    "vitkit_ms": round(a * 1e3, 3),
                    "timm_ms": round(t * 1e3, 3),
                    "vitkit_images_per_s": round(b / a, 1),
                    "timm_images_per_s": round(b / t, 1),
                    "ratio_vitkit_over_timm_speed": round(t / a, 3),
                }
            )
    import timm

    report(
        "vs_timm",
        {
            "model": "vit-tiny 32px patch 4",
            "timm": timm.__version__,
            "threads": torch.get_num_threads(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
