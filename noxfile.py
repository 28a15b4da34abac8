"""Developer tasks. `nox -s lint tests` is what CI runs (see README and .ci/run)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

# timm is a test-only dependency: the ViT is compared against timm's where it is importable
TEST_ONLY = ["timm"]


@nox.session
def tests(session: nox.Session) -> None:
    """pytest; slow tests are skipped unless asked for (`nox -s tests -- -m slow`)."""
    session.install("-e", ".[dev]", *TEST_ONLY)
    args = session.posargs or ["-m", "not slow"]
    session.run("pytest", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "vitkit", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/cli.md from the Typer app (tests/cli/test_docs.py fails while it is stale)."""
    session.install("-e", ".")
    session.run(
        "typer", "vitkit.cli", "utils", "docs", "--name", "vitkit",
        "--title", "vitkit command reference", "--output", "docs/cli.md",
    )  # fmt: skip


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ (each prints JSON; pass a script name to run one)."""
    session.install("-e", ".[dev]", *TEST_ONLY)  # vs_timm.py compares against timm
    import pathlib

    scripts = session.posargs or sorted(
        str(p) for p in pathlib.Path("benchmarks").glob("*.py") if not p.name.startswith("_")
    )
    for script in scripts:
        session.run("python", script)
