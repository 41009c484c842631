"""Tick placement for crowded grids, and a check that no two labels of a figure overlap."""

from __future__ import annotations

import itertools

import numpy as np
from matplotlib.ticker import MaxNLocator


class InnerLocator(MaxNLocator):
    """At most `most` nice ticks, none in the outer `margin` of the view on either side.

    Panels of a corner plot touch: a tick at the right end of one panel and one
    at the left end of the next would print their labels on top of each other,
    so ticks keep clear of both ends.

    Example:
        >>> ax.xaxis.set_major_locator(InnerLocator(most=3, margin=0.15))
    """

    def __init__(self, most: int = 3, margin: float = 0.15, **kwargs):
        super().__init__(nbins=max(most - 1, 1), steps=[1, 2, 2.5, 5, 10], **kwargs)
        self.margin = margin
        self.most = most

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        lo, hi = sorted((vmin, vmax))
        inset = self.margin * (hi - lo)
        ticks = super().tick_values(lo + inset, hi - inset)
        slack = 1e-9 * (hi - lo)
        ticks = ticks[(ticks >= lo + inset - slack) & (ticks <= hi - inset + slack)]
        # MaxNLocator keeps at least two ticks by shrinking the step; thin them
        # (every second, third...) when that leaves more than `most`.
        stride = -(-len(ticks) // max(self.most, 1))
        if stride > 1:
            start = (len(ticks) - 1 - stride * ((len(ticks) - 1) // stride)) // 2
            ticks = ticks[start::stride]
        return ticks


def _drawn_labels(axis) -> list:
    """The tick labels matplotlib draws: those of ticks inside the view (the locator may return more)."""
    lo, hi = sorted(axis.get_view_interval())
    slack = 1e-10 * max(abs(lo), abs(hi), 1e-300)
    labels = []
    for locs, ticks in (
        (axis.get_majorticklocs(), axis.get_major_ticks),
        (axis.get_minorticklocs(), axis.get_minor_ticks),
    ):
        for loc, tick in zip(locs, ticks(len(locs))):
            if lo - slack <= loc <= hi + slack and tick.get_visible():
                labels += [tick.label1, tick.label2]
    return labels


def _text_boxes(fig, labels: bool) -> list[tuple[int, str, object]]:
    renderer = fig.canvas.get_renderer()
    boxes = []
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        texts = []
        for axis in (ax.xaxis, ax.yaxis):
            texts += _drawn_labels(axis)
            if labels:
                texts += [axis.label, axis.offsetText]
        if labels:
            texts.append(ax.title)
        for text in texts:
            if text.get_visible() and text.get_text().strip():
                boxes.append((index, text.get_text(), text.get_window_extent(renderer)))
    return boxes


def tick_overlaps(fig, labels: bool = False, tolerance: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of tick labels (across every axis of `fig`) whose drawn boxes overlap.

    Draws the figure, takes the window extent of every visible, non-empty tick
    label of every visible axis and compares each pair, across panels too,
    since neighbouring panels of a grid are where labels collide.

    Args:
        fig: a matplotlib figure.
        labels: also check the axis labels, offset texts and titles.
        tolerance: pixels two boxes may share before they count as overlapping
            (anti-aliasing lets touching glyphs share one).

    Returns:
        `[(text_a, text_b), ...]`, each named `"axes i: text"`; empty when
        nothing overlaps.

    Example:
        >>> assert not fk.plot.tick_overlaps(fk.plot.corner(cov))
    """
    fig.canvas.draw()
    pairs = []
    for (i, a, box_a), (j, b, box_b) in itertools.combinations(_text_boxes(fig, labels), 2):
        width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        if width > tolerance and height > tolerance:
            pairs.append((f"axes {i}: {a}", f"axes {j}: {b}"))
    return pairs
