"""`fk.covariance`: the curvature of a problem at a mode, inverted with an honest verdict."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import tree
from .._config import warn_if_float32
from .._verdict import _gradient
from ..parametrisation import normalise_fixed
from ..problem import Problem
from ..results import FitResult, inherited_fixed
from ._blocks import memory_budget
from ._covariance import Covariance
from ._diagnose import check_finite, invert, spectrum_of_jacobian, spectrum_of_matrix
from ._fisher import check_problem, fisher, prior_curvature, whitened_jacobian
from ._flat import is_tracing
from ._hessian import hessian
from ._jacobian import jacobian

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
    fixed: Any = None,
    progress: bool | None = False,
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
        problem: the `fk.Problem`; or an `fk.Batch`, with `params` its `fk.BatchResult`: then a
            `BatchCovariance` of every member (the inverse Hessians, NaN where not positive
            definite; see `fitkit.batching.covariance_batch`).
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
        fixed: params held at their values (paths, leaves or elements such
            as `"wfe[0]"`); default: those the `FitResult` given as `params`
            held, and its params at a bound. They have zero variance (fixed)
            or an undefined error (at a bound: `std` is NaN there).
        progress: a bar of the blocks of the Hessian or Jacobian done, out of all, where
            the curvature takes several blocks (`True`; `None`: where a notebook or a
            terminal shows it; default `False`: most covariances take under a second). The
            blocks then run in about 20 compiled calls instead of one, the bar moving
            between them (see `fk.hessian`). `fk.analyse` passes its own `progress`.

    With bounds, ties or fixed params, the curvature is that of the free
    params, in their physical units; it is inverted there and propagated
    exactly to every param (`C = J C_free J^T`, `J` the Jacobian of the map
    from the free params to all params, ties included), so the errors are
    always those of the params as declared.

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
    from ..batching import Batch, covariance_batch

    if isinstance(problem, Batch):
        if (method, batch_size, max_memory, regularise, scale, fixed) != (
            "hessian",
            None,
            None,
            None,
            None,
            None,
        ):
            raise TypeError(
                "fk.covariance on a batch takes no options yet (it inverts each member's Hessian)"
            )
        return covariance_batch(problem, params)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if not (regularise is None or isinstance(regularise, (bool, int, float))) or (
        not isinstance(regularise, bool) and isinstance(regularise, (int, float)) and regularise < 0
    ):
        raise ValueError(f"regularise must be None, True, or a non-negative float, got {regularise!r}")
    _check_scale(problem, scale)
    at_limit = tuple(params.at_limit) if isinstance(params, FitResult) and fixed is None else ()
    fixed = inherited_fixed(params, fixed, at_limit=False)
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
    held = [*normalise_fixed(params, fixed), *at_limit]
    blocks = dict(batch_size=batch_size, max_memory=max_memory, devices=devices, progress=progress)
    if problem.bounds or problem.ties or held:
        return _free_covariance(problem, params, held, at_limit, method, regularise, scale, blocks)
    if method == "hessian":
        matrix = hessian(problem.nll, params, **blocks)
        spectrum, label, what = (
            spectrum_of_matrix(np.asarray(matrix), eps),
            "hessian",
            "the Hessian of the nll",
        )
    else:
        what = "the Fisher information"
        prior = prior_curvature(problem, params)
        rows = _prior_rows(None if prior is None else np.asarray(prior), eps)
        fits = 3 * problem.n_fisher * x.size * x.dtype.itemsize <= memory_budget(max_memory)
        if fits and rows is not None:
            jac = np.asarray(whitened_jacobian(problem, params, batch_size, max_memory, devices, progress))
            check_finite(jac, names, what)
            stacked = np.concatenate([jac, rows]) if rows.size else jac
            spectrum, label = spectrum_of_jacobian(stacked, eps), "fisher:svd"
        else:
            matrix = np.asarray(fisher(problem, params, **blocks))
            check_finite(matrix, names, what)
            spectrum, label = spectrum_of_matrix(matrix, eps), "fisher:matrix"
    matrix, dropped = invert(spectrum, names, what, regularise)
    _warn_for_dropped(dropped, what, 2)
    _, grad = _gradient(problem, params)
    _warn_if_not_at_minimum(grad, matrix, 2)
    factor = _factor(problem, params, scale, x.size)
    return Covariance(
        jnp.asarray(factor * matrix, dtype=x.dtype),
        params,
        _with_custom(problem, label),
        [d.text for d in dropped],
        scale=factor,
    )


def _factor(problem, params, scale, n_free: int) -> float:
    """The covariance scale: 1, the number given, or chi2 / (n_data - n_free) for "chi2r"."""
    if scale is None:
        return 1.0
    if scale != "chi2r":
        return float(scale)
    ddof = problem.n_data - n_free
    if ddof <= 0:
        raise ValueError(
            f"scale='chi2r' needs more used data points than free parameters: {problem.n_data} points - "
            f"{n_free} free params = ddof {ddof}; add data or fix some parameters"
        )
    return float(problem.chi2(params)) / ddof


def _warn_for_dropped(dropped, what, depth: int) -> None:
    if dropped:
        lines = "\n".join(f"  - {d.text}" for d in dropped)
        warnings.warn(
            f"the covariance is a pseudo-inverse of {what}: {len(dropped)} direction(s) were dropped "
            f"and carry no uncertainty:\n{lines}",
            stacklevel=depth + 1,
        )


@eqx.filter_jit
def _propagator(parametrisation, x, keep):
    """`d flat(T(x_free)) / d x_free`: identity rows for free params, zero for fixed, tie derivatives."""

    def full(free_values):
        completed = parametrisation.complete(x.at[keep].set(free_values))
        return parametrisation.layout.to_latent(completed)

    return jax.jacfwd(full)(x[keep])


def _free_covariance(problem, params, held, at_limit, method, regularise, scale, blocks):
    """The covariance of the free params, inverted in their physical units and propagated to all params.

    `blocks` are the options of `fk.hessian` / `fk.jacobian` (batch size, memory, devices, progress)."""
    from .._reduced import OnFlat
    from .._verdict import _value_and_grad

    parametrisation = problem.parametrisation(params, held or None, on_bound=True)
    x = parametrisation.flat(params)
    params = parametrisation.complete(x)
    keep = parametrisation.independent()
    names = [parametrisation.names[i] for i in keep]
    eps = float(jnp.finfo(x.dtype).eps)
    block = np.ix_(keep, keep)
    if method == "hessian":
        what, label = "the Hessian of the nll", "hessian"
        matrix = np.asarray(hessian(OnFlat(problem, parametrisation), x, **blocks))[block]
        check_finite(matrix, names, what)
        spectrum = spectrum_of_matrix(matrix, eps)
    else:
        what, label = "the Fisher information", "fisher:svd"
        if problem.n_fisher:
            jac = np.asarray(jacobian(OnFlat(problem, parametrisation, "fisher_root"), x, **blocks))[:, keep]
        else:  # only custom log-likelihoods: their curvature is all in hessian_terms
            jac = np.zeros((0, len(keep)))
        check_finite(jac, names, what)
        rows = np.zeros((0, len(keep)))
        if problem.has_hessian_terms:
            prior = np.asarray(hessian(OnFlat(problem, parametrisation, "hessian_terms"), x))[block]
            rows = _prior_rows(prior, eps)
            if rows is None:
                label, matrix = "fisher:matrix", jac.T @ jac + prior
        spectrum = (
            spectrum_of_matrix(matrix, eps)
            if label == "fisher:matrix"
            else spectrum_of_jacobian(np.concatenate([jac, rows]) if rows.size else jac, eps)
        )
    free_matrix, dropped = invert(spectrum, names, what, regularise)
    _warn_for_dropped(dropped, what, 3)
    _, grad = _value_and_grad(OnFlat(problem, parametrisation), x)
    _warn_if_not_at_minimum(np.asarray(grad)[keep], free_matrix, 3)
    factor = _factor(problem, params, scale, len(keep))
    propagate = np.asarray(_propagator(parametrisation, x, jnp.asarray(keep)), np.float64)
    matrix = propagate @ (factor * np.asarray(free_matrix, np.float64)) @ propagate.T
    return Covariance(
        jnp.asarray(matrix, dtype=x.dtype),
        params,
        _with_custom(problem, label),
        [d.text for d in dropped],
        scale=factor,
        fixed=tuple(n for n in parametrisation.fixed_names() if n not in at_limit),
        at_limit=tuple(at_limit),
        lower=parametrisation.lower,
        upper=parametrisation.upper,
    )


# Above this estimated distance to the minimum (nll units) the params are not at
# a mode: the error bars then describe the curvature of a point that is not the optimum.
MAX_EDM = 1e-3


def _warn_if_not_at_minimum(grad, matrix, depth: int) -> None:
    from ..solving._messages import ConvergenceWarning

    grad = np.asarray(grad, np.float64)
    edm = 0.5 * float(grad @ np.asarray(matrix, np.float64) @ grad)
    if not edm <= MAX_EDM:
        warnings.warn(
            f"fk.covariance: these params are not at a minimum (estimated distance to the minimum "
            f"edm = {edm:.3g} > {MAX_EDM:g} in nll units), so the error bars describe the curvature "
            "of a point that is not the optimum; solve first and pass a valid result",
            ConvergenceWarning,
            stacklevel=depth + 1,
        )


def _with_custom(problem, label: str) -> str:
    """The method's label, saying when custom log-likelihoods entered the Fisher information as their Hessian."""
    custom = label.startswith("fisher") and any(o.custom for o in problem.observations)
    return f"{label}+hessian(custom log_likelihood)" if custom else label


def _likelihood_name(problem) -> str:
    """The likelihood in words: the name the user gave when every observation uses it."""
    names = sorted(set(problem.families()))
    return (
        repr(problem.likelihood)
        if isinstance(problem.likelihood, str) and len(names) == 1
        else ", ".join(names)
    )


def _check_scale(problem, scale) -> None:
    """Check `scale` before any work: None, "chi2r" (normal likelihood only) or a positive number."""
    if scale is None:
        return
    if isinstance(scale, str):
        if scale != "chi2r":
            raise ValueError(f"unknown scale {scale!r}; give None, 'chi2r' or a positive number")
        if not problem.fixed_errors:
            raise ValueError(
                "scale='chi2r' rescales Gaussian errors of unknown size; this problem's likelihood is "
                f"{_likelihood_name(problem)}, whose variance is fixed by the model or fitted: leave "
                "scale=None"
            )
        return
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not (scale > 0 and np.isfinite(scale))
    ):
        raise ValueError(f"scale must be None, 'chi2r' or a positive finite number, got {scale!r}")
