from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vitkit.bench import BenchReport, benchmark

# every CPU runtime; cuda is asked for too, so that its rows are skipped (or run) cleanly
CPU_RUNTIMES = "eager,eager-bf16,compile,ort,ort-fp16,ort-int8,trt"
BENCH_THREADS = 1  # not the conftest's 2: proves the setting reaches torch and ONNX Runtime


@pytest.fixture(scope="session")
def bench_run(train_nano: Callable[[str, int], Path]) -> Path:
    """vit-nano (patch 7) trained 3 epochs on the shipped mnist-mini (~10 s)."""
    return train_nano("bench-run", 3)


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
