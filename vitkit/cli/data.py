"""`vitkit data`: list, download (materialise), inspect and preview datasets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vitkit.cli._common import (
    DataRoot,
    Json,
    check_dataset_flags,
    console,
    emit_json,
    progress_bar,
    status,
    user_errors,
)
from vitkit.errors import UserError, check_seed, plural

if TYPE_CHECKING:
    from vitkit.data.catalog import Dataset

app = typer.Typer(
    help="Datasets: list the catalog, download (and cache), info (inspect), preview, cache.",
    no_args_is_help=True,
)

Name = Annotated[
    str, typer.Argument(help="Dataset: a name from `vitkit data list` or folder:PATH.")
]
ImageSizeOpt = Annotated[
    int | None, typer.Option("--image-size", help="Resize folder: images to this side (pixels).")
]
ChannelsOpt = Annotated[
    int | None,
    typer.Option("--channels", help="folder: 1 (grayscale) or 3 (RGB); default: detect."),
]
GridOpt = Annotated[int | None, typer.Option("--grid", help="mnist-layout: cells per side (2-4).")]
NoDownload = Annotated[
    bool, typer.Option("--no-download", help="Never touch the network; use local files only.")
]


def options(
    name: str, image_size: int | None, channels: int | None, grid: int | None
) -> dict[str, Any]:
    """The dataset options given, each one the dataset ``name`` takes."""
    given = {
        k: v
        for k, v in dict(image_size=image_size, channels=channels, grid=grid).items()
        if v is not None
    }
    check_dataset_flags(name, given)
    return given


def open_dataset(
    name: str, data_root: Path | None, opts: dict[str, Any], *, quiet: bool, download: bool = True
) -> Dataset:
    from vitkit.data import load_dataset  # here, not at import: `--help` needs no torch

    with progress_bar(not quiet) as progress:
        ds = load_dataset(name, data_root=data_root, download=download, progress=progress, **opts)
    if not quiet:
        _note_skipped(ds)
    return ds


def _note_skipped(ds: Dataset) -> None:
    """The files a folder: dataset passed over, on the terminal (JSON has ``info.skipped``)."""
    if skipped := ds.skipped_note():
        console.print(f"[yellow]{escape(skipped)}[/]", soft_wrap=True)


@app.command("list")
@user_errors
def list_(data_root: DataRoot = None, json_: Json = False) -> None:
    """Every dataset in the catalog: classes, image size, split sizes, cached or not."""
    from vitkit.data import get_dataset_spec, list_datasets
    from vitkit.data.catalog import check_data_root, default_data_root, is_cached

    check_data_root(Path(data_root or default_data_root()).expanduser())  # not "none cached"
    rows: list[dict[str, Any]] = []
    for name in list_datasets():
        spec = get_dataset_spec(name)
        rows.append(
            {
                "name": "folder:PATH" if name == "folder" else name,
                "description": spec.description,
                "classes": len(spec.classes) if spec.classes else None,
                "image_size": spec.image_size,
                "channels": spec.channels,
                "outputs": spec.num_outputs,
                "splits": spec.splits,
                "cached": name != "folder" and is_cached(name, data_root=data_root),
            }
        )
    if json_:
        emit_json(rows)
        return
    root = data_root or default_data_root()
    table = Table(title=f"vitkit datasets (data root: {escape(str(root))})")
    for col in ("name", "classes", "size", "outputs", "train", "test", "cached"):
        table.add_column(col, justify="left" if col == "name" else "right", no_wrap=True)
    for r in rows:
        size = f"{r['image_size']}x{r['image_size']}x{r['channels']}" if r["image_size"] else None
        if size is None:  # chosen at load time: any size for folders, by --grid for layouts
            size = "any" if r["name"].startswith("folder") else "by options"
        table.add_row(
            r["name"],
            str(r["classes"] or "-"),
            size,
            str(r["outputs"]),
            *(f"{r['splits'][s]:,}" if s in r["splits"] else "-" for s in ("train", "test")),
            "yes" if r["cached"] else "",
        )
    console.print(table)


@app.command()
@app.command("get", hidden=True)  # the words users reach for first
@user_errors
def download(
    name: Name,
    data_root: DataRoot = None,
    image_size: ImageSizeOpt = None,
    channels: ChannelsOpt = None,
    grid: GridOpt = None,
    no_download: NoDownload = False,
    rebuild: Annotated[bool, typer.Option(help="Rebuild the cache from the source files.")] = False,
    json_: Json = False,
) -> None:
    """Fetch a dataset (checksums verified) and cache it as uint8 tensors for fast loading."""
    from vitkit.data import load_dataset

    t0 = time.perf_counter()
    with progress_bar(not json_) as progress:
        ds = load_dataset(
            name,
            data_root=data_root,
            download=not no_download,
            progress=progress,
            rebuild=rebuild,
            **options(name, image_size, channels, grid),
        )
    info = {
        **ds.describe(),
        "from_cache": ds.from_cache,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if json_:
        emit_json(info)
        return
    sizes = ", ".join(f"{k} {v:,}" for k, v in info["splits"].items())
    how = "already cached" if ds.from_cache else "cached"
    status(
        f"[green]✓[/] {escape(name)}: {sizes} images · {ds.image_size}x{ds.image_size}x{ds.channels}"
        f" · {ds.num_classes} classes · {how} in {info['seconds']} s"
    )
    _note_skipped(ds)
    console.print(f"cached in: {escape(str(ds.cache_dir))}")


@app.command()
@user_errors
def cache(
    data_root: DataRoot = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Delete the stale caches: of folders that are gone, superseded (the folder "
            "changed and was cached again) or due a rebuild (channels chosen the old way), "
            "incomplete, or with an unreadable meta.json.",
        ),
    ] = False,
    clear: Annotated[
        str | None,
        typer.Option(
            "--clear",
            help="Delete every cache of this dataset (a name or folder:PATH); its downloaded "
            "files stay, and the next use rebuilds it.",
        ),
    ] = None,
    json_: Json = False,
) -> None:
    """What is cached under the data root, its size on disk, and which caches are stale."""
    from vitkit.data import get_dataset_spec
    from vitkit.data.cache import clean_caches
    from vitkit.data.catalog import absolute_name, check_data_root, default_data_root

    root = Path(data_root or default_data_root()).expanduser()
    check_data_root(root)  # a file: not "0 cache(s)", as if the caches were gone
    if clear is not None:
        get_dataset_spec(clear)  # an unknown name: the registry's error, with suggestions
    kept, removed = clean_caches(root, stale=prune, dataset=clear)
    if json_:
        emit_json(
            {
                "data_root": str(root),
                "caches": [e.to_json() for e in kept],
                "removed": [e.to_json() for e in removed],
                "bytes": sum(e.bytes for e in kept),
                "freed_bytes": sum(e.bytes for e in removed),
            }
        )
        return
    if clear is not None and not any(e.dataset == absolute_name(clear) for e in removed):
        console.print(f"[yellow]note:[/] no cache of {escape(clear)} under {escape(str(root))}")
    if removed:
        freed = sum(e.bytes for e in removed) / 1e6
        status(f"[green]✓[/] removed {len(removed)} cache(s), {freed:,.1f} MB")
    table = Table(title=f"vitkit data cache ({escape(str(root))})")
    table.add_column("dataset", overflow="fold")
    table.add_column("options")
    table.add_column("MB", justify="right")
    table.add_column("")
    for e in kept:
        opts = ", ".join(
            f"{k}={v}"
            for k, v in e.options.items()
            if k not in ("path", "fingerprint") and v is not None
        )
        note = f"[yellow]stale: {escape(e.stale)}[/]" if e.stale else ""
        note = "being built (no meta.json yet)" if e.building else note
        table.add_row(escape(e.dataset), escape(opts), f"{e.bytes / 1e6:,.1f}", note)
    console.print(table)
    stale = [e for e in kept if e.stale]
    total = sum(e.bytes for e in kept) / 1e6
    tail = f"; {len(stale)} stale (--prune deletes them)" if stale else ""
    console.print(f"{len(kept)} cache(s), {total:,.1f} MB{tail}")


@app.command()
@app.command("inspect", hidden=True)
@user_errors
def info(
    name: Name,
    data_root: DataRoot = None,
    image_size: ImageSizeOpt = None,
    channels: ChannelsOpt = None,
    grid: GridOpt = None,
    no_download: NoDownload = False,
    json_: Json = False,
) -> None:
    """Split sizes, class balance and per-channel mean/std, computed from the data."""
    ds = open_dataset(
        name,
        data_root,
        options(name, image_size, channels, grid),
        quiet=json_,
        download=not no_download,
    )
    stats = ds.stats()
    if json_:
        emit_json({**ds.describe(), "stats": stats})
        return
    console.print(
        f"[bold]{escape(name)}[/]: {ds.image_size}x{ds.image_size}, {ds.channels} channel(s), "
        f"{ds.num_classes} classes, {ds.num_outputs} label(s) per image"
    )
    table = Table(title="class balance")
    table.add_column("class")
    for split in stats:
        table.add_column(split, justify="right")
    for c in ds.classes:
        table.add_row(escape(c), *(f"{stats[s]['class_counts'][c]:,}" for s in stats))
    table.add_row("[bold]images[/]", *(f"{stats[s]['size']:,}" for s in stats))
    table.add_row("[bold]mean[/]", *(", ".join(map(str, stats[s]["mean"])) for s in stats))
    table.add_row("[bold]std[/]", *(", ".join(map(str, stats[s]["std"])) for s in stats))
    console.print(table)


@app.command()
@user_errors
def preview(
    name: Name,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    split: Annotated[
        str | None,
        typer.Option(help="Split to sample from.", show_default="train, else the first split"),
    ] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Number of samples.")] = 64,
    augmented: Annotated[bool, typer.Option(help="Show them after training augmentation.")] = False,
    seed: Annotated[int, typer.Option(help="Which samples (and augmentations).")] = 0,
    data_root: DataRoot = None,
    image_size: ImageSizeOpt = None,
    channels: ChannelsOpt = None,
    grid: GridOpt = None,
    no_download: NoDownload = False,
    json_: Json = False,
) -> None:
    """Write a labelled grid of samples to a PNG file."""
    from vitkit.artifact import atomic_write
    from vitkit.data.preview import make_preview, missing_glyphs

    # UserError, not fail(): the boundary also prints {"error": ...} under --json
    if n < 1:
        raise UserError(f"-n must be >= 1, got {n}")
    if out.suffix.lower() != ".png":  # a PNG under another name would mislead every viewer
        raise UserError(f"--out must be a .png file, got {out}")
    if out.is_dir():  # before the dataset is loaded, and not named by its temp file
        raise UserError(f"--out {out} is a folder; name a .png file")
    check_seed("--seed", seed)  # before the dataset is loaded (make_preview checks it too)
    ds = open_dataset(
        name,
        data_root,
        options(name, image_size, channels, grid),
        quiet=json_,
        download=not no_download,
    )
    if split is None:  # a folder of images to score has a test split alone
        split = "train" if "train" in ds.splits else next(iter(ds.splits))
    image = make_preview(ds, split=split, n=n, augmented=augmented, seed=seed)
    shown = min(n, len(ds[split]))  # the split's size caps it
    boxed = missing_glyphs(ds.classes)  # class names whose labels show boxes ('日本')
    with atomic_write(out) as f:
        image.save(f, format="PNG")
    if json_:
        # the files a folder: dataset passed over, as `data info --json` has them (info.skipped)
        skipped = ds.info.get("skipped") or {"count": 0, "first": []}
        doc = {"out": str(out), "split": split, "n": shown, "size": list(image.size)}
        emit_json({**doc, "skipped": skipped, "missing_glyphs": boxed})
    else:
        if shown < n:
            console.print(
                f"[yellow]note:[/] the {escape(split)} split has {shown:,} images; all are shown"
            )
        if boxed:
            first = ", ".join(repr(c) for c in boxed[:3]) + (", ..." if len(boxed) > 3 else "")
            console.print(
                f"[yellow]note:[/] the label font lacks characters of {len(boxed):,} class "
                f"name(s) ({escape(first)}): they show as boxes"
            )
        console.print(
            f"wrote {escape(str(out))} ({image.size[0]}x{image.size[1]}, {shown:,} {plural(shown, 'image')})"
        )
