"""Estimates against a reference: pulls in units of their errors, and plain error bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import MultipleLocator
from matplotlib.transforms import blended_transform_factory

from ._common import errors_of, figure, param_names, values_of

# Bars shorter than this fraction of the axis's span cannot be seen.
VISIBLE = 1e-2
# Pulls beyond this are drawn as arrows at the edge, so one wild value keeps the rest readable.
MAX_LIMIT = 10.0
_KINDS = ("auto", "raw", "pulls")


def _names(estimates: Any, errors: Any, size: int, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        names = list(names)
    else:
        names = param_names(estimates) or param_names(errors) or [f"p[{i}]" for i in range(size)]
    if len(names) != size:
        raise ValueError(f"{len(names)} names for {size} estimates")
    return names


def pulls(
    estimates: Any,
    errors_or_covariance: Any,
    reference: Any,
    names: Sequence[str] | None = None,
    ax=None,
    *,
    reference_label: str = "truth",
    intervals: Any = None,
    limit: float | None = None,
):
    """Each parameter's offset from a reference in units of its error, one row per parameter.

    `(estimate - reference) / error` with shaded ±1, 2, 3 sigma bands and a
    zero line: readable whatever the params' units and scales, at 16 or 50
    params. Each row's pull is written at the right; rows beyond 3 sigma are
    red, pulls beyond the axis are arrows at its edge, and a param without an
    error (NaN, e.g. held at a bound) is a grey cross at 0 marked "no σ".

    Args:
        estimates: a params pytree, an `fk.FitResult` (its params), an
            `fk.Covariance` (its mean) or a flat array.
        errors_or_covariance: the 1-sigma errors (a pytree or array like the
            estimates), an `fk.Covariance` (its standard deviations) or an
            `(n, n)` covariance matrix; None when `estimates` is an `fk.Covariance`.
        reference: the truth, or another fit's params, in any form `estimates` takes
            (or a flat dict `name -> value`).
        names: flat parameter names (default: from the estimates or errors, else `p[i]`).
        ax: an axis to draw on (default: a new figure sized to the rows).
        reference_label: what the reference is, in the axis label ("truth", "fit A").
        intervals: optional `fk.Intervals`: each profiled param's asymmetric
            profile-likelihood interval drawn as a bar, in the same units.
        limit: the x-axis runs over `[-limit, limit]` (default: the largest
            pull, at least 3.5 and at most 10).

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: the estimates, errors and reference differ in size.

    Example:
        >>> fig = fk.plot.pulls(res.params, fk.covariance(prob, res), truth)
    """
    if errors_or_covariance is None:
        errors_or_covariance = estimates
    # The flat names order a flat dict (reference or errors): the caller's names first.
    first = list(names) if names is not None else param_names(estimates) or param_names(errors_or_covariance)
    values = values_of(estimates, first)
    errors = errors_of(errors_or_covariance, first)
    truth = values_of(reference, first)
    if not values.size == errors.size == truth.size:
        raise ValueError(
            f"pulls needs as many errors and reference values as estimates: {values.size} estimates, "
            f"{errors.size} errors, {truth.size} reference values"
        )
    names = _names(estimates, errors_or_covariance, values.size, names)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = (values - truth) / errors
    n = values.size
    fig, ax = figure(ax, (6.5, 1.0 + 0.24 * n))
    finite = np.isfinite(pull)
    largest = float(np.abs(pull[finite]).max()) if finite.any() else 0.0
    edge = float(limit) if limit is not None else max(3.5, min(1.1 * largest, MAX_LIMIT))
    rows = np.arange(n)
    for width, shade in ((3, "0.93"), (2, "0.86"), (1, "0.78")):
        ax.axvspan(-width, width, color=shade, lw=0, zorder=0)
    ax.axvline(0.0, color="k", lw=0.8, zorder=1)
    missing = np.isnan(pull)
    off = ~missing & (np.abs(pull) > edge)  # +-inf (a zero error) is off the axis too
    inside = ~missing & ~off
    out = np.abs(pull) > 3
    colours = np.where(out[inside], "C3", "k")
    ax.scatter(pull[inside], rows[inside], c=colours, s=22, zorder=3)
    for side, marker in ((1.0, ">"), (-1.0, "<")):
        arrows = off & (np.sign(pull) == side)
        if arrows.any():
            ax.scatter(
                np.full(arrows.sum(), side * 0.97 * edge), rows[arrows], marker=marker, c="C3", s=30, zorder=3
            )
    if missing.any():
        ax.scatter(np.zeros(missing.sum()), rows[missing], marker="x", c="0.4", s=30, zorder=3)
    if intervals is not None:
        _interval_bars(ax, names, truth, errors, intervals)
    # Each pull written at the right: the figure then reads as a table too.
    beside = blended_transform_factory(ax.transAxes, ax.transData)
    for row in rows:
        text = "no σ" if missing[row] else f"{pull[row]:+.2f}"
        ax.text(
            1.02,
            row,
            text,
            transform=beside,
            va="center",
            fontsize=8,
            color="C3" if out[row] else ("0.4" if missing[row] else "k"),
            fontweight="bold" if out[row] else "normal",
        )
    ax.set_yticks(rows, names, fontsize=8 if n > 25 else 9)
    ax.set_ylim(n - 0.5, -0.5)  # the first param on top, as in a table
    ax.set_xlim(-edge, edge)
    if edge <= 6:
        ax.xaxis.set_major_locator(MultipleLocator(1))
    ax.set_xlabel(f"(estimate − {reference_label}) / σ")
    ax.set_title(_summary(pull, finite, missing), fontsize=9)
    return fig


def _summary(pull: np.ndarray, finite: np.ndarray, missing: np.ndarray) -> str:
    shown = pull[finite]
    parts = [f"{pull.size} params"]
    if shown.size:
        parts.append(f"rms pull {np.sqrt(np.mean(shown**2)):.2f}")
    parts.append(f"{int(np.sum(np.abs(pull) > 2))} beyond 2σ, {int(np.sum(np.abs(pull) > 3))} beyond 3σ")
    if missing.any():
        parts.append(f"{int(missing.sum())} without σ")
    return ", ".join(parts)


def _interval_bars(ax, names: list[str], truth: np.ndarray, errors: np.ndarray, intervals: Any) -> None:
    where = np.asarray([names.index(n) for n in intervals.names])
    minus, plus = (np.asarray(e, np.float64) for e in intervals.errors)
    value = np.asarray(intervals.value, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = (value - truth[where]) / errors[where]
        bars = np.stack([minus / errors[where], plus / errors[where]])
    ax.errorbar(
        centre,
        where + 0.25,
        xerr=bars,
        fmt="s",
        ms=4,
        color="C1",
        capsize=3,
        zorder=3,
        label=f"profile likelihood, {100 * intervals.cl:.3g}%",
    )
    ax.legend(fontsize="small", loc="lower right")


def _unreadable(values: np.ndarray, truth: np.ndarray | None, errors: np.ndarray, sigma: float) -> bool:
    """Whether some bar would be under 1% of the axis's span: values and errors of very different scales."""
    bars = sigma * errors[np.isfinite(errors) & (errors > 0)]
    if not bars.size:
        return False
    shown = np.concatenate([values, truth if truth is not None else []])
    shown = shown[np.isfinite(shown)]
    span = float(np.ptp(shown)) if shown.size else 0.0
    span = span or float(np.abs(shown).max(initial=0.0))
    return span > 0 and bars.min() < VISIBLE * span


def errorbars(
    covariance,
    sigma: float = 1.0,
    truth: Any = None,
    relative: bool = False,
    intervals: Any = None,
    kind: str = "auto",
):
    """Parameter estimates with their error bars from an `fk.Covariance`, as values or as pulls.

    Values of different units and scales on one axis hide every bar (a flux of
    5 with error 1e-4 beside a wavefront term of 60), so with a truth given and
    a bar under 1% of the axis, `kind="auto"` draws `pulls` instead.

    Args:
        covariance: the `fk.Covariance` (its `mean`, `names` and standard deviations).
        sigma: how many standard deviations each raw bar spans.
        truth: optional params pytree drawn as crosses (raw) or subtracted (pulls).
        relative: the same as `kind="pulls"` (needs `truth`).
        intervals: optional `fk.Intervals` (`fk.intervals`), drawn beside the
            curvature bars as asymmetric profile-likelihood bars.
        kind: `"raw"` (values with bars), `"pulls"` (`fk.plot.pulls` against
            `truth`) or `"auto"` (pulls when a truth is given and raw bars would
            not show).

    Returns:
        The matplotlib figure.

    Raises:
        ValueError: pulls (`relative=True` or `kind="pulls"`) without `truth`,
            or an unknown `kind`.

    Example:
        >>> fig = fk.plot.errorbars(fk.covariance(prob, res), truth=truth)
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose 'auto', 'raw' or 'pulls'")
    if relative:
        if truth is None:
            raise ValueError("relative=True needs truth")
        kind = "pulls"
    if kind == "pulls" and truth is None:
        raise ValueError("kind='pulls' needs truth")
    names = list(covariance.names)
    values = values_of(covariance, names)
    # Params held at a bound have no symmetric error: NaN here, so they are drawn without a bar.
    errors = errors_of(covariance)
    reference = None if truth is None else values_of(truth, names)
    if kind == "auto":
        kind = "pulls" if reference is not None and _unreadable(values, reference, errors, sigma) else "raw"
    if kind == "pulls":
        return pulls(covariance, covariance, reference, names=names, intervals=intervals)
    fig, ax = figure(None, (max(6, 0.45 * len(names)), 4))
    x = np.arange(len(names))
    ax.errorbar(x, values, yerr=sigma * errors, fmt="o", capsize=4, label=f"estimate ± {sigma:g} σ")
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
    if reference is not None:
        ax.plot(x, reference, "x", color="C3", label="truth")
    ax.set_ylabel("value")
    ax.legend()
    ax.axhline(0.0, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, names, rotation=45, ha="right", rotation_mode="anchor")
    return fig
