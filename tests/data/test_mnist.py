from __future__ import annotations

import gzip
import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit.data import load_dataset
from vitkit.data.sources.mnist import MNIST_FILES, parse_idx
from vitkit.errors import UserError

# md5 of the uncompressed official files, from ../shared/data/README.md
README_MD5 = {
    "train-images": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels": "a25bea736e30d166cdddb491f175f624",
    "test-images": "2646ac647ad5339dbf082846283269ea",
    "test-labels": "27ae3e4e09519cfbb04c329615203637",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX file an array of unsigned bytes came from (header + data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_mnist_from_shared_files_matches_official_md5(mnist_root: Path) -> None:
    ds = load_dataset("mnist", data_root=mnist_root, download=False, rebuild=True)
    assert not ds.from_cache
    assert len(ds["train"]) == 60_000 and len(ds["test"]) == 10_000
    assert ds["train"].images.shape == (60_000, 1, 28, 28)
    assert ds.classes == [str(i) for i in range(10)]
    for split in ("train", "test"):
        images = ds[split].images[:, 0].numpy()
        labels = ds[split].labels.numpy()
        assert hashlib.md5(idx_bytes(images)).hexdigest() == README_MD5[f"{split}-images"]
        assert hashlib.md5(idx_bytes(labels)).hexdigest() == README_MD5[f"{split}-labels"]
    assert ds.mean == [0.1307] and ds.std == [0.3081]  # the well-known MNIST statistics

    t0 = time.perf_counter()
    again = load_dataset("mnist", data_root=mnist_root, download=False)
    assert time.perf_counter() - t0 < 2.0
    assert again.from_cache
    assert torch.equal(again["train"].images, ds["train"].images)
    assert torch.equal(again["test"].labels, ds["test"].labels)


def test_known_md5s_are_the_readme_ones() -> None:
    for key, f in MNIST_FILES.items():
        assert f.raw_md5 == README_MD5[key]


def test_missing_files_without_network_say_where(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing train-images-idx3-ubyte.gz; place it in .*mnist"):
        load_dataset("mnist", data_root=tmp_path, download=False)


def test_wrong_local_file_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    fake = np.zeros((3, 28, 28), np.uint8)
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(fake)))
    with pytest.raises(UserError, match="does not match the official"):
        load_dataset("mnist", data_root=tmp_path, download=False)


def test_damaged_gzip_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    blob = bytearray(gzip.compress(idx_bytes(np.arange(28 * 28 * 50, dtype=np.uint8) % 7)))
    blob[20:40] = b"\xff" * 20  # a valid gzip header over a damaged deflate stream
    (d / "train-images-idx3-ubyte.gz").write_bytes(bytes(blob))
    with pytest.raises(UserError, match=r"cannot read .*; delete it and run again"):
        load_dataset("mnist", data_root=tmp_path, download=False)


def test_parse_idx_rejects_garbage_and_truncation() -> None:
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    np.testing.assert_array_equal(parse_idx(good, source="x"), np.arange(12).reshape(3, 4))
    with pytest.raises(UserError, match="not an IDX"):
        parse_idx(b"hello world", source="x")
    with pytest.raises(UserError, match="truncated"):
        parse_idx(good[:-1], source="x")


def test_mnist_mini_is_shipped_stratified_and_offline(tmp_path: Path) -> None:
    ds = load_dataset("mnist-mini", data_root=tmp_path, download=False)
    assert len(ds["train"]) == 5000 and len(ds["test"]) == 1000
    assert torch.bincount(ds["train"].labels).tolist() == [500] * 10
    assert torch.bincount(ds["test"].labels).tolist() == [100] * 10
    assert ds["train"].images.dtype == torch.uint8 and ds.image_size == 28 and ds.channels == 1


def test_a_dataset_prints_in_one_line(tmp_path: Path) -> None:
    ds = load_dataset("mnist-mini", data_root=tmp_path)  # the default repr printed every pixel
    assert repr(ds) == "Dataset('mnist-mini', {train: 5,000, test: 1,000}, 1x28x28, 10 classes)"
    assert repr(ds["test"]) == (
        "Split(images=uint8(1000, 1, 28, 28), labels=int64(1000,), device=cpu)"
    )


def test_a_dataset_reads_as_a_mapping_of_splits(tmp_path: Path) -> None:
    """`"val" in ds` raised TypeError ('int' object is not iterable): Python fell back to
    ds[0], ds[1], ... and the split lookup crashed on the int."""
    ds = load_dataset("mnist-mini", data_root=tmp_path)
    assert "test" in ds and "val" not in ds and 0 not in ds
    assert list(ds) == ["train", "test"]
    with pytest.raises(TypeError, match=r"indexed by split name.*ds\['train'\].images\[i\]"):
        ds[0]  # type: ignore[index]


def test_mnist_mini_images_are_real_mnist_test_images(mnist_root: Path, tmp_path: Path) -> None:
    full = load_dataset("mnist", data_root=mnist_root, download=False)["test"].images
    mini = load_dataset("mnist-mini", data_root=tmp_path)["test"].images
    flat = {bytes(x.numpy().tobytes()) for x in full}
    assert all(bytes(x.numpy().tobytes()) in flat for x in mini[:50])


@pytest.mark.parametrize(
    "meta", ["[]", '{"format": FORMAT}', '{"format": FORMAT, "splits": ["train"], "classes": null}']
)
def test_a_damaged_cache_is_rebuilt(tmp_path: Path, meta: str) -> None:
    import json

    from vitkit.data.cache import CACHE_FORMAT

    first = load_dataset("mnist-mini", data_root=tmp_path)
    path = first.cache_dir / "meta.json"
    path.write_text(meta.replace("FORMAT", json.dumps(CACHE_FORMAT)))
    again = load_dataset("mnist-mini", data_root=tmp_path)
    assert not again.from_cache and again.classes == first.classes
    assert load_dataset("mnist-mini", data_root=tmp_path).from_cache  # rewritten whole


# -- a split alone: what scoring a trained model needs -------------------------------------------
def write_idx_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """``<prefix>-images-idx3-ubyte.gz`` and ``<prefix>-labels-idx1-ubyte.gz`` (train, t10k)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))


def test_a_test_split_loads_from_its_own_files_and_is_never_cached(tmp_path: Path) -> None:
    """Scoring a model read both splits (and computed the train split's mean/std) even though
    the model brings its own: with only the t10k files here, it said train-images was missing.
    Fashion-MNIST, whose files are not checked against official checksums, on written files."""
    from vitkit.data.cache import list_caches

    g = np.random.default_rng(0)
    test_x, test_y = g.integers(0, 256, (12, 28, 28), np.uint8), np.arange(12) % 10
    write_idx_split(tmp_path / "fashion-mnist", "t10k", test_x, test_y)
    ds = load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits=["test"])
    assert list(ds) == ["test"] and not ds.from_cache
    assert ds["test"].images[:, 0].numpy().tolist() == test_x.tolist()
    assert ds["test"].labels.tolist() == test_y.tolist() and len(ds.classes) == 10
    assert ds.mean is None and ds.std is None  # no train split: no statistics made up
    from vitkit.data.preview import make_preview

    with pytest.raises(UserError, match=r"without its train statistics .*load it whole"):
        make_preview(ds, split="test", n=4, augmented=True)  # normalises with them
    assert make_preview(ds, split="test", n=4).size[0] > 0  # the images as they are: none needed
    # nothing cached: a cache of some splits would be read as the whole dataset
    assert not (tmp_path / "fashion-mnist" / "cache").exists() and list_caches(tmp_path) == []
    # what needs the train split (training, `data info`) says it is missing, as before
    with pytest.raises(UserError, match=r"missing train-images-idx3-ubyte.gz; place it in"):
        load_dataset("fashion-mnist", data_root=tmp_path, download=False)
    with pytest.raises(UserError, match=r"has no split 'tset' \(it has: train, test\).*'test'"):
        load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits=["tset"])

    # with the train files too: the whole dataset is cached, and a split alone reads the cache
    write_idx_split(tmp_path / "fashion-mnist", "train", test_x[::-1].copy(), test_y[::-1].copy())
    whole = load_dataset("fashion-mnist", data_root=tmp_path, download=False)
    assert list(whole) == ["train", "test"] and whole.mean is not None
    (entry,) = list_caches(tmp_path)
    assert entry.complete and entry.stale is None
    (tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").unlink()  # the cache serves it
    again = load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits=["test"])
    assert again.from_cache and list(again) == ["test"]
    # the full cache records the train split's statistics: they come with it (they were None)
    assert (again.mean, again.std) == (whole.mean, whole.std) and again.mean is not None
    assert make_preview(again, split="test", n=4, augmented=True).size[0] > 0  # it has them
    assert torch.equal(again["test"].images, ds["test"].images)


def test_a_dataset_that_cannot_build_a_split_alone_loads_whole(tmp_path: Path) -> None:
    """mnist-mini (shipped) and folder: datasets are read whole and cached, splits= or not."""
    ds = load_dataset("mnist-mini", data_root=tmp_path, splits=["test"])
    assert list(ds) == ["train", "test"] and ds.mean is not None
    assert load_dataset("mnist-mini", data_root=tmp_path, splits=["test"]).from_cache


def test_a_split_a_whole_loaded_dataset_lacks_is_refused(tmp_path: Path) -> None:
    """mnist-mini loads whole whatever splits= names, so splits=["bogus"] was accepted without
    a word (a dataset with train and test came back); it is refused as for mnist, before it is
    read."""
    with pytest.raises(UserError, match=r"^dataset 'mnist-mini' has no split 'bogus' \(it has: train, test\)$"):  # fmt: skip
        load_dataset("mnist-mini", data_root=tmp_path, splits=["bogus"])
    with pytest.raises(UserError, match=r"has no split 'tset' \(it has: train, test\); did you mean 'test'\?"):  # fmt: skip
        load_dataset("mnist-mini", data_root=tmp_path, splits="tset")
    with pytest.raises(UserError, match=r"no split named to load of dataset 'mnist-mini'"):
        load_dataset("mnist-mini", data_root=tmp_path, splits=[])
    assert not (tmp_path / "mnist-mini").exists()  # refused before anything was built


def test_mnist_test_split_alone_from_the_t10k_files(shared_data: Path, tmp_path: Path) -> None:
    """The real t10k files alone (a run copied to a machine without the train files)."""
    (tmp_path / "mnist").mkdir()
    for f in (shared_data / "mnist").glob("t10k-*.gz"):
        (tmp_path / "mnist" / f.name).symlink_to(f)
    ds = load_dataset("mnist", data_root=tmp_path, download=False, splits=["test"])
    assert list(ds) == ["test"] and len(ds["test"]) == 10_000
    images, labels = ds["test"].images[:, 0].numpy(), ds["test"].labels.numpy()
    assert hashlib.md5(idx_bytes(images)).hexdigest() == README_MD5["test-images"]
    assert hashlib.md5(idx_bytes(labels)).hexdigest() == README_MD5["test-labels"]
    with pytest.raises(UserError, match=r"mnist: missing train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_root=tmp_path, download=False)


def test_splits_as_one_string_are_a_comma_list(tmp_path: Path) -> None:
    """splits="train, test" was ["train", " test"]: 'has no split ' test'; did you mean 'test'?'"""
    g = np.random.default_rng(0)
    test_x, test_y = g.integers(0, 256, (4, 28, 28), np.uint8), np.arange(4)
    write_idx_split(tmp_path / "fashion-mnist", "t10k", test_x, test_y)
    for splits in ("test", " test ", "test,", "test, test"):
        ds = load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits=splits)
        assert list(ds) == ["test"]
    write_idx_split(tmp_path / "fashion-mnist", "train", test_x, test_y)
    ds = load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits="test, train")
    assert list(ds) == ["test", "train"]
    with pytest.raises(UserError, match=r"no split named to load of dataset 'fashion-mnist'"):
        load_dataset("fashion-mnist", data_root=tmp_path, download=False, splits=" , ")


@pytest.mark.parametrize("splits", [5, [5], b"test", [None]])
def test_splits_of_the_wrong_type_are_one_line_errors(tmp_path: Path, splits: object) -> None:
    """splits=5 raised TypeError ('int' is not iterable); a list of non-names too, for any
    dataset (mnist-mini loads whole, but a wrong argument is wrong there as well)."""
    for name in ("mnist", "mnist-mini"):
        with pytest.raises(UserError, match="split"):
            load_dataset(name, data_root=tmp_path, download=False, splits=splits)  # type: ignore[arg-type]
