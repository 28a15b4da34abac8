"""evaluate(): a trained model on a dataset split -> EvalReport (metrics, confusion, calibration).

The dataset defaults to the run's own (name, options and data root from model.json and
train.json); another dataset must have images of the model's size and channels and no class the
model does not know (a ``folder:`` dataset is resized to the model's input automatically).
Batches are normalised by the training loader with the run's mean and std, so the top-1 on the
run's test split is the ``test_acc`` of its summary.json, image for image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vitkit._device import autocast_dtype
from vitkit.artifact import (
    DEFAULT_EVAL_BATCH_SIZE,
    EVAL_JSON,
    LoadedModel,
    report_base,
    write_json,
)
from vitkit.data import Dataset, get_dataset_spec, load_dataset
from vitkit.data.catalog import FOLDER_PREFIX, absolute_name, folder_path, short_name
from vitkit.data.download import file_sha256
from vitkit.data.loader import DeviceLoader
from vitkit.data.types import ProgressFn, Split, no_progress
from vitkit.errors import (
    NotFoundError,
    UserError,
    VitkitError,
    check_bool,
    check_callable,
    check_int,
    check_name,
    check_path,
    first_line,
    listed,
    setting,
)
from vitkit.eval import metrics
from vitkit.eval.predict import as_loaded, model_device

ECE_BINS = 15
WRONG_SHOWN = 25  # most confidently wrong images kept (eval.json and wrong.png)
CONFUSION_PNG = "confusion.png"
WRONG_PNG = "wrong.png"


@dataclass
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # true samples of this class (over all positions for multi-output)


@dataclass
class WrongPrediction:
    """One confidently wrong image: its index in the split, true and predicted labels."""

    index: int
    true: list[str]  # one name per output position
    predicted: list[str]
    confidence: float  # the model's probability for its (wrong) prediction
    file: str | None = None  # a folder: dataset's file, relative to the folder

    def to_json(self) -> dict[str, Any]:
        single = len(self.true) == 1
        out: dict[str, Any] = {"index": self.index}
        if self.file is not None:
            out["file"] = self.file
        return {
            **out,
            "true": self.true[0] if single else self.true,
            "predicted": self.predicted[0] if single else self.predicted,
            "confidence": self.confidence,
        }


@dataclass
class EvalReport:
    """What ``evaluate`` measured. ``acc`` is the headline figure, as summary.json's test_acc:
    top-1 for single-output models, exact match (every position right) for multi-output ones."""

    dataset: str
    split: str
    n: int  # images evaluated
    classes: list[str]
    num_outputs: int
    acc: float
    top1: float  # top-1 over all predictions (averaged over positions for multi-output)
    top5: float  # label among the 5 most probable classes (or all, with fewer classes)
    correct: int  # images counted right for ``acc``
    exact_match: float | None  # multi-output only
    per_position: list[float] | None  # multi-output only: top-1 per position
    loss: float  # mean cross-entropy per prediction
    ece: float  # expected calibration error, 15 equal-width bins of the top-1 probability
    calibration: list[dict[str, float]]  # per bin: lo, hi, count, acc, conf
    per_class: list[ClassMetrics]
    macro: dict[str, float]  # unweighted mean of precision, recall, F1 (empty classes count)
    weighted: dict[str, float]  # support-weighted mean
    confusion: list[list[int]]  # rows: true class, columns: predicted
    wrong: list[WrongPrediction]  # most confidently wrong first
    run: str | None = None
    # the file scored (an .onnx, or the .safetensors loaded) and the SHA-256 of its bytes then,
    # so that a later change to the file shows (stale_reports); None for a model built in memory
    model_file: str | None = None
    model_sha256: str | None = None
    # the model scored, as export.json's and bench.json's "model": {"model": name, "config": {...}}
    # (ModelSpec.to_dict; models.model_label names it); None for a report built from logits alone
    model: dict[str, Any] | None = None
    device: str = "cpu"
    seconds: float = 0.0
    images_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. unreadable images left out
    # the macro averages over the classes with samples only (a subset of the model's classes)
    macro_present: dict[str, float] = field(default_factory=dict)
    wrong_images: Tensor | None = field(default=None, repr=False, compare=False)  # uint8

    @property
    def classes_present(self) -> int:
        """Classes with samples here (``macro_present`` averages over these)."""
        return sum(c.support > 0 for c in self.per_class)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run": self.run,
            "model_file": self.model_file,
            "model_sha256": self.model_sha256,
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "n": self.n,
            "acc": self.acc,
            "correct": self.correct,
            "top1": self.top1,
            "top5": self.top5,
        }
        if self.num_outputs > 1:
            out["exact_match"] = self.exact_match
            out["per_position"] = self.per_position
        out.update(
            loss=self.loss,
            ece=self.ece,
            macro=self.macro,
            macro_present=self.macro_present,
            weighted=self.weighted,
            per_class=[dataclasses.asdict(c) for c in self.per_class],
            confusion={"classes": self.classes, "matrix": self.confusion},
            calibration={"bins": ECE_BINS, "ece": self.ece, "per_bin": self.calibration},
            most_confident_wrong=[w.to_json() for w in self.wrong],
            num_outputs=self.num_outputs,
            device=self.device,
            seconds=self.seconds,
            images_per_s=self.images_per_s,
            notes=self.notes,
        )
        return out

    def save(self, out_dir: str | os.PathLike[str]) -> SavedFiles:
        """Write eval.json, confusion.png and wrong.png (the PNGs need matplotlib)."""
        from vitkit.eval.plots import PLOT_HINT, plot_confusion, plot_wrong

        check_path("out_dir", out_dir)
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():  # as `vitkit eval --out FILE` says it
            raise UserError(f"{out_dir} is a file, not a folder")
        saved = SavedFiles()
        write_json(out_dir / EVAL_JSON, self.to_json())
        saved.files.append(out_dir / EVAL_JSON)
        for stale in (CONFUSION_PNG, WRONG_PNG):  # an earlier eval's: only this one's may stay
            (out_dir / stale).unlink(missing_ok=True)
        title = f"{self.dataset} {self.split}: top-1 {100 * self.top1:.2f}%"
        if not plot_confusion(
            torch.tensor(self.confusion), self.classes, out_dir / CONFUSION_PNG, title=title
        ):
            saved.notes.append(PLOT_HINT)
            return saved
        saved.files.append(out_dir / CONFUSION_PNG)
        if self.wrong_images is None:  # a report built from logits alone: no images to show
            return saved
        idx = {c: i for i, c in enumerate(self.classes)}
        k = self.num_outputs
        labels = torch.tensor([[idx[c] for c in w.true] for w in self.wrong]).view(-1, k)
        preds = torch.tensor([[idx[c] for c in w.predicted] for w in self.wrong]).view(-1, k)
        plot_wrong(
            self.wrong_images,
            labels[:, 0] if k == 1 else labels,
            preds[:, 0] if k == 1 else preds,
            torch.tensor([w.confidence for w in self.wrong]),
            self.classes,
            out_dir / WRONG_PNG,
            title=f"most confidently wrong ({len(self.wrong)} shown)",
        )
        saved.files.append(out_dir / WRONG_PNG)
        return saved


@dataclass
class SavedFiles:
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. figures skipped and why


# -- the dataset ------------------------------------------------------------------------------
def open_dataset(
    lm: LoadedModel,
    data: str | None = None,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressFn = no_progress,
    splits: Sequence[str] | None = None,
) -> Dataset:
    """The dataset to evaluate on: ``data``, else the run's own with its recorded options.

    ``data_root``: else the run's (train.json), else the default. A ``folder:`` dataset other
    than the run's is decoded at the model's image size and channels, once its class folders
    are known to be the model's (``check_folder_classes``). ``splits``: the ones to be
    scored, which are all a catalog dataset then needs on disk (``load_dataset(splits=)``): the
    model brings its own mean and std, so no train split is read to compute them.
    """
    name = data or lm.dataset
    if not name:
        raise UserError(
            f"{lm.path} records no dataset; name one ({setting('dataset', 'NAME', flag='--data')})"
        )
    spec = get_dataset_spec(name)  # an unknown name: the registry's error, with suggestions
    options: dict[str, Any] = {}
    source = lm.dataset_source() if name == lm.dataset else None
    if source is None and spec.image_size and spec.channels:  # the catalog knows its sizes:
        _check_sizes(lm, name, spec.image_size, spec.channels, spec.num_outputs, folder=False)
    if source is not None:
        name, options = source
    elif name.startswith(FOLDER_PREFIX):
        check_folder_classes(lm, name)  # before its images are decoded and cached
        options = {"image_size": lm.image_size, "channels": lm.channels}
    root = data_root if data_root is not None else lm.run_settings()["data_root"]
    try:
        return load_dataset(
            name, data_root=root, download=download, progress=progress, splits=splits, **options
        )
    except NotFoundError as e:
        if data or not name.startswith(FOLDER_PREFIX):
            raise
        raise UserError(  # the run's own folder, moved or on another machine
            f"{e}; if the images are elsewhere now, name them "
            f"({setting('dataset', 'folder:PATH', flag='--data')})"
        ) from None


def label_map(lm: LoadedModel, ds: Dataset) -> Tensor | None:
    """Dataset label -> model class index; None when the classes are the model's, in order.

    Refuses a dataset with classes the model was not trained on.
    """
    return _class_map(lm, ds.name, ds.classes)


def check_folder_classes(lm: LoadedModel, name: str) -> None:
    """Refuse ``folder:PATH`` with a class the model was not trained on, as ``label_map`` would,
    from the folder's listing alone: loading it first decoded every image (CIFAR-10's 60,000 JPEGs:
    15 s) and left a cache of images no model here can score.

    A folder that cannot be listed is let through: loading it says what is wrong, as before.
    """
    from vitkit.data.sources.folder import list_classes

    try:
        path = folder_path(name)
        if path is None:  # not a folder: name
            return
        classes = list_classes(path)
    except (VitkitError, OSError):
        return
    _class_map(lm, name, classes)


def _class_map(lm: LoadedModel, name: str, classes: list[str]) -> Tensor | None:
    model_classes = lm.classes or [str(i) for i in range(lm.spec.config.num_classes)]
    if classes == model_classes:
        return None
    unknown = [c for c in classes if c not in model_classes]
    if unknown:
        shown = ", ".join(f"'{c}'" for c in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        known = ", ".join(f"'{c}'" for c in model_classes[:10])
        more = ", ..." if len(model_classes) > 10 else ""
        raise UserError(
            f"dataset '{name}' has classes the model was not trained on: {shown} "
            f"(the model knows {known}{more})"
        )
    return torch.tensor([model_classes.index(c) for c in classes], dtype=torch.int64)


def check_compatible(lm: LoadedModel, ds: Dataset) -> None:
    """Image size, channels and output positions must be the model's."""
    folder = ds.spec.name == "folder"
    _check_sizes(lm, ds.name, ds.image_size, ds.channels, ds.num_outputs, folder=folder)


def _check_sizes(
    lm: LoadedModel, name: str, size: int, channels: int, outputs: int, *, folder: bool
) -> None:
    if (size, channels) != (lm.image_size, lm.channels):
        hint = "" if folder else " (pass a folder:PATH dataset to resize images)"
        raise UserError(
            f"dataset '{name}' has {size}x{size}x{channels} images but the model takes "
            f"{lm.image_size}x{lm.image_size}x{lm.channels}{hint}"
        )
    if outputs != lm.num_outputs:
        raise UserError(
            f"dataset '{name}' has {outputs} label(s) per image but the model predicts "
            f"{lm.num_outputs}"
        )


# -- evaluation -------------------------------------------------------------------------------
@torch.inference_mode()
def compute_logits(
    lm: LoadedModel,
    split: Split,
    *,
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
    amp: bool = False,
    progress: ProgressFn = no_progress,
) -> Tensor:
    """Logits (N, C) or (N, K, C), float32 on the CPU, for a split in order.

    ``amp``: autocast as training evaluated its test split (bf16 on CUDA; no effect on the CPU).
    """
    device = model_device(lm)
    loader = DeviceLoader(
        split,
        batch_size=batch_size,
        mean=lm.mean,
        std=lm.std,
        num_classes=len(lm.classes) or lm.spec.config.num_classes,
        device=device,
        shuffle=False,
        drop_last=False,
    )
    dtype = autocast_dtype(device, amp)
    out = []
    done = 0
    progress("evaluate", 0, len(split))
    for x, _ in loader:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = lm.model(x)
        out.append(logits.float().cpu())
        done += len(x)
        progress("evaluate", done, len(split))
    if not out:
        raise UserError("the split is empty: nothing to evaluate")
    return torch.cat(out)


def report_from_logits(
    logits: Tensor,
    labels: Tensor,
    classes: list[str],
    *,
    images: Tensor | None = None,
    dataset: str = "",
    split: str = "",
    wrong_shown: int = WRONG_SHOWN,
) -> EvalReport:
    """Every metric of an ``EvalReport`` from logits and labels (pure; ``images`` only feed the
    wrong-predictions grid)."""
    n = len(labels)
    multi = logits.ndim == 3
    k = logits.shape[1] if multi else 1
    num_classes = logits.shape[-1]
    names = classes or [str(i) for i in range(num_classes)]
    flat_logits, flat_labels = metrics.flatten_outputs(logits, labels)
    probs = flat_logits.float().softmax(-1)
    conf, pred = probs.max(-1)
    hit = pred == flat_labels

    per_pos, exact = metrics.correct_counts(logits, labels)
    per_position = [int(c) / n for c in per_pos.tolist()]
    correct = int(exact) if multi else int(per_pos[0])
    top1 = int(hit.sum()) / len(hit)

    cm = metrics.confusion_matrix(pred, flat_labels, num_classes)
    precision, recall, f1, support = metrics.precision_recall_f1(cm)
    avg = metrics.averages(precision, recall, f1, support)
    count, bin_acc, bin_conf = metrics.calibration_bins(conf, hit, ECE_BINS)
    calibration = [
        {
            "lo": b / ECE_BINS,
            "hi": (b + 1) / ECE_BINS,
            "count": int(count[b]),
            "acc": float(bin_acc[b]),
            "conf": float(bin_conf[b]),
        }
        for b in range(ECE_BINS)
    ]

    # most confidently wrong: per image, the highest probability among its wrong positions
    img_conf = conf.view(n, k)
    img_pred = pred.view(n, k)
    img_wrong = ~hit.view(n, k)
    score = torch.where(img_wrong, img_conf, torch.full_like(img_conf, -1.0)).max(1).values
    wrong_idx = torch.nonzero(score >= 0).flatten()
    order = torch.sort(score[wrong_idx], descending=True, stable=True).indices
    top = wrong_idx[order][:wrong_shown]
    lab = labels.view(n, k)
    wrong = [
        WrongPrediction(
            index=int(i),
            true=[names[int(c)] for c in lab[i]],
            predicted=[names[int(c)] for c in img_pred[i]],
            confidence=float(score[i]),
        )
        for i in top
    ]
    return EvalReport(
        dataset=dataset,
        split=split,
        n=n,
        classes=names,
        num_outputs=k,
        acc=correct / n,
        top1=top1,
        top5=metrics.topk_accuracy(flat_logits, flat_labels, 5),
        correct=correct,
        exact_match=int(exact) / n if multi else None,
        per_position=per_position if multi else None,
        loss=float(F.cross_entropy(flat_logits.float(), flat_labels)),
        ece=metrics.expected_calibration_error(conf, hit, ECE_BINS),
        calibration=calibration,
        per_class=[
            ClassMetrics(
                names[c], float(precision[c]), float(recall[c]), float(f1[c]), int(support[c])
            )
            for c in range(num_classes)
        ],
        macro=avg["macro"],
        macro_present=avg["macro_present"],
        weighted=avg["weighted"],
        confusion=cm.tolist(),
        wrong=wrong,
        wrong_images=images[top] if images is not None else None,
    )


class OnnxModule(torch.nn.Module):
    """An exported model behind the ``nn.Module`` call: ONNX Runtime (CPU) computes the logits.

    Lets ``evaluate`` measure exactly what is deployed, with the same preprocessing.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        super().__init__()
        from vitkit.export import ort_session

        self.path = str(path)
        self.session = ort_session(path, threads=threads)

    def forward(self, x: Tensor) -> Tensor:
        from vitkit.export import run_onnx

        return torch.from_numpy(run_onnx(self.session, x.detach().float().cpu().numpy()))


def check_onnx_matches(lm: LoadedModel, path: str | os.PathLike[str]) -> None:
    """Refuse (one line) an ONNX file that is not an export of ``lm``: another model spec or
    classes, or other weights (its ``weights_sha256``; exports made before vitkit recorded it
    are taken on trust). Scored with this run's preprocessing and classes, it would report
    another model's accuracy as this run's."""
    from vitkit.export import read_onnx_metadata
    from vitkit.export.onnx import exports_spec_of, weights_fingerprint

    meta = read_onnx_metadata(path)  # no vitkit metadata: a one-line error
    alone = f"evaluate it on its own: vitkit eval {path}"
    if not exports_spec_of(meta, lm):
        raise UserError(
            f"{path} is an export of another model ({_spec_difference(meta, lm)}); {alone}"
        )
    if lm.classes and meta.get("classes") and list(meta["classes"]) != list(lm.classes):
        raise UserError(f"{path} was exported with other classes than {lm.path}; {alone}")
    recorded = meta.get("weights_sha256")
    if recorded is not None and recorded != weights_fingerprint(lm.model):
        raise UserError(
            f"{path} was exported from other weights than {lm.path}'s (weights_sha256 differs): "
            f"re-export with `vitkit export {lm.path} --onnx`, or {alone}"
        )


def _spec_difference(meta: dict[str, Any], lm: LoadedModel) -> str:
    """How an export's recorded model spec differs from ``lm``'s, in a few words."""
    spec = meta.get("model_spec")
    name = spec.get("model") if isinstance(spec, dict) else None
    if name != lm.spec.name:
        return f"{name or 'unknown'}, not this run's {lm.spec.name}"
    theirs = spec.get("config") if isinstance(spec, dict) else None
    ours = json.loads(json.dumps(lm.spec.to_dict()))["config"]
    if not isinstance(theirs, dict):
        return f"a {name} with no configuration recorded"
    keys = sorted(k for k in {*theirs, *ours} if theirs.get(k) != ours.get(k))
    return f"another {name} configuration: " + listed(
        [f"{k} {theirs.get(k)} vs {ours.get(k)}" for k in keys], 3
    )


def load_onnx_model(path: str | os.PathLike[str]) -> LoadedModel:
    """An exported model as a ``LoadedModel``: spec, classes and preprocessing from its metadata."""
    from vitkit.artifact import check_meta
    from vitkit.export import read_onnx_metadata
    from vitkit.models import check_registered

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such ONNX file: {path}")
    meta = read_onnx_metadata(path)
    if "model_spec" not in meta:
        raise UserError(f"{path} has no vitkit metadata (export it with `vitkit export`)")
    if not meta.get("trained"):
        raise UserError(
            f"{path} was exported from a model with no run (`vitkit export --model`, or "
            "export_onnx of a bare module): its classes and mean/std are placeholders, so it "
            "cannot score or classify images; export the run (`vitkit export RUN`)"
        )
    named = meta["model_spec"].get("model") if isinstance(meta["model_spec"], dict) else None
    if isinstance(named, str):  # a user's model, its module not imported: as for model.json
        check_registered(named, path)
    fields = ("classes", "mean", "std", "dataset", "dataset_options")
    try:  # the checks a run's model.json gets, on the same fields
        spec = check_meta({**meta["model_spec"], **{k: meta.get(k) for k in fields}})
        image_size, channels = int(meta["image_size"]), int(meta["channels"])
        if (image_size, channels) != (spec.config.image_size, spec.config.in_chans):
            raise ValueError(f"its input is {image_size} px x {channels}, its model's is not")
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise UserError(f"{path} has damaged vitkit metadata: {first_line(e)}") from None
    except UserError as e:  # e.g. a model family this vitkit does not have
        raise UserError(f"{path}: {e}") from None
    return LoadedModel(
        model=OnnxModule(path),
        spec=spec,
        classes=list(meta.get("classes") or []),
        image_size=image_size,
        channels=channels,
        mean=list(meta["mean"]),
        std=list(meta["std"]),
        dataset=meta.get("dataset"),
        meta=meta,
        path=path.parent,
    )


def report_dir(lm: LoadedModel, data: str | None, split: str, *, file: Path | None = None) -> Path:
    """Where an evaluation's report goes by default: ``RUN/eval`` for the run's own (best)
    weights, beside other weights of the run (``RUN/checkpoint/eval-last``), ``eval-<name>``
    beside an .onnx ``file`` evaluated in place of a run; for another dataset than the run's or
    a split other than test, that name with ``-<dataset>-<split>``, never over the run's own
    test report."""
    out = report_base(file) if file is not None else lm.output_dir("eval")
    other = data is not None and absolute_name(data) != absolute_name(lm.dataset or "")
    if other or split != "test":
        out = out.with_name(f"{out.name}-{short_name(data or lm.dataset or 'data')}-{split}")
    return out


def evaluate(
    model: LoadedModel | str | os.PathLike[str],
    dataset: Dataset | str | None = None,
    *,
    split: str = "test",
    batch_size: int | None = None,
    amp: bool | None = None,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: ProgressFn = no_progress,
) -> EvalReport:
    """Evaluate a trained model on a split of ``dataset`` (default: the run's own dataset).

    ``model``: a ``LoadedModel`` (it runs on the device it is on) or a run directory (loaded on
    the CPU). ``dataset``: a loaded ``Dataset``, a name (``mnist``, ``folder:PATH``, ...) or None.
    ``batch_size`` and ``amp`` (autocast on CUDA) default to what the run used for its own test
    evaluation, so the figures match summary.json's.

    Returns an ``EvalReport`` (``acc``, ``top1``, ``top5``, ``ece``, ``per_class``, ``confusion``,
    ...; ``to_json()`` is eval.json, ``save(dir)`` writes it and the figures). Raises
    ``UserError`` for an unknown dataset or split, a dataset of another image size, channels or
    classes than the model's, a bad ``batch_size``, or an argument of the wrong type
    (``split=3``, ``amp="yes"``, ``data_root=5``).
    """
    if batch_size is not None:
        check_int("batch size", batch_size)
    check_name("split", split)  # ds[3] was the Dataset's TypeError
    amp = None if amp is None else check_bool("amp", amp)
    check_path("data_root", data_root, optional=True)
    download = check_bool("download", download)
    check_callable("progress", progress)
    lm = as_loaded(model)
    file = lm.model_file  # hashed before the dataset is opened (which may take minutes)
    sha256 = file_sha256(file) if file is not None else None
    settings = lm.run_settings()
    if isinstance(dataset, Dataset):
        ds = dataset
    else:
        ds = open_dataset(  # the split scored alone: a copy of the test files is enough
            lm, dataset, data_root=data_root, download=download, progress=progress, splits=[split]
        )
    check_compatible(lm, ds)
    remap = label_map(lm, ds)
    s = ds[split]
    labels = s.labels if remap is None else remap[s.labels]
    t0 = time.perf_counter()
    logits = compute_logits(
        lm,
        s,
        batch_size=batch_size or settings["batch_size"],
        amp=settings["amp"] if amp is None else amp,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    classes = lm.classes or [str(i) for i in range(logits.shape[-1])]
    report = report_from_logits(
        logits, labels, classes, images=s.images, dataset=ds.name, split=split
    )
    onnx_path = lm.onnx_file
    # a .onnx file loaded on its own (its metadata names a precision) is the model, not a run
    report.run = onnx_path if onnx_path and "precision" in lm.meta else str(lm.path)
    report.model_file, report.model_sha256 = (str(file) if file else None), sha256
    report.model = lm.spec.to_dict()
    report.device = f"onnxruntime-cpu ({onnx_path})" if onnx_path else str(model_device(lm))
    report.seconds = round(seconds, 3)
    report.images_per_s = round(len(s) / seconds, 1) if seconds > 0 else 0.0
    if skipped := ds.skipped_note():  # a folder's unreadable files are not in n: say so
        report.notes.append(skipped)
    for w in report.wrong:  # which of the user's files it was, not only its index
        w.file = ds.file_of(split, w.index)
    return report
