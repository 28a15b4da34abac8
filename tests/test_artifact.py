"""artifact.Staged: files written together are committed all or nothing."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from vitkit.artifact import Staged


def _files(folder: Path) -> dict[str, bytes]:
    """Every entry of ``folder`` (hidden temp and backup files included), with its bytes."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _rename_fails(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """os.replace fails with EACCES when a temp file is renamed to ``name`` (renames of other
    files, and any that put a file back, go through); returns the names renamed to, in order."""
    replace, renamed = os.replace, []

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renamed.append(Path(dst).name)
        if Path(dst).name == name and str(src).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))
        replace(src, dst)

    monkeypatch.setattr("vitkit.artifact.os.replace", failing)
    return renamed


def _stage(folder: Path, names: list[str]) -> Staged:
    staged = Staged()
    for name in names:
        staged.write(folder / name, f"new {name}")
    return staged


def test_a_commit_puts_every_file_in_place_and_leaves_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("old a")
    (tmp_path / "gone").write_text("old gone")
    with _stage(tmp_path, ["a", "b"]) as staged:
        staged.commit([tmp_path / "gone", tmp_path / "never-was"])
    assert _files(tmp_path) == {"a": b"new a", "b": b"new b"}


def test_a_rename_that_fails_puts_back_the_files_renamed_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second of three renames failed: the first file stayed new beside two old ones. Now
    every file is as it was, byte for byte, with no temp or backup file left, and the error is
    the rename's own."""
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(f"old {name}")
    before = _files(tmp_path)
    renamed = _rename_fails(monkeypatch, "b")
    with pytest.raises(PermissionError) as e, _stage(tmp_path, ["a", "b", "c"]) as staged:
        staged.commit()
    assert e.value.filename2 == str(tmp_path / "b")
    assert renamed[:2] == ["a", "b"] and "c" not in renamed  # the pass stopped at b
    assert _files(tmp_path) == before


def test_a_file_that_did_not_exist_is_removed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "b").write_text("old b")
    before = _files(tmp_path)
    _rename_fails(monkeypatch, "b")
    with pytest.raises(PermissionError), _stage(tmp_path, ["new", "b", "c"]) as staged:
        staged.commit()
    assert _files(tmp_path) == before  # no "new", no "c"


def test_a_removal_that_fails_puts_back_the_renamed_and_removed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "x", "y"):
        (tmp_path / name).write_text(f"old {name}")
    before = _files(tmp_path)
    unlink = Path.unlink

    def failing(self: Path, missing_ok: bool = False) -> None:
        if self.name == "y":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", failing)
    with pytest.raises(PermissionError) as e, _stage(tmp_path, ["a", "b"]) as staged:
        staged.commit([tmp_path / "x", tmp_path / "y"])
    assert e.value.filename == str(tmp_path / "y")
    monkeypatch.undo()
    assert _files(tmp_path) == before


def test_a_folder_under_a_name_fails_before_anything_changes(tmp_path: Path) -> None:
    """A file turned into a folder: the rename onto it failed after the first file's."""
    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inside").write_text("kept")
    with pytest.raises(IsADirectoryError), _stage(tmp_path, ["a", "b", "c"]) as staged:
        staged.commit()
    assert _files(tmp_path / "b") == {"inside": b"kept"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a").read_text() == "old a"


def test_without_hard_links_the_earlier_files_are_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system with no hard links (FAT, some network shares): a copy keeps each file."""
    for name in ("a", "b"):
        (tmp_path / name).write_text(f"old {name}")
    os.chmod(tmp_path / "a", 0o640)
    before = _files(tmp_path)

    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr("vitkit.artifact.os.link", no_links)
    _rename_fails(monkeypatch, "b")
    with pytest.raises(PermissionError), _stage(tmp_path, ["a", "b"]) as staged:
        staged.commit()
    assert _files(tmp_path) == before
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640


def test_a_file_that_cannot_be_put_back_keeps_its_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename failed and so did putting the first file back: the original error is raised
    and the earlier file is still there, under its hidden backup name, not deleted."""
    for name in ("a", "b"):
        (tmp_path / name).write_text(f"old {name}")
    replace: Callable[..., None] = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "b" or str(src).endswith(".bak"):
            raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))
        replace(src, dst)

    monkeypatch.setattr("vitkit.artifact.os.replace", failing)
    with pytest.raises(PermissionError) as e, _stage(tmp_path, ["a", "b"]) as staged:
        staged.commit()
    assert e.value.filename2 == str(tmp_path / "b")
    left = _files(tmp_path)
    backups = [n for n in left if n.startswith(".a.") and n.endswith(".bak")]
    assert len(backups) == 1 and left[backups[0]] == b"old a"
    assert left["a"] == b"new a" and left["b"] == b"old b"
    assert set(left) == {"a", "b", backups[0]}


def test_without_hard_links_a_symlink_is_put_back_as_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no hard links, a name that was a symlink was kept as a copy of the file it points
    to: a failed commit put back a regular file in the link's place, and a dangling link (a
    copy of nothing) failed a commit that had nothing wrong with it."""
    (tmp_path / "target").write_text("pointed to")
    (tmp_path / "a").symlink_to("target")
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "b").write_text("old b")

    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr("vitkit.artifact.os.link", no_links)
    _rename_fails(monkeypatch, "b")
    with pytest.raises(PermissionError), _stage(tmp_path, ["a", "dangling", "b"]) as staged:
        staged.commit()
    for name, target in (("a", "target"), ("dangling", "nowhere")):
        assert (tmp_path / name).is_symlink() and os.readlink(tmp_path / name) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "dangling", "target"]
    assert (tmp_path / "target").read_text() == "pointed to"
    monkeypatch.setattr("vitkit.artifact.os.replace", os.replace)  # nothing fails now
    with _stage(tmp_path, ["dangling"]) as staged:
        staged.commit()
    assert (tmp_path / "dangling").read_text() == "new dangling"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "dangling", "target"]
