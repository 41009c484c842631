"""Active bounds: free params whose minimum lies beyond their bound, to be held at it."""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["find_at_limit", "LIMIT_SIGMAS"]

# A param closer to its bound than this many of its standard deviations, with the
# nll still falling towards the bound, is at the limit: holding it exactly there
# changes the nll by less than 0.5 * LIMIT_SIGMAS**2.
LIMIT_SIGMAS = 1e-3
# Where the density is not finite on the bound itself, the param is held this many sigmas inside.
EDGE_SIGMAS = 1e-6


def find_at_limit(problem, parametrisation, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """Which free elements sit at a bound with the minimum beyond it, and the bound each is held at.

    Judged in the physical units: a free element is at its lower (upper) limit
    when it lies within `LIMIT_SIGMAS` standard deviations (from the inverse
    Hessian of the free params) of that bound and the gradient of the nll
    points out of the interval there.

    Returns:
        `(held, values)`: a flat boolean mask and the flat values to hold them at.
    """
    from ._reduced import OnFlat
    from ._verdict import _value_and_grad
    from .curvature import hessian

    objective = OnFlat(problem, parametrisation)
    point = parametrisation.flat(params)
    x = np.asarray(point, np.float64)
    lower, upper = (np.asarray(b, np.float64) for b in (parametrisation.lower, parametrisation.upper))
    held = np.zeros(x.size, bool)
    free = parametrisation.independent()
    bounded = np.isfinite(lower[free]) | np.isfinite(upper[free])
    if not bounded.any():
        return held, x
    _, grad = _value_and_grad(objective, point)
    matrix = np.asarray(hessian(objective, point), np.float64)[np.ix_(free, free)]
    grad = np.asarray(grad, np.float64)[free]
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(grad))):
        return held, x
    sigma = np.sqrt(np.abs(np.diag(np.linalg.pinv(matrix, hermitian=True))))
    near_lower = (x[free] - lower[free] <= LIMIT_SIGMAS * sigma) & (grad > 0)
    near_upper = (upper[free] - x[free] <= LIMIT_SIGMAS * sigma) & (grad < 0)
    held[free] = near_lower | near_upper
    values = x.copy()
    values[free[near_lower]] = lower[free[near_lower]]
    values[free[near_upper]] = upper[free[near_upper]]
    with warnings.catch_warnings():  # numpyro warns on a value at the edge of a prior's support
        warnings.simplefilter("ignore")
        on_bound = float(objective(jnp.asarray(values, point.dtype))) if held.any() else 0.0
    if not np.isfinite(on_bound):
        # The bound came from an open support (a HalfNormal prior at 0): hold the param a hair
        # inside, where the density is finite, instead of on the bound itself.
        inward = np.where(near_lower, 1.0, -1.0) * EDGE_SIGMAS * sigma
        values[free[held[free]]] += inward[held[free]]
    return held, values
