"""The exporters' silence (vitkit.export._quiet.silenced) holds only in the threads inside it.

It used to replace sys.stdout with a StringIO, call logging.disable(WARNING) and ignore every
warning for the whole process while any thread was inside: a library user's other threads (a
web server, a progress thread, their own logging) lost their output for the length of an export.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from vitkit.export import export_graph
from vitkit.export._quiet import silenced
from vitkit.export.quantize import quantize_int8_dynamic
from vitkit.models import create_model

LOG = logging.getLogger("vitkit-test-quiet")


class FakeStdout:
    """A stdout with attributes a StringIO lacks, to see that they are forwarded."""

    encoding = "latin-1"

    def __init__(self) -> None:
        self.text: list[str] = []
        self.flushes = 0

    def write(self, s: str) -> int:
        self.text.append(s)
        return len(s)

    def flush(self) -> None:
        self.flushes += 1

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 42


def test_other_threads_print_log_and_warn_while_one_thread_is_silenced(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Thread A is inside silenced() (an export); the main thread prints, logs a warning and
    warns meanwhile: all three get through. A's own print, warning-level log and warning are
    dropped; its error-level log is not."""
    entered, other_done = threading.Event(), threading.Event()

    def exporting() -> None:
        with silenced():
            entered.set()
            other_done.wait(10)
            print("silenced print")
            sys.stdout.flush()
            LOG.warning("silenced warning")
            LOG.error("silenced error")
            warnings.warn("silenced warn", stacklevel=1)

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        a = threading.Thread(target=exporting)
        a.start()
        try:
            assert entered.wait(10)
            print("other print", flush=True)
            LOG.warning("other warning")
            warnings.warn("other warn", stacklevel=1)
        finally:
            other_done.set()
            a.join(20)
    assert not a.is_alive()
    assert capsys.readouterr().out == "other print\n"
    assert [r.getMessage() for r in caplog.records] == ["other warning", "silenced error"]
    assert [str(w.message) for w in caught] == ["other warn"]


def test_stdout_forwards_attributes_and_everything_is_restored_error_or_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While any thread is silenced, sys.stdout forwards encoding, isatty, fileno and the other
    threads' writes and flushes to the stream that was there; nested and concurrent blocks in two
    threads, the last one leaving on an error, restore that very stream, Logger.handle, the
    warnings filters and the caller's logging.disable level."""
    fake = FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    filters, handle = list(warnings.filters), logging.Logger.handle
    inside, released = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def other() -> None:  # silenced too, leaves while the main thread is still inside
        with silenced():
            inside.set()
            released.wait(10)
            print("dropped")

    t = threading.Thread(target=other)
    try:
        logging.disable(logging.DEBUG)
        with pytest.raises(RuntimeError), silenced():
            t.start()
            assert inside.wait(10)
            with silenced():
                print("dropped too")
                seen["attrs"] = (sys.stdout.encoding, sys.stdout.isatty(), sys.stdout.fileno())
                seen["proxy"] = sys.stdout is not fake

                def bystander() -> None:  # not silenced: writes and flushes get through
                    print("through")
                    sys.stdout.flush()

                b = threading.Thread(target=bystander)
                b.start()
                b.join(10)
            released.set()
            t.join(10)
            assert sys.stdout is not fake  # the main thread is still inside
            print("dropped as well")
            raise RuntimeError
        assert seen == {"attrs": ("latin-1", True, 42), "proxy": True}
        assert "".join(fake.text) == "through\n" and fake.flushes == 1
        assert sys.stdout is fake
        assert logging.Logger.handle is handle
        assert warnings.filters == filters
        assert logging.root.manager.disable == logging.DEBUG
    finally:
        released.set()  # a failure above must not leave the other thread silenced
        if t.ident is not None:
            t.join(10)
        logging.disable(logging.NOTSET)


def test_a_progress_thread_keeps_its_output_through_a_real_export(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A progress thread prints and logs while the main thread exports (torch's dynamo exporter,
    then ORT's dynamic quantization): every line it wrote during the silence arrives, and none of
    the tools' output does. The tools start no Python thread of their own (the silence covers
    the threads inside it, not threads they would start)."""
    model = create_model("vit-nano", image_size=16, patch_size=4, num_classes=5).eval()
    done = threading.Event()
    during: list[int] = []  # ticks written while the silence was in place

    def progress() -> None:
        i = 0
        while not done.is_set():
            silent = sys.stdout is not base  # a silence is in place
            print(f"tick {i}")
            LOG.warning("tick %d", i)
            if silent:
                during.append(i)
            i += 1
            done.wait(0.01)

    started: list[str] = []
    start = threading.Thread.start

    def recording_start(self: threading.Thread) -> None:
        started.append(self.name)
        start(self)

    with caplog.at_level(logging.WARNING):
        capsys.readouterr()
        base = sys.stdout
        p = threading.Thread(target=progress, name="progress")
        p.start()
        monkeypatch.setattr(threading.Thread, "start", recording_start)
        try:
            proto, exporter, _ = export_graph(model, image_size=16, channels=3)
            quantize_int8_dynamic(proto, tmp_path)
        finally:
            monkeypatch.undo()
            done.set()
            p.join(10)
    assert exporter == "dynamo" and started == []
    assert during, "the progress thread wrote nothing while the tools ran"
    out = capsys.readouterr().out.splitlines()
    assert {f"tick {i}" for i in during} <= set(out)
    assert all(line.startswith("tick ") for line in out)
    logged = {r.getMessage() for r in caplog.records if r.name == LOG.name}
    assert {f"tick {i}" for i in during} <= logged
    assert all(r.name == LOG.name for r in caplog.records)


def test_log_records_are_dropped_by_the_thread_handling_them_not_by_record_thread(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The silenced thread is the one handling a record: with logging.logThreads off a record's
    thread is None, and the silenced thread's warnings got through; a record handed over from
    elsewhere (a multiprocessing listener's logger.handle(record): a forked worker's main thread
    has the parent's ident) whose thread field names a silenced thread was dropped in a thread
    that is not silenced."""
    main = threading.get_ident()
    with caplog.at_level(logging.INFO):
        monkeypatch.setattr(logging, "logThreads", False)
        with silenced():
            LOG.warning("silenced, logThreads off")
            logging.LoggerAdapter(LOG, {}).warning("silenced, through an adapter")
        monkeypatch.undo()
        record = logging.makeLogRecord(
            {
                "name": LOG.name,
                "msg": "from a worker",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "thread": main,
            }
        )

        def listener() -> None:  # not silenced: a record from a worker, thread field = main's
            LOG.handle(record)

        with silenced():
            t = threading.Thread(target=listener)
            t.start()
            t.join(10)
    assert [r.getMessage() for r in caplog.records] == ["from a worker"]


def test_the_last_exit_leaves_a_stdout_someone_else_put_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An export ends while another thread has redirected stdout (contextlib.redirect_stdout, a
    rich Live display): the last exit put back the stream it found at the first entry over the
    redirect, so the other thread's output went to the terminal instead of where it sent it."""
    import contextlib
    import io

    fake = FakeStdout()
    monkeypatch.setattr(sys, "stdout", fake)
    inside, release = threading.Event(), threading.Event()

    def exporting() -> None:
        with silenced():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=exporting)
    t.start()
    try:
        assert inside.wait(10)
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            release.set()
            t.join(10)
            print("captured")
            assert sys.stdout is captured
        assert captured.getvalue() == "captured\n" and fake.text == []
        print("through")  # whatever stays in place forwards to the stream that was there
        assert "".join(fake.text) == "through\n"
    finally:
        release.set()
        t.join(10)
