from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.loader import DeviceLoader
from vitkit.data.sources.folder import _read
from vitkit.data.types import Split
from vitkit.errors import UserError
from vitkit.eval.preprocess import expand_inputs, normalize, read_image, to_uint8


def _pattern(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB pattern with some noise (resizing it exercises the antialiasing filter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    rgb = _pattern(500, 300)
    out = {
        "gray28.png": Image.fromarray(rgb[:28, :28, 0]),
        "rgba.png": Image.fromarray(np.dstack([rgb[:40, :40], np.full((40, 40), 200, np.uint8)])),
        "wide.jpg": Image.fromarray(rgb),
        "big.jpg": Image.fromarray(np.tile(rgb, (4, 4, 1))),  # 2000x1200: JPEG draft mode
        "palette.png": Image.fromarray(rgb[:64, :64]).convert("P"),
        "gray16.png": Image.fromarray(rgb[:32, :32, 0].astype(np.uint16) * 257),
        "photo.webp": Image.fromarray(rgb[:100, :150]),
        "photo.bmp": Image.fromarray(rgb[:30, :20]),
    }
    paths = {}
    for name, img in out.items():
        img.save(d / name, **({"quality": 90} if name.endswith(".jpg") else {}))
        paths[name] = d / name
    return paths


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
def test_files_decode_exactly_as_the_folder_loader(
    files: dict[str, Path], channels: int, size: int
) -> None:
    for name, path in files.items():
        x, original, mode = read_image(path, channels=channels, size=size)
        want = torch.from_numpy(_read(path, channels, size, True)[0].transpose(2, 0, 1).copy())
        assert x.dtype == torch.uint8 and x.shape == (channels, size, size), name
        assert torch.equal(x, want), name
        with Image.open(path) as im:
            assert original == im.size and mode == im.mode


def test_pil_images_any_mode(files: dict[str, Path]) -> None:
    for name in ("gray28.png", "rgba.png", "palette.png", "gray16.png"):
        with Image.open(files[name]) as im:
            x = to_uint8(im, channels=1, size=28)
        assert torch.equal(
            x, torch.from_numpy(_read(files[name], 1, 28, True)[0].copy()).permute(2, 0, 1)
        )
    # a 28x28 grayscale image at the model's size is not resampled at all
    with Image.open(files["gray28.png"]) as im:
        assert torch.equal(to_uint8(im, channels=1, size=28)[0], torch.from_numpy(np.array(im)))


def test_normalize_is_the_training_loaders_arithmetic() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    loader = DeviceLoader(
        Split(images, torch.zeros(10, dtype=torch.int64)),
        batch_size=10,
        mean=mean,
        std=std,
        num_classes=2,
        shuffle=False,
        drop_last=False,
    )
    (x, _), *_ = list(loader)
    assert torch.equal(normalize(images, mean, std), x)  # bit for bit
    ref = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(x, ref, atol=1e-5)


def test_corrupt_missing_and_directory_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path, message in (
        (bad, "cannot read"),
        (text, "not an image file"),
        (tmp_path / "missing.png", "no such file"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(UserError, match=message):
            read_image(path, channels=1, size=28)


def test_expand_inputs(tmp_path: Path, files: dict[str, Path]) -> None:
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    for name in ("b.png", "a.JPG", "sub/c.webp", ".hidden/d.png", ".e.png"):
        (d / name).write_bytes(b"x")
    (d / "readme.txt").write_text("skip me")
    got = expand_inputs([files["rgba.png"], d])
    assert got == [files["rgba.png"], d / "a.JPG", d / "b.png", d / "sub" / "c.webp"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files in"):
        expand_inputs([tmp_path / "empty"])
    assert expand_inputs([tmp_path / "missing.png"]) == [tmp_path / "missing.png"]  # read later
    # a glob pattern (quoted on a shell, or Windows, which expands none): its matches, sorted
    assert expand_inputs([str(d / "*.png"), d / "s*"]) == [d / "b.png", d / "sub" / "c.webp"]
    with pytest.raises(UserError, match="no files match"):
        expand_inputs([str(d / "*.gif")])
    # "**" matches the folder, its subfolders and its files: each image once, no readme.txt
    assert expand_inputs([str(d / "**")]) == [d / "a.JPG", d / "b.png", d / "sub" / "c.webp"]
    assert expand_inputs([str(d / "*")]) == [d / "a.JPG", d / "b.png", d / "sub" / "c.webp"]
    with pytest.raises(UserError, match="no image files match"):
        expand_inputs([str(d / "*.txt")])
