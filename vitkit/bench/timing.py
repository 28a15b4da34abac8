"""How a benchmark cell is timed, and what the machine it ran on can do.

- ``measure(fn)``: warm-up calls discarded, then timed calls until ``min_time`` has passed (and at
  least ``min_runs``); CUDA work is timed with CUDA events on the current stream and synchronised
  before it is read. Returns every sample; ``Timing`` gives p50/p90/p99.
- ``matmul_peak(device)``: a short square GEMM timed the same way, the yardstick the achieved
  GFLOP/s of each cell is divided by (CPUs here differ 2x or more between AVX2 and AVX-512 parts).
- ``settle()``: wait until the threads another runtime left spinning are idle, so a cell never
  shares the cores with the cell before it.
- ``cpu_info()``: the CPU model and the instruction-set flags that decide its speed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# instruction-set flags that decide CPU inference speed (as /proc/cpuinfo spells them)
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass
class Timing:
    """Seconds per call of every timed call (warm-up excluded)."""

    samples: list[float] = field(default_factory=list)
    warmup: int = 0  # calls run and discarded before timing
    method: str = "perf_counter"  # or "cuda_events"

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples, q)) if self.samples else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def total(self) -> float:
        return float(sum(self.samples))

    def summary(self) -> dict[str, Any]:
        """Milliseconds, rounded for reports."""
        return {
            "p50_ms": round(1e3 * self.p50, 4),
            "p90_ms": round(1e3 * self.p90, 4),
            "p99_ms": round(1e3 * self.p99, 4),
            "mean_ms": round(1e3 * self.total / max(1, len(self.samples)), 4),
            "runs": len(self.samples),
            "warmup": self.warmup,
            "method": self.method,
        }


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 10,
    min_time: float = 2.0,
    min_runs: int = 10,
    max_runs: int = 100_000,
    cuda: bool = False,
    others: OtherCpuUse | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` calls discarded, then calls until ``min_time`` seconds of timed
    work and ``min_runs`` samples. With ``cuda`` each call is bracketed by CUDA events on the
    current stream (the caller's work must be on that stream) and read after a synchronise.
    ``others``: counts other processes' CPU use over the timed calls (not the warm-up)."""
    for _ in range(warmup):
        fn()
    with others.counting() if others is not None else contextlib.nullcontext():
        if cuda:
            return _measure_cuda(fn, warmup, min_time, min_runs, max_runs)
        return _measure_cpu(fn, warmup, min_time, min_runs, max_runs)


def _measure_cpu(
    fn: Callable[[], Any], warmup: int, min_time: float, min_runs: int, max_runs: int
) -> Timing:
    samples: list[float] = []
    spent = 0.0
    while (spent < min_time or len(samples) < min_runs) and len(samples) < max_runs:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        samples.append(dt)
        spent += dt
    return Timing(samples, warmup, "perf_counter")


SETTLE_LIMIT = 0.5  # seconds settle() waits at most by default
SETTLE_SHORT = 0.1  # the limit once a thread stayed busy: past ORT's ~60 ms spin + 2 windows
# Windows' process clock advances in ~15.6 ms ticks: a shorter window reads 0 or >= 1.5 cores
SETTLE_WINDOW = 0.05 if sys.platform == "win32" else 0.01


def settle(
    *,
    window: float = SETTLE_WINDOW,
    quiet: int = 2,
    busy_cores: float = 0.25,
    limit: float = SETTLE_LIMIT,
) -> float:
    """Wait until this process's threads are idle and return the seconds waited.

    Thread pools spin after their work ends: ONNX Runtime's intra-op workers for ~60 ms, torch's
    OpenMP threads for ~10 ms (measured on a 2-core VM; the spin is counted in iterations, so it
    varies by CPU). A runtime timed inside that window shares the cores with them: eager vit-tiny
    at batch 1 ran ~2.2x slower there. This sleeps in ``window`` steps until the process used
    less than ``busy_cores`` cores (CPU time of all its threads / wall time) in ``quiet``
    windows in a row (one quiet window can be a spinning thread the host descheduled), or
    ``limit`` seconds have passed: a caller that gets ``limit`` or more back knows a thread
    stayed busy."""
    start = time.perf_counter()
    calm = 0
    while True:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(window)
        busy = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
        calm = calm + 1 if busy < busy_cores else 0
        waited = time.perf_counter() - start
        if calm >= quiet or waited >= limit:
            return waited


def _measure_cuda(
    fn: Callable[[], Any], warmup: int, min_time: float, min_runs: int, max_runs: int
) -> Timing:
    torch.cuda.synchronize()
    samples: list[float] = []
    wall = time.perf_counter()
    # events are read in groups so the host never waits on the GPU between two calls
    group = 16
    while len(samples) < max_runs:
        pairs = []
        for _ in range(group):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize()
        samples.extend(s.elapsed_time(e) / 1e3 for s, e in pairs)
        enough = len(samples) >= min_runs
        if enough and (sum(samples) >= min_time or time.perf_counter() - wall >= 4 * min_time):
            break
    return Timing(samples[:max_runs], warmup, "cuda_events")


def matmul_peak(
    device: torch.device | str = "cpu",
    *,
    dtype: torch.dtype = torch.float32,
    size: int | None = None,
    min_time: float = 0.5,
) -> dict[str, Any]:
    """GFLOP/s of a square ``size`` GEMM on ``device`` (torch, the current thread count):
    the machine's practical matmul ceiling, measured in the same process as the benchmark."""
    device = torch.device(device)
    cuda = device.type == "cuda"  # the caller makes it the current device (run._on)
    n = size or (8192 if cuda else 1024)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)  # random data, never zeros
    b = torch.randn(n, n, generator=g).to(device, dtype)
    timing = measure(lambda: a @ b, warmup=3, min_time=min_time, min_runs=5, cuda=cuda)
    gflops = 2 * n**3 / timing.p50 / 1e9
    return {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "size": n,
        "gflops": round(gflops, 1),
        "threads": torch.get_num_threads() if not cuda else None,
    }


def cpu_info() -> dict[str, Any]:
    """CPU model, core counts and the instruction-set flags that matter for inference."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    physical: set[tuple[str, str]] = set()
    phys_id = core_id = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "model name":
                model = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "physical id":
                phys_id = value
            elif key == "core id":
                core_id = value
                physical.add((phys_id, core_id))
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "isa": [f for f in ISA_FLAGS if f in flags],
    }


def gpu_info(device: torch.device) -> dict[str, Any]:
    """Name, memory, compute capability and CUDA version of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
    }


MAX_THREADS_PER_CPU = 4  # --threads above this many per logical CPU is refused
UNSTEADY_P90 = 2.0  # timings whose p90 is over twice their p50 were disturbed while they ran


def unsteady(times: Sequence[float]) -> bool:
    """Whether a cell's timings were disturbed: p90 over ``UNSTEADY_P90`` x p50."""
    if len(times) < 5:
        return False
    p50, p90 = np.percentile(np.asarray(times, dtype=np.float64), [50, 90])
    return bool(p90 > UNSTEADY_P90 * p50)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_busy_seconds() -> float | None:
    """Seconds the CPUs this process may run on have been busy since boot, by Linux's
    /proc/stat (all but idle and iowait; steal, time the hypervisor gave another guest, counts
    as busy). Only this process's CPUs: in a container pinned to some of the host's, the others'
    tenants are not this benchmark's neighbours."""
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name in mine:
                    fields = [int(x) for x in values]
                    busy += sum(fields[:8]) - fields[3] - fields[4]
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, no sched_getaffinity
        return None


class OtherCpuUse:
    """How many cores other processes kept busy while the ``counting()`` blocks ran: the busy
    time of this process's CPUs (/proc/stat) less this process's own CPU time (every thread;
    not its child processes, which count as other), over the blocks' wall time. Linux only.

    The load average is a minute-long mean and misses a competitor of a minute or less; this
    covers exactly the blocks timed (bench counts only the timed calls, not warm-up, where
    torch.compile's compiler processes run)."""

    def __init__(self) -> None:
        self.busy = self.ours = self.wall = 0.0
        self.known = True

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        busy0, ours0, wall0 = _cpu_busy_seconds(), time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            busy1 = _cpu_busy_seconds()
            if busy0 is None or busy1 is None:
                self.known = False
            else:
                self.busy += busy1 - busy0
                self.ours += time.process_time() - ours0
                self.wall += time.perf_counter() - wall0

    def cores(self) -> float | None:
        """Mean cores other processes used in the blocks (None: not known here, or no block)."""
        if not self.known or self.wall <= 0:
            return None
        return max(0.0, self.busy - self.ours) / self.wall


OTHER_CORES_NOTED = 0.25  # other processes' mean use (cores) from which the figures are doubted


def busy_note(
    load: list[float] | None, threads: int, other_cores: float | None, during: str
) -> str | None:
    """A note when other processes shared the CPU ``during`` the timing: a speed-up from a busy
    machine must not read as a result. The cores they used then (``OtherCpuUse.cores()``),
    from ``OTHER_CORES_NOTED``; where that is not known, the load average less our own threads,
    from 1 (a minute's mean, it misses a shorter competitor)."""
    cpus = os.cpu_count() or 1
    if other_cores is not None:
        if other_cores < OTHER_CORES_NOTED:
            return None
        return (
            f"other processes (or the hypervisor) kept {other_cores:.2f} of this machine's "
            f"{cpus} logical cores busy on average {during}: the CPU figures may be off; rerun "
            "on a quiet machine"
        )
    if load is None or load[0] - threads < 1.0:
        return None
    return (
        f"the load average was {load[0]:.1f} on {cpus} logical cores while this ran with "
        f"{threads} thread(s): other processes shared the CPU, so the CPU figures may be off; "
        "rerun on a quiet machine"
    )


def oversubscribed_note(threads: int) -> str | None:
    """A note when ``threads`` is more than the logical CPUs (bench's cells, export's img/s
    column): pools that large time-share the cores."""
    from vitkit.errors import setting

    cpus = os.cpu_count() or 1
    if threads <= cpus:
        return None
    return (
        f"{threads} threads on {cpus} logical CPU(s): the threads time-share the cores, "
        "so a runtime's figures depend on how its thread pool copes with that, not only "
        f"on its kernels; use {setting('threads', cpus)} or fewer to compare runtimes"
    )


def check_threads(threads: int | None) -> None:
    """A ``--threads`` the runtimes can use: 1 or more, and at most ``MAX_THREADS_PER_CPU`` per
    logical CPU (pools that large only time-share the cores, and a huge count crashes them)."""
    if threads is None:
        return
    from vitkit.errors import UserError, check_int, setting

    check_int(setting("threads"), threads)
    cpus = os.cpu_count() or 1
    if threads > MAX_THREADS_PER_CPU * cpus:
        raise UserError(
            f"{setting('threads', threads)} is more than {MAX_THREADS_PER_CPU}x this machine's {cpus} "
            f"logical CPU(s), the most it takes ({MAX_THREADS_PER_CPU * cpus}); figures that "
            f"mean something need {cpus} or fewer"
        )


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (the same number goes to ONNX Runtime) and return it."""
    check_threads(threads)
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for a block, then the caller's count again."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
