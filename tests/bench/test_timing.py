from __future__ import annotations

import threading
import time

import pytest
import torch

from vitkit.bench.timing import Timing, cpu_info, matmul_peak, measure, set_threads, settle
from vitkit.errors import UserError


def test_measure_discards_warmup_and_meets_min_runs_and_time() -> None:
    calls: list[float] = []

    def fn() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.002)

    t = measure(fn, warmup=4, min_time=0.05, min_runs=3)
    assert len(calls) == 4 + len(t.samples)
    assert len(t.samples) >= 3
    assert t.total >= 0.05
    assert all(s >= 0.0019 for s in t.samples)  # each sample timed one 2 ms call
    assert t.warmup == 4 and t.method == "perf_counter"


def test_measure_min_runs_beats_min_time() -> None:
    t = measure(lambda: None, warmup=0, min_time=1e-9, min_runs=7)
    assert len(t.samples) == 7


def test_percentiles_are_ordered_and_exact() -> None:
    t = Timing(samples=[float(i) / 1000 for i in range(1, 101)])  # 1..100 ms
    assert t.p50 == pytest.approx(0.0505)
    assert t.p90 == pytest.approx(0.0901)
    assert t.p99 == pytest.approx(0.09901)
    s = t.summary()
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    assert s["runs"] == 100 and s["mean_ms"] == pytest.approx(50.5)


def test_matmul_peak_cpu_is_measured() -> None:
    p = matmul_peak("cpu", size=256, min_time=0.05)
    assert p["gflops"] > 0.1 and p["size"] == 256 and p["dtype"] == "float32"
    assert p["threads"] == torch.get_num_threads()


def test_cpu_info_has_model_and_isa() -> None:
    info = cpu_info()
    assert info["model"] and isinstance(info["isa"], list)
    assert info["logical_cores"] >= 1
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        assert "avx2" in info["isa"]


def test_set_threads_rejects_zero() -> None:
    with pytest.raises(UserError, match="--threads"):
        set_threads(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_timing_path_is_not_taken_without_cuda() -> None:
    # measure(cuda=True) needs a CUDA device; without one the bench never asks for it,
    # and asking is a clear torch error rather than a silent wrong number
    with pytest.raises((RuntimeError, AssertionError, AttributeError)):
        measure(lambda: None, warmup=0, min_time=0.01, cuda=True)


def _spin_for(seconds: float) -> threading.Thread:
    """A thread that keeps one core busy for ``seconds``, like a thread pool spinning."""

    def spin() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    return t


def test_settle_returns_at_once_when_the_process_is_idle() -> None:
    assert settle(window=0.01, limit=2.0) < 0.2


def test_settle_waits_for_a_spinning_thread_to_stop() -> None:
    spinner = _spin_for(0.3)
    waited = settle(window=0.01, limit=3.0)
    assert 0.2 <= waited < 2.5  # until the spin ended, not the limit
    assert not spinner.is_alive()


def test_settle_gives_up_at_its_limit() -> None:
    spinner = _spin_for(1.5)
    waited = settle(window=0.01, limit=0.1)
    assert 0.1 <= waited < 0.8
    spinner.join()
