"""Errors vitkit raises on purpose.

``UserError`` is anything the user can fix (bad name, bad size, missing file). The CLI turns it
into one red line and exit code 1, as it does an ``OSError`` on a named file (a folder that is a
file, one that cannot be created); every other exception is a bug and keeps its traceback.

A message names a setting in its reader's words (``setting``): the Python parameter for a
library caller (``int8 must be one of ...``, ``pass int8='dynamic'``), the command line's flag
under the CLI (``--int8 must be one of ...``, ``pass --int8 dynamic``).
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import math
import numbers
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence


class VitkitError(Exception):
    """Base class of every error vitkit raises on purpose."""


class UserError(VitkitError):
    """Bad input: a one-line message the CLI prints as it is."""


class NotFoundError(UserError):
    """An unknown name (model, dataset, runtime) or a missing file."""


class MissingEntry(NotFoundError, KeyError):
    """A report lookup (``ExportReport.precision``, ``BenchReport.row``) that found nothing,
    naming what there is. A ``KeyError`` too: those lookups raised one before."""

    def __str__(self) -> str:  # the message as it is, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError):
    """Options that cannot go together (dim vs heads, patch vs image size, ...)."""


_CLI_WORDS = contextvars.ContextVar("vitkit_cli_words", default=False)
_UNSET = object()


@contextlib.contextmanager
def cli_words() -> Iterator[None]:
    """Within it (the CLI's error boundary, around each command), ``setting`` names the
    command line's flags; outside it, the library's parameters."""
    token = _CLI_WORDS.set(True)
    try:
        yield
    finally:
        _CLI_WORDS.reset(token)


def in_cli() -> bool:
    """Whether a message is for the command line (inside ``cli_words``)."""
    return _CLI_WORDS.get()


def setting(param: str, value: object = _UNSET, *, flag: str | None = None) -> str:
    """A setting as a message names it, in its reader's words. For a library caller, the
    parameter: ``calib_images``, ``int8='auto'``, ``verify=False``; under the CLI, its flag
    (``flag``, else ``--`` and the parameter with dashes): ``--calib-images``, ``--int8 auto``,
    ``--no-verify``."""
    shown = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not in_cli():
        return param if value is _UNSET else f"{param}={shown!r}"
    flag = flag or "--" + param.replace("_", "-")
    if value is _UNSET or value is True:
        return flag
    if value is False:
        return "--no-" + flag.removeprefix("--")
    return f"{flag} {shown}"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # colour codes some libraries put in messages


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (colour codes removed), or its type.
    Another library's line is cut at ``limit`` characters, with an ellipsis; a ``UserError``'s
    never is: it is ours, one line by design, and its end says what to do."""
    text = _ANSI.sub("", str(e))
    line = next((s for s in text.splitlines() if s.strip()), type(e).__name__)
    return line if isinstance(e, UserError) else _cut(line, limit)


def _cut(line: str, limit: int) -> str:
    """``line`` cut to ``limit`` characters, visibly (an ellipsis) when it was longer."""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def state_dict_mismatch(e: BaseException) -> str:
    """What a ``load_state_dict`` error says, in one line: the first ``size mismatch for w:
    ...``, else which tensors the file lacks or has extra (counted, the first few named; the
    raw key list ran past the line)."""
    import re

    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    size = next((s for s in lines if s.startswith("size mismatch for ")), None)
    if size is not None:
        return _cut(size, 300)
    parts = []
    for head, what in (("Missing", "lacks {} of the model's tensors"), ("Unexpected", "has {} tensor(s) the model lacks")):  # fmt: skip
        line = next((s for s in lines if s.startswith(f"{head} key(s) in state_dict:")), None)
        if line is not None:
            keys = re.findall(r'"([^"]+)"', line)
            parts.append(f"the file {what.format(len(keys))} ({listed(keys, 3)})")
    if parts:
        return "; ".join(parts)
    detail = next((s for s in lines if not s.startswith("Error(s) in loading")), None)
    return first_line(e) if detail is None else _cut(detail, 300)


def is_count(value: object, minimum: int = 1) -> bool:
    """An integer (numpy's too; not ``True``, which is no count) of at least ``minimum``."""
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return integral and value >= minimum  # type: ignore[operator]


def plain_number(value: object) -> object:
    """``value`` as a plain ``bool``, ``int`` or ``float`` when it is one of numpy's (a sweep's
    grid holds them; ``json`` writes none but ``np.float64``); anything else as it is."""
    if _numpy_bool(value):
        return bool(value)
    if type(value).__module__ == "numpy" and isinstance(value, numbers.Real):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    return value


def check_int(name: str, value: object, minimum: int = 1) -> None:
    """Refuse what is not an integer (``True`` too: it is no count) or is below ``minimum``:
    ``rounds must be >= 1, got 0`` (``name`` from ``setting``: ``--rounds`` under the CLI)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")


def brief(value: object) -> str:
    """A wrong argument as a message shows it: a short plain value with its type (``'yes'
    (str)``, ``1 (int)``, ``np.True_ (numpy bool)``), ``None``, else the type alone (``list``,
    ``Tensor``): a repr can run to pages."""
    if value is None:
        return "None"
    if _numpy_bool(value):  # no Number, and its type is named "bool"
        return f"{value!r} (numpy bool)"
    if isinstance(value, (str, bytes, numbers.Number)):
        text = repr(value)
        if len(text) <= 60 and "\n" not in text:
            return f"{text} ({type(value).__name__})"
    return type(value).__name__


def _numpy_bool(value: object) -> bool:
    """Whether ``value`` is numpy's bool (numpy not imported: it cannot be one)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.bool_)


def check_bool(name: str, value: object) -> bool:
    """Refuse what is not ``True`` or ``False`` for a flag (``fp16="yes"``, ``verify=0``, ``None``
    passed as truthy or falsy before); numpy's bool passes, as a plain ``bool`` (``mask.any()``
    is one). Returns the flag."""
    if isinstance(value, bool):
        return value
    if _numpy_bool(value):
        return bool(value)
    raise UserError(f"{name} must be True or False, got {brief(value)}")


def check_path(name: str, value: object, *, optional: bool = False, what: str = "a path") -> None:
    """Refuse what is not a path (``str`` or ``os.PathLike``): ``data_root=5`` was pathlib's
    ``TypeError``; ``None`` passes where ``optional`` (it means "not given"). ``what`` says
    which path: ``resume must be the path of a run directory (str or os.PathLike), got 5
    (int)``. Whether it exists is the caller's to say, in its own words."""
    if optional and value is None:
        return
    if not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{name} must be {what} (str or os.PathLike), got {brief(value)}")


def check_str(name: str, value: object) -> None:
    """Refuse what is not a string for a parameter that is not a registry name (those have
    ``check_name``): ``compile_mode=5``, ``list_models(pattern=3)``."""
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string, got {brief(value)}")


def check_callable(name: str, value: object) -> None:
    """Refuse a callback that cannot be called (``progress=5`` failed at its first call)."""
    if not callable(value):
        raise UserError(f"{name} must be callable, got {brief(value)}")


def is_seed(value: int) -> bool:
    """Within the range ``torch.manual_seed`` takes: [-2**63, 2**64)."""
    return -(2**63) <= value < 2**64


def check_seed(name: str, value: int) -> None:
    """Refuse a seed ``torch.manual_seed`` would overflow on (a traceback, not a message)."""
    if not is_seed(value):
        raise UserError(f"{name} must be in [-2**63, 2**64), got {value}")


def check_seconds(name: str, value: object) -> None:
    """Refuse what is not a finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{name} must be a number of seconds, got {value!r}")
    if not 0 < float(value) < math.inf:
        raise UserError(f"{name} must be > 0 seconds, got {value}")


def plural(n: float, noun: str) -> str:
    """``noun`` as a count of ``n`` reads it: ``image`` for 1, ``images`` otherwise."""
    return noun if n == 1 else noun + "s"


def listed(items: Sequence[str], shown: int = 5) -> str:
    """``"a, b, c and 4 more"``: the first ``shown`` items, and how many were left out."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def numeric_text_hint(value: object) -> str:
    """The hint for a number given as text where a number goes (a config file's ``"3"``, or
    YAML's ``1e-3``, which it reads as text); "" for anything else."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (a number in quotes is text; and YAML reads 1e-3 as text: write 1.0e-3)"


def suggest(name: str, choices: Iterable[str], *, n: int = 3) -> str:
    """Return ``"; did you mean 'a', 'b'?"`` for the closest names, or ``""`` when none is close.
    Case is ignored in the comparison (``MNIST``, ``CIFAR10`` as torchvision spells them)."""
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    folded = difflib.get_close_matches(name.casefold(), list(by_folded), n=n, cutoff=0.5)
    close = [by_folded[c] for c in folded]
    if not close:
        return ""
    return "; did you mean " + ", ".join(f"'{c}'" for c in close) + "?"


def check_name(kind: str, name: object) -> None:
    """Refuse a registry name that is not a string (``create_model(3)``, ``load_dataset(None)``):
    one line, not an ``AttributeError`` from the closest-name search."""
    if not isinstance(name, str):
        raise UserError(f"a {kind} name is a string, got {name!r}")


def name_list(param: str, kind: str, value: object) -> list[str]:
    """The names in ``value``: a comma-separated string (``"cpu,cuda"``, as the CLI passes it) or
    a sequence of strings, each name stripped of spaces and blank ones dropped (``"train, test"``
    and ``"cpu,"`` are ``["train", "test"]`` and ``["cpu"]``; ``""`` is no name); anything else
    (``devices=5``, ``runtimes=[5]``) is a ``UserError`` naming ``param`` or the ``kind`` of name,
    not ``list()``'s or ``str.strip``'s error."""
    if isinstance(value, bytes) or not isinstance(value, (str, Iterable)):
        raise UserError(f"{param} must be a string or a list of {kind} names, got {brief(value)}")
    names: list[str] = []
    for n in value.split(",") if isinstance(value, str) else value:
        check_name(kind, n)
        if n.strip():
            names.append(n.strip())
    return names


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> NotFoundError:
    """The error for a registry miss: names the closest entries, else lists them all."""
    choices = sorted(choices)
    hint = suggest(name, choices)
    if not hint:
        hint = "; available: " + ", ".join(choices)
    return NotFoundError(f"unknown {kind} '{name}'{hint}")
