"""A silence for the exporters and ORT's quantization tools, only in the threads inside it.

torch's exporters and onnxscript print progress on stdout and log warnings (torch through its
own stderr handlers, which do not propagate to the root logger); ORT's quantization tools log
advice through the root logger; all of them warn. The library prints nothing, so they are
silenced while they run. What they write to is process-wide (``sys.stdout``, the loggers, the
warnings filters), but a library user's other threads (a web server, a progress thread, their
own logging) must keep their output while an export runs. So each hook below is installed once
for the whole process, by the first thread to enter, and drops only what a thread inside
``silenced()`` writes (``_threads``, by ``threading.get_ident()``); everything else passes as if
nothing were installed. The last thread to leave puts back what was there, under one lock, so
nested and concurrent blocks in several threads never restore one another's silence.

- stdout: ``sys.stdout`` becomes a ``_Stdout`` proxy that drops writes from silenced threads
  and forwards the rest, and every attribute (``encoding``, ``isatty``, ``fileno``, ...), to the
  stream that was there. The very object is restored on the last exit, unless ``sys.stdout``
  is no longer the proxy then: a ``redirect_stdout`` in another thread (or a rich ``Live``
  display) that is open across the last exit keeps its stream, and puts back the proxy when it
  closes, which then drops nothing and forwards everything.
- logging: ``logging.Logger.handle`` is wrapped to drop records under ``ERROR`` that a
  silenced thread logs (the thread calling it, not ``record.thread``). A filter on handlers would not do: torch's loggers have
  their own handlers and do not propagate, handlers can be added while an export runs, and a
  record with no handler goes to ``logging.lastResort``; every record of every logger passes
  through ``Logger.handle``, after ``logging.disable`` (a caller's level, which stays untouched)
  and before any handler. A ``Logger`` subclass that overrides ``handle`` is not covered.
- warnings: one entry at the front of ``warnings.filters``, ``("ignore", <matcher>, Warning)``,
  whose message "regex" matches only in a silenced thread (the warnings machinery calls the
  entry's ``match``, as it does a compiled pattern's). Not ``warnings.catch_warnings`` (it swaps
  the process's filters, for every thread) and not a wrapped ``warnings.showwarning`` either: that
  runs after the filters, so under ``-W error`` the tools' warnings would raise inside an export,
  and a "default" or "once" warning dropped there would count as shown and stay hidden from the
  other threads. Limits: the list is still the process's, so a filter another thread puts in
  front meanwhile (``simplefilter``) wins over the entry, and a ``catch_warnings`` block in
  another thread that spans the first entry or the last exit saves and restores the list around
  it: the silenced threads' warnings may show until the last exit, or the entry may stay in the
  list after it (inert: it matches nothing while no thread is silenced).

Only the calling thread is silenced, not threads it starts: none of the calls wrapped in
``silenced()`` starts a Python thread (checked with torch 2.14, onnxscript 0.7, onnx_ir 1.1 and
onnxruntime 1.32; onnx_ir's thread pool only writes external data, which vitkit does not ask
for; tests/export/test_quiet.py checks it). ORT's native threads and C++ logging write to the
file descriptors, which no ``sys.stdout`` swap reaches.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, cast

_lock = threading.Lock()
_threads: dict[int, int] = {}  # thread ident -> how many silenced() blocks it has open
# (sys.stdout, our proxy of it or None, Logger.handle, our wrapper of it): the last exit's
_saved: tuple[Any, Any, Any, Any] | None = None


def _silent() -> bool:
    """Whether the calling thread is inside ``silenced()``."""
    return threading.get_ident() in _threads


class _Stdout:
    """``sys.stdout`` while any thread is silenced: drops the silenced threads' writes, forwards
    everything else to ``target``, the stream that was there."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def write(self, s: str) -> Any:  # what the stream returns (some return None)
        return len(s) if _silent() else self._target.write(s)

    def writelines(self, lines: Any) -> None:
        if not _silent():
            self._target.writelines(lines)

    def flush(self) -> None:
        if not _silent():
            self._target.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer, ...
        if name == "_target":  # not set yet (a copy being made): no endless recursion
            raise AttributeError(name)
        return getattr(self._target, name)


class _Matcher:
    """The message "pattern" of the warnings filter entry: matches in silenced threads only."""

    def match(self, text: str) -> bool:
        return _silent()

    def __repr__(self) -> str:
        return "<vitkit: any warning in a thread inside silenced()>"


_WARNINGS_ENTRY = ("ignore", _Matcher(), Warning, None, 0)


def _quiet_handle(handle: Any) -> Any:
    """``handle`` (``Logger.handle``), dropping the records under ``ERROR`` that a silenced
    thread logs. The thread handling the record is asked, not ``record.thread``: that is None
    under ``logging.logThreads = False``, and a record handed to ``logger.handle`` from
    elsewhere (a multiprocessing log listener's, whose forked workers share the parent's thread
    idents) names a thread that may be silenced here while the listener is not."""

    def quiet_handle(self: logging.Logger, record: logging.LogRecord) -> Any:
        if record.levelno < logging.ERROR and _silent():
            return None
        return handle(self, record)

    quiet_handle.__wrapped__ = handle  # type: ignore[attr-defined]
    return quiet_handle


def _drop_warnings_entry() -> None:
    filters = cast(list[Any], warnings.filters)
    while _WARNINGS_ENTRY in filters:
        filters.remove(_WARNINGS_ENTRY)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """In the calling thread only: no stdout, no warnings and no log records under ``ERROR``.
    Other threads print, warn and log as before; a caller's ``logging.disable`` level stays as
    it is. On the last exit of any thread, error or not, ``sys.stdout``, ``Logger.handle`` and
    the warnings filters are as they were before the first entry (what another thread put in
    their place meanwhile stays)."""
    global _saved
    me = threading.get_ident()
    with _lock:
        if not _threads:
            stdout, handle = sys.stdout, logging.Logger.handle
            quiet = _quiet_handle(handle)
            # None (pythonw): print() writes nothing anyway
            proxy = None if stdout is None else _Stdout(stdout)
            _saved = (stdout, proxy, handle, quiet)
            if proxy is not None:
                sys.stdout = proxy
            logging.Logger.handle = quiet  # type: ignore[method-assign]
            cast(list[Any], warnings.filters).insert(0, _WARNINGS_ENTRY)
        _threads[me] = _threads.get(me, 0) + 1
    try:
        yield
    finally:
        with _lock:
            if _threads[me] > 1:
                _threads[me] -= 1
            else:
                del _threads[me]
            if not _threads and _saved is not None:
                stdout, proxy, handle, quiet = _saved
                _saved = None
                # replaced meanwhile (another thread's redirect_stdout, a rich Live display):
                # leave theirs, which puts back our proxy, inert and forwarding, when it ends
                if proxy is not None and sys.stdout is proxy:
                    sys.stdout = stdout
                # wrapped again meanwhile (by another library): leave that one, ours is inert
                if logging.Logger.__dict__.get("handle") is quiet:
                    logging.Logger.handle = handle  # type: ignore[method-assign]
                _drop_warnings_entry()
