"""Tests for vitkit.data.sources.cifar on small files written in the official pickle format."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import shutil
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit.data.download import DownloadError
from vitkit.data.sources import cifar
from vitkit.data.sources.cifar import build_cifar10, build_cifar100
from vitkit.data.types import SourceContext
from vitkit.errors import UserError

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
PER_BATCH = 3  # images per CIFAR-10 batch file in these tests


# ── writing files in the official format ───────────────────────────────────────────────────


def _dump(path: Path, obj: object, protocol: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _batch(data: np.ndarray, label_keys: dict[bytes, list[int]], name: str) -> dict[bytes, object]:
    return {
        b"batch_label": f"{name} of 5".encode(),
        **label_keys,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(data))],
    }


def write_cifar10(root: Path, *, protocol: int = 2) -> dict[str, np.ndarray]:
    """Write cifar-10-batches-py/ under root; return the expected images and labels."""
    folder = root / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        data = _rows(PER_BATCH, seed=i)
        labels = [(3 * i + j) % 10 for j in range(PER_BATCH)]
        _dump(
            folder / f"data_batch_{i}",
            _batch(data, {b"labels": labels}, "training batch"),
            protocol,
        )
        xs.append(data)
        ys.extend(labels)
    test = _rows(2, seed=99)
    test[0] = 0
    test[0, 0 * 1024 + 1 * 32 + 2] = 200  # R at (y=1, x=2)
    test[0, 1 * 1024 + 3 * 32 + 4] = 100  # G at (y=3, x=4)
    test[0, 2 * 1024 + 31 * 32 + 30] = 50  # B at (y=31, x=30)
    _dump(folder / "test_batch", _batch(test, {b"labels": [9, 0]}, "testing batch"), protocol)
    names = [n.encode() for n in CIFAR10_NAMES]
    meta = {b"num_cases_per_batch": PER_BATCH, b"label_names": names, b"num_vis": 3072}
    _dump(folder / "batches.meta", meta, protocol)
    return {
        "train_x": np.concatenate(xs),
        "train_y": np.array(ys),
        "test_x": test,
        "test_y": np.array([9, 0]),
    }


def write_cifar100(root: Path, *, protocol: int = 2) -> None:
    folder = root / "cifar-100-python"
    for split, n, seed in (("train", 6, 1), ("test", 4, 2)):
        fine = [(7 * j + seed) % 100 for j in range(n)]
        coarse = [f // 5 for f in fine]
        keys = {b"fine_labels": fine, b"coarse_labels": coarse}
        _dump(folder / split, _batch(_rows(n, seed), keys, split), protocol)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _dump(folder / "meta", meta, protocol)


def pack(root: Path, folder: str, archive: str) -> Path:
    """Turn root/<folder>/ into the official root/<archive> (tar.gz) and remove the folder."""
    path = root / archive
    with tarfile.open(path, "w:gz") as tf:
        tf.add(root / folder, arcname=folder)
    shutil.rmtree(root / folder)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ── loading ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("protocol", [2, 5])  # the official files are protocol 2
def test_cifar10_from_folder(tmp_path: Path, protocol: int) -> None:
    expected = write_cifar10(tmp_path, protocol=protocol)
    calls: list[tuple[str, int, int | None]] = []
    ctx = SourceContext(root=tmp_path, download=False, progress=lambda *a: calls.append(a))

    raw = build_cifar10(ctx)

    assert raw.classes == CIFAR10_NAMES
    train, test = raw.splits["train"], raw.splits["test"]
    assert set(raw.splits) == {"train", "test"}
    assert train.images.dtype == torch.uint8 and train.images.shape == (5 * PER_BATCH, 3, 32, 32)
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == expected["train_y"].tolist()  # batches 1..5 in order
    assert torch.equal(train.images.flatten(1), torch.from_numpy(expected["train_x"]))
    assert test.labels.tolist() == [9, 0]
    assert calls[0] == ("load CIFAR-10", 0, 6) and calls[-1] == ("load CIFAR-10", 6, 6)


def test_cifar10_pixel_layout_is_channel_row_column(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    image = build_cifar10(SourceContext(root=tmp_path, download=False)).splits["test"].images[0]
    assert image.shape == (3, 32, 32)
    assert image[0, 1, 2] == 200  # R plane first, row-major within the plane
    assert image[1, 3, 4] == 100
    assert image[2, 31, 30] == 50
    assert int(image.sum()) == 350  # nothing else set


def test_cifar100_uses_fine_labels_and_names(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    raw = build_cifar100(SourceContext(root=tmp_path, download=False))
    assert raw.classes == [f"fine{i}" for i in range(100)]
    assert raw.splits["train"].labels.tolist() == [(7 * j + 1) % 100 for j in range(6)]
    assert raw.splits["test"].labels.tolist() == [(7 * j + 2) % 100 for j in range(4)]
    assert raw.splits["train"].images.shape == (6, 3, 32, 32)
    assert torch.equal(raw.splits["test"].images.flatten(1), torch.from_numpy(_rows(4, 2)))


def test_cifar10_from_official_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = write_cifar10(tmp_path)
    archive = pack(tmp_path, "cifar-10-batches-py", "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, md5=md5(archive)))
    calls: list[tuple[str, int, int | None]] = []

    raw = build_cifar10(
        SourceContext(root=tmp_path, download=False, progress=lambda *a: calls.append(a))
    )

    assert raw.splits["train"].labels.tolist() == expected["train_y"].tolist()
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()  # extracted in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]
    assert any(d == "extract cifar-10-python.tar.gz" for d, _, _ in calls)


def test_cifar100_from_official_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar100(tmp_path)
    archive = pack(tmp_path, "cifar-100-python", "cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR100", dataclasses.replace(cifar.CIFAR100, md5=md5(archive)))
    raw = build_cifar100(SourceContext(root=tmp_path, download=False))
    assert len(raw.splits["train"]) == 6 and len(raw.classes) == 100


def test_archive_with_wrong_md5_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    archive = pack(tmp_path, "cifar-10-batches-py", "cifar-10-python.tar.gz")
    with pytest.raises(UserError) as info:
        build_cifar10(SourceContext(root=tmp_path, download=False))
    message = str(info.value)
    assert str(archive) in message and md5(archive) in message and cifar.CIFAR10.md5 in message
    assert not (tmp_path / "cifar-10-batches-py").exists()


FOLDER_HINT = "; for a CIFAR-10 copy as image files (PATH/train/<class>/*.jpg), use folder:PATH"


def test_missing_files_without_download_say_what_to_place_where(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        build_cifar10(SourceContext(root=tmp_path / "cifar10", download=False))
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar10") in message
    assert "cifar-10-batches-py" in message and "\n" not in message
    # the JPEG copy (docs/data.md) was not named: it is read as folder:PATH, not as cifar10
    assert message.endswith(FOLDER_HINT)
    with pytest.raises(UserError) as info:  # CIFAR-100: no such copy is described
        build_cifar100(SourceContext(root=tmp_path / "cifar100", download=False))
    assert "folder:" not in str(info.value)


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_download_then_extract_then_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    expected = write_cifar10(served)
    archive = pack(served, "cifar-10-batches-py", "cifar-10-python.tar.gz")
    root = tmp_path / "data" / "cifar10"
    with _serve(served) as url:
        layout = dataclasses.replace(
            cifar.CIFAR10, md5=md5(archive), urls=(f"{url}/cifar-10-python.tar.gz",)
        )
        monkeypatch.setattr(cifar, "CIFAR10", layout)
        raw = build_cifar10(SourceContext(root=root, download=True))
    assert raw.splits["train"].labels.tolist() == expected["train_y"].tolist()
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()


def test_download_failure_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, urls=(dead,)))
    with pytest.raises(DownloadError) as info:
        build_cifar10(SourceContext(root=tmp_path, download=True))
    assert isinstance(info.value, UserError)
    assert f"place the file at {tmp_path / 'cifar-10-python.tar.gz'} and run again" in str(
        info.value
    )
    assert str(info.value).endswith(FOLDER_HINT) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ── untrusted and broken files ─────────────────────────────────────────────────────────────


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("file", ["data_batch_1", "batches.meta"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path: Path, file: str) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-10-batches-py" / file
    _dump(path, {b"data": _Evil(marker), b"labels": [0], b"label_names": [b"x"]}, protocol=2)
    assert pickle.loads(path.read_bytes()) is not None and marker.exists()  # it IS dangerous
    marker.unlink()

    with pytest.raises(UserError) as info:
        build_cifar10(SourceContext(root=tmp_path, download=False))

    message = str(info.value)
    assert message.startswith("refusing to unpickle") and "system" in message
    assert str(path) in message
    assert not marker.exists()


def test_pickle_naming_builtins_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")  # eval("1+1") in protocol 0
    with pytest.raises(UserError, match=r"refusing to unpickle builtins\.eval from .*test_batch"):
        build_cifar10(SourceContext(root=tmp_path, download=False))


def test_truncated_file_is_a_one_line_user_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UserError) as info:
        build_cifar10(SourceContext(root=tmp_path, download=False))
    message = str(info.value)
    assert message.startswith(f"corrupt or truncated file {path}") and "\n" not in message


def test_a_test_split_alone_needs_only_the_test_batch(tmp_path: Path) -> None:
    """Scoring a model reads the test batch and the class names, not the train batches."""
    from vitkit.data import load_dataset

    expected = write_cifar10(tmp_path / "cifar10")
    for i in range(1, 6):
        (tmp_path / "cifar10" / "cifar-10-batches-py" / f"data_batch_{i}").unlink()
    ds = load_dataset("cifar10", data_root=tmp_path, download=False, splits=["test"])
    assert list(ds) == ["test"] and ds.classes == CIFAR10_NAMES and ds.mean is None
    assert torch.equal(ds["test"].images.flatten(1), torch.from_numpy(expected["test_x"]))
    assert not (tmp_path / "cifar10" / "cache").exists()
    with pytest.raises(UserError, match=r"missing .*data_batch_1"):  # training needs them
        load_dataset("cifar10", data_root=tmp_path, download=False)
    write_cifar100(tmp_path / "cifar100")
    (tmp_path / "cifar100" / "cifar-100-python" / "train").unlink()
    test = load_dataset("cifar100", data_root=tmp_path, download=False, splits=["test"])["test"]
    assert test.labels.tolist() == [(7 * j + 2) % 100 for j in range(4)]


def test_missing_batch_in_folder_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError, match=r"missing .*data_batch_4") as info:
        build_cifar10(SourceContext(root=tmp_path, download=False))
    assert str(info.value).endswith(FOLDER_HINT)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(UserError, match=r"missing .*batches\.meta.*use folder:PATH$"):
        build_cifar10(SourceContext(root=tmp_path, download=False))


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"not \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "not uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images, 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels outside 0\.\.9"),
        ({b"labels": [0, 1]}, "no 'data' entry"),
        ([1, 2, 3], "not a dict"),
    ],
)
def test_unexpected_contents_are_user_errors(tmp_path: Path, batch: object, match: str) -> None:
    write_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", batch, protocol=2)
    with pytest.raises(UserError, match=match):
        build_cifar10(SourceContext(root=tmp_path, download=False))
