"""vitkit/errors.py: the checks every public function shares, and how messages name settings."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitkit.errors import UserError, brief, check_bool, cli_words, in_cli, name_list, setting


def test_setting_names_the_parameter_for_the_library_and_the_flag_for_the_cli() -> None:
    assert not in_cli()
    assert setting("calib_images") == "calib_images"
    assert setting("int8", "auto") == "int8='auto'"
    assert setting("verify", False) == "verify=False"
    assert setting("out", Path("a/m.onnx")) == "out='a/m.onnx'"
    assert setting("tolerances.fp32_atol", flag="--atol") == "tolerances.fp32_atol"
    with cli_words():
        assert in_cli()
        assert setting("calib_images") == "--calib-images"
        assert setting("int8", "auto") == "--int8 auto"
        assert setting("verify", False) == "--no-verify"
        assert setting("tensorboard", True) == "--tensorboard"
        assert setting("out", Path("a/m.onnx")) == "--out a/m.onnx"
        assert setting("tolerances.fp32_atol", flag="--atol") == "--atol"
    assert not in_cli()


def test_the_cli_words_are_this_threads_own() -> None:
    """A library call in another thread while a command runs is named as the library names it."""
    seen = []
    with cli_words():
        t = threading.Thread(target=lambda: seen.append(setting("int8")))
        t.start()
        t.join()
    assert seen == ["int8"]


def test_a_library_error_names_the_parameter_and_the_cli_its_flag(tmp_path: Path) -> None:
    """export_onnx(model, int8="auto", verify=False) said "--int8 auto measures both int8 modes
    ...; pass --int8 dynamic or static with --no-verify": a library caller has no --int8. The
    command line's message is as it was."""
    import vitkit
    from vitkit.cli import app

    with pytest.raises(UserError) as e:
        vitkit.export_onnx(
            vitkit.create_model("vit-nano"), tmp_path / "m.onnx", int8="auto", verify=False
        )
    assert str(e.value) == (
        "int8='auto' measures both int8 modes and needs verification; pass int8='dynamic' or "
        "'static' with verify=False"
    )
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--model",
            "vit-nano",
            "--int8",
            "auto",
            "--no-verify",
            "--out",
            str(tmp_path / "c.onnx"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: --int8 auto measures both int8 modes and needs verification; pass --int8 "
        "dynamic or static with --no-verify"
    )


def test_brief_shows_a_short_value_with_its_type_else_the_type() -> None:
    assert brief("yes") == "'yes' (str)" and brief(1) == "1 (int)" and brief(None) == "None"
    assert brief([1, 2]) == "list" and brief("x" * 100) == "str"


def test_brief_does_not_show_a_numpy_bool_as_a_bool() -> None:
    """A numpy bool where it is refused read 'got bool' (create_model(qkv_bias=np.True_), which
    now takes it): numpy's bool is no Number, so only its type's name, 'bool', was shown."""
    import numpy as np

    import vitkit

    shown = f"{np.True_!r} (numpy bool)"  # np.True_ in numpy 2, True before
    assert brief(np.True_) == shown
    with pytest.raises(UserError, match=re.escape(f"got {shown}") + "$"):
        vitkit.list_models(np.True_)  # type: ignore[arg-type]


def test_check_bool_takes_bools_and_numpy_bools_only() -> None:
    import numpy as np

    assert check_bool("fp16", True) is True
    assert type(check_bool("fp16", np.bool_(True))) is bool
    for value in ("yes", 1, 0, None, np.int64(1)):
        with pytest.raises(UserError, match=r"^fp16 must be True or False, got "):
            check_bool("fp16", value)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("train, test", ["train", "test"]),
        (" test ,train ", ["test", "train"]),
        ("test,", ["test"]),
        (", ,", []),
        ([" test", "train "], ["test", "train"]),
    ],
)
def test_name_list_strips_each_name_and_drops_blank_ones(value: object, names: list[str]) -> None:
    """ "train, test" was ["train", " test"] (a split ' test', a runtime ' ort' for a caller that
    did not strip); every caller now gets the names as the bench's lists read them."""
    assert name_list("splits", "split", value) == names


def _notes() -> dict[str, str]:
    """Every library note or message that names a setting of the call, as it reads here."""
    from types import SimpleNamespace

    import onnx

    from vitkit.bench import run as bench_run
    from vitkit.bench import timing
    from vitkit.eval.evaluate import open_dataset
    from vitkit.export import onnx as export_onnx
    from vitkit.models import default_patch_size
    from vitkit.train.config import TrainConfig
    from vitkit.train.run import _option_notes

    def raised(call: Callable[[], object]) -> str:
        with pytest.raises(UserError) as e:
            call()
        return str(e.value)

    cfg = TrainConfig(warmup_epochs=2.0, patience=3, val_fraction=0.0)
    whole_run = SimpleNamespace(warmup_steps=10, total_steps=10)
    warmup, patience = _option_notes(cfg, whole_run, None)  # type: ignore[arg-type]
    ok = SimpleNamespace(status="ok")
    no_data = SimpleNamespace(path=Path("m"), dataset=None)
    synthetic = SimpleNamespace(notes=[], why_uncalibrated="no data")
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    return {
        "warmup": warmup,
        "patience": patience,
        "threads": timing.oversubscribed_note(2 * (os.cpu_count() or 1)) or "",
        "compile_mode": bench_run._compile_mode_note("reduce-overhead", {("compile", "cpu"): ok})[0],  # type: ignore[dict-item]
        "unverified": bench_run.unverified_note(),
        "not_optimize": bench_run._unlike_optimize(None, "fp32", True, False, "plain") or "",  # type: ignore[arg-type]
        "optimize": export_onnx._kept_note("plain", []),
        "int8": export_onnx._data_notes(synthetic, "auto")[0],  # type: ignore[arg-type]
        "gate": export_onnx._checked_only(empty, "fp32").gate,
        "patch_size": raised(lambda: default_patch_size(13)),
        "dataset": raised(lambda: open_dataset(no_data)),  # type: ignore[arg-type]
    }  # fmt: skip


def test_library_notes_name_parameters_and_the_cli_its_flags() -> None:
    """Notes a library call made named the command line's flags: train(...)'s 'the lr climbs
    ... (--warmup-epochs sets it)', '--patience 3 does nothing here ... (--val-fraction 0)',
    export_onnx(optimize=True)'s '--optimize: kept the plain model', benchmark's 'use --threads
    N or fewer'. Each now names the parameter from Python and the flag under the CLI."""
    cpus = os.cpu_count() or 1
    python = {
        "warmup": "never decays (warmup_epochs sets it)",
        "patience": "patience=3 does nothing here: there is no validation split (val_fraction=0)",
        "threads": f"; use threads={cpus} or fewer to compare runtimes",
        "compile_mode": "compile_mode='reduce-overhead' captures CUDA graphs",
        "unverified": "exported with verify=False: its agreement",
        "not_optimize": "not the optimize=True export's model",
        "optimize": "optimize=True: kept the plain model",
        "int8": "int8='auto': static int8 left out",
        "gate": "onnx.checker only (verify=False)",
        "patch_size": "; pass patch_size, or resize the images",
        "dataset": "m records no dataset; name one (dataset='NAME')",
    }
    cli = {
        "warmup": "never decays (--warmup-epochs sets it)",
        "patience": "--patience 3 does nothing here: there is no validation split (--val-fraction 0)",
        "threads": f"; use --threads {cpus} or fewer to compare runtimes",
        "compile_mode": "--compile-mode reduce-overhead captures CUDA graphs",
        "unverified": "exported with --no-verify: its agreement",
        "not_optimize": "not the --optimize export's model",
        "optimize": "--optimize: kept the plain model",
        "int8": "--int8 auto: static int8 left out",
        "gate": "onnx.checker only (--no-verify)",
        "patch_size": "; pass --patch-size, or resize the images",
        "dataset": "m records no dataset; name one (--data NAME)",
    }  # fmt: skip
    here = _notes()
    with cli_words():
        there = _notes()
    for key, text in python.items():
        assert text in here[key], (key, here[key])
        assert "--" not in here[key], (key, here[key])
        assert cli[key] in there[key], (key, there[key])
