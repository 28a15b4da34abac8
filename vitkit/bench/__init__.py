"""Benchmark a model across runtimes (eager, torch.compile, ONNX Runtime CPU/CUDA, TensorRT EP)
and devices, measured the same way, with accuracy beside speed."""

from vitkit.bench.report import BenchReport, BenchRow, RuntimeResult, UntimedCell
from vitkit.bench.run import DEFAULT_BATCH_SIZES, benchmark
from vitkit.bench.runtimes import Runtime, get_runtime, list_runtimes, register_runtime
from vitkit.bench.timing import Timing, cpu_info, matmul_peak, measure

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "BenchReport",
    "BenchRow",
    "Runtime",
    "RuntimeResult",
    "Timing",
    "UntimedCell",
    "benchmark",
    "cpu_info",
    "get_runtime",
    "list_runtimes",
    "matmul_peak",
    "measure",
    "register_runtime",
]
