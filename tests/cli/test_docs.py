"""docs/cli.md is generated from the Typer app (`nox -s docs`): it must list every command and
every option the app has, and nothing the app no longer has.

The check is on names, not bytes, so that a newer Typer formatting the page a little differently
does not fail it; a renamed, added or removed option or command does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from vitkit.cli import app

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
STALE = "docs/cli.md is stale: run `nox -s docs`"
# an option's own line on the page: "* `-m, --model <str>`: ..." or "* `--aug / --no-aug`: ..."
OPTION_LINE = re.compile(r"^\* `(-[^`]*)`:", re.M)
HEADING = re.compile(r"^#{2,3} `(vitkit [^`]*)`$", re.M)


def _commands(cmd: Any, path: str, ctx: Any) -> dict[str, set[str]]:
    """Command path -> the option flags it accepts, for the whole tree (hidden commands, the
    aliases such as `data get`, included, as the page has them; hidden options left out)."""
    help_option = cmd.get_help_option(ctx)  # click adds --help outside cmd.params
    flags = {
        f
        for p in [*cmd.params, *([help_option] if help_option else [])]
        if not getattr(p, "hidden", False)
        for f in (*p.opts, *p.secondary_opts)
        if f.startswith("-")
    }
    out = {path: flags}
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                out |= _commands(
                    sub, f"{path} {name}", typer.Context(sub, info_name=name, parent=ctx)
                )
    return out


def _sections(text: str) -> dict[str, str]:
    """Command path -> its part of the page; the root's is everything above the first command."""
    heads = list(HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    root = text[: heads[0].start()] if heads else text
    return {"vitkit": root} | {
        h.group(1): text[h.end() : e] for h, e in zip(heads, ends, strict=True)
    }


@pytest.fixture(scope="module")
def live() -> dict[str, set[str]]:
    root = typer.main.get_command(app)
    return _commands(root, "vitkit", typer.Context(root, info_name="vitkit"))


@pytest.fixture(scope="module")
def page() -> dict[str, str]:
    if not PAGE.is_file():
        pytest.fail(f"{PAGE} is missing: run `nox -s docs`")
    return _sections(PAGE.read_text(encoding="utf-8"))


def test_the_tree_is_the_real_one(live: dict[str, set[str]]) -> None:
    # the walk itself must see the app, or the checks below would pass on nothing
    assert {"vitkit train", "vitkit export", "vitkit bench", "vitkit data get"} <= set(live)
    assert {"--optimize", "--no-optimize", "--int8"} <= live["vitkit export"]
    assert {"-m", "--model"} <= live["vitkit train"]


def test_every_command_has_its_section_and_no_more(
    live: dict[str, set[str]], page: dict[str, str]
) -> None:
    assert set(page) == set(live), STALE


def test_every_option_is_on_the_page_and_none_that_is_gone(
    live: dict[str, set[str]], page: dict[str, str]
) -> None:
    for path, flags in live.items():
        shown = {
            f
            for line in OPTION_LINE.findall(page[path])
            for f in re.findall(r"(?<![\w-])(--?[a-z0-9][a-z0-9-]*)", line)
        }
        assert shown == flags, (
            f"{STALE} ({path}: missing {sorted(flags - shown)}, gone {sorted(shown - flags)})"
        )


def _help_texts(cmd: Any, path: str) -> list[tuple[str, str]]:
    """(where, text) for every command's and option's help in the tree."""
    out = [(path, cmd.help or "")]
    out += [(f"{path} {p.name}", getattr(p, "help", None) or "") for p in cmd.params]
    for name, sub in getattr(cmd, "commands", {}).items():
        out += _help_texts(sub, f"{path} {name}")
    return out


def test_no_help_text_has_brackets_that_rich_reads_as_markup() -> None:
    """`data preview --split` said "Split to sample from.  [default: train, else the dataset's
    first]"; Rich read the bracket as a style tag and --help (and docs/cli.md) showed only
    "Split to sample from.". A default that is not a value goes in show_default."""
    from rich.markup import render

    texts = _help_texts(typer.main.get_command(app), "vitkit")
    lost = [
        (where, t) for where, t in texts if "[" in t and render(t).plain.count("[") < t.count("[")
    ]
    assert lost == []
    page = PAGE.read_text()
    assert "Split to sample from.  [default: (train, else the first split)]" in page
