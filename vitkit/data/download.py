"""Fetch files with a checksum (mirrors tried in order, atomic rename) and extract them safely.

``fetch`` never leaves a half-written or unverified file at its destination: it streams into a
temp file next to it (``artifact.atomic_write``), checks the checksum, and only then renames.

``safe_extract`` checks every archive member before writing anything (absolute paths, ``..``,
links pointing out of the destination, device files are refused) and extracts into a temp
directory first, so a refused or failed extraction leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from vitkit.artifact import atomic_write, umask
from vitkit.data.types import ProgressFn, no_progress
from vitkit.errors import UserError

CHUNK_SIZE = 1 << 20  # bytes per network read / disk read while hashing (1 MiB)
MAX_LINK_HOPS = 40  # symlinks followed while resolving one archive path (as Linux's ELOOP)

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)

# tarfile's "data" filter (Python >= 3.10.12 / 3.11.4) refuses unsafe members as it extracts;
# the explicit check in _check_tar below does the same on every Python, before any write.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")

_T = TypeVar("_T")

# Errors a corrupt or truncated archive can raise while it is read.
_CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    ValueError,
    OSError,
)
with contextlib.suppress(ImportError):  # lzma is optional in CPython builds
    import lzma

    _CORRUPT_ERRORS += (lzma.LZMAError,)


class DownloadError(UserError):
    """A file could not be fetched or failed its checksum, or an archive is unsafe or corrupt."""


class NotDownloaded(DownloadError):
    """No URL delivered the file (no network, every server failed): it is not here, and the
    message says where to place it (a checksum mismatch is another ``DownloadError``)."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ── checksums ──────────────────────────────────────────────────────────────────────────────


def _file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


def file_md5(path: str | os.PathLike[str]) -> str:
    """The hex MD5 of a file, read in chunks."""
    return _file_digest(Path(path), "md5")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    return _file_digest(Path(path), "sha256")


def _mismatch(actual: dict[str, str], expected: dict[str, str]) -> str | None:
    """``"expected md5 <x>, got <y>"`` for the first checksum that differs, else None."""
    for algorithm, want in expected.items():
        if actual[algorithm] != want:
            return f"expected {algorithm} {want}, got {actual[algorithm]}"
    return None


# ── fetch ──────────────────────────────────────────────────────────────────────────────────


class _MirrorFailed(Exception):
    """One URL did not deliver the file; the next mirror may. ``answered``: a server was
    reached (an HTTP error status, a transfer cut short), so the network itself works."""

    def __init__(self, reason: str, *, answered: bool = False) -> None:
        super().__init__(reason)
        self.answered = answered


class _ChecksumMismatch(_MirrorFailed):
    """One URL delivered a file with the wrong checksum; the next mirror may do better."""


def _network_reason(e: BaseException, timeout: float) -> str:
    """A short one-line reason for a failed request."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {_one_line(e.reason)}"
    if isinstance(e, urllib.error.URLError):
        if not isinstance(e.reason, BaseException):
            return _one_line(e.reason)
        e = e.reason
    if isinstance(e, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(e, OSError) and e.strerror:
        return _one_line(e.strerror)
    return _one_line(e) or type(e).__name__


def _url_chunks(url: str, timeout: float) -> Generator[tuple[bytes, int | None], None, None]:
    """Yield ``(chunk, total bytes or None)`` from ``url``; any network trouble is a
    ``_MirrorFailed``. Errors of the consumer (writing the chunk) are not caught here."""
    from vitkit import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"vitkit/{__version__}"})
    done, total, answered = 0, None, False
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answered = True  # a server sent its headers: the network works, whatever follows
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            while chunk := response.read(CHUNK_SIZE):
                done += len(chunk)
                yield chunk, total
    except (OSError, http.client.HTTPException, ValueError) as e:
        answered = answered or isinstance(e, urllib.error.HTTPError)
        if isinstance(e, urllib.error.HTTPError):
            e.close()
        raise _MirrorFailed(_network_reason(e, timeout), answered=answered) from None
    if total is not None and done != total:
        raise _MirrorFailed(f"connection closed after {done} of {total} bytes", answered=True)


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    progress: ProgressFn = no_progress,
    timeout: float = 30.0,
) -> Path:
    """Download ``dest`` from the first of ``urls`` (mirrors, tried in order) that delivers it.

    When ``dest`` already exists and matches the checksums (or none is given) it is returned
    without touching the network. Otherwise the file is streamed into a temp file next to
    ``dest``, hashed on the way, and renamed into place only when the checksums match; on any
    failure nothing is left behind. ``timeout`` is in seconds, per connection and per read.
    ``progress`` is called as ``progress("download <name>", bytes_done, total_or_None)``.

    Raises ``DownloadError`` (one line) on a checksum mismatch, ``NotDownloaded`` (one too) when
    no mirror delivers the file.
    """
    dest = Path(dest)
    url_list = [urls] if isinstance(urls, str) else list(urls)
    expected = {a: v.strip().lower() for a, v in (("md5", md5), ("sha256", sha256)) if v}

    stale = ""
    if dest.is_file():
        problem = _mismatch({a: _file_digest(dest, a) for a in expected}, expected)
        if problem is None:
            return dest
        stale = f"; the existing file is wrong ({problem})"
    if not url_list:
        raise DownloadError(f"no URL to download {dest.name} from; place the file at {dest}")

    description = f"download {dest.name}"
    failures: list[str] = []
    answered = False  # some server answered: "no network?" would mislead
    mismatch: str | None = None
    for url in url_list:
        hashes = {a: hashlib.new(a) for a in expected}
        try:
            chunks = _url_chunks(url, timeout)
            with atomic_write(dest, "wb") as f, contextlib.closing(chunks):
                done = 0
                for chunk, total in chunks:
                    f.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    done += len(chunk)
                    progress(description, done, total)
                problem = _mismatch({a: h.hexdigest() for a, h in hashes.items()}, expected)
                if problem:  # raising inside atomic_write removes the temp file
                    raise _ChecksumMismatch(problem)
            return dest
        except _ChecksumMismatch as e:
            mismatch = mismatch or f"{e} (from {url})"
        except _MirrorFailed as e:
            failures.append(f"{url}: {e}")
            answered = answered or e.answered
        except OSError as e:  # only local trouble gets here: the temp file, the directory
            raise DownloadError(f"cannot write {dest}: {_one_line(e)}") from None

    if mismatch:
        raise DownloadError(f"checksum mismatch for {dest.name}: {mismatch}; nothing was saved")
    guess = "" if answered else "no network? "
    raise NotDownloaded(
        f"cannot download {dest.name} ({guess}{'; '.join(failures)}){stale}; "
        f"place the file at {dest} and run again"
    )


# ── safe extraction ────────────────────────────────────────────────────────────────────────


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":")


def _resolve(path: str, links: dict[str, str], *, follow_last: bool = True) -> str | None:
    """Where ``path`` (relative to the destination) really lands once the archive's own
    ``links`` (normalised name → target) are followed, as the OS would; None when it leaves
    the destination. Plain ``normpath`` is not enough: ``a/../x`` with ``a -> ..`` escapes."""
    if _is_absolute(path):
        return None
    pending = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not follow_last and pending:
        last = pending.pop()
        parent = _resolve("/".join(pending), links)
        return None if parent is None or last == ".." else posixpath.join(parent, last)
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or _is_absolute(target):
                return None
            resolved.pop()
            pending[:0] = target.replace("\\", "/").split("/")
    return "/".join(resolved) or "."


def _refuse(archive: Path, name: str, why: str) -> DownloadError:
    return DownloadError(f"refusing to extract {archive.name}: member '{name}' {why}")


def _check_tar(members: Iterable[tarfile.TarInfo], archive: Path) -> None:
    """Refuse, before anything is written, members that would land outside the destination."""
    members = list(members)
    links = {
        posixpath.normpath(m.name.replace("\\", "/")): m.linkname for m in members if m.issym()
    }
    for m in members:
        if _is_absolute(m.name):
            raise _refuse(archive, m.name, "has an absolute path")
        if m.issym():
            parent = _resolve(posixpath.dirname(m.name), links)
            here = _resolve(m.name, links, follow_last=False)
            if parent is None or here is None:
                raise _refuse(archive, m.name, "escapes the destination")
            if _resolve(posixpath.join(parent, m.linkname), links) is None:
                raise _refuse(archive, m.name, f"is a symlink pointing outside ({m.linkname})")
        elif m.islnk():
            if _resolve(m.name, links) is None:
                raise _refuse(archive, m.name, "escapes the destination")
            if _resolve(m.linkname, links) is None:
                raise _refuse(archive, m.name, f"is a hard link pointing outside ({m.linkname})")
        elif m.isfile() or m.isdir():
            if _resolve(m.name, links) is None:
                raise _refuse(archive, m.name, "escapes the destination")
        else:
            raise _refuse(archive, m.name, "is a device file or FIFO")


def _sanitised(members: Iterable[tarfile.TarInfo]) -> Iterator[tarfile.TarInfo]:
    """What the "data" filter does to modes and owners, for Pythons that lack it."""
    for m in members:
        if m.isfile() or m.islnk():
            m.mode = (m.mode & 0o755) | 0o600  # no setuid/setgid/sticky, no group/other write
        elif m.isdir():
            m.mode = (m.mode & 0o755) | 0o700
        m.uid = m.gid = 0
        m.uname = m.gname = ""
        yield m


def _counted(items: list[_T], description: str, progress: ProgressFn) -> Iterator[_T]:
    total = len(items)
    for i, item in enumerate(items):
        progress(description, i, total)
        yield item
    progress(description, total, total)


def _extract_tar(archive: Path, into: Path, progress: ProgressFn) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        _check_tar(members, archive)
        counted = _counted(members, f"extract {archive.name}", progress)
        if _HAS_DATA_FILTER:
            tf.extractall(into, members=counted, filter="data")
        else:  # Pythons older than 3.10.12 / 3.11.4: our check above, plus modes and owners
            tf.extractall(into, members=_sanitised(counted))


def _extract_zip(archive: Path, into: Path, progress: ProgressFn) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            if _is_absolute(info.filename):
                raise _refuse(archive, info.filename, "has an absolute path")
            if _resolve(info.filename, {}) is None:
                raise _refuse(archive, info.filename, "escapes the destination")
            kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type, when recorded
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise _refuse(archive, info.filename, "is a symlink or special file")
        for info in _counted(infos, f"extract {archive.name}", progress):
            zf.extract(info, into)


def _merge_into(src: Path, dst: Path) -> None:
    """Move every entry of ``src`` into the existing directory ``dst``; files replace files."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        entry_is_dir = entry.is_dir() and not entry.is_symlink()
        target_is_dir = target.is_dir() and not target.is_symlink()
        if entry_is_dir and target_is_dir:
            _merge_into(entry, target)
        elif entry_is_dir != target_is_dir and (target.exists() or target.is_symlink()):
            what = "directory" if entry_is_dir else "file"
            raise DownloadError(
                f"cannot extract '{entry.name}' into {dst}: the archive has a {what} there "
                f"and {target} is not one; move it away and run again"
            )
        else:
            os.replace(entry, target)


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    progress: ProgressFn = no_progress,
) -> None:
    """Extract a .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz or .zip ``archive`` into ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` escaping
    ``dest``, symlinks or hard links pointing outside it and device files are refused with a
    one-line ``DownloadError``. The archive is extracted into a temp directory next to
    ``dest``; only when that has fully succeeded is it renamed to ``dest`` (or merged into it
    when ``dest`` already exists), so a failure leaves no partial tree. ``progress`` is called
    as ``progress("extract <name>", members_done, members_total)``.
    """
    archive, dest = Path(archive), Path(dest)
    name = archive.name.lower()
    if name.endswith(_TAR_SUFFIXES):
        extract = _extract_tar
    elif name.endswith(_ZIP_SUFFIXES):
        extract = _extract_zip
    else:
        kinds = " ".join(_TAR_SUFFIXES + _ZIP_SUFFIXES)
        raise DownloadError(f"cannot extract {archive}: not a known archive type ({kinds})")
    if not archive.is_file():
        raise DownloadError(f"cannot extract {archive}: no such file")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes it 0700; keep a plain mkdir's mode
    except OSError as e:
        raise DownloadError(f"cannot extract into {dest}: {_one_line(e)}") from None
    try:
        try:
            extract(archive, tmp, progress)
        except DownloadError:
            raise
        except tarfile.FilterError as e:  # the data filter caught what our check let through
            raise DownloadError(f"refusing to extract {archive.name}: {_one_line(e)}") from None
        except _CORRUPT_ERRORS as e:
            raise DownloadError(
                f"cannot extract {archive}: corrupt or truncated archive ({_one_line(e)})"
            ) from None
        try:
            if dest.is_dir():
                _merge_into(tmp, dest)
            else:
                os.replace(tmp, dest)
        except OSError as e:
            raise DownloadError(f"cannot extract into {dest}: {_one_line(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
