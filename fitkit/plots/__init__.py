"""Figures for fits, curvature and posteriors (matplotlib and chainconsumer), one small module per kind.

Every function returns the matplotlib `Figure` and never calls `plt.show()`,
so it works the same in notebooks, scripts and reports. The public names are
re-exported by `fitkit.plot` (`fk.plot.pulls`, ...), the name to import.
"""

from __future__ import annotations

from ._common import show
from ._corner import corner
from ._fits import history, loss
from ._layout import tick_overlaps
from ._matrix import matrix
from ._profiles import contour, profile
from ._pulls import errorbars, pulls
from ._residuals import residuals, zscores

__all__ = [
    "corner",
    "loss",
    "history",
    "residuals",
    "zscores",
    "matrix",
    "errorbars",
    "pulls",
    "profile",
    "contour",
    "show",
    "tick_overlaps",
]
