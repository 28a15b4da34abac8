"""The `vitkit` command line: a thin layer over the library, one module per command group."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from vitkit import __version__
from vitkit.cli import data, models
from vitkit.cli.bench import bench_command
from vitkit.cli.eval import eval_command, explain_command, predict_command
from vitkit.cli.export import export_command
from vitkit.cli.train import train_command

app = typer.Typer(
    name="vitkit",
    help="Vision Transformers on small and mid-size image datasets: data, train, eval, export, bench.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(models.app, name="models")
app.add_typer(data.app, name="data")
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("predict")(predict_command)
app.command("explain")(explain_command)
app.command("export")(export_command)

app.command("bench")(bench_command)


def _version(value: bool) -> None:
    if value:
        print(f"vitkit {__version__}")  # stdout, as every tool does: $(vitkit --version)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Vision Transformers on small and mid-size image datasets."""


def _reflow(group: typer.Typer) -> None:
    """Docstrings are wrapped at 100 columns in the source and Typer keeps those line breaks, so
    Rich's own wrapping at the terminal's width left ragged lines. Join each paragraph's lines."""
    for info in group.registered_commands:
        fn = info.callback
        if fn is not None and fn.__doc__:
            paragraphs = inspect.cleandoc(fn.__doc__).split("\n\n")
            fn.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow(sub.typer_instance)


_reflow(app)


def main() -> None:
    app()
