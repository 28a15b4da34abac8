"""Tests for vitkit.data.download: fetch against a real HTTP server on 127.0.0.1, safe_extract."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vitkit.data import download
from vitkit.data.download import DownloadError, fetch, file_md5, file_sha256, safe_extract
from vitkit.errors import UserError

# ── helpers ────────────────────────────────────────────────────────────────────────────────


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (ephemeral port); yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served directory) of a live server."""
    root = tmp_path / "served"
    root.mkdir()
    with _serve(root) as url:
        yield url, root


@pytest.fixture
def dead_url() -> str:
    """A URL on a port that was open a moment ago and is now closed: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.tar.gz"


def _payload(size: int = 300_000) -> bytes:
    """Incompressible-looking bytes, a few chunks long when CHUNK_SIZE is patched small."""
    return b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(size // 32))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ── checksums ──────────────────────────────────────────────────────────────────────────────


def test_file_hashes_match_hashlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "CHUNK_SIZE", 1000)  # force many chunks
    data = _payload(10_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_md5(path) == hashlib.md5(data).hexdigest()
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


# ── fetch ──────────────────────────────────────────────────────────────────────────────────


def test_fetch_good_checksum_streams_file_and_reports_progress(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = served
    monkeypatch.setattr(download, "CHUNK_SIZE", 64 * 1024)
    data = _payload()
    (root / "data.tar.gz").write_bytes(data)
    dest_dir = tmp_path / "dest" / "sub"  # created on demand
    calls: list[tuple[str, int, int | None]] = []

    out = fetch(
        f"{url}/data.tar.gz",
        dest_dir / "data.tar.gz",
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest().upper(),  # case does not matter
        progress=lambda d, n, t: calls.append((d, n, t)),
    )

    assert out == dest_dir / "data.tar.gz"
    assert out.read_bytes() == data
    assert _leftovers(dest_dir) == ["data.tar.gz"]  # no temp file remains
    assert len(calls) >= 2  # several chunks
    assert all(d == "download data.tar.gz" and t == len(data) for d, _, t in calls)
    assert [n for _, n, _ in calls] == sorted(n for _, n, _ in calls)
    assert calls[-1][1] == len(data)


def test_fetch_existing_file_with_right_checksum_uses_no_network(
    tmp_path: Path, dead_url: str
) -> None:
    dest = tmp_path / "file.tar.gz"
    dest.write_bytes(b"already here")
    assert fetch(dead_url, dest, md5=hashlib.md5(b"already here").hexdigest()) == dest
    assert fetch(dead_url, dest) == dest  # no checksum given: presence is enough
    assert dest.read_bytes() == b"already here"


def test_fetch_replaces_existing_file_with_wrong_checksum(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    (root / "f.bin").write_bytes(b"the right bytes")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"a truncated old copy")
    fetch(f"{url}/f.bin", dest, sha256=hashlib.sha256(b"the right bytes").hexdigest())
    assert dest.read_bytes() == b"the right bytes"


def test_fetch_bad_checksum_raises_and_leaves_nothing(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    (root / "cifar-10-python.tar.gz").write_bytes(_payload())
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    wrong = "0" * 32
    actual = hashlib.md5(_payload()).hexdigest()

    with pytest.raises(DownloadError) as info:
        fetch(f"{url}/cifar-10-python.tar.gz", dest_dir / "cifar-10-python.tar.gz", md5=wrong)

    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message
    assert wrong in message and actual in message
    assert "\n" not in message
    assert _leftovers(dest_dir) == []  # neither the file nor a temp file


def test_fetch_server_gone_says_where_to_place_the_file(tmp_path: Path, dead_url: str) -> None:
    dest = tmp_path / "cifar-10-python.tar.gz"
    with pytest.raises(DownloadError) as info:
        fetch(dead_url, dest, md5="0" * 32, timeout=5)
    message = str(info.value)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line
    assert message.startswith("cannot download cifar-10-python.tar.gz (no network?")
    assert f"place the file at {dest} and run again" in message
    assert "refused" in message.lower()
    assert "\n" not in message
    assert _leftovers(tmp_path) == []


def test_fetch_falls_back_to_the_next_mirror(
    served: tuple[str, Path], tmp_path: Path, dead_url: str
) -> None:
    url, root = served
    data = _payload(5000)
    (root / "f.zip").write_bytes(data)
    dest = tmp_path / "f.zip"
    mirrors = [dead_url, f"{url}/missing.zip", f"{url}/f.zip"]  # refused, 404, good
    fetch(mirrors, dest, md5=hashlib.md5(data).hexdigest(), timeout=5)
    assert dest.read_bytes() == data


def test_fetch_all_mirrors_failing_names_each(
    served: tuple[str, Path], tmp_path: Path, dead_url: str
) -> None:
    url, _ = served
    dest_dir = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        fetch([f"{url}/missing.bin", dead_url], dest_dir / "x.bin", timeout=5)
    message = str(info.value)
    assert "HTTP 404" in message and dead_url in message
    assert _leftovers(dest_dir) == []


def test_fetch_a_server_that_answers_is_not_called_no_network(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    """A 404 said "cannot download x.bin (no network? ...: HTTP 404 Not Found)": the network
    works, the file is not there; the guess is kept for failures where no server answered."""
    url, _ = served
    with pytest.raises(DownloadError) as info:
        fetch(f"{url}/missing.bin", tmp_path / "x.bin", timeout=5)
    message = str(info.value)
    assert message.startswith(f"cannot download x.bin ({url}/missing.bin: HTTP 404 ")
    assert "no network" not in message and f"place the file at {tmp_path / 'x.bin'}" in message


def test_fetch_times_out_on_a_silent_server(tmp_path: Path) -> None:
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/f.bin"
        with pytest.raises(DownloadError, match=r"timed out after 0\.3 s"):
            fetch(url, tmp_path / "f.bin", timeout=0.3)
    assert _leftovers(tmp_path) == []


def test_fetch_a_server_that_stalls_after_its_headers_is_not_called_no_network(
    tmp_path: Path,
) -> None:
    """Headers, then silence: the network works (a server answered), so the timeout is not
    guessed to be "no network?", as it is when nothing answers at all (the test above)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        done = threading.Event()

        def answer_then_stall() -> None:
            conn, _ = s.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                done.wait(5)

        threading.Thread(target=answer_then_stall, daemon=True).start()
        url = f"http://127.0.0.1:{s.getsockname()[1]}/f.bin"
        try:
            with pytest.raises(DownloadError, match=r"timed out after 0\.3 s") as info:
                fetch(url, tmp_path / "f.bin", timeout=0.3)
        finally:
            done.set()
    assert "no network" not in str(info.value)
    assert _leftovers(tmp_path) == []


def test_fetch_bad_mirror_checksum_then_good_mirror(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = served
    (root / "bad.bin").write_bytes(b"corrupted")
    (root / "good.bin").write_bytes(b"genuine")
    dest = tmp_path / "f.bin"
    fetch([f"{url}/bad.bin", f"{url}/good.bin"], dest, md5=hashlib.md5(b"genuine").hexdigest())
    assert dest.read_bytes() == b"genuine"


# ── safe_extract ───────────────────────────────────────────────────────────────────────────

_FILES = {"pkg/a.txt": b"alpha", "pkg/sub/b.bin": bytes(range(256)), "top.txt": b"top"}


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _make_tar(path: Path, members: dict[str, bytes] = _FILES) -> Path:
    with _open_tar_for_writing(path) as tf:
        for name, data in members.items():
            _add(tf, name, data)
    return path


def _open_tar_for_writing(path: Path) -> tarfile.TarFile:
    name = path.name
    if name.endswith((".tar.gz", ".tgz")):
        return tarfile.open(path, "w:gz")
    if name.endswith(".tar.bz2"):
        return tarfile.open(path, "w:bz2")
    if name.endswith(".tar.xz"):
        return tarfile.open(path, "w:xz")
    return tarfile.open(path, "w")


def _make_zip(path: Path, members: dict[str, bytes] = _FILES) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _assert_extracted(dest: Path) -> None:
    for name, data in _FILES.items():
        assert (dest / name).read_bytes() == data


@pytest.mark.parametrize("name", ["d.tar", "d.tar.gz", "d.tgz", "d.tar.bz2", "d.tar.xz", "d.zip"])
def test_safe_extract_good_archive(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    _make_zip(archive) if name.endswith(".zip") else _make_tar(archive)
    calls: list[tuple[str, int, int | None]] = []
    dest = tmp_path / "out"

    safe_extract(archive, dest, progress=lambda d, n, t: calls.append((d, n, t)))

    _assert_extracted(dest)
    assert _leftovers(tmp_path) == sorted([name, "out"])  # no temp directory left
    assert calls[-1] == (f"extract {name}", len(_FILES), len(_FILES))
    mask = os.umask(0)
    os.umask(mask)
    assert dest.stat().st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


def test_safe_extract_merges_into_an_existing_directory(tmp_path: Path) -> None:
    # The CIFAR case: the archive sits in the directory it is extracted into.
    dest = tmp_path / "root"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    (dest / "pkg").mkdir()
    (dest / "pkg" / "a.txt").write_bytes(b"old")
    archive = _make_tar(dest / "d.tar.gz")

    safe_extract(archive, dest)

    _assert_extracted(dest)  # pkg/a.txt replaced
    assert (dest / "keep.txt").read_text() == "mine"
    assert _leftovers(dest) == sorted(["d.tar.gz", "keep.txt", "pkg", "top.txt"])
    assert _leftovers(tmp_path) == ["root"]


def test_safe_extract_keeps_symlinks_that_stay_inside(tmp_path: Path) -> None:
    archive = tmp_path / "d.tar"
    with tarfile.open(archive, "w") as tf:
        _add(tf, "pkg/a.txt", b"alpha")
        _add(tf, "pkg/link", type=tarfile.SYMTYPE, linkname="a.txt")
        _add(tf, "up", type=tarfile.SYMTYPE, linkname="pkg/../pkg")
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "link").is_symlink()
    assert (tmp_path / "out" / "pkg" / "link").read_bytes() == b"alpha"
    assert (tmp_path / "out" / "up" / "a.txt").read_bytes() == b"alpha"


@pytest.fixture(params=[True, False], ids=["data-filter", "own-check-only"])
def filter_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run refusal tests with tarfile's data filter and with our own check alone (old Pythons):
    with the filter off, only our check stands between the archive and the file system."""
    if request.param is False:
        monkeypatch.setattr(download, "_HAS_DATA_FILTER", False)
        monkeypatch.setattr(tarfile.TarFile, "extraction_filter", None, raising=False)
    return bool(request.param)


def _evil_tars(outside: Path) -> dict[str, list[tuple[str, dict[str, object]]]]:
    return {
        "dotdot": [("ok.txt", {}), ("../evil", {})],
        "nested-dotdot": [("a/../../evil", {})],
        "absolute": [(str(outside / "evil"), {})],
        "symlink-out": [("link", {"type": tarfile.SYMTYPE, "linkname": "../outside"})],
        "symlink-abs": [("link", {"type": tarfile.SYMTYPE, "linkname": str(outside)})],
        "write-through-symlink": [
            ("link", {"type": tarfile.SYMTYPE, "linkname": str(outside)}),
            ("link/evil", {}),
        ],
        # each link alone looks harmless once normalised; together they reach the parent
        "symlink-chain": [
            ("sub/up", {"type": tarfile.SYMTYPE, "linkname": ".."}),
            ("esc", {"type": tarfile.SYMTYPE, "linkname": "sub/up/../outside"}),
            ("esc/evil", {}),
        ],
        "hardlink-out": [("hard", {"type": tarfile.LNKTYPE, "linkname": "../outside/target"})],
        "char-device": [("dev", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
        "fifo": [("fifo", {"type": tarfile.FIFOTYPE})],
    }


@pytest.mark.parametrize(
    "case",
    [
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-out",
        "symlink-abs",
        "write-through-symlink",
        "symlink-chain",
        "hardlink-out",
        "char-device",
        "fifo",
    ],
)
def test_safe_extract_refuses_unsafe_tar_members(
    tmp_path: Path, case: str, filter_mode: bool
) -> None:
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    outside.mkdir(parents=True)
    (outside / "target").write_text("secret")
    work.mkdir()
    archive = work / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        for name, attrs in _evil_tars(outside)[case]:
            _add(tf, name, b"pwned", **attrs)

    with pytest.raises(DownloadError) as info:
        safe_extract(archive, work / "out")

    message = str(info.value)
    assert message.startswith("refusing to extract evil.tar") and "\n" not in message
    assert _leftovers(work) == ["evil.tar"]  # no dest, no temp dir
    assert _leftovers(outside) == ["target"]
    assert (outside / "target").read_text() == "secret"
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("name", ["../evil", "/tmp/vitkit-evil-absolute", "a/../../evil"])
def test_safe_extract_refuses_unsafe_zip_members(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = _make_zip(work / "evil.zip", {"ok.txt": b"ok", name: b"pwned"})
    with pytest.raises(DownloadError, match=r"refusing to extract evil\.zip: member"):
        safe_extract(archive, work / "out")
    assert _leftovers(work) == ["evil.zip"]
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/vitkit-evil-absolute").exists()


def test_safe_extract_refuses_zip_symlink(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DownloadError, match="symlink"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_truncated_archive_leaves_no_partial_tree(tmp_path: Path) -> None:
    members = {f"pkg/f{i}.bin": _payload(20_000) + bytes([i]) for i in range(20)}
    good = _make_tar(tmp_path / "good.tar.gz", members)
    data = good.read_bytes()
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(data[: len(data) // 2])

    with pytest.raises(DownloadError, match="corrupt or truncated") as info:
        safe_extract(archive, tmp_path / "out")

    assert "cut.tar.gz" in str(info.value)
    assert _leftovers(tmp_path) == ["cut.tar.gz", "good.tar.gz"]


def test_safe_extract_rejects_unknown_type_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.rar").write_bytes(b"Rar!")
    with pytest.raises(DownloadError, match="not a known archive type"):
        safe_extract(tmp_path / "x.rar", tmp_path / "out")
    with pytest.raises(DownloadError, match="no such file"):
        safe_extract(tmp_path / "missing.tar.gz", tmp_path / "out")
    assert _leftovers(tmp_path) == ["x.rar"]
