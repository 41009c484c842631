"""Corner plots of posteriors, covariances and fits (chainconsumer), readable at many parameters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from .. import tree
from ..results import FitResult
from ._common import flat_values, is_covariance, is_posterior
from ._layout import InnerLocator

# Ticks keep this fraction of a panel clear at each end, so touching panels'
# labels do not meet.
TICK_MARGIN = 0.18
# Corners of more params than this leave out the summary above each marginal.
SUMMARY_MAX = 6


def select(names: Sequence[str], params: Sequence[str]) -> list[str]:
    """The flat names under the given paths: `"wfe"` selects `wfe[0]`, `wfe[1]`..., `"position.blue"` its leaves.

    Args:
        names: every flat name, in order.
        params: paths (top-level keys, sub-paths or flat names).

    Returns:
        The selected names, in the order of `names`.

    Raises:
        ValueError: a path matches no name.

    Example:
        >>> select(["flux", "wfe[0]", "wfe[1]"], ["wfe"])
        ['wfe[0]', 'wfe[1]']
    """

    def under(name: str, path: str) -> bool:
        return name == path or name.startswith((path + "[", path + "."))

    unknown = [p for p in params if not any(under(n, p) for n in names)]
    if unknown:
        raise ValueError(f"no parameter under {unknown}; the names are {list(names)[:12]}...")
    return [n for n in names if any(under(n, p) for p in params)]


def _sizes(count: int) -> tuple[float, int, int]:
    """Panel growth factor and label and tick font sizes for a corner of `count` params."""
    # chainconsumer draws 2 inches per param: at many params the figure would be
    # metres wide and shrink to nothing on a page, so panels shrink and fonts with them.
    grow = float(np.clip(8.0 / max(count, 1), 0.75, 1.0))
    label = int(np.clip(round(13 - 0.25 * count), 8, 12))
    return grow, label, max(label - 1, 8)


def corner(
    items: Any | Sequence[Any],
    truth: Any = None,
    names: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    covariance_draws: int = 50_000,
    seed: int = 0,
    intervals: Any = None,
    params: Sequence[str] | None = None,
    max_ticks: int = 3,
):
    """A chainconsumer corner plot of any mix of posteriors, covariances and fits.

    At most `max_ticks` ticks per axis, clear of the panel edges, labels
    rotated 45 degrees, fonts that shrink with the number of params, and an
    offset or power of ten moved into the axis label (`[×10⁻⁶ + 0.0415]`) where
    the values differ only in late digits.

    Args:
        items: one or a list of `fk.Posterior` (its draws), `fk.Covariance`
            (drawn as the Gaussian it describes) and `fk.FitResult` (a marker
            at its params).
        truth: optional params pytree (or flat dict name -> value) drawn as
            the truth lines.
        names: flat parameter names; taken from the items when omitted.
        columns: the subset of flat names to plot (default: all).
        labels: legend labels, one per item (default: "posterior",
            "covariance", "fit" numbered as needed).
        covariance_draws: number of draws that represent a covariance.
        seed: seed of those draws, for reproducible figures.
        intervals: optional `fk.Intervals` (`fk.intervals`): each profiled param's lower and
            upper limits drawn as dashed lines on its marginal (the asymmetric error bars).
        params: paths whose params to plot (`["wfe"]`, `["position.blue", "flux"]`),
            an alternative to `columns`.
        max_ticks: the most ticks on an axis.

    Returns:
        The matplotlib figure.

    Raises:
        TypeError: an item of an unsupported type.
        ValueError: items disagree on the number of parameters, a path of
            `params` matches none, or both `columns` and `params` are given.

    Example:
        >>> fig = fk.plot.corner([post, cov], truth=true_params, params=["wfe"])
    """
    import pandas as pd
    from chainconsumer import Chain, ChainConsumer, PlotConfig, Truth

    if columns is not None and params is not None:
        raise ValueError("give columns (flat names) or params (paths), not both")
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    consumer = ChainConsumer()
    rng = np.random.default_rng(seed)
    markers = []
    for i, item in enumerate(items):
        label = labels[i] if labels is not None else None
        if is_posterior(item):
            item_names = list(item.names)
            flat = item.flat().reshape(-1, len(item_names))
            frame = pd.DataFrame(flat, columns=item_names)
            consumer.add_chain(Chain(samples=frame, name=label or f"posterior {i}"))
        elif is_covariance(item):
            item_names = list(item.names)
            draws = rng.multivariate_normal(
                flat_values(item.mean), np.asarray(item.matrix), size=covariance_draws, method="eigh"
            )
            frame = pd.DataFrame(draws, columns=item_names)
            consumer.add_chain(
                Chain(
                    samples=frame, name=label or f"covariance {i}", color="k", shade_alpha=0.1, linewidth=2.0
                )
            )
        elif isinstance(item, FitResult):
            item_names = tree.names(item.params)
            markers.append((label or f"fit {i}", dict(zip(item_names, flat_values(item.params).tolist()))))
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
    shown = (
        list(columns) if columns is not None else select(names, params) if params is not None else list(names)
    )
    grow, label_size, tick_size = _sizes(len(shown))
    consumer.set_plot_config(
        PlotConfig(
            max_ticks=max_ticks,
            label_font_size=label_size,
            tick_font_size=tick_size,
            summary_font_size=label_size,
            # the summary titles ("x = 1.23 +0.04 -0.05") are wider than small panels
            summarise=len(shown) <= SUMMARY_MAX,
            contour_label_font_size=tick_size,
        )
    )
    for j, (label, location) in enumerate(markers):
        consumer.add_truth(
            Truth(location=location, name=label, color=f"C{(j + 4) % 10}", marker="o", line_style=":")
        )
    if truth is not None:
        location = (
            truth if isinstance(truth, dict) and all(isinstance(v, float) for v in truth.values()) else None
        )
        if location is None:
            location = dict(zip(tree.names(truth), flat_values(truth).tolist()))
        consumer.add_truth(Truth(location=location, name="truth", color="C3"))
    # chainconsumer warns "not constrained" whenever a marginal touches its plot
    # range, and matplotlib about a font weight its style asks for: both noise here.
    quiet = [logging.getLogger(name) for name in ("chainconsumer", "matplotlib.font_manager")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        fig = consumer.plotter.plot(columns=shown, figsize=grow)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    _tidy_ticks(fig, shown, max_ticks, tick_size)
    if intervals is not None:
        _mark_intervals(fig, shown, intervals)
    return fig


def _tidy_ticks(fig, shown: list[str], max_ticks: int, size: int) -> None:
    """Few ticks clear of the panel edges, rotated labels, and offsets written into the axis labels."""
    count = len(shown)
    grid = np.asarray(fig.axes[: count * count], dtype=object).reshape(count, count)
    width, height = fig.get_size_inches() * 72.0  # points
    for row in range(count):
        for col in range(row + 1):
            ax = grid[row, col]
            box = ax.get_position()
            for axis, which, name, length in (
                (ax.xaxis, "x", shown[col], box.width * width),
                (ax.yaxis, "y", shown[row], box.height * height),
            ):
                # chainconsumer gives a MaxNLocator only to the axes that show tick labels
                if type(axis.get_major_locator()) is not MaxNLocator:
                    continue
                _fit_ticks(axis, name, length, size, max_ticks)
                ax.tick_params(axis=which, labelsize=size, labelrotation=45)
                for label in axis.get_ticklabels():
                    label.set(ha="right", rotation_mode="anchor")
                    if which == "y":
                        label.set(va="center")


def _fit_ticks(axis, name: str, length: float, size: int, max_ticks: int) -> None:
    """As many ticks (up to `max_ticks`) as leave room between their rotated labels."""
    lo, hi = sorted(axis.get_view_interval())
    for most in range(max(max_ticks, 1), 0, -1):
        axis.set_major_locator(InnerLocator(most=most, margin=TICK_MARGIN))
        formatter = _offset_into_label(axis, name)
        locs = axis.get_major_locator()()
        if len(locs) < 2:
            return
        text = formatter.format_ticks(locs)
        # A label rotated by 45 degrees spans (width + height) / sqrt(2) along the axis.
        span = (0.6 * size * max(len(t) for t in text) + size) / np.sqrt(2.0)
        gap = length * float(np.min(np.diff(locs))) / (hi - lo)
        if gap > 1.15 * span:
            return


def _offset_into_label(axis, name: str) -> ScalarFormatter:
    """Ticks relative to an offset and a power of ten where needed, both written into the axis label.

    Matplotlib would draw them as an offset text (`1e-6+4.15e-2`) at the end of
    the axis, where the neighbouring panel's tick labels are; chainconsumer
    appends that text to the label, stale once the ticks change, so the label
    is rewritten from the param's name.
    """
    locs = np.asarray(axis.get_major_locator()(), np.float64)
    best = None
    # matplotlib's offsets when it asks 4 (its default), 3 or 2 shared digits of
    # them: the one giving the shortest tick labels wins, no offset on a tie.
    for threshold in (4, 3, 2):
        with matplotlib.rc_context({"axes.formatter.offset_threshold": threshold}):
            probe = ScalarFormatter(useOffset=True)
        probe.set_axis(axis)
        probe.set_locs(locs)
        offset = float(probe.offset)
        largest = float(np.abs(locs - offset).max()) if locs.size else 0.0
        scale = int(np.floor(np.log10(largest))) if largest > 0 else 0
        if -3 < scale < 4:
            scale = 0
        formatter = ScalarFormatter(useOffset=offset if offset else False)
        # (m, m) fixes the power of ten; a wide range never switches to one
        formatter.set_powerlimits((scale, scale) if scale else (-300, 300))
        formatter.set_axis(axis)
        longest = max((len(t) for t in formatter.format_ticks(locs)), default=0)
        if best is None or longest < best[0]:
            best = (longest, formatter, offset, scale)
    _, formatter, offset, scale = best
    axis.set_major_formatter(formatter)
    axis.offsetText.set_visible(False)
    if not scale and not offset:
        axis.set_label_text(name)
        return formatter
    parts = []
    if scale:
        parts.append(rf"$\times10^{{{scale}}}$")
    if offset:
        parts.append(f"{'+' if offset > 0 else '−'} {abs(offset):.8g}")
    axis.set_label_text(f"{name}\n[{' '.join(parts)}]")
    return formatter


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
