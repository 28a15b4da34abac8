"""Figures drawn off-screen with matplotlib's object API, never pyplot.

pyplot would need a backend, and setting one (``matplotlib.use("Agg")``) changes it for the whole
process: a notebook or GUI that calls ``vitkit.train`` or ``EvalReport.save`` would lose its
``plt.show()``. A bare ``Figure`` saves to PNG with no backend and leaves the caller's as it was.
matplotlib is the optional ``plot`` extra.
"""

from __future__ import annotations

from typing import Any


def figure(
    nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], squeeze: bool = True
) -> tuple[Any, Any] | None:
    """A new figure and its axes (as ``pyplot.subplots`` returns them); None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)
