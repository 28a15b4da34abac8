"""ONNX export: a verified, self-describing model in fp32, fp16 and int8, and the ONNX Runtime
helpers other commands (eval --onnx, bench) share."""

from vitkit.export.onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    EagerReference,
    ExportReport,
    ExportVerificationError,
    PrecisionReport,
    Tolerances,
    VerifyData,
    eager_reference,
    export_graph,
    export_onnx,
    ort_session,
    race,
    read_onnx_metadata,
    run_onnx,
    verification_data,
    verify_onnx,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "EagerReference",
    "ExportReport",
    "ExportVerificationError",
    "PrecisionReport",
    "Tolerances",
    "VerifyData",
    "eager_reference",
    "export_graph",
    "export_onnx",
    "ort_session",
    "race",
    "read_onnx_metadata",
    "run_onnx",
    "verification_data",
    "verify_onnx",
]
