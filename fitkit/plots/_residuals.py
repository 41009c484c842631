"""How well the model fits the data: residual maps on one colour scale, and the z-scores' histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from ._common import figure

# A few outliers at tens of sigma would wash the colours of every panel out;
# beyond this many sigma the maps saturate and the colour bar grows arrows.
Z_LIMIT = 5.0

_SCALES = ("sigma", "data")


def _maps(problem, params: Any, scale: str) -> list[np.ndarray]:
    if scale == "sigma":
        return [np.asarray(z, np.float64) for z in problem.z_scores(params)]
    maps = []
    for obs in problem.observations:
        if obs.custom:  # a custom log-likelihood has no prediction of the data to subtract
            maps.append(np.full(np.shape(obs.data), np.nan))
        else:
            residual = jnp.asarray(obs.data) - obs.predict(params, problem.model)
            maps.append(np.asarray(jnp.where(obs.valid, residual, jnp.nan), np.float64))
    return maps


def _largest(maps: Sequence[np.ndarray]) -> float:
    finite = [np.abs(m[np.isfinite(m)]) for m in maps]
    values = np.concatenate(finite) if finite else np.zeros(0)
    return float(values.max()) if values.size and values.max() > 0 else 1.0


def residuals(
    problem,
    params: Any,
    titles: Sequence[str] | None = None,
    scale: str = "sigma",
    limit: float | None = None,
    fig=None,
):
    """Residual maps of every observation on one shared, symmetric colour scale, with one colour bar.

    2-D observations are drawn as images (masked points grey), others as points
    against their index; every image uses the same diverging colours centred on
    0 and every 1-D panel the same y-range, so panels compare at a glance.

    Args:
        problem: the `fk.Problem`.
        params: the params to evaluate the residuals at.
        titles: panel titles (default: each observation's `describe()`).
        scale: `"sigma"`: z-scores `(data - model) / error` (`problem.z_scores`);
            `"data"`: `data - model` in the data's units.
        limit: the colour scale runs over `[-limit, limit]`; default: the largest
            |residual| of every panel, at most 5 for z-scores (beyond it colours
            saturate and the colour bar has arrows).
        fig: a figure to draw into (default: a new one).

    Returns:
        The matplotlib figure: one panel per observation, plus one colour bar
        when any observation is an image.

    Raises:
        ValueError: an unknown `scale`.
        ParamsError: the params do not fit the problem.

    Example:
        >>> fig = fk.plot.residuals(prob, res.params)
    """
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose 'sigma' (z-scores) or 'data'")
    maps = _maps(problem, params, scale)
    largest = _largest(maps)
    cap = limit if limit is not None else (min(largest, Z_LIMIT) if scale == "sigma" else largest)
    norm = Normalize(-cap, cap)
    unit = "z-score (σ)" if scale == "sigma" else "data − model"
    if fig is None:
        fig = plt.figure(figsize=(4.2 * len(maps) + 1.0, 4), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.6")
    images = []
    for i, (ax, values) in enumerate(zip(axes, maps)):
        title = titles[i] if titles is not None else problem.observations[i].describe()
        if values.ndim == 2:
            images.append(ax.imshow(values, cmap=cmap, norm=norm, origin="lower"))
        else:
            ax.plot(values.ravel(), ".", ms=3)
            ax.axhline(0.0, color="k", lw=0.8)
            # 1-D panels share a range too, wide enough for every point
            ax.set_ylim(-1.05 * largest, 1.05 * largest)
            ax.set(ylabel=unit, xlabel="index")
        summary = f"χ²/n = {np.nanmean(values**2):.3g}" if scale == "sigma" else f"rms = {_rms(values):.3g}"
        ax.set_title(f"{title}\n{summary}")
    if images:
        clipped = largest > cap * (1 + 1e-12)
        fig.colorbar(
            images[0],
            ax=[image.axes for image in images],
            label=unit,
            extend="both" if clipped else "neither",
            shrink=0.9,
        )
    return fig


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(values**2)))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2.0)))


def zscores(problem, params: Any, ax=None, bins: int | Sequence[float] | None = None, log: bool = False):
    """A histogram of the z-scores of every used data point, against the standard normal.

    A good fit with the right errors gives N(0, 1): a shifted mean is a bias, a
    std above 1 underestimated errors (or a poor model), heavy tails outliers.
    Points beyond the histogram's range are counted in its edge bins, so the
    bars always add up to the number of used points.

    Args:
        problem: the `fk.Problem`.
        params: the params to evaluate the z-scores at.
        ax: an axis to draw on (default: a new figure).
        bins: the number of bins over a symmetric range (at least ±4, at most
            ±8 sigma), or bin edges; default: about Scott's rule.
        log: log-scale the counts, to show the tails.

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: no used point has a z-score (unbinned data, custom
            log-likelihoods).

    Example:
        >>> fig = fk.plot.zscores(prob, res.params)
    """
    z = np.concatenate([np.ravel(np.asarray(m, np.float64)) for m in problem.z_scores(params)])
    z = z[np.isfinite(z)]  # masked points are NaN
    if not z.size:
        raise ValueError(
            "no used data point has a z-score (unbinned data and custom log-likelihoods have none)"
        )
    count, mean, std = z.size, float(z.mean()), float(z.std())
    if bins is None or np.ndim(bins) == 0:
        half = max(4.0, min(math.ceil(2.0 * np.abs(z).max()) / 2.0, 8.0))
        if bins is None:
            width = 3.49 * max(std, 1e-3) / count ** (1 / 3)
            bins = int(np.clip(round(2 * half / width), 16, 120))
        edges = np.linspace(-half, half, int(bins) + 1)
    else:
        edges = np.asarray(bins, np.float64)
    outside = int(np.sum((z < edges[0]) | (z > edges[-1])))
    beyond = int(np.sum(np.abs(z) > 3.0))
    fig, ax = figure(ax, (6, 4))
    ax.hist(
        np.clip(z, edges[0], edges[-1]),
        bins=edges,
        color="C0",
        alpha=0.6,
        label=f"{count} used points: mean {mean:+.3f}, std {std:.3f}",
    )
    widths = np.diff(edges)
    if np.allclose(widths, widths[0]):
        x = np.linspace(edges[0], edges[-1], 400)
        density = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
        ax.plot(x, count * widths[0] * density, color="k", label="N(0, 1)")
    else:
        # Unequal bins: the expected count of each bin, not the density times one width.
        ax.stairs(count * np.diff(_normal_cdf(edges)), edges, color="k", label="N(0, 1)")
    tail = f"{beyond} beyond 3σ (N(0, 1): {count * 2 * (1 - _normal_cdf(3.0)):.1f})"
    ax.plot([], [], " ", label=tail)
    if outside:
        ax.plot([], [], " ", label=f"{outside} beyond ±{edges[-1]:g} in the edge bins")
    for side in (-3.0, 3.0):
        ax.axvline(side, color="0.5", lw=0.8, ls=":")
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
    ax.set(xlabel="z-score (data − model) / σ", ylabel="points per bin")
    ax.legend(fontsize="small", loc="upper left")
    return fig
