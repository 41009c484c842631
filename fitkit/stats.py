"""Goodness-of-fit statistics and log-likelihoods, elementwise and jit/vmap friendly.

Every function takes an optional boolean `mask` (True where a point is used);
masked points contribute exactly zero, and their values (NaN errors, say)
never reach a gradient.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, xlogy
from jaxtyping import Array, ArrayLike, Bool, Float

from . import tree

__all__ = [
    "z_score",
    "chi2",
    "chi2r",
    "chi2r_from_z",
    "ddof",
    "loglike",
    "normal_loglike",
    "poisson_loglike",
    "poisson_deviance",
    "LIKELIHOODS",
]

LIKELIHOODS = ("normal", "poisson")


def _safe(values: ArrayLike, mask, fill: float) -> Array:
    """`values` where `mask` is True and `fill` elsewhere (so no NaN leaks into gradients)."""
    values = jnp.asarray(values)
    return values if mask is None else jnp.where(mask, values, fill)


def _masked(values: Array, mask) -> Array:
    return values if mask is None else jnp.where(mask, values, 0.0)


def z_score(
    pred: Float[ArrayLike, "..."],
    data: Float[ArrayLike, "..."],
    error: Float[ArrayLike, "..."],
    mask: Bool[ArrayLike, "..."] | None = None,
) -> Float[Array, "..."]:
    """Residual in units of the error, `(data - pred) / error`; zero where masked.

    Example:
        >>> z_score(1.0, 3.0, 2.0)
        Array(1., dtype=float32, weak_type=True)
    """
    error = _safe(error, mask, 1.0)
    data = _safe(data, mask, 0.0)
    return _masked((data - pred) / error, mask)


def chi2(pred, data, error, mask=None) -> Float[Array, ""]:
    """Chi-squared: the sum of squared z-scores over unmasked points."""
    return jnp.sum(jnp.square(z_score(pred, data, error, mask)))


def ddof(params: Any, data: Any, mask: ArrayLike | None = None) -> int:
    """Degrees of freedom: number of (unmasked) data points minus number of parameters.

    Args:
        params: any pytree of parameters; every scalar counts.
        data: an array or pytree of arrays of data.
        mask: optional boolean array (or pytree) of used points.
    """
    n_data = tree.size(data) if mask is None else int(sum(int(jnp.sum(m)) for m in jax.tree.leaves(mask)))
    return n_data - tree.size(params)


def _positive_ddof(ddof: Any) -> Any:
    """`ddof`, or a `ValueError` when a concrete `ddof` is not positive (a traced one passes)."""
    if isinstance(ddof, jax.core.Tracer):
        return ddof
    value = jnp.asarray(ddof)
    if value.ndim != 0 or not bool(value > 0):
        raise ValueError(
            f"the reduced chi-squared needs ddof >= 1 (more used data points than parameters), got "
            f"ddof={ddof!r}; add data or fix some parameters (see fitkit.stats.ddof)"
        )
    return ddof


def chi2r(pred, data, error, ddof: int, mask=None) -> Float[Array, ""]:
    """Reduced chi-squared: chi-squared divided by the degrees of freedom `ddof`.

    Raises:
        ValueError: `ddof <= 0` (checked when `ddof` is concrete, not traced).
    """
    return chi2(pred, data, error, mask) / _positive_ddof(ddof)


def chi2r_from_z(z: Float[ArrayLike, "..."], ddof: int) -> Float[Array, ""]:
    """Reduced chi-squared from precomputed z-scores (NaNs are ignored).

    Raises:
        ValueError: `ddof <= 0` (checked when `ddof` is concrete, not traced).
    """
    return jnp.nansum(jnp.square(jnp.asarray(z))) / _positive_ddof(ddof)


def normal_loglike(pred, data, error, mask=None) -> Float[Array, "..."]:
    """Elementwise Gaussian log-density of `data` given mean `pred` and std `error`."""
    error = _safe(error, mask, 1.0)
    z = z_score(pred, data, error, mask)
    value = -0.5 * jnp.square(z) - jnp.log(error) - 0.5 * math.log(2 * math.pi)
    return _masked(value, mask)


def poisson_loglike(pred, data, mask=None) -> Float[Array, "..."]:
    """Elementwise Poisson log-probability of counts `data` given rates `pred` (> 0)."""
    data = _safe(data, mask, 0.0)
    pred = _safe(pred, mask, 1.0)
    value = xlogy(data, pred) - pred - gammaln(data + 1.0)
    return _masked(value, mask)


def poisson_deviance(pred, data, mask=None) -> Float[Array, "..."]:
    """Elementwise Poisson deviance `2 [d log(d/p) - (d - p)]`.

    It is the Poisson analogue of a squared z-score: non-negative, zero at
    `pred == data`, about 1 per point at the optimum, and `sum / 2` differs
    from the negative log-likelihood only by a constant.
    """
    data = _safe(data, mask, 1.0)
    pred = _safe(pred, mask, 1.0)
    value = 2.0 * (xlogy(data, data) - xlogy(data, pred) - (data - pred))
    return _masked(value, mask)


def loglike(pred, data, error=None, likelihood: str = "normal", mask=None) -> Float[Array, "..."]:
    """Elementwise log-likelihood for `likelihood` in `("normal", "poisson")`.

    Args:
        pred: model prediction (the mean, or the Poisson rate).
        data: observed values.
        error: standard deviations (normal only; ignored for Poisson).
        likelihood: `"normal"` or `"poisson"`.
        mask: optional boolean array, True where a point is used.

    Returns:
        An array shaped like `data`; masked points are exactly zero.

    Raises:
        ValueError: unknown `likelihood`, or a normal likelihood without `error`.
    """
    if likelihood == "normal":
        if error is None:
            raise ValueError("a normal likelihood needs `error` (the standard deviation of each point)")
        return normal_loglike(pred, data, error, mask)
    if likelihood == "poisson":
        return poisson_loglike(pred, data, mask)
    raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
