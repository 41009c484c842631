"""How a fit went: the loss per step and the parameters' paths."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np

from .. import tree
from ..results import FitResult
from ._common import figure


def loss(result: FitResult, log: bool = True, ax=None, label: str | None = None):
    """The loss per step of a `FitResult` (log scale by default).

    Args:
        result: a `FitResult` (from `fk.fit` or `fk.solve`).
        log: log-scale the loss axis; a loss that reaches zero or below (priors
            can make it negative) is drawn on a linear axis instead.
        ax: an existing matplotlib axis to draw on (default: a new figure), e.g.
            to put a warm start and its polish on one axis.
        label: legend label of this curve (default: none, and no legend).

    Returns:
        The matplotlib figure.

    Raises:
        KeyError: the result has no loss history.

    Example:
        >>> fig = fk.plot.loss(fk.fit(prob, params, optax.adam(1e-2), steps=200))
    """
    fig, ax = figure(ax, (7, 4))
    values = np.asarray(result.history["loss"], np.float64)
    steps = np.asarray(result.history.get("step", np.arange(len(values))))
    ax.plot(steps, values, label=label)
    if log and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=f"{result.method or 'fit'}: final loss {result.loss:.4g}")
    if label is not None:
        ax.legend()
    return fig


def history(result: FitResult, paths: Sequence[str] | None = None, fig=None, ax=None):
    """Parameter evolution as deltas from the start, one panel per top-level path.

    Args:
        result: a `FitResult` whose history kept the params (`history=True`).
        paths: top-level (or any) paths to show; default: every top-level key.
        fig: a figure to draw the panels into (default: a new one).
        ax: one axis to draw on, when a single path is shown.

    Returns:
        The matplotlib figure, one panel per path.

    Raises:
        ValueError: the result holds no params history, or `ax` is given for
            several paths.

    Example:
        >>> fig = fk.plot.history(res, paths=["position", "wfe"])
    """
    tracked = result.history.get("params")
    if tracked is None:
        raise ValueError("this FitResult holds no params history; fit with history=True")
    steps = np.asarray(result.history.get("params_step", np.arange(len(jax.tree.leaves(tracked)[0]))))
    if paths is None:
        paths = list(dict.fromkeys(p.split(".")[0] for p in tree.leaf_paths(tracked)))
    whole_figure = ax is None
    if ax is not None:
        if len(paths) != 1:
            raise ValueError(f"ax= draws one panel but {len(paths)} paths were asked for; give fig= instead")
        fig, axes = ax.figure, [ax]
    else:
        fig = fig if fig is not None else plt.figure(figsize=(5 * len(paths), 4), layout="constrained")
        axes = fig.subplots(1, len(paths), squeeze=False)[0]
    for panel, path in zip(axes, paths):
        node = tree.get(tracked, path)
        for leaf_path, leaf in zip(tree.leaf_paths(node), jax.tree.leaves(node)):
            values = np.asarray(leaf).reshape(len(steps), -1)
            for k in range(values.shape[1]):
                suffix = f"[{k}]" if values.shape[1] > 1 else ""
                panel.plot(steps, values[:, k] - values[0, k], label=f"{leaf_path}{suffix}".lstrip("."))
        panel.set(title=path, xlabel="step", ylabel=f"delta {path}")
        if len(panel.lines) <= 10:
            panel.legend(fontsize="small")
    if whole_figure:  # a caller's single axis keeps its figure's title
        fig.suptitle("Parameter evolution")
    return fig
