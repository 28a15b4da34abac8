"""One process-wide silence for the exporters and ORT's quantization tools, safe across threads.

torch's exporters and onnxscript print progress on stdout and log warnings; ORT's quantization
tools log advice through the root logger. The library prints nothing, so they are silenced while
they run. What silences them is process-wide (``logging.disable``, ``sys.stdout``, the warnings
filters): two exports in two threads that each saved and restored it could interleave, the
second saving the first's silence and restoring it last, which left logging disabled and
stdout swallowed for good. Here the first to enter saves the state and the last to leave
restores it, under one lock.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0  # how many silenced() blocks are open, in every thread
_saved: tuple[int, Any, Any] | None = None  # (logging level, stdout, warnings' catch) to restore


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No stdout, no warnings and no log records under ``ERROR`` while any thread is inside;
    a caller's higher ``logging.disable`` level stays. On the last exit, error or not, all three
    are as they were before the first entry."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            before = logging.root.manager.disable
            caught = warnings.catch_warnings()
            caught.__enter__()
            warnings.simplefilter("ignore")
            _saved = (before, sys.stdout, caught)
            logging.disable(max(before, logging.WARNING))  # a caller's higher level stays
            sys.stdout = io.StringIO()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                before, stdout, caught = _saved
                _saved = None
                sys.stdout = stdout
                caught.__exit__(None, None, None)
                logging.disable(before)
