"""vitkit/__init__.py: the public API the README's "From Python" section uses."""

from __future__ import annotations

import inspect
import math

import pytest

import vitkit
from vitkit.train import train

FUNCTIONS = [n for n in vitkit.__all__ if inspect.isfunction(getattr(vitkit, n, None))]
RAISE_NOTHING = {"list_datasets"}  # a list of names: nothing a user gets wrong


def test_the_public_functions_are_the_ones_checked_here() -> None:
    assert {"create_model", "load_model", "predict", "evaluate", "benchmark"} <= set(FUNCTIONS)


@pytest.mark.parametrize("name", [*FUNCTIONS, "train"])
def test_each_public_function_says_what_it_returns_and_raises(name: str) -> None:
    # load_dataset, load_model, predict, evaluate, benchmark, attention_maps, resolve_config
    # and create_model said neither what they return nor which errors a caller should catch
    fn = train if name == "train" else getattr(vitkit, name)
    doc = inspect.getdoc(fn) or ""
    assert "return" in doc.lower(), f"{name}'s docstring does not say what it returns"
    if name not in RAISE_NOTHING:
        assert "Raises" in doc or "raises" in doc, f"{name}'s docstring names no error it raises"
        assert "Error" in doc, f"{name}'s docstring names no error class"


@pytest.mark.parametrize("name", ["load_model", "evaluate", "export_onnx", "benchmark", "train"])
@pytest.mark.parametrize("path", [5, None, b"runs/x", ["runs/x"]])
def test_a_run_path_that_is_not_a_path_is_a_one_line_user_error(name: str, path: object) -> None:
    """vitkit.load_model(5) raised pathlib's TypeError ("expected str, bytes or os.PathLike
    object, not int"), and so did export_onnx and benchmark, which load a run through it.
    train(resume=5) and load_model(5) say it as every other path parameter does (check_path),
    naming the parameter and the value: they read 'resume= takes the path of a run directory,
    got int', 'expected the path of a run directory, model.json, ... file, got int'."""
    from vitkit.errors import UserError, brief

    call = {
        "train": lambda: train(resume=path),  # type: ignore[arg-type]
        "load_model": lambda: vitkit.load_model(path),  # type: ignore[arg-type]
    }.get(name, lambda: getattr(vitkit, name)(path))
    with pytest.raises(UserError) as e:
        call()
    if path is None and name == "train":  # resume=None: no run given, a config is asked for
        return
    shown = {type(path).__name__, brief(path)}  # "got int", or "got 5 (int)", "got None"
    assert any(s in str(e.value) for s in shown) and "\n" not in str(e.value)
    start = {
        "train": "resume must be the path of a run directory (str or os.PathLike), got ",
        "load_model": "path must be the path of a run directory, model.json, .safetensors or "
        ".onnx file (str or os.PathLike), got ",
    }.get(name)
    if start is not None:
        assert str(e.value) == start + brief(path)
    if name == "train":  # with a config too: the type first (it read "resume= continues 5 ...")
        from vitkit.train import TrainConfig

        with pytest.raises(UserError, match=r"^resume must be the path of a run directory"):
            train(TrainConfig(), resume=path)  # type: ignore[arg-type]


RUN_PATHS = {"model", "source", "path", "resume"}  # the run: the test above checks those
FILLED = {  # the required arguments, for a call that fails on the argument under test first
    "model": "no-such-run",
    "source": "no-such-run",
    "path": "no-such-run",
    "images": [],
    "name": "mnist-mini",
    "dataset": "mnist-mini",
}


def _parameters(kind: str) -> list[tuple[str, str]]:
    """(function, parameter) for each public function's parameter of ``kind``: a flag (bool),
    a path (os.PathLike, not the run) or the progress callback, read from the signatures, so
    that a parameter added later is checked too."""
    wanted = {
        "bool": lambda p: str(p.annotation) in ("bool", "bool | None"),
        "path": lambda p: "os.PathLike" in str(p.annotation) and p.name not in RUN_PATHS,
        "callable": lambda p: str(p.annotation) == "ProgressFn",
    }[kind]
    return [
        (name, p.name)
        for name in [*FUNCTIONS, "train"]
        for p in inspect.signature(
            train if name == "train" else getattr(vitkit, name)
        ).parameters.values()
        if wanted(p)
    ]


def _call(name: str, **kwargs: object) -> None:
    fn = train if name == "train" else getattr(vitkit, name)
    params = inspect.signature(fn).parameters
    required = {
        p: FILLED[p]
        for p, v in params.items()
        if v.default is inspect.Parameter.empty and v.kind is not v.VAR_KEYWORD
    }
    fn(**{**required, **kwargs})


def test_the_signatures_have_the_parameters_checked_below() -> None:
    assert ("export_onnx", "fp16") in _parameters("bool")
    assert ("benchmark", "write") in _parameters("bool")
    assert ("train", "data_root") in _parameters("path")
    assert ("evaluate", "progress") in _parameters("callable")


@pytest.mark.parametrize("value", ["yes", 1, None])
@pytest.mark.parametrize(("name", "param"), _parameters("bool"))
def test_a_flag_that_is_not_a_bool_is_a_one_line_user_error(
    name: str, param: str, value: object
) -> None:
    """export_onnx(run, fp16="no") exported fp16 (any truthy value passed as a flag), and
    benchmark(write="no") wrote; verify=0 skipped verification. A flag takes True or False."""
    from vitkit.errors import UserError

    if value is None and param == "amp":
        pytest.skip("evaluate's amp=None is the run's own setting")
    with pytest.raises(UserError) as e:
        _call(name, **{param: value})
    assert str(e.value).startswith(f"{param} must be True or False, got {value!r}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value", [5, b"data", ["data"]])
@pytest.mark.parametrize(("name", "param"), _parameters("path"))
def test_a_path_that_is_not_a_path_is_a_one_line_user_error(
    name: str, param: str, value: object
) -> None:
    """evaluate(run, data_root=5), train(..., data_root=5), export_onnx(run, out=5): pathlib's
    TypeError ("expected str, bytes or os.PathLike object, not int"); benchmark(csv_path=5)
    with write=False and export_onnx(data_root=5) with verify=False passed unnoticed."""
    from vitkit.errors import UserError

    with pytest.raises(UserError) as e:
        _call(name, **{param: value})
    message = str(e.value)
    assert message.startswith(f"{param} must be a path") and type(value).__name__ in message


@pytest.mark.parametrize(("name", "param"), _parameters("callable"))
def test_a_progress_callback_that_cannot_be_called_is_a_user_error(name: str, param: str) -> None:
    from vitkit.errors import UserError

    with pytest.raises(UserError, match=f"^{param} must be callable, got 5 \\(int\\)$"):
        _call(name, **{param: 5})


def _tolerances(**values: float) -> object:
    from vitkit.export import Tolerances

    return Tolerances(**values)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: vitkit.evaluate("no-such-run", split=3), "a split name is a string, got 3"),
        (lambda: vitkit.load_model("no-such-run", device=5), "a device name is a string, got 5"),
        (lambda: vitkit.load_model("no-such-run", weights=5), "weights must be a path"),
        (lambda: vitkit.list_models(3), "pattern must be a string, got 3 (int)"),
        (lambda: vitkit.create_model("vit-nano", qkv_bias="no"), "qkv_bias must be True or"),
        (lambda: vitkit.resolve_config("mnist-mini", file_options=5), "file_options must be a"),
        (lambda: train(callbacks=5), "callbacks must be a list of Callback objects, got 5"),
        (lambda: train(callbacks=[print]), "callbacks[0] must be a Callback"),
        (lambda: train(stop=True), "stop must be a vitkit.train.StopFlag"),
        (lambda: train(command="vitkit train"), "command must be a list of strings"),
        (lambda: train(resume="no-such-run", extend=5), "extend must be a mapping"),
        (lambda: vitkit.export_onnx("no-such-run", tolerances={}), "tolerances must be a"),
        (
            lambda: vitkit.export_onnx(
                "no-such-run", tolerances=_tolerances(fp16_min_agreement=math.nan)
            ),
            "tolerances.fp16_min_agreement must be a finite number, got nan",  # as Python names it
        ),
        (lambda: vitkit.benchmark("no-such-run", runtimes=5), "runtimes must be a string or"),
        (lambda: vitkit.benchmark("no-such-run", devices=[5]), "a device name is a string"),
        (lambda: vitkit.benchmark("no-such-run", compile_mode=5), "compile_mode must be a str"),
        (lambda: vitkit.benchmark("no-such-run", command=5), "command must be a string"),
    ],
)
def test_other_arguments_of_the_wrong_type_are_one_line_user_errors(
    call: object, message: str
) -> None:
    """Each was a TypeError or AttributeError from deep inside (ds[3], str.strip, asdict,
    list(5), 3 in "vit-tiny"), or passed: create_model(qkv_bias="no") built a bias."""
    from vitkit.errors import UserError

    with pytest.raises(UserError) as e:
        call()  # type: ignore[operator]
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_numpy_bools_pass_as_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A flag computed with numpy (``mask.any()``) is a numpy bool: taken, as a plain bool."""
    import numpy as np

    from vitkit.errors import check_bool

    assert check_bool("verify", np.bool_(False)) is False
    ds = vitkit.load_dataset("mnist-mini", data_root=tmp_path, download=np.bool_(False))
    assert ds.name == "mnist-mini"
