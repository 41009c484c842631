"""Helpers every figure shares: new-or-given axes, flat values, names and errors of params."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .. import tree
from ..results import FitResult


def is_posterior(item: Any) -> bool:
    """Whether `item` looks like an `fk.Posterior` (duck-typed: sampling loads numpyro)."""
    return hasattr(item, "flat") and hasattr(item, "latent")


def is_covariance(item: Any) -> bool:
    """Whether `item` looks like an `fk.Covariance` (duck-typed: curvature loads lineax)."""
    return hasattr(item, "matrix") and hasattr(item, "mean") and not hasattr(item, "latent")


def flat_values(params: Any) -> np.ndarray:
    """The params' scalars in `fitkit.tree.ravel` order, as a float64 numpy vector."""
    return np.asarray(tree.ravel(params)[0], np.float64)


def figure(ax, size: tuple[float, float]):
    """`(fig, ax)`: the given axis and its figure, or a new figure of `size` inches."""
    if ax is None:
        fig, ax = plt.subplots(figsize=size, layout="constrained")
        return fig, ax
    return ax.figure, ax


def param_names(item: Any) -> list[str] | None:
    """Flat names of an estimate: a covariance's or posterior's names, a pytree's paths; None for arrays."""
    if isinstance(item, FitResult):
        item = item.params
    if hasattr(item, "names") and (is_covariance(item) or is_posterior(item)):
        return list(item.names)
    if _is_array(item):
        return None
    return tree.names(item)


def values_of(item: Any, names: Sequence[str] | None = None) -> np.ndarray:
    """Flat values of an estimate or reference.

    Args:
        item: a params pytree, an `fk.FitResult` (its params), an `fk.Covariance`
            (its mean), a flat dict `name -> value` (ordered by `names`) or an array.
        names: the flat names, used to order a flat dict.

    Returns:
        A float64 vector.

    Raises:
        KeyError: a flat dict lacks one of `names`.
    """
    if isinstance(item, FitResult):
        item = item.params
    if is_covariance(item):
        item = item.mean
    if isinstance(item, dict) and names is not None and set(item) == set(names):
        # A dict keyed by flat names ("wfe[10]") ravels in sorted-key order, not in
        # the params' order, so it is read name by name.
        return np.asarray([float(np.asarray(item[n])) for n in names], np.float64)
    if _is_array(item):
        return np.ravel(np.asarray(item, np.float64))
    return flat_values(item)


def errors_of(item: Any, names: Sequence[str] | None = None) -> np.ndarray:
    """Flat 1-sigma errors: an `fk.Covariance`'s standard deviations, a covariance matrix's root diagonal, or values.

    Args:
        item: an `fk.Covariance`, an `(n, n)` covariance matrix, or errors
            (a pytree, flat dict or array shaped like the estimates).
        names: the flat names, used to order a flat dict.

    Returns:
        A float64 vector; NaN where an error is unknown (a param held at a bound,
        a negative variance).
    """
    if hasattr(item, "flat_std"):
        return np.asarray(item.flat_std, np.float64)
    array = np.asarray(item, np.float64) if _is_array(item) else None
    if array is not None and array.ndim == 2 and array.shape[0] == array.shape[1] and array.shape[0] > 1:
        diagonal = np.diag(array)
        with np.errstate(invalid="ignore"):
            return np.where(diagonal >= 0, np.sqrt(np.abs(diagonal)), np.nan)
    return values_of(item, names)


def _is_array(item: Any) -> bool:
    # A list or tuple of numbers is an array; one holding arrays is a params pytree.
    if isinstance(item, (list, tuple)):
        return all(isinstance(x, (float, int)) or np.ndim(x) == 0 for x in item)
    return isinstance(item, (np.ndarray, float, int)) or hasattr(item, "__array__")


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
    folder = os.environ.get("FITKIT_FIGURES")
    if folder:
        fig.savefig(pathlib.Path(folder) / f"{name}.png", dpi=90)
        plt.close(fig)
    else:
        plt.show()
