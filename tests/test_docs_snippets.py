"""The commands and Python snippets in README.md and docs/*.md, checked against the code, so that
a renamed command, flag, function or argument fails here rather than in a reader's terminal.

- Every `vitkit ...` line (in ```bash/sh/console blocks, in the plain blocks that give a
  command's synopsis, and in inline code) names a command that exists, and every flag it uses
  is one of that command's. A line that is a real command (no `[...]` synopsis brackets) also
  goes through the command's own click parser: an option missing its value, or more arguments
  than the command takes, fails. Placeholders (RUN, <run>, PATH, N) are ordinary words to the
  parser, so they pass; a wrong *value* (`--int8 fast`) is the command's to refuse at run time
  and is not checked here.
- Every ```python snippet parses, every `vitkit` module, function, class and attribute it names
  exists, and a call to one of them passes only parameters it has.
- The ONNX Runtime consumer of docs/export.md, which needs nothing but an exported file, runs.

docs/cli.md is left out: it is generated from the app, and tests/cli/test_docs.py checks it.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import inspect
import re
import shlex
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from vitkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md")]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SHELL = {"bash", "sh", "shell", "console", ""}  # "": a plain block, e.g. a command's synopsis
# inline code that is a command: `vitkit eval RUN --data folder:PATH` (it may wrap a line)
INLINE = re.compile(r"(?<!`)`(vitkit (?:[^`\n]|\n(?!\s*\n))+)`")
# where a shell line stops being vitkit's: a pipe into another program, a redirect, `&&`, `;`
SHELL_TAIL = re.compile(r"\s(?:\||\|\||&&|;|>|>>|2>&1)\s.*", re.S)
FLAG = re.compile(r"(?<![\w/-])(--?[A-Za-z][\w-]*)")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _lineno(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _shell_lines(lang: str, body: str) -> Iterator[tuple[int, str]]:
    """(line offset in the block, command) for each vitkit command of a fenced shell block:
    `\\`-continued and (in a synopsis) indented lines joined; a console block's commands are
    its `$ ` lines, the rest is output."""
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        start, line = i, lines[i]
        i += 1
        if lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        line = re.sub(r"\s+#.*", "", line)  # a shell comment
        while line.endswith("\\") and i < len(lines):
            line, i = line[:-1] + " " + lines[i].strip(), i + 1
        if lang == "":
            while i < len(lines) and lines[i][:1].isspace() and lines[i].strip():
                line, i = line + " " + lines[i].strip(), i + 1
        words = line.split()
        if "vitkit" not in words:
            continue
        at = words.index("vitkit")
        if at == 0 or words[at - 1] == "-m":  # vitkit ..., python -m vitkit, torchrun ... -m vitkit
            yield start, " ".join(words[at:])


def doc_commands() -> list[tuple[str, str, bool]]:
    """(where, command line, whether it is inline code) for every vitkit command in the docs."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            if block.group(1) in SHELL:
                first = _lineno(text, block.start(2))
                for offset, line in _shell_lines(block.group(1), block.group(2)):
                    found.append((f"{_rel(page)}:{first + offset}", line, False))
        # inline code, also in a fenced block's comments (`# + TensorBoard for `vitkit train
        # --tensorboard``); fence lines are blanked so that ``` never opens a span
        plain = re.sub(r"^```.*$", "", text, flags=re.M)
        for span in INLINE.finditer(plain):
            where = f"{_rel(page)}:{_lineno(plain, span.start())}"
            found.append((where, " ".join(span[1].split()), True))
    return found


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unclosed quote in prose
        return line.split(" #")[0].split()


def _flags(cmd: Any, ctx: Any) -> set[str]:
    help_option = cmd.get_help_option(ctx)
    return {
        f
        for p in [*cmd.params, *([help_option] if help_option else [])]
        for f in (*p.opts, *p.secondary_opts)
        if f.startswith("-")
    }


def _closest(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name


@functools.cache
def _root() -> Any:
    return typer.main.get_command(app)


def _check(line: str, mention: bool = False) -> str | None:
    """None when `line` is a command the app takes; else what is wrong with it. A `mention`
    (inline code in prose) may end on an option without its value: `vitkit train --out`."""
    line = SHELL_TAIL.sub("", line)
    synopsis = "[" in line  # `vitkit export [RUN] --onnx [--out FILE] [--optimize/--no-optimize]`
    words = _tokens(line)[1:] if not synopsis else line.split()[1:]
    cmd: Any = _root()
    ctx: Any = typer.Context(cmd, info_name="vitkit")
    path = "vitkit"
    while hasattr(cmd, "list_commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        sub = cmd.get_command(ctx, name)
        if sub is None:
            return f"`{path}` has no command {_closest(name, cmd.list_commands(ctx))}"
        cmd, ctx, path = sub, typer.Context(sub, info_name=name, parent=ctx), f"{path} {name}"
    flags = _flags(cmd, ctx)
    unknown = [f for f in FLAG.findall(" ".join(words)) if f.split("=")[0] not in flags]
    if unknown:
        return f"`{path}` has no option " + ", ".join(_closest(f, flags) for f in unknown)
    if synopsis or hasattr(cmd, "list_commands"):
        return None
    takes_value = {
        f for p in cmd.params if not getattr(p, "is_flag", True) for f in p.opts if f[0] == "-"
    }
    if mention and words and words[-1] in takes_value:
        words.append("VALUE")
    try:
        _opts, extra, _order = cmd.make_parser(ctx).parse_args(list(words))
    except Exception as e:  # click's UsageError: an option without its value, ...
        return f"`{path}`: {e}"
    if extra:
        return f"`{path}` takes no more arguments than {extra!r} (got {words})"
    return None


COMMANDS = doc_commands()


def test_the_docs_have_the_commands_this_test_reads() -> None:
    # the extraction must see the pages, or every check below would pass on nothing
    lines = {line for _, line, _ in COMMANDS}
    assert len(COMMANDS) > 100
    assert "vitkit train mnist-mini" in lines  # a bash block (README, docs/train.md)
    assert any(line.startswith("vitkit export [RUN] --onnx") for line in lines)  # a synopsis
    assert "vitkit export --onnx --fp16 --int8 static" in lines  # a console block's $ line
    assert "vitkit train --resume RUN --epochs 80" in lines  # inline code
    assert "vitkit train cifar10" in lines  # torchrun --nproc-per-node 2 -m vitkit train ...
    assert any(where.startswith("docs/export.md") for where, _, _ in COMMANDS)


@pytest.mark.parametrize(
    "line",
    [
        "vitkit train mnist-mini --epochs 5 --print-config",
        "vitkit export RUN --onnx --int8 dynamic --out FILE",
        "vitkit eval RUN --data folder:PATH --batch-size B  # a comment",
        "vitkit data list --json | jq -r '.[].name'",
        "vitkit bench runs/x --runtimes eager,ort --json > bench.json",
        "vitkit export [RUN] --onnx [--batch dynamic|N] [--optimize/--no-optimize]",
        "vitkit models",
    ],
)
def test_a_command_the_app_takes_passes(line: str) -> None:
    assert _check(line) is None


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("vitkit train mnist-mini --epoch 5", "`vitkit train` has no option --epoch"),
        ("vitkit train mnist-mini --epoch 5", "(did you mean --epochs?)"),
        ("vitkit evaluate RUN", "`vitkit` has no command evaluate (did you mean eval?)"),
        ("vitkit data fetch cifar10", "`vitkit data` has no command fetch"),
        ("vitkit export [RUN] [--optimise/--no-optimise]", "has no option --optimise"),
        ("vitkit eval RUN --out", "requires an argument"),
        ("vitkit explain RUN IMAGE EXTRA", "takes no more arguments"),
    ],
)
def test_a_command_the_app_refuses_fails(line: str, why: str) -> None:
    assert why in (_check(line) or "")


def test_inline_code_may_name_an_option_without_its_value() -> None:
    # "a second `vitkit train --out` or `--resume` into it is refused" (docs/train.md)
    assert _check("vitkit train --out", mention=True) is None
    assert _check("vitkit models list --json", mention=True) is None
    assert "requires an argument" in (_check("vitkit train --out") or "")
    assert "has no option --outt" in (_check("vitkit train --outt", mention=True) or "")


def test_every_command_in_the_docs_is_one_the_app_takes() -> None:
    wrong = [
        f"{where}: {line}\n    {why}"
        for where, line, mention in COMMANDS
        if (why := _check(line, mention))
    ]
    assert not wrong, "\n".join(wrong)


# --- python benchmarks/SCRIPT.py --------------------------------------------------------------

# `python benchmarks/x.py --a 1`, or `benchmarks/x.py --a N` in prose: up to the code's end
SCRIPT_LINE = re.compile(r"(?<![\w/])(benchmarks/\w+\.py)([^`\n#]*)")


def _script_flags(script: Path) -> set[str]:
    """The --flags a benchmarks/ script's argparse takes (read from its source: no import)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return {
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value[:1] == "-"
    } | {"-h", "--help"}


def test_every_benchmark_script_in_the_docs_takes_the_flags_given() -> None:
    """docs/benchmarks.md gives each figure's command (`python benchmarks/onnx_vs_eager.py
    --optimize --tag optimize-b1 ...`): the script must exist and take those flags."""
    seen, wrong = 0, []
    for page in PAGES:
        text = re.sub(r"\\\n\s*", " ", page.read_text(encoding="utf-8"))  # join `\` lines
        for m in SCRIPT_LINE.finditer(text):
            seen += 1
            where = f"{_rel(page)}: {m[0].strip()}"
            script = ROOT / m[1]
            if not script.is_file():
                wrong.append(f"{where}\n    no such script")
                continue
            flags = _script_flags(script)
            unknown = [f for f in FLAG.findall(m[2]) if f.split("=")[0] not in flags]
            if unknown:
                unknown = [_closest(f, flags) for f in unknown]
                wrong.append(f"{where}\n    {m[1]} has no option {', '.join(unknown)}")
    assert seen > 20  # the pages were read
    assert not wrong, "\n".join(wrong)


# --- ```python snippets ---------------------------------------------------------------------


def python_snippets() -> list[tuple[str, str]]:
    """(where, source) for every ```python block of the docs."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            if block.group(1) == "python":
                found.append((f"{_rel(page)}:{_lineno(text, block.start(2))}", block.group(2)))
    return found


SNIPPETS = python_snippets()
_MISSING = object()


def _attr(obj: Any, name: str) -> Any:
    """obj.name, a submodule of a package too (`vitkit.data.augment` before it is imported)."""
    if not hasattr(obj, name) and isinstance(obj, types.ModuleType):
        try:
            importlib.import_module(f"{obj.__name__}.{name}")
        except ImportError:
            return _MISSING
    return getattr(obj, name, _MISSING)


def _vitkit_names(source: str) -> list[str]:
    """What is wrong with the vitkit names `source` uses: an import, a module, function, class
    or attribute that does not exist, or a call with a parameter the callee does not have."""
    tree = ast.parse(source)
    bound: dict[str, Any] = {}  # a name the snippet imported from vitkit -> the object
    wrong: list[str] = []
    for node in ast.walk(tree):  # the imports, wherever they are, before the uses below
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "vitkit":
                    continue
                try:
                    module = importlib.import_module(alias.name)
                except ImportError as e:
                    wrong.append(f"import {alias.name}: {e}")
                    continue
                if alias.asname:
                    bound[alias.asname] = module
                else:
                    bound[alias.name.split(".")[0]] = importlib.import_module("vitkit")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "vitkit":
            try:
                module = importlib.import_module(node.module or "")
            except ImportError as e:
                wrong.append(f"from {node.module} import ...: {e}")
                continue
            for alias in node.names:
                obj = _attr(module, alias.name)
                if obj is _MISSING:
                    wrong.append(f"from {node.module} import {alias.name}: no such name")
                else:
                    bound[alias.asname or alias.name] = obj

    def resolve(expr: ast.expr) -> Any:
        """The vitkit object a `name` or `name.attr.attr` expression is, else _MISSING."""
        if isinstance(expr, ast.Name):
            return bound.get(expr.id, _MISSING)
        if isinstance(expr, ast.Attribute):
            owner = resolve(expr.value)
            if owner is _MISSING:
                return _MISSING
            obj = _attr(owner, expr.attr)
            if obj is _MISSING:
                wrong.append(f"{ast.unparse(expr)}: {ast.unparse(expr.value)} has no {expr.attr!r}")
            return obj
        return _MISSING

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            resolve(node)
        elif isinstance(node, ast.Call):
            fn = resolve(node.func)
            if fn is _MISSING or not callable(fn):
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg is not None}
            if any(isinstance(a, ast.Starred) for a in node.args) or len(keywords) < len(
                node.keywords
            ):
                continue  # f(*args) or f(**kwargs): nothing to count
            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):  # a builtin with no signature
                continue
            try:
                signature.bind_partial(*node.args, **keywords)
            except TypeError as e:
                wrong.append(f"{ast.unparse(node)}: {e}")
    return sorted(set(wrong))


def test_the_docs_have_the_snippets_this_test_reads() -> None:
    assert len(SNIPPETS) >= 7
    assert {where.split(":")[0] for where, _ in SNIPPETS} >= {
        "README.md",
        "docs/data.md",
        "docs/eval.md",
        "docs/export.md",
        "docs/train.md",
        "docs/bench.md",
    }


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("import vitkit\nvitkit.load_modle('runs/x')", "vitkit has no 'load_modle'"),
        ("from vitkit.export import export_onnx, run_onnx2", "import run_onnx2: no such name"),
        ("import vitkit.evaluation", "import vitkit.evaluation"),
        ("from vitkit.bench import benchmark\nbenchmark('r', device='cpu')", "'device'"),
        ("import vitkit\nvitkit.data.augment.AugmentConfig.presets", "has no 'presets'"),
        ("import vitkit\nvitkit.create_model('vit-tiny', 1, 2)", "too many positional"),
    ],
)
def test_a_snippet_with_a_name_vitkit_lacks_fails(source: str, why: str) -> None:
    assert any(why in line for line in _vitkit_names(source)), _vitkit_names(source)


def test_a_snippet_that_only_uses_what_vitkit_has_passes() -> None:
    source = """import torch, vitkit
from vitkit.data.augment import AugmentConfig
model = vitkit.create_model("vit-tiny", image_size=32, num_classes=10)
AugmentConfig.preset("natural", 32)
vitkit.load_dataset("mnist-mini")["test"].images.anything  # not vitkit's name: not looked at
"""
    assert _vitkit_names(source) == []


@pytest.mark.parametrize(("where", "source"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_every_python_snippet_uses_only_what_vitkit_has(where: str, source: str) -> None:
    wrong = _vitkit_names(source)
    assert not wrong, f"the snippet at {where}:\n    " + "\n    ".join(wrong)


def test_the_onnx_consumer_in_export_md_runs_on_an_exported_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/export.md's consumer (ONNX Runtime, numpy and PIL, no vitkit) reads everything from
    the file's metadata: it must print the class and probability the model computes."""
    import numpy as np
    import torch
    from PIL import Image

    import vitkit
    from vitkit.export import export_onnx, read_onnx_metadata

    (source,) = [s for w, s in SNIPPETS if w.startswith("docs/export.md") and "sys.argv" in s]
    model = vitkit.create_model("vit-nano", image_size=28, in_chans=1, num_classes=10).eval()
    report = export_onnx(model, tmp_path / "model.onnx", legacy=True, verify=False)
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")

    monkeypatch.setattr("sys.argv", ["consumer.py", str(report.out), str(tmp_path / "digit.png")])
    exec(compile(source, "docs/export.md", "exec"), {"__name__": "__main__"})

    x = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5  # an untrained model: mean, std 0.5
    with torch.no_grad():
        p = model(x[None, None]).softmax(-1)[0]
    classes = read_onnx_metadata(report.out)["classes"]
    assert capsys.readouterr().out == f"{classes[int(p.argmax())]} {p.max():.1%}\n"
