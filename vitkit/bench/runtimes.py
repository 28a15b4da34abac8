"""One small adapter per runtime, behind one registry (``register_runtime`` / ``get_runtime``).

A ``Runtime`` says where it applies, why it cannot run here (``check``), and how to ``prepare``
a ``Runner`` for a device: the object the benchmark times. Every runner takes the same input
tensor (``bind``) and returns logits for any number of images (``outputs``), so speed and
accuracy are measured on identical data. Thread counts: torch's intra-op threads and ONNX
Runtime's ``intra_op_num_threads`` are set to the same number by the caller; each runner
records what its runtime actually uses.

    eager        PyTorch eager, fp32                      cpu, cuda
    eager-bf16   PyTorch eager under bf16 autocast         cuda (cpu when asked)
    eager-fp16   PyTorch eager under fp16 autocast         cuda (cpu when asked)
    compile      torch.compile (static shapes), fp32       cpu, cuda
    ort          ONNX Runtime, fp32 ONNX                   cpu (CPU EP); cuda (CUDA EP, IO binding)
    ort-fp16     ONNX Runtime, fp16 ONNX (fp32 in/out)     cuda; cpu when asked
    ort-int8     ONNX Runtime, int8 ONNX                   cpu
    trt          ONNX Runtime TensorRT EP, fp32 ONNX       cuda
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitkit.errors import UserError, check_name, first_line, name_list, setting, unknown_name


class Skip(Exception):  # a signal, not an error: the runtime cannot run here
    """Raised by ``prepare`` when a runtime cannot run here; the message is the reason."""


@dataclass
class BenchModel:
    """What every runtime is prepared from: the eager module and its ONNX exports."""

    module: nn.Module  # eval mode, fp32, CPU
    image_size: int
    channels: int
    threads: int  # intra-op threads for torch and ONNX Runtime alike
    workdir: Path  # scratch space (TensorRT engine cache)
    onnx_file: Callable[[str], Path]  # "fp32" | "fp16" | "int8" -> the exported file (made lazily)
    compile_mode: str = "default"


@dataclass
class Runner:
    """A runtime prepared on one device: bind an input, time the returned call, read outputs."""

    bind: Callable[[torch.Tensor], Callable[[], Any]]  # CPU float32 batch -> a call to time
    outputs: Callable[[np.ndarray, int], np.ndarray]  # (N images, batch size) -> logits, float32
    cuda_timing: bool  # time with CUDA events (work on the current CUDA stream)
    size_bytes: int  # the model as this runtime loads it (ONNX file, or parameters + buffers)
    precision: str  # what the arithmetic runs in: fp32 | bf16 | fp16 | int8
    info: dict[str, Any] = field(default_factory=dict)  # providers, threads, compile time, ...
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    devices: tuple[str, ...]  # device types it is defined on
    default_on: tuple[str, ...]  # device types where it is in the default set
    precision: str
    prepare: Callable[[BenchModel, torch.device], Runner]
    check: Callable[[torch.device], str | None] = lambda device: None  # why not here, or None

    def why_not(self, device: torch.device) -> str | None:
        """The reason this runtime cannot run on ``device`` here, or ``None`` when it can."""
        if device.type not in self.devices:
            return f"{self.name} runs on {' / '.join(self.devices)} only"
        if device.type == "cuda" and not torch.cuda.is_available():
            return "no CUDA device here (torch.cuda.is_available() is False)"
        return self.check(device)


_RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    if runtime.name in _RUNTIMES:
        raise ValueError(f"runtime '{runtime.name}' is already registered")
    _RUNTIMES[runtime.name] = runtime
    return runtime


def list_runtimes() -> list[str]:
    return list(_RUNTIMES)


def get_runtime(name: str) -> Runtime:
    check_name("runtime", name)
    try:
        return _RUNTIMES[name]
    except KeyError:
        raise unknown_name("runtime", name, _RUNTIMES) from None


def default_runtimes(device: torch.device) -> list[str]:
    return [r.name for r in _RUNTIMES.values() if device.type in r.default_on]


# -- helpers -------------------------------------------------------------------------------------


def _module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def _chunked(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int, *, pad: bool
) -> np.ndarray:
    """``run`` over ``x`` in chunks of ``batch`` (``pad``: the last one filled up to ``batch``,
    for runtimes built for fixed shapes; the padding is dropped from the result)."""
    from vitkit.export.onnx import chunks

    outs = [run(c)[:valid] for c, valid in chunks(x, batch, pad=pad)]
    return np.concatenate(outs).astype(np.float32)


# -- PyTorch: eager and torch.compile -------------------------------------------------------------
def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _torch_runner(
    module: nn.Module,
    device: torch.device,
    *,
    dtype: torch.dtype | None,
    precision: str,
    pad: bool,
    info: dict[str, Any],
    size_bytes: int,
) -> Runner:
    cuda = device.type == "cuda"

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), _autocast(device, dtype):
            return module(x)

    def bind(x: torch.Tensor) -> Callable[[], Any]:
        xd = x.to(device).contiguous()
        return lambda: forward(xd)

    def run(c: np.ndarray) -> np.ndarray:
        return forward(torch.from_numpy(c).to(device)).float().cpu().numpy()

    return Runner(
        bind=bind,
        outputs=lambda x, batch: _chunked(run, x, batch, pad=pad),
        cuda_timing=cuda,
        size_bytes=size_bytes,
        precision=precision,
        info={"torch_threads": torch.get_num_threads(), **info},
    )


def _on_device(bm: BenchModel, device: torch.device) -> nn.Module:
    return bm.module if device.type == "cpu" else copy.deepcopy(bm.module).to(device).eval()


def _eager(
    dtype: torch.dtype | None, precision: str
) -> Callable[[BenchModel, torch.device], Runner]:
    def prepare(bm: BenchModel, device: torch.device) -> Runner:
        module = _on_device(bm, device)
        return _torch_runner(
            module,
            device,
            dtype=dtype,
            precision=precision,
            pad=False,
            info={"autocast": precision if dtype is not None else None},
            size_bytes=_module_bytes(bm.module),
        )

    return prepare


def _check_half(dtype: torch.dtype) -> Callable[[torch.device], str | None]:
    def check(device: torch.device) -> str | None:
        if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return f"{torch.cuda.get_device_name(device)} has no bf16 support"
        return None

    return check


def _check_compile(device: torch.device) -> str | None:
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python / platform"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (g++ / clang++), none found"
    return None


def _compile(bm: BenchModel, device: torch.device) -> Runner:
    module = _on_device(bm, device)
    # static shapes: one specialised graph per batch size (compiled when bound, before the
    # warm-up), never a slower dynamic-shape graph; the accuracy pass pads its chunks to the
    # largest benchmarked batch size, so it compiles nothing new
    # inductor's C++ build warns "No CUDA runtime is found, using CUDA_HOME" on CPU-only machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    compiled = torch.compile(module, mode=bm.compile_mode, dynamic=False)
    info: dict[str, Any] = {"mode": bm.compile_mode, "compile_seconds": 0.0}
    runner = _torch_runner(
        compiled,  # type: ignore[arg-type]
        device,
        dtype=None,
        precision="fp32",
        pad=True,
        info=info,
        size_bytes=_module_bytes(bm.module),
    )
    bind = runner.bind

    def timed_bind(x: torch.Tensor) -> Callable[[], Any]:
        call = bind(x)
        t0 = time.perf_counter()
        try:
            call()  # compiles this shape: kept out of the warm-up and the timing
        except Exception as e:  # inductor / dynamo failures: the runtime is skipped, with why
            raise Skip(f"torch.compile failed: {first_line(e)}") from None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        info["compile_seconds"] = round(info["compile_seconds"] + time.perf_counter() - t0, 2)
        return call

    runner.bind = timed_bind
    info["torch_threads"] = torch.get_num_threads()
    runner.info = info  # the same dict: compile_seconds grows as shapes are compiled
    return runner


# -- ONNX Runtime ---------------------------------------------------------------------------------
def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _session(path: Path, threads: int, providers: list[Any]) -> Any:
    """``ort_session`` with the benchmark's thread count; a model ORT cannot load is a skip."""
    from vitkit.export.onnx import ort_session

    try:
        return ort_session(path, threads=threads, providers=providers)
    except UserError as e:
        raise Skip(str(e)) from None


def _ort_info(session: Any) -> dict[str, Any]:
    opts = session.get_session_options()
    return {
        "providers": session.get_providers(),
        "ort_intra_op_threads": opts.intra_op_num_threads,
        "ort_inter_op_threads": opts.inter_op_num_threads,
        "torch_threads": torch.get_num_threads(),
    }


def _ort_cpu(precision: str) -> Callable[[BenchModel, torch.device], Runner]:
    def prepare(bm: BenchModel, device: torch.device) -> Runner:
        path = bm.onnx_file(precision)
        session = _session(path, bm.threads, ["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def bind(x: torch.Tensor) -> Callable[[], Any]:
            xn = np.ascontiguousarray(x.numpy(), dtype=np.float32)
            return lambda: session.run(None, {name: xn})

        def run(c: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {name: c})[0])

        return Runner(
            bind=bind,
            outputs=lambda x, batch: _chunked(run, x, batch, pad=False),
            cuda_timing=False,
            size_bytes=path.stat().st_size,
            precision=precision,
            info=_ort_info(session) | {"file": str(path)} | _onnx_facts(path),
        )

    return prepare


def _onnx_facts(path: Path) -> dict[str, Any]:
    """What a benchmarked ONNX file is: the precision its metadata records (int8-dynamic, ...),
    the ONNX opset it was written at, and whether it holds ONNX-Runtime-only fused ops."""
    from vitkit.export.onnx import is_fused, load_onnx, read_onnx_metadata

    try:
        model = load_onnx(path)
    except UserError:
        return {"onnx_precision": None, "onnx_opset": None, "onnx_fused": None}
    try:
        precision: str | None = str(read_onnx_metadata(model).get("precision"))
    except UserError:
        precision = None
    return {
        "onnx_precision": precision,
        "onnx_opset": next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None
        ),
        "onnx_fused": is_fused(model),
    }


def _check_ort_cuda(device: torch.device) -> str | None:
    if "CUDAExecutionProvider" not in _ort_providers():
        return (
            "this onnxruntime has no CUDA EP (pip install 'vitkit[gpu]' for onnxruntime-gpu; "
            f"it has {', '.join(_ort_providers())})"
        )
    return None


def _check_trt(device: torch.device) -> str | None:
    if "TensorrtExecutionProvider" not in _ort_providers():
        return (
            "this onnxruntime has no TensorRT EP (onnxruntime-gpu built with TensorRT, "
            "and TensorRT's libraries installed)"
        )
    import ctypes.util

    if ctypes.util.find_library("nvinfer") is None and not _loadable("libnvinfer.so.10"):
        return "TensorRT is not installed (libnvinfer not found; pip install tensorrt)"
    return _check_ort_cuda(device)


def _loadable(name: str) -> bool:
    import ctypes

    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def _ort_gpu(precision: str, *, tensorrt: bool) -> Callable[[BenchModel, torch.device], Runner]:
    """ONNX Runtime on CUDA with IO binding: inputs and outputs stay in torch CUDA tensors.

    ORT is handed torch's current stream, but takes it only when it is not the default stream
    (handle 0); on the default stream ORT runs on its own and synchronises at the end of every
    ``Run``, so its samples are launch-to-completion latencies while eager's and compile's are
    GPU times of pipelined calls (docs/bench.md says so).
    """

    def prepare(bm: BenchModel, device: torch.device) -> Runner:
        import onnxruntime as ort

        from vitkit.export.onnx import INPUT_NAME

        with contextlib.suppress(Exception):  # CUDA/cuDNN from the nvidia-* wheels, if any
            ort.preload_dlls()
        path = bm.onnx_file(precision)
        index = device.index if device.index is not None else torch.cuda.current_device()
        stream = str(torch.cuda.current_stream(device).cuda_stream)
        cuda_opts = {
            "device_id": index,
            "user_compute_stream": stream,
            "use_tf32": 0,  # fp32 means fp32, as in eager (torch's matmul default)
        }
        sessions: dict[int, Any] = {}

        def session_for(batch: int) -> Any:
            key = batch if tensorrt else 0  # TensorRT builds one engine per shape profile
            if key in sessions:
                return sessions[key]
            providers: list[Any] = [("CUDAExecutionProvider", cuda_opts), "CPUExecutionProvider"]
            if tensorrt:
                shape = f"{INPUT_NAME}:{batch}x{bm.channels}x{bm.image_size}x{bm.image_size}"
                trt = {
                    "device_id": index,
                    "user_compute_stream": stream,
                    "trt_fp16_enable": False,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(bm.workdir / "trt-cache"),
                    "trt_profile_min_shapes": shape,
                    "trt_profile_max_shapes": shape,
                    "trt_profile_opt_shapes": shape,
                }
                providers.insert(0, ("TensorrtExecutionProvider", trt))
            s = _session(path, bm.threads, providers)
            want = "TensorrtExecutionProvider" if tensorrt else "CUDAExecutionProvider"
            if s.get_providers()[0] != want:
                raise Skip(f"ONNX Runtime fell back to {s.get_providers()[0]} (no {want})")
            sessions[key] = s
            return s

        def bind(x: torch.Tensor) -> Callable[[], Any]:
            s = session_for(len(x))
            xd = x.to(device).contiguous()
            out_shape = [len(x), *s.get_outputs()[0].shape[1:]]
            out = torch.empty(out_shape, device=device, dtype=torch.float32)
            io = s.io_binding()
            io.bind_input(
                s.get_inputs()[0].name,
                device_type="cuda",
                device_id=index,
                element_type=np.float32,
                shape=tuple(xd.shape),
                buffer_ptr=xd.data_ptr(),
            )
            io.bind_output(
                s.get_outputs()[0].name,
                device_type="cuda",
                device_id=index,
                element_type=np.float32,
                shape=tuple(out.shape),
                buffer_ptr=out.data_ptr(),
            )
            keep = (xd, out)  # the bound buffers must outlive the binding

            def call() -> Any:
                s.run_with_iobinding(io)
                return keep

            return call

        def run(c: np.ndarray) -> np.ndarray:
            call = bind(torch.from_numpy(c))
            _, out = call()
            torch.cuda.synchronize(device)
            return out.cpu().numpy()

        first = session_for(1)
        return Runner(
            bind=bind,
            outputs=lambda x, batch: _chunked(run, x, batch, pad=True),
            cuda_timing=True,
            size_bytes=path.stat().st_size,
            precision=precision,
            info=_ort_info(first)
            | {"file": str(path)}
            | _onnx_facts(path)
            | {
                "io_binding": True,
                # the CUDA EP's TF32 is off; TensorRT has no such switch (NVIDIA_TF32_OVERRIDE=0)
                "tf32": "TensorRT default (NVIDIA_TF32_OVERRIDE=0 disables)" if tensorrt else False,
            },
            close=sessions.clear,
        )

    return prepare


# -- the registry -------------------------------------------------------------------------------
register_runtime(
    Runtime(
        "eager",
        "PyTorch eager, fp32",
        ("cpu", "cuda"),
        ("cpu", "cuda"),
        "fp32",
        _eager(None, "fp32"),
    )
)
register_runtime(
    Runtime(
        "eager-bf16",
        "PyTorch eager, bf16 autocast",
        ("cpu", "cuda"),
        ("cuda",),
        "bf16",
        _eager(torch.bfloat16, "bf16"),
        _check_half(torch.bfloat16),
    )
)
register_runtime(
    Runtime(
        "eager-fp16",
        "PyTorch eager, fp16 autocast",
        ("cpu", "cuda"),
        (),
        "fp16",
        _eager(torch.float16, "fp16"),
        _check_half(torch.float16),
    )
)
register_runtime(
    Runtime(
        "compile",
        "torch.compile (inductor, static shapes), fp32",
        ("cpu", "cuda"),
        ("cpu", "cuda"),
        "fp32",
        _compile,
        _check_compile,
    )
)


def _ort_dispatch(precision: str) -> Callable[[BenchModel, torch.device], Runner]:
    cpu, gpu = _ort_cpu(precision), _ort_gpu(precision, tensorrt=False)
    return lambda bm, device: gpu(bm, device) if device.type == "cuda" else cpu(bm, device)


def _check_ort(device: torch.device) -> str | None:
    return _check_ort_cuda(device) if device.type == "cuda" else None


register_runtime(
    Runtime(
        "ort",
        "ONNX Runtime, fp32 ONNX (CPU EP; CUDA EP with IO binding)",
        ("cpu", "cuda"),
        ("cpu", "cuda"),
        "fp32",
        _ort_dispatch("fp32"),
        _check_ort,
    )
)
register_runtime(
    Runtime(
        "ort-fp16",
        "ONNX Runtime, fp16 ONNX (fp32 inputs and outputs)",
        ("cpu", "cuda"),
        ("cuda",),
        "fp16",
        _ort_dispatch("fp16"),
        _check_ort,
    )
)
register_runtime(
    Runtime(
        "ort-int8",
        "ONNX Runtime CPU EP, int8 ONNX (the run's export, else dynamic quantization)",
        ("cpu",),
        ("cpu",),
        "int8",
        _ort_cpu("int8"),
    )
)
register_runtime(
    Runtime(
        "trt",
        "ONNX Runtime TensorRT EP, fp32 ONNX",
        ("cuda",),
        ("cuda",),
        "fp32",
        _ort_gpu("fp32", tensorrt=True),
        _check_trt,
    )
)


def parse_runtimes(value: str | Sequence[str] | None) -> list[str] | None:
    """``"eager,ort"`` -> ``["eager", "ort"]`` (validated); ``None`` keeps the defaults."""
    if value is None:
        return None
    names = name_list("runtimes", "runtime", value)
    names = [n.lower() for n in names]  # ORT, Eager: the same runtimes
    if not names:
        raise UserError(f"{setting('runtimes')} is empty; choose from {', '.join(list_runtimes())}")
    for n in names:
        get_runtime(n)
    return list(dict.fromkeys(names))
