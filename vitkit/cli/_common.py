"""What every command shares: the consoles, the error boundary, and the Annotated option types."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from vitkit.errors import UserError, check_seed, cli_words, first_line

if TYPE_CHECKING:
    from vitkit.data.types import ProgressFn

# human output (tables, progress) goes to stderr; stdout carries only --json documents
console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red error line and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """The CLI's error boundary: a ``UserError`` becomes one red line and exit code 1, and so
    does an operating-system error on a named file (a data root or ``--out`` that is a file, a
    folder that cannot be created or written): the user fixes those, not us. An OSError with no
    file name keeps its traceback. Ctrl-C outside a training loop (which checkpoints on its own)
    says "interrupted" and exits 130, as a shell expects; Typer exits 130 without a word.
    Under ``--json`` the error is also stdout's one JSON document, ``{"error": "..."}`` (for
    Ctrl-C ``{"error": "interrupted"}``), so a script piping it to ``jq`` reads why instead of
    nothing (unless the command printed its document before it failed: predict's per-file
    reasons, say). Inside it the library names settings by their flags (``--int8``, not
    ``int8``: ``vitkit.errors.setting``).

    Every path argument and option has ``~`` expanded here, as a shell does an unquoted one:
    ``'~/runs/x'`` quoted, from a script or ``$VITKIT_DATA`` is the same path."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        emitted = _emitted[0]
        kwargs = {k: home_expanded(v) for k, v in kwargs.items()}

        def error(message: str) -> typer.Exit:
            if kwargs.get("json_") and _emitted[0] == emitted and _rank0():  # stdout has none yet
                emit_json({"error": message})
            return fail(message)

        try:
            with cli_words():  # the library's messages name --flags, not parameters
                return fn(*args, **kwargs)
        except UserError as e:
            raise error(str(e)) from None
        except KeyboardInterrupt:
            if kwargs.get("json_") and _emitted[0] == emitted and _rank0():
                emit_json({"error": "interrupted"})  # stdout has none yet: a script reads why
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except OSError as e:
            if e.filename is None:
                raise
            raise error(os_error_line(e)) from None
        except (MemoryError, RuntimeError) as e:  # torch's OutOfMemoryError is a RuntimeError
            if not isinstance(e, MemoryError) and not _out_of_memory(e):
                raise
            raise error(f"out of memory: {first_line(e)}") from None

    return wrapper  # type: ignore[return-value]


def _rank0() -> bool:
    """Whether this is rank 0 under torchrun (or no torchrun): one JSON document in all."""
    return os.environ.get("RANK", "0") == "0"


def home_expanded(value: Any) -> Any:
    """A ``Path`` (or a list of them) with a leading ``~`` or ``~user`` expanded; anything else,
    and a ``~user`` with no such user, as it is."""
    if isinstance(value, Path):
        return Path(os.path.expanduser(value))
    if isinstance(value, list):
        return [home_expanded(v) if isinstance(v, Path) else v for v in value]
    return value


def _out_of_memory(e: BaseException) -> bool:
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)


def os_error_line(e: OSError) -> str:
    """One line for an OSError on a file: ``Permission denied: 'runs/x'``; a file where a folder
    is needed is named as such (``grid.png is a file, not a folder (for grid.png/x.png)``)."""
    import errno
    from pathlib import Path

    if e.errno in (errno.EEXIST, errno.ENOTDIR) and e.filename2 is None:
        target = Path(str(e.filename))
        blocker = next((p for p in (target, *target.parents) if p.is_file()), None)
        if blocker is not None:
            via = "" if blocker == target else f" (for {target})"
            return f"{blocker} is a file, not a folder{via}"
    if e.errno == errno.EISDIR:  # os.replace(temp, folder) names the temp file first
        return f"{e.filename2 if e.filename2 is not None else e.filename} is a folder, not a file"
    what = e.strerror or type(e).__name__
    names = " -> ".join(repr(str(f)) for f in (e.filename, e.filename2) if f is not None)
    return f"{what}: {names}"


_emitted = [0]  # documents emit_json has printed in this process (the error boundary reads it)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (and nothing else)."""
    from vitkit.artifact import strict_json

    _emitted[0] += 1
    sys.stdout.write(json.dumps(strict_json(obj), indent=2, default=str, allow_nan=False) + "\n")
    sys.stdout.flush()


def status(line: str) -> None:
    """Print a line of " · "-separated fields (Rich markup within a field), wrapped only at the
    separators: at the terminal's width a value is never split from its unit or label
    ("0.78 s", "top-1 97.80%"). Continuation lines are indented two spaces more."""
    from rich.text import Text

    lead = len(line) - len(line.lstrip(" "))
    fields = [Text.from_markup(f) for f in line.strip(" ").split(" · ")]
    current = Text(" " * lead) + fields[0]
    for field in fields[1:]:
        if current.cell_len + 3 + field.cell_len <= console.width:
            current.append(" · ")
            current.append_text(field)
        else:
            console.print(current)
            current = Text(" " * (lead + 2)) + field
    console.print(current)


def live_output() -> bool:
    """Whether stderr can show a live display (a bar, a line redrawn in place): an interactive
    terminal (not TERM=dumb, not TTY_INTERACTIVE=0), and a real one (FORCE_COLOR in a pipe gets
    colours, not redrawn frames in its log)."""
    isatty = getattr(console.file, "isatty", None)
    return console.is_interactive and bool(isatty and isatty())


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """A Rich progress bar on stderr driven by the library's ``progress(desc, done, total)``.
    Only on a terminal: in a pipe or a log file a bar is never drawn, and Rich would still leave
    a blank line where it stood."""
    if not enabled or not live_output():
        yield _no_progress
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(description: str, completed: int, total: int | None) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=completed, total=total)

        yield update


def _no_progress(description: str, completed: int, total: int | None) -> None:
    """The progress callback that shows nothing (vitkit.data.types.no_progress, without
    importing the data package, and torch with it, when the CLI starts)."""


# -- shared options ----------------------------------------------------------------------------
Json = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")
]
DataRoot = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        envvar="VITKIT_DATA",
        help="Where datasets live (default: $VITKIT_DATA, else ~/.cache/vitkit/data).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (data order, init, augmentation).")]

_M = "Model"
ImageSize = Annotated[int | None, typer.Option(help="Input side in pixels.", rich_help_panel=_M)]
PatchSize = Annotated[
    int | None,
    typer.Option(
        help="Patch side in pixels (default: 4 for 28 and 32 px, 16 for 224 px).",
        rich_help_panel=_M,
    ),
]
InChans = Annotated[
    int | None, typer.Option("--channels", help="Input channels.", rich_help_panel=_M)
]
NumClasses = Annotated[int | None, typer.Option(help="Classes per output.", rich_help_panel=_M)]
NumOutputs = Annotated[
    int | None, typer.Option(help="Output positions (K > 1: logits B x K x C).", rich_help_panel=_M)
]
EmbedDim = Annotated[int | None, typer.Option(help="Token width.", rich_help_panel=_M)]
Depth = Annotated[int | None, typer.Option(help="Number of blocks.", rich_help_panel=_M)]
Heads = Annotated[int | None, typer.Option("--heads", help="Attention heads.", rich_help_panel=_M)]
MlpRatio = Annotated[float | None, typer.Option(help="MLP width / embed dim.", rich_help_panel=_M)]
Dropout = Annotated[float | None, typer.Option(help="Dropout rate.", rich_help_panel=_M)]
DropPath = Annotated[float | None, typer.Option(help="Stochastic depth rate.", rich_help_panel=_M)]
Pool = Annotated[str | None, typer.Option(help="'cls' or 'mean'.", rich_help_panel=_M)]


def model_overrides(
    *,
    image_size: int | None = None,
    patch_size: int | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    num_outputs: int | None = None,
    embed_dim: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    mlp_ratio: float | None = None,
    dropout: float | None = None,
    drop_path: float | None = None,
    pool: str | None = None,
) -> dict[str, Any]:
    """The registry overrides the user gave (``None`` = not given), named as ``ViTConfig``."""
    given = dict(
        image_size=image_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        num_outputs=num_outputs,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        dropout=dropout,
        drop_path=drop_path,
        pool=pool,
    )
    return {k: v for k, v in given.items() if v is not None}


def run_or_model(
    run: Path | None,
    model: str | None,
    overrides: dict[str, Any],
    *,
    seed: int,
    quiet: bool,
) -> Any:
    """What `export` and `bench` work on: RUN (default: the most recent run under ./runs, named
    unless ``quiet``), or an untrained ``--model`` built with ``overrides`` and ``seed``."""
    if model is not None:
        if run is not None:
            raise UserError("give a RUN or --model NAME, not both")
        import torch

        from vitkit.models import resolve_spec

        spec = resolve_spec(model, **overrides)
        check_seed("--seed", seed)
        torch.manual_seed(seed)
        return spec.build()
    if overrides:
        raise UserError("model options (--embed-dim, ...) go with --model; a run has its own")
    return default_run(run, quiet=quiet)


def default_run(run: Path | None, *, quiet: bool, model_option: bool = True) -> Path:
    """RUN, or when none is given the most recent run under ./runs, named on stderr unless
    ``quiet`` (a guessed run that is not said could be scored or exported by mistake).
    ``model_option``: the command takes ``--model NAME`` too, so the no-runs error offers it."""
    if run is not None:
        return run
    from vitkit.artifact import latest_run

    run = latest_run(model_option=model_option)
    if not quiet:
        console.print(f"using the most recent run: {run} (pass RUN to choose another)")
    return run


# (catalog.FLAGGED_OPTIONS names these keys for the library, which imports no CLI)
DATASET_FLAGS = {"image_size": "--image-size", "channels": "--channels", "grid": "--grid"}


def check_dataset_flags(name: str, options: dict[str, Any]) -> None:
    """Refuse a dataset option given by its flag (``options`` by ``DATASET_FLAGS``'s keys) that
    dataset ``name`` does not take, in the command line's words: the flag, and the dataset as
    typed (``folder:~/pets``, not the catalog's ``folder``)."""
    from vitkit.data import get_dataset_spec
    from vitkit.data.catalog import fixed_shape_hint

    spec = get_dataset_spec(name)  # an unknown name: the catalog's error, with suggestions
    for key in options:
        if key not in spec.options:
            takes = ", ".join(flag for k, flag in DATASET_FLAGS.items() if k in spec.options)
            hint = fixed_shape_hint(spec, key, DATASET_FLAGS[key])
            raise UserError(
                f"dataset '{name}' has no option {DATASET_FLAGS[key]}"
                f" (options: {takes or 'none'}){hint}"
            )


def options_given(ctx: typer.Context, *, keep: tuple[str, ...] = ()) -> list[str]:
    """The options given other values than their defaults (as typed: ``--lr``, ``--no-aug``),
    but those in ``keep``."""
    given = []
    for p in ctx.command.params:
        if p.name is None or p.name in keep or ctx.params.get(p.name) == p.default:
            continue
        off = ctx.params.get(p.name) is False and getattr(p, "secondary_opts", None)
        if p.param_type_name == "argument":
            given.append(str(p.name).upper())  # DATASET, not "dataset"
        else:
            given.append((p.secondary_opts if off else p.opts or [str(p.name)])[0])
    return given
