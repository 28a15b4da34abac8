"""The run directory format and the one way vitkit writes files (atomically).

Layout (docs/train.md, "The run directory")::

    runs/<name>/model.json          spec, classes, preprocessing
    runs/<name>/model.safetensors   weights
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vitkit.models import ModelSpec


def umask() -> int:
    """The process umask. Linux shows it in /proc/self/status; elsewhere reading it means
    setting it, which another thread could see for an instant, so that is the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file(path: Path, suffix: str) -> tuple[int, str]:
    """A temp file beside ``path`` with the mode a plain ``open()`` would give (``mkstemp``
    makes it 0600, which would leave runs and exports unreadable to other users)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:  # name the file being written, not the temp name nobody asked for
        raise OSError(e.errno, e.strerror, str(path)) from None
    with contextlib.suppress(OSError):  # a file system without modes: keep mkstemp's
        os.chmod(tmp, 0o666 & ~umask())
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; on success fsync it and ``os.replace`` it into place.

    On any exception the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp = _new_file(path, ".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``path`` for libraries that write by file name; rename on success."""
    path = Path(path)
    fd, tmp = _new_file(path, path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Staged:
    """Files written together, all or nothing: ``write`` puts each in a temp file beside its
    name (fsynced); ``commit`` then renames them all into place in one quick pass, in the order
    written (write the file that describes the others last), with Ctrl-C held off until the
    pass is done, and then removes ``removals``; a rename or removal that fails puts back every
    file changed before it. As a context manager: an exception or Ctrl-C before the commit
    removes the temp files and changes nothing."""

    def __init__(self) -> None:
        self._temps: list[tuple[str, Path]] = []  # (temp file, its name), in the order written

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()  # after a commit: nothing left; after a failure: the temp files

    def write(self, path: str | os.PathLike[str], data: bytes | str) -> None:
        """``data`` in a temp file beside ``path``, fsynced; ``path`` itself is not touched."""
        path = Path(path)
        fd, tmp = _new_file(path, ".tmp")
        self._temps.append((tmp, path))  # first: discard removes it, half-written or not
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())

    def commit(self, removals: Iterable[Path] = ()) -> None:
        """Rename every file written into place, then remove ``removals`` (those not written):
        all of it, or, when a rename or removal fails (an OSError: a full or read-only disk, a
        folder under the name, no permission), none of it.

        Before the pass, the file each name holds is kept under a hidden name beside it
        (``_keep``: a hard link, a copy where there are none). If a step then fails, every name
        already changed gets its file back (a name that held none is removed again), the temp
        files left and the kept files are removed, and the step's error is raised; on success
        the kept files are removed. A file that cannot be put back either (the disk failed
        under us) stays under its hidden name, for the user to recover; the error raised is
        still the step's."""
        written = [path for _, path in self._temps]
        removed = [path for path in dict.fromkeys(removals) if path not in written]
        kept: dict[Path, Path | None] = {}  # each name -> its file before the pass, or None
        changed: list[Path] = []  # the names renamed onto or removed, in order
        with _ctrl_c_deferred():
            try:
                for path in [*written, *removed]:
                    if path not in kept:
                        kept[path] = _keep(path)
                while self._temps:
                    tmp, path = self._temps[0]
                    os.replace(tmp, path)
                    self._temps.pop(0)
                    changed.append(path)
                for path in removed:
                    path.unlink(missing_ok=True)
                    changed.append(path)
            except BaseException:
                for path in reversed(dict.fromkeys(changed)):
                    # out of `kept`: the rename back uses it up, or, if that fails too, it
                    # holds the only copy of the earlier file and must not be removed below
                    backup = kept.pop(path)
                    with contextlib.suppress(OSError):
                        if backup is None:
                            path.unlink(missing_ok=True)
                        else:
                            os.replace(backup, path)
                self.discard()
                raise
            finally:
                for backup in kept.values():
                    if backup is not None:
                        with contextlib.suppress(OSError):  # a stray hidden file, no more
                            backup.unlink()

    def discard(self) -> None:
        """Remove the temp files not yet renamed."""
        for tmp, _ in self._temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._temps.clear()


def _keep(path: Path) -> Path | None:
    """The file ``path`` holds, kept under a hidden name beside it (``.NAME.XXXXXXXX.bak``) for
    ``Staged.commit`` to put back; None when there is none. A hard link: nothing is copied and
    ``path`` is not touched. Where linking is impossible (FAT and exFAT, some network shares
    and FUSE file systems; Linux's protected_hardlinks for another user's file), a copy: slower
    and a second copy's space, but only there, and ``path`` keeps a whole file at every moment,
    which moving it aside would not give (a reader, or a crash in the pass, would find no file).
    A symlink is kept as a link (a dangling one too), never as a copy of what it points to.
    A copy that fails too (a read-only disk or folder, a folder under the name) is raised,
    naming ``path``: nothing has changed yet, and the renames could not have been undone."""
    try:
        return _fresh_backup(path, lambda backup: os.link(path, backup, follow_symlinks=False))
    except FileNotFoundError:
        return None
    except (OSError, NotImplementedError):
        pass
    if os.path.islink(path):  # the link itself, as the hard link keeps it: not what it points to
        try:
            target = os.readlink(path)
            return _fresh_backup(path, lambda backup: os.symlink(target, backup))
        except FileNotFoundError:  # gone since: nothing to keep
            return None
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(path)) from None
    fd, tmp = _new_file(path, ".bak")
    os.close(fd)
    try:
        shutil.copy2(path, tmp)  # the bytes, the mode and the times
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        if not os.path.lexists(path):  # gone since: nothing to keep
            return None
        raise OSError(e.errno, e.strerror, str(path)) from None  # the name, not the temp's
    return Path(tmp)


def _fresh_backup(path: Path, make: Callable[[Path], None]) -> Path:
    """``make(backup)`` for a hidden name beside ``path`` (``.NAME.XXXXXXXX.bak``), a fresh
    random one until one is free, as mkstemp does; ``make``'s other errors are raised."""
    for _ in range(100):
        backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.bak")
        try:
            make(backup)
            return backup
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free backup name", str(path))


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Ctrl-C during the block is raised when it ends, not in the middle of it. Only on the main
    thread (the one Python runs signal handlers in) while Python's own handler is installed; a
    program with a handler of its own keeps it, and the block runs as it is."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as ``None``: ``json`` would write a bare ``NaN``,
    which is not JSON and which strict parsers (jq, JavaScript, Go) reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """``obj`` as indented JSON (NaN and infinities as null), ending in a newline."""
    return json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON (NaN and infinities as null), atomically."""
    with atomic_write(path, "w") as f:
        f.write(json_text(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, turning a missing or corrupt file into a one-line ``UserError``."""
    from vitkit.errors import UserError

    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"corrupt JSON in {path}: {e}") from None


def file_in_the_way(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists and is not a folder (None: all fine)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_writable(folder: Path, what: str) -> None:
    """Make (and remove) a file in ``folder``'s nearest existing ancestor; a one-line
    ``UserError`` naming ``what`` (the option, say) if that fails. For checks before long work
    whose files are written at its end."""
    from vitkit.errors import UserError

    there = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if there is None:
        return
    try:
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as e:
        raise UserError(f"cannot write to {there} ({what}): {e.strerror}") from None


# -- weights and the run directory ---------------------------------------------------------------
MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"
EVAL_JSON = "eval.json"  # what `vitkit eval` writes in its report folder
RUNS_DIR = Path("runs")  # where runs go (train) and are looked for (export, bench)
DEFAULT_EVAL_BATCH_SIZE = 256  # when the run does not say (train.json's eval_batch_size)


def unwrap(model: Any) -> Any:
    """The plain module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and type(model).__name__ == "DistributedDataParallel":
            model = model.module
        else:
            return model


def cpu_fp32(model: Any) -> Any:
    """The plain module (``unwrap``) in fp32 on the CPU: itself when it is, else a copy (the
    caller's model stays where it was)."""
    import copy

    import torch

    module = unwrap(model)
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in module.parameters()):
        module = copy.deepcopy(module).to("cpu", torch.float32)
    return module


def save_weights(
    path: str | os.PathLike[str], model: Any, metadata: dict[str, str] | None = None
) -> None:
    """A module's state dict as safetensors, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    blob = save(state, metadata=metadata)
    with atomic_write(path) as f:
        f.write(blob)


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A safetensors state dict; missing or corrupt files become one-line ``UserError``s."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from vitkit.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing weights file: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"corrupt weights file {path}: {e}") from None


def save_model(run_dir: str | os.PathLike[str], model: Any, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` (spec + ``meta``: classes, preprocessing)."""
    import datetime

    import vitkit

    run_dir = Path(run_dir)
    spec = unwrap(model).spec
    save_weights(run_dir / MODEL_WEIGHTS, model)
    write_json(
        run_dir / MODEL_JSON,
        {
            **spec.to_dict(),
            **meta,
            "vitkit_version": vitkit.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


@dataclass
class LoadedModel:
    """A model with what it needs to be used: classes and preprocessing, from model.json."""

    model: Any  # a vitkit Model in eval mode, or an OnnxModule for an exported .onnx file
    spec: ModelSpec
    classes: list[str]
    image_size: int
    channels: int
    mean: list[float]
    std: list[float]
    dataset: str | None
    meta: dict[str, Any]
    path: Path
    # the .safetensors loaded when it is not the run's best weights (checkpoint/last.safetensors,
    # weights=): what export and bench write then goes beside it, not over the run's own files
    weights_file: Path | None = None

    @property
    def num_outputs(self) -> int:
        return int(getattr(self.spec.config, "num_outputs", 1))  # a family without it: 1

    @property
    def onnx_file(self) -> str | None:
        """The .onnx file ONNX Runtime runs for this model (an ``OnnxModule``), or None for a
        PyTorch one."""
        return str(self.model.path) if hasattr(self.model, "session") else None

    @property
    def model_file(self) -> Path | None:
        """The file this model was loaded from: the .onnx ONNX Runtime runs, else the
        .safetensors (``weights_file``, or the run's model.safetensors); None for a model built
        in memory (no model.json behind it)."""
        if self.onnx_file is not None:
            return Path(self.onnx_file)
        if self.weights_file is not None:
            return self.weights_file
        own = self.path / MODEL_WEIGHTS
        return own if self.meta and own.is_file() else None

    @property
    def run_dir(self) -> Path | None:
        """The run directory this model comes from: ``path`` for a run; for an ONNX file, the
        run it was exported into (``RUN/export/*.onnx``, or ``RUN/checkpoint/export-last/*.onnx``
        for the last checkpoint's weights), or None when it is elsewhere."""
        if self.onnx_file is None:
            return self.path
        file = Path(self.onnx_file)
        # as given first (predict --json names the run as the user spelled it, as for a run
        # directory), then absolute; a linked RUN/export: the link's run, then the target's
        for folder in (file.parent, Path(os.path.abspath(file)).parent, file.resolve().parent):
            for run in (folder.parent, folder.parent.parent):
                if run != folder and (run / MODEL_JSON).is_file():  # "." is not its own run
                    return run
        return None

    def output_dir(self, kind: str) -> Path:
        """Where ``kind`` (eval, export, bench) writes what it makes of these weights:
        ``RUN/<kind>`` for the run's own (best) weights, and beside any other weights file of
        the run, ``<its folder>/<kind>-<its stem>`` (``RUN/checkpoint/eval-last``), so that
        they never replace the run's own reports and exports."""
        w = self.weights_file
        return self.path / kind if w is None else w.parent / f"{kind}-{w.stem}"

    def dataset_source(self) -> tuple[str, dict[str, Any]] | None:
        """The dataset the model was trained on as ``load_dataset`` takes it, or None: its name
        (a ``folder:`` dataset by the absolute path recorded at training, so it opens from any
        directory) and the recorded options it accepts. eval, export and bench all use this."""
        from vitkit.data.catalog import FOLDER_PREFIX, get_dataset_spec, recorded_options

        if not self.dataset:
            return None
        name, spec = self.dataset, get_dataset_spec(self.dataset)
        recorded = self.meta.get("dataset_options") or {}
        options = recorded_options(spec, {k: v for k, v in recorded.items() if k in spec.options})
        if name.startswith(FOLDER_PREFIX) and recorded.get("path"):
            name = FOLDER_PREFIX + str(recorded["path"])
        return name, options

    def run_settings(self) -> dict[str, Any]:
        """What the run's train.json says about evaluating it: ``data_root``, ``batch_size``
        (its eval batch size) and ``amp``; defaults where it is absent or damaged. For an
        exported .onnx file in ``RUN/export/`` (``path`` is that folder), RUN's."""
        path = (self.run_dir or self.path) / "train.json"
        doc = read_json(path) if path.is_file() else {}
        saved: dict[str, Any] = doc if isinstance(doc, dict) else {}
        config: dict[str, Any] = saved["config"] if isinstance(saved.get("config"), dict) else {}
        root, batch = saved.get("data_root"), config.get("eval_batch_size")
        from vitkit.errors import is_count

        ok_batch = is_count(batch)
        return {  # a damaged train.json: the defaults, not a traceback
            "data_root": root if isinstance(root, str) and root else None,
            "batch_size": batch if ok_batch else DEFAULT_EVAL_BATCH_SIZE,
            "amp": config.get("amp") is True,
        }


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_meta(meta: Any) -> Any:
    """The ModelSpec of a model.json, after checking the fields vitkit reads from it."""
    from vitkit.models import ModelSpec

    if not isinstance(meta, dict):
        raise TypeError(f"it holds {type(meta).__name__}, not an object")
    if not isinstance(meta.get("model"), str) or not isinstance(meta.get("config"), dict):
        raise TypeError("'model' must be a name and 'config' an object")
    spec = ModelSpec.from_dict(meta)
    channels = spec.config.in_chans
    classes = meta.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise TypeError("'classes' must be a list of names")
    if classes and len(classes) != spec.config.num_classes:  # else: wrong labels, or IndexError
        raise ValueError(
            f"it names {len(classes)} classes for a model of {spec.config.num_classes} outputs"
        )
    for key in ("mean", "std"):  # the normalisation it was trained with: no guess will do
        v = meta.get(key)
        if not (isinstance(v, list) and len(v) == channels and all(map(_finite_number, v))):
            raise TypeError(f"'{key}' must be {channels} finite number(s), got {v!r}")
    if any(x <= 0 for x in meta["std"]):
        raise ValueError(f"'std' must be positive, got {meta['std']!r}")
    if meta.get("dataset") is not None and not isinstance(meta["dataset"], str):
        raise TypeError(f"'dataset' must be a name, got {meta['dataset']!r}")
    if not isinstance(meta.get("dataset_options") or {}, dict):
        raise TypeError("'dataset_options' must be an object")
    return spec


def read_meta(meta_path: Path) -> tuple[Any, Any]:
    """A run's model.json and its ModelSpec (``check_meta``), or a one-line ``UserError`` naming
    the file: damaged, or naming a model this process has not registered (``check_registered``:
    a user's model, whose module was not imported)."""
    from vitkit.errors import UserError, first_line
    from vitkit.models import check_registered

    meta = read_json(meta_path)
    if isinstance(meta, dict) and isinstance(meta.get("model"), str):
        check_registered(meta["model"], meta_path)
    try:
        spec = check_meta(meta)
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # valid JSON, wrong shape
        raise UserError(f"{meta_path} is not a valid model.json: {first_line(e)}") from None
    except UserError as e:
        raise UserError(f"{meta_path} is not a valid model.json: {e}") from None
    return meta, spec


def is_onnx_file(path: str | os.PathLike[str]) -> bool:
    """A .onnx file (a run directory may be named ``x.onnx``)."""
    return Path(path).suffix == ".onnx" and Path(path).is_file()


def latest_run(runs: str | os.PathLike[str] = RUNS_DIR, *, model_option: bool = True) -> Path:
    """The most recently written run directory (by its model.json) under ``runs``.

    ``model_option``: the caller also takes ``--model NAME`` (export, bench), so the error for
    no runs offers it; eval's does not, where it could not be followed."""
    from vitkit.errors import UserError

    runs = Path(runs)
    found = _runs_in(runs)
    if not found:
        where = f"{runs}/ has no run directories" if runs.is_dir() else f"no {runs}/ directory here"
        raise UserError(
            f"no run given and none found: {where}; train one with `vitkit train mnist-mini` "
            + (
                "(or pass RUN, or --model NAME for an untrained model)"
                if model_option
                else "(or pass RUN)"
            )
        )
    return found[0]


def _runs_in(folder: Path) -> list[Path]:
    """The run directories in ``folder``, most recently written (by model.json) first."""
    made = [p for p in folder.glob(f"*/{MODEL_JSON}") if p.is_file()]
    return [p.parent for p in sorted(made, key=lambda p: p.stat().st_mtime, reverse=True)]


def _run_holding(file: Path) -> Path | None:
    """The run directory a JSON file other than model.json lies in (train.json, summary.json,
    export/export.json, eval/eval.json; its folder or the one above), else None: a run's
    other files, passed for its model, were "not a valid model.json: 'model' must be a name"."""
    if file.name == MODEL_JSON:
        return None
    for run in (file.parent, Path(os.path.normpath(file.parent / os.pardir))):  # `.` -> `..`
        if (run / MODEL_JSON).is_file():
            return run
    return None


def _not_a_run(folder: Path) -> str:
    """Why a folder with no model.json is not a run, with the path the user likely meant."""
    if (folder / "export.json").is_file() or any(folder.glob("*.onnx")):
        run = Path(os.path.normpath(folder / os.pardir))  # `.` -> `..`, not `.`
        hint = f"pass its run, {run}" if (run / MODEL_JSON).is_file() else "pass a run"
        also = "eval and predict also take its .onnx files"
        return f"{folder} is an export folder, not a run: {hint} ({also})"
    runs = _runs_in(folder)
    if runs:
        named = ", ".join(str(r) for r in runs[:3]) + (", ..." if len(runs) > 3 else "")
        return f"{folder} holds runs, it is not one: pass one of them ({named})"
    return f"not a run directory (no {MODEL_JSON}): {folder}"


def load_model(
    path: str | os.PathLike[str], *, device: str = "cpu", weights: str | None = None
) -> LoadedModel:
    """Load a run directory (or a model.json next to its model.safetensors) for inference.

    ``weights`` picks another safetensors file in the run (e.g. ``checkpoint/last.safetensors``).
    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that is not here is a ``UserError``.
    A ``.onnx`` file made by ``vitkit export`` loads too, to run with ONNX Runtime on the CPU
    (its classes and preprocessing come from its metadata).

    Returns a ``LoadedModel``: ``.model`` (in eval mode, on ``device``), ``.classes``,
    ``.image_size``, ``.channels``, ``.mean``, ``.std``, ``.spec``, ``.path``. Raises
    ``UserError`` for a path that is missing or not a run (or not a path: ``str`` or
    ``os.PathLike``), a model.json it cannot read, weights that do not fit it, a device that
    is not here, or a ``device`` or ``weights`` of the wrong type.
    """
    from vitkit.errors import UserError, check_name, check_path, state_dict_mismatch

    what = "the path of a run directory, model.json, .safetensors or .onnx file"
    check_path("path", path, what=what)  # Path(5) was pathlib's TypeError
    check_name("device", device)  # before an .onnx file's on_cpu(device), which has no check
    check_path("weights", weights, optional=True)  # run_dir / 5 was a TypeError
    path = Path(path)
    if not path.exists():
        raise UserError(f"no such run or model file: {path}")
    if is_onnx_file(path):
        return _load_onnx(path, device=device, weights=weights)
    if path.is_dir():
        run_dir, meta_path = path, path / MODEL_JSON
        if not meta_path.is_file():
            raise UserError(_not_a_run(path))
    elif path.suffix == ".json":
        run_dir, meta_path = path.parent, path
    elif path.suffix == ".safetensors":
        run_dir = path.parent
        if run_dir.absolute().name == "checkpoint" and not (run_dir / MODEL_JSON).is_file():
            # RUN/checkpoint/last.safetensors: the run's model.json, the run named as it was
            # given (RUN, or .. from inside checkpoint/), as for RUN itself
            run_dir = Path(os.path.normpath(run_dir / os.pardir))
        meta_path = run_dir / MODEL_JSON
        if not meta_path.is_file():  # not read_json's bare "missing file": say why it is needed
            raise UserError(
                f"{path} holds weights only: the model they are for is described by a "
                f"model.json beside them, and there is none ({meta_path})"
            )
    else:
        raise UserError(f"not a run directory, model.json, .safetensors or .onnx file: {path}")
    from vitkit._device import resolve_device

    dev = resolve_device(device)
    try:
        meta, spec = read_meta(meta_path)
    except UserError:
        run = _run_holding(meta_path)
        if run is None:
            raise
        inside = Path(os.path.relpath(meta_path, run)).as_posix()  # export/export.json
        raise UserError(
            f"{meta_path} is a run's {inside}, not a model: pass the run directory {run}"
        ) from None
    model = spec.build()
    weights_path = path if path.suffix == ".safetensors" else run_dir / (weights or MODEL_WEIGHTS)
    try:
        model.load_state_dict(load_weights(weights_path))
    except RuntimeError as e:
        raise UserError(
            f"{weights_path} does not fit {meta_path}: {state_dict_mismatch(e)}"
        ) from None
    model.to(dev).eval()
    cfg = spec.config
    return LoadedModel(
        model=model,
        spec=spec,
        classes=list(meta.get("classes") or []),
        image_size=cfg.image_size,
        channels=cfg.in_chans,
        mean=list(meta["mean"]),
        std=list(meta["std"]),
        dataset=meta.get("dataset"),
        meta=meta,
        path=run_dir,
        weights_file=(
            None if weights_path.resolve() == (run_dir / MODEL_WEIGHTS).resolve() else weights_path
        ),
    )


def _load_onnx(path: Path, *, device: str, weights: str | None) -> LoadedModel:
    from vitkit.errors import UserError

    if weights is not None:
        raise UserError(f"{path} is an ONNX file: it holds its weights, weights= does not apply")
    from vitkit._device import on_cpu

    if not on_cpu(device):
        from vitkit.errors import in_cli, setting

        run = "pass the run directory" if in_cli() else "load the run directory"
        raise UserError(  # --device cuda under the CLI, device='cuda' for a library caller
            f"{path} runs with ONNX Runtime on the CPU; {setting('device', str(device))} does"
            f" not apply ({run} to use another device)"
        )
    from vitkit.eval.evaluate import load_onnx_model

    return load_onnx_model(path)


# ── eval reports beside a model file, and whether they still describe it ─────────────────


def report_base(file: Path) -> Path:
    """The default report folder of a model file evaluated (the test split of its own dataset):
    ``RUN/eval`` for a run's own ``model.safetensors``, else ``eval-<stem>`` beside the file
    (``export/eval-model.int8``, ``checkpoint/eval-last``), as ``LoadedModel.output_dir``;
    other datasets and splits add ``-<dataset>-<split>`` to its name."""
    own = file.name == MODEL_WEIGHTS and (file.parent / MODEL_JSON).is_file()
    return file.parent / ("eval" if own else f"eval-{file.stem}")


@dataclass
class StaleReport:
    """An eval report folder beside a model file that no longer describes it."""

    folder: Path  # the report folder (eval.json and its figures)
    file: Path  # the model file it scored
    removed: bool  # the file is gone; else its bytes changed since (model_sha256 differs)
    dataset: str | None = None  # what eval.json records, for the command that redoes it
    split: str | None = None

    def note(self) -> str:
        """One line for a command's notes: what is stale, and how to redo it."""
        if self.removed:
            return (
                f"{self.folder}/ scored {self.file.name}, which is removed: that report "
                "describes no model here now"
            )
        return f"{self.folder}/ scored an earlier {self.file.name}: rerun `{self.command()}`"

    def command(self) -> str:
        """The ``vitkit eval`` command that rewrites this report for the file as it is now."""
        import shlex

        from vitkit.data.catalog import absolute_name, short_name

        base = report_base(self.file)
        target = self.file.parent if base.name == "eval" else self.file
        args = ["vitkit", "eval", str(target)]
        if self.folder.name != base.name and self.dataset and self.split:
            # a folder: dataset by its absolute path, so the command works from anywhere
            args += ["--data", absolute_name(self.dataset), "--split", self.split]
            if self.folder.name != f"{base.name}-{short_name(self.dataset)}-{self.split}":
                args += ["--out", str(self.folder)]  # a folder of its own (--out)
        return shlex.join(args)


def stale_reports(
    files: Iterable[str | os.PathLike[str]], *, pending: Mapping[Path, str | None] | None = None
) -> list[StaleReport]:
    """The eval report folders beside model files (``.onnx``, ``.safetensors``; present or
    removed) that no longer describe them: the file was removed, or its SHA-256 now differs
    from the ``model_sha256`` its eval.json recorded.

    Looked for beside each file: ``report_base`` and ``<that>-<dataset>-<split>`` (``eval*``
    folders whose eval.json names a file of another name, e.g. ``vitkit eval RUN --onnx`` into
    ``RUN/eval``, are that file's, not this one's); a report written elsewhere with ``--out`` is
    not looked for. A report that records no ``model_sha256`` (made before vitkit recorded it)
    is never listed: nothing says what it scored. Each file is hashed at most once, and only
    when a report beside it records a hash. A folder or file that cannot be read is passed over:
    this only ever adds notes, it never fails the command that asks. ``pending``: files about
    to be written or removed (``Staged``), as they will be: each one's SHA-256, None for one
    to be removed."""
    stale: list[StaleReport] = []
    for file in map(Path, files):
        try:
            stale.extend(_stale_beside(file, pending or {}))
        except OSError:
            continue
    return stale


def stale_notes(
    files: Iterable[str | os.PathLike[str]], *, pending: Mapping[Path, str | None] | None = None
) -> list[str]:
    """``stale_reports`` as one note each, for a command's report."""
    return [s.note() for s in stale_reports(files, pending=pending)]


def _stale_beside(file: Path, pending: Mapping[Path, str | None]) -> list[StaleReport]:
    from vitkit.data.download import file_sha256

    base = report_base(file)
    if not base.parent.is_dir():
        return []
    digest = pending.get(file)  # None: not known yet (hashed when needed), or to be removed
    found = digest is not None if file in pending else file.is_file()
    stale: list[StaleReport] = []
    folders = sorted(
        d
        for d in base.parent.iterdir()
        if (d.name == base.name or d.name.startswith(base.name + "-")) and d.is_dir()
    )
    for folder in folders:
        doc = _json_object(folder / EVAL_JSON)
        recorded, named = doc.get("model_sha256"), doc.get("model_file")
        if not isinstance(recorded, str):
            continue
        if isinstance(named, str) and Path(named).name != file.name:
            continue
        if found:
            digest = digest or file_sha256(file)
        if found and digest == recorded:
            continue
        dataset, split = doc.get("dataset"), doc.get("split")
        stale.append(
            StaleReport(
                folder=folder,
                file=file,
                removed=not found,
                dataset=dataset if isinstance(dataset, str) else None,
                split=split if isinstance(split, str) else None,
            )
        )
    return stale


def _json_object(path: Path) -> dict[str, Any]:
    """A JSON file's object; {} when missing, unreadable or not an object."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
