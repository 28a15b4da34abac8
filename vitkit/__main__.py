"""The `vitkit` command (and `python -m vitkit`).

The command line is imported inside ``main``, where a Ctrl-C while it loads (typer, rich and
the command modules: a few tenths of a second) ends as one during a command does: "interrupted"
and exit status 130, not an import traceback; with --json, ``{"error": "interrupted"}`` on
stdout, as a command prints.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from vitkit.cli import main as cli
    except KeyboardInterrupt:
        if "--json" in sys.argv[1:]:
            print('{"error": "interrupted"}')
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    cli()


if __name__ == "__main__":
    main()
