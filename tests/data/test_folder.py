"""vitkit/data/sources/folder.py: ImageFolder trees written here with PIL, and the CIFAR-10 JPEGs."""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from vitkit.data.sources import folder
from vitkit.data.sources.folder import build_folder, fingerprint
from vitkit.data.types import RawDataset, SourceContext
from vitkit.errors import ConfigError, UserError

# every class has a distinctive solid colour, so a decoded pixel tells which class it came from
COLOURS = {"cat": (220, 30, 30), "dog": (30, 200, 30), "owl": (30, 30, 220), "yak": (128,) * 3}


def _save(
    path: Path,
    colour: tuple[int, ...],
    size: tuple[int, int] = (16, 16),
    mode: str = "RGB",
    **kw: Any,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if len(colour) > 1 else colour[0]).save(path, **kw)
    return path


def _jpeg_bytes(colour: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _load(path: Path, progress: Any = None, **options: Any) -> RawDataset:
    ctx = SourceContext(root=path.parent, options={"path": path, **options})
    if progress is not None:
        ctx.progress = progress
    return build_folder(ctx)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """4 classes, PNG/JPEG/BMP/WebP, one RGBA, one grayscale class, and three broken files."""
    root = tmp_path / "ds"
    tr = root / "train"
    _save(tr / "cat" / "a.png", COLOURS["cat"])
    _save(tr / "cat" / "b.jpg", COLOURS["cat"], quality=95)
    _save(tr / "cat" / "c.png", (*COLOURS["cat"], 255), mode="RGBA")
    _save(tr / "dog" / "a.jpeg", COLOURS["dog"], quality=95)
    _save(tr / "dog" / "b.bmp", COLOURS["dog"])
    (tr / "dog" / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(500))  # not an image
    (tr / "dog" / "notes.txt").write_text("not an image extension: ignored")
    _save(tr / "owl" / "a.webp", COLOURS["owl"], lossless=True)
    (tr / "owl" / "empty.png").write_bytes(b"")  # zero bytes
    (tr / "owl" / "half.jpg").write_bytes(_jpeg_bytes(COLOURS["owl"])[:300])  # truncated
    _save(tr / "yak" / "a.png", (128,), mode="L")  # the grayscale one
    _save(root / "test" / "cat" / "x.png", COLOURS["cat"])
    _save(root / "test" / "owl" / "y.jpg", COLOURS["owl"], quality=95)  # test lacks dog and yak
    return root


def _assert_aligned(ds: RawDataset, tol: int = 12) -> None:
    """Every kept image's centre pixel is its label's class colour."""
    for split in ds.splits.values():
        for img, label in zip(split.images, split.labels.tolist(), strict=True):
            want = torch.tensor(COLOURS[ds.classes[label]][: img.shape[0]], dtype=torch.int32)
            got = img[:, img.shape[1] // 2, img.shape[2] // 2].to(torch.int32)
            assert (got - want).abs().max() <= tol, (ds.classes[label], got.tolist())


def test_tree_shapes_labels_and_skipped(tree: Path) -> None:
    calls: list[tuple[str, int, int | None]] = []
    ds = _load(tree, progress=lambda d, c, t: calls.append((d, c, t)))
    assert ds.classes == ["cat", "dog", "owl", "yak"]
    assert set(ds.splits) == {"train", "test"}
    train, test = ds.splits["train"], ds.splits["test"]
    assert train.images.shape == (7, 3, 16, 16) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert test.images.shape == (2, 3, 16, 16) and test.labels.tolist() == [0, 2]
    _assert_aligned(ds)
    assert ds.info["skipped"] == {
        "count": 3,
        "first": ["train/dog/bad.jpg", "train/owl/empty.png", "train/owl/half.jpg"],
    }
    assert ds.info["path"] == str(tree.resolve())
    assert (ds.info["image_size"], ds.info["channels"]) == (16, 3)
    assert calls[0] == ("decode train", 0, 10) and calls[-1] == ("decode test", 2, 2)
    assert ("decode train", 10, 10) in calls


def test_threads_and_chunks_give_the_same_result(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many workers and tiny chunks (skips falling in several chunks) change nothing."""
    one = _load(tree)
    monkeypatch.setattr(folder, "SMALL_IMAGE_PIXELS", 0)
    monkeypatch.setattr(folder, "CHUNK", 2)
    many = _load(tree)
    assert many.info["decode_workers"] == min(8, os.cpu_count() or 1)
    for name, split in one.splits.items():
        assert torch.equal(many.splits[name].images, split.images)
        assert torch.equal(many.splits[name].labels, split.labels)
    assert many.info["skipped"] == one.info["skipped"]


def test_resize_and_forced_grayscale(tree: Path) -> None:
    _save(tree / "train" / "dog" / "wide.png", COLOURS["dog"], size=(40, 24))
    ds = _load(tree, image_size=8, channels=1)
    assert ds.splits["train"].images.shape == (8, 1, 8, 8)
    assert (ds.info["image_size"], ds.info["channels"]) == (8, 1)
    # RGB -> L uses ITU-R 601 luma: red (220, 30, 30) is about 87
    luma = {k: round(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) for k, c in COLOURS.items()}
    for img, label in zip(ds.splits["train"].images, ds.splits["train"].labels, strict=True):
        assert abs(int(img[0, 4, 4]) - luma[ds.classes[label]]) <= 3


def test_val_split_is_read(tree: Path) -> None:
    _save(tree / "val" / "yak" / "v.png", (128,), mode="L")
    ds = _load(tree)
    assert ds.splits["val"].labels.tolist() == [3]
    _assert_aligned(ds)


def test_channels_auto_detects_grayscale(tmp_path: Path) -> None:
    root = tmp_path / "gray"
    _save(root / "train" / "a" / "1.png", (10,), mode="L")
    _save(root / "train" / "a" / "2.jpg", (10,), mode="L", quality=95)
    _save(root / "train" / "b" / "1.png", (1,), mode="1")
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(root / "train" / "b" / "2.png")
    ds = _load(root)
    assert ds.info["channels"] == 1
    imgs = ds.splits["train"].images
    assert imgs.shape == (4, 1, 16, 16)
    assert imgs[:, 0, 8, 8].tolist()[:3] == [10, 10, 255]
    # 16-bit grayscale is scaled to 8 bits (PIL's convert("L") would clip it to 255)
    assert abs(int(imgs[3, 0, 8, 8]) - round(40000 / 65535 * 255)) <= 1
    assert _load(root, channels=3).splits["train"].images.shape == (4, 3, 16, 16)


def _gray_tree(root: Path, n: int = 72) -> None:
    """``n`` single-channel images over two classes: L PNGs, L JPEGs, 1-bit and 16-bit PNGs."""
    for i in range(n):
        cls = root / "train" / ("a" if i % 2 else "b")
        if i % 4 == 0:
            _save(cls / f"{i:03}.jpg", (i * 3,), mode="L", quality=95)
        elif i % 4 == 1:
            _save(cls / f"{i:03}.png", (i % 2,), mode="1")
        elif i % 4 == 2:
            a = np.full((16, 16), 500 * i, dtype=np.uint16)
            cls.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(cls / f"{i:03}.png")
        else:
            _save(cls / f"{i:03}.png", (i * 3,), mode="L")


@pytest.mark.parametrize("where", ["train", "test"])
def test_channels_auto_sees_every_image(tmp_path: Path, where: str) -> None:
    """A tree of grayscale images with one colour image where the header sample (the first 64
    of train/ here) misses it, or in test/ (never sampled), was loaded as grayscale: the
    colour was lost. Every decoded image decides; the result is what channels=3 gives."""
    root = tmp_path / "mixed"
    _gray_tree(root)
    _save(root / "test" / "a" / "0.png", (7,), mode="L")
    odd = root / where / "b" / ("zzz.png" if where == "train" else "zzz.jpg")  # JPEG: drafted
    _save(odd, COLOURS["cat"], quality=95)
    sample = folder._probe(sorted((root / "train").rglob("*.*")))
    assert all(mode in folder.SINGLE_CHANNEL_MODES for mode, _ in sample)  # no colour in it
    ds = _load(root)
    assert ds.info["channels"] == 3 and ds.info["channels_from"] == "every image"
    assert ds.info["skipped"]["count"] == 0
    forced = _load(root, channels=3)
    assert forced.info["channels_from"] == "given"
    for name, split in forced.splits.items():
        assert torch.equal(ds.splits[name].images, split.images), name
        assert torch.equal(ds.splits[name].labels, split.labels)
    i = ds.info["split_files"][where].index(odd.relative_to(root).as_posix())
    got = ds.splits[where].images[i, :, 8, 8].to(torch.int32)
    assert (got - torch.tensor(COLOURS["cat"])).abs().max() <= 3, got
    j = ds.info["split_files"]["train"].index("train/a/003.png")  # L, 9: the same in R, G, B
    assert ds.splits["train"].images[j, :, 8, 8].tolist() == [9, 9, 9]
    odd.unlink()  # all single-channel again
    assert _load(root).info["channels"] == 1


def test_channels_auto_ignores_an_unreadable_colour_file(tmp_path: Path) -> None:
    """The sample's only colour header is a file that fails to decode (skipped): every image
    kept is grayscale, so the dataset is 1 channel (it was 3)."""
    root = tmp_path / "gray"
    _gray_tree(root, n=8)
    noise = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    cut = root / "train" / "a" / "cut.png"
    cut.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert folder._header(cut) == ("RGB", (16, 16))  # its header reads: colour
    ds = _load(root)
    assert ds.info["skipped"]["first"] == ["train/a/cut.png"]
    assert ds.info["channels"] == 1 and ds.splits["train"].images.shape == (8, 1, 16, 16)
    assert torch.equal(ds.splits["train"].images, _load(root, channels=1).splits["train"].images)


def test_a_cache_with_channels_from_the_sample_is_rebuilt(tmp_path: Path) -> None:
    """A cache made when channels came from a sample of headers (no ``channels_from`` in its
    info) is not reused with detected channels: it may be grayscale where a colour image
    was missed. With --channels given it still is."""
    import json

    from vitkit.data import load_dataset

    root = tmp_path / "mixed"
    _gray_tree(root)
    _save(root / "train" / "b" / "zzz.png", COLOURS["cat"])
    ds = load_dataset(f"folder:{root}", data_root=tmp_path / "root")
    assert ds.channels == 3 and not ds.from_cache
    assert load_dataset(f"folder:{root}", data_root=tmp_path / "root").from_cache

    def as_old(cache: Path) -> None:  # what the old detection cached: 1 channel, no channels_from
        meta = json.loads((cache / "meta.json").read_text())
        del meta["info"]["channels_from"]
        meta["info"]["channels"], meta["mean"], meta["std"] = 1, meta["mean"][:1], meta["std"][:1]
        train = load_file(cache / "train.safetensors")
        train["images"] = train["images"][:, :1].contiguous()
        save_file(train, cache / "train.safetensors")
        (cache / "meta.json").write_text(json.dumps(meta))

    as_old(ds.cache_dir)
    again = load_dataset(f"folder:{root}", data_root=tmp_path / "root")
    assert again.channels == 3 and not again.from_cache and again.cache_dir == ds.cache_dir
    # (rebuild: channels=3 alone reads the detected-3 cache, test_one_cache_for_the_same_images)
    given = load_dataset(f"folder:{root}", data_root=tmp_path / "root", channels=3, rebuild=True)
    assert given.cache_dir != ds.cache_dir
    as_old(given.cache_dir)  # (now 1 channel: shows it is the cache that is read)
    assert load_dataset(f"folder:{root}", data_root=tmp_path / "root", channels=3).from_cache


def test_one_cache_for_the_same_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder cached as it is (size and channels from its images: 16x16, RGB) and loaded
    again with image_size=16, channels=3 (what eval passes: the model's) was decoded again into
    a second cache of the same images. The first is read now; other values still decode."""
    from vitkit.data import load_dataset
    from vitkit.data.cache import list_caches

    root, data_root = tmp_path / "ds", tmp_path / "root"
    g = np.random.default_rng(0)
    for split in ("train", "test"):
        _save(root / split / "cat" / "a.png", COLOURS["cat"])
        _save(root / split / "yak" / "a.png", COLOURS["yak"][:1], mode="L")
        for c, shape in (("cat", (16, 16, 3)), ("yak", (16, 16))):  # noise: JPEG decoding shows
            Image.fromarray(g.integers(0, 256, shape, np.uint8)).save(root / split / c / "b.jpg")
    first = load_dataset(f"folder:{root}", data_root=data_root)
    assert (first.image_size, first.channels) == (16, 3)
    decoded: list[dict[str, Any]] = []
    real = folder.build_folder
    monkeypatch.setattr(
        folder, "build_folder", lambda ctx: decoded.append(ctx.options) or real(ctx)
    )
    for options in ({"image_size": 16, "channels": 3}, {"image_size": 16}, {"channels": 3}):
        again = load_dataset(f"folder:{root}", data_root=data_root, **options)
        assert again.from_cache and again.cache_dir == first.cache_dir, options
        # what these options decode, image for image (the same cache proves nothing of that)
        fresh = load_dataset(
            f"folder:{root}", data_root=tmp_path / "fresh", rebuild=True, **options
        )
        assert list(fresh) == list(again) == ["train", "test"]
        assert all(torch.equal(again[s].images, fresh[s].images) for s in fresh), options
    assert len(decoded) == 3 and len(list_caches(data_root)) == 1  # the fresh builds alone
    decoded.clear()
    # other images: their own cache, as before
    assert load_dataset(f"folder:{root}", data_root=data_root, image_size=8).image_size == 8
    assert load_dataset(f"folder:{root}", data_root=data_root, channels=1).channels == 1
    assert len(decoded) == 2 and len(list_caches(data_root)) == 3


def test_numpy_sizes_are_taken_as_plain_ones(tmp_path: Path) -> None:
    """load_dataset("folder:PATH", image_size=np.int64(8)) (a sweep's grid) said 'folder
    dataset: image_size must be a positive integer, got np.int64(8)', where every other
    dataset's options and create_model take numpy's integers; it is the cache of image_size=8."""
    from vitkit.data import load_dataset

    root, data_root = tmp_path / "ds", tmp_path / "root"
    for split in ("train", "test"):
        _save(root / split / "cat" / "a.png", COLOURS["cat"])
    ds = load_dataset(f"folder:{root}", data_root=data_root, image_size=np.int64(8))
    assert (ds.image_size, ds.options["image_size"], type(ds.options["image_size"])) == (8, 8, int)
    again = load_dataset(f"folder:{root}", data_root=data_root, image_size=8, channels=np.int8(3))
    assert again.from_cache and again.cache_dir == ds.cache_dir
    with pytest.raises(ConfigError, match=r"image_size must be a positive integer, got 8\.0$"):
        load_dataset(f"folder:{root}", data_root=data_root, image_size=np.float64(8))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (16, 16), (255, 0, 0))
    im.paste((0, 0, 255), (8, 0, 16, 16))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 when shown
    (tmp_path / "t" / "train" / "a").mkdir(parents=True)
    im.save(tmp_path / "t" / "train" / "a" / "x.jpg", quality=95, exif=exif)
    img = _load(tmp_path / "t").splits["train"].images[0]
    assert img[2, 8, 2] > 200 and img[0, 8, 2] < 50  # left is now blue


def test_mixed_sizes_need_image_size(tree: Path) -> None:
    _save(tree / "train" / "dog" / "big.png", COLOURS["dog"], size=(24, 24))
    with pytest.raises(UserError, match="pass image_size=N to resize") as err:
        _load(tree)
    assert "\n" not in str(err.value)
    assert _load(tree, image_size=12).splits["train"].images.shape == (8, 3, 12, 12)


def test_non_square_needs_image_size(tmp_path: Path) -> None:
    _save(tmp_path / "r" / "train" / "a" / "x.png", (1, 2, 3), size=(20, 10))
    with pytest.raises(UserError, match="pass image_size=N to resize"):
        _load(tmp_path / "r")


def test_mixed_size_found_while_decoding(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header probe sees one file only; the odd size is caught by a decode worker."""
    monkeypatch.setattr(folder, "PROBE_FILES", 1)
    _save(tree / "train" / "yak" / "odd.png", (128,), size=(20, 20), mode="L")
    with pytest.raises(UserError, match=r"20x20 in train/yak/odd\.png.*image_size=N"):
        _load(tree)
    # the worker's message in the caller's words: the CLI's --image-size under its boundary
    from vitkit.errors import cli_words

    with (
        pytest.raises(UserError, match=r"20x20 in train/yak/odd\.png.*--image-size N"),
        cli_words(),
    ):
        _load(tree)


def test_extra_class_in_test_is_an_error(tree: Path) -> None:
    _save(tree / "test" / "ghost" / "g.png", (0, 0, 0))
    _save(tree / "test" / "zombie" / "z.png", (0, 0, 0))
    with pytest.raises(UserError, match="'ghost', 'zombie'") as err:
        _load(tree)
    assert "\n" not in str(err.value) and "no images" not in str(err.value)
    (tree / "test" / "empty").mkdir()  # an empty folder: said to be one
    with pytest.raises(UserError, match=r"'empty', 'ghost', 'zombie' \(empty: no images in it;"):
        _load(tree)


@pytest.mark.parametrize("make", ["nothing", "no-train", "no-class", "no-images"])
def test_layout_errors(tmp_path: Path, make: str) -> None:
    root = tmp_path / "ds"
    if make != "nothing":
        (root / "test" / "a").mkdir(parents=True)
    if make in ("no-class", "no-images"):
        (root / "train").mkdir()
    if make == "no-images":
        (root / "train" / "a").mkdir()
        (root / "train" / "a" / "readme.txt").write_text("hi")
    with pytest.raises(UserError) as err:
        _load(root)
    msg = str(err.value)
    assert "\n" not in msg and str(root) in msg
    # no-train: test/ alone is a layout (images to score), and its class folder holds none
    no_images = "no images" in msg or "no readable images" in msg
    assert no_images if make in ("no-images", "no-train") else ("train/<class>" in msg)
    if make == "nothing":
        with pytest.raises(UserError, match="train/<class>"):
            fingerprint(root)


def test_images_to_score_need_no_train_folder(tmp_path: Path) -> None:
    """`eval --data folder:PATH` with PATH/test/<class>/ only, or PATH/<class>/ with no split
    folders at all, said "has no train/ folder"."""
    _save(tmp_path / "only-test" / "test" / "dog" / "a.png", (1, 2, 3))
    _save(tmp_path / "only-test" / "test" / "cat" / "b.png", (4, 5, 6))
    raw = _load(tmp_path / "only-test")
    assert set(raw.splits) == {"test"} and raw.classes == ["cat", "dog"]
    assert raw.splits["test"].labels.tolist() == [0, 1]
    _save(tmp_path / "flat" / "dog" / "a.png", (1, 2, 3))
    _save(tmp_path / "flat" / "cat" / "b.png", (4, 5, 6))
    _save(tmp_path / "flat" / "cat" / "c.png", (7, 8, 9))
    flat = _load(tmp_path / "flat")
    assert set(flat.splits) == {"test"} and flat.classes == ["cat", "dog"]
    assert flat.splits["test"].labels.tolist() == [0, 0, 1]
    assert fingerprint(tmp_path / "flat") != fingerprint(tmp_path / "only-test")


def test_a_split_the_folder_lacks_is_refused(tmp_path: Path) -> None:
    """A folder loads whole whatever splits= names: splits=["val"] of a tree with no val/ was
    accepted without a word. Its splits are known once it is read: then it is refused, naming
    those it has (the cache is written, so the next try decodes nothing)."""
    from vitkit.data import load_dataset

    root = tmp_path / "ds"
    for split in ("train", "test"):
        _save(root / split / "cat" / "a.png", COLOURS["cat"])
    name, data_root = f"folder:{root}", tmp_path / "root"
    with pytest.raises(UserError, match=r"^dataset 'folder:.*' has no split 'val' \(it has: train, test\)$"):  # fmt: skip
        load_dataset(name, data_root=data_root, splits=["val"])
    with pytest.raises(UserError, match=r"has no split 'tset' .*; did you mean 'test'\?"):
        load_dataset(name, data_root=data_root, splits=["test", "tset"])
    ds = load_dataset(name, data_root=data_root, splits=["test"])
    assert ds.from_cache and list(ds) == ["train", "test"]  # whole, as before


def test_all_files_unreadable(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.jpg").write_bytes(b"")
    (tmp_path / "train" / "a" / "y.png").write_bytes(b"nope")
    with pytest.raises(UserError, match="no readable images"):
        _load(tmp_path)


def test_bad_options(tree: Path) -> None:
    with pytest.raises(ConfigError, match="channels"):
        _load(tree, channels=2)
    with pytest.raises(ConfigError, match="image_size"):
        _load(tree, image_size=0)
    # refused with the options, as for every dataset, before the folder is read (resolve_config
    # took them: its builder refused them only once the run loaded the data)
    from vitkit.train import resolve_config

    name = f"folder:{tree}"
    for options, message in [
        ({"channels": 2}, "channels must be 1 or 3, got 2"),
        ({"channels": True}, "channels must be 1 or 3, got True"),
        ({"image_size": 0}, "image_size must be a positive integer, got 0"),
        ({"image_size": "32"}, "image_size must be a positive integer, got '32' (a number in"),
    ]:
        with pytest.raises(ConfigError, match=f"^dataset '{name}' option {re.escape(message)}"):
            resolve_config(name, dataset_options=options)
    with pytest.raises(UserError, match="path"):
        build_folder(SourceContext(root=tree, options={}))


def test_fingerprint_tracks_the_tree(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import io

    def no_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the fingerprint opened {args[0]!r}")

    with monkeypatch.context() as m:  # names, sizes and mtimes only: it is computed on every
        m.setattr(builtins, "open", no_reads)  # load (only a 1.5 s bound on 60,000 CIFAR-10
        m.setattr(os, "open", no_reads)  # files said so, and only where the data is)
        m.setattr(io, "open", no_reads)  # Path.read_bytes and Path.open
        fp = fingerprint(tree)
    assert len(fp) == 16 and set(fp) <= set("0123456789abcdef")
    assert fingerprint(tree) == fp
    (tree / "train" / "cat" / "notes.txt").write_text("ignored")  # not an image
    assert fingerprint(tree) == fp

    target = tree / "train" / "cat" / "a.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched
    fp_touched = fingerprint(tree)
    assert fp_touched != fp

    _save(tree / "test" / "dog" / "new.png", COLOURS["dog"])  # added
    fp_added = fingerprint(tree)
    assert fp_added not in (fp, fp_touched)

    (tree / "train" / "zebra").mkdir()  # a new (empty) class changes the labels
    assert fingerprint(tree) != fp_added


# -- acceptance: CIFAR-10 as JPEG files (../shared/data/cifar10-jpeg.tar.gz) ----------------

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="session")
def cifar10_jpeg(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    out = tmp_path_factory.mktemp("cifar10-jpeg")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    return out / "cifar10-jpeg"


def test_cifar10_jpeg_folder(cifar10_jpeg: Path, record_property: Any) -> None:
    t0 = time.perf_counter()
    fp = fingerprint(cifar10_jpeg)
    fp_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = _load(cifar10_jpeg)
    seconds = time.perf_counter() - t0
    print(
        f"\ncifar10-jpeg: build_folder {seconds:.2f} s ({ds.info['decode_workers']} thread(s)), "
        f"fingerprint {fp_seconds:.3f} s"
    )
    record_property("cifar10_jpeg_build_seconds", round(seconds, 2))
    record_property("cifar10_jpeg_fingerprint_seconds", round(fp_seconds, 3))

    assert ds.classes == CIFAR10
    train, test = ds.splits["train"], ds.splits["test"]
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert ds.info["skipped"]["count"] == 0
    assert (ds.info["image_size"], ds.info["channels"]) == (32, 3)
    # pixels are exactly what PIL decodes (first and last file of train, in sorted order)
    first = cifar10_jpeg / "train" / "airplane" / "0000.jpg"
    last = sorted((cifar10_jpeg / "train" / "truck").iterdir())[-1]
    for i, f in ((0, first), (-1, last)):
        want = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(train.images[i], want)
    assert len(fp) == 16 and fp_seconds < 1.5  # names, sizes, mtimes only: no file reads


def test_class_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A class folder named in another encoding: one line saying so (the fingerprint raised
    UnicodeEncodeError), while image file names may be anything."""
    _save(tmp_path / "train" / "cat" / "a.png", COLOURS["cat"])
    bad = os.path.join(os.fsencode(tmp_path / "train"), b"d\xffg")
    os.makedirs(bad)
    Image.new("RGB", (16, 16), COLOURS["dog"]).save(os.fsdecode(os.path.join(bad, b"\xe9.png")))
    assert len(fingerprint(tmp_path)) == 16
    with pytest.raises(UserError, match=r"not valid UTF-8: 'd.g'"):
        _load(tmp_path)


def test_class_folders_without_images_are_refused(tree: Path, tmp_path: Path) -> None:
    """An empty train/ class folder, or one of notes, or of unreadable files, became a class with
    no image: a dead output in training. Checked on the loaded data, cache hits included."""
    from vitkit.data import load_dataset

    (tree / "train" / "broken").mkdir()
    (tree / "train" / "broken" / "x.png").write_bytes(b"\x89PNG cut short")
    with pytest.raises(UserError, match=r"no readable images: 'broken'") as e:
        load_dataset(f"folder:{tree}", data_root=tmp_path / "root", image_size=16)
    assert str(tree / "train") in str(e.value) and "\n" not in str(e.value)
    # folders of no image files at all: refused by the scan, before any image is decoded
    (tree / "train" / "zz_empty").mkdir()
    (tree / "train" / "notes").mkdir()
    (tree / "train" / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(UserError, match=r"no readable images: 'notes', 'zz_empty'"):
        _load(tree)
    # a class that only the test split lacks, or that is empty there, is fine
    for name in ("zz_empty", "notes", "broken"):
        for f in (tree / "train" / name).iterdir():
            f.unlink()
        (tree / "train" / name).rmdir()
    (tree / "test" / "dog").mkdir()
    ds = load_dataset(f"folder:{tree}", data_root=tmp_path / "root", image_size=16)
    assert ds.classes == ["cat", "dog", "owl", "yak"]
    # images to score (no train/): a folder with no images in it is no class, and no error
    _save(tree.parent / "flat" / "cat" / "a.png", (1, 2, 3))
    _save(tree.parent / "flat" / "owl" / "b.png", (4, 5, 6))
    (tree.parent / "flat" / "dog").mkdir()
    (tree.parent / "flat" / "notes").mkdir()
    (tree.parent / "flat" / "notes" / "readme.txt").write_text("hi")
    flat = _load(tree.parent / "flat")
    assert flat.classes == ["cat", "owl"] and flat.splits["test"].labels.tolist() == [0, 1]


def test_symlinked_folders_are_followed_and_loops_passed_over(tmp_path: Path) -> None:
    """A symlinked class folder is read; a link back up (``ln -s .. loop``) failed the whole
    dataset with 'Too many levels of symbolic links', and so did a link to itself."""
    from vitkit.eval.preprocess import expand_inputs

    elsewhere = tmp_path / "elsewhere"
    _save(elsewhere / "b.png", COLOURS["dog"])
    root = tmp_path / "ds"
    _save(root / "train" / "cat" / "a.png", COLOURS["cat"])
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "more").symlink_to(elsewhere)
    (root / "train" / "cat" / "loop").symlink_to(root / "train")
    (root / "train" / "cat" / "self").symlink_to(root / "train" / "cat" / "self")
    (elsewhere / "sub").mkdir()  # a cycle of two links: sub/up -> other, other/down -> elsewhere
    (elsewhere / "sub" / "up").symlink_to(tmp_path / "other")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "down").symlink_to(elsewhere)
    (elsewhere / "back").symlink_to(root / "train")  # from outside, back into the split
    (root / "train" / "cat" / "dogs").symlink_to(root / "train" / "dog")  # dog's, read as cat's
    (elsewhere / "sub" / "sib").mkdir()  # a link above the folder it is in, outside the split
    (elsewhere / "sub" / "sib" / "up").symlink_to(elsewhere / "sub")
    (root / "train" / "self").symlink_to(root / "train" / "self")  # beside the class folders
    raw = _load(root)
    assert raw.classes == ["cat", "dog"] and raw.splits["train"].labels.tolist() == [0, 1]
    # predict reads the same files from the same tree (rglob passed the symlinked folder over)
    names = [p.relative_to(root).as_posix() for p in expand_inputs([root])]
    assert names == ["train/cat/a.png", "train/dog/more/b.png"]


@pytest.mark.parametrize("target", ["split", "root", "other-class"])
def test_a_class_folder_linked_to_its_split_or_another_class_is_refused(
    tmp_path: Path, target: str
) -> None:
    """`ln -s ../train train/cat` read dog's and owl's images as cat's, without a word."""
    root = tmp_path / "ds"
    _save(root / "train" / "dog" / "1.png", COLOURS["dog"])
    _save(root / "train" / "owl" / "1.png", COLOURS["owl"])
    to = {"split": root / "train", "root": root, "other-class": root / "train" / "owl"}[target]
    (root / "train" / "cat").symlink_to(to)
    with pytest.raises(UserError, match=r"is a link to .* read twice") as err:
        _load(root)
    assert str(root / "train" / "cat") in str(err.value)


def test_a_cached_folder_with_a_class_of_no_images_is_refused(tmp_path: Path) -> None:
    """The check runs on the loaded data, a cache hit included (a cache made before it)."""
    from vitkit.data import load_dataset
    from vitkit.data.cache import load_cache, save_cache
    from vitkit.data.types import Split

    root = tmp_path / "ds"
    for c in ("cat", "dog"):
        _save(root / "train" / c / "a.png", COLOURS[c])
    ds = load_dataset(f"folder:{root}", data_root=tmp_path / "root")
    assert ds.classes == ["cat", "dog"] and not ds.from_cache
    cached = load_cache(ds.cache_dir)
    assert cached is not None
    raw, meta = cached
    train = raw.splits["train"]
    keep = train.labels == 0  # as an old vitkit cached an empty dog/
    raw.splits["train"] = Split(train.images[keep], train.labels[keep])
    save_cache(ds.cache_dir, raw, meta)
    with pytest.raises(UserError, match="no readable images: 'dog'"):
        load_dataset(f"folder:{root}", data_root=tmp_path / "root")


def test_short_names_for_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run and eval folder names: `folder:.` named a run `runs/.-vit-nano`."""
    from vitkit.data.catalog import short_name

    monkeypatch.chdir(tmp_path)
    assert short_name("folder:.") == tmp_path.name
    assert short_name(f"folder:{tmp_path}/pets/") == "pets" and short_name("cifar10") == "cifar10"


def test_a_cache_of_other_images_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking for a cache made with the size and channels left to the images, each candidate's
    tensors were read whole before its recorded size and channels were looked at; one that
    came to others (16x16 where 8 is asked) was read for nothing. Its meta.json alone is read
    now; the tensors only of the cache that is used."""
    from vitkit.data import cache, load_dataset

    root, data_root = tmp_path / "ds", tmp_path / "root"
    for split in ("train", "test"):
        _save(root / split / "cat" / "a.png", COLOURS["cat"])
        _save(root / split / "dog" / "a.png", COLOURS["dog"])
    first = load_dataset(f"folder:{root}", data_root=data_root)
    assert first.image_size == 16
    read: list[Path] = []
    real = cache.load_file
    monkeypatch.setattr(cache, "load_file", lambda path: read.append(Path(path)) or real(path))
    other = load_dataset(f"folder:{root}", data_root=data_root, image_size=8, channels=3)
    assert other.image_size == 8 and not other.from_cache
    assert read == []  # neither candidate's tensors (image_size, channels or both left)
    same = load_dataset(f"folder:{root}", data_root=data_root, image_size=16)
    assert same.from_cache and same.cache_dir == first.cache_dir
    assert sorted(p.name for p in read) == ["test.safetensors", "train.safetensors"]
    assert {p.parent for p in read} == {first.cache_dir}


def test_list_classes_are_the_loaders_without_opening_an_image(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What eval and bench check a folder's classes against the model's with, before decoding:
    the classes build_folder gives, for each layout (hidden and empty class folders included)."""
    _save(tree / "train" / ".hidden" / "a.png", COLOURS["cat"])  # hidden: no class
    flat = tmp_path / "flat"  # PATH/<class>/ with no split folders: images to score
    _save(flat / "owl" / "a.png", COLOURS["owl"])
    _save(flat / "cat" / "nested" / "a.png", COLOURS["cat"])
    (flat / "notes").mkdir()  # no image file in it: no class
    (flat / "notes" / "readme.txt").write_text("x")
    scored = tmp_path / "scored"  # val/ and test/ without train/: the classes of both
    _save(scored / "val" / "dog" / "a.png", COLOURS["dog"])
    _save(scored / "test" / "yak" / "a.png", (128,), mode="L")
    (scored / "test" / "empty").mkdir()
    trees = (tree, flat, scored)
    want = [_load(p).classes for p in trees]
    assert want == [["cat", "dog", "owl", "yak"], ["cat", "owl"], ["dog", "yak"]]

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was opened")

    monkeypatch.setattr(folder.Image, "open", no_open)
    assert [folder.list_classes(p) for p in trees] == want
    with pytest.raises(UserError, match="has no class folders"):
        folder.list_classes(tmp_path / "flat" / "notes")


def test_a_symlink_loop_is_a_folder_not_found_not_a_traceback(tmp_path: Path) -> None:
    """folder:LOOP (a link to a link to it): Path.resolve raised RuntimeError('Symlink loop')
    out of list_classes and absolute_name, a traceback from vitkit eval, bench and train where
    a missing folder says 'folder dataset not found'."""
    from vitkit.data.catalog import absolute_name
    from vitkit.errors import NotFoundError

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(NotFoundError, match="folder dataset not found"):
        folder.list_classes(tmp_path / "a")
    assert absolute_name(f"folder:{tmp_path / 'a'}").startswith(f"folder:{tmp_path}")
