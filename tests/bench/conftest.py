from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vitkit.bench import BenchReport, benchmark
from vitkit.bench.runtimes import BenchModel, Runner

Prepare = Callable[[BenchModel, torch.device], Runner]

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


OOM = "CUDA out of memory. Tried to allocate 2.00 GiB\nsecond line"


def _eager_breaking(*, timed: bool, outputs: bool) -> Prepare:
    """A ``prepare`` that is eager fp32's (as registered now) up to batch 1 and out of memory
    above it: in its timed calls (``timed``) and its accuracy outputs (``outputs``)."""
    from dataclasses import replace

    import numpy as np

    from vitkit.bench.runtimes import get_runtime

    eager = get_runtime("eager").prepare

    def prepare(bm: BenchModel, device: torch.device) -> Runner:
        runner = eager(bm, device)

        def bind(x: torch.Tensor) -> Callable[[], object]:
            call = runner.bind(x)

            def checked() -> object:
                if timed and len(x) > 1:
                    raise RuntimeError(OOM)
                return call()

            return checked

        def scored(images: np.ndarray, batch: int) -> np.ndarray:
            if outputs and batch > 1:
                raise RuntimeError(OOM)
            return runner.outputs(images, batch)

        return replace(runner, bind=bind, outputs=scored)

    return prepare


def _add_runtimes(monkeypatch: pytest.MonkeyPatch, **prepares: Prepare) -> None:
    """Register (or replace) CPU fp32 runtimes for this test only."""
    from vitkit.bench import runtimes as runtimes_module
    from vitkit.bench.runtimes import Runtime

    fake = {n: Runtime(n, "test", ("cpu",), (), "fp32", p) for n, p in prepares.items()}
    monkeypatch.setattr(runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, **fake})


@pytest.fixture
def fails_above_batch_1(monkeypatch: pytest.MonkeyPatch) -> str:
    """A runtime, "small", that is eager fp32 up to batch 1 and out of memory above it (timed
    calls and accuracy outputs alike), as a GPU runtime at batch 64 can be. Returns its name."""
    _add_runtimes(monkeypatch, small=_eager_breaking(timed=True, outputs=True))
    return "small"


@pytest.fixture
def fails_when_scored(monkeypatch: pytest.MonkeyPatch) -> str:
    """A runtime, "unscored", timed as eager fp32 at every batch size whose accuracy outputs
    are out of memory above batch 1 (they are scored at the largest). Returns its name."""
    _add_runtimes(monkeypatch, unscored=_eager_breaking(timed=False, outputs=True))
    return "unscored"


@pytest.fixture
def eager_fails_above_batch_1(monkeypatch: pytest.MonkeyPatch) -> str:
    """Eager fp32 itself (the baseline) out of memory above batch 1, and a runtime, "copy", that
    is the real eager fp32 at every batch size. Returns the copy's name."""
    from vitkit.bench.runtimes import get_runtime

    _add_runtimes(
        monkeypatch,
        copy=get_runtime("eager").prepare,
        eager=_eager_breaking(timed=True, outputs=True),
    )
    return "copy"


@pytest.fixture
def eager_fails_when_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager fp32 itself timed at every batch size, its accuracy outputs out of memory above
    batch 1: the reference falls back to the model in fp32 on the CPU in chunks of 64."""
    _add_runtimes(monkeypatch, eager=_eager_breaking(timed=False, outputs=True))
