"""Figures for fits, curvature and posteriors (matplotlib and chainconsumer).

Every function returns the matplotlib `Figure` and never calls `plt.show()`,
so it works the same in notebooks, scripts and reports. The functions live in
the small modules of `fitkit.plots`; this module is their public name
(`fk.plot.corner`, `from fitkit import plot`).

Example:
    >>> fig = fk.plot.pulls(res.params, fk.covariance(prob, res), truth)
"""

from __future__ import annotations

from . import plots
from .plots import *  # noqa: F403  (the public names of the figure modules)

__all__ = list(plots.__all__)
