from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.artifact import LoadedModel, load_model
from vitkit.data import load_dataset
from vitkit.errors import UserError
from vitkit.eval import predict
from vitkit.eval.evaluate import compute_logits


def _confident_right(logits: torch.Tensor, labels: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` images the model gets right by the widest margin, distinct labels."""
    top2 = logits.softmax(-1).topk(2, dim=-1).values
    margin = torch.where(logits.argmax(-1) == labels, top2[:, 0] - top2[:, 1], -1.0)
    picked: list[int] = []
    for i in margin.argsort(descending=True).tolist():
        if margin[i] > 0 and int(labels[i]) not in {int(labels[j]) for j in picked}:
            picked.append(i)
        if len(picked) == n:
            break
    return picked


def test_mnist_files_of_any_size_and_mode(mnist_model: LoadedModel, tmp_path: Path) -> None:
    """Real PNG/JPEG files written from MNIST test images: grayscale, RGBA and 500x300 RGB."""
    test = load_dataset("mnist-mini")["test"]
    logits = compute_logits(mnist_model, test)
    picked = _confident_right(logits, test.labels, 3)
    assert len(picked) == 3
    files, want = [], []
    for i in picked:
        a = test.images[i, 0].numpy()
        gray, rgba, wide = (
            tmp_path / f"{i}-{kind}" for kind in ("gray.png", "rgba.png", "wide.jpg")
        )
        Image.fromarray(a).save(gray)
        Image.fromarray(np.dstack([a, a, a, np.full_like(a, 255)])).save(rgba)
        Image.fromarray(a).convert("RGB").resize((500, 300), Image.Resampling.BICUBIC).save(
            wide, quality=95
        )
        files += [gray, rgba, wide]
        want += [str(int(test.labels[i]))] * 3
    preds = vitkit.predict(mnist_model, files, topk=3)
    assert [p.label for p in preds] == want
    assert [p.mode for p in preds[:3]] == ["L", "RGBA", "RGB"]
    assert preds[2].size == (500, 300)
    # lossless files at the model's size give the very probabilities of the evaluation
    probs = logits.softmax(-1)
    for k, i in enumerate(picked):
        for p in preds[3 * k : 3 * k + 2]:
            assert p.topk[0][0].prob == pytest.approx(float(probs[i].max()), abs=1e-6)
    for p in preds:
        top = p.topk[0]
        assert len(top) == 3 and [c.prob for c in top] == sorted(
            (c.prob for c in top), reverse=True
        )
        assert sum(c.prob for c in top) <= 1.0 + 1e-6
    # PIL images too, with the same answer as their files
    with Image.open(files[0]) as im:
        (same,) = predict(mnist_model, im, topk=3)
    assert same.source == "<image 0>" and same.label == preds[0].label
    assert [c.prob for c in same.topk[0]] == pytest.approx([c.prob for c in preds[0].topk[0]])


def test_cifar10_jpegs_and_an_rgba_copy(
    cifar_run: Path, cifar_folder: Path, tmp_path: Path
) -> None:
    """Real CIFAR-10 JPEG test files: predict agrees with eval on every image eval gets right."""
    lm = load_model(cifar_run)
    ds = load_dataset(f"folder:{cifar_folder}")
    test = ds["test"]
    # the folder: loader's order: classes sorted, files sorted within each class
    files = [f for c in ds.classes for f in sorted((cifar_folder / "test" / c).iterdir())]
    assert len(files) == len(test)
    logits = compute_logits(lm, test)
    right = torch.nonzero(logits.argmax(-1) == test.labels).flatten().tolist()
    assert len(right) >= 5, "too few right answers to compare"
    # eval on the run's own folder: dataset agrees with summary.json and with these logits
    summary = json.loads((cifar_run / "summary.json").read_text())
    report = vitkit.evaluate(lm)
    assert report.dataset == f"folder:{cifar_folder}" and report.n == len(test)
    assert report.correct == len(right) == round(summary["test_acc"] * len(test))
    preds = predict(lm, [files[i] for i in right])
    assert [p.label for p in preds] == [ds.classes[int(test.labels[i])] for i in right]
    # an RGBA PNG of the same pixels and a grayscale copy (fed to an RGB model as gray RGB)
    i = right[0]
    with Image.open(files[i]) as im:
        rgba, gray = im.convert("RGBA"), im.convert("L")
    rgba.putalpha(128)
    rgba.save(tmp_path / "rgba.png")
    gray.save(tmp_path / "gray.png")
    p_rgba, p_gray = predict(lm, [tmp_path / "rgba.png", tmp_path / "gray.png"])
    assert p_rgba.label == preds[0].label and p_rgba.mode == "RGBA"
    assert p_rgba.topk[0][0].prob == pytest.approx(preds[0].topk[0][0].prob, abs=1e-6)
    assert p_gray.mode == "L" and len(p_gray.topk[0]) == 5


def test_unreadable_files(mnist_model: LoadedModel, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    good = tmp_path / "ok.png"
    Image.new("L", (28, 28)).save(good)
    with pytest.raises(UserError, match=r"cannot read .*broken\.png"):
        predict(mnist_model, [good, bad])
    preds = predict(mnist_model, [bad, good, tmp_path / "gone.jpg"], skip_unreadable=True)
    assert [p.ok for p in preds] == [False, True, False]
    assert "cannot read" in (preds[0].error or "") and "no such file" in (preds[2].error or "")
    assert preds[0].to_json() == {"source": str(bad), "error": preds[0].error}
    # a folder reads as its images (the broken one included), as `vitkit predict DIR` does
    assert [p.ok for p in predict(mnist_model, tmp_path, skip_unreadable=True)] == [False, True]
    ds = vitkit.load_dataset("mnist-mini")  # iterates its split names: read as file names
    with pytest.raises(UserError, match=r"pass a split's image tensor \(ds\['test'\].images\)"):
        predict(mnist_model, ds)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"\(split.images\), not the Split"):
        predict(mnist_model, ds["test"])  # type: ignore[arg-type]
    with pytest.raises(UserError, match="topk must be >= 1, got 0"):
        predict(mnist_model, good, topk=0)
    with pytest.raises(UserError, match="topk must be an integer, got '3'"):
        predict(mnist_model, good, topk="3")  # type: ignore[arg-type]
    assert len(predict(mnist_model, good, topk=np.int64(3))[0].topk[0]) == 3  # numpy ints too
    (p,) = predict(mnist_model, good, topk=50)  # more than the classes: all of them
    assert len(p.topk[0]) == 10 and sum(c.prob for c in p.topk[0]) == pytest.approx(1.0)


def test_arrays_and_tensors(mnist_model: LoadedModel) -> None:
    """Numpy arrays (PIL's layout) and tensors (torchvision's), one image or a batch, uint8 or
    float in [0, 1]: the probabilities of the same pixels through evaluation."""
    test = load_dataset("mnist-mini")["test"]
    images = test.images[:40]
    probs = compute_logits(mnist_model, test.subset(torch.arange(40))).softmax(-1)
    best = [str(int(i)) for i in probs.argmax(-1)]
    for batch in (images, images.numpy().transpose(0, 2, 3, 1), images[:, 0].numpy()):
        preds = predict(mnist_model, batch, topk=1)
        assert [p.label for p in preds] == best
        assert [p.confidence for p in preds] == pytest.approx(
            probs.max(-1).values.tolist(), abs=1e-6
        )
    one = images[3]
    for image in (one, one[0], one[0].numpy(), one.numpy().transpose(1, 2, 0), one.float() / 255):
        (p,) = predict(mnist_model, image, topk=1)
        assert p.source == "<image 0>" and p.label == best[3]
        assert p.confidence == pytest.approx(float(probs[3].max()), abs=1e-6)
    rgb = np.repeat(one[0].numpy()[:, :, None], 3, axis=2)  # colour in, converted to the model's L
    assert predict(mnist_model, rgb)[0].label == best[3]
    for n in (1, 3, 4):  # (N, C, H, W) is N images, whatever N
        assert len(predict(mnist_model, images[:n])) == n
    assert len(predict(mnist_model, images[:3, 0])) == 1  # (3, H, W) is one (C, H, W) image
    # a numpy (1, H, W): one grayscale image read either way (a loop's last chunk of one failed)
    (p,) = predict(mnist_model, images[3:4, 0].numpy(), topk=1)
    assert p.label == best[3]
    assert predict(mnist_model, one.to(torch.bfloat16) / 255)[0].label == best[3]
    bad = [
        (b"digit.png", r"cannot read bytes as images .*pass io.BytesIO\(data\)"),
        (3, "cannot read an object of type int"),
        ([one.float()], r"float image must hold values in \[0, 1\]"),
        (np.zeros((28, 28), np.int32), "must be uint8 or float"),
        (np.zeros((0, 0), np.uint8), r"an empty image \(0x0 pixels\)"),
        (Image.new("L", (0, 0)), r"an empty image \(0x0 pixels\)"),
        (np.zeros((2, 2, 2, 2, 2), np.uint8), "is not an image or a batch"),
        (images[:5, 0], r"tensor of shape \(5, 28, 28\) is neither one image"),  # (N, H, W)
        (images[:3, 0].numpy(), r"shape \(3, 28, 28\) is ambiguous"),  # 3 images, or CHW?
        (images[0].permute(1, 2, 0), r"tensor of shape \(28, 28, 1\) is neither"),  # HWC tensor
        (np.zeros((28, 28, 2), np.uint8), "is ambiguous"),
        (np.zeros((4, 28, 28, 2), np.uint8), r"shape \(4, 28, 28, 2\) is not a batch"),
    ]
    for image, message in bad:
        with pytest.raises(UserError, match=message):
            predict(mnist_model, image)  # type: ignore[arg-type]
    (p,) = predict(mnist_model, [one.float()], skip_unreadable=True)
    assert p.source == "<image 0>" and "[0, 1]" in (p.error or "")  # not the array printed


def test_an_array_of_paths_is_a_sequence(mnist_model: LoadedModel, tmp_path: Path) -> None:
    test = load_dataset("mnist-mini")["test"]
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(test.images[i, 0].numpy()).save(files[-1])
    want = [p.label for p in predict(mnist_model, files)]
    assert [p.label for p in predict(mnist_model, np.array([str(f) for f in files]))] == want


def test_load_model_errors_and_an_onnx_file(
    mnist_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vitkit.export import export_onnx

    with pytest.raises(UserError, match="no such run or model file"):
        load_model(tmp_path / "nope")
    # the checkpoint's weights, by their path: model.json is the run's, a folder up
    last = load_model(mnist_run / "checkpoint" / "last.safetensors")
    assert last.classes == load_model(mnist_run).classes
    with pytest.raises(UserError, match=r"unknown device in device='gpu'"):
        load_model(mnist_run, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"device='cuda' was asked for .* use device='cpu'"):
            load_model(mnist_run, device="cuda")
    rep = export_onnx(mnist_run, tmp_path / "m.onnx", verify=False)
    lm = load_model(rep.files[0])  # ONNX Runtime, classes and preprocessing from the metadata
    assert lm.classes == load_model(mnist_run).classes and lm.dataset == "mnist-mini"
    test = load_dataset("mnist-mini")["test"]
    want = [p.label for p in predict(mnist_run, test.images[:20])]
    assert [p.label for p in predict(lm, test.images[:20])] == want
    with pytest.raises(UserError, match="runs with ONNX Runtime on the CPU"):
        load_model(rep.files[0], device="cuda")
    # a folder that is not a run says what it is and which path was meant
    with pytest.raises(UserError, match=r"is an export folder, not a run: pass a run \("):
        load_model(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine").symlink_to(mnist_run)
    with pytest.raises(UserError, match=r"runs holds runs, it is not one: pass one of .*mine\)"):
        load_model(tmp_path / "runs")
    with pytest.raises(UserError, match=r"not a run directory \(no model.json\)"):
        load_model(tmp_path / "runs" / "mine" / "checkpoint")
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "model.json").write_bytes((mnist_run / "model.json").read_bytes())
    Path(rep.files[0]).rename(tmp_path / "run" / "export" / "model.onnx")
    with pytest.raises(UserError, match=r"export folder, not a run: pass its run, \S*run \("):
        load_model(tmp_path / "run" / "export")
    (tmp_path / "run" / "export").rename(tmp_path / "elsewhere")  # RUN/export, a link
    (tmp_path / "run" / "export").symlink_to(tmp_path / "elsewhere")
    assert load_model(tmp_path / "run" / "export" / "model.onnx").run_dir == tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # spelled as given, as a run directory's is (predict --json's
    assert load_model("run/export/model.onnx").run_dir == Path("run")  # "run" was absolute)
    monkeypatch.chdir(tmp_path / "run")
    assert load_model("export/model.onnx").run_dir == Path(".")


def test_images_are_read_one_batch_ahead(
    mnist_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """predict read and decoded every input before the first batch ran: memory grew with the
    number of images (~15 GB for 100k 224-px RGB files). It now holds one batch at a time."""
    import importlib
    from dataclasses import replace

    predict_module = importlib.import_module("vitkit.eval.predict")  # the function shadows it

    events: list[str] = []
    real_prepare = predict_module.prepare

    def prepare(*args: object, **kwargs: object) -> object:
        events.append("read")
        return real_prepare(*args, **kwargs)  # type: ignore[arg-type]

    class Counting(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            events.append(f"run {len(x)}")
            return mnist_model.model(x)

    monkeypatch.setattr(predict_module, "prepare", prepare)
    images = load_dataset("mnist-mini")["test"].images[:5]
    preds = predict(replace(mnist_model, model=Counting()), images, batch_size=2)
    assert events == ["read", "read", "run 2", "read", "read", "run 2", "read", "run 1"]
    assert [p.label for p in preds] == [p.label for p in predict(mnist_model, images)]
    # a generator is read as it goes (it was made a list first: a stream never returned)
    events.clear()

    def frames() -> Iterator[torch.Tensor]:
        for image in images:
            events.append("yield")
            yield image

    predict(replace(mnist_model, model=Counting()), frames(), batch_size=2)
    assert events[:6] == ["yield", "read", "yield", "read", "run 2", "yield"]


def test_a_bare_module_or_its_export_is_refused(tmp_path: Path) -> None:
    """A module has no classes or preprocessing: predict said "expected str, bytes or
    os.PathLike object", and its ONNX export (mean/std 0.5, classes 0..N-1 as placeholders)
    classified images with them as if they were a run's."""
    from vitkit.export import export_onnx

    module = vitkit.create_model("vit-nano", image_size=28, in_chans=1, patch_size=7)
    with pytest.raises(UserError, match="got VisionTransformer: a bare module has no classes"):
        predict(module, np.zeros((28, 28), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"result, got NoneType$"):  # not "a bare module"
        predict(None, np.zeros((28, 28), np.uint8))  # type: ignore[arg-type]
    rep = export_onnx(module, tmp_path / "m.onnx", verify=False)
    assert any("placeholders" in n for n in rep.notes)
    with pytest.raises(UserError, match=r"m\.onnx was exported from a model with no run"):
        predict(rep.files[0], np.zeros((28, 28), np.uint8))
    with pytest.raises(UserError, match="no int8 export in this report"):
        rep.precision("int8")
    with pytest.raises(KeyError) as miss:  # as the lookup raised before: callers still catch it
        rep.precision("int8")
    assert str(miss.value) == "no int8 export in this report (it has: fp32)"  # not KeyError's repr


def test_folders_globs_and_open_files(mnist_model: LoadedModel, tmp_path: Path) -> None:
    """A folder, a glob pattern and an open binary file (a browser upload's io.BytesIO) are
    inputs as a path is; each was a UserError ('is a directory', 'no such file', 'an object of
    type bytes': a BytesIO was iterated as lines)."""
    test = load_dataset("mnist-mini")["test"]
    d = tmp_path / "digits"
    (d / "sub").mkdir(parents=True)
    for i, name in enumerate(("a.png", "b.png", "sub/c.png")):
        Image.fromarray(test.images[i, 0].numpy()).save(d / name)
    want = [p.label for p in predict(mnist_model, test.images[:3])]
    assert [p.label for p in predict(mnist_model, d)] == want  # sorted, recursive
    assert [p.label for p in predict(mnist_model, np.array([str(d)]))] == want  # paths' array
    assert [p.source for p in predict(mnist_model, str(d / "*.png"))] == [
        str(d / "a.png"),
        str(d / "b.png"),
    ]
    got = predict(mnist_model, (x for x in [str(d / "**" / "c.png"), d / "a.png"]))
    assert [p.label for p in got] == [want[2], want[0]]
    with pytest.raises(UserError, match=r"no files match .*\*\.jpg"):
        predict(mnist_model, str(d / "*.jpg"))
    data = (d / "b.png").read_bytes()
    (p,) = predict(mnist_model, io.BytesIO(data))
    assert p.label == want[1] and p.source == "<image 0>"
    with open(d / "a.png", "rb") as f:
        assert [p.label for p in predict(mnist_model, [f, io.BytesIO(data)])] == want[:2]
    (am,) = vitkit.attention_maps(mnist_model, io.BytesIO(data))
    assert am.prediction.label == want[1] and am.image.size == (28, 28)
    with pytest.raises(UserError, match="cannot read the stream: not an image file"):
        predict(mnist_model, io.BytesIO(b"junk"))


def test_a_closed_or_text_mode_file_is_a_user_error(
    mnist_model: LoadedModel, tmp_path: Path
) -> None:
    """A closed file raised Python's bare ValueError ('I/O operation on closed file'); a file
    opened in text mode read as 'not an image file' (or a UnicodeDecodeError's text), and so
    did a text-mode SpooledTemporaryFile or NamedTemporaryFile (not TextIOBase themselves)."""
    import tempfile

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    with open(path, "rb") as closed:
        pass
    shut = io.BytesIO(path.read_bytes())
    shut.close()
    with (
        open(path) as text,  # no 'b'
        tempfile.SpooledTemporaryFile(mode="w+") as spooled,  # a TextIOWrapper inside
        tempfile.NamedTemporaryFile(mode="w+", dir=tmp_path) as named,
    ):
        spooled.write("x")
        cases = (
            (closed, f"cannot read {path}: the file is closed"),
            (shut, "cannot read the stream: the file is closed"),
            (text, rf"cannot read {path}: a text-mode file \(TextIOWrapper\) reads str"),
            (io.StringIO("x"), r"cannot read the stream: a text-mode file \(StringIO\)"),
            (spooled, r"the stream: a text-mode file \(SpooledTemporaryFile\) reads str"),
            (named, rf"cannot read {named.name}: a text-mode file \(_TemporaryFileWrapper\)"),
        )
        for image, message in cases:
            with pytest.raises(UserError, match=message) as e:
                predict(mnist_model, image)
            assert "\n" not in str(e.value) and "open(path, 'rb')" in str(e.value)
            with pytest.raises(UserError, match=message):
                vitkit.attention_maps(mnist_model, image)
        (p,) = predict(mnist_model, [text], skip_unreadable=True)
        assert not p.ok and "text-mode" in (p.error or "")
    with tempfile.SpooledTemporaryFile() as binary:  # the same wrapper in binary mode is read
        binary.write(path.read_bytes())
        (p,) = predict(mnist_model, binary)
        assert p.ok and p.label == predict(mnist_model, path)[0].label


def test_an_existing_path_is_never_a_pattern(mnist_model: LoadedModel, tmp_path: Path) -> None:
    """A real folder named like a pattern ('[v1]', 'shots*') is a folder: as the prefix of a
    pattern it matched other folders ('[v1]/*.png' read v/), and a missing file in it was
    'no files match' rather than the path given."""
    test = load_dataset("mnist-mini")["test"]
    folders = ("[v1]", "v", "shots*", "shots1")
    labels = dict(
        zip(folders, [p.label for p in predict(mnist_model, test.images[:4])], strict=True)
    )
    for i, folder in enumerate(folders):
        (tmp_path / folder).mkdir()
        Image.fromarray(test.images[i, 0].numpy()).save(tmp_path / folder / "a.png")
    for given, folder in (
        (tmp_path / "[v1]", "[v1]"),
        (str(tmp_path / "[v1]" / "*.png"), "[v1]"),
        (str(tmp_path / "[v1]" / "**"), "[v1]"),
        (tmp_path / "shots*" / "a.png", "shots*"),
        (str(tmp_path / "shots*" / "*.png"), "shots*"),
    ):
        (p,) = predict(mnist_model, given)
        assert (p.source, p.label) == (str(tmp_path / folder / "a.png"), labels[folder]), given
    # a pattern with no existing folder in it is still a pattern
    got = predict(mnist_model, str(tmp_path / "shots[0-9]" / "*.png"))
    assert [p.source for p in got] == [str(tmp_path / "shots1" / "a.png")]
    with pytest.raises(UserError, match=r"no such file: .*\[v1\]/b\.png"):
        predict(mnist_model, str(tmp_path / "[v1]" / "b.png"))


def test_a_home_path_is_literal_as_a_pattern_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'~/[x].png' was checked for existence before '~' was expanded, so it read as a pattern
    and gave ~/x.png; '~/a.png' (no pattern) was not expanded at all: 'no such file'."""
    from vitkit.eval import expand_inputs

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("[x].png", "x.png", "a.png"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    assert expand_inputs(["~/[x].png"]) == [tmp_path / "[x].png"]
    assert expand_inputs(["~/a.png", "~/[w-z].png"]) == [tmp_path / "a.png", tmp_path / "x.png"]
    assert expand_inputs([tmp_path / "a.png"]) == [tmp_path / "a.png"]


def test_a_mode_pil_cannot_convert_is_a_user_error(mnist_model: LoadedModel) -> None:
    """A LAB image (PIL converts it to neither L nor RGB) raised PIL's ValueError."""
    lab = Image.new("RGB", (28, 28)).convert("LAB")
    with pytest.raises(UserError, match="cannot convert a LAB image to L"):
        predict(mnist_model, lab)
