from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vitkit.cli import app

runner = CliRunner()


def test_data_list_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "list", "--json", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {
        "cifar10",
        "cifar100",
        "mnist",
        "fashion-mnist",
        "mnist-mini",
        "mnist-grid",
        "mnist-layout",
        "folder:PATH",
    } <= set(rows)
    assert rows["mnist"]["splits"] == {"train": 60000, "test": 10000}
    assert rows["mnist-mini"]["cached"] is False
    # every named dataset knows its class count before it is downloaded (cifar100 showed "-")
    assert rows["cifar100"]["classes"] == 100 and rows["cifar10"]["classes"] == 10
    assert rows["folder:PATH"]["classes"] is None


def test_data_download_then_cached(tmp_path: Path) -> None:
    args = ["data", "download", "mnist-mini", "--data-root", str(tmp_path), "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    assert first["from_cache"] is False and first["splits"] == {"train": 5000, "test": 1000}
    second = json.loads(runner.invoke(app, args).stdout)
    assert second["from_cache"] is True
    listing = json.loads(
        runner.invoke(app, ["data", "list", "--json", "--data-root", str(tmp_path)]).stdout
    )
    assert {r["name"]: r["cached"] for r in listing}["mnist-mini"] is True
    # `data get` / `data inspect`: hidden aliases of download / info (the words users try first)
    got = json.loads(runner.invoke(app, ["data", "get", *args[2:]]).stdout)
    # all but the load time, which is 0.0 s or 0.01 s by how busy the machine is (it was flaky)
    assert got.pop("seconds") >= 0 and second.pop("seconds") >= 0
    assert got == second
    inspect = runner.invoke(app, ["data", "inspect", "mnist-mini", "--data-root", str(tmp_path)])
    assert inspect.exit_code == 0 and "class balance" in inspect.output


def test_data_info_json_computes_stats(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "info", "mnist-mini", "--data-root", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["stats"]["train"]["class_counts"]["7"] == 500
    assert abs(info["stats"]["train"]["mean"][0] - 0.13) < 0.01


def test_data_preview_mnist_grid_writes_png(mnist_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = runner.invoke(
        app,
        [
            "data",
            "preview",
            "mnist-grid",
            "--out",
            str(out),
            "--n",
            "9",
            "--data-root",
            str(mnist_root),
            "--no-download",
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size[0] >= 3 * 56 and img.size[1] >= 3 * 56


def test_data_preview_augmented(tmp_path: Path) -> None:
    out = tmp_path / "aug.png"
    result = runner.invoke(
        app,
        [
            "data",
            "preview",
            "mnist-mini",
            "--out",
            str(out),
            "--n",
            "4",
            "--augmented",
            "--data-root",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["n"] == 4 and doc["skipped"] == {"count": 0, "first": []} and out.is_file()
    # more than the split holds: all of them, said so (it capped silently)
    args = ["data", "preview", "mnist-mini", "--split", "test", "--out", str(out), "--n", "5000"]
    result = runner.invoke(app, [*args, "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "the test split has 1,000 images; all are shown" in result.stderr
    one = ["data", "preview", "mnist-mini", "--out", str(out), "--n", "1"]
    result = runner.invoke(app, [*one, "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert ", 1 image)" in result.output  # it read "1 images"
    result = runner.invoke(app, [*args, "--data-root", str(tmp_path), "--json"])
    assert json.loads(result.stdout)["n"] == 1000


def test_unknown_dataset_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "info", "cifar11", "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "did you mean 'cifar10'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_files_offline_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "download", "mnist", "--data-root", str(tmp_path), "--no-download"]
    )
    assert result.exit_code == 1
    assert "place it in" in result.stderr and "Traceback" not in result.output


def test_option_for_other_dataset_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "info", "mnist-mini", "--grid", "3", "--data-root", str(tmp_path)]
    )
    assert result.exit_code == 1 and "has no option --grid (options: none)" in result.stderr


def test_an_option_a_folder_dataset_does_not_take_names_it_as_typed(tmp_path: Path) -> None:
    """`data info folder:PATH --grid 3` said "dataset 'folder' has no option 'grid' (options:
    image_size, channels)": the catalog's name and the library's words, not the command's."""
    from vitkit.data import load_dataset
    from vitkit.errors import ConfigError

    name = f"folder:{tmp_path}"
    for command in ("info", "download"):
        result = runner.invoke(app, ["data", command, name, "--grid", "3", "--json"])
        assert result.exit_code == 1, result.output
        said = f"dataset '{name}' has no option --grid (options: --image-size, --channels)"
        assert json.loads(result.stdout) == {"error": said}
    result = runner.invoke(app, ["train", name, "--grid", "3", "--print-config"])
    assert result.exit_code == 1 and said in " ".join(result.stderr.split())
    # the library (a config file's dataset_options): its keys, the dataset as it was given
    with pytest.raises(ConfigError, match=rf"^dataset '{name}' has no option 'grid' \(options"):
        load_dataset(name, grid=3)


def test_image_size_on_a_fixed_size_dataset_says_what_its_images_are(tmp_path: Path) -> None:
    """`--image-size 30` on cifar10 (a plausible mistake): the line says cifar10's images are
    32x32x3 and that the option is folder:'s, not only that cifar10 has no options."""
    result = runner.invoke(
        app, ["train", "cifar10", "--image-size", "30", "--patch-size", "4", "--print-config"]
    )
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.output
    assert "has no option --image-size" in line and "its images are 32x32x3" in line
    assert "--image-size is an option of folder:PATH datasets only" in line
    assert "folder:PATH" in line
    result = runner.invoke(
        app, ["data", "info", "mnist", "--channels", "3", "--data-root", str(tmp_path)]
    )
    assert result.exit_code == 1 and "its images are 28x28x1" in result.stderr
    result = runner.invoke(  # mnist-layout's size follows --grid: no size to name
        app, ["train", "mnist-layout", "--image-size", "30", "--print-config"]
    )
    assert result.exit_code == 1 and "its images are" not in result.stderr


def test_data_preview_refuses_a_name_that_is_not_png(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "preview", "mnist-mini", "--out", str(tmp_path / "x.jpg"), "-n", "4"]
    )
    assert result.exit_code == 1 and "--out must be a .png file" in result.stderr
    assert not (tmp_path / "x.jpg").exists()


def test_folder_needs_a_path(tmp_path: Path) -> None:
    """`folder:` with no path read the current directory (a repository's PNGs) as a dataset."""
    result = runner.invoke(app, ["data", "info", "folder:", "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "folder: needs a path" in result.output


def test_info_and_preview_name_skipped_files_and_preview_finds_the_only_split(
    tmp_path: Path,
) -> None:
    """`data info` and `data preview` said nothing of unreadable files (download did); preview
    of PATH/<class>/ images to score failed on its default split, train."""
    for c in ("0", "1"):
        for i in range(2):
            (tmp_path / "digits" / c).mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "digits" / c / f"{i}.png")
    (tmp_path / "digits" / "1" / "zz.png").write_bytes(b"\x89PNG cut short")
    common = ["--data-root", str(tmp_path / "root")]
    name = f"folder:{tmp_path / 'digits'}"
    info = runner.invoke(app, ["data", "info", name, *common])
    assert info.exit_code == 0, info.output
    assert "skipped 1 unreadable image(s)" in info.output and "1/zz.png" in info.output
    out = tmp_path / "p.png"
    preview = runner.invoke(app, ["data", "preview", name, "-o", str(out), *common])
    assert preview.exit_code == 0, preview.output
    assert "skipped 1 unreadable image(s)" in preview.output and "4 images" in preview.output
    assert Image.open(out).size[0] > 0
    as_json = runner.invoke(app, ["data", "preview", name, "-o", str(out), "--json", *common])
    doc = json.loads(as_json.stdout)  # the skipped files too (the terminal alone had them)
    assert doc["split"] == "test" and doc["skipped"] == {"count": 1, "first": ["1/zz.png"]}


def test_preview_of_non_ascii_class_names_names_those_the_font_lacks(tmp_path: Path) -> None:
    """'café', 'Ελλάδα', 'Москва' were drawn as boxes in Pillow's default font; DejaVu Sans
    (from matplotlib) draws them, and the classes it cannot draw ('日本') are named."""
    pytest.importorskip("matplotlib")
    for i, c in enumerate(("café", "Ελλάδα", "Москва", "日本")):
        (tmp_path / "tree" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8), (50 * i, 0, 0)).save(tmp_path / "tree" / c / "a.png")
    out = tmp_path / "p.png"
    args = ["data", "preview", f"folder:{tmp_path / 'tree'}", "-o", str(out)]
    args += ["--data-root", str(tmp_path / "root")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())  # Rich wraps at the terminal's width
    assert "lacks characters of 1 class name(s) ('日本'): they show as boxes" in said
    assert "café" not in said and Image.open(out).size[0] > 0
    doc = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert doc["missing_glyphs"] == ["日本"] and doc["n"] == 4


def test_names_with_brackets_are_shown_as_written_not_read_as_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class folders '[bold]cat' and '[i]dog' showed in `data info`'s table as 'cat' and 'dog'
    (Rich read them as markup), and so did a folder '[red]tree' in info, download and preview."""
    monkeypatch.chdir(tmp_path)
    for c in ("[bold]cat", "[i]dog"):
        (tmp_path / "[red]tree" / "train" / c).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "[red]tree" / "train" / c / "a.png")
    common = ["folder:[red]tree", "--data-root", "root"]
    for args, shown in (
        (["data", "info", *common], ["folder:[red]tree:", "[bold]cat", "[i]dog"]),
        (["data", "download", *common], ["folder:[red]tree:", "[red]tree-"]),
        (["data", "preview", *common, "-o", "[b].png"], ["wrote [b].png"]),
        (["data", "list", "--data-root", "[x]root"], ["data root: [x]root"]),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        for text in shown:
            assert text in result.stderr, (text, result.stderr)


def test_data_cache_lists_prunes_and_clears(tmp_path: Path) -> None:
    """folder: caches piled up (one per folder path, and one more each time a folder changed)
    with no way to see or clear them but rm -rf. `data cache` lists them with their size and
    says which are stale; --prune deletes those, --clear one dataset's."""
    import os
    import shutil

    def folder(name: str, n: int) -> Path:
        for c in ("a", "b"):
            (tmp_path / name / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("L", (8, 8), 30 * i).save(tmp_path / name / c / f"{i}.png")
        return tmp_path / name

    root = ["--data-root", str(tmp_path / "root")]
    kept, gone = folder("kept", 2), folder("gone", 2)
    for name in ("mnist-mini", f"folder:{kept}", f"folder:{gone}"):
        assert runner.invoke(app, ["data", "download", name, *root]).exit_code == 0
    for f in (kept / "a").iterdir():  # the folder changes: cached again, the first cache is dead
        os.utime(f, (1, 1))
    assert runner.invoke(app, ["data", "download", f"folder:{kept}", *root]).exit_code == 0
    shutil.rmtree(gone)
    incomplete = tmp_path / "root" / "mnist-mini" / "cache" / "0123456789ab"
    incomplete.mkdir()
    (incomplete / "train.safetensors").write_bytes(b"\0" * 10)
    building = tmp_path / "root" / "mnist-mini" / "cache" / "ba9876543210"  # being written now
    building.mkdir()
    (building / "train.safetensors").write_bytes(b"\0" * 10)
    os.utime(incomplete / "train.safetensors", (1, 1))  # its build was cut off long ago
    for theirs in ("notes/cache/x1", "notes/cache/0123456789ab", "mnist-mini/cache/my-notes"):
        (tmp_path / "root" / theirs).mkdir(parents=True)

    listing = json.loads(runner.invoke(app, ["data", "cache", "--json", *root]).stdout)
    stale = {(c["dataset"], c["stale"]) for c in listing["caches"] if c["stale"]}
    assert stale == {
        (f"folder:{kept}", "superseded: its folder changed and was cached again"),
        (f"folder:{gone}", "its folder is gone"),
        ("mnist-mini", "incomplete (no meta.json)"),
    }
    assert len(listing["caches"]) == 6 and all(c["bytes"] > 0 for c in listing["caches"])
    human = runner.invoke(app, ["data", "cache", *root])
    assert human.exit_code == 0 and "3 stale (--prune deletes them)" in human.stderr

    pruned = json.loads(runner.invoke(app, ["data", "cache", "--prune", "--json", *root]).stdout)
    assert len(pruned["removed"]) == 3 and pruned["freed_bytes"] > 0
    assert {c["dataset"] for c in pruned["caches"]} == {"mnist-mini", f"folder:{kept}"}
    assert building.is_dir() and (tmp_path / "root" / "mnist-mini" / "cache" / "my-notes").is_dir()
    assert (tmp_path / "root" / "notes" / "cache" / "0123456789ab").is_dir()  # not vitkit's
    folders = [p.name.split("-")[0] for p in (tmp_path / "root" / "folder").iterdir()]
    assert folders == ["kept"]  # the gone folder's directory went with its cache
    # the current caches are read again, not rebuilt
    again = runner.invoke(app, ["data", "download", f"folder:{kept}", "--json", *root])
    assert json.loads(again.stdout)["from_cache"] is True

    cleared = runner.invoke(app, ["data", "cache", "--clear", "mnist-mini", "--json", *root])
    remaining = {c["directory"]: c["dataset"] for c in json.loads(cleared.stdout)["caches"]}
    assert set(remaining.values()) == {f"folder:{kept}", "mnist-mini"}
    assert [d for d, name in remaining.items() if name == "mnist-mini"] == [str(building)]
    left = {p.name for p in (tmp_path / "root" / "mnist-mini" / "cache").iterdir()}
    assert left == {"my-notes", building.name}  # a build under way is never cleared
    line = runner.invoke(app, ["data", "cache", "--clear", "mnist-minii", *root])
    assert line.exit_code == 1 and "did you mean 'mnist-mini'" in line.stderr


def test_bare_folder_is_one_line_not_a_key_error(tmp_path: Path) -> None:
    """`data info folder` (the name `data list` shows as folder:PATH, typed without the path)
    raised KeyError: 'path' with a traceback, in data, train and bench alike."""
    cases = (
        ["data", "cache", "--clear", "folder"],
        ["data", "cache", "--clear", "folder:"],  # was the current directory
        ["data", "info", "folder:"],
        ["data", "info", "folder"],
        ["data", "download", "folder", "--json"],
    )
    for args in cases:
        result = runner.invoke(app, [*args, "--data-root", str(tmp_path)])
        assert result.exit_code == 1, result.output
        assert "folder: needs a path" in result.stderr and result.exception is not None
        assert isinstance(result.exception, SystemExit)
    assert json.loads(result.stdout) == {
        "error": "folder: needs a path: folder:PATH, e.g. folder:~/digits"
    }
    # the catalog still lists it, spelled folder:PATH
    listing = runner.invoke(app, ["data", "list", "--json", "--data-root", str(tmp_path)])
    names = {r["name"] for r in json.loads(listing.stdout)}
    assert listing.exit_code == 0 and "folder:PATH" in names
    # and the library's listing and lookup agree: every listed name has a spec
    from vitkit.data import get_dataset_spec, list_datasets

    assert all(get_dataset_spec(n).name for n in list_datasets())


def test_preview_bad_input_is_a_json_error_and_one_line(tmp_path: Path) -> None:
    """Under --json, `-n 0` and `--out x.jpg` printed nothing on stdout (the README promises
    {"error": ...}); an --out that is a folder named its temp file
    ("Is a directory: '.x.png.abc.tmp' -> 'x.png'"); a seed torch cannot take was a traceback."""
    root = ["--data-root", str(tmp_path / "root")]
    folder = tmp_path / "grid.png"
    folder.mkdir()
    cases = {
        ("-n", "0", "-o", str(tmp_path / "p.png")): "-n must be >= 1, got 0",
        ("-o", str(tmp_path / "p.jpg")): "--out must be a .png file",
        ("-o", str(folder)): f"--out {folder} is a folder",
        ("-o", str(tmp_path / "p.png"), "--seed", str(2**70)): "--seed must be in",
    }
    for args, message in cases.items():
        result = runner.invoke(app, ["data", "preview", "mnist-mini", *args, *root, "--json"])
        assert result.exit_code == 1, result.output
        assert message in json.loads(result.stdout)["error"]
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert list(tmp_path.glob(".*.tmp")) == [] and not (tmp_path / "p.png").exists()
    assert not (tmp_path / "root").exists()  # every one refused before the dataset was built


def test_a_data_root_that_is_a_file_is_said_before_anything_is_read(tmp_path: Path) -> None:
    """--data-root FILE: `data download mnist --no-download` said "place it in FILE/mnist",
    `data cache` listed "0 cache(s)" (and `data list` nothing cached) with exit 0, and a folder: dataset was decoded in full
    before its cache could not be written."""
    root = tmp_path / "root"
    root.write_text("not a folder")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "imgs" / "a" / "x.png")
    for args, named in (
        (["data", "download", "mnist", "--no-download"], root),
        (["data", "info", "mnist-mini"], root),
        (
            ["data", "preview", f"folder:{tmp_path / 'imgs'}", "--out", str(tmp_path / "p.png")],
            root,
        ),
        (["data", "cache"], root),
        (["data", "cache", "--prune"], root),
        (["data", "list"], root),
        (["data", "info", "mnist-mini"], root / "sub"),  # a file above the data root
    ):
        result = runner.invoke(app, [*args, "--data-root", str(named), "--json"])
        assert result.exit_code == 1, (args, result.output)
        line = result.stderr.strip()
        if named == root:
            assert line == f"error: the data root {root} is a file, not a folder", line
        else:
            assert line == f"error: {root} is a file, not a folder (for the data root {named})"
        assert json.loads(result.stdout) == {"error": line.removeprefix("error: ")}
    assert not (tmp_path / "p.png").exists()


def test_os_error_on_a_folder_names_the_folder_not_the_temp_file(tmp_path: Path) -> None:
    import errno

    from vitkit.cli._common import os_error_line

    e = OSError(errno.EISDIR, "Is a directory", str(tmp_path / ".x.png.ab.tmp"), None, "x.png")
    assert os_error_line(e) == "x.png is a folder, not a file"


def test_unknown_dataset_in_capitals_suggests_the_name(tmp_path: Path) -> None:
    """`MNIST` / `CIFAR10` (torchvision's spelling) listed every dataset instead of the one
    meant: the comparison was case-sensitive."""
    for typed, meant in (("MNIST", "mnist"), ("CIFAR10", "cifar10"), ("Fashion-MNIST", "fashion")):
        result = runner.invoke(app, ["data", "info", typed, "--data-root", str(tmp_path)])
        assert result.exit_code == 1
        assert f"unknown dataset '{typed}'; did you mean '{meant}" in result.stderr


def test_data_cache_under_a_root_named_folder(tmp_path: Path) -> None:
    """With --data-root .../folder every catalog cache was read as a folder: cache of a folder
    that is gone ("folder:?"), and `--prune` deleted it."""
    root = ["--data-root", str(tmp_path / "folder")]
    assert runner.invoke(app, ["data", "download", "mnist-mini", *root]).exit_code == 0
    listing = json.loads(runner.invoke(app, ["data", "cache", "--json", *root]).stdout)
    assert [(c["dataset"], c["stale"]) for c in listing["caches"]] == [("mnist-mini", None)]
    pruned = json.loads(runner.invoke(app, ["data", "cache", "--prune", "--json", *root]).stdout)
    assert pruned["removed"] == [] and len(pruned["caches"]) == 1
    again = runner.invoke(app, ["data", "download", "mnist-mini", "--json", *root])
    assert json.loads(again.stdout)["from_cache"] is True


def test_a_cache_with_a_corrupt_meta_json_is_stale_at_once(tmp_path: Path) -> None:
    """meta.json is written last and atomically: one that cannot be read is damage, not a build
    under way, and was listed as "incomplete (no meta.json)" for an hour before --prune took it."""
    root = ["--data-root", str(tmp_path)]
    assert runner.invoke(app, ["data", "download", "mnist-mini", *root]).exit_code == 0
    (cache,) = (tmp_path / "mnist-mini" / "cache").iterdir()
    (cache / "meta.json").write_text("{not json")
    listing = json.loads(runner.invoke(app, ["data", "cache", "--json", *root]).stdout)
    assert [(c["dataset"], c["stale"]) for c in listing["caches"]] == [
        ("mnist-mini", "unreadable meta.json")
    ]
    pruned = json.loads(runner.invoke(app, ["data", "cache", "--prune", "--json", *root]).stdout)
    assert len(pruned["removed"]) == 1 and not cache.exists()


def test_a_folder_cache_with_the_old_channel_rule_is_stale(tmp_path: Path) -> None:
    """A folder: cache whose channels came from a sample of headers (no ``channels_from`` in
    its info) is rebuilt on its next use, but `data cache` listed it as current. One made with
    --channels given is still read, so it stays current."""
    from vitkit.data.cache import list_caches

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 30 * i).save(tmp_path / "imgs" / c / f"{i}.png")
    name = f"folder:{tmp_path / 'imgs'}"
    root = ["--data-root", str(tmp_path / "root")]
    # (--rebuild: --channels 1 alone reads the first, whose detected channels are 1)
    for extra in ([], ["--channels", "1", "--rebuild"]):
        assert runner.invoke(app, ["data", "download", name, *extra, *root]).exit_code == 0
    for meta_path in (tmp_path / "root").glob("folder/*/cache/*/meta.json"):
        meta = json.loads(meta_path.read_text())  # as the old detection wrote it
        del meta["info"]["channels_from"]
        meta_path.write_text(json.dumps(meta))

    old = "channels chosen from a sample of headers: rebuilt on next use"
    listing = json.loads(runner.invoke(app, ["data", "cache", "--json", *root]).stdout)
    stale = {c["options"]["channels"]: c["stale"] for c in listing["caches"]}
    assert stale == {1: None, None: old}  # was None for both
    by_lib = [e.stale for e in list_caches(tmp_path / "root") if e.options["channels"] is None]
    assert by_lib == [old]
    human = runner.invoke(app, ["data", "cache", *root])
    said = " ".join(human.stderr.split())  # Rich wraps at the terminal's width
    assert human.exit_code == 0 and "1 stale (--prune deletes them)" in said
    pruned = json.loads(runner.invoke(app, ["data", "cache", "--prune", "--json", *root]).stdout)
    assert [c["stale"] for c in pruned["removed"]] == [old]
    assert [c["options"]["channels"] for c in pruned["caches"]] == [1]


def test_a_rebuild_of_a_damaged_cache_reads_as_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild over a cache with a damaged meta.json removes that meta.json first: while its
    splits are written it is a build under way (``--prune`` keeps it), not stale damage."""
    import vitkit.data.cache as cache_module
    from vitkit import load_dataset

    root = ["--data-root", str(tmp_path)]
    assert runner.invoke(app, ["data", "download", "mnist-mini", *root]).exit_code == 0
    (cache,) = (tmp_path / "mnist-mini" / "cache").iterdir()
    (cache / "meta.json").write_text("{not json")

    def cut_off(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cut off before meta.json")

    monkeypatch.setattr(cache_module, "write_json", cut_off)
    with pytest.raises(RuntimeError):  # the rebuild stops before its commit marker
        load_dataset("mnist-mini", data_root=tmp_path)
    monkeypatch.undo()
    listing = json.loads(runner.invoke(app, ["data", "cache", "--json", *root]).stdout)
    assert [(c["stale"], c["complete"]) for c in listing["caches"]] == [(None, False)]
    runner.invoke(app, ["data", "cache", "--prune", *root])
    assert (cache / "train.safetensors").is_file()  # a build under way is never pruned
