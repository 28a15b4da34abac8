"""benchmark() on a trained vit-nano: every CPU runtime agrees with eager; cells are sane."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import onnx
import pytest
import torch

from vitkit.bench import BenchReport, benchmark
from vitkit.bench import runtimes as runtimes_module
from vitkit.bench.runtimes import Runner, Runtime, Skip, get_runtime, list_runtimes
from vitkit.errors import UserError

CPU_ALL = ("eager", "eager-bf16", "compile", "ort", "ort-fp16", "ort-int8")
# torch.compile on CPU needs a C++ compiler; where there is none it must say so, not run
CAN_COMPILE = get_runtime("compile").why_not(torch.device("cpu")) is None
CPU_OK = tuple(n for n in CPU_ALL if n != "compile" or CAN_COMPILE)


def test_every_cpu_runtime_ran(report: BenchReport) -> None:
    if not CAN_COMPILE:
        assert "C++ compiler" in (report.result("compile", "cpu").reason or "")
    for name in CPU_OK:
        res = report.result(name, "cpu")
        assert res.status == "ok", (name, res.reason)
        assert res.reason is None
        for b in (1, 4):
            row = report.row(name, b, "cpu")
            assert row.runs >= 5 and row.p50_ms > 0  # at least 5 timed calls per cell


def test_fp32_runtimes_match_eager(report: BenchReport) -> None:
    assert report.data["labelled"] and report.data["images"] == 200
    for name in ("eager", "compile", "ort"):
        if name not in CPU_OK:
            continue
        res = report.result(name, "cpu")
        assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4, name
        assert res.top1_agreement == 1.0, name
        assert res.accuracy == pytest.approx(report.reference_accuracy)


def test_reduced_precision_runtimes_agree_with_eager(report: BenchReport) -> None:
    assert report.reference_accuracy is not None
    assert report.settings["accuracy_batch"] == 4  # the largest batch size: recorded, as int8
    # dynamic's answers move a little with it
    for name, min_agree, max_drop in (
        ("ort-fp16", 0.99, 0.01),
        ("eager-bf16", 0.95, 0.03),
        ("ort-int8", 0.95, 0.03),
    ):
        res = report.result(name, "cpu")
        assert res.top1_agreement is not None and res.top1_agreement >= min_agree, name
        assert res.accuracy is not None
        assert report.reference_accuracy - res.accuracy <= max_drop, name


def test_thread_counts_are_equal_and_recorded(report: BenchReport) -> None:
    wanted = report.threads["requested"]  # the conftest asks for 1 (the session runs with 2)
    assert wanted == 1
    assert report.threads["torch"] == wanted
    assert report.threads["onnxruntime"] == wanted
    assert report.threads["equal"] is True
    for name in ("ort", "ort-fp16", "ort-int8"):
        info = report.result(name, "cpu").info
        assert info["ort_intra_op_threads"] == wanted
        assert info["torch_threads"] == wanted
        assert info["providers"] == ["CPUExecutionProvider"]
    assert report.result("eager", "cpu").info["torch_threads"] == wanted


def test_rows_are_consistent(report: BenchReport) -> None:
    flops = report.flops_per_image
    assert flops > 0 and report.peaks and report.peaks[0]["gflops"] > 0
    for peak in report.peaks:  # timed before and after the cells, the higher kept
        assert len(peak["measured"]) == 2 and peak["gflops"] == max(peak["measured"])
    for row in report.rows:
        assert row.p50_ms <= row.p90_ms <= row.p99_ms
        assert row.images_per_s == pytest.approx(row.batch / (row.p50_ms / 1e3), rel=1e-3)
        assert row.gflops == pytest.approx(flops * row.images_per_s / 1e9, rel=1e-2)
        if row.precision == "fp32":
            assert row.peak_share is not None and row.peak_share > 0
        else:  # int8, and bf16/fp16 on the CPU, have no GEMM of their own arithmetic
            assert row.peak_share is None, row
        assert row.size_bytes and row.size_bytes > 0
        base = report.row("eager", row.batch, row.device)
        assert row.speedup == pytest.approx(base.p50_ms / row.p50_ms, rel=0.02)
    assert report.row("eager", 1).speedup == 1.0


def test_sizes_follow_precision(report: BenchReport) -> None:
    fp32 = report.result("ort", "cpu").size_bytes
    fp16 = report.result("ort-fp16", "cpu").size_bytes
    int8 = report.result("ort-int8", "cpu").size_bytes
    assert fp32 and fp16 and int8
    assert int8 < fp16 < fp32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA machine")
def test_cuda_and_cpu_only_runtimes_are_skipped_with_reasons(report: BenchReport) -> None:
    cuda = [r for r in report.runtimes if r.device == "cuda"]
    assert {r.runtime for r in cuda} == {*CPU_ALL, "trt"}
    for r in cuda:
        assert r.status == "skipped" and r.reason, r
    assert "CUDA" in report.result("eager", "cuda").reason  # type: ignore[operator]
    assert "cpu only" in report.result("ort-int8", "cuda").reason  # type: ignore[operator]
    assert "cuda only" in report.result("trt", "cpu").reason  # type: ignore[operator]
    assert not [row for row in report.rows if row.device == "cuda"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA machine")
def test_no_baseline_note_for_a_device_that_is_not_here() -> None:
    """`--runtimes eager-bf16` without CUDA said "eager fp32 added on cuda": nothing was."""
    from vitkit.bench.run import _plan

    notes: list[str] = []
    _plan(["eager-bf16", "ort"], [torch.device("cpu"), torch.device("cuda")], notes)
    assert notes == ["eager fp32 added on cpu: it is the baseline of every speed-up"]


def test_exports_are_made_beside_the_bench_then_reused(
    report: BenchReport, bench_run: Path
) -> None:
    made = bench_run / "bench" / "export"
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "export.json"):
        assert (made / name).is_file()
        assert str(made / name) in report.files  # written by it: listed with its reports
    assert not (bench_run / "export").exists()  # the run's own export/ is never written
    assert report.result("ort").info["file"] == str(made / "model.onnx")
    assert report.result("ort-int8").info["onnx_precision"] == "int8-dynamic"
    from vitkit.export.onnx import DEFAULT_OPSET

    for name in ("ort", "ort-int8"):  # what was timed is recorded: opset, plain or fused graph
        assert report.result(name).info["onnx_opset"] == DEFAULT_OPSET
        assert report.result(name).info["onnx_fused"] is False
    again = benchmark(
        bench_run,
        runtimes="ort",
        devices="cpu",
        batch_sizes=[2],
        warmup=1,
        min_time=0.02,
        rounds=1,
        accuracy_images=0,
        write=False,
    )
    assert f"reused {made / 'model.onnx'}" in again.notes, again.notes  # verified: no more
    assert not any(n.startswith("exported") for n in again.notes)
    assert again.result("ort").accuracy is None and again.settings["accuracy_images"] == 0


def test_the_runs_own_exports_are_used_but_never_overwritten(
    bench_run: Path, tmp_path: Path
) -> None:
    import shutil

    from vitkit.export import export_onnx

    run = tmp_path / "run"
    shutil.copytree(bench_run, run, ignore=shutil.ignore_patterns("bench"))
    export_onnx(run, verify=False)  # the user's plain fp32 export, dynamic batch: reusable
    export_onnx(run, run / "fixed" / "model.onnx", batch=4, verify=False)
    fixed = (run / "fixed" / "model.onnx").read_bytes()
    user = (run / "export" / "model.onnx").read_bytes()
    (run / "export" / "model.int8.onnx").write_bytes(b"cut short")  # damaged: said, not silent
    rep = benchmark(
        run,
        runtimes="ort,ort-int8",
        devices="cpu",
        batch_sizes=[2],
        warmup=1,
        min_time=0.02,
        rounds=1,
        accuracy_images=32,
        write=False,
    )
    assert rep.result("ort").info["file"] == str(run / "export" / "model.onnx")  # reused
    # the user's export.json says it was not verified: bench says so where it names the file
    unchecked = (
        f"reused {run / 'export' / 'model.onnx'}, exported with verify=False: its agreement with "
        "eager is only what this bench's top-1 and Δ eager columns show"
    )
    assert unchecked in rep.notes, rep.notes
    assert rep.result("ort-int8").status == "ok"
    assert rep.result("ort-int8").info["file"] is None  # made in the scratch folder, now gone
    assert (run / "export" / "model.onnx").read_bytes() == user
    assert (run / "export" / "model.int8.onnx").read_bytes() == b"cut short"
    assert not (run / "bench").exists()  # write=False: the exports it made are not kept
    made = "exported fp32, int8-dynamic to a scratch folder"  # it said "int8" alone,
    assert any(n.startswith(made) for n in rep.notes), rep.notes  # and made fp32 there too
    assert any(
        n.startswith(f"passed over {run / 'export' / 'model.int8.onnx'}: ") for n in rep.notes
    )
    assert (run / "fixed" / "model.onnx").read_bytes() == fixed


def test_multi_output_models_are_scored_per_position(tmp_path: Path) -> None:
    import vitkit

    model = vitkit.create_model(
        "vit-nano", image_size=16, patch_size=4, num_classes=4, num_outputs=2
    )
    rep = benchmark(
        model,
        runtimes="eager,ort",
        devices="cpu",
        batch_sizes=[1, 3],
        warmup=1,
        min_time=0.02,
        rounds=1,
        accuracy_images=8,
        out=tmp_path / "out",
    )
    ort = rep.result("ort")
    assert ort.status == "ok" and ort.top1_agreement == 1.0
    assert ort.max_abs_diff is not None and ort.max_abs_diff < 1e-4
    assert {(r.runtime, r.batch) for r in rep.rows} == {
        ("eager", 1),
        ("eager", 3),
        ("ort", 1),
        ("ort", 3),
    }


def test_a_broken_runtime_is_reported_not_fatal(
    bench_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(bm: object, device: torch.device) -> Runner:
        raise RuntimeError("kernel exploded\nsecond line")

    def cannot(bm: object, device: torch.device) -> Runner:
        raise Skip("needs hardware that is not here")

    fake = {
        "broken": Runtime("broken", "test", ("cpu",), (), "fp32", boom),
        "absent": Runtime("absent", "test", ("cpu",), (), "fp32", cannot),
    }
    monkeypatch.setattr(runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, **fake})
    rep = benchmark(
        bench_run,
        runtimes="broken,absent",
        devices="cpu",
        batch_sizes=[1],
        warmup=0,
        min_time=0.01,
        rounds=1,
        accuracy_images=0,
        write=False,
    )
    assert rep.result("broken").status == "failed"
    assert rep.result("broken").reason == "RuntimeError: kernel exploded"
    assert rep.result("absent").status == "skipped"
    assert rep.result("absent").reason == "needs hardware that is not here"
    assert rep.result("eager").status == "ok"  # added as the baseline, and it ran
    assert any("baseline" in n for n in rep.notes)
    assert [r.runtime for r in rep.rows] == ["eager"]
    # nothing scored: the data says so (it read "1 of 1,000 images", labelled)
    assert rep.data["images"] == 0 and rep.data["labelled"] is False
    assert rep.data["source"].endswith("; timing inputs only (accuracy_images=0)")


def test_a_runtime_that_fails_at_a_larger_batch_keeps_its_smaller_ones(
    bench_run: Path, fails_above_batch_1: str
) -> None:
    """A runtime out of memory at batch 8 lost its batch-1 figures too: every row of a runtime
    not "ok" was dropped. Its timed cells stay; batch 8 is an untimed cell, failed with the
    error, and 64 one not tried; its accuracy is scored at batch 1, where it runs."""
    from vitkit.bench import UntimedCell
    from vitkit.errors import NotFoundError

    rep = benchmark(
        bench_run, runtimes="eager,small", devices="cpu", batch_sizes=[1, 8, 64], warmup=1,
        min_time=0.02, rounds=2, accuracy_images=16, write=False,
    )  # fmt: skip
    small = rep.result("small")
    assert small.status == "ok" and small.reason is None
    cells = [(r.runtime, r.batch) for r in rep.rows]
    assert cells == [("eager", 1), ("small", 1), ("eager", 8), ("eager", 64)], cells
    row = rep.row("small", 1)
    assert row.p50_ms > 0 and row.runs >= 5 and row.speedup is not None
    oom = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert rep.untimed_cells == [
        UntimedCell("small", "cpu", 8, "fp32", "failed", oom),
        UntimedCell("small", "cpu", 64, "fp32", "skipped", "not tried: batch 8 failed"),
    ]
    with pytest.raises(NotFoundError, match=r"small at batch 8 on cpu: not timed, failed \(Runt"):
        rep.row("small", 8)
    # scored at the largest batch it was timed at (at 64 it was out of memory again), and said
    assert rep.settings["accuracy_batch"] == 64 and small.info["accuracy_batch"] == 1
    assert "accuracy_batch" not in rep.result("eager").info
    assert small.accuracy is not None and small.accuracy == rep.reference_accuracy
    assert small.top1_agreement == 1.0 and row.accuracy == small.accuracy
    assert any(n.startswith("small (cpu) was scored in batches of 1,") for n in rep.notes)


def test_a_runtime_failing_at_its_first_batch_fails_as_a_whole(
    bench_run: Path, fails_above_batch_1: str
) -> None:
    """Nothing timed: the runtime is failed, as before, and no cell of it is listed."""
    rep = benchmark(
        bench_run, runtimes="eager,small", devices="cpu", batch_sizes=[2, 8], warmup=0,
        min_time=0.02, rounds=1, accuracy_images=0, write=False,
    )  # fmt: skip
    small = rep.result("small")
    assert small.status == "failed"
    assert small.reason == "batch 2: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert rep.untimed_cells == [] and [r.runtime for r in rep.rows] == ["eager", "eager"]


def test_a_runtime_that_broke_and_then_fails_when_scored_keeps_its_cells(
    bench_run: Path, fails_above_batch_1: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of memory at batch 8, then no outputs at batch 1 when scored: its batch-1 row and
    its failed batch-8 cell are kept, and accuracy_error says why it has no accuracy (it was
    failed as a whole, with its batch-8 cell still listed beside its own failed line)."""
    from dataclasses import replace

    small = runtimes_module.get_runtime(fails_above_batch_1)

    def no_outputs(bm: object, device: torch.device) -> Runner:
        def fail(images: object, batch: int) -> object:
            raise RuntimeError("outputs went missing")

        return replace(small.prepare(bm, device), outputs=fail)  # type: ignore[arg-type]

    fake = {fails_above_batch_1: replace(small, prepare=no_outputs)}
    monkeypatch.setattr(runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, **fake})
    rep = benchmark(
        bench_run, runtimes="eager,small", devices="cpu", batch_sizes=[1, 8], warmup=0,
        min_time=0.02, rounds=1, accuracy_images=8, write=False,
    )  # fmt: skip
    res = rep.result("small")
    assert (res.status, res.reason) == ("ok", None)
    assert res.accuracy_error == "outputs in batches of 1: RuntimeError: outputs went missing"
    assert [(r.runtime, r.batch) for r in rep.rows] == [("eager", 1), ("small", 1), ("eager", 8)]
    assert [(c.runtime, c.batch, c.status) for c in rep.untimed_cells] == [("small", 8, "failed")]


def test_a_runtime_whose_accuracy_pass_fails_keeps_its_timed_rows(
    bench_run: Path, fails_when_scored: str
) -> None:
    """Timed at every batch size, then out of memory on the scored images: the runtime read
    failed ("outputs: ...") and all its rows went, though their latency was real. It is "ok"
    with its rows; its accuracy, agreement and Δ eager are None, and accuracy_error says why."""
    rep = benchmark(
        bench_run, runtimes="eager,unscored", devices="cpu", batch_sizes=[1, 2], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=8, write=False,
    )  # fmt: skip
    res = rep.result("unscored")
    assert res.status == "ok" and res.reason is None
    cells = [(r.runtime, r.batch) for r in rep.rows]
    assert cells == [("eager", 1), ("unscored", 1), ("eager", 2), ("unscored", 2)], cells
    assert all(r.speedup is not None for r in rep.rows)
    assert (res.accuracy, res.top1_agreement, res.max_abs_diff) == (None, None, None)
    assert rep.row("unscored", 2).accuracy is None
    oom = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert res.accuracy_error == f"outputs in batches of 2: {oom}"
    eager = rep.result("eager")  # the others are scored as before
    assert eager.accuracy_error is None and eager.accuracy == rep.reference_accuracy is not None
    assert not [n for n in rep.notes if n.startswith("unscored")], rep.notes


def test_speed_ups_missing_where_eager_broke_are_explained(
    bench_run: Path, eager_fails_above_batch_1: str
) -> None:
    """Eager, the baseline, out of memory at batch 2: the other runtimes' rows at 2 and 4 have
    no speed-up ("-" in the table), and a note says why rather than nothing."""
    rep = benchmark(
        bench_run, runtimes="eager,copy", devices="cpu", batch_sizes=[1, 2, 4], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=0, write=False,
    )  # fmt: skip
    speedups = {(r.runtime, r.batch): r.speedup for r in rep.rows}
    assert set(speedups) == {("eager", 1), ("copy", 1), ("copy", 2), ("copy", 4)}
    assert speedups[("copy", 1)] is not None
    assert speedups[("copy", 2)] is None and speedups[("copy", 4)] is None
    (note,) = [n for n in rep.notes if n.startswith("no speed-up")]
    assert note == (
        "no speed-up on cpu at batch 2, 4: eager fp32, the baseline, was not timed there (it "
        "failed at batch 2: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB; "
        "larger ones were not tried)"
    )


def test_the_note_for_an_eager_that_failed_at_its_first_batch_names_the_batch_once() -> None:
    """It read "(it failed: batch 1: RuntimeError: oom)", the reason's prefix raw."""
    from vitkit.bench.report import BenchRow, RuntimeResult
    from vitkit.bench.run import _baseline_notes

    row = BenchRow(
        "ort", "cpu", 1, "fp32", 1.0, 1.0, 1.0, 1.0, 5, 1e3, None, None, None, None, None
    )
    eager = RuntimeResult("eager", "cpu", "eager", "fp32", "failed", "batch 1: RuntimeError: oom")
    assert _baseline_notes([row], {("eager", "cpu"): eager}, []) == [
        "no speed-up on cpu at batch 1: eager fp32, the baseline, was not timed there (it failed "
        "at batch 1: RuntimeError: oom)"
    ]
    eager.reason = "torch.compile is not available"  # no batch in it: the reason as it is
    (note,) = _baseline_notes([row], {("eager", "cpu"): eager}, [])
    assert note.endswith("(it failed: torch.compile is not available)")


def test_no_speed_up_note_when_eager_was_timed(report: BenchReport) -> None:
    assert not [n for n in report.notes if n.startswith("no speed-up")], report.notes


def test_a_cell_cut_short_in_a_later_round_loses_its_samples() -> None:
    """Out of memory in round 2 of batch 8: round 1's samples of that cell are not a row."""
    from vitkit.bench.report import RuntimeResult
    from vitkit.bench.run import _untimed

    res = RuntimeResult("ort", "cuda", "ort", "fp32", "failed", "batch 8: RuntimeError: oom")
    timings = {("ort", "cuda", 1): [1e-3] * 5, ("ort", "cuda", 8): [2e-3] * 3}
    cells = _untimed(timings, {("ort", "cuda"): res}, {("ort", "cuda"): 8}, [1, 8])
    assert [(c.batch, c.status, c.reason) for c in cells] == [(8, "failed", "RuntimeError: oom")]
    assert list(timings) == [("ort", "cuda", 1)] and (res.status, res.reason) == ("ok", None)


def _nano_bench(tmp_path: Path, **kwargs: object) -> BenchReport:
    """A short eager + ort benchmark of an untrained vit-nano (16 px, patch 4) on the CPU."""
    import vitkit

    model = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3)
    options: dict[str, object] = {"runtimes": "eager,ort", **kwargs}
    return benchmark(
        model,
        devices="cpu",
        warmup=1,
        min_time=0.02,
        out=tmp_path / "out",
        **options,  # type: ignore[arg-type]
    )


def test_untrained_model_without_data_has_agreement_but_no_accuracy(tmp_path: Path) -> None:
    rep = _nano_bench(tmp_path, batch_sizes=[1, 3], rounds=1, accuracy_images=16)
    assert rep.run is None and rep.data["synthetic"] is True
    # the export's "verified on synthetic images" read as if bench had verified something
    assert not [n for n in rep.notes if "verified" in n]
    assert any(n.startswith("synthetic (uniform random) inputs") for n in rep.notes)
    ort = rep.result("ort")
    assert ort.accuracy is None and ort.top1_agreement == 1.0
    assert ort.max_abs_diff is not None and ort.max_abs_diff < 1e-4
    assert (tmp_path / "out" / "export" / "model.onnx").is_file()
    assert (tmp_path / "out" / "bench.json").is_file()
    from vitkit.errors import NotFoundError  # a lookup miss names what there is (was KeyError)

    with pytest.raises(
        NotFoundError, match=r"no row for ort at batch 8 on cpu \(rows: .*ort at batch 3 on cpu"
    ):
        rep.row("ort", 8)
    with pytest.raises(NotFoundError, match=r"no runtime ort-int8 on cpu .*eager on cpu"):
        rep.result("ort-int8")


def test_write_false_writes_nothing_to_the_out_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write=False still wrote the exports it made to OUT/export (and a later call reused
    them). Now they go to the session's scratch folder, removed at the end: OUT is not made,
    nothing is left behind, and the next call makes its own."""
    import tempfile

    scratch = tmp_path / "tmp"  # where the session's scratch folder goes
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    first = _nano_bench(tmp_path, batch_sizes=[2], rounds=1, accuracy_images=8, write=False)
    assert not (tmp_path / "out").exists()
    assert list(scratch.iterdir()) == []
    ort = first.result("ort")
    assert ort.status == "ok" and ort.top1_agreement == 1.0
    assert ort.info["file"] is None  # it named the scratch file, removed when the call returned
    made = "exported fp32 to a scratch folder, removed afterwards (write=False)"
    assert any(n.startswith(made) for n in first.notes), first.notes
    again = _nano_bench(tmp_path, batch_sizes=[2], rounds=1, accuracy_images=0, write=False)
    assert again.result("ort").status == "ok"
    assert any(n.startswith(made) for n in again.notes), again.notes
    assert not (tmp_path / "out").exists() and list(scratch.iterdir()) == []


def test_each_export_passed_over_is_named_with_its_reason(tmp_path: Path) -> None:
    import vitkit
    from vitkit.bench.run import _current
    from vitkit.export import export_onnx
    from vitkit.export.onnx import loaded_for_export, weights_fingerprint

    model = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    lm = loaded_for_export(model)
    fixed = Path(export_onnx(model, tmp_path / "f" / "model.onnx", batch=4, verify=False).files[0])
    plain = Path(export_onnx(model, tmp_path / "p" / "model.onnx", verify=False).files[0])
    other = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=5).eval()
    alien = Path(export_onnx(other, tmp_path / "o" / "model.onnx", verify=False).files[0])
    fp = weights_fingerprint(model)
    notes: list[str] = []
    assert _current(fixed, lm, "fp32", fp, notes) is None
    assert _current(plain, lm, "int8", fp, notes) is None
    assert _current(alien, lm, "fp32", fp, notes) is None
    assert _current(plain, lm, "fp32", fp, notes) is not None  # current: no note
    broken = onnx.load(plain)  # its metadata intact: it was reused, and ort then skipped
    del broken.graph.node[-1]
    onnx.save(broken, tmp_path / "broken.onnx")
    assert _current(tmp_path / "broken.onnx", lm, "fp32", fp, notes) is None
    assert notes == [
        f"passed over {fixed}: a fixed batch-4 export (bench times every batch size)",
        f"passed over {plain}: its precision is fp32, not int8",
        f"passed over {alien}: an export of another model",
        f"passed over {tmp_path / 'broken.onnx'}: not a valid ONNX graph (Graph output 'logits' "
        "is not an output of any node in graph.)",
    ]


def test_an_export_of_other_weights_is_not_reused(tmp_path: Path) -> None:
    """Same spec, same --out, other weights (another seed, or another run): the ONNX file in
    out/export is not these weights, so it is made anew, and ONNX Runtime agrees with eager."""
    import vitkit

    first = _nano_bench(tmp_path, batch_sizes=[2], rounds=1, accuracy_images=8)
    made = tmp_path / "out" / "export" / "model.onnx"
    assert first.result("ort").top1_agreement == 1.0
    torch.manual_seed(2)
    other = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3)
    again = benchmark(
        other, runtimes="eager,ort", devices="cpu", warmup=1, min_time=0.02,
        batch_sizes=[2], rounds=1, accuracy_images=8, out=tmp_path / "out",
    )  # fmt: skip
    assert f"reused {made}" not in again.notes, again.notes
    # and says why (a user who had just exported wondered why bench exported again)
    assert (
        f"passed over {made}: exported from other weights (weights_sha256 differs)" in again.notes
    )
    assert any(n.startswith("exported fp32") for n in again.notes), again.notes
    ort = again.result("ort")
    assert ort.top1_agreement == 1.0 and ort.max_abs_diff is not None and ort.max_abs_diff < 1e-4
    same = benchmark(
        other, runtimes="ort", devices="cpu", warmup=1, min_time=0.02,
        batch_sizes=[2], rounds=1, accuracy_images=0, out=tmp_path / "out",
    )  # fmt: skip
    assert f"reused {made}" in same.notes, same.notes  # the same weights: reused


def test_every_cell_starts_after_the_last_cells_threads_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's workers spin ~60 ms after a call: a cell timed in that window (eager after
    ort, in the interleaved rounds) would share the cores with them. The longest wait is
    recorded; a thread that never stops is named in a note, and later waits are cut short."""
    from vitkit.bench import run as run_module

    order: list[str] = []
    limits: list[float] = []
    waits = iter([0.01, 0.2] + [0.03] * 10)
    real_measure = run_module.measure

    def settle(*, limit: float) -> float:
        order.append("settle")
        limits.append(limit)
        return limit if len(limits) == 3 else next(waits)  # the third wait hits its limit

    def measure(*args: object, **kwargs: object) -> object:
        order.append("measure")
        return real_measure(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run_module, "settle", settle)
    monkeypatch.setattr(run_module, "measure", measure)
    rep = _nano_bench(tmp_path, batch_sizes=[1, 2], rounds=2, accuracy_images=8)
    pairs = zip(order, [*order[1:], ""], strict=True)
    cells = [o for o, nxt in pairs if o == "settle" and nxt == "measure"]
    assert len(cells) == 2 * 2 * 2  # runtimes x batch sizes x rounds, each settled first
    assert rep.settings["settle_max_s"] == 0.5  # the longest wait: the one that hit the limit
    assert limits[:3] == [0.5] * 3 and set(limits[3:]) == {0.1}
    assert any("stayed busy through the wait before 1 timed cell" in n for n in rep.notes)


def test_batch_sizes_from_python() -> None:
    import numpy as np

    from vitkit.bench.run import parse_batch_sizes

    assert parse_batch_sizes("8,1,8") == [1, 8]
    sizes = parse_batch_sizes(np.array([8, 1]))  # numpy's integers are integers (check_int's too)
    assert sizes == [1, 8] and all(type(b) is int for b in sizes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtimes": "eagre"}, "did you mean 'eager'"),
        ({"runtimes": ","}, "^runtimes is empty"),
        ({"runtimes": ["eager", 3]}, "^a runtime name is a string, got 3"),  # was AttributeError
        ({"devices": "tpu"}, "unknown device 'tpu'"),
        ({"devices": "mps"}, "cpu and cuda devices"),
        ({"devices": "cpu:1"}, "the CPU takes no index"),
        ({"batch_sizes": "1,x"}, "^batch_sizes must be integers"),
        ({"batch_sizes": [0]}, "positive"),
        ({"threads": 0}, "^threads must be >= 1"),
        ({"min_time": 0}, "^min_time must be > 0 seconds, got 0"),
        ({"warmup": -1}, "^warmup must be >= 0, got -1"),
        # from Python: wrong types were TypeErrors (or, warmup=2.5, a whole benchmark)
        ({"warmup": 2.5}, "^warmup must be an integer, got 2.5"),
        ({"rounds": True}, "^rounds must be an integer, got True"),
        ({"min_time": "0.2"}, "^min_time must be a number of seconds, got '0.2'"),
        ({"accuracy_images": "5"}, "^accuracy_images must be an integer"),
        ({"threads": 1.5}, "^threads must be an integer"),
        ({"batch_sizes": 4}, "^batch_sizes must be integers like 1,8,64, got '4'"),
        ({"batch_sizes": [1.5]}, "^batch_sizes must be positive integers"),
        ({"compile_mode": "fastest"}, "^unknown compile_mode"),
        ({"compile_mode": "fast"}, "(modes: default, reduce-overhead, max-autotune,"),
        ({"compile_mode": "max-autotun"}, "did you mean 'max-autotune'"),
    ],
)
def test_bad_options_are_one_line_user_errors(kwargs: dict[str, object], message: str) -> None:
    import vitkit

    model = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        benchmark(model, write=False, **kwargs)  # type: ignore[arg-type]


def test_reduce_overhead_on_the_cpu_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile-mode reduce-overhead on the CPU was taken with no word: its CUDA graphs do not
    exist there. (compile is swapped for a stub here: the note, not the compile, is tested.)"""
    from dataclasses import replace

    def cannot(bm: object, device: torch.device) -> Runner:
        raise Skip("not compiled in this test")

    stub = replace(runtimes_module._RUNTIMES["compile"], prepare=cannot, check=lambda d: None)
    monkeypatch.setattr(
        runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, "compile": stub}
    )
    rep = _nano_bench(
        tmp_path, runtimes="eager,compile", batch_sizes=[1], rounds=1, accuracy_images=0,
        compile_mode="reduce-overhead",
    )  # fmt: skip
    assert any("compile_mode='reduce-overhead' captures CUDA graphs" in n for n in rep.notes)
    rep = _nano_bench(
        tmp_path, runtimes="eager,compile", batch_sizes=[1], rounds=1, accuracy_images=0
    )
    assert not any("reduce-overhead" in n for n in rep.notes)


def test_registry_lists_every_runtime_once() -> None:
    names = list_runtimes()
    assert names == list(dict.fromkeys(names))
    assert {"eager", "eager-bf16", "compile", "ort", "ort-fp16", "ort-int8", "trt"} <= set(names)
    for n in names:
        assert get_runtime(n).name == n
    with pytest.raises(ValueError, match="already registered"):
        runtimes_module.register_runtime(get_runtime("eager"))
    # as users type them: `--runtimes ORT` was "unknown runtime 'ORT'"
    assert runtimes_module.parse_runtimes("ORT, Eager,ort") == ["ort", "eager"]


def test_compile_gets_a_fresh_cache_and_never_falls_back_silently() -> None:
    import torch._dynamo

    from vitkit.bench.run import _fresh_dynamo

    cfg = torch._dynamo.config
    before = cfg.recompile_limit
    with _fresh_dynamo(40):
        assert cfg.recompile_limit >= 48  # every (model, shape) of the benchmark fits
        assert cfg.fail_on_recompile_limit_hit is True  # past it: an error, not eager timings
    assert cfg.recompile_limit == before
    with _fresh_dynamo(0):  # no compile runtime: dynamo is left alone
        assert cfg.recompile_limit == before


def test_optimize_benchmarks_the_optimized_export(bench_run: Path, tmp_path: Path) -> None:
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(bench_run, run)  # its bench/export is plain: --optimize must re-export
    rep = benchmark(
        run,
        runtimes="ort",
        devices="cpu",
        batch_sizes=[2],
        warmup=1,
        min_time=0.02,
        rounds=1,
        accuracy_images=64,
        optimize=True,
    )
    assert rep.settings["optimize"] is True
    assert any(n.startswith("optimize=True: kept the") for n in rep.notes), rep.notes
    assert not (run / "export").exists()  # the run's own folder is never written
    made = run / "bench" / "export"
    kept = json.loads((made / "export.json").read_text())["optimize"]["kept"]
    res = rep.result("ort")
    assert res.info["file"] == str(made / "model.onnx")
    ops = {n.op_type for n in onnx.load(res.info["file"]).graph.node}
    assert ("Attention" in ops) == (kept == "attention")
    assert ("SkipLayerNormalization" in ops) == (kept == "onnxruntime")
    assert res.status == "ok" and res.top1_agreement == 1.0
    assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4


def test_reuse_never_mixes_plain_and_fused_models(
    bench_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.artifact import load_model
    from vitkit.bench.run import ensure_exports
    from vitkit.export import export_onnx
    from vitkit.export import onnx as onnx_module

    def attention_wins(models: dict[str, onnx.ModelProto], *a: object, **kw: object) -> object:
        return {n: {1: [1.0 if n == "attention" else 2.0] * 3} for n in models}

    monkeypatch.setattr(onnx_module, "race_rounds", attention_wins)
    lm = load_model(bench_run)
    folder = tmp_path / "export"
    kw = {"verify_images": 64, "download": False}
    export_onnx(lm, folder / "model.onnx", optimize=True, int8="dynamic", **kw)  # type: ignore[arg-type]
    int8 = folder / "model.int8.onnx"
    assert "QAttention" in {n.op_type for n in onnx.load(int8).graph.node}

    def found(optimize: bool) -> dict[str, Path]:
        files, _, _, _ = ensure_exports(
            lm, {"fp32", "int8"}, [folder], tmp_path / f"made-{optimize}",
            data_root=None, verify_images=64, threads=1,
            progress=lambda *a: None, optimize=optimize,
        )  # fmt: skip
        return files

    # the --optimize export's fused fp32 and QAttention int8: only for an --optimize bench
    assert found(True) == {"fp32": folder / "model.onnx", "int8": int8}
    plain = found(False)
    assert plain["fp32"] != folder / "model.onnx" and plain["int8"] != int8
    assert "QAttention" not in {n.op_type for n in onnx.load(plain["int8"]).graph.node}
    # a later plain export without int8 rewrites model.onnx and export.json, not the fused
    # model.int8.onnx beside them: it is judged by its own graph, and still not taken as plain
    export_onnx(lm, folder / "model.onnx", **kw)  # type: ignore[arg-type]
    assert int8.is_file()
    again = found(False)
    assert again["fp32"] == folder / "model.onnx" and again["int8"] != int8
    assert found(True)["fp32"] != folder / "model.onnx"  # not an --optimize export any more


def _eager_bench(run: Path, **kwargs: object) -> BenchReport:
    return benchmark(
        run, runtimes="eager", devices="cpu", warmup=1, min_time=0.02, rounds=1, write=False,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_folder_of_some_classes_is_scored_against_the_models_classes(
    bench_run: Path, tmp_path: Path
) -> None:
    """--data folder:PATH with 3s and 7s only: labels are mapped onto the model's classes (eval's
    figure, image for image); a folder with a class the model does not know is an error."""
    import numpy as np
    from PIL import Image

    from vitkit.data import load_dataset
    from vitkit.eval import evaluate

    test = load_dataset("mnist-mini")["test"]
    for split in ("train", "test"):  # a folder dataset needs train/
        for c in ("3", "7"):
            (tmp_path / "digits" / split / c).mkdir(parents=True)
            for k, i in enumerate(torch.nonzero(test.labels == int(c)).flatten()[:12].tolist()):
                img = Image.fromarray(test.images[i, 0].numpy()).resize((36, 36))  # not 28 px
                img.save(tmp_path / "digits" / split / c / f"{k}.png")
    folder = f"folder:{tmp_path / 'digits'}"
    rep = _eager_bench(bench_run, dataset=folder, batch_sizes=[1], accuracy_images=24)
    want = evaluate(bench_run, folder)
    assert rep.data["images"] == want.n == 24 and not rep.data["synthetic"]
    assert rep.result("eager").accuracy == pytest.approx(want.acc) and want.acc > 0.2
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "pets" / split / "cat" / "0.png")  # fmt: skip
    pets = f"folder:{tmp_path / 'pets'}"
    with pytest.raises(UserError, match="classes the model was not trained on: 'cat'"):
        _eager_bench(bench_run, dataset=pets, batch_sizes=[1])
    import vitkit

    bare = vitkit.create_model("vit-nano", image_size=28, patch_size=7, in_chans=1, num_classes=2)
    rep = _eager_bench(bare, dataset=pets, batch_sizes=[1], accuracy_images=2)  # untrained
    assert not rep.data["synthetic"]  # its own class indices: timing and agreement on real images


def test_a_folder_of_other_classes_is_refused_before_it_is_decoded(
    bench_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--data folder:PATH of classes the run does not know decoded every image and cached them
    under the data root before saying so (eval's case too): now it is said from the listing."""
    import numpy as np
    from PIL import Image

    from vitkit.data.sources import folder

    opened: list[Path] = []
    for fn in ("_read", "_header"):
        real = getattr(folder, fn)
        monkeypatch.setattr(folder, fn, lambda p, *a, real=real: opened.append(p) or real(p, *a))
    for split in ("train", "test"):
        (tmp_path / "pets" / split / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "pets" / split / "cat" / "0.png")  # fmt: skip
    pets = f"folder:{tmp_path / 'pets'}"
    root = tmp_path / "data-root"
    with pytest.raises(UserError, match=rf"^dataset='{pets}': dataset '{pets}' has classes the model was not trained on: 'cat' \(") as err:  # fmt: skip
        _eager_bench(bench_run, dataset=pets, batch_sizes=[1], data_root=root)
    assert "\n" not in str(err.value)
    assert opened == [] and not root.exists()  # no image opened, no cache written


def test_exports_for_the_bench_are_verified_on_1000_images(
    bench_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever --accuracy-images: at 100 images one flipped image failed the 0.5-point gate."""
    import vitkit.export

    seen: dict[str, object] = {}

    def fake_export(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise UserError("stop here")

    monkeypatch.setattr(vitkit.export, "export_onnx", fake_export)
    rep = benchmark(
        bench_run, runtimes="ort", devices="cpu", batch_sizes=[1], warmup=1, min_time=0.02,
        rounds=1, accuracy_images=8, out=tmp_path / "b", write=False,
    )  # fmt: skip
    assert seen["verify_images"] == 1000
    assert rep.result("ort").status == "skipped" and "stop here" in str(rep.result("ort").reason)


def test_the_reference_without_eagers_outputs_is_the_eager_models(
    bench_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When eager fp32 on the CPU gives no outputs (it failed, or --device cuda has none), the
    reference is the model's own forward in chunks of 64: the header's top-1 is still what
    `vitkit eval` says on the same images, and an fp32 runtime still agrees with it exactly.
    That path had no test."""
    from dataclasses import replace

    from vitkit.eval import evaluate

    eager = runtimes_module.get_runtime("eager")

    def no_outputs(bm: object, device: torch.device) -> Runner:
        def fail(images: object, batch: int) -> object:
            raise RuntimeError("outputs went missing")

        return replace(eager.prepare(bm, device), outputs=fail)  # type: ignore[arg-type]

    fake = {
        "eager": replace(eager, prepare=no_outputs),  # times, but gives no logits
        "copy": replace(eager, name="copy", default_on=()),  # eager fp32 under another name
    }
    monkeypatch.setattr(runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, **fake})
    rep = benchmark(
        bench_run, runtimes="eager,copy", devices="cpu", batch_sizes=[1, 8], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=1000, write=False,
    )  # fmt: skip
    eager_res = rep.result("eager")  # timed, kept; only its accuracy is missing, and says why
    assert (eager_res.status, eager_res.accuracy) == ("ok", None)
    assert eager_res.accuracy_error == "outputs in batches of 8: RuntimeError: outputs went missing"
    # every test image of mnist-mini (1,000), in another order: eval's figure, image for image
    assert rep.data["images"] == 1000 and rep.data["labelled"]
    want = evaluate(bench_run, data_root=bench_run.parents[2] / "default-data-root").acc
    assert rep.reference_accuracy == pytest.approx(want, abs=1e-9)
    copy = rep.result("copy")
    assert copy.status == "ok" and copy.top1_agreement == 1.0
    assert copy.accuracy == pytest.approx(want, abs=1e-9)
    assert copy.max_abs_diff is not None and copy.max_abs_diff <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: --device cuda alone")
def test_the_reference_on_a_cuda_only_bench_is_the_cpu_eager_models(bench_run: Path) -> None:
    """--device cuda has no eager runner on the CPU: the reference falls back to the model in
    fp32 on the CPU, which is `vitkit eval`'s figure on the CPU."""
    from vitkit.eval import evaluate

    rep = benchmark(
        bench_run, runtimes="eager", devices="cuda", batch_sizes=[1, 8], warmup=1,
        min_time=0.02, rounds=1, accuracy_images=1000, write=False,
    )  # fmt: skip
    want = evaluate(bench_run, data_root=bench_run.parents[2] / "default-data-root").acc
    assert rep.data["images"] == 1000
    assert rep.reference_accuracy == pytest.approx(want, abs=1e-9)
    res = rep.result("eager", "cuda")
    # cuDNN may run the patch convolution in TF32: close to the reference, not bit-equal
    assert res.status == "ok" and res.max_abs_diff is not None and res.max_abs_diff <= 0.05
    assert res.top1_agreement is not None and res.top1_agreement >= 0.99
    assert res.accuracy is not None and abs(res.accuracy - want) <= 0.01


def test_the_accuracy_images_do_not_depend_on_the_batch_sizes(bench_run: Path) -> None:
    small = _eager_bench(bench_run, batch_sizes=[1], accuracy_images=40)
    large = _eager_bench(bench_run, batch_sizes=[1, 64], accuracy_images=40)
    assert small.data == large.data and small.data["images"] == 40
    assert small.result("eager").accuracy == large.result("eager").accuracy


def test_more_threads_than_cpus_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads beyond the logical CPUs time-share the cores: a note says so (4x and more: an
    error, the runtimes' pools are not built for it)."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    threads_before = torch.get_num_threads()
    rep = _nano_bench(tmp_path, batch_sizes=[1], rounds=1, accuracy_images=0, threads=2)
    assert rep.threads["torch"] == 2
    assert any("2 threads on 1 logical CPU(s)" in n for n in rep.notes), rep.notes
    with pytest.raises(UserError, match="more than 4x this machine's 1 logical CPU"):
        _nano_bench(tmp_path, batch_sizes=[1], threads=5)
    assert torch.get_num_threads() == threads_before


def test_the_higher_peak_is_kept_and_a_failed_second_one_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.bench import run as run_module

    real = run_module.matmul_peak
    calls: list[int] = []

    def low_then_real(device: torch.device, dtype: torch.dtype) -> dict[str, object]:
        calls.append(1)
        peak = real(device, dtype=dtype, min_time=0.05)
        return {**peak, "gflops": 1e-6} if len(calls) == 1 else peak

    monkeypatch.setattr(run_module, "matmul_peak", low_then_real)
    rep = _nano_bench(tmp_path, batch_sizes=[1], rounds=1, accuracy_images=0)
    (peak,) = rep.peaks
    assert peak["measured"][0] == 1e-6 and peak["gflops"] == peak["measured"][1] > 1
    assert not any("% peak over 100%" in n for n in rep.notes), rep.notes

    def fails_second(device: torch.device, dtype: torch.dtype) -> dict[str, object]:
        calls.append(1)
        if len(calls) % 2 == 0:
            raise RuntimeError("CUDA out of memory")
        return {"device": str(device), "dtype": "float32", "size": 8, "gflops": 100.0}

    calls.clear()
    monkeypatch.setattr(run_module, "matmul_peak", fails_second)
    rep = _nano_bench(tmp_path, batch_sizes=[1], rounds=1, accuracy_images=0)
    assert rep.rows and rep.peaks[0]["gflops"] == 100.0 and rep.peaks[0]["measured"] == [100.0]
    assert any("timed once" in n and "CUDA out of memory" in n for n in rep.notes), rep.notes


def test_an_untrained_model_with_fewer_classes_than_the_data_is_refused(tmp_path: Path) -> None:
    """`--model vit-nano --num-classes 5 --data mnist-mini` scored 5 outputs against 10 labels
    (top-1 10%, exit 0), where other mismatches (size, outputs) were one-line errors."""
    import vitkit

    model = vitkit.create_model("vit-nano", image_size=28, patch_size=7, in_chans=1, num_classes=5)
    with pytest.raises(UserError, match="has 10 classes, the model predicts 5"):
        benchmark(model, runtimes="eager", devices="cpu", dataset="mnist-mini", out=tmp_path)


def test_a_peak_measured_low_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load spike while the GEMM yardstick was timed read eager at 226% of 'peak', no word."""
    from vitkit.bench import run as run_module

    def sunk(device: torch.device, dtype: torch.dtype) -> dict[str, object]:
        return {"device": str(device), "dtype": "float32", "size": 8, "gflops": 1e-6}

    monkeypatch.setattr(run_module, "matmul_peak", sunk)
    rep = _nano_bench(tmp_path, batch_sizes=[1], rounds=1, accuracy_images=0)
    assert rep.row("eager", 1).peak_share is not None and rep.row("eager", 1).peak_share > 1
    assert any("% peak over 100%" in n and "measured low" in n for n in rep.notes), rep.notes


def test_a_failed_download_is_an_error_not_synthetic_images(
    bench_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--download asks for the run's real images: when they cannot be had, say so (exit 1)
    instead of timing and scoring synthetic ones."""
    import vitkit.data

    def offline(name: str, **kwargs: object) -> None:
        raise UserError(f"cannot download {name}: no network")

    monkeypatch.setattr(vitkit.data, "load_dataset", offline)
    with pytest.raises(
        UserError, match=r"download=True: dataset 'mnist-mini' is unavailable \(cannot download"
    ):
        _eager_bench(bench_run, batch_sizes=[1], download=True)
    rep = _eager_bench(bench_run, batch_sizes=[1], accuracy_images=4)  # without it: a note
    assert rep.data["synthetic"] and any("cannot download" in n for n in rep.notes)


def test_cuda_and_cuda_0_are_one_device() -> None:
    from vitkit.bench.run import parse_devices

    assert [str(d) for d in parse_devices("cpu,cuda,cuda:0,cpu")] == ["cpu", "cuda"]
    assert [str(d) for d in parse_devices("CPU")] == ["cpu"]  # as --runtimes ORT is ort


def test_a_multi_output_model_on_single_label_data_is_named() -> None:
    import vitkit

    model = vitkit.create_model(
        "vit-nano", image_size=28, patch_size=7, in_chans=1, num_classes=10, num_outputs=2
    )
    with pytest.raises(UserError, match=r"has 1 label\(s\) per image, the model predicts 2"):
        benchmark(model, dataset="mnist-mini", runtimes="eager", devices="cpu", batch_sizes=[1],
                  warmup=1, min_time=0.02, rounds=1, accuracy_images=8, write=False)  # fmt: skip


def test_tf32_rows_have_no_fp32_yardstick() -> None:
    """TensorRT's fp32 may run TF32 maths: against the fp32 GEMM it could pass 100% (and the
    busy-machine note would then blame the wrong cause). Checked on fake cells: no GPU here."""
    from vitkit.bench.report import RuntimeResult
    from vitkit.bench.run import _rows

    def result(name: str, info: dict[str, object]) -> RuntimeResult:
        return RuntimeResult(name, "cuda", name, "fp32", "ok", info=info)

    results = {
        ("eager", "cuda"): result("eager", {}),
        ("trt", "cuda"): result("trt", {"tf32": "TensorRT default"}),
    }
    timings = {("eager", "cuda", 1): [1e-3] * 5, ("trt", "cuda", 1): [1e-4] * 5}
    peaks = [{"device": "cuda", "dtype": "float32", "size": 8, "gflops": 1.0}]
    rows = {r.runtime: r for r in _rows(timings, results, 10**6, peaks)}
    assert rows["eager"].peak_share == pytest.approx(1.0)
    assert rows["trt"].peak_share is None and rows["trt"].speedup == pytest.approx(10.0)


def test_a_model_that_does_not_count_its_flops_is_timed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench called ``flops()`` after every cell was timed: a registered family without it
    lost the run to a NotImplementedError traceback. Its GFLOP/s are now unknown (null)."""
    import dataclasses
    import json

    from vitkit.bench.report import SCHEMA_PATH
    from vitkit.models import Model, _registry, create_model, register_model

    @dataclasses.dataclass
    class LinearConfig:
        image_size: int = 8
        in_chans: int = 3
        num_classes: int = 4

    class NoFlops(Model):
        def __init__(self, c: LinearConfig) -> None:
            super().__init__()
            self.head = torch.nn.Linear(c.in_chans * c.image_size**2, c.num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.flatten(1))

    monkeypatch.setattr(_registry, "_MODELS", dict(_registry._MODELS))  # restored afterwards
    register_model("test-no-flops", builder=NoFlops)(LinearConfig)
    rep = benchmark(
        create_model("test-no-flops"), runtimes="eager", devices="cpu", batch_sizes=[2],
        warmup=1, min_time=0.02, rounds=1, accuracy_images=8, out=tmp_path,
    )  # fmt: skip
    assert rep.flops_per_image is None and rep.rows[0].gflops is None
    assert rep.rows[0].peak_share is None and rep.rows[0].p50_ms > 0
    jsonschema = pytest.importorskip("jsonschema")
    doc = json.loads((tmp_path / "bench.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def test_other_processes_use_of_the_cpu_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.bench import run as run_module

    monkeypatch.setattr(run_module.OtherCpuUse, "cores", lambda self: 1.04)
    rep = _nano_bench(tmp_path, runtimes="eager", batch_sizes=[1], rounds=1, accuracy_images=0)
    assert rep.machine["other_cores"] == 1.04
    assert any("kept 1.04 of this machine's" in n and "rerun on a quiet" in n for n in rep.notes)


def test_non_finite_logits_are_named_and_count_as_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime whose logits are NaN for some images (an fp16 overflow, a damaged export):
    Δ eager was NaN, written as null in bench.json (read as "not measured"), and argmax's pick
    among NaNs could count as a right answer. Now those images are wrong, Δ eager is over the
    finite ones, bench.json counts them and a note says so."""
    import json

    import numpy as np

    import vitkit
    from vitkit.bench.report import SCHEMA_PATH

    eager = get_runtime("eager")

    def nans(bm: object, device: torch.device) -> Runner:
        runner = eager.prepare(bm, device)  # type: ignore[arg-type]
        outputs = runner.outputs

        def broken(x: np.ndarray, batch: int) -> np.ndarray:
            logits = outputs(x, batch).copy()
            logits[:3] = np.nan
            return logits

        runner.outputs = broken
        return runner

    fake = {"nans": Runtime("nans", "test", ("cpu",), (), "fp16", nans)}
    monkeypatch.setattr(runtimes_module, "_RUNTIMES", {**runtimes_module._RUNTIMES, **fake})
    model = vitkit.create_model("vit-nano", image_size=28, patch_size=7, in_chans=1)
    rep = benchmark(
        model, runtimes="eager,nans", devices="cpu", batch_sizes=[2], warmup=1,
        min_time=0.02, rounds=1, dataset="mnist-mini", accuracy_images=16, out=tmp_path,
    )  # fmt: skip
    ref, res = rep.result("eager"), rep.result("nans")
    assert res.status == "ok" and res.info["nonfinite_images"] == 3
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-4  # eager's own answers
    assert res.top1_agreement == 13 / 16
    assert ref.accuracy is not None and res.accuracy is not None
    assert res.accuracy <= ref.accuracy and "nonfinite_images" not in ref.info
    assert any(
        n.startswith("non-finite logits (NaN or inf) from nans (cpu) on 3 of the 16 scored")
        for n in rep.notes
    )
    table = rep.table()
    assert "NaN/inf" in table.columns[-1]._cells
    rows = {r["runtime"]: r for r in csv.DictReader(io.StringIO(rep.to_csv()))}
    assert rows["nans"]["nonfinite_images"] == "3" and rows["eager"]["nonfinite_images"] == "0"
    doc = json.loads((tmp_path / "bench.json").read_text())
    (nans_doc,) = [r for r in doc["runtimes"] if r["runtime"] == "nans"]
    assert nans_doc["max_abs_diff"] < 1e-4 and nans_doc["info"]["nonfinite_images"] == 3
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))


def test_eager_is_its_own_reference_exactly(tmp_path: Path) -> None:
    """The reference logits were eager's in chunks of 64 while every runner, eager too, went
    in chunks of the largest batch size: at batch 1 eager's row read Δ eager 9.5e-07 against
    itself, and the header's eager top-1 could differ from the eager row's."""
    import vitkit

    model = vitkit.create_model("vit-nano", image_size=28, patch_size=7, in_chans=1)
    rep = benchmark(
        model, runtimes="eager", devices="cpu", batch_sizes=[1], warmup=1, min_time=0.02,
        rounds=1, dataset="mnist-mini", accuracy_images=100, write=False,
    )  # fmt: skip
    eager = rep.result("eager")
    assert eager.max_abs_diff == 0.0 and eager.top1_agreement == 1.0
    assert eager.accuracy == rep.reference_accuracy


def test_an_empty_export_is_named_as_such(tmp_path: Path) -> None:
    """An interrupted write leaves model.onnx empty; protobuf reads that as an empty model, and
    the note said "carries no vitkit metadata (not made by `vitkit export`)"."""
    import vitkit
    from vitkit.bench.run import _current
    from vitkit.export.onnx import loaded_for_export, weights_fingerprint

    model = vitkit.create_model("vit-nano", image_size=16, patch_size=4, num_classes=3).eval()
    empty = tmp_path / "model.onnx"
    empty.write_bytes(b"")
    notes: list[str] = []
    lm = loaded_for_export(model)
    assert _current(empty, lm, "fp32", weights_fingerprint(model), notes) is None
    assert notes == [
        f"passed over {empty}: cannot read {empty} as ONNX: the file holds no model "
        "(empty, or cut short)"
    ]


def test_a_non_finite_eager_reference_scores_as_its_own_row(tmp_path: Path) -> None:
    """Eager itself NaN (a diverged run's weights): the header's eager top-1 counted argmax's
    pick among NaNs (class 0) as answers while eager's own row counted them wrong."""
    import vitkit

    model = vitkit.create_model("vit-nano", image_size=28, patch_size=7, in_chans=1)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    rep = benchmark(
        model, runtimes="eager", devices="cpu", batch_sizes=[2], warmup=1,
        min_time=0.02, rounds=1, dataset="mnist-mini", accuracy_images=16, out=tmp_path,
    )  # fmt: skip
    eager = rep.result("eager")
    assert eager.info["nonfinite_images"] == 16 and eager.accuracy == 0.0
    assert rep.reference_accuracy == 0.0 and eager.max_abs_diff is None


def test_auto_is_the_device_train_picks_of_those_bench_measures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--device auto` was 'unknown device' in bench, though train, eval and predict take it."""
    from vitkit.bench.run import parse_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [str(d) for d in parse_devices("auto")] == ["cpu"]
    assert [str(d) for d in parse_devices("AUTO,cpu")] == ["cpu"]
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert [str(d) for d in parse_devices("auto")] == ["cpu"]  # mps: not measured here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert [str(d) for d in parse_devices("cpu,auto,cuda:0")] == ["cpu", "cuda"]
