"""Images/second of vitkit's DeviceLoader vs a torchvision DataLoader doing the same augmentation.

Both produce normalised float batches of CIFAR-10 (the JPEG copy in shared/data) with random
crop (pad 4) + horizontal flip. torchvision: ImageFolder + PIL transforms, 2 workers, as a
hand-written training script does it. vitkit: the cached uint8 tensor, augmented in batches.

    python benchmarks/loader.py [--data PATH] [--batch-size 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import cifar10_jpeg_tree, median_time, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="extracted cifar10-jpeg folder (default: from shared/data)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tv-batches", type=int, default=40, help="batches timed for torchvision")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    tree = cifar10_jpeg_tree(args.data)

    # -- vitkit: cached uint8 tensor -> DeviceLoader ------------------------------------------
    from vitkit.data import load_dataset
    from vitkit.data.augment import AugmentConfig
    from vitkit.data.loader import DeviceLoader

    root = Path(tempfile.gettempdir()) / "vitkit-bench" / "data-root"
    ds = load_dataset(f"folder:{tree}", data_root=root)
    loader = DeviceLoader(
        ds["train"],
        batch_size=args.batch_size,
        mean=ds.mean,
        std=ds.std,
        num_classes=ds.num_classes,
        device=args.device,
        augment=AugmentConfig(crop_pad=4, flip=True),
        seed=0,
    )

    def ours() -> int:
        n = 0
        for x, _ in loader:
            n += len(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        return n

    n_ours = len(loader) * args.batch_size
    t_ours = median_time(ours, repeats=3, warmup=1)

    # -- torchvision: ImageFolder + PIL transforms + DataLoader(2 workers) ---------------------
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(ds.mean, ds.std),
        ]
    )
    tv = torch.utils.data.DataLoader(
        ImageFolder(str(tree / "train"), transform=tf),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        persistent_workers=True,
    )

    def theirs() -> int:
        n = 0
        for i, (x, _) in enumerate(tv):
            n += len(x)
            if i + 1 == args.tv_batches:
                break
        return n

    n_tv = args.tv_batches * args.batch_size
    t_tv = median_time(theirs, repeats=3, warmup=1)

    ours_ips, tv_ips = n_ours / t_ours, n_tv / t_tv
    report(
        "loader",
        {
            "dataset": "CIFAR-10 (JPEG copy), train split",
            "batch_size": args.batch_size,
            "device": args.device,
            "augmentation": "random crop (pad 4) + horizontal flip + normalise",
            "vitkit_images_per_s": round(ours_ips),
            "torchvision_images_per_s": round(tv_ips),
            "torchvision_workers": args.workers,
            "ratio": round(ours_ips / tv_ips, 1),
            "vitkit_images_timed": n_ours,
            "torchvision_images_timed": n_tv,
        },
    )


if __name__ == "__main__":
    main()
