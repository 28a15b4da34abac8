"""Bad input across the commands: damaged or copied run directories, files where folders belong,
values out of range. Each is one error line and exit code 1 (or, where the input is harmless,
a clean success) — never a traceback, never a write outside the run that was named."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vitkit.cli import app

runner = CliRunner()


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def run(train_nano: Callable[..., Path]) -> Path:
    """A vit-nano run stopped by max_steps: weights, model.json, checkpoint/, metrics.jsonl."""
    return train_nano("bad-input", 1, max_steps=3)


def copy_of(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run, dst)
    return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_continues_in_the_copy_not_where_the_run_began(run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    copy = copy_of(run, tmp_path)
    result = runner.invoke(app, ["train", "--resume", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_dir"] == str(copy)
    assert summary["steps"] == 3  # the run had reached max_steps: no extra step on resume
    assert json.loads((copy / "summary.json").read_text())["resumed_from_step"] == 3
    first = json.loads((run / "summary.json").read_text())
    for key in ("train_images_per_s", "wall_seconds", "last_val"):  # nothing ran: kept as they were
        assert summary[key] == first[key]
    assert snapshot(run) == before  # the original run is untouched


def _edit_state(path: Path, **changes: object) -> None:
    state = torch.load(path, weights_only=True)
    counters = {**state["counters"], **changes.pop("counters", {})}  # type: ignore[dict-item]
    torch.save({**state, "counters": counters, **changes}, path)


def _not_tensor_data(path: Path) -> None:
    torch.save({"counters": {"step": 3}, "what": pathlib.PurePosixPath("x")}, path)


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda d: (d / "checkpoint/last.safetensors").write_bytes(b"\0" * 100),
            "corrupt checkpoint",
        ),
        (lambda d: (d / "checkpoint/state.pt").write_bytes(b"garbage"), "not a PyTorch checkpoint"),
        (lambda d: _not_tensor_data(d / "checkpoint/state.pt"), "never unpickled"),
        (lambda d: _edit_state(d / "checkpoint/state.pt", counters={"x": 1}), "counters"),
        (lambda d: _edit_state(d / "checkpoint/state.pt", counters={"step": "3"}), "counters"),
        (lambda d: _edit_state(d / "checkpoint/state.pt", rng={"cpu": None}), "RNG state"),
        (lambda d: (d / "checkpoint/last.safetensors").unlink(), "no checkpoint (checkpoint/last"),
        (lambda d: (d / "train.json").unlink(), "no train.json"),
        (lambda d: (d / "train.json").write_text("[]"), "holds no training config"),
        (lambda d: (d / "model.json").write_text('{"model": '), "corrupt JSON"),
        (lambda d: (d / "model.safetensors").write_bytes(b"xx"), "corrupt weights file"),
    ],
)
def test_damaged_run_cannot_resume(run: Path, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    copy = copy_of(run, tmp_path)
    damage(copy)
    line = one_error_line(runner.invoke(app, ["train", "--resume", str(copy)]))
    assert message in line
    assert "weights_only" not in line  # never torch's advice to unpickle


@pytest.mark.parametrize("command", ["train", "eval", "export", "bench"])
def test_a_model_json_of_a_model_not_registered_here(
    run: Path, tmp_path: Path, command: str
) -> None:
    """model.json naming a model this process has not registered (a user's, registered by a
    module the CLI does not import; or a typo) read "not a valid model.json: unknown model"."""
    copy = copy_of(run, tmp_path)
    meta = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**meta, "model": "vit-nan"}))
    args = ["train", "--resume", str(copy)] if command == "train" else [command, str(copy)]
    line = one_error_line(runner.invoke(app, args))
    named = f"{copy / 'model.json'} names the model 'vit-nan', which is not registered in this "
    assert line.startswith(f"error: {named}process: import the module that registers it"), line
    assert "; did you mean 'vit-nano'" in line, line  # the registry's closest names
    assert "not a valid model.json" not in line, line


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_an_onnx_file_of_a_model_not_registered_here(
    run: Path, tmp_path: Path, command: str
) -> None:
    """An export whose metadata names a model this process has not registered read
    "FILE: unknown model 'vit-nan'; available: ...", where a run's model.json gets
    check_registered's line (how to make a user's model available)."""
    import onnx

    from vitkit.export import export_onnx

    rep = export_onnx(run, tmp_path / "model.onnx", verify=False)
    proto = onnx.load(rep.files[0])
    prop = next(p for p in proto.metadata_props if p.key == "model_spec")
    prop.value = json.dumps({**json.loads(prop.value), "model": "vit-nan"})
    path = tmp_path / "user.onnx"
    onnx.save(proto, path)
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    args = [command, str(path)] + ([str(image)] if command == "predict" else [])
    line = one_error_line(runner.invoke(app, args))
    named = f"{path} names the model 'vit-nan', which is not registered in this process: "
    assert line.startswith(f"error: {named}import the module that registers it"), line
    assert "; did you mean 'vit-nano'" in line, line


@pytest.mark.parametrize(
    "content",
    [
        "null",
        '{"model": 5, "config": {}}',
        '{"model": ["a"], "config": {}}',
        '{"model": "vit-nano", "config": [1]}',
        "MODEL_JSON_WITH classes=5",
        'MODEL_JSON_WITH mean="x"',
        "MODEL_JSON_WITH mean=[0.5, 0.5]",
        "MODEL_JSON_WITH mean=null",  # was: 0.5 guessed, 31% on mnist-mini and exit 0
        "MODEL_JSON_WITH std=[0.0]",  # was: eval read top-1 10%, loss nan, exit 0
        "MODEL_JSON_WITH std=[-1.0]",
        "MODEL_JSON_WITH std=[NaN]",
        "MODEL_JSON_WITH dataset=7",
        'MODEL_JSON_WITH mlp_ratio="2"',
        'MODEL_JSON_WITH classes=["only one"]',  # predict: IndexError; with too many, wrong names
    ],
)
@pytest.mark.parametrize("command", ["eval", "export", "bench", "predict"])
def test_model_json_of_the_wrong_shape(
    run: Path, tmp_path: Path, content: str, command: str
) -> None:
    """Valid JSON with wrong types in model.json: one line naming the file, never a traceback."""
    copy = copy_of(run, tmp_path)
    if content.startswith("MODEL_JSON_WITH "):
        meta = json.loads((copy / "model.json").read_text())
        key, value = content.removeprefix("MODEL_JSON_WITH ").split("=", 1)
        if key == "mlp_ratio":
            meta["config"][key] = json.loads(value)
        else:
            meta[key] = json.loads(value)
        content = json.dumps(meta)
    (copy / "model.json").write_text(content)
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    args = [command, str(copy), *([str(image)] if command == "predict" else [])]
    line = one_error_line(runner.invoke(app, args))
    assert "model.json" in line, line
    if "only one" in content:
        assert "names 1 classes for a model of" in line, line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--warmup-epochs", "inf"], "warmup epochs must be a finite number"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--mlp-ratio", "nan"], "mlp_ratio must be a finite number"),
        (["--seed", "99999999999999999999999"], "seed must be in [-2**63, 2**64)"),
        (["--image-size", "64"], "dataset 'mnist-mini' has no option --image-size"),
    ],
)
def test_non_finite_and_huge_numbers(args: list[str], message: str) -> None:
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", *args, "--print-config"]))
    assert message in line


def test_a_model_too_large_to_build_is_one_line() -> None:
    # patch size scales with the image: 10000x10000 patches, 57 billion parameters
    line = one_error_line(
        runner.invoke(app, ["models", "show", "vit-tiny", "--image-size", "100000"])
    )
    assert "57,605,360,458 parameters" in line
    line = one_error_line(
        runner.invoke(
            app, ["models", "show", "vit-tiny", "--image-size", "4096", "--patch-size", "4"]
        )
    )
    assert "1,048,576 patches" in line


def test_damaged_train_json_and_config_files(run: Path, tmp_path: Path) -> None:
    copy = copy_of(run, tmp_path)
    saved = json.loads((copy / "train.json").read_text())
    (copy / "train.json").write_text(json.dumps({**saved, "data_root": 5}))
    assert "data_root must be a path" in one_error_line(
        runner.invoke(app, ["train", "--resume", str(copy)])
    )
    (copy / "train.json").write_text("[1]")
    result = runner.invoke(app, ["eval", str(copy), "--json"])  # eval falls back to defaults
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(copy), "--json"])  # so does export (a traceback)
    assert result.exit_code == 0, result.output
    bad_yaml = tmp_path / "c.yaml"
    bad_yaml.write_text("epochs: [1\n")
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(bad_yaml)]))
    assert "cannot parse" in line and "(line 2, column 1)" in line  # PyYAML's says only what
    twice = tmp_path / "twice.json"  # one spelling would have won unseen
    twice.write_text('{"batch-size": 32, "batch_size": 64}')
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(twice)]))
    assert "sets 'batch_size' twice ('batch-size' and 'batch_size')" in line
    twice.write_text('{"epochs": 1, "epochs": 5}')  # json keeps the last without a word
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(twice)]))
    assert "'epochs' is set twice" in line
    bad_yaml.write_text("epochs: 1\nlr: 0.1\nepochs: 5\n")  # PyYAML kept the last, silently
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(bad_yaml)]))
    assert line.endswith("'epochs' is set twice (line 3, column 1)"), line
    bad_yaml.write_text("model_overrides:\n  depth: 2\n  depth: 4\n")  # nested mappings too
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(bad_yaml)]))
    assert "'depth' is set twice" in line
    # both spellings in model_overrides (as at the top level): the last one won unseen
    for text, first, second in [
        ("model_overrides:\n  embed_dim: 64\n  embed-dim: 32\n", "embed_dim", "embed-dim"),
        ('{"model_overrides": {"embed-dim": 48, "embed_dim": 32}}', "embed-dim", "embed_dim"),
    ]:
        path = tmp_path / ("both.yaml" if text.startswith("model") else "both.json")
        path.write_text(text)
        args = ["train", "mnist-mini", "--config", str(path), "--print-config"]
        line = one_error_line(runner.invoke(app, args))
        assert line.endswith(f"sets 'model_overrides.embed_dim' twice ('{first}' and '{second}')")
    bad_yaml.write_text("? [a, b]\n: 1\n")  # a list as a key: a TypeError in the check above
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--config", str(bad_yaml)]))
    assert line.endswith("found unhashable key (line 1, column 3)"), line
    bad_yaml.write_text("base: &b {epochs: 1, lr: 1}\nrun:\n  <<: *b\n  lr: 0.1\n")  # a merge
    from vitkit.train.config import read_config_file  # key's values may be overridden

    assert read_config_file(bad_yaml)["run"] == {"epochs": 1, "lr": 0.1}
    latin = tmp_path / "c.json"
    latin.write_bytes(b'{"lr": "\xe9"}')
    assert "not UTF-8" in one_error_line(
        runner.invoke(app, ["train", "mnist-mini", "--config", str(latin)])
    )


def test_checkpoint_of_another_model_names_the_mismatch(run: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from vitkit.models import create_model

    copy = copy_of(run, tmp_path)
    other = create_model("vit-nano", image_size=28, in_chans=1, patch_size=4, num_classes=10)
    save_file(other.state_dict(), copy / "checkpoint" / "last.safetensors")
    line = one_error_line(runner.invoke(app, ["train", "--resume", str(copy)]))
    assert "does not fit" in line and "size mismatch for" in line


def test_damaged_metrics_log_does_not_fail_a_resume(run: Path, tmp_path: Path) -> None:
    copy = copy_of(run, tmp_path)
    with open(copy / "metrics.jsonl", "ab") as f:
        f.write(b'{"kind": "epoch", "ep\xf5\xff\n')  # a line cut short, and not UTF-8
    before = (copy / "metrics.jsonl").read_bytes()
    result = runner.invoke(app, ["train", "--resume", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    # read past, not "repaired": no line is past the checkpoint (step 3), the damaged one is
    # kept as it is, and the run's figures are the run's
    assert (copy / "metrics.jsonl").read_bytes() == before
    assert json.loads(result.stdout)["steps"] == 3
    assert (
        json.loads(result.stdout)["test_acc"]
        == json.loads((run / "summary.json").read_text())["test_acc"]
    )


def test_an_os_error_without_a_file_keeps_its_traceback() -> None:
    from vitkit.cli._common import user_errors

    @user_errors
    def broken() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        broken()


def test_config_values_from_python_callers_are_normalised() -> None:
    import numpy as np

    from vitkit.train import TrainConfig

    c = TrainConfig.from_dict({"epochs": np.int64(3), "lr": 1, "out": Path("/tmp/r")})
    assert (c.epochs, c.lr, c.out) == (3, 1.0, "/tmp/r")
    assert type(c.epochs) is int and type(c.lr) is float and type(c.out) is str


def test_config_file_value_of_the_wrong_type(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('epochs = "many"\n')
    args = ["train", "mnist-mini", "--config", str(cfg), "--out", str(tmp_path / "r")]
    assert "'epochs' must be an integer, got 'many'" in one_error_line(runner.invoke(app, args))


def test_a_file_where_a_folder_belongs(tmp_path: Path) -> None:
    f = tmp_path / "digit.png"
    f.write_bytes(b"not a folder")
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--out", str(f)]))
    assert f"{f} is a file, not a folder" in line
    run = f / "run"  # it read "cannot write in .../digit.png: File exists"
    line = one_error_line(runner.invoke(app, ["train", "mnist-mini", "--out", str(run)]))
    assert f"{f} is a file, not a folder" in line
    line = one_error_line(runner.invoke(app, ["data", "info", "mnist-mini", "--data-root", str(f)]))
    assert f"{f} is a file, not a folder" in line
    out = f / "grid.png"  # it read "File exists: '.../digit.png'"
    line = one_error_line(runner.invoke(app, ["data", "preview", "mnist-mini", "--out", str(out)]))
    assert line == f"error: {f} is a file, not a folder"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--verify-images", "0"], "--verify-images must be >= 1"),
        (["--verify-images", "-5"], "--verify-images must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--atol", "-1"], "--atol must be >= 0"),
    ],
)
def test_export_values_out_of_range(run: Path, tmp_path: Path, args: list[str], message: str) -> None:  # fmt: skip
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(run), "--onnx", "--out", str(out), *args])
    assert message in one_error_line(result)
    assert not list(tmp_path.iterdir())  # nothing written


def test_other_values_out_of_range(tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    line = one_error_line(runner.invoke(app, ["data", "preview", "mnist-mini", "--out", str(out), "--n", "0"]))  # fmt: skip
    assert line.endswith("-n must be >= 1, got 0") and "--n" not in line and not out.exists()
    line = one_error_line(runner.invoke(app, ["models", "show", "vit-tiny", "--image-size", "-32"]))
    assert "image_size must be a positive integer, got -32" in line


def test_bench_refuses_what_it_cannot_honour(run: Path, tmp_path: Path) -> None:
    base = ["bench", str(run), "--runtimes", "eager", "--batch-sizes", "1", "--out", str(tmp_path)]
    line = one_error_line(runner.invoke(app, [*base, "--device", "cpu", "--data", "mnsit"]))
    assert "did you mean 'mnist'" in line
    if not torch.cuda.is_available():
        line = one_error_line(runner.invoke(app, [*base, "--device", "cuda"]))
        assert "CUDA is not available" in line


def test_bench_data_naming_the_runs_own_dataset_keeps_its_options(tmp_path: Path) -> None:
    from PIL import Image

    from vitkit.train import TrainConfig, train

    root = tmp_path / "tree"
    for split in ("train", "test"):
        for c, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            (root / split / c).mkdir(parents=True)
            for i in range(8):
                Image.new("RGB", (20, 20), colour).save(root / split / c / f"{i}.png")
    config = TrainConfig(
        dataset=f"folder:{root}",
        dataset_options={"image_size": 16},  # trained at 16 px from 20 px files
        model="vit-nano",
        epochs=1,
        batch_size=8,
        max_steps=1,
        out=str(tmp_path / "run"),
    )
    run = train(config, data_root=tmp_path / "data").run_dir
    args = ["bench", str(run), "--runtimes", "eager", "--batch-sizes", "1", "--device", "cpu"]
    args += ["--min-time", "0.01", "--warmup", "0", "--rounds", "1", "--out", str(tmp_path / "b")]
    result = runner.invoke(app, [*args, "--data", f"folder:{root}", "--data-root", str(tmp_path / "data"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["synthetic"] is False  # its 16 px test images
    other = tmp_path / "big"  # another folder of 20 px files: decoded at 16 px, as eval does
    shutil.copytree(root, other)
    result = runner.invoke(app, [*args, "--data", f"folder:{other}", "--data-root", str(tmp_path / "data"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reference_accuracy"] is not None
    # on disk, but 28 px grey: named, with the reason (not "--download")
    line = one_error_line(runner.invoke(app, [*args, "--data", "mnist-mini"]))
    assert "28 px" in line and "16 px" in line and "--download" not in line


def test_onnx_file_of_another_model(run: Path, tmp_path: Path) -> None:
    from vitkit.export import export_onnx
    from vitkit.models import create_model

    other = create_model("vit-nano", image_size=32, num_classes=10).eval()
    rep = export_onnx(other, tmp_path / "other.onnx", verify=False)
    line = one_error_line(
        runner.invoke(app, ["eval", str(run), "--onnx-file", rep.files[0], "--device", "cpu"])
    )
    assert "is an export of another model" in line and "vitkit eval" in line
    assert "another vit-nano configuration: image_size 32 vs 28" in line, line
    micro = create_model("vit-micro", image_size=28, in_chans=1, num_classes=10).eval()
    rep = export_onnx(micro, tmp_path / "micro.onnx", verify=False)
    line = one_error_line(
        runner.invoke(app, ["eval", str(run), "--onnx-file", rep.files[0], "--device", "cpu"])
    )  # it said "vit-micro, not this run's vit-nano of the same configuration"
    assert "(vit-micro, not this run's vit-nano)" in line, line
    five = create_model("vit-nano", image_size=28, patch_size=7, in_chans=1, num_classes=5).eval()
    rep = export_onnx(five, tmp_path / "five.onnx", verify=False)  # 5 classes: it crashed
    line = one_error_line(
        runner.invoke(app, ["eval", str(run), "--onnx-file", rep.files[0], "--device", "cpu"])
    )
    assert "is an export of another model" in line and "num_classes 5 vs 10" in line, line


def test_onnx_file_of_other_weights(run: Path, tmp_path: Path) -> None:
    """The run's export, scored for a run with other weights (or a stale RUN/export after the
    weights changed): refused, not reported as that run's accuracy."""
    from vitkit.artifact import load_model, save_weights
    from vitkit.export import export_onnx

    rep = export_onnx(run, tmp_path / "export" / "model.onnx", verify=False)
    copy = copy_of(run, tmp_path)
    model = load_model(copy).model
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    save_weights(copy / "model.safetensors", model)
    args = ["eval", str(copy), "--onnx-file", rep.files[0], "--device", "cpu"]
    line = one_error_line(runner.invoke(app, args))
    assert "exported from other weights" in line and "vitkit export" in line
    assert not (copy / "eval").exists()
    result = runner.invoke(app, ["eval", str(run), "--onnx-file", rep.files[0], "--device", "cpu"])
    assert result.exit_code == 0, result.output  # its own weights: evaluated


def test_an_onnx_file_evaluated_on_its_own(run: Path, tmp_path: Path) -> None:
    """What the refusals above suggest works: `vitkit eval FILE.onnx` scores the file with its own
    classes and preprocessing (its metadata), on the dataset it records, and writes beside it."""
    from vitkit.export import export_onnx

    rep = export_onnx(run, tmp_path / "export" / "model.onnx", verify=False)
    onnx_file = Path(rep.files[0])
    result = runner.invoke(app, ["eval", str(onnx_file), "--json"])
    assert result.exit_code == 0, result.output
    alone = json.loads(result.stdout)
    assert alone["device"] == f"onnxruntime-cpu ({onnx_file})" and alone["run"] == str(onnx_file)
    assert alone["dataset"] == "mnist-mini" and alone["n"] == 1000
    assert (tmp_path / "export" / "eval-model" / "eval.json").is_file()
    result = runner.invoke(app, ["eval", str(run), "--onnx-file", str(onnx_file), "--json", "--out", str(tmp_path / "ev")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert alone["top1"] == json.loads(result.stdout)["top1"]  # the same file, the same score
    line = one_error_line(runner.invoke(app, ["eval", str(onnx_file), "--onnx"]))
    assert "is an ONNX file already" in line
    line = one_error_line(runner.invoke(app, ["eval", str(onnx_file), "--device", "cuda"]))
    assert "runs with ONNX Runtime on the CPU" in line
    out = tmp_path / "x.png"
    line = one_error_line(runner.invoke(app, ["explain", str(onnx_file), str(onnx_file), "--out", str(out)]))  # fmt: skip
    assert "attention maps need the PyTorch model" in line
    for cmd in (["export", str(onnx_file), "--out", str(tmp_path / "x.onnx")], ["bench", str(onnx_file)]):  # fmt: skip
        line = one_error_line(runner.invoke(app, cmd))  # exports crashed, bench timed nothing
        assert "is an ONNX file: export and bench work from the PyTorch weights" in line
        assert f"`vitkit eval {onnx_file}` scores the file alone" in line
    shutil.copy(run / "model.json", tmp_path / "model.json")  # RUN/export/model.onnx: RUN named
    line = one_error_line(runner.invoke(app, ["bench", str(onnx_file)]))
    assert f"pass {tmp_path} (bench times its ONNX exports" in line
    (tmp_path / "model.json").unlink()
    folder = tmp_path / "run.onnx"  # a run directory named like a file: still a run
    shutil.copytree(run, folder)
    result = runner.invoke(app, ["eval", str(folder), "--json", "--device", "cpu"])
    assert result.exit_code == 0 and (folder / "eval" / "eval.json").is_file(), result.output


def test_device_names_are_read_in_any_case(run: Path, tmp_path: Path) -> None:
    """`vitkit eval RUN --device CPU` was "unknown device in --device CPU (use auto, cpu, ...)"
    while `vitkit bench --device CPU` ran: every command, and load_model, reads the name in any
    case (torch knows lower case only)."""
    from vitkit._device import resolve_device
    from vitkit.artifact import load_model
    from vitkit.export import export_onnx

    copy = copy_of(run, tmp_path)
    onnx_file = export_onnx(copy, verify=False).files[0]  # RUN/export/model.onnx, for --onnx
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 128).save(image)
    train = ["train", "mnist-mini", "--model", "vit-nano", "--patch-size", "7", "--epochs", "1"]
    bench = ["bench", str(copy), "--runtimes", "eager", "--batch-sizes", "1", "--min-time",
             "0.01", "--warmup", "0", "--rounds", "1", "--accuracy-images", "8"]  # fmt: skip
    commands = [
        [*train, "--max-steps", "1", "--out", str(tmp_path / "trained")],
        ["eval", str(copy)],
        ["eval", str(copy), "--onnx"],
        ["eval", onnx_file],
        ["predict", str(copy), str(image)],
        ["predict", onnx_file, str(image)],
        ["explain", str(copy), str(image), "--out", str(tmp_path / "explained.png")],
        [*bench, "--out", str(tmp_path / "bench")],
    ]
    for args in commands:
        for name in ("CPU", " Auto") if args[0] != "bench" else ("CPU",):  # bench: cpu or cuda
            result = runner.invoke(app, [*args, "--device", name, "--json"])
            assert result.exit_code == 0, (args, name, result.output)
            if args[0] == "train":
                shutil.rmtree(tmp_path / "trained")
    assert next(load_model(copy, device="CPU").model.parameters()).device.type == "cpu"
    assert load_model(onnx_file, device="Cpu").path is not None
    assert resolve_device("CUDA:1", here=False) == torch.device("cuda", 1)
    line = one_error_line(runner.invoke(app, ["eval", str(copy), "--device", "GPU"]))
    assert "unknown device in --device GPU" in line  # named as given


def test_weights_that_do_not_fit_model_json(run: Path, tmp_path: Path) -> None:
    copy = copy_of(run, tmp_path)
    meta = json.loads((copy / "model.json").read_text())
    meta["config"]["embed_dim"] = 32
    meta["config"]["num_heads"] = 2
    (copy / "model.json").write_text(json.dumps(meta))
    line = one_error_line(runner.invoke(app, ["eval", str(copy), "--device", "cpu"]))
    assert "does not fit" in line and "size mismatch for" in line


def test_error_lines_keep_square_brackets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hints name extras like 'vitkit[tensorboard]': Rich must print them, not read markup."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "mnist-mini", "--tensorboard", "--out", str(out)])
    assert "pip install 'vitkit[tensorboard]'" in one_error_line(result)
    assert not out.exists()  # refused before any work
    # a config written for another machine (one with TensorBoard) is not refused for it
    result = runner.invoke(app, ["train", "mnist-mini", "--tensorboard", "--print-config"])
    assert result.exit_code == 0 and json.loads(result.stdout)["tensorboard"] is True


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); the final file gets open()'s mode."""
    import os

    from vitkit.artifact import atomic_path, atomic_write, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.onnx") as p:
            p.write_bytes(b"x")
        os.umask(0o077)
        with atomic_write(tmp_path / "c.bin") as f:
            f.write(b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.bin").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_target_is_named_not_its_temp_file() -> None:
    from vitkit.artifact import atomic_write
    from vitkit.cli._common import os_error_line

    with pytest.raises(OSError) as e, atomic_write("/proc/x.csv") as f:
        f.write(b"y")
    assert os_error_line(e.value).endswith(": '/proc/x.csv'")


def test_json_never_holds_a_bare_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A diverged run's figures are NaN: `--json` and the files must still be strict JSON."""
    from vitkit.artifact import read_json, write_json
    from vitkit.cli._common import emit_json

    doc = {"loss": float("nan"), "ece": float("inf"), "ok": [1.5, float("-inf")], "n": 3}
    emit_json(doc)
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    assert json.loads(out) == {"loss": None, "ece": None, "ok": [1.5, None], "n": 3}
    write_json(tmp_path / "x.json", doc)
    assert read_json(tmp_path / "x.json")["loss"] is None


def test_eval_data_works_when_the_recorded_dataset_is_gone(run: Path, tmp_path: Path) -> None:
    """--data names the dataset: the one model.json records (renamed, a plugin's) is not read."""
    copy = copy_of(run, tmp_path)
    meta = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**meta, "dataset": "mnist-old"}))
    result = runner.invoke(app, ["eval", str(copy), "--data", "mnist-mini", "--json"])
    assert result.exit_code == 0, result.output


def test_export_data_root_naming_a_file(run: Path, tmp_path: Path) -> None:
    """It fell back to synthetic images, skipping the int8 accuracy gate."""
    (tmp_path / "afile").write_text("not a folder")
    args = ["export", str(run), "--onnx", "--out", str(tmp_path / "m.onnx")]
    line = one_error_line(runner.invoke(app, [*args, "--data-root", str(tmp_path / "afile")]))
    assert "--data-root" in line and "is a file, not a folder" in line
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_export_to_a_folder_that_takes_no_files(run: Path) -> None:
    """The error names --out's folder, not the scratch folder export makes inside it."""
    line = one_error_line(
        runner.invoke(app, ["export", str(run), "--onnx", "--out", "/proc/m.onnx"])
    )
    assert "cannot write to /proc (--out /proc/m.onnx)" in line and ".vitkit-export" not in line


def test_ctrl_c_before_training_says_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while a command starts up (imports, a download, loading data) is one line and 130,
    not Typer's silent exit."""
    import vitkit.data

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(vitkit.data, "load_dataset", interrupted)
    result = runner.invoke(app, ["data", "info", "mnist-mini", "--data-root", str(tmp_path)])
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "interrupted"


@pytest.mark.parametrize(
    "command,target",
    [
        (["eval", "RUN"], "vitkit.eval.evaluate"),
        (["export", "RUN"], "vitkit.export.export_onnx"),
        (["bench", "RUN"], "vitkit.bench.benchmark"),
        (["data", "info", "mnist-mini"], "vitkit.data.load_dataset"),
    ],
)
def test_ctrl_c_under_json_is_a_json_document(
    run: Path, command: list[str], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during a long command under --json left stdout empty: a script reading the
    document got nothing. It is {"error": "interrupted"}, exit code 130, as the terminal's."""

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    args = [str(run) if a == "RUN" else a for a in command]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 130, result.output
    assert json.loads(result.stdout) == {"error": "interrupted"}
    assert result.stderr.strip() == "interrupted"


def test_our_error_lines_are_never_cut() -> None:
    """A long UserError ended mid-word (`place the file at .../train-images-idx3-`): the end of
    ours says what to do. Another library's line is cut, visibly."""
    from vitkit.errors import UserError, first_line

    ours = UserError("no network: " + "x" * 400 + " place the file at /data/mnist/file.gz")
    assert first_line(ours).endswith("place the file at /data/mnist/file.gz")
    theirs = first_line(RuntimeError("checker: " + "y" * 400 + "\nsecond line"))
    assert len(theirs) == 300 and theirs.endswith("…")
    # a weights mismatch listing many keys was cut mid-key with no sign of it
    from vitkit.errors import state_dict_mismatch

    keys = ", ".join(f'"blocks.{i}.mlp.fc1.bias"' for i in range(30))
    line = state_dict_mismatch(RuntimeError(f"Error(s) in loading:\n\tOther key(s): {keys}"))
    assert line.startswith("Other key(s)") and len(line) == 300 and line.endswith("…")
    # torch's own key lists: counted, the first few named (the dump ran past the line)
    torch_says = f"Error(s) in loading state_dict for M:\n\tMissing key(s) in state_dict: {keys}. "
    assert state_dict_mismatch(RuntimeError(torch_says)) == (
        "the file lacks 30 of the model's tensors (blocks.0.mlp.fc1.bias, "
        "blocks.1.mlp.fc1.bias, blocks.2.mlp.fc1.bias and 27 more)"
    )


def test_training_on_a_folder_without_train_split(tmp_path: Path) -> None:
    """A folder of images to score (no train/) loads, and training on it says what is missing."""
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / c / "x.png")
    args = ["train", f"folder:{tmp_path / 'imgs'}", "--model", "vit-nano", "--patch-size", "4"]
    line = one_error_line(runner.invoke(app, [*args, "--out", str(tmp_path / "run")]))
    assert "has no train split to train on (it has: test)" in line
    assert "PATH/train/<class>/" in line


def test_an_onnx_file_with_damaged_metadata(run: Path, tmp_path: Path) -> None:
    """Metadata that is not JSON (or names a size its model does not take) was a traceback."""
    import onnx

    from vitkit.export import export_onnx

    rep = export_onnx(run, tmp_path / "model.onnx", verify=False)
    good = onnx.load(rep.files[0])
    for key, value, message in (
        ("classes", "[not json", r"damaged vitkit metadata \('classes': Expecting value"),
        ("batch", "many", r"damaged vitkit metadata \('batch': invalid literal"),
        ("image_size", "32", r"damaged vitkit metadata: its input is 32 px x 1"),
        ("std", "[0]", r"damaged vitkit metadata: 'std' must be positive"),
    ):
        bad = onnx.ModelProto()
        bad.CopyFrom(good)
        next(p for p in bad.metadata_props if p.key == key).value = value
        path = tmp_path / f"bad-{key}.onnx"
        onnx.save(bad, path)
        assert re.search(message, one_error_line(runner.invoke(app, ["eval", str(path)])))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "info", "nosuch", "--json"], "unknown dataset 'nosuch'"),
        (["train", "mnist-mini", "--heads", "5", "--json"], "not divisible by num_heads 5"),
        (["eval", "{run}", "--split", "val", "--json"], "has no split 'val'"),
        (["train", "--json"], "give a DATASET"),
    ],
)
def test_under_json_an_error_is_the_json_document(run: Path, args: list[str], message: str) -> None:
    """A script piping --json to jq read empty input on an error: stdout had nothing."""
    result = runner.invoke(app, [a.replace("{run}", str(run)) for a in args])
    line = one_error_line(result)  # the red line on stderr, as without --json
    doc = json.loads(result.stdout)
    assert list(doc) == ["error"] and message in doc["error"] and doc["error"] in line


def test_a_quoted_home_path_is_expanded_everywhere(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'~/runs/x' quoted, from a script or a config file (no shell to expand it) was 'no such run
    or model file: ~/runs/x' in eval, export and bench, and train --out, explain --out and a
    config file's out made a folder named '~' in the current one."""
    home, here = tmp_path / "home", tmp_path / "here"
    here.mkdir()
    shutil.copytree(run, home / "r")
    Image.new("L", (28, 28), 128).save(home / "a.png")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    fast_bench = ["--runtimes", "eager", "--device", "cpu", "--batch-sizes", "1", "--min-time"]
    fast_bench += ["0.02", "--warmup", "1", "--rounds", "1", "--accuracy-images", "0"]
    checks = [
        (["eval", "~/r", "--out", "~/ev"], home / "ev" / "eval.json"),
        (["export", "~/r", "--out", "~/m.onnx", "--no-verify"], home / "m.onnx"),
        (["explain", "~/r", "~/a.png", "--out", "~/x.png"], home / "x.png"),
        (["predict", "~/r/checkpoint/last.safetensors", "~/a.png"], None),
        (["data", "preview", "mnist-mini", "-n", "2", "--out", "~/p.png"], home / "p.png"),
        (["data", "info", "mnist-mini", "--data-root", "~/data"], home / "data" / "mnist-mini"),
        (["bench", "~/r", *fast_bench, "--out", "~/b"], home / "b" / "bench.json"),
        (["train", "--resume", "~/r"], None),
    ]
    for args, made in checks:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert made is None or made.exists(), args
    assert list(here.iterdir()) == []  # no ./~ anywhere
    tiny = ["train", "mnist-mini", "--model", "vit-nano", "--patch-size", "7", "--max-steps", "1"]
    result = runner.invoke(app, [*tiny, "--out", "~/t1"])
    assert result.exit_code == 0, result.output
    assert (home / "t1" / "model.json").is_file()
    (here / "c.toml").write_text('out = "~/t2"\n')  # a config file's path: no shell either
    result = runner.invoke(app, [*tiny, "--config", "c.toml", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_dir"] == str(home / "t2")
    assert sorted(p.name for p in here.iterdir()) == ["c.toml"]
