"""Profile likelihoods of one and two params, beside their Gaussian (curvature) approximations."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import figure, flat_values


def profile(problem, result, path: str, grid: Any = None, covariance: Any = None, ax=None):
    """The profile likelihood of one param (`fk.profile`), with the Gaussian approximation beside it.

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` at the minimum.
        path: one scalar param.
        grid: physical values (default: 41 points over +-3 curvature sigma, inside its bounds).
        covariance: an `fk.Covariance` for the parabola (default: `fk.covariance(problem, result)`).
        ax: an axis to draw on.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: `path` is not one of the covariance's scalar names.

    Example:
        >>> fig = fk.plot.profile(prob, res, "tau")
    """
    from ..curvature import covariance as covariance_of
    from ..profiles import profile as profile_of

    cov = covariance if covariance is not None else covariance_of(problem, result)
    index = list(cov.names).index(path)
    centre = float(flat_values(cov.mean)[index])
    std = float(cov.flat_std[index])
    if grid is None:
        lo = float(np.asarray(cov.lower)[index]) if cov.lower is not None else -np.inf
        hi = float(np.asarray(cov.upper)[index]) if cov.upper is not None else np.inf
        span = 3.0 * std
        grid = np.linspace(
            max(centre - span, lo + 1e-9 * max(1.0, abs(lo))),
            min(centre + span, hi - 1e-9 * max(1.0, abs(hi))),
            41,
        )
    values, rise, _, ok = profile_of(problem, result, path, grid)
    fig, ax = figure(ax, (6, 4))
    ax.plot(values, rise, "-", color="C0", label="profile likelihood")
    if not ok.all():
        ax.plot(values[~ok], rise[~ok], "x", color="C3", label="inner fit not converged")
    ax.plot(values, 0.5 * ((values - centre) / std) ** 2, "--", color="C1", label="Gaussian (curvature)")
    for level, name in ((0.5, "1 sigma"), (2.0, "2 sigma")):
        ax.axhline(level, color="0.6", lw=0.8, ls=":")
        ax.text(values[0], level, f" {name}", va="bottom", fontsize=8, color="0.4")
    ax.set(
        xlabel=path,
        ylabel="profiled nll - minimum",
        ylim=(-0.1, max(3.0, float(np.nanmin([rise.max(), 8.0])))),
    )
    ax.legend()
    return fig


def contour(
    problem, result, paths: tuple[str, str], cl: float = 0.6826894921370859, covariance: Any = None, ax=None
):
    """The 2-D profile-likelihood contour of two params (`fk.contour`), with the covariance ellipse beside it.

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` at the minimum.
        paths: two scalar params.
        cl: the confidence level of the region.
        covariance: an `fk.Covariance` for the ellipse (default: `fk.covariance(problem, result)`).
        ax: an axis to draw on.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: a path is not one of the covariance's scalar names.

    Example:
        >>> fig = fk.plot.contour(prob, res, ("a", "b"), cl=0.95)
    """
    from ..curvature import covariance as covariance_of
    from ..profiles import contour as contour_of
    from ..profiles import threshold

    cov = covariance if covariance is not None else covariance_of(problem, result)
    x, y, ok = contour_of(problem, result, paths, cl=cl)
    i, j = (list(cov.names).index(p) for p in paths)
    centre = flat_values(cov.mean)[[i, j]]
    block = np.asarray(cov.matrix, np.float64)[np.ix_([i, j], [i, j])]
    radius = np.sqrt(2.0 * threshold(cl, dof=2))
    angle = np.linspace(0, 2 * np.pi, 200)
    ellipse = centre[:, None] + radius * np.linalg.cholesky(block) @ np.stack([np.cos(angle), np.sin(angle)])
    fig, ax = figure(ax, (5, 5))
    ax.plot(x, y, "-", color="C0", label=f"profile likelihood, {100 * cl:.3g}%")
    if not ok.all():
        ax.plot(x[~ok], y[~ok], "x", color="C3", label="not converged / at a bound")
    ax.plot(ellipse[0], ellipse[1], "--", color="C1", label="Gaussian (covariance)")
    ax.plot(*centre, "+", color="k")
    ax.set(xlabel=paths[0], ylabel=paths[1])
    ax.legend()
    return fig
