"""Package attributes imported on first use (PEP 562), so that ``vitkit --help`` (and shell
completion, which runs the program on every TAB) starts without importing torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to the
    module that defines it; the first lookup imports it and caches it in ``namespace``."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        else:  # a subpackage (vitkit.models), as the eager imports used to bind
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module '{package}' has no attribute '{name}'") from None
        namespace[name] = value  # later lookups never reach this function
        return value

    def dir_() -> list[str]:  # the public names and the subpackages, not `annotations` & co
        subpackages = {n for n, v in namespace.items() if isinstance(v, ModuleType) and n[0] != "_"}
        return sorted({*exports, *namespace.get("__all__", ()), *subpackages})

    return getattr_, dir_
