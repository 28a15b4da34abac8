from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from vitkit.artifact import LoadedModel, load_model
from vitkit.data import load_dataset
from vitkit.errors import UserError
from vitkit.eval import evaluate
from vitkit.export import (
    ExportReport,
    Tolerances,
    eager_reference,
    export_graph,
    export_onnx,
    ort_session,
    read_onnx_metadata,
    run_onnx,
    verification_data,
    verify_onnx,
)
from vitkit.export import onnx as onnx_module
from vitkit.export.onnx import weights_fingerprint
from vitkit.models import ModelSpec, create_model, list_models, resolve_spec


def eager(lm: LoadedModel, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return lm.model(torch.from_numpy(x)).numpy()


def test_export_writes_three_verified_models_and_a_report(
    exported: ExportReport, data_root: Path
) -> None:
    assert exported.passed, exported.failures
    assert exported.exporter == "dynamo" and exported.batch == "dynamic"
    out = Path(exported.out)
    names = {Path(f).name for f in exported.files}
    assert names == {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json"}
    assert all(Path(f).is_file() for f in exported.files)
    assert not list(out.parent.glob(".*"))  # no temp files left behind
    report = json.loads((out.parent / "export.json").read_text())
    assert report["passed"] is True and report["data"]["synthetic"] is False
    assert report["data"]["source"].startswith("mnist-mini test split")
    assert report["tolerances"]["fp32_atol"] == 1e-4
    assert {"torch", "onnx", "onnxruntime", "vitkit"} <= set(report["versions"])
    by_name = {p["precision"]: p for p in report["precisions"]}
    assert set(by_name) == {"fp32", "fp16", "int8-static"}
    fp32 = by_name["fp32"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["top1_agreement"] == 1.0
    assert set(fp32["batches"]) == {"1", "2", "7"}
    assert by_name["fp16"]["top1_agreement"] >= 0.995
    assert by_name["int8-static"]["accuracy_drop_points"] <= 0.5
    for p in by_name.values():
        assert p["checker"] == "ok" and p["images_per_s"] > 0
        assert p["size_bytes"] == Path(p["path"]).stat().st_size
    # int8 is the smallest, fp16 smaller than fp32
    assert by_name["int8-static"]["size_bytes"] < by_name["fp16"]["size_bytes"]
    assert by_name["fp16"]["size_bytes"] < fp32["size_bytes"]
    assert report["eager"]["accuracy"] == pytest.approx(fp32["accuracy"])
    # the figures are top-1 on the whole test split: `vitkit eval`'s, image for image (every
    # other accuracy above is compared with eager's, computed the same way)
    assert report["data"]["source"] == "mnist-mini test split (1,000 of 1,000 images)"
    want = evaluate(exported.run, data_root=data_root)
    assert report["eager"]["accuracy"] == pytest.approx(want.acc, abs=1e-6)
    assert fp32["accuracy"] == pytest.approx(want.acc, abs=1e-6)


def test_a_precision_that_is_not_a_name_is_a_one_line_error(exported: ExportReport) -> None:
    """report.precision(5) was the + operator's TypeError (5 + "-")."""
    with pytest.raises(UserError, match=r"^a precision name is a string, got 5$"):
        exported.precision(5)  # type: ignore[arg-type]


def test_batch_axis_is_really_dynamic(exported: ExportReport, loaded: LoadedModel) -> None:
    x = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    session = ort_session(exported.out)
    assert isinstance(session.get_inputs()[0].shape[0], str)
    for b in (1, 3, 16):
        out = session.run(None, {"pixel_values": x[:b]})[0]
        assert out.shape == (b, 10)
        assert np.abs(out - eager(loaded, x[:b])).max() <= 1e-4
    for tag in ("fp16", "int8"):
        s = ort_session(Path(exported.out).with_name(f"model.{tag}.onnx"))
        assert s.run(None, {"pixel_values": x[:3]})[0].shape == (3, 10)


def test_metadata_round_trips_to_classes_and_preprocessing(
    exported: ExportReport, loaded: LoadedModel, trained_run: Path
) -> None:
    for path, precision in zip(exported.files[:3], ("fp32", "fp16", "int8-static"), strict=True):
        meta = read_onnx_metadata(path)
        assert meta["precision"] == precision
        assert meta["classes"] == loaded.classes == [str(i) for i in range(10)]
        assert meta["mean"] == loaded.mean and meta["std"] == loaded.std
        assert (meta["image_size"], meta["channels"], meta["num_outputs"]) == (28, 1, 1)
        assert ModelSpec.from_dict(meta["model_spec"]) == loaded.spec
        assert meta["input_name"] == "pixel_values" and meta["batch"] == "dynamic"
        assert meta["trained"] is True and meta["dataset"] == "mnist-mini"
        # what the run recorded of its dataset, so `vitkit eval FILE.onnx` opens the same one
        assert meta["dataset_options"] == (loaded.meta.get("dataset_options") or {})
        # every precision names the weights it was made from, as a fresh load hashes them
        assert meta["weights_sha256"] == weights_fingerprint(load_model(trained_run).model)
    # a consumer with only the .onnx file: raw pixels + metadata -> the run's predictions
    meta = read_onnx_metadata(exported.out)
    pixels = load_dataset("mnist-mini", data_root=None)["test"].images[:8].numpy()
    mean = np.array(meta["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(meta["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    x = ((pixels.astype(np.float32) / 255 - mean) / std).astype(np.float32)
    session = ort_session(exported.out)
    assert session.get_modelmeta().custom_metadata_map["classes"] == json.dumps(meta["classes"])
    logits = session.run(None, {meta["input_name"]: x})[0]
    assert np.abs(logits - eager(loaded, x)).max() <= 1e-4


def test_reference_evaluator_agrees_with_eager(exported: ExportReport, loaded: LoadedModel) -> None:
    from onnx.reference import ReferenceEvaluator

    x = np.random.default_rng(1).standard_normal((3, 1, 28, 28)).astype(np.float32)
    evaluator = ReferenceEvaluator(onnx.load(exported.out))
    out = evaluator.run(None, {"pixel_values": x})[0]
    assert out.shape == (3, 10)
    assert np.abs(out - eager(loaded, x)).max() <= 1e-4


def test_static_int8_leaves_fragile_nodes_in_float(exported: ExportReport) -> None:
    model = onnx.load(exported.precision("int8").path)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    inits = {i.name for i in model.graph.initializer}
    fragile = ("LayerNormalization", "Softmax", "Erf", "Conv")
    for node in model.graph.node:
        # LayerNorm, Softmax, GELU, the patch embedding and the residual adds (Adds of two
        # activations) read float values; a bias Add may read a requantized MatMul output
        residual = node.op_type == "Add" and not inits & set(node.input)
        if node.op_type in fragile or residual:
            fed = [producer.get(i) for i in node.input]
            assert "DequantizeLinear" not in fed, (node.op_type, node.name)
    assert sum(n.op_type == "Add" and not inits & set(n.input) for n in model.graph.node) >= 8
    # every weight MatMul reads a dequantized activation and a dequantized weight
    quantized = [
        n
        for n in model.graph.node
        if n.op_type == "MatMul" and all(producer.get(i) == "DequantizeLinear" for i in n.input)
    ]
    # vit-nano: 4 blocks x (qkv, proj, fc1, fc2), the class-token block's qkv as q and kv
    assert len(quantized) == 4 * 4 + 1


def test_weights_changed_after_tracing_fail_verification(loaded: LoadedModel) -> None:
    model = load_model(loaded.path).model
    proto, _, _ = export_graph(model, image_size=28, channels=1, legacy=True)
    data = verification_data(loaded, verify_images=64)
    ok = verify_onnx(proto, eager_reference(model, data), data)
    assert ok.passed, ok.failures
    with torch.no_grad():
        model.blocks[0].mlp.fc2.weight.mul_(1.01)  # changed after tracing
    bad = verify_onnx(proto, eager_reference(model, data), data)
    assert not bad.passed
    assert any("exceeds the tolerance 0.0001" in f for f in bad.failures), bad.failures


def test_wrong_tolerance_fails_and_keeps_no_unverified_model(
    trained_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.onnx"
    for stale in (out, tmp_path / "model.fp16.onnx"):  # an earlier export's, under real names
        stale.write_bytes(b"an earlier export")
    report = export_onnx(
        trained_run,
        out,
        legacy=True,
        fp16=True,
        verify_images=32,
        tolerances=Tolerances(fp32_atol=1e-12),
    )
    assert not report.passed
    assert "exceeds the tolerance 1e-12" in report.failures[0]
    assert not out.exists() and (tmp_path / "model.failed.onnx").is_file()
    assert not (tmp_path / "model.fp16.onnx").exists()  # not built from a failed fp32
    # only what was asked for is named (int8 was not)
    assert "fp32 failed verification: fp16 not built from it" in report.notes
    # the earlier models it removed are named (they were removed without a word)
    assert (
        "removed model.onnx, an earlier export's: fp32 failed verification (kept as "
        "model.failed.onnx)" in report.notes
    )
    assert "removed model.fp16.onnx, an earlier export's: not of this fp32 model" in report.notes
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["passed"] is False and saved["failures"] == report.failures
    with pytest.raises(UserError, match="exceeds the tolerance"):
        report.raise_for_failure()
    # a later export that passes replaces the failure
    again = export_onnx(trained_run, out, legacy=True, verify_images=32)
    assert again.passed and out.is_file() and not (tmp_path / "model.failed.onnx").exists()


def test_int8_gate_failure_says_by_how_much(trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "model.int8.onnx").write_bytes(b"an earlier export's int8 model")
    report = export_onnx(
        trained_run,
        tmp_path / "model.onnx",
        legacy=True,
        int8="dynamic",
        verify_images=200,
        tolerances=Tolerances(int8_max_drop=-0.05),  # demand 5 points better than eager
    )
    assert not report.passed and len(report.failures) == 1
    assert "points below eager's" in report.failures[0] and "allowed: -5" in report.failures[0]
    assert (tmp_path / "model.onnx").is_file()  # fp32 passed
    assert (tmp_path / "model.int8.failed.onnx").is_file()
    assert not (tmp_path / "model.int8.onnx").exists()


def test_int8_gate_failure_on_few_images_says_one_image_is_more_than_allowed(
    loaded: LoadedModel,
) -> None:
    """On 100 images one flip is 1 point, twice the 0.5 allowed: `--verify-images 100` failed
    as "1.00 points below eager's" with nothing saying the gate cannot pass on so few."""
    from dataclasses import replace

    from vitkit.errors import cli_words
    from vitkit.export.onnx import for_bench

    model = load_model(loaded.path).model
    proto, _, _ = export_graph(model, image_size=28, channels=1, legacy=True)

    def one_flip(data: Any, tol: Tolerances | None = None, flips: int = 1) -> str:
        ref = eager_reference(model, data)
        assert ref.accuracy is not None
        ref = replace(ref, accuracy=ref.accuracy + flips / len(data.images))  # as if flipped
        report = verify_onnx(proto, ref, data, precision="int8-dynamic", tolerances=tol)
        assert len(report.failures) == 1, report.failures
        return report.failures[0]

    few = verification_data(loaded, verify_images=100)  # of the test split's 1,000
    line = one_flip(few)
    assert "1.00 points below eager's" in line
    assert line.endswith(
        "(allowed: 0.5; one image is 1.00 points of 100: verify on more images "
        "(verify_images=1000) or allow more drop: tolerances=Tolerances(int8_max_drop=...))"
    ), line
    with cli_words():  # the command line's words: its flags (--int8-max-drop takes points)
        line = one_flip(few)
    assert line.endswith(
        "(allowed: 0.5; one image is 1.00 points of 100: verify on more images "
        "(--verify-images 1000) or allow more drop (--int8-max-drop POINTS))"
    ), line
    with cli_words():  # all the split has: nothing more to verify on
        line = one_flip(replace(few, split_images=100))
    assert line.endswith(
        "(allowed: 0.5; one image is 1.00 points of 100, all the split has: "
        "allow more drop (--int8-max-drop POINTS))"
    ), line
    # `vitkit bench` has neither flag: its hint names the `vitkit export` whose model it reuses
    with cli_words(), for_bench(optimize=True):
        line = one_flip(replace(few, split_images=100))
    assert line.endswith(
        "(allowed: 0.5; one image is 1.00 points of 100, all the split has: export it with "
        "`vitkit export RUN --int8 dynamic --optimize` and --int8-max-drop POINTS "
        "(bench reuses it))"
    ), line
    with cli_words(), for_bench(optimize=False):
        line = one_flip(few)
    assert line.endswith(
        "export it with `vitkit export RUN --int8 dynamic` and --verify-images 1000 or "
        "--int8-max-drop POINTS (bench reuses it))"
    ), line
    with for_bench(optimize=False):  # from Python (benchmark()): the library's words
        assert one_flip(few).endswith("tolerances=Tolerances(int8_max_drop=...))")
    # no drop allowed: no number of images would help, so none is suggested
    line = one_flip(few, Tolerances(int8_max_drop=0))
    assert line.endswith("(allowed: 0)"), line
    # on 400 images one is 0.25 points: three flipped are a drop the gate should see, no hint
    line = one_flip(verification_data(loaded, verify_images=400), flips=3)
    assert "0.75 points below" in line and line.endswith("(allowed: 0.5)"), line


def test_an_export_cut_short_leaves_the_earlier_export_as_it_was(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or an error) while int8 is built: model.onnx was already replaced by the new
    weights' model, beside the earlier int8 model of other weights and an export.json that
    described the earlier files."""
    earlier = {
        name: f"an earlier export's {name}".encode()
        for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json")
    }
    for name, blob in earlier.items():
        (tmp_path / name).write_bytes(blob)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_module, "_int8", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(
            trained_run, tmp_path / "model.onnx", legacy=True, int8="dynamic", verify_images=16
        )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == earlier


def test_no_verify_report_claims_no_verification_images(trained_run: Path, tmp_path: Path) -> None:
    """--no-verify --int8 static loads images only to calibrate: the report named the test split
    as the verification data ("1,000 of 1,000 images"), though nothing was verified on it."""
    report = export_onnx(
        trained_run,
        tmp_path / "model.onnx",
        legacy=True,
        verify=False,
        int8="static",
        calib_images=16,
    )
    assert report.passed and not report.verified
    assert report.data == {"source": None, "calibration_images": 16}
    assert report.eager["batch"] is None and report.eager["images_per_s"] is None  # not timed
    assert not any("verified" in n for n in report.notes), report.notes


def test_eager_speed_names_the_batch_it_was_timed_at(trained_run: Path, tmp_path: Path) -> None:
    """With 8 verification images every img/s figure is timed on batches of 8: export.json said
    64."""
    report = export_onnx(trained_run, tmp_path / "model.onnx", legacy=True, verify_images=8)
    assert report.eager["batch"] == 8


def test_int8_auto_keeps_the_faster_passing_mode(trained_run: Path, tmp_path: Path) -> None:
    report = export_onnx(
        trained_run, tmp_path / "model.onnx", legacy=True, int8="auto", verify_images=200
    )
    assert report.int8 is not None and report.int8["mode"] == "auto"
    candidates = report.int8["candidates"]
    assert [c.precision for c in candidates] == ["int8-dynamic", "int8-static"]
    passing = [c for c in candidates if c.passed] or candidates
    fastest = max(passing, key=lambda c: c.images_per_s)
    assert report.int8["chosen"] == fastest.precision.removeprefix("int8-")
    assert report.precision("int8") is fastest
    assert read_onnx_metadata(tmp_path / "model.int8.onnx")["precision"] == fastest.precision
    assert "img/s" in report.int8["reason"]


def test_optimize_verifies_the_fused_models_and_keeps_the_fastest(
    trained_run: Path, tmp_path: Path
) -> None:
    report = export_onnx(trained_run, tmp_path / "model.onnx", optimize=True, verify_images=64)
    assert report.passed, report.failures
    info = report.optimize
    assert info is not None
    by_name = {c["name"]: c for c in info["candidates"]}
    assert set(by_name) == {"attention", "onnxruntime"}
    depth = report.model["config"]["depth"]
    # every block; the class-token one (queries for one token only) as MultiHeadAttention
    assert by_name["attention"]["fused_ops"] == {"Attention": depth - 1, "MultiHeadAttention": 1}
    assert by_name["onnxruntime"]["fused_ops"].get("SkipLayerNormalization", 0) > 0
    for c in info["candidates"]:
        assert c["report"]["passed"] and c["report"]["max_abs_diff"] <= 1e-4, c["name"]
        # raced head to head against the plain model at batch 1 and 64: speedup is their
        # geometric mean
        by_batch = c["speedup_by_batch"]
        assert set(by_batch) == {"1", "64"}
        assert c["speedup"] == pytest.approx((by_batch["1"] * by_batch["64"]) ** 0.5, rel=1e-2)
    faster = [c for c in info["candidates"] if c["speedup"] > 1]
    expected = max(faster, key=lambda c: c["speedup"])["name"] if faster else "plain"
    assert info["kept"] == expected
    ops = {n.op_type for n in onnx.load(tmp_path / "model.onnx").graph.node}
    assert ("Attention" in ops) == (info["kept"] == "attention")
    assert ("SkipLayerNormalization" in ops) == (info["kept"] == "onnxruntime")
    kept = report.precision("fp32").precision
    assert kept == ("fp32" if info["kept"] == "plain" else f"fp32-{info['kept']}")


def test_optimize_without_verification_keeps_the_plain_model(
    trained_run: Path, tmp_path: Path
) -> None:
    report = export_onnx(trained_run, tmp_path / "model.onnx", optimize=True, verify=False)
    assert report.optimize is not None and report.optimize["kept"] == "plain"
    assert "optimize=True: with verify=False no fused model is timed or kept" in report.notes
    ops = {n.op_type for n in onnx.load(tmp_path / "model.onnx").graph.node}
    assert "Attention" not in ops and "Softmax" in ops


def test_two_threads_silenced_at_once_leave_logging_stdout_and_warnings_as_they_were() -> None:
    """Two export_onnx calls in two threads: each saved the process-wide state (the logging
    level, sys.stdout, the warnings filters) on entry and restored it on exit. Entered A, B and
    left A, B, the second restored what it had saved, the first's silence: logging stayed
    disabled, stdout swallowed and warnings ignored for the rest of the process."""
    import logging
    import sys
    import threading
    import warnings

    from vitkit.export._quiet import silenced

    stdout, level, handle = sys.stdout, logging.root.manager.disable, logging.Logger.handle
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    inside: list[bool] = []
    log = logging.getLogger("vitkit-test-two-threads")
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: seen.append(r.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)

    def first() -> None:  # enters first, leaves first
        with silenced():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second() -> None:
        a_in.wait(10)
        with silenced():
            b_in.set()
            a_out.wait(10)
            # the first has left: this one is still silent
            log.warning("second, inside")
            warnings.warn("second, inside", stacklevel=1)
            inside.append(sys.stdout is not stdout)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            filters = list(warnings.filters)
            threads = [threading.Thread(target=first), threading.Thread(target=second)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            assert warnings.filters == filters
            log.warning("after")
            warnings.warn("after", stacklevel=1)
    finally:
        log.removeHandler(handler)
    assert inside == [True]
    assert seen == ["after"]
    assert [str(w.message) for w in caught] == ["after"]
    assert logging.root.manager.disable == level
    assert logging.Logger.handle is handle
    assert sys.stdout is stdout


@pytest.mark.parametrize("legacy", [False, True])
def test_class_token_block_weights_are_folded_to_initializers(legacy: bool) -> None:
    """The last block's q and kv weights are slices of qkv: folded, so int8 can quantize them."""
    from vitkit.export.quantize import weight_nodes

    model = create_model("vit-nano", image_size=16, patch_size=4, num_classes=5).eval()
    proto, exporter, _ = export_graph(model, image_size=16, channels=3, legacy=legacy)
    assert exporter == ("torchscript" if legacy else "dynamo")
    inits = {i.name for i in proto.graph.initializer}
    over_weights = [n.op_type for n in proto.graph.node if n.input and n.input[0] in inits]
    assert "Slice" not in over_weights and "Transpose" not in over_weights
    # 4 blocks x (qkv, proj, fc1, fc2), the class-token block's qkv as q and kv, the head
    assert len(weight_nodes(proto)) == 4 * 4 + 1 + 1


def test_opset_17_exports_without_the_exporters_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    """`vitkit export --opset 17`: torch's exporter and onnxscript's version converter logged
    two warnings on stderr ("W1128 ... Setting ONNX exporter to use operator set version 18
    ...", "... fallback is enabled ...") among vitkit's lines, for an opset it supports and
    writes; the library stays silent, and leaves logging as it found it."""
    import logging

    model = create_model("vit-nano", image_size=16, patch_size=4, num_classes=5).eval()
    capfd.readouterr()
    proto, exporter, _ = export_graph(model, image_size=16, channels=3, opset=17)
    assert exporter == "dynamo" and [o.version for o in proto.opset_import if not o.domain] == [17]
    assert capfd.readouterr() == ("", "")
    assert logging.root.manager.disable == logging.NOTSET


def test_the_exporters_silence_keeps_a_callers_higher_logging_disable_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """_silenced set logging.disable(WARNING) whatever the level was: a program that had
    disabled ERROR logging (logging.disable(logging.ERROR)) saw errors logged during an export.
    The caller's level is left as it is (the silence no longer uses logging.disable at all), and
    everything is restored after, an error or not."""
    import logging

    from vitkit.export._quiet import silenced as _silenced

    log = logging.getLogger("vitkit-test-silenced")
    try:
        logging.disable(logging.CRITICAL)
        with _silenced():
            assert not log.isEnabledFor(logging.ERROR)
            assert logging.root.manager.disable == logging.CRITICAL
            log.error("disabled by the caller")
        assert logging.root.manager.disable == logging.CRITICAL
        logging.disable(logging.NOTSET)
        with caplog.at_level(logging.INFO), pytest.raises(RuntimeError), _silenced():
            with _silenced():  # nested: the inner exit leaves the outer one silent
                log.warning("inner")
            assert logging.root.manager.disable == logging.NOTSET
            log.warning("outer")
            log.error("an error gets through")
            raise RuntimeError
        assert logging.root.manager.disable == logging.NOTSET
        with caplog.at_level(logging.INFO):
            log.warning("after")
        assert [r.getMessage() for r in caplog.records] == ["an error gets through", "after"]
    finally:
        logging.disable(logging.NOTSET)


def test_fuse_attention_matches_eager_on_every_preset_shape() -> None:
    import torch

    import vitkit
    from vitkit.export.onnx import export_graph, ort_session
    from vitkit.export.quantize import fuse_attention

    for pool, qkv_bias in (("cls", True), ("cls", False), ("mean", False)):
        torch.manual_seed(0)
        model = vitkit.create_model(
            "vit-nano", image_size=16, patch_size=4, num_classes=5, pool=pool, qkv_bias=qkv_bias
        ).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.05)  # no shared (deduplicated) weights
        plain, _, _ = export_graph(model, image_size=16, channels=3)
        fused, n = fuse_attention(plain, num_heads=model.spec.config.num_heads)
        # the class-token block (queries for one token only) becomes MultiHeadAttention
        cls_block = int(pool == "cls")
        ops = [node.op_type for node in fused.graph.node]
        assert n == model.spec.config.depth
        assert ops.count("Attention") == n - cls_block
        assert ops.count("MultiHeadAttention") == cls_block
        assert "Softmax" not in ops
        onnx.checker.check_model(fused)
        x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        out = ort_session(fused).run(None, {"pixel_values": x})[0]
        assert np.abs(out - ref).max() <= 1e-4


def test_fixed_batch(trained_run: Path, loaded: LoadedModel, tmp_path: Path) -> None:
    report = export_onnx(
        trained_run, tmp_path / "model.onnx", legacy=True, batch=4, verify_images=10
    )
    assert report.passed, report.failures
    assert set(report.precision("fp32").batches) == {"4"}
    session = ort_session(report.out)
    assert session.get_inputs()[0].shape[0] == 4
    x = np.random.default_rng(2).standard_normal((10, 1, 28, 28)).astype(np.float32)
    out = run_onnx(session, x)  # chunks of 4, the last one padded
    assert out.shape == (10, 10) and np.abs(out - eager(loaded, x)).max() <= 1e-4
    assert read_onnx_metadata(report.out)["batch"] == 4


def test_speed_figures_from_a_busy_machine_say_so(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load one export's int8 read 0.57x fp32 and 2.38x a minute later, with no word."""
    from vitkit.bench import timing

    monkeypatch.setattr(timing.OtherCpuUse, "cores", lambda self: 0.75)
    monkeypatch.setattr(timing, "unsteady", lambda times: True)
    report = export_onnx(trained_run, tmp_path / "model.onnx", legacy=True, verify_images=10)
    assert report.passed, report.failures
    notes = " | ".join(report.notes)
    assert "kept 0.75 of this machine's" in notes and "while the export was verified" in notes
    assert "unsteady img/s (eager, fp32" in notes
    assert "`vitkit bench` times the runtimes in interleaved rounds" in notes
    assert report.precision("fp32").speed_unsteady
    # the thread count used is recorded, not null; no calibration images without int8 static
    doc = json.loads(Path(report.report_path).read_text())
    assert doc["threads"] == torch.get_num_threads()
    assert doc["data"]["calibration_images"] == 0


def test_eager_and_onnx_runtime_get_the_same_threads(trained_run: Path, tmp_path: Path) -> None:
    """`--threads 100` was taken, ONNX Runtime ran on 100 and eager on torch's 2: img/s and
    'vs fp32' compared unlike with unlike. bench refused the same count."""
    import os

    from vitkit.bench import timing

    before = torch.get_num_threads()
    want = 1 if before > 1 else 2
    seen: list[int] = []
    real = onnx_module.eager_reference

    def spy(model: torch.nn.Module, data: onnx_module.VerifyData) -> onnx_module.EagerReference:
        seen.append(torch.get_num_threads())
        return real(model, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(onnx_module, "eager_reference", spy)
        report = export_onnx(
            trained_run, tmp_path / "m.onnx", legacy=True, verify_images=10, threads=want
        )
    assert report.passed, report.failures
    doc = json.loads(Path(report.report_path).read_text())
    assert seen == [want] and doc["threads"] == want and doc["eager"]["torch_threads"] == want
    assert torch.get_num_threads() == before  # the caller's count, as it was
    too_many = timing.MAX_THREADS_PER_CPU * (os.cpu_count() or 1) + 1
    with pytest.raises(UserError, match=f"threads={too_many} is more than"):
        export_onnx(trained_run, tmp_path / "n.onnx", legacy=True, threads=too_many)


def test_dynamo_failure_falls_back_to_torchscript(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot trace this\nmore detail")

    monkeypatch.setattr(onnx_module, "_export_dynamo", broken)
    model = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7).eval()
    proto, exporter, notes = export_graph(model, image_size=28, channels=1)
    assert exporter == "torchscript" and "cannot trace this" in notes[0]
    assert onnx_module.check_model(proto) == "ok"


def test_ctrl_c_during_the_dynamo_export_is_not_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.export wraps a KeyboardInterrupt in its own error: that must stop the export, not
    send it to the TorchScript exporter; and colour codes never reach a note."""

    def interrupted(*args: object, **kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export.") from e

    monkeypatch.setattr(onnx_module, "_export_dynamo", interrupted)
    model = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7).eval()
    with pytest.raises(KeyboardInterrupt):
        export_graph(model, image_size=28, channels=1)

    def coloured(*args: object, **kwargs: object) -> None:
        raise RuntimeError("\x1b[96mcannot trace\x1b[0m this")

    monkeypatch.setattr(onnx_module, "_export_dynamo", coloured)
    _, _, notes = export_graph(model, image_size=28, channels=1)
    assert "cannot trace this" in notes[0] and "\x1b" not in notes[0]


def test_untrained_multi_output_module_verifies_on_synthetic_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7, num_outputs=2)
    report = export_onnx(
        model, tmp_path / "nano.onnx", legacy=True, int8="dynamic", verify_images=16
    )
    assert report.passed, report.failures
    assert report.run is None and report.data["synthetic"] is True
    assert any("synthetic" in n for n in report.notes)
    assert report.precision("int8").notes == ["no labels: the int8 accuracy gate was not applied"]
    assert report.report_path == str(tmp_path / "nano.export.json")
    meta = read_onnx_metadata(tmp_path / "nano.onnx")
    assert meta["trained"] is False and meta["num_outputs"] == 2
    out = run_onnx(ort_session(tmp_path / "nano.onnx"), np.zeros((3, 1, 28, 28), np.float32))
    assert out.shape == (3, 2, 10)
    # uint8 pixels were cast to float and gave logits of 0..255 inputs, without a word
    with pytest.raises(UserError, match="takes normalised float images; got uint8"):
        run_onnx(ort_session(tmp_path / "nano.onnx"), np.zeros((3, 1, 28, 28), np.uint8))


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "vit-base" else n for n in list_models()],
)
def test_every_preset_at_its_default_size_passes_the_checker(name: str) -> None:
    model = create_model(name).eval()
    cfg = model.config
    proto, exporter, _ = export_graph(model, image_size=cfg.image_size, channels=cfg.in_chans)
    assert exporter == "dynamo"
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_latest_run_and_how_to_make_one(tmp_path: Path) -> None:
    from vitkit.artifact import latest_run

    with pytest.raises(UserError, match="train one with `vitkit train mnist-mini`"):
        latest_run(tmp_path / "runs")
    import os

    for i, name in enumerate(["b", "a"]):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "model.json").write_text("{}")
        os.utime(tmp_path / "runs" / name / "model.json", (1000 + i, 1000 + i))
    (tmp_path / "runs" / "not-a-run").mkdir()
    assert latest_run(tmp_path / "runs") == tmp_path / "runs" / "a"


def test_helpers_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such ONNX file"):
        ort_session(tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="no such ONNX file"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \xff\xff")
    with pytest.raises(UserError, match="cannot"):
        read_onnx_metadata(tmp_path / "junk.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(UserError, match="not made by `vitkit export`"):
        read_onnx_metadata(tmp_path / "foreign.onnx")
    with pytest.raises(UserError, match=r"^int8 must be one of"):
        export_onnx(create_model("vit-nano"), tmp_path / "m.onnx", int8="int4")
    with pytest.raises(UserError, match=r"^batch must be"):
        export_onnx(create_model("vit-nano"), tmp_path / "m.onnx", batch=0)
    # from Python, wrong types: TypeErrors deep inside, or (batch=True) a batch of 1
    for kwargs, message in [
        ({"batch": True}, "^batch must be 'dynamic' or a positive integer, got True"),
        ({"verify_images": "5"}, "^verify_images must be an integer, got '5'"),
        ({"calib_images": 2.5}, "^calib_images must be an integer, got 2.5"),
        ({"opset": "20"}, "^opset must be an integer, got '20'"),
        ({"threads": "2"}, "^threads must be an integer, got '2'"),
        ({"int8": True}, "^int8 must be one of auto, dynamic, static, got True$"),
    ]:
        with pytest.raises(UserError, match=message):
            export_onnx(create_model("vit-nano"), tmp_path / "m.onnx", **kwargs)  # type: ignore[arg-type]


def test_eval_onnx_agrees_with_eager(trained_run: Path, tmp_path: Path) -> None:
    """`vitkit eval RUN --onnx` measures the deployed model: within 0.1 pt of eager."""
    import json
    import shutil

    from typer.testing import CliRunner

    from vitkit.cli import app

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(run), "--onnx", "--json"])
    assert exported.exit_code == 0, exported.output
    eager = json.loads(runner.invoke(app, ["eval", str(run), "--json"]).stdout)
    result = runner.invoke(app, ["eval", str(run), "--onnx", "--json"])
    assert result.exit_code == 0, result.output
    via_ort = json.loads(result.stdout)
    assert via_ort["device"].startswith("onnxruntime-cpu")
    assert abs(via_ort["top1"] - eager["top1"]) <= 0.001
    # beside the file, as `vitkit eval RUN/export/model.onnx`; RUN/eval stays the eager report
    assert via_ort["files"][0] == str(run / "export" / "eval-model" / "eval.json")
    kept = json.loads((run / "eval" / "eval.json").read_text())
    assert kept["device"] == eager["device"] and kept["model_file"].endswith("model.safetensors")


def test_predict_on_onnx_file_matches_eager(trained_run: Path, tmp_path: Path) -> None:
    """`vitkit predict MODEL.onnx IMAGE` needs nothing but the file: metadata -> preprocessing."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from vitkit import load_dataset
    from vitkit.cli import app

    images = load_dataset("mnist-mini")["test"].images[:3, 0]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(img.numpy()).resize((56, 40)).save(paths[-1])
    onnx_file = tmp_path / "m.onnx"
    runner = CliRunner()
    assert (
        runner.invoke(
            app, ["export", str(trained_run), "--onnx", "--out", str(onnx_file), "--json"]
        ).exit_code
        == 0
    )
    via_ort = json.loads(
        runner.invoke(app, ["predict", str(onnx_file), *map(str, paths), "--json"]).stdout
    )["predictions"]
    eager = json.loads(
        runner.invoke(app, ["predict", str(trained_run), *map(str, paths), "--json"]).stdout
    )["predictions"]
    for a, b in zip(via_ort, eager, strict=True):
        assert a["label"] == b["label"]
        assert abs(a["confidence"] - b["confidence"]) < 1e-4


def test_dedupe_nodes_drops_exact_repeats_only() -> None:
    from onnx import helper

    from vitkit.export.quantize import dedupe_nodes

    cast = helper.make_node("Cast", ["w"], ["w32"], name="a", to=1)
    repeat = helper.make_node("Cast", ["w"], ["w32"], name="b", to=1)  # another name, same node
    other = helper.make_node("Cast", ["w"], ["w16"], name="c", to=10)
    graph = helper.make_graph([cast, repeat, other], "g", [], [])
    assert dedupe_nodes(graph) == 1
    assert [n.name for n in graph.node] == ["a", "c"]
    assert dedupe_nodes(graph) == 0


def test_race_times_every_model_at_each_batch_it_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    from vitkit.export.onnx import export_graph, race

    model = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7).eval()
    dynamic, _, _ = export_graph(model, image_size=28, channels=1)
    fixed, _, _ = export_graph(model, image_size=28, channels=1, batch=1, legacy=True)
    monkeypatch.setattr(onnx_module, "RACE_SECONDS", 0.01)
    order: list[str] = []
    real = onnx_module.ort_session

    def tracked(m: onnx.ModelProto, **kw: object) -> object:
        session = real(m, **kw)  # type: ignore[arg-type]

        class Spy:
            def get_inputs(self) -> object:
                return session.get_inputs()

            def run(self, *a: object) -> object:
                order.append("dynamic" if m is dynamic else "fixed")
                return session.run(*a)

        return Spy()

    monkeypatch.setattr(onnx_module, "ort_session", tracked)
    from itertools import pairwise

    from vitkit.bench import timing

    real_settle = timing.settle

    def settle() -> float:  # each turn starts once the last session's workers stop spinning
        order.append("settle")
        return real_settle()

    monkeypatch.setattr(timing, "settle", settle)
    times = race({"dynamic": dynamic, "fixed": fixed}, None, batches=(1, 4), rounds=3)
    # a settle before every timed turn: 2 models x 3 rounds at batch 1, 1 x 3 at batch 4
    assert sum(o == "settle" and n != "settle" for o, n in pairwise(order)) == 9
    assert set(times["dynamic"]) == {1, 4} and set(times["fixed"]) == {1}  # fixed: its size only
    assert all(t > 0 for per in times.values() for t in per.values())
    # the warm-ups, then turn after turn (each after a settle), not one block per model; the
    # order rotates from round to round, so no model always follows the same one
    warm, *turns = "".join("|" if o == "settle" else o[0] for o in order).split("|")
    assert warm == "df" and [t[0] for t in turns if t] == list("dffdd" + "f" + "ddd")


def test_race_skips_a_batch_size_no_model_runs_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch size that every model's fixed batch rules out: the rotation of the turn order
    divided by the number of models there (none: ZeroDivisionError); it is skipped, as before."""
    from vitkit.export.onnx import export_graph, race, race_rounds

    model = create_model("vit-nano", image_size=28, in_chans=1, patch_size=7).eval()
    fixed, _, _ = export_graph(model, image_size=28, channels=1, batch=1, legacy=True)
    monkeypatch.setattr(onnx_module, "RACE_SECONDS", 0.01)
    turns = race_rounds({"a": fixed, "b": fixed}, None, batches=(4, 1), rounds=2)
    assert {n: list(per) for n, per in turns.items()} == {"a": [1], "b": [1]}
    assert all(len(t) == 2 and min(t) > 0 for per in turns.values() for t in per.values())
    assert race({"a": fixed}, None, batches=(4,), rounds=2) == {"a": {}}


@pytest.mark.parametrize("winner", ["attention", "plain"])
def test_optimize_int8_is_quantized_from_the_kept_graph(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, winner: str
) -> None:
    def fixed_race(models: dict[str, onnx.ModelProto], *a: object, **kw: object) -> object:
        # the winner twice as fast as everything else, at both batch sizes, in every round
        return {n: {b: [1.0 if n == winner else 2.0] * 3 for b in (1, 64)} for n in models}

    monkeypatch.setattr(onnx_module, "race_rounds", fixed_race)
    report = export_onnx(
        trained_run, tmp_path / "model.onnx", optimize=True, int8="dynamic", verify_images=200
    )
    assert report.passed, report.failures
    assert report.optimize is not None and report.optimize["kept"] == winner
    assert report.int8 is not None
    assert report.int8["sources"] == {"dynamic": winner}
    ops = {n.op_type for n in onnx.load(tmp_path / "model.int8.onnx").graph.node}
    # the fused model's attention projections are quantized too; the plain one has none
    assert ("QAttention" in ops) == (winner == "attention")
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    rep8 = report.precision("int8")
    assert rep8.passed and rep8.top1_agreement is not None and rep8.top1_agreement >= 0.97


def test_the_race_compares_models_round_by_round(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The machine turns ~40% slower between plain's and attention's turns of the third round
    and stays so: the two medians over all rounds (5.0 ms against 6.67 ms) say attention is
    slower; round by round it is 1.05x faster in four rounds of five, and is kept."""
    from vitkit.export import paired_speedup

    plain, fused = [5.0, 5.0, 5.0, 7.0, 7.0], [5 / 1.05, 5 / 1.05, 7 / 1.05, 7 / 1.05, 7 / 1.05]
    assert float(np.median(plain)) / float(np.median(fused)) < 0.8
    assert paired_speedup(plain, fused) == pytest.approx(1.05)

    def spell(models: dict[str, onnx.ModelProto], *a: object, **kw: object) -> object:
        slow = {"plain": plain, "attention": fused}
        return {n: {b: slow.get(n, [9.0] * 5) for b in (1, 64)} for n in models}

    monkeypatch.setattr(onnx_module, "race_rounds", spell)
    report = export_onnx(trained_run, tmp_path / "model.onnx", optimize=True, verify_images=64)
    assert report.optimize is not None and report.optimize["kept"] == "attention"
    (attention,) = [c for c in report.optimize["candidates"] if c["name"] == "attention"]
    assert attention["speedup_by_batch"] == {"1": 1.05, "64": 1.05}


def test_optimize_races_a_fixed_batch_export_at_its_own_size(
    trained_run: Path, tmp_path: Path
) -> None:
    report = export_onnx(
        trained_run, tmp_path / "model.onnx", batch=8, optimize=True, verify_images=64
    )
    assert report.passed, report.failures
    info = report.optimize
    assert info is not None
    for c in info["candidates"]:
        assert c["report"]["passed"], c["name"]
        assert set(c["speedup_by_batch"]) == {"8"} and c["speedup"] is not None, c
    faster = [c for c in info["candidates"] if c["speedup"] > 1]
    assert info["kept"] == (max(faster, key=lambda c: c["speedup"])["name"] if faster else "plain")


def test_verification_finds_a_relative_folder_dataset_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained on `folder:pics` (relative) records the absolute path; export and bench
    verify on those images from another directory, as eval does (not on synthetic ones)."""
    from PIL import Image

    from vitkit.export import verification_data

    for split, n in (("train", 4), ("test", 3)):
        for c, colour in (("cat", (220, 30, 30)), ("dog", (30, 200, 30))):
            for i in range(n):
                p = tmp_path / "work" / "pics" / split / c / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), colour).save(p)
    monkeypatch.chdir(tmp_path / "work")
    ds = load_dataset("folder:pics", data_root=tmp_path / "cache")
    spec = resolve_spec("vit-nano", image_size=16, patch_size=4, num_classes=2)
    lm = LoadedModel(
        model=spec.build().eval(),
        spec=spec,
        classes=ds.classes,
        image_size=16,
        channels=3,
        mean=[0.5] * 3,
        std=[0.5] * 3,
        dataset="folder:pics",
        meta={"dataset_options": ds.options},
        path=tmp_path / "run",
    )
    source = lm.dataset_source()
    assert source is not None and source[0] == f"folder:{tmp_path / 'work' / 'pics'}"
    monkeypatch.chdir(tmp_path)  # where folder:pics does not exist
    data = verification_data(lm, data_root=tmp_path / "cache", download=False)
    assert not data.synthetic and data.labels is not None and len(data.labels) == 6, data.notes


def test_an_fp32_export_removes_siblings_of_other_weights(tmp_path: Path) -> None:
    """Re-exporting fp32 only beside an earlier fp16/int8 export: kept if they are these weights,
    removed (with a note) if they are another model's, so the folder never mixes two models."""
    torch.manual_seed(0)
    a = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    torch.manual_seed(1)
    b = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    out = tmp_path / "model.onnx"
    export_onnx(a, out, fp16=True, int8="dynamic", verify=False)
    again = export_onnx(a, out, verify=False)
    assert (tmp_path / "model.int8.onnx").is_file() and (tmp_path / "model.fp16.onnx").is_file()
    assert not [n for n in again.notes if n.startswith("removed")]
    # kept, and said: the new export.json lists fp32 only, so they were there unannounced
    kept = [n for n in again.notes if n.startswith("kept model.")]
    assert [n.split()[1] for n in kept] == ["model.fp16.onnx", "model.int8.onnx"], again.notes
    other = export_onnx(b, out, verify=False)
    assert (
        not (tmp_path / "model.int8.onnx").exists() and not (tmp_path / "model.fp16.onnx").exists()
    )
    assert "removed model.int8.onnx: an earlier export of other weights" in other.notes
    # an earlier export's failed fp16 stayed, whatever came after (the report never named it)
    (tmp_path / "model.fp16.failed.onnx").write_bytes(b"an earlier failure")
    last = export_onnx(b, out, verify=False)
    assert not (tmp_path / "model.fp16.failed.onnx").exists()
    assert "removed model.fp16.failed.onnx: an earlier export's failed fp16 model" in last.notes


def test_a_re_export_names_the_eval_reports_it_made_stale(tmp_path: Path) -> None:
    """eval-model/ scored the earlier model.onnx, eval-model.int8/ a model.int8.onnx that an
    export of other weights without --int8 removes: both named in a note, neither deleted."""
    from vitkit.data.download import file_sha256

    torch.manual_seed(0)
    a = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    torch.manual_seed(1)
    b = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    out = tmp_path / "model.onnx"
    int8 = tmp_path / "model.int8.onnx"
    first = export_onnx(a, out, int8="dynamic", verify=False)
    assert not [n for n in first.notes if "eval-" in n]
    for file in (out, int8):  # as `vitkit eval FILE` leaves them (a bare module's it refuses)
        folder = tmp_path / f"eval-{file.stem}"
        folder.mkdir()
        doc = {"model_file": str(file), "model_sha256": file_sha256(file), "split": "test"}
        (folder / "eval.json").write_text(json.dumps(doc))
    other = export_onnx(b, out, verify=False)
    assert "removed model.int8.onnx: an earlier export of other weights" in other.notes
    assert (
        f"{tmp_path / 'eval-model'}/ scored an earlier model.onnx: rerun `vitkit eval {out}`"
        in other.notes
    ), other.notes
    assert (
        f"{tmp_path / 'eval-model.int8'}/ scored model.int8.onnx, which is removed: that report "
        "describes no model here now" in other.notes
    ), other.notes
    assert (tmp_path / "eval-model" / "eval.json").is_file()
    assert (tmp_path / "eval-model.int8" / "eval.json").is_file()
    saved = json.loads((tmp_path / "export.json").read_text())
    assert [n for n in saved["notes"] if "eval-" in n] == [n for n in other.notes if "eval-" in n]


def _two_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    torch.manual_seed(1)
    b = create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    return a, b


def test_ctrl_c_while_the_files_are_written_leaves_the_earlier_export_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every model built, Ctrl-C while they were written one by one (each atomically): the new
    model.onnx stood beside the earlier model.fp16.onnx and model.int8.onnx of other weights,
    and the earlier export.json described neither. Now they all go to temp files first: the
    folder is byte for byte as it was, with no temp file left."""
    from vitkit.artifact import Staged

    a, b = _two_models()
    out = tmp_path / "model.onnx"
    export_onnx(a, out, fp16=True, int8="dynamic", verify=False)
    (tmp_path / "model.fp16.failed.onnx").write_bytes(b"an earlier failure")  # one to remove
    earlier = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json"} <= set(earlier)
    write, calls = Staged.write, []

    def second_interrupted(self: Staged, path: Path, data: bytes | str) -> None:
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write(self, path, data)

    monkeypatch.setattr(Staged, "write", second_interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(b, out, fp16=True, int8="dynamic", verify=False)
    assert calls == ["model.onnx", "model.fp16.onnx"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == earlier
    monkeypatch.undo()
    # and an interrupt after the last model, while export.json is written: as it was too
    write, calls = Staged.write, []

    def report_interrupted(self: Staged, path: Path, data: bytes | str) -> None:
        calls.append(Path(path).name)
        if Path(path).name == "export.json":
            raise KeyboardInterrupt
        write(self, path, data)

    monkeypatch.setattr(Staged, "write", report_interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(b, out, fp16=True, int8="dynamic", verify=False)
    assert calls == ["model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json"]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == earlier


def test_ctrl_c_while_the_files_are_renamed_waits_for_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between two renames of the final pass is held off until export.json, the last, is
    in place: then KeyboardInterrupt, over a folder of the new export's files only."""
    import signal

    # Python's own Ctrl-C handler, as a terminal session has it: a shell starts background jobs
    # (`nox -s tests &`) with SIGINT ignored, and the export then rightly holds nothing off
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_renamed(tmp_path, monkeypatch)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_renamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    a, b = _two_models()
    out = tmp_path / "model.onnx"
    export_onnx(a, out, int8="dynamic", verify=False)
    replace, renamed = os.replace, []

    def ctrl_c_after_the_first(src: str, dst: str) -> None:
        replace(src, dst)
        renamed.append(Path(dst).name)
        if len(renamed) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("vitkit.artifact.os.replace", ctrl_c_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(b, out, fp16=True, verify=False)
    monkeypatch.undo()
    assert renamed == ["model.onnx", "model.fp16.onnx", "export.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    report = json.loads((tmp_path / "export.json").read_text())
    assert [Path(f).name for f in report["files"]] == [*renamed[:-1], "export.json"]
    # the earlier int8 model, of a's weights, was removed in the same pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(renamed)


def test_verification_needs_only_the_test_files_unless_int8_calibrates(
    test_files_only: Path, tmp_path: Path
) -> None:
    """Verifying scores test images with the run's own mean/std: with only the test files here
    it fell back to synthetic images (the dataset 'unavailable': train-images missing) and
    verified no accuracy. Static int8 calibrates on training images: those are still needed."""
    from vitkit.data import get_dataset_spec

    spec = resolve_spec("vit-nano", image_size=28, patch_size=7, num_classes=10)
    lm = LoadedModel(
        model=spec.build().eval(),
        spec=spec,
        classes=list(get_dataset_spec("fashion-mnist").classes or ()),
        image_size=28,
        channels=1,
        mean=[0.13],
        std=[0.31],
        dataset="fashion-mnist",
        meta={"dataset_options": {}},
        path=tmp_path / "run",
    )
    args: dict[str, Any] = dict(data_root=test_files_only, download=False, verify_images=50)
    data = verification_data(lm, **args, calib_images=0)
    assert not data.synthetic and data.labels is not None and len(data.labels) == 50, data.notes
    assert data.source == "fashion-mnist test split (50 of 1,000 images)"
    # static int8 calibrates on training images, which are not here: it fell back to synthetic
    # images (verifying no accuracy) for want of them; the test split still verifies, and
    # there is nothing to calibrate on (never the test images themselves), and why
    calibrating = verification_data(lm, **args, calib_images=8)
    assert not calibrating.synthetic and calibrating.unavailable is None, calibrating.notes
    assert calibrating.source == data.source and calibrating.labels is not None
    assert np.array_equal(calibrating.images, data.images) and len(calibrating.calibration) == 0
    assert calibrating.why_uncalibrated == calibrating.uncalibrated
    assert calibrating.uncalibrated is not None and calibrating.uncalibrated.startswith(
        "the train split of dataset 'fashion-mnist' is unavailable (fashion-mnist: missing "
        "train-images-idx3-ubyte.gz"
    )
    assert data.why_uncalibrated is None  # nothing to calibrate asked for: nothing missing
