"""Figures for fits, curvature and posteriors (matplotlib and chainconsumer).

Every function returns the matplotlib `Figure` and never calls `plt.show()`,
so it works the same in notebooks, scripts and reports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import CenteredNorm

from . import tree
from .results import FitResult

__all__ = ["corner", "loss", "history", "residuals", "matrix", "errorbars", "profile", "contour", "show"]


def _is_posterior(item) -> bool:
    return hasattr(item, "flat") and hasattr(item, "latent")


def _is_covariance(item) -> bool:
    return hasattr(item, "matrix") and hasattr(item, "mean") and not hasattr(item, "latent")


def _flat_values(params) -> np.ndarray:
    return np.asarray(tree.ravel(params)[0])


def corner(
    items: Any | Sequence[Any],
    truth: Any = None,
    names: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    covariance_draws: int = 50_000,
    seed: int = 0,
    intervals: Any = None,
):
    """A chainconsumer corner plot of any mix of posteriors, covariances and fits.

    Args:
        items: one or a list of `fk.Posterior` (its draws), `fk.Covariance`
            (drawn as the Gaussian it describes) and `fk.FitResult` (a marker
            at its params).
        truth: optional params pytree (or flat dict name -> value) drawn as
            the truth lines.
        names: flat parameter names; taken from the items when omitted.
        columns: the subset of names to plot (default: all).
        labels: legend labels, one per item (default: "posterior",
            "covariance", "fit" numbered as needed).
        covariance_draws: number of draws that represent a covariance.
        seed: seed of those draws, for reproducible figures.
        intervals: optional `fk.Intervals` (`fk.intervals`): each profiled param's lower and
            upper limits drawn as dashed lines on its marginal (the asymmetric error bars).

    Returns:
        The matplotlib figure.

    Raises:
        TypeError: an item of an unsupported type.
        ValueError: items disagree on the number of parameters.

    Example:
        >>> fig = fk.plot.corner([post, cov], truth=true_params)
    """
    import pandas as pd
    from chainconsumer import Chain, ChainConsumer, Truth

    items = list(items) if isinstance(items, (list, tuple)) else [items]
    consumer = ChainConsumer()
    rng = np.random.default_rng(seed)
    markers = []
    for i, item in enumerate(items):
        label = labels[i] if labels is not None else None
        if _is_posterior(item):
            item_names = list(item.names)
            flat = item.flat().reshape(-1, len(item_names))
            frame = pd.DataFrame(flat, columns=item_names)
            consumer.add_chain(Chain(samples=frame, name=label or f"posterior {i}"))
        elif _is_covariance(item):
            item_names = list(item.names)
            draws = rng.multivariate_normal(
                _flat_values(item.mean), np.asarray(item.matrix), size=covariance_draws, method="eigh"
            )
            frame = pd.DataFrame(draws, columns=item_names)
            consumer.add_chain(
                Chain(
                    samples=frame, name=label or f"covariance {i}", color="k", shade_alpha=0.1, linewidth=2.0
                )
            )
        elif isinstance(item, FitResult):
            item_names = tree.names(item.params)
            markers.append((label or f"fit {i}", dict(zip(item_names, _flat_values(item.params).tolist()))))
        else:
            raise TypeError(
                f"corner cannot draw a {type(item).__name__}; give fk.Posterior, fk.Covariance or fk.FitResult"
            )
        if names is None:
            names = item_names
        elif len(item_names) != len(names):
            raise ValueError(f"item {i} has {len(item_names)} parameters, others have {len(names)}")
    if not consumer.get_names():
        raise ValueError("corner needs at least one fk.Posterior or fk.Covariance to draw contours")
    for j, (label, location) in enumerate(markers):
        consumer.add_truth(
            Truth(location=location, name=label, color=f"C{(j + 4) % 10}", marker="o", line_style=":")
        )
    if truth is not None:
        location = (
            truth if isinstance(truth, dict) and all(isinstance(v, float) for v in truth.values()) else None
        )
        if location is None:
            location = dict(zip(tree.names(truth), _flat_values(truth).tolist()))
        consumer.add_truth(Truth(location=location, name="truth", color="C3"))
    # chainconsumer warns "not constrained" whenever a marginal touches its plot
    # range, and matplotlib about a font weight its style asks for: both noise here.
    quiet = [logging.getLogger(name) for name in ("chainconsumer", "matplotlib.font_manager")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        fig = consumer.plotter.plot(columns=list(columns) if columns is not None else None)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    if intervals is not None:
        _mark_intervals(fig, list(columns) if columns is not None else list(names), intervals)
    return fig


def _mark_intervals(fig, shown: list[str], intervals) -> None:
    """Dashed lines at the profile limits on the diagonal (marginal) panels of a corner plot."""
    size = len(shown)
    grid = np.asarray(fig.axes[: size * size], dtype=object).reshape(size, size)
    label = f"profile likelihood, {100 * intervals.cl:.3g}%"
    for name, lower, upper in zip(intervals.names, intervals.flat_lower, intervals.flat_upper):
        if name not in shown:
            continue
        ax = grid[shown.index(name), shown.index(name)]
        for limit in (lower, upper):
            if np.isfinite(limit):
                ax.axvline(limit, color="C1", linestyle="--", linewidth=1.2, label=label)
                label = None


def loss(result: FitResult, log: bool = True, ax=None):
    """The loss per step of a `FitResult` (log scale by default).

    Args:
        result: a `FitResult` (from `fk.fit` or `fk.solve`).
        log: log-scale the loss axis.
        ax: an existing matplotlib axis to draw on (default: a new figure).

    Returns:
        The matplotlib figure.

    Raises:
        KeyError: the result has no loss history.

    Example:
        >>> fig = fk.plot.loss(fk.fit(prob, params, optax.adam(1e-2), steps=200))
    """
    fig, ax = _figure(ax, (7, 4))
    steps = np.asarray(result.history.get("step", np.arange(len(result.history["loss"]))))
    ax.plot(steps, np.asarray(result.history["loss"]))
    if log:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=f"{result.method or 'fit'}: final loss {result.loss:.4g}")
    return fig


def history(result: FitResult, paths: Sequence[str] | None = None):
    """Parameter evolution as deltas from the start, one panel per top-level path.

    Args:
        result: a `FitResult` whose history kept the params (`history=True`).
        paths: top-level (or any) paths to show; default: every top-level key.

    Returns:
        The matplotlib figure, one panel per path.

    Raises:
        ValueError: the result holds no params history.

    Example:
        >>> fig = fk.plot.history(res, paths=["position", "wfe"])
    """
    tracked = result.history.get("params")
    if tracked is None:
        raise ValueError("this FitResult holds no params history; fit with history=True")
    steps = np.asarray(result.history.get("params_step", np.arange(len(jax.tree.leaves(tracked)[0]))))
    if paths is None:
        paths = list(dict.fromkeys(p.split(".")[0] for p in tree.leaf_paths(tracked)))
    fig, axes = plt.subplots(1, len(paths), figsize=(5 * len(paths), 4), squeeze=False)
    for ax, path in zip(axes[0], paths):
        node = tree.get(tracked, path)
        for leaf_path, leaf in zip(tree.leaf_paths(node), jax.tree.leaves(node)):
            values = np.asarray(leaf).reshape(len(steps), -1)
            for k in range(values.shape[1]):
                suffix = f"[{k}]" if values.shape[1] > 1 else ""
                ax.plot(steps, values[:, k] - values[0, k], label=f"{leaf_path}{suffix}".lstrip("."))
        ax.set(title=path, xlabel="step", ylabel=f"delta {path}")
        if len(ax.lines) <= 10:
            ax.legend(fontsize="small")
    fig.suptitle("Parameter evolution")
    fig.tight_layout()
    return fig


def residuals(problem, params, titles: Sequence[str] | None = None):
    """Z-score maps (data - model) / error of every observation, centred diverging colours.

    1-D observations are drawn as curves, 2-D ones as images; masked points are grey.

    Args:
        problem: the `fk.Problem`.
        params: the params to evaluate the residuals at.
        titles: panel titles (default: each observation's `describe()`).

    Returns:
        The matplotlib figure, one panel per observation.

    Raises:
        ParamsError: the params do not fit the problem.

    Example:
        >>> fig = fk.plot.residuals(prob, res.params)
    """
    maps = [np.asarray(z) for z in problem.z_scores(params)]
    fig, axes = plt.subplots(1, len(maps), figsize=(4.5 * len(maps), 4), squeeze=False)
    cmap = plt.get_cmap("seismic").copy()
    cmap.set_bad("0.5")
    for i, (ax, z) in enumerate(zip(axes[0], maps)):
        title = titles[i] if titles is not None else problem.observations[i].describe()
        if z.ndim == 2:
            image = ax.imshow(z, cmap=cmap, norm=CenteredNorm(), origin="lower")
            fig.colorbar(image, ax=ax, label="z-score")
        else:
            ax.plot(z.ravel(), ".", ms=3)
            ax.axhline(0.0, color="k", lw=0.8)
            ax.set_ylabel("z-score")
        ax.set_title(f"{title}\nchi2/n = {np.nanmean(z**2):.3g}")
    fig.tight_layout()
    return fig


def matrix(values, names: Sequence[str] | None = None, title: str = "", kind: str = "centred"):
    """An image of a Hessian, Fisher, covariance or correlation matrix.

    Args:
        values: an `(n, n)` array, or anything with a `.matrix` (an `fk.Covariance`).
        names: tick labels (default: the covariance's names when available).
        title: the title.
        kind: `"centred"` (diverging colours centred on 0) or `"log"` (log10 of |values|).

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: an unknown `kind`.

    Example:
        >>> fig = fk.plot.matrix(cov.correlation, names=cov.names, title="correlation")
    """
    if hasattr(values, "matrix"):
        names = names if names is not None else list(getattr(values, "names", []) or [])
        values = values.matrix
    values = np.asarray(values)
    fig, ax = plt.subplots(figsize=(6, 5))
    if kind == "log":
        image = ax.imshow(np.log10(np.abs(values) + 1e-300), cmap="inferno")
        fig.colorbar(image, ax=ax, label="log10 |value|")
    elif kind == "centred":
        image = ax.imshow(values, cmap="seismic", norm=CenteredNorm())
        fig.colorbar(image, ax=ax)
    else:
        raise ValueError(f"unknown kind {kind!r}; choose 'centred' or 'log'")
    if names:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize="small")
        ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def errorbars(
    covariance, sigma: float = 1.0, truth: Any = None, relative: bool = False, intervals: Any = None
):
    """Parameter estimates with +-`sigma` error bars from an `fk.Covariance`.

    Args:
        covariance: the `fk.Covariance` (its `mean`, `names` and standard deviations).
        sigma: how many standard deviations each bar spans.
        truth: optional params pytree drawn as crosses.
        relative: plot `(value - truth) / std` instead of values (needs `truth`).
        intervals: optional `fk.Intervals` (`fk.intervals`), drawn beside the
            curvature bars as asymmetric profile-likelihood bars.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: `relative=True` without `truth`.

    Example:
        >>> fig = fk.plot.errorbars(fk.covariance(prob, res), sigma=5)
    """
    names = list(covariance.names)
    values = _flat_values(covariance.mean)
    # Params held at a bound have no symmetric error: NaN here, so they are drawn without a bar.
    errors = np.asarray(covariance.flat_std, np.float64)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4))
    x = np.arange(len(names))
    if relative:
        if truth is None:
            raise ValueError("relative=True needs truth")
        ax.errorbar(x, (values - _flat_values(truth)) / errors, yerr=sigma, fmt="o", capsize=4)
        ax.set_ylabel("(estimate - truth) / std")
    else:
        ax.errorbar(x, values, yerr=sigma * errors, fmt="o", capsize=4, label=f"estimate +- {sigma:g} sigma")
        if intervals is not None:
            where = [names.index(n) for n in intervals.names]
            minus, plus = intervals.errors
            ax.errorbar(
                np.asarray(where) + 0.2,
                intervals.value,
                yerr=[minus, plus],
                fmt="s",
                color="C1",
                capsize=4,
                label=f"profile likelihood, {100 * intervals.cl:.3g}%",
            )
        if truth is not None:
            ax.plot(x, _flat_values(truth), "x", color="C3", label="truth")
        ax.set_ylabel("value")
        ax.legend()
    ax.axhline(0.0, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right")
    fig.tight_layout()
    return fig


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

    Example:
        >>> fig = fk.plot.profile(prob, res, "tau")
    """
    from .curvature import covariance as covariance_of
    from .profiles import profile as profile_of

    cov = covariance if covariance is not None else covariance_of(problem, result)
    index = list(cov.names).index(path)
    centre = float(_flat_values(cov.mean)[index])
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
    fig, ax = _figure(ax, (6, 4))
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
    fig.tight_layout()
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

    Example:
        >>> fig = fk.plot.contour(prob, res, ("a", "b"), cl=0.95)
    """
    from .curvature import covariance as covariance_of
    from .profiles import contour as contour_of
    from .profiles import threshold

    cov = covariance if covariance is not None else covariance_of(problem, result)
    x, y, ok = contour_of(problem, result, paths, cl=cl)
    i, j = (list(cov.names).index(p) for p in paths)
    centre = _flat_values(cov.mean)[[i, j]]
    block = np.asarray(cov.matrix, np.float64)[np.ix_([i, j], [i, j])]
    radius = np.sqrt(2.0 * threshold(cl, dof=2))
    angle = np.linspace(0, 2 * np.pi, 200)
    ellipse = centre[:, None] + radius * np.linalg.cholesky(block) @ np.stack([np.cos(angle), np.sin(angle)])
    fig, ax = _figure(ax, (5, 5))
    ax.plot(x, y, "-", color="C0", label=f"profile likelihood, {100 * cl:.3g}%")
    if not ok.all():
        ax.plot(x[~ok], y[~ok], "x", color="C3", label="not converged / at a bound")
    ax.plot(ellipse[0], ellipse[1], "--", color="C1", label="Gaussian (covariance)")
    ax.plot(*centre, "+", color="k")
    ax.set(xlabel=paths[0], ylabel=paths[1])
    ax.legend()
    fig.tight_layout()
    return fig


def _figure(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def show(fig, name: str) -> None:
    """Display `fig`, or save it as `$FITKIT_FIGURES/<name>.png` when that variable is set.

    Lets the same tutorial run as a notebook (figures inline), as a script and
    in the test suite (figures written to a folder, nothing blocks).

    Args:
        fig: the matplotlib figure.
        name: file stem used when saving.

    Returns:
        None. Nothing is raised; an unset or empty `FITKIT_FIGURES` means "show".

    Example:
        >>> fk.plot.show(fk.plot.loss(res), "loss")
    """
    import os
    import pathlib

    folder = os.environ.get("FITKIT_FIGURES")
    if folder:
        fig.savefig(pathlib.Path(folder) / f"{name}.png", dpi=90)
        plt.close(fig)
    else:
        plt.show()
