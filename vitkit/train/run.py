"""train(): everything around the loop. Resolve the device, the data, the model and the run
directory; check every option before any work; call ``fit``; write the summary.

Under ``torchrun`` (WORLD_SIZE > 1) this runs DistributedDataParallel: NCCL on CUDA, gloo on the
CPU; every rank holds the dataset and trains on its shard of each epoch; rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

import vitkit
from vitkit._device import autocast_dtype, resolve_device
from vitkit.artifact import (
    MODEL_JSON,
    MODEL_WEIGHTS,
    RUNS_DIR,
    atomic_write,
    load_weights,
    read_json,
    read_meta,
    save_model,
    stale_notes,
    unwrap,
    write_json,
)
from vitkit.data import Dataset, get_dataset_spec, load_dataset
from vitkit.data.augment import AugmentConfig
from vitkit.data.cache import cache_key
from vitkit.data.catalog import (
    absolute_name,
    cache_options,
    check_dataset_options,
    env_data_root,
    recorded_options,
    short_name,
)
from vitkit.data.loader import DeviceLoader
from vitkit.data.types import ProgressFn, Split, no_progress
from vitkit.errors import (
    ConfigError,
    UserError,
    brief,
    check_bool,
    check_callable,
    check_path,
    first_line,
    in_cli,
    listed,
    plural,
    setting,
    state_dict_mismatch,
)
from vitkit.models import (
    ModelSpec,
    check_registered,
    model_flops,
    model_options,
    resolve_spec,
)
from vitkit.train.callbacks import (
    CURVES_HINT,
    CURVES_PNG,
    Callback,
    MetricsFile,
    StartInfo,
    TensorBoard,
    plot_curves,
)
from vitkit.train.checkpoint import (
    CHECKPOINT_DIR,
    STATE,
    WEIGHTS,
    checkpoint_exists,
    load_checkpoint,
    save_checkpoint,
)
from vitkit.train.config import TrainConfig, recipe_for
from vitkit.train.loop import (
    FitResult,
    FitState,
    NonFiniteLoss,
    StopFlag,
    evaluate_loader,
    fit,
)
from vitkit.train.optim import build_optimizer, build_scheduler

TRAIN_JSON = "train.json"
# what a resumed run may change (train(extend=...)); patience alone leaves the schedule as it is
EXTENDABLE = ("epochs", "max_steps", "patience")
SUMMARY_JSON = "summary.json"


def written_files(run_dir: Path) -> list[str]:
    """What a run directory holds of what ``train`` writes, in a fixed order (folders with a
    trailing /): curves.png needs matplotlib, tb/ ``tensorboard``."""
    names = [MODEL_JSON, MODEL_WEIGHTS, TRAIN_JSON, "metrics.jsonl", SUMMARY_JSON, CURVES_PNG]
    names += [f"{CHECKPOINT_DIR}/", "tb/"]
    return [n for n in names if (run_dir / n).exists()]


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict[str, Any]
    status: str  # completed | early_stopped | interrupted | max_steps (summary.json: diverged too)
    # what to know at the end (also in summary["notes"]): e.g. RUN/eval scored earlier weights
    notes: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


# -- options --------------------------------------------------------------------------------------
def resolve_config(
    dataset: str, *, file_options: dict[str, Any] | None = None, **cli_options: Any
) -> TrainConfig:
    """Return the ``TrainConfig`` for ``dataset``: its recipe < ``file_options`` (a ``--config``
    file) < ``cli_options`` (any ``TrainConfig`` field, e.g. ``epochs=5``; ``None`` = not given).

    Checked as ``precheck`` checks (model sizes against the data, dataset options, the device's
    name): a config ``train`` would refuse is refused here. Raises ``NotFoundError`` for an
    unknown dataset or model, ``ConfigError`` for an unknown option, a value of the wrong type
    or options that cannot go together, ``UserError`` for ``file_options`` that is not a
    mapping (all ``UserError``s). The device (and
    TensorBoard, for ``tensorboard``) need not be on this machine: a config may be written for
    another."""
    spec = get_dataset_spec(dataset)
    if file_options is not None and not isinstance(file_options, Mapping):  # not merged()'s **
        raise UserError(f"file_options must be a mapping of options, got {brief(file_options)}")
    base = TrainConfig(dataset=dataset)
    recipe = recipe_for(spec.recipe)
    cfg = base.merged(**recipe)
    if file_options:
        cfg = cfg.merged(**file_options)
    cfg = cfg.merged(dataset=dataset, **cli_options)
    takes = model_options(cfg.model)
    if takes is not None:  # the recipe's model options are for ViTs: a model without them goes on
        given = {
            str(k).replace("-", "_")  # as from_dict reads them
            for source in (file_options or {}, cli_options)
            for k, v in (source.get("model_overrides") or {}).items()
            if v is not None
        }
        lacking = set(recipe.get("model_overrides", {})) - takes - given
        kept = {k: v for k, v in cfg.model_overrides.items() if k not in lacking}
        cfg = replace(cfg, model_overrides=kept)
    precheck(cfg, here=False)
    return cfg


def precheck(config: TrainConfig, *, here: bool = True) -> None:
    """Every check that needs no data: dataset name, model options, device. ``here``: also
    what this machine must have (the device itself, TensorBoard for ``tensorboard``); else the
    device's name only, as for a config written for another machine. Raises UserError."""
    config.validate()
    spec = get_dataset_spec(config.dataset)
    given = {k: v for k, v in config.dataset_options.items() if v is not None}
    check_dataset_options(spec, given, config.dataset)  # what load_dataset would refuse, now
    known = {
        "image_size": spec.image_size or config.dataset_options.get("image_size"),
        "in_chans": spec.channels or config.dataset_options.get("channels"),
        "num_classes": len(spec.classes) if spec.classes else None,
    }
    resolve_spec(config.model, **{**known, **config.model_overrides})
    resolve_device(config.device, here=here)
    if config.tensorboard and here:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError(
                f"{setting('tensorboard', True)} needs TensorBoard: pip install "
                "'vitkit[tensorboard]'"
            ) from None


# -- distributed ----------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device


# -- run directory --------------------------------------------------------------------------------
class RunLock:
    """The one process training in a run directory holds this: an advisory ``flock`` on
    ``.<run>.lock`` beside the run (not in it: ``--overwrite`` removes the run). The kernel
    drops it when the process dies, however it dies, so a stale lock never blocks a resume; the
    file is removed on release. Where no lock can be had (Windows has no ``flock``, some network
    filesystems refuse it, an existing run's parent folder may not be writable) every acquire
    succeeds and ``unavailable`` says why: the run goes on unlocked, as before there was a
    lock. Another user's lock file is locked read-only (flock needs no write access)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir.resolve()  # `--out .`, and one run reached by two names
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self.unavailable: str | None = None
        self._fd: int | None = None
        self._made: list[Path] = []  # parent folders this lock created, deepest first

    def acquire(self) -> bool:
        """Take the lock without waiting; False while another process holds it. Raises
        ``OSError`` when the lock file cannot be made and the run directory is not there
        either (``--out`` in a folder this user cannot write in: the run could not start)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self.unavailable = "this platform has no flock"
            return True
        self._made = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        while True:
            fd = self._open()
            if fd is None:
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._remove_made()
                return False
            except OSError as e:  # ENOSYS, ENOLCK, EOPNOTSUPP: a filesystem without flock
                os.close(fd)
                with contextlib.suppress(OSError):
                    self.path.unlink()
                self.unavailable = f"its filesystem has no flock ({e.strerror or e})"
                return True
            try:  # the holder before us may have removed the file between our open and lock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(OSError):  # the pid only names the holder (disk full)
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                self._fd = fd
                return True
            os.close(fd)

    def _open(self) -> int | None:
        """The lock file, open to be locked; None, with ``unavailable`` set, where it cannot be
        made but the run directory is there to train in."""
        for attempt in range(3):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # the parent went (a refused run's cleanup): again
                if attempt == 2:
                    raise
            except OSError as e:
                if isinstance(e, PermissionError) and self.path.exists():
                    with contextlib.suppress(OSError):  # another user's: flock needs no write
                        return os.open(self.path, os.O_RDONLY)
                if not self.run_dir.is_dir():
                    raise
                self.unavailable = f"cannot create {self.path} ({e.strerror or e})"
                return None
        return None  # pragma: no cover - the loop returns or raises

    def holder(self) -> str:
        """``pid 1234`` of the process holding it, as far as its file says."""
        with contextlib.suppress(OSError, ValueError):
            return f"pid {int(self.path.read_text())}"
        return "another process"

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # gone, or in a folder only others write in
                self.path.unlink()  # before the unlock: a waiting acquire sees a new file
            os.close(self._fd)
            self._fd = None
        self._remove_made()

    def _remove_made(self) -> None:
        """The folders acquire made for the lock file, if nothing else went into them (a run
        refused before it began leaves no ``runs/`` behind)."""
        for folder in self._made:
            with contextlib.suppress(OSError):  # not empty: the run is in it
                folder.rmdir()
        self._made = []


def default_run_dir(
    config: TrainConfig,
    runs: Path = RUNS_DIR,
    *,
    free: Callable[[Path], bool] = lambda path: not path.exists(),
) -> Path:
    """``runs/<dataset>-<model>``, or the first of ``-2``, ``-3``, ... that is ``free``."""
    name = short_name(config.dataset)
    base = runs / f"{name}-{config.model}"
    numbered = (runs / f"{base.name}-{i}" for i in itertools.count(2))
    return next(path for path in itertools.chain([base], numbered) if free(path))


def claim_run_dir(
    config: TrainConfig, resume: bool, held: contextlib.ExitStack
) -> tuple[Path, str | None]:
    """The run directory, checked and locked for this process until ``held`` closes
    (``RunLock``), and a note when no lock could be had. With no ``--out``, the first free
    name: two trains started at once get ``x`` and ``x-2``."""
    if config.out or resume:
        run_dir = Path(config.out or ".")
        lock = _lock(run_dir)
        if lock is None:
            elsewhere = "another --out" if in_cli() else "another folder (out=)"
            instead = "" if resume else f", or train into {elsewhere}"
            raise UserError(
                f"{run_dir} is in use: another vitkit train ({RunLock(run_dir).holder()}) is "
                f"writing to it; wait for it to end{instead}"
            )
    else:
        locks: dict[Path, RunLock] = {}

        def free(path: Path) -> bool:
            lock = None if path.exists() else _lock(path)
            if lock is not None and path.exists():  # made by another process meanwhile
                lock.release()
                lock = None
            if lock is not None:
                locks[path] = lock
            return lock is not None

        run_dir = default_run_dir(config, free=free)
        lock = locks[run_dir]
    held.callback(lock.release)
    note = None
    if lock.unavailable:
        note = f"{run_dir} is not locked against a second train into it: {lock.unavailable}"
    return prepare_run_dir(config, run_dir, resume), note


def _lock(run_dir: Path) -> RunLock | None:
    lock = RunLock(run_dir)
    try:
        return lock if lock.acquire() else None
    except OSError as e:  # no lock file, and no run directory: the run could not start
        lock.release()
        blocker = next((p for p in run_dir.parents if p.is_file()), None)
        if blocker is not None:  # --out notes.txt/run: "File exists" named no file
            raise UserError(f"{blocker} is a file, not a folder (for {run_dir})") from None
        raise UserError(f"cannot write in {run_dir.parent}: {e.strerror or e}") from None


def prepare_run_dir(config: TrainConfig, run_dir: Path, resume: bool) -> Path:
    if resume:
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} is a file, not a folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise UserError(
                f"run directory {run_dir} already exists; use {setting('resume', run_dir)} to "
                f"continue it or {setting('overwrite', True)} to replace it"
            )
        if not (run_dir / MODEL_JSON).exists() and not (run_dir / TRAIN_JSON).exists():
            raise UserError(f"refusing to overwrite {run_dir}: it is not a vitkit run directory")
        # removed only once the new run has its data and model (train): a run that cannot
        # start (no data, no network) leaves the old one as it was
    return run_dir


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "vitkit": vitkit.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# -- data -----------------------------------------------------------------------------------------
def split_validation(ds: Dataset, fraction: float, seed: int) -> tuple[Split, Split | None]:
    """The val split if the dataset has one, else a seeded hold-out of ``fraction`` of train."""
    if "val" in ds.splits:
        return ds["train"], ds["val"]
    train = ds["train"]
    if fraction <= 0:
        return train, None
    n_val = max(1, round(len(train) * fraction))
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 7919))
    return train.subset(perm[n_val:].sort().values), train.subset(perm[:n_val].sort().values)


@contextlib.contextmanager
def sigint_to(stop: StopFlag) -> Iterator[None]:
    """Ctrl-C or SIGTERM (`kill`, `timeout`, SLURM, `docker stop`): finish the step, checkpoint,
    exit. A second Ctrl-C stops at once; SIGTERMs never do (a job scheduler and torchrun may
    each send one at the same moment, and SIGKILL follows if the checkpoint takes too long)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def trim_metrics(path: Path, step: int) -> int:
    """Drop the lines of ``metrics.jsonl`` past ``step`` (the checkpoint a resume starts from):
    a run killed between checkpoints logged steps it will now run again. Returns the lines
    dropped; a damaged line is kept as it is."""
    import json

    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            past = int(json.loads(line).get("step", 0)) > step
        except (ValueError, TypeError, AttributeError):  # UnicodeDecodeError is a ValueError
            past = False
        if past or not line.endswith(b"\n"):  # a line cut short by the kill goes too
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        with atomic_write(path, "wb") as f:
            f.writelines(kept)
    return dropped


def data_record(ds: Dataset, train: Split, val: Split | None) -> dict[str, Any]:
    """What train.json keeps of the data a run began on, for a resume to compare with: the
    split sizes and the cache key (the dataset's options and, for a folder, its fingerprint)."""
    sizes = {"train": len(train), "val": len(val) if val is not None else 0}
    sizes |= {k: len(v) for k, v in ds.splits.items() if k not in ("train", "val")}
    return {"sizes": sizes, "cache_key": ds.cache_dir.name, "classes": ds.classes}


def check_same_classes(run_dir: Path, saved: Any, ds: Dataset) -> None:
    """A resumed run's dataset must have the classes it began with, in the same order: a class
    folder renamed (``airplane`` -> ``zebra``) re-sorts the labels, and the run would go on
    training with every image under another class's index. From train.json's data record, else
    (runs from before it recorded them) model.json's."""
    before = saved.get("classes") if isinstance(saved, dict) else None
    if before is None and (run_dir / MODEL_JSON).is_file():
        meta = read_json(run_dir / MODEL_JSON)
        before = meta.get("classes") if isinstance(meta, dict) else None
    if isinstance(before, list) and list(before) != list(ds.classes):
        raise UserError(
            f"{run_dir} began on the classes {listed(before)}; '{ds.name}' now has "
            f"{listed(ds.classes)}: resuming would train on other labels (restore the data, or "
            "train a new run)"
        )


def data_changed(saved: Any, now: dict[str, Any]) -> str | None:
    """A note when the data a resumed run finds differs from what it began on, else None."""
    if not isinstance(saved, dict):
        return None  # a run from before train.json recorded it
    old, new = saved.get("sizes") or {}, now["sizes"]
    diffs = [f"{k} {old.get(k, 0):,} -> {new.get(k, 0):,}" for k in new if old.get(k, 0) != new[k]]
    if not diffs and saved.get("cache_key") == now["cache_key"]:
        return None
    what = ", ".join(diffs) + " images" if diffs else "the same sizes, other files"
    return (
        f"the dataset differs from the one the run began on ({what}; for a folder, file times "
        "count too): the resumed run trains on it as it is now, and may not reach the weights "
        "of an uninterrupted run"
    )


# -- train ----------------------------------------------------------------------------------------
@dataclass
class _Parts:
    """What a run trains with: the model, its loaders, optimizer and schedule, and their sizes."""

    spec: ModelSpec
    model: torch.nn.Module
    params: int
    gflops: float | None  # per image, forward; None for a model that cannot count its FLOPs
    train_loader: DeviceLoader
    val_loader: DeviceLoader | None
    loader_args: dict[str, Any]  # mean, std, classes, device: the test loader's too
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    autocast: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


HOOKS = ("on_start", "on_step", "on_epoch", "on_end")  # what train() calls on a callback


def _checked_arguments(
    callbacks: Sequence[Callback],
    progress: ProgressFn,
    stop: StopFlag | None,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    command: list[str] | None,
    extend: Mapping[str, int] | None,
) -> tuple[list[Callback], bool, list[str] | None]:
    """train()'s arguments other than the config and the run, checked before any work (each
    was a TypeError or AttributeError from deep in the loop, ``download="no"`` a download):
    ``(callbacks, download, command)`` as lists and a bool."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise UserError(f"callbacks must be a list of Callback objects, got {brief(callbacks)}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not all(callable(getattr(cb, hook, None)) for hook in HOOKS):
            raise UserError(
                f"callbacks[{i}] must be a Callback (vitkit.train.Callback, or an "
                f"object with {', '.join(HOOKS)}), got {brief(cb)}"
            )
    check_callable("progress", progress)
    if stop is not None and not isinstance(getattr(stop, "requested", None), bool):
        raise UserError(f"stop must be a vitkit.train.StopFlag, got {brief(stop)}")
    check_path("data_root", data_root, optional=True)
    download = check_bool("download", download)
    if command is not None:
        if not isinstance(command, (list, tuple)) or not all(isinstance(a, str) for a in command):
            raise UserError(
                f"command must be a list of strings (the command line train.json records), got "
                f"{brief(command)}"
            )
        command = list(command)
    if extend is not None and not isinstance(extend, Mapping):
        raise UserError(f"extend must be a mapping (epochs=, max_steps=), got {brief(extend)}")
    return callbacks, download, command


def train(
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressFn = no_progress,
    stop: StopFlag | None = None,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    command: list[str] | None = None,
    extend: Mapping[str, int] | None = None,
) -> TrainResult:
    """Train ``config``, or resume the run at ``resume``, and return where the run went.

    A resumed run continues with its own config (its train.json), so ``config`` is left out
    then (a config given with ``resume`` is refused: it would be ignored).
    ``extend`` (with ``resume``): a new ``epochs`` and/or ``max_steps`` for the resumed run,
    to continue one that finished or hit its cap; the learning-rate schedule is recomputed
    for the new length from the step the run is at, and train.json records the change. A
    run that stopped early (its ``patience`` spent) trains on with either (its patience
    counting afresh), or with a new ``patience`` (0: none) that counts on from the epochs it
    has waited, as if the run had had it from the start.
    ``data_root``: where datasets live, else ``$VITKIT_DATA`` (train.json records either as an
    absolute path, for a resume without ``data_root``), else ``~/.cache/vitkit/data``.
    ``download=False``: a dataset that is not on disk is an error, not a download.
    Raises ``UserError`` for bad options before any work (an argument of the wrong type too:
    ``data_root=5``, ``download="no"``, a callback without the ``Callback`` hooks);
    ``NonFiniteLoss`` if the loss
    diverges (the last checkpoint and best weights stay on disk). The run directory is locked
    (``RunLock``) while it trains: a second train into it is refused.
    """
    callbacks, download, command = _checked_arguments(
        callbacks, progress, stop, data_root, download, command, extend
    )
    with contextlib.ExitStack() as held:  # the run directory's lock, released on any exit
        saved: dict[str, Any] = {}
        extended: dict[str, Any] = {}
        check_path("resume", resume, optional=True, what="the path of a run directory")
        if extend and resume is None:
            raise UserError("extend= changes a resumed run; pass resume= too")
        if resume is not None and config is not None:
            raise UserError(
                f"resume= continues {resume} with its own train.json, so config= would be "
                "ignored: leave it out (extend= changes epochs and max_steps)"
            )
        if resume is not None:
            config, saved, extended = _resumed_config(Path(resume), extend)
            data_root = data_root or saved.get("data_root")
        elif config is None:
            raise UserError("train() needs a config (resolve_config(...)), or resume= a run")
        elif not isinstance(config, TrainConfig):  # a dict: not an AttributeError in precheck
            raise UserError(
                f"train() takes a TrainConfig (resolve_config(...), or TrainConfig.from_dict(d) "
                f"for a dict), got {type(config).__name__}"
            )
        if data_root is None:  # $VITKIT_DATA, as the CLI's --data-root reads it: train.json
            data_root = env_data_root()  # records it absolute, for a resume from elsewhere
        precheck(config)  # out=5 too: a one-line error, not expanduser's TypeError
        if config.out:  # a config file's "~/runs/x" is the home folder's, not ./~/runs/x
            config = replace(config, out=os.path.expanduser(config.out))
        device = resolve_device(config.device)
        dist_info, device = init_distributed(device)
        run_dir, lock_note = (
            claim_run_dir(config, resume is not None, held)
            if dist_info.main
            else (Path(config.out or "."), None)
        )
        if dist_info.world_size > 1:
            run_dir = _broadcast_path(run_dir)
        torch.manual_seed(config.seed)

        ds = _training_data(config, dist_info, data_root, download, progress)
        train_split, val_split = split_validation(ds, config.val_fraction, config.seed)
        if resume is not None:
            check_same_classes(run_dir, saved.get("data"), ds)
        parts = _build(config, ds, train_split, val_split, device, dist_info)
        if resume is not None and dist_info.main:  # best weights that do not fit: say so now, not
            _best_model(run_dir, parts.model)  # after the resumed epochs have run
        state = FitState()
        if resume is not None:
            state = _restore(run_dir, config, parts, extended, device)
        resumed_from = state.step
        # a resume that its spent patience leaves nothing to train: the start says so
        early_stop = state.epoch if resume is not None and stopped_early(state, config) else None
        net = _wrap(parts.model, config, dist_info, device)

        notes = [n for n in [lock_note, ds.skipped_note()] if n] + _option_notes(
            config, parts, val_split
        )
        listeners: list[Callback] = []
        if dist_info.main:
            data = data_record(ds, train_split, val_split)
            if resume is None:
                if config.overwrite and run_dir.is_dir():
                    shutil.rmtree(run_dir)  # checked by prepare_run_dir: a vitkit run
                run_dir.mkdir(parents=True, exist_ok=True)
                record = _train_record(config, command, data_root, device, dist_info, parts, data)
                write_json(run_dir / TRAIN_JSON, record)
            else:
                if extended:  # the run's record follows it: a later --resume continues the same way
                    history = [*saved.get("extended", []), {"at_step": state.step, **extended}]
                    record = {**saved, "config": config.to_dict(), "extended": history}
                    write_json(run_dir / TRAIN_JSON, record)
                trim_metrics(run_dir / "metrics.jsonl", state.step)
                notes += [n for n in [data_changed(saved.get("data"), data)] if n]
            listeners = [*_file_listeners(run_dir, config, held), *callbacks]

        meta = _run_meta(config, ds)

        def save(kind: str, st: FitState) -> None:
            if not dist_info.main:
                return
            if kind == "best":
                save_model(run_dir, parts.model, meta)
            else:
                save_checkpoint(
                    run_dir,
                    model=parts.model,
                    optimizer=parts.optimizer,
                    scheduler=parts.scheduler,
                    scaler=parts.scaler,
                    counters=st.to_dict(),
                    device=device,
                )

        start = StartInfo(
            run_dir=run_dir if dist_info.main else None,
            config=config.to_dict(),
            model=config.model,
            model_config=parts.spec.to_dict()["config"],
            params=parts.params,
            gflops=parts.gflops,
            train_size=len(train_split),
            val_size=len(val_split) if val_split else 0,
            steps_per_epoch=parts.steps_per_epoch,
            total_steps=parts.total_steps,
            warmup_steps=parts.warmup_steps,
            device=str(device),
            resumed_from_step=resumed_from,
            world_size=dist_info.world_size,
            extended=extended,
            notes=notes,
            stopped_early_at=early_stop,
        )
        for cb in listeners:
            cb.on_start(start)

        stop = stop or StopFlag()
        t0 = time.perf_counter()
        with (
            sigint_to(stop),
            _diverged(
                run_dir if dist_info.main else None,
                config,
                state,
                t0,
                params=parts.params,
                device=device,
                resumed=resume is not None,
            ),
        ):
            result = fit(
                net,
                config=config,
                train_loader=parts.train_loader,
                val_loader=parts.val_loader,
                optimizer=parts.optimizer,
                scheduler=parts.scheduler,
                scaler=parts.scaler,
                state=state,
                total_steps=parts.total_steps,
                autocast_dtype=parts.autocast,
                callbacks=listeners,
                stop=stop,
                save=save,
                world_size=dist_info.world_size,
            )
        wall = time.perf_counter() - t0

        summary = _summary(result, run_dir, config, state, parts, device, dist_info, wall, notes)
        if resume is not None:
            _carry_over(summary, run_dir / SUMMARY_JSON, wall, trained=result.images > 0)
        end_notes: list[str] = []
        if dist_info.main:  # before the test split is scored: its figures alone come after
            if resume is not None:
                summary["resumed_from_step"] = resumed_from
                end_notes = _stale_evals(run_dir)  # new weights: RUN/eval scored the old ones
            if not plot_curves(run_dir / "metrics.jsonl", run_dir / CURVES_PNG):
                end_notes.append(CURVES_HINT)
            if end_notes:
                summary["notes"] = [*summary.get("notes", []), *end_notes]
        if result.status != "interrupted" and "test" in ds.splits:
            # the run's figures, all but the test split's, should scoring it be cut short
            # (Ctrl-C): a resume completes it. A resume that trained nothing keeps the
            # summary.json it has (its test figures are of the same weights): written now, a
            # Ctrl-C took them
            early = result.images > 0 or not (run_dir / SUMMARY_JSON).is_file()
            if dist_info.main and early:
                write_json(run_dir / SUMMARY_JSON, summary)
            best = _best_model(run_dir, parts.model) if dist_info.main else parts.model
            test = _test(best, ds["test"], config, parts)
            summary["test"] = test
            summary["test_acc"] = test["exact"] if len(test["per_position"]) > 1 else test["acc"]
        if dist_info.main:
            write_json(run_dir / SUMMARY_JSON, summary)
            for cb in listeners:
                cb.on_end(summary)
        return TrainResult(run_dir=run_dir, summary=summary, status=result.status, notes=end_notes)


def _stale_evals(run_dir: Path) -> list[str]:
    """Notes on the run's eval reports (``RUN/eval*``, ``checkpoint/eval-last*``) that scored
    weights a resume has since replaced."""
    return stale_notes([run_dir / MODEL_WEIGHTS, run_dir / CHECKPOINT_DIR / WEIGHTS])


def _training_data(
    config: TrainConfig,
    dist_info: Dist,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    progress: ProgressFn,
) -> Dataset:
    """The run's dataset, checked to be trainable; rank 0 builds the cache, the others read it."""
    if not dist_info.main:
        dist_info.barrier()
    ds = load_dataset(
        config.dataset,
        data_root=data_root,
        download=download,
        progress=progress,
        **config.dataset_options,
    )
    if dist_info.main:
        dist_info.barrier()
    if "train" not in ds.splits:  # a folder: of images to score, with no train/ of its own
        raise UserError(
            f"dataset '{config.dataset}' has no train split to train on (it has: "
            f"{', '.join(ds.splits)}); a folder: dataset trains on PATH/train/<class>/"
        )
    if ds.num_classes < 2:  # every prediction right by construction: 100% and meaningless
        raise UserError(
            f"dataset '{config.dataset}' has {ds.num_classes} class ({', '.join(ds.classes)}); "
            "a classifier needs two or more"
        )
    return ds


def _build(
    config: TrainConfig,
    ds: Dataset,
    train_split: Split,
    val_split: Split | None,
    device: torch.device,
    dist_info: Dist,
) -> _Parts:
    """The model (through the registry, sized by the data), loaders, optimizer and schedule."""
    spec = resolve_spec(
        config.model,
        image_size=ds.image_size,
        in_chans=ds.channels,
        num_classes=ds.num_classes,
        # 1 is every model's default: a preset with no num_outputs option trains too
        num_outputs=ds.num_outputs if ds.num_outputs > 1 else None,
        **config.model_overrides,
    )
    model = spec.build().to(device)
    # from the model (any registered family's Model), not from a ViTConfig's analytic sizes
    flops = model_flops(model)
    augment = AugmentConfig.preset(
        ds.spec.augment if config.augment else "none",
        ds.image_size,
        mixup=config.mixup,
        cutmix=config.cutmix,
    )
    loader_args: dict[str, Any] = dict(
        mean=ds.mean, std=ds.std, num_classes=ds.num_classes, device=device
    )
    try:
        train_loader = DeviceLoader(
            train_split,
            batch_size=config.batch_size,
            augment=augment,
            seed=config.seed,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
            **loader_args,
        )
    except ConfigError as e:
        most = len(train_split) // dist_info.world_size  # what a step can take (drop_last)
        fix = f"; use {setting('batch_size', most)} or less" if most >= 1 else ""
        raise ConfigError(f"{e} of {config.dataset}'s training split{fix}") from None
    val_loader = (
        DeviceLoader(
            val_split,
            batch_size=config.eval_batch_size,
            shuffle=False,
            drop_last=False,
            **loader_args,
        )
        if val_split is not None
        else None
    )
    optimizer = build_optimizer(
        model, lr=config.lr, weight_decay=config.weight_decay, device=device
    )
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    warmup_steps = int(config.warmup_epochs * steps_per_epoch)
    scheduler = build_scheduler(
        optimizer,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        lr=config.lr,
        min_lr=config.min_lr,
    )
    autocast = autocast_dtype(device, config.amp)
    return _Parts(
        spec=spec,
        model=model,
        params=model.num_params(),
        gflops=None if flops is None else flops / 1e9,
        train_loader=train_loader,
        val_loader=val_loader,
        loader_args=loader_args,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if autocast == torch.float16 else None,
        autocast=autocast,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
    )


def _restore(
    run_dir: Path,
    config: TrainConfig,
    parts: _Parts,
    extended: dict[str, Any],
    device: torch.device,
) -> FitState:
    """The checkpoint's weights, optimizer, schedule and counters; for an extended run, the
    new schedule from the step the run is at."""
    state = FitState(
        **load_checkpoint(
            run_dir,
            model=parts.model,
            optimizer=parts.optimizer,
            scheduler=parts.scheduler,
            scaler=parts.scaler,
            device=device,
        )
    )
    if extended:
        # an early-stopped run given more epochs or steps: its patience counts afresh. A new
        # patience alone counts on, as if the run had had it from the start
        before = extended.get("patience", [config.patience])[0]
        afresh = bool(set(extended) - {"patience"}) and state.patience_spent(before)
        _check_extension(run_dir, config, state, extended, afresh=afresh)
        if afresh:
            state.epochs_since_best = 0
        # the new schedule from this step on: the optimizer's saved lr is the old schedule's
        scheduler = parts.scheduler
        for group, base, fn in zip(
            parts.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
        ):
            group["lr"] = base * fn(scheduler.last_epoch)
    return state


def _wrap(
    model: torch.nn.Module, config: TrainConfig, dist_info: Dist, device: torch.device
) -> torch.nn.Module:
    """The module the loop steps: ``model`` under DistributedDataParallel and/or torch.compile."""
    net: torch.nn.Module = model
    if dist_info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        # inductor's C++ build warns "No CUDA runtime is found, using CUDA_HOME" on CPU-only hosts
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        net = torch.compile(net)  # type: ignore[assignment]
    return net


def _option_notes(config: TrainConfig, parts: _Parts, val_split: Split | None) -> list[str]:
    """Options that do not do what their user may think, in this run."""
    notes = []
    if parts.warmup_steps >= parts.total_steps > 0:
        notes.append(
            f"the warm-up ({config.warmup_epochs:g} {plural(config.warmup_epochs, 'epoch')}, "
            f"{parts.warmup_steps:,} {plural(parts.warmup_steps, 'step')}) is as long as the "
            f"whole run ({parts.total_steps:,} {plural(parts.total_steps, 'step')}): the lr "
            f"climbs towards {config.lr:g} all run long and never decays "
            f"({setting('warmup_epochs')} sets it)"
        )
    if config.patience and val_split is None:  # early stopping watches validation accuracy
        notes.append(
            f"{setting('patience', config.patience)} does nothing here: there is no validation "
            f"split ({setting('val_fraction', 0)}), so the run trains all its epochs"
        )
    return notes


def _train_record(
    config: TrainConfig,
    command: list[str] | None,
    data_root: str | os.PathLike[str] | None,
    device: torch.device,
    dist_info: Dist,
    parts: _Parts,
    data: dict[str, Any],
) -> dict[str, Any]:
    """A new run's train.json: the resolved config, command line, machine, model and data."""
    return {
        # a relative folder: path as an absolute one, so --resume works from any directory
        # (model.json records it so for eval, export and bench)
        "config": {**config.to_dict(), "dataset": absolute_name(config.dataset)},
        "command": command or sys.argv,
        # absolute too: a resume from another directory reads the same data root
        "data_root": str(Path(data_root).expanduser().absolute()) if data_root else None,
        "machine": machine_info(device),
        "world_size": dist_info.world_size,
        "model": parts.spec.to_dict(),
        "data": data,
    }


def _file_listeners(
    run_dir: Path, config: TrainConfig, held: contextlib.ExitStack
) -> list[Callback]:
    """metrics.jsonl, and TensorBoard when asked (its writer closed on any exit of ``held``)."""
    listeners: list[Callback] = [MetricsFile(run_dir / "metrics.jsonl")]
    if config.tensorboard:
        board = TensorBoard(run_dir / "tb")
        held.callback(board.writer.close)  # also when the run stops on an error
        listeners.append(board)
    return listeners


def _run_meta(config: TrainConfig, ds: Dataset) -> dict[str, Any]:
    """What model.json records beside the model: the data it was trained on and its input."""
    return {
        "dataset": config.dataset,
        "dataset_options": ds.options,
        "classes": ds.classes,
        "image_size": ds.image_size,
        "channels": ds.channels,
        "num_outputs": ds.num_outputs,
        "mean": ds.mean,
        "std": ds.std,
        "input_layout": "NCHW, float32, (x/255 - mean)/std",
    }


def _summary(
    result: FitResult,
    run_dir: Path,
    config: TrainConfig,
    state: FitState,
    parts: _Parts,
    device: torch.device,
    dist_info: Dist,
    wall: float,
    notes: list[str],
) -> dict[str, Any]:
    """summary.json's figures for a run that ended (the test split's are added after)."""
    gflops = parts.gflops
    summary: dict[str, Any] = {
        **_summary_head(result.status, run_dir, config, state, params=parts.params, device=device),
        "gflops_per_image": None if gflops is None else round(gflops, 5),
        "last_val": result.last_val,
        "train_images_per_s": round(result.images_per_s, 1),
        "train_gflops_per_s": None
        if gflops is None
        else round(result.images_per_s * 3 * gflops, 2),
        # --compile compiles in the first step: the throughput without it, and its time
        "compiled": config.compile,
        "train_images_per_s_after_first_step": _rounded(result.images_per_s_after_first_step),
        "first_step_seconds": round(result.first_step_seconds, 3),
        "wall_seconds": round(wall, 2),
        "world_size": dist_info.world_size,
    }
    if notes:
        summary["notes"] = notes
    if dist_info.world_size > 1:
        summary["ddp"] = _ddp_weights_check(parts.model, device)
    summary["wall_seconds_total"] = summary["wall_seconds"]
    return summary


def _test(
    model: torch.nn.Module, split: Split, config: TrainConfig, parts: _Parts
) -> dict[str, Any]:
    """The test split's figures for ``model`` (the best weights), as the run evaluates."""
    loader = DeviceLoader(
        split,
        batch_size=config.eval_batch_size,
        shuffle=False,
        drop_last=False,
        **parts.loader_args,
    )
    return evaluate_loader(model, loader, parts.autocast)


def _resumed_config(
    run_dir: Path, extend: Mapping[str, int] | None
) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """The config of the run to resume (its train.json), checked, with ``extend`` applied;
    with train.json's content and the changes ``extend`` made (``{name: [old, new]}``)."""
    extended: dict[str, Any] = {}
    if not (run_dir / TRAIN_JSON).is_file():
        raise UserError(f"nothing to resume in {run_dir}: no {TRAIN_JSON}")
    if not checkpoint_exists(run_dir):
        raise UserError(
            f"nothing to resume in {run_dir}: no checkpoint "
            f"({CHECKPOINT_DIR}/{WEIGHTS} and {CHECKPOINT_DIR}/{STATE})"
        )
    saved = read_json(run_dir / TRAIN_JSON)
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise UserError(f"{run_dir / TRAIN_JSON} holds no training config")
    if (run_dir / MODEL_JSON).exists():  # the best weights so far must survive the resume
        _check_model_json(run_dir, saved.get("model"))
        load_weights(run_dir / MODEL_WEIGHTS)
    # the run continues where it is now, even when it was copied or moved since it began
    try:
        config = replace(TrainConfig.from_dict(saved["config"]), out=str(run_dir))
        config.validate()
    except (TypeError, ValueError, AttributeError) as e:  # valid JSON, wrong types
        raise UserError(f"{run_dir / TRAIN_JSON} holds a damaged config: {first_line(e)}") from None
    check_registered(config.model, run_dir / TRAIN_JSON)  # a run with no model.json yet
    config = _typed_dataset_options(config, saved)
    root = saved.get("data_root")
    if root is not None and not isinstance(root, str):
        raise UserError(f"{run_dir / TRAIN_JSON}: data_root must be a path, got {root!r}")
    if extend:
        bad = sorted(set(extend) - set(EXTENDABLE))
        if bad:
            raise UserError(
                f"a resumed run can change only {', '.join(EXTENDABLE[:-1])} and "
                f"{EXTENDABLE[-1]}, not {', '.join(bad)}"
            )
        before = {k: getattr(config, k) for k in extend}
        config = TrainConfig.from_dict({**config.to_dict(), **extend})
        config.validate()
        after = {k: getattr(config, k) for k in extend}  # np.int64(60) read as 60: JSON
        extended = {k: [before[k], after[k]] for k in extend if before[k] != after[k]}
    return config, saved, extended


def _typed_dataset_options(config: TrainConfig, saved: dict[str, Any]) -> TrainConfig:
    """``config`` with train.json's dataset options in the types ``load_dataset`` takes
    (``catalog.recorded_options``: a run from before types were checked may record grid "3").
    The data record's cache key (``saved["data"]``) follows: the images are the same ones, not
    data changed since the run began."""
    try:
        spec = get_dataset_spec(config.dataset)
    except UserError:
        return config  # precheck names it
    typed = recorded_options(spec, config.dataset_options)
    record = saved.get("data")
    if isinstance(record, dict):
        before = cache_key(cache_options(spec, config.dataset_options))
        if record.get("cache_key") == before:
            record["cache_key"] = cache_key(cache_options(spec, typed))
    return replace(config, dataset_options=typed)


def _check_model_json(run_dir: Path, trained: Any) -> None:
    """The run's model.json, readable as `vitkit eval` reads it and of the model train.json
    records (``trained``), or a UserError naming it: a resume that replaces no best weights
    keeps it as it is."""
    meta_path = run_dir / MODEL_JSON
    _, spec = read_meta(meta_path)
    try:
        ours = ModelSpec.from_dict(trained) if isinstance(trained, dict) else None
    except (UserError, TypeError, ValueError):  # train.json's own record damaged: not this check
        ours = None
    if ours is None or spec == ours:
        return
    if spec.name != ours.name:
        differs = f"{spec.name}, not {ours.name}"
    else:
        mine, theirs = spec.to_dict()["config"], ours.to_dict()["config"]
        differs = ", ".join(f"{k} {mine[k]}, not {theirs[k]}" for k in mine if mine[k] != theirs[k])
    raise UserError(f"{meta_path} describes another model than {run_dir / TRAIN_JSON}: {differs}")


def _carry_over(summary: dict[str, Any], previous: Path, wall: float, *, trained: bool) -> None:
    """A resumed run's summary from the one before it: ``wall_seconds_total`` adds up every
    segment of an interrupted and resumed run (``wall_seconds``: this one); a resume with
    nothing left to train keeps the run's own figures. An unreadable summary adds nothing."""
    if not previous.is_file():
        return
    with contextlib.suppress(UserError):
        prev = read_json(previous)
        if not isinstance(prev, dict):
            return
        spent = prev.get("wall_seconds_total", prev.get("wall_seconds"))
        if not isinstance(spent, (int, float)) or isinstance(spent, bool):
            spent = None
        if spent is not None:
            summary["wall_seconds_total"] = round(spent + wall, 2)
        if not trained:
            kept = (
                "last_val",
                "train_images_per_s",
                "train_gflops_per_s",
                "train_images_per_s_after_first_step",
                "first_step_seconds",
                "wall_seconds",
            )
            summary.update({k: prev[k] for k in kept if k in prev})
            if spent is not None:
                summary["wall_seconds_total"] = spent


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _summary_head(
    status: str,
    run_dir: Path | None,
    config: TrainConfig,
    state: FitState,
    *,
    params: int,
    device: torch.device,
) -> dict[str, Any]:
    """What every summary.json starts with, however the run ended."""
    return {
        "status": status,
        "run_dir": str(run_dir),
        "dataset": config.dataset,
        "model": config.model,
        "params": params,
        "device": str(device),
        "epochs_done": state.epoch,
        "steps": state.step,
        "best_val_acc": state.best_acc,
        "best_epoch": state.best_epoch + 1 if state.best_epoch >= 0 else None,  # 1-based
    }


@contextlib.contextmanager
def _diverged(
    run_dir: Path | None,
    config: TrainConfig,
    state: FitState,
    t0: float,
    *,
    params: int,
    device: torch.device,
    resumed: bool,
) -> Iterator[None]:
    """A non-finite loss ends the run with a summary.json that says so (status "diverged", the
    error, the checkpoint kept), as every other ending has one; the error is raised again, with
    that summary on it for the CLI's --json. A resumed run that wrote new best or last weights
    before it diverged names the eval reports they made stale (``notes``), as one that ends."""
    try:
        yield
    except NonFiniteLoss as e:
        e.summary = {
            **_summary_head("diverged", run_dir, config, state, params=params, device=device),
            "error": str(e),
            "checkpoint_step": state.checkpoint_step,
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
        if run_dir is not None:
            e.notes = _stale_evals(run_dir) if resumed else []
            if e.notes:
                e.summary["notes"] = list(e.notes)
            write_json(run_dir / SUMMARY_JSON, e.summary)
        raise


def stopped_early(state: FitState, config: TrainConfig) -> bool:
    """A run that its patience stopped before its last epoch (and before any --max-steps cap):
    resumed as it is, it trains nothing (``fit`` returns at once)."""
    capped = bool(config.max_steps) and state.step >= config.max_steps
    return (
        state.batch == 0
        and state.patience_spent(config.patience)
        and state.epoch < config.epochs
        and not capped
    )


def _check_extension(
    run_dir: Path,
    config: TrainConfig,
    state: FitState,
    extended: dict[str, Any],
    *,
    afresh: bool = False,
) -> None:
    """An extension must leave the run something to do: refuse one that would train nothing.
    ``afresh``: the run had stopped early and its patience counts afresh."""
    if "epochs" in extended and config.epochs <= state.epoch:
        before = replace(config, **{k: old for k, (old, _) in extended.items()})
        if stopped_early(state, before):  # its patience ended it: say so, and both ways on
            waited, patience = state.epochs_since_best, before.patience
            raise UserError(
                f"{run_dir} stopped early at epoch {state.epoch} of {before.epochs} (no better "
                f"validation accuracy in its last {patience} {plural(patience, 'epoch')}): "
                f"{setting('epochs', config.epochs)} trains nothing; to train on, resume with "
                f"{setting('epochs')} more than {state.epoch} (the patience count restarts), or "
                f"{setting('patience')} alone more than {waited} (or {setting('patience', 0)} "
                "for no early stopping)"
            )
        raise UserError(
            f"{run_dir} has done {state.epoch} epoch(s); {setting('epochs')} must be more to "
            "train further"
        )
    if config.max_steps and state.step >= config.max_steps:
        hint = f"a larger {setting('max_steps')}, or {setting('max_steps', 0)} for none"
        cap = setting("max_steps") if "max_steps" in extended else f"its {setting('max_steps')} cap"
        raise UserError(
            f"{run_dir} is at step {state.step}, at or past {cap} ({config.max_steps}): pass "
            f"{hint} to train further"
        )
    if "patience" not in extended or afresh:
        return
    if set(extended) == {"patience"} and state.epoch >= config.epochs:
        raise UserError(
            f"{run_dir} has trained all its {config.epochs} {plural(config.epochs, 'epoch')}: "
            f"a new {setting('patience')} alone trains no further; pass "
            f"{setting('epochs')} (more than {config.epochs}) to train further"
        )
    waited = state.epochs_since_best
    if state.batch == 0 and state.patience_spent(config.patience):
        raise UserError(
            f"{run_dir} has gone {waited} {plural(waited, 'epoch')} without a better validation "
            f"accuracy: {setting('patience')} must be more than {waited} (or "
            f"{setting('patience', 0)} for no early stopping) to train further"
        )


def _best_model(run_dir: Path, model: torch.nn.Module) -> torch.nn.Module:
    """The best-by-validation weights (model.safetensors), in a fresh copy of the model."""
    if not (run_dir / MODEL_WEIGHTS).exists():
        return model
    best = unwrap(model).spec.build().to(next(model.parameters()).device)
    try:
        best.load_state_dict(load_weights(run_dir / MODEL_WEIGHTS))
    except RuntimeError as e:  # another model's weights copied in
        raise UserError(
            f"{run_dir / MODEL_WEIGHTS} does not fit this run's model: {state_dict_mismatch(e)}"
        ) from None
    return best.eval()


def _ddp_weights_check(model: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    """Every rank's weight checksum, gathered: DDP keeps replicas identical, this proves it."""
    import torch.distributed as dist

    with torch.no_grad():
        s = torch.stack([p.double().sum() for p in model.parameters()]).sum().reshape(1)
        s = s.to(device)
    gathered = [torch.zeros_like(s) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, s)
    sums = [float(g) for g in gathered]
    return {"rank_weight_checksums": sums, "in_sync": len(set(sums)) == 1}


def _broadcast_path(path: Path) -> Path:
    import torch.distributed as dist

    obj = [str(path)]
    dist.broadcast_object_list(obj, src=0)
    return Path(obj[0])
