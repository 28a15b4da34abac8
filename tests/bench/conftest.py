from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitkit.bench import BenchReport, benchmark
from vitkit.train import TrainConfig, train

# every CPU runtime; cuda is asked for too, so that its rows are skipped (or run) cleanly
CPU_RUNTIMES = "eager,eager-bf16,compile,ort,ort-fp16,ort-int8,trt"
BENCH_THREADS = 1  # not the conftest's 2: proves the setting reaches torch and ONNX Runtime


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit-nano (patch 7) trained 3 epochs on the shipped mnist-mini (~10 s)."""
    out = tmp_path_factory.mktemp("bench-run") / "runs" / "mnist-mini-vit-nano"
    config = TrainConfig(
        dataset="mnist-mini",
        model="vit-nano",
        model_overrides={"patch_size": 7},
        epochs=3,
        batch_size=64,
        lr=2e-3,
        warmup_epochs=0.5,
        seed=0,
        out=str(out),
    )
    root = tmp_path_factory.getbasetemp() / "default-data-root"
    return train(config, data_root=root).run_dir


@pytest.fixture(scope="session")
def report(bench_run: Path, tmp_path_factory: pytest.TempPathFactory) -> BenchReport:
    """One short benchmark of every runtime on cpu (and cuda), batch 1 and 4, 200 test images."""
    root = tmp_path_factory.getbasetemp() / "default-data-root"
    threads_before = torch.get_num_threads()
    rep = benchmark(
        bench_run,
        runtimes=CPU_RUNTIMES,
        devices="cpu,cuda",
        batch_sizes="1,4",
        threads=BENCH_THREADS,
        warmup=2,
        min_time=0.15,
        rounds=2,
        accuracy_images=200,
        data_root=root,
        command="pytest",
    )
    assert torch.get_num_threads() == threads_before  # the caller's setting is restored
    return rep
