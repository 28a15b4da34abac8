"""`vitkit train DATASET`: a complete run with the dataset's recipe, a live view, a run directory."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from vitkit.cli._common import (
    DataRoot,
    Depth,
    Dropout,
    DropPath,
    EmbedDim,
    Heads,
    Json,
    MlpRatio,
    Pool,
    check_dataset_flags,
    console,
    emit_json,
    fail,
    live_output,
    model_overrides,
    options_given,
    progress_bar,
    status,
    user_errors,
)
from vitkit.errors import UserError, plural
from vitkit.train.callbacks import Callback, EpochInfo, StartInfo, StepInfo

_T = "Training"
_R = "Run"


def _opt(help: str, panel: str = _T, *names: str) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel)


PLAIN_EVERY = 30.0  # seconds between progress lines when stderr is not a terminal


def start_notes(info: StartInfo) -> list[str]:
    """What a run's start has to say beyond its settings (an extension, the library's notes),
    for the live view and, under --json, for stderr (and the summary's ``notes``)."""
    return [*cli_start_notes(info), *info.notes]


def cli_start_notes(info: StartInfo) -> list[str]:
    """The start's notes the CLI words (an extension; nothing left to train, and the options
    that train further): unlike the library's, they are not in summary.json's notes."""
    notes = []
    if info.extended:
        change = ", ".join(
            f"{k.replace('_', '-')} {old} -> {new}" for k, (old, new) in info.extended.items()
        )
        longer = [  # --max-steps 0 is no cap at all
            new > old if k == "epochs" else new == 0 or 0 < old < new
            for k, (old, new) in info.extended.items()
        ]
        verb = "extending" if all(longer) else "shortening" if not any(longer) else "changing"
        schedule = (  # a new patience alone leaves the schedule as it is
            "; the learning-rate schedule is recomputed for the new length from the step the "
            "run is at"
            if set(info.extended) - {"patience"}
            else ""
        )
        notes.append(f"{verb} {info.run_dir}: {change}{schedule}")
    done = info.resumed_from_step
    if done and done >= info.total_steps and not info.extended:  # a finished run, resumed as is
        cfg = info.config
        if cfg.get("max_steps") and info.total_steps == cfg["max_steps"]:
            further = "a larger --max-steps (or --max-steps 0)"
            where = f"stopped at its --max-steps cap (step {done:,})"
        else:
            further = f"--epochs N (more than {cfg['epochs']})"
            where = f"has trained all its {cfg['epochs']} {plural(cfg['epochs'], 'epoch')}"
        notes.append(
            f"nothing left to train: {info.run_dir} {where}; only the test split is scored "
            f"again. To train further, resume with {further}"
        )
    elif not info.extended and info.stopped_early_at is not None:  # its patience is spent
        cfg, epoch = info.config, info.stopped_early_at
        patience = cfg["patience"]
        notes.append(
            f"nothing left to train: {info.run_dir} stopped early at epoch {epoch} of "
            f"{cfg['epochs']} (no better validation accuracy in its last {patience} "
            f"{plural(patience, 'epoch')}, --patience {patience}); only the test split is "
            f"scored again. To train on, resume with --patience N (more than {patience}, or 0 "
            f"for no early stopping), or --epochs N (more than {cfg['epochs']}), which "
            "restarts the patience count"
        )
    return notes


class NotesOnly(Callback):
    """--json: stdout is the summary; the start's notes go to stderr as they come, and into
    the summary's notes (``json_summary``)."""

    def __init__(self) -> None:
        self.notes: list[str] = []  # cli_start_notes: summary.json's notes lack them

    def on_start(self, info: StartInfo) -> None:
        self.notes = cli_start_notes(info)
        for note in [*self.notes, *info.notes]:  # start_notes(info), its CLI part worded once
            console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def json_summary(summary: dict[str, Any], start: list[str]) -> dict[str, Any]:
    """The document --json prints: summary.json's, whose notes are the library's (its start's
    and its end's), with the start's notes the CLI words first, as the live view prints them
    ("nothing left to train: ..." was on stderr alone, and a script reading stdout never saw
    why a resume trained nothing)."""
    if not start:
        return summary
    return {**summary, "notes": [*start, *summary.get("notes", [])]}


class LiveView(Callback):
    """Training on stderr. On a terminal: a live line (progress bar, loss, lr, img/s, ETA, last
    validation accuracy) fitted to the terminal's width. In a pipe or a log file (CI, nohup) no
    live display: the same figures as a plain line every ``plain_every`` seconds, so a long epoch
    is never silent. Epoch lines either way."""

    def __init__(self, *, plain_every: float | None = None) -> None:
        self.live: Live | None = None
        self.last_val: str = "-"
        self.start: StartInfo | None = None
        self.t0 = time.perf_counter()
        self.plain_every = PLAIN_EVERY if plain_every is None else plain_every
        self.last_plain = 0.0

    def on_start(self, info: StartInfo) -> None:
        self.start = info
        cfg = info.config
        resumed = f", resumed at step {info.resumed_from_step}" if info.resumed_from_step else ""
        gflops = "?" if info.gflops is None else f"{info.gflops:.3f}"
        from vitkit.models import overrides_text

        # what the model changes of its preset: vit-tiny (embed_dim 96, depth 4; 1.2M params, ...)
        changed = overrides_text(info.model, info.model_config)
        status(
            f"[bold]vitkit train[/] {cfg['dataset']} · {escape(info.model)} "
            f"({escape(changed + '; ' if changed else '')}{info.params / 1e6:.2f}M params, "
            f"{gflops} GFLOP/image) · {info.device}"
            f"{' x' + str(info.world_size) if info.world_size > 1 else ''}{resumed}"
        )
        planned = cfg["epochs"] * info.steps_per_epoch
        cap = (
            f" · stops at step {info.total_steps:,} (--max-steps)"
            if info.total_steps < planned
            else ""
        )
        epochs = f"{cfg['epochs']} {plural(cfg['epochs'], 'epoch')}"
        steps = f"{info.steps_per_epoch} {plural(info.steps_per_epoch, 'step')}"
        status(
            f"  {info.train_size:,} train / {info.val_size:,} val images · {epochs}"
            f" x {steps} of {cfg['batch_size']}{cap} · lr {cfg['lr']:g} · "
            f"wd {cfg['weight_decay']:g} · warmup {cfg['warmup_epochs']:g} ep · "
            f"ls {cfg['label_smoothing']:g} · mixup {cfg['mixup']:g} / cutmix {cfg['cutmix']:g}"
        )
        for note in start_notes(info):
            console.print(f"  [yellow]note:[/] {escape(note)}")
        if info.run_dir:
            console.print(f"  run: {escape(str(info.run_dir))}")
        self.t0 = self.last_plain = time.perf_counter()
        if live_output():
            self.live = Live(
                self._render(None), console=console, refresh_per_second=4, transient=True
            )
            self.live.start()

    def _fields(self, s: StepInfo) -> tuple[float, dict[str, str]]:
        done = s.step / max(s.total_steps, 1)
        elapsed = time.perf_counter() - self.t0
        steps_run = s.step - (self.start.resumed_from_step if self.start else 0)
        eta = elapsed / max(steps_run, 1) * (s.total_steps - s.step)
        return done, {
            "epoch": f"epoch {s.epoch + 1}/{s.epochs}",
            "pct": f"{100 * done:5.1f}%",
            "step": f"step {s.step}/{s.total_steps}",
            "loss": f"loss {s.loss:.4f}",
            "lr": f"lr {s.lr:.2e}",
            "speed": f"{s.images_per_s:,.0f} img/s",
            "eta": f"ETA {_hms(eta)}",
            "val": f"val {self.last_val}",
        }

    def _render(self, s: StepInfo | None, width: int | None = None) -> Text:
        """One line no wider than the terminal: the bar shrinks first (30 down to 10 cells),
        then step, lr, img/s and the percentage are left out, in that order."""
        if s is None:
            return Text("starting…")
        width = width or console.width
        done, fields = self._fields(s)
        for drop in (None, "step", "lr", "speed", "pct"):
            if drop is not None:
                del fields[drop]
            text = "  ".join(fields.values())
            bar_w = min(30, width - len(text) - 2)
            if bar_w >= 10:
                break
        bar_w = max(bar_w, 0)
        filled = int(done * bar_w)
        head, _, tail = text.partition("  ")
        line = Text(head, style="bold")
        if bar_w:
            line.append("  " + "█" * filled + "░" * (bar_w - filled))
        line.append("  " + tail)
        return line

    def on_step(self, info: StepInfo) -> None:
        if self.live:
            self.live.update(self._render(info))
        elif time.perf_counter() - self.last_plain >= self.plain_every:
            self.last_plain = time.perf_counter()
            console.print("  " + " · ".join(self._fields(info)[1].values()), soft_wrap=True)

    def on_epoch(self, info: EpochInfo) -> None:
        if info.val:
            multi = len(info.val["per_position"]) > 1
            acc = info.val["exact"] if multi else info.val["acc"]
            self.last_val = f"{100 * acc:.2f}%" + (" exact" if multi else "")
        best = " [green]best[/]" if info.is_best and info.val else ""
        part = " (partial: --max-steps)" if info.partial else ""  # not a contender for best
        console.print(
            f"epoch {info.epoch + 1:>3}/{info.epochs}{part}  loss {info.train_loss:.4f}  "
            f"val {self.last_val}{best}  {info.images_per_s:,.0f} img/s  {info.seconds:.1f} s"
        )
        self.last_plain = time.perf_counter()

    def on_end(self, summary: dict[str, Any]) -> None:
        self.stop()

    def stop(self) -> None:
        if self.live:
            self.live.stop()
            self.live = None


def _hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@user_errors
def train_command(
    ctx: typer.Context,
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="Dataset name (vitkit data list) or folder:PATH. Not needed with --resume."
        ),
    ] = None,
    model: Annotated[
        str | None,
        _opt("Model from `vitkit models list` (recipe default).", "Model", "--model", "-m"),
    ] = None,
    embed_dim: EmbedDim = None,
    depth: Depth = None,
    heads: Heads = None,
    patch_size: Annotated[
        int | None,
        typer.Option(
            help="Patch side in pixels (default: the dataset's recipe, e.g. 7 for MNIST's 28 px;"
            " else 4 for 28 and 32 px, 16 for 224 px).",
            rich_help_panel="Model",
        ),
    ] = None,
    mlp_ratio: MlpRatio = None,
    dropout: Dropout = None,
    drop_path: DropPath = None,
    pool: Pool = None,
    epochs: Annotated[int | None, _opt("Passes over the training split.")] = None,
    batch_size: Annotated[int | None, _opt("Images per step (per device with torchrun).")] = None,
    lr: Annotated[float | None, _opt("Peak learning rate (after warm-up).")] = None,
    weight_decay: Annotated[float | None, _opt("AdamW weight decay.")] = None,
    warmup_epochs: Annotated[float | None, _opt("Linear warm-up length, epochs.")] = None,
    min_lr: Annotated[float | None, _opt("Final learning rate of the cosine decay.")] = None,
    label_smoothing: Annotated[float | None, _opt("Label smoothing.")] = None,
    grad_clip: Annotated[float | None, _opt("Max gradient norm (0 = off).")] = None,
    mixup: Annotated[float | None, _opt("Mixup alpha (0 = off).")] = None,
    cutmix: Annotated[float | None, _opt("CutMix alpha (0 = off).")] = None,
    aug: Annotated[
        bool | None,
        _opt("The dataset's augmentation (crop+flip, or affine for digits).", _T, "--aug/--no-aug"),
    ] = None,
    amp: Annotated[bool | None, _opt("bf16 autocast on CUDA.", _T, "--amp/--no-amp")] = None,
    compile: Annotated[
        bool | None, _opt("torch.compile the model.", _T, "--compile/--no-compile")
    ] = None,
    device: Annotated[str | None, _opt("auto, cpu, cuda, cuda:N or mps.", _R)] = None,
    seed: Annotated[int | None, _opt("Random seed.", _R)] = None,
    out: Annotated[
        Path | None,
        _opt(
            "Run directory (default runs/<dataset>-<model>, with -2, -3, ... when taken).",
            _R,
            "--out",
            "-o",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        _opt(
            "Continue the run in this directory, with its own settings; --epochs, "
            "--max-steps (0: no cap) and --patience (0: off) may extend it.",
            _R,
        ),
    ] = None,
    overwrite: Annotated[bool, _opt("Replace an existing --out directory.", _R)] = False,
    patience: Annotated[int | None, _opt("Early stopping: epochs without improvement.")] = None,
    val_fraction: Annotated[float | None, _opt("Train share held out when no val split.")] = None,
    max_steps: Annotated[int | None, _opt("Stop after this many steps (smoke tests).", _R)] = None,
    log_every: Annotated[
        int | None,
        _opt(
            "Steps between metric lines (metrics.jsonl, the live view; in a pipe a progress"
            " line at most every 30 s).",
            _R,
        ),
    ] = None,
    tensorboard: Annotated[bool | None, _opt("TensorBoard events in RUN/tb.", _R)] = None,
    image_size: Annotated[
        int | None, _opt("folder: datasets: resize to this side.", "Data")
    ] = None,
    channels: Annotated[int | None, _opt("folder: datasets: 1 or 3.", "Data")] = None,
    grid: Annotated[int | None, _opt("mnist-layout: cells per side.", "Data")] = None,
    config: Annotated[
        Path | None, _opt("JSON/TOML/YAML file of defaults; options here win.", _R)
    ] = None,
    data_root: DataRoot = None,
    no_download: Annotated[
        bool,
        typer.Option(
            "--no-download", help="Never touch the network; local files only.", rich_help_panel=_R
        ),
    ] = False,
    print_config: Annotated[
        bool,
        _opt(
            "Print the settings this run would use (recipe, config file and options merged) as"
            " JSON on stdout, and exit without training.",
            _R,
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Train a Vision Transformer on DATASET with that dataset's recipe; every option overrides it.

    Writes runs/<name>/: model.json + model.safetensors (best weights), train.json, metrics.jsonl,
    summary.json, curves.png and checkpoint/. Ctrl-C saves a checkpoint: continue with --resume.
    See the recipe, merged with your options, with --print-config.
    """
    rank0 = int(os.environ.get("RANK", "0")) == 0
    # for a Ctrl-C outside the steps
    started = Started(resume, epochs=epochs, max_steps=max_steps, patience=patience)
    try:
        from vitkit.train import StopFlag, train
        from vitkit.train.config import read_config_file
        from vitkit.train.loop import NonFiniteLoss
        from vitkit.train.run import resolve_config

        command = ["vitkit", *sys.argv[1:]] if sys.argv and "vitkit" in sys.argv[0] else None
        stop = StopFlag()
        view = LiveView() if (not json_ and rank0) else None
        cfg, extend = None, None
        if resume is not None:
            extend = _extension(ctx, resume, epochs, max_steps, patience, rank0)
        else:
            file_options = read_config_file(config) if config else None
            named = file_options.get("dataset") if file_options else None
            if dataset is None and isinstance(named, str):
                dataset = named  # a --print-config file runs on its own
            elif isinstance(named, str) and named != dataset and rank0:
                console.print(
                    f"[yellow]note:[/] {escape(str(config))} was written for '{escape(named)}'; "
                    f"training '{escape(str(dataset))}' with its other settings",
                    soft_wrap=True,
                )
            if dataset is None:
                raise UserError("give a DATASET (see `vitkit data list`) or --resume RUN")
            dataset_options = {
                k: v
                for k, v in dict(image_size=image_size, channels=channels, grid=grid).items()
                if v is not None
            }
            check_dataset_flags(dataset, dataset_options)
            overrides = model_overrides(
                embed_dim=embed_dim,
                depth=depth,
                heads=heads,
                patch_size=patch_size,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                drop_path=drop_path,
                pool=pool,
            )
            cfg = resolve_config(
                dataset,
                file_options=file_options,
                model=model,
                model_overrides=overrides or None,
                dataset_options=dataset_options or None,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                warmup_epochs=warmup_epochs,
                min_lr=min_lr,
                label_smoothing=label_smoothing,
                grad_clip=grad_clip,
                mixup=mixup,
                cutmix=cutmix,
                augment=aug,
                amp=amp,
                compile=compile,
                device=device,
                seed=seed,
                out=str(out) if out else None,
                overwrite=overwrite or None,
                patience=patience,
                val_fraction=val_fraction,
                max_steps=max_steps,
                log_every=log_every,
                tensorboard=tensorboard,
            )
            if print_config:  # resolve_config refused what the run would (a device aside)
                if rank0:
                    emit_json(cfg.to_dict())
                return
        if print_config:
            raise UserError(
                "--print-config shows a new run's settings; a resumed run's are in its train.json"
            )
        notes_only = NotesOnly()  # --json: the start's notes, for the summary's
        try:
            with progress_bar(not json_ and rank0) as progress:
                result = train(
                    cfg,
                    resume=resume,
                    extend=extend,
                    callbacks=[view or notes_only, started] if rank0 else [],
                    progress=progress,
                    stop=stop,
                    data_root=data_root,
                    download=not no_download,
                    command=command,
                )
        except NonFiniteLoss as e:
            if view:
                view.stop()
            if json_ and e.summary is not None and rank0:
                # the summary.json a diverged run leaves, then the error line
                emit_json(json_summary(e.summary, notes_only.notes))
            elif rank0:
                _print_notes(list(e.notes))  # eval reports of weights rewritten before it diverged
            raise fail(str(e)) from None
        finally:
            if view:
                view.stop()
        s = result.summary
        if result.interrupted:
            cmd = f"vitkit train --resume {shlex.quote(str(result.run_dir))}"
            if json_:
                emit_json({**json_summary(s, notes_only.notes), "resume_command": cmd})
            elif rank0:
                _print_notes(result.notes)
                console.print(
                    f"[yellow]interrupted[/] at step {s['steps']}: checkpoint saved. "
                    f"Resume with:\n  {cmd}"
                )
            raise typer.Exit(128 + (stop.signal or 2))  # 130 for Ctrl-C, 143 for SIGTERM
        if not rank0:
            return
        if json_:
            emit_json(json_summary(s, notes_only.notes))
            return
        _print_done(s, result.run_dir)
        _print_notes(result.notes)
    except KeyboardInterrupt:  # outside the steps: loading data, the test split, a second Ctrl-C
        if not rank0:
            raise
        _interrupted(started, json_=json_)
        raise typer.Exit(130) from None


class Started(Callback):
    """The run a Ctrl-C outside the training steps leaves (while the data loads, the test split
    is scored, or a second Ctrl-C cuts a checkpoint save short): --resume's from the start,
    a new run's once training names it."""

    def __init__(
        self,
        resume: Path | None,
        *,
        epochs: int | None,
        max_steps: int | None,
        patience: int | None = None,
    ) -> None:
        self.run_dir = resume
        # a resume's new length
        self.extend = _given(epochs, max_steps, patience) if resume is not None else {}
        self.started = False

    def on_start(self, info: StartInfo) -> None:
        self.run_dir, self.started = info.run_dir, True

    def resume_command(self) -> str | None:
        """The command that continues the run, if it has a checkpoint to continue from."""
        if self.run_dir is None:
            return None
        # not imported: Ctrl-C while Python imported torch, before the run was touched (and
        # importing it again now would fail on the half-imported torch)
        checkpoint = sys.modules.get("vitkit.train.checkpoint")
        if checkpoint is not None and not checkpoint.checkpoint_exists(self.run_dir):
            return None
        # train.json records a resume's new length when training starts: before, repeat it
        again = (
            [] if self.started else [f"--{k.replace('_', '-')} {v}" for k, v in self.extend.items()]
        )
        return " ".join([f"vitkit train --resume {shlex.quote(str(self.run_dir))}", *again])


def _interrupted(started: Started, *, json_: bool) -> None:
    """Ctrl-C outside the steps: no summary, but the run and how to resume it, if it can be.
    Under --json, the document says so (stdout was empty): the error line's fields, and the
    interrupted summary's run_dir and resume_command (null when there is nothing to resume)."""
    cmd = started.resume_command()
    if json_:
        emit_json(
            {
                "error": "interrupted",
                "status": "interrupted",
                "run_dir": None if started.run_dir is None else str(started.run_dir),
                "resume_command": cmd,
            }
        )
    hint = f": checkpoint kept. Resume with:\n  {escape(cmd)}" if cmd else ""
    console.print(f"[yellow]interrupted[/]{hint}")


def _print_notes(notes: list[str]) -> None:
    """The library's closing notes (--json has them in the summary's notes)."""
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


def _extension(
    ctx: typer.Context,
    resume: Path,
    epochs: int | None,
    max_steps: int | None,
    patience: int | None,
    rank0: bool,
) -> dict[str, int]:
    """What --resume changes (--epochs, --max-steps, --patience); the other options given are
    named as ignored: the run keeps its own train.json."""
    honoured = ("resume", "epochs", "max_steps", "patience", "data_root", "no_download", "json_")
    ignored = options_given(ctx, keep=(*honoured, "print_config"))
    if rank0 and ignored:
        console.print(
            f"[yellow]note:[/] resuming {escape(str(resume))} with its own train.json; "
            f"ignored: {', '.join(ignored)} (only --epochs, --max-steps and --patience change "
            "a resumed run)",
            soft_wrap=True,
        )
    return _given(epochs, max_steps, patience)


def _given(epochs: int | None, max_steps: int | None, patience: int | None) -> dict[str, int]:
    """The options a resume changes (train(extend=...)) that were given."""
    given = dict(epochs=epochs, max_steps=max_steps, patience=patience)
    return {k: v for k, v in given.items() if v is not None}


def _print_done(s: dict[str, Any], run_dir: Path) -> None:
    """The closing lines of a run that ended: best/test accuracy, speed, time, files."""
    last = s.get("last_val") or {}
    # a multi-output run's figures are exact match (every position right), as its epoch lines,
    # best_val_acc and test_acc are; last_val's "acc" is the mean over positions
    multi = len((s.get("test") or last).get("per_position") or ()) > 1
    key, exact = ("exact", " exact") if multi else ("acc", "")
    test = (
        f"test {100 * s['test_acc']:.2f}%{exact}"
        if s.get("test_acc") is not None
        else "no test split"
    )
    best = (
        f"best val {100 * s['best_val_acc']:.2f}%{exact} (epoch {s['best_epoch']})"
        if s.get("best_val_acc") is not None
        else f"val {100 * last[key]:.2f}%{exact} (a partial epoch: no best yet)"
        if isinstance(last.get(key), (int, float))
        else "no validation"
    )
    speed = f"{s['train_images_per_s']:,.0f} img/s"
    steady = s.get("train_images_per_s_after_first_step")
    if s.get("compiled") and steady:
        speed += (
            f" ({steady:,.0f} after the first step, which took {s['first_step_seconds']:.1f} s "
            "with the compile)"
        )
    console.print(
        f"[green]done[/] ({s['status']}): {best}, {test}; {speed}, {s['wall_seconds']:.0f} s"
    )
    from vitkit.train.run import written_files

    console.print(f"wrote {run_dir}/: {', '.join(written_files(run_dir))}")
