"""`fk.covariance`: the curvature of a problem at a mode, inverted with an honest verdict."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import tree
from .._config import warn_if_float32
from ..problem import Problem
from ._blocks import memory_budget
from ._covariance import Covariance
from ._diagnose import check_finite, invert, spectrum_of_jacobian, spectrum_of_matrix
from ._fisher import check_problem, fisher, prior_curvature, whitened_jacobian
from ._flat import is_tracing
from ._hessian import hessian

__all__ = ["covariance"]

METHODS = ("hessian", "fisher")


def _prior_rows(prior: np.ndarray | None, eps: float) -> np.ndarray | None:
    """Rows `R` with `R^T R = prior`, or None if the prior curvature is not positive semi-definite."""
    if prior is None:
        return np.zeros((0, 0))
    values, vectors = np.linalg.eigh(prior)
    top = max(float(np.abs(values).max()), 0.0)
    if values.min() < -prior.shape[0] * eps * top:
        return None
    keep = values > 0
    return np.sqrt(values[keep])[:, None] * vectors[:, keep].T


def covariance(
    problem: Problem,
    params: Any,
    *,
    method: str = "hessian",
    batch_size: int | None = None,
    max_memory: int | float | None = None,
    regularise: bool | float | None = None,
    devices: Sequence[jax.Device] | None = None,
    scale: str | float | None = None,
) -> Covariance:
    """The covariance of the params at a mode: the inverse curvature of the problem's nll.

    `method="hessian"` inverts the Hessian of `problem.nll` (likelihood plus
    priors). `method="fisher"` inverts the Fisher information `J^T W J` plus
    the priors' curvature, which is positive semi-definite by construction.
    With `"fisher"`, when the whitened Jacobian `diag(sqrt(w)) J` fits in
    `max_memory` (three copies of `n_data x n` floats) and the prior curvature is
    positive semi-definite, the covariance comes from the SVD of that Jacobian
    (with the priors' square-root rows appended), so the condition number is not
    squared (`method == "fisher:svd"`); otherwise from the matrix
    (`"fisher:matrix"`). Every matrix is first normalised by its diagonal, so the
    verdict on a singular or indefinite matrix does not depend on units.

    Args:
        problem: the `fk.Problem`.
        params: the mode: a params pytree or a `FitResult`.
        method: `"hessian"` or `"fisher"`.
        batch_size: columns per block for the Hessian/Jacobian (`None`: planned from `max_memory`).
        max_memory: memory budget in bytes (default: a quarter of device memory, or 2 GiB).
        regularise: `None` (default): raise `CurvatureError` on a singular or
            indefinite matrix. `True`: return a pseudo-inverse that drops the
            offending directions. A float: also drop directions whose eigenvalue of the
            diagonal-normalised matrix is below `regularise` times the largest.
            Dropped directions are listed in a warning and in `Covariance.dropped`.
        devices: devices to spread the blocks over (default: all).
        scale: `None` (default): the errors in the data are taken as true
            standard deviations. `"chi2r"`: multiply the covariance by the
            reduced chi-squared at `params`, as lmfit does by default
            (`scale_covar=True`): use it when the errors are only relative
            (all points equally uncertain, `error=1`) or of unknown size, never
            when they are known, since a poor fit then inflates the error bars
            instead of being noticed. A positive number: multiply by it.
            `Covariance.scale` records the factor applied.

    Warns:
        ConvergenceWarning: the params are not at a minimum: the estimated
            distance to it, `0.5 g^T C g` with `g` the gradient of `problem.nll`
            and `C` the unscaled covariance, is above 1e-3.

    Returns:
        A `Covariance` (`matrix`, `std`, `correlation`, `names`, `sample`, `predict`, ...).

    Raises:
        CurvatureError: the matrix is singular or indefinite (a `ValueError`
            naming the parameters: "wfe[0] is not constrained by the data").
        ValueError: unknown `method` or bad `regularise`.
        TypeError: called under `jit`/`vmap` (use `fk.fisher`/`fk.hessian` there),
            or `problem` is not an `fk.Problem`.

    Example:
        >>> cov = fk.covariance(problem, result, method="fisher")
        >>> cov.std, cov.to_dataframe()
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if not (regularise is None or isinstance(regularise, (bool, int, float))) or (
        not isinstance(regularise, bool) and isinstance(regularise, (int, float)) and regularise < 0
    ):
        raise ValueError(f"regularise must be None, True, or a non-negative float, got {regularise!r}")
    _check_scale(problem, scale)
    params = check_problem(problem, params, "fk.covariance")
    if is_tracing(params):
        raise TypeError(
            "fk.covariance inspects the matrix to name unconstrained parameters, so it cannot run "
            "under jit or vmap; use fk.fisher or fk.hessian (and jnp.linalg.inv) there"
        )
    x, _ = tree.ravel(params)
    names = tree.names(params)
    eps = float(jnp.finfo(x.dtype).eps)
    warn_if_float32(x.dtype, "The covariance")
    if method == "hessian":
        matrix = hessian(problem.nll, params, batch_size=batch_size, max_memory=max_memory, devices=devices)
        spectrum, label, what = (
            spectrum_of_matrix(np.asarray(matrix), eps),
            "hessian",
            "the Hessian of the nll",
        )
    else:
        what = "the Fisher information"
        prior = prior_curvature(problem, params)
        rows = _prior_rows(None if prior is None else np.asarray(prior), eps)
        fits = 3 * problem.n_data * x.size * x.dtype.itemsize <= memory_budget(max_memory)
        if fits and rows is not None:
            jac = np.asarray(whitened_jacobian(problem, params, batch_size, max_memory, devices))
            check_finite(jac, names, what)
            stacked = np.concatenate([jac, rows]) if rows.size else jac
            spectrum, label = spectrum_of_jacobian(stacked, eps), "fisher:svd"
        else:
            matrix = np.asarray(
                fisher(problem, params, batch_size=batch_size, max_memory=max_memory, devices=devices)
            )
            check_finite(matrix, names, what)
            spectrum, label = spectrum_of_matrix(matrix, eps), "fisher:matrix"
    matrix, dropped = invert(spectrum, names, what, regularise)
    if dropped:
        lines = "\n".join(f"  - {d.text}" for d in dropped)
        warnings.warn(
            f"the covariance is a pseudo-inverse of {what}: {len(dropped)} direction(s) were dropped "
            f"and carry no uncertainty:\n{lines}",
            stacklevel=2,
        )
    _warn_if_not_at_minimum(problem, params, matrix)
    factor = float(problem.chi2r(params)) if scale == "chi2r" else 1.0 if scale is None else float(scale)
    return Covariance(
        jnp.asarray(factor * matrix, dtype=x.dtype), params, label, [d.text for d in dropped], scale=factor
    )


# Above this estimated distance to the minimum (nll units) the params are not at
# a mode: the error bars then describe the curvature of a point that is not the optimum.
MAX_EDM = 1e-3


def _warn_if_not_at_minimum(problem, params, matrix) -> None:
    from .._verdict import _gradient
    from ..solving._messages import ConvergenceWarning

    _, grad = _gradient(problem, params)
    grad = np.asarray(grad, np.float64)
    edm = 0.5 * float(grad @ np.asarray(matrix, np.float64) @ grad)
    if not edm <= MAX_EDM:
        warnings.warn(
            f"fk.covariance: these params are not at a minimum (estimated distance to the minimum "
            f"edm = {edm:.3g} > {MAX_EDM:g} in nll units), so the error bars describe the curvature "
            "of a point that is not the optimum; solve first and pass a valid result",
            ConvergenceWarning,
            stacklevel=3,
        )


def _check_scale(problem, scale) -> None:
    """Check `scale` before any work: None, "chi2r" (normal likelihood only) or a positive number."""
    if scale is None:
        return
    if isinstance(scale, str):
        if scale != "chi2r":
            raise ValueError(f"unknown scale {scale!r}; give None, 'chi2r' or a positive number")
        if getattr(problem, "likelihood", "normal") != "normal":
            raise ValueError(
                "scale='chi2r' rescales Gaussian errors of unknown size; this problem's likelihood is "
                f"{problem.likelihood!r}, whose variance is fixed by the model: leave scale=None"
            )
        return
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not (scale > 0 and np.isfinite(scale))
    ):
        raise ValueError(f"scale must be None, 'chi2r' or a positive finite number, got {scale!r}")
