"""Images of curvature and covariance matrices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import CenteredNorm

from ._common import figure


def matrix(values, names: Sequence[str] | None = None, title: str = "", kind: str = "centred", ax=None):
    """An image of a Hessian, Fisher, covariance or correlation matrix.

    Args:
        values: an `(n, n)` array, or anything with a `.matrix` (an `fk.Covariance`).
        names: tick labels (default: the covariance's names when available).
        title: the title.
        kind: `"centred"` (diverging colours centred on 0) or `"log"` (log10 of |values|).
        ax: an axis to draw on (default: a new figure).

    Returns:
        The matplotlib figure (the image and its colour bar).

    Raises:
        ValueError: an unknown `kind`.

    Example:
        >>> fig = fk.plot.matrix(cov.correlation, names=cov.names, title="correlation")
    """
    if kind not in ("centred", "log"):
        raise ValueError(f"unknown kind {kind!r}; choose 'centred' or 'log'")
    if hasattr(values, "matrix"):
        names = names if names is not None else list(getattr(values, "names", []) or [])
        values = values.matrix
    values = np.asarray(values)
    fig, ax = figure(ax, (6, 5))
    if kind == "log":
        image = ax.imshow(np.log10(np.abs(values) + 1e-300), cmap="inferno")
        fig.colorbar(image, ax=ax, label="log10 |value|")
    else:
        image = ax.imshow(values, cmap="seismic", norm=CenteredNorm())
        fig.colorbar(image, ax=ax)
    if names:
        # Labels shrink with the number of rows so that 50 names still fit beside each other.
        size = float(np.clip(220.0 / len(names), 5.0, 9.0))
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=size)
        ax.set_yticks(range(len(names)), names, fontsize=size)
    ax.set_title(title)
    return fig
