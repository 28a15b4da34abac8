"""vitkit/__init__.py: the public API the README's "From Python" section uses."""

from __future__ import annotations

import inspect

import pytest

import vitkit
from vitkit.train import train

FUNCTIONS = [n for n in vitkit.__all__ if inspect.isfunction(getattr(vitkit, n, None))]
RAISE_NOTHING = {"list_datasets", "list_models"}  # lists of names: nothing a user gets wrong


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
    object, not int"), and so did export_onnx and benchmark, which load a run through it."""
    from vitkit.errors import UserError

    call = {
        "train": lambda: train(resume=path),  # type: ignore[arg-type]
        "load_model": lambda: vitkit.load_model(path),  # type: ignore[arg-type]
    }.get(name, lambda: getattr(vitkit, name)(path))
    with pytest.raises(UserError) as e:
        call()
    if path is None and name == "train":  # resume=None: no run given, a config is asked for
        return
    assert type(path).__name__ in str(e.value) and "\n" not in str(e.value)
