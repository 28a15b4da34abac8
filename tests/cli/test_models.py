from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitkit import __version__
from vitkit.cli import app

runner = CliRunner()


def test_models_list_json() -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = {r["name"]: r for r in rows}
    assert len(rows) >= 4 and {"vit-nano", "vit-tiny", "vit-small", "vit-base"} <= set(names)
    assert names["vit-tiny"]["params"] == 5_362_762
    assert names["vit-tiny"]["gflops"] > 0


def test_models_list_at_a_size_no_default_patch_fits() -> None:
    """`models list --image-size 31` failed for every model, naming a --patch-size it lacked."""
    result = runner.invoke(app, ["models", "list", "--image-size", "31", "--json"])
    assert result.exit_code == 1 and "--patch-size" in json.loads(result.stdout)["error"]
    args = ["models", "list", "--image-size", "31", "--patch-size", "31", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {r["patch_size"] for r in json.loads(result.stdout)} == {31}


def test_models_list_table_goes_to_stderr() -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "vit-tiny" in result.stderr and "5.36M" in result.stderr


def test_models_show_json_with_overrides() -> None:
    result = runner.invoke(
        app, ["models", "show", "vit-nano", "--image-size", "28", "--channels", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["config"]["image_size"] == 28 and info["config"]["patch_size"] == 4
    assert info["params"] == sum(layer["params"] for layer in info["layers"])
    assert info["layers"][0]["output"] == [1, 49, 64]
    by_name = {layer["name"]: layer["output"] for layer in info["layers"]}
    assert by_name["blocks.2"] == [1, 50, 64] and by_name["blocks.3"] == [1, 1, 64]  # class token
    human = runner.invoke(app, ["models", "show", "vit-nano"])
    assert "blocks.3 computes the class token alone" in " ".join(human.stderr.split())


def test_models_show_names_what_the_options_change_of_the_preset() -> None:
    """`models show vit-tiny --embed-dim 96 --depth 4` was titled "vit-tiny", as vit-tiny is."""
    args = ["models", "show", "vit-tiny", "--embed-dim", "96", "--depth", "4"]
    human = runner.invoke(app, args)
    assert human.exit_code == 0, human.output
    assert human.stderr.splitlines()[0].strip() == "vit-tiny (embed_dim 96, depth 4)"
    info = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert info["name"] == info["model"] == "vit-tiny"  # what scripts read, as before
    assert info["overrides"] == {"embed_dim": 96, "depth": 4}
    plain = runner.invoke(app, ["models", "show", "vit-tiny", "--image-size", "64"])
    assert plain.stderr.splitlines()[0].strip() == "vit-tiny"  # the data's sizes: no override
    info = json.loads(runner.invoke(app, ["models", "show", "vit-tiny", "--json"]).stdout)
    assert info["overrides"] == {}


def test_models_show_unknown_name_is_one_line() -> None:
    result = runner.invoke(app, ["models", "show", "vit-nope"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "vit-nano" in lines[0] and "Traceback" not in result.output


def test_models_show_bad_heads() -> None:
    result = runner.invoke(
        app, ["models", "show", "vit-tiny", "--embed-dim", "100", "--heads", "3"]
    )
    assert result.exit_code == 1
    assert "not divisible by num_heads 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"vitkit {__version__}"


def test_cli_starts_without_importing_torch() -> None:
    """`vitkit --help` and shell completion (which runs the program on every TAB) stay fast:
    the package and the CLI import torch only when a command needs it."""
    import subprocess
    import sys

    code = (
        "import sys, vitkit, vitkit.cli, vitkit.train.callbacks; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "vitkit.create_model; assert 'torch' in sys.modules; "
        "import vitkit.train as t; assert t.TrainConfig.__name__ == 'TrainConfig'; "
        "assert {'benchmark', 'load_model', 'evaluate', 'export_onnx', 'TrainConfig'} "
        "<= set(dir(vitkit)); assert not {'annotations', 'TYPE_CHECKING'} & set(dir(vitkit)); "
        "assert vitkit.resolve_config('mnist-mini').model == 'vit-micro'; "
        "assert vitkit.models.list_models() and vitkit.data.list_datasets()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    bad = subprocess.run(
        [sys.executable, "-c", "import vitkit; vitkit.nonesuch"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "has no attribute 'nonesuch'" in bad.stderr


def test_ctrl_c_while_the_cli_loads_is_one_line_and_130() -> None:
    """Ctrl-C in the first few tenths of a second, while typer, rich and the command modules
    import, printed an import traceback and ended the process by SIGINT; now it ends as one
    during a command does. The installed `vitkit` command enters there too."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vitkit.cli': raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from vitkit.__main__ import main\n"
        "main()\n"
    )
    cut = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (cut.returncode, cut.stderr, cut.stdout) == (130, "interrupted\n", "")
    for argv in (["eval", "--json"], ["--json"]):  # a script reads why, as from a command
        cut = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        assert cut.returncode == 130 and json.loads(cut.stdout) == {"error": "interrupted"}
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '[project.scripts]\nvitkit = "vitkit.__main__:main"\n' in pyproject
    whole = subprocess.run([sys.executable, "-m", "vitkit", "--version"], capture_output=True)
    assert whole.returncode == 0 and whole.stdout.decode().strip() == f"vitkit {__version__}"


def test_command_help_is_reflowed_for_the_terminal() -> None:
    """Typer keeps a docstring's line breaks; the CLI joins each paragraph's lines so that Rich
    wraps help at the terminal's width, not at the source's 100 columns."""
    from vitkit.cli import app as root

    def docs(group):  # type: ignore[no-untyped-def]
        for info in group.registered_commands:
            yield info.callback.__doc__ or ""
        for sub in group.registered_groups:
            yield from docs(sub.typer_instance)

    texts = list(docs(root))
    assert len(texts) >= 10
    for doc in texts:
        assert "\n" not in doc.replace("\n\n", ""), doc
    result = runner.invoke(root, ["--help"], env={"COLUMNS": "80"})
    lines = [ln for ln in result.output.splitlines() if "│ bench" in ln]
    assert lines and "in one table" in result.output


def test_live_output_only_on_a_real_interactive_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """FORCE_COLOR in a pipe makes Rich call stderr a terminal: colours yes, redrawn frames no."""
    import io

    from vitkit.cli import _common

    monkeypatch.setattr(_common.console, "is_interactive", True)
    # _file, not file: undoing `file` would pin the console to this test's stderr for good
    monkeypatch.setattr(_common.console, "_file", io.StringIO())
    assert _common.live_output() is False
    with _common.progress_bar() as progress:
        progress("task", 1, 2)  # the no-op callback: nothing drawn into the pipe
    assert _common.console.file.getvalue() == ""


def test_status_lines_wrap_only_between_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """At any width a status line breaks at its " · " separators, never inside a value."""
    import io

    from vitkit.cli import _common

    for width in (30, 50, 200):
        buf = io.StringIO()
        monkeypatch.setattr(_common.console, "_file", buf)
        monkeypatch.setattr(_common.console, "_width", width)
        _common.status("  [bold]vitkit x[/] run · 1,000 images · cpu · 341 img/s · top-1 97.80%")
        lines = buf.getvalue().splitlines()
        assert all(len(ln) <= width for ln in lines)
        fields = [f.strip() for ln in lines for f in ln.split(" · ")]
        assert fields == ["vitkit x run", "1,000 images", "cpu", "341 img/s", "top-1 97.80%"]
        assert lines[0].startswith("  vitkit") and all(ln.startswith("    ") for ln in lines[1:])
        assert (len(lines) == 1) == (width == 200)
