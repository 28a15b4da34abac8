from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vitkit.bench import timing
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
    with pytest.raises(UserError, match=r"^threads must be >= 1, got 0"):
        set_threads(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_cuda_timing_path_is_not_taken_without_cuda() -> None:
    # measure(cuda=True) needs a CUDA device; without one the bench never asks for it,
    # and asking is a clear torch error rather than a silent wrong number
    with pytest.raises((RuntimeError, AssertionError, AttributeError)):
        measure(lambda: None, warmup=0, min_time=0.01, cuda=True)


class FakeClock:
    """time.perf_counter / process_time / sleep for settle(): ``busy(t)`` cores in use at t."""

    def __init__(self, busy: Callable[[float], float]) -> None:
        self.wall = self.cpu = 0.0
        self.busy = busy

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu

    def sleep(self, dt: float) -> None:
        self.cpu += dt * self.busy(self.wall)
        self.wall += dt


def _settle_with(
    monkeypatch: pytest.MonkeyPatch, busy: Callable[[float], float], **kw: float
) -> float:
    monkeypatch.setattr(timing, "time", FakeClock(busy))
    return settle(window=0.01, **kw)  # type: ignore[arg-type]


def test_settle_on_an_idle_process_waits_two_quiet_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settle_with(monkeypatch, lambda t: 0.0) == pytest.approx(0.02)


def test_settle_waits_until_a_spinning_pool_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    waited = _settle_with(monkeypatch, lambda t: 1.0 if t < 0.3 else 0.05, limit=2.0)
    assert 0.3 <= waited <= 0.33


def test_settle_is_not_fooled_by_one_quiet_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spinning thread the host descheduled for one window reads idle for that window."""
    busy = lambda t: 0.0 if 0.1 <= t < 0.11 else (1.0 if t < 0.3 else 0.0)  # noqa: E731
    assert _settle_with(monkeypatch, busy, limit=2.0) >= 0.3


def test_settle_gives_up_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    waited = _settle_with(monkeypatch, lambda t: 1.0, limit=0.1)
    assert 0.1 <= waited <= 0.11 + 1e-9


def test_settle_sees_a_real_spinning_thread() -> None:
    """On a loaded machine (2 cores shared with other test runs) the spinning thread can be off
    the CPU for two 10 ms windows in a row: settle() then rightly saw an idle process and
    returned before the spin ended, and the test failed. Windows of 50 ms, idle below 5% of a
    core: a thread that is runnable at all gets more than that, however busy the machine; the
    quiet-window logic itself is tested on the fake clock above."""
    spin_s = 0.4
    end = time.perf_counter() + spin_s

    def spin() -> None:  # keeps one core busy, like a thread pool spinning
        while time.perf_counter() < end:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    waited = settle(window=0.05, busy_cores=0.05, limit=3.0)
    spinner.join()
    assert 0.75 * spin_s <= waited < 2.5  # about until the spin ended, well before the limit
    assert settle(limit=3.0) < 0.2  # and then the process is idle


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux's /proc/stat")
def test_another_process_pinning_a_core_is_seen() -> None:
    """A process pinning a core beside the benchmark went unnoticed: the load average (a
    minute's mean) stayed under its threshold while eager ran 40-280x slower."""
    import subprocess
    import sys

    spin = "import time\nt = time.time()\nwhile time.time() - t < 3: pass"
    other = subprocess.Popen([sys.executable, "-c", spin])
    use = timing.OtherCpuUse()
    try:
        time.sleep(0.3)  # its interpreter started and spinning
        with use.counting():
            time.sleep(0.8)
    finally:
        other.kill()
        other.wait()
    cores = use.cores()
    assert cores is not None and cores > 0.6, cores  # more load here only raises it


def test_other_cpu_use_counts_only_the_blocks_and_not_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = {"busy": 100.0, "ours": 10.0, "wall": 50.0}
    monkeypatch.setattr(timing, "_cpu_busy_seconds", lambda: clock["busy"])
    monkeypatch.setattr(timing.time, "process_time", lambda: clock["ours"])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock["wall"])
    use = timing.OtherCpuUse()
    assert use.cores() is None  # nothing counted yet
    with use.counting():  # 2 s: the machine 3 s busy, 2.5 of them ours
        clock.update(busy=103.0, ours=12.5, wall=52.0)
    clock.update(busy=200.0, ours=12.5, wall=60.0)  # between blocks (a compile): not counted
    with use.counting():  # 2 s more: 1 s busy, all of it another process's
        clock.update(busy=201.0, wall=62.0)
    assert use.cores() == pytest.approx((0.5 + 1.0) / 4.0)
    monkeypatch.setattr(timing, "_cpu_busy_seconds", lambda: None)  # not Linux
    with use.counting():
        pass
    assert use.cores() is None
