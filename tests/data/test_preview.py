"""vitkit/data/preview.py: the labelled grid, and the font its labels are drawn in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from vitkit.data import load_dataset
from vitkit.data import preview as preview_mod
from vitkit.data.preview import make_preview

NAMES = ("café", "Ελλάδα", "Москва", "日本")


def _ink(font: Any, text: str) -> bytes:
    im = Image.new("L", (40, 24))
    ImageDraw.Draw(im).text((0, 0), text, fill=255, font=font)
    return im.tobytes()


@pytest.fixture
def fresh_font() -> Any:
    preview_mod.label_font.cache_clear()
    yield
    preview_mod.label_font.cache_clear()


def test_non_ascii_class_names_are_drawn_in_dejavu_sans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_font: None
) -> None:
    """Labels were drawn in Pillow's default font (ASCII and little more): 'café', 'Ελλάδα',
    'Москва' came out as boxes. matplotlib's DejaVu Sans draws them; '日本' it lacks, and says."""
    pytest.importorskip("matplotlib")
    for i, c in enumerate(NAMES):
        (tmp_path / "tree" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "tree" / c / "a.png")
    ds = load_dataset(f"folder:{tmp_path / 'tree'}", data_root=tmp_path / "root", image_size=8)
    drawn: list[tuple[str, Any]] = []
    text = ImageDraw.ImageDraw.text

    def record(self: ImageDraw.ImageDraw, xy: Any, label: str, *a: Any, **kw: Any) -> None:
        drawn.append((label, kw["font"]))
        text(self, xy, label, *a, **kw)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    image = make_preview(ds, split="test", n=4)
    monkeypatch.undo()
    assert image.size[0] > 0 and sorted(t for t, _ in drawn) == sorted(NAMES)
    for label, font in drawn:
        assert font.getname()[0] == "DejaVu Sans"
        box = _ink(font, "\U0010fffd")  # the font's 'missing' box
        boxed = [ch for ch in label if _ink(font, ch) == box]
        assert boxed == (["日", "本"] if label == "日本" else []), label
    assert preview_mod.missing_glyphs(NAMES) == ["日本"]
    assert preview_mod.missing_glyphs(["0", "empty", "a b · c"]) == []


def test_without_matplotlib_the_default_font_and_its_boxes_are_named(
    monkeypatch: pytest.MonkeyPatch, fresh_font: None
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert preview_mod.label_font().getname() == ImageFont.load_default().getname()
    assert preview_mod.missing_glyphs([*NAMES, "airplane"]) == list(NAMES)


def test_importing_vitkit_data_imports_no_matplotlib() -> None:
    code = (
        "import sys, vitkit.data, vitkit.data.preview; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pillows_bitmap_font_names_the_classes_it_cannot_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_font: None
) -> None:
    """Pillow built without FreeType has a Latin-1 bitmap font as its default (and
    ImageFont.truetype raises ImportError, so label_font falls back to it): drawing the
    U+10FFFD probe raised UnicodeEncodeError, so every preview failed, ASCII class names too."""
    monkeypatch.setattr(ImageFont, "truetype", _no_freetype)
    monkeypatch.setattr(ImageFont, "load_default", ImageFont.load_default_imagefont)
    assert not isinstance(preview_mod.label_font(), ImageFont.FreeTypeFont)
    assert preview_mod.missing_glyphs(["airplane", "a b", "日本", "Москва"]) == ["日本", "Москва"]
    assert make_preview(load_dataset("mnist-mini"), split="test", n=4).size[0] > 0
    for c in NAMES:  # labels it cannot take at all are drawn with '?' (they failed the preview)
        (tmp_path / "tree" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "tree" / c / "a.png")
    ds = load_dataset(f"folder:{tmp_path / 'tree'}", data_root=tmp_path / "root", image_size=8)
    assert make_preview(ds, split="test", n=4).size[0] > 0


def _no_freetype(*args: Any, **kwargs: Any) -> Any:
    raise ImportError("The _imagingft C module is not installed")
