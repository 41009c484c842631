"""The verdict on a result: the estimated distance to the minimum (EDM) and whether to trust it."""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from . import tree
from ._flags import describe_flags

__all__ = ["Verdict", "assess", "default_max_edm", "DENSE_LIMIT"]

# Up to this many params the curvature is a dense Hessian (eigenvalues give an
# exact positive-definiteness test); above it, conjugate gradients on
# Hessian-vector products estimate the EDM without forming the matrix.
DENSE_LIMIT = 2000
CG_STEPS = 50


class Verdict(NamedTuple):
    """Whether a result is a trustworthy minimum.

    Attributes:
        valid: no flags.
        edm: `0.5 g^T H^-1 g` of `problem.nll` (NaN when it could not be computed).
        flags: names from `fitkit.FLAGS`.
        text: the verdict in words, for `FitResult.message`.
    """

    valid: bool
    edm: float
    flags: tuple[str, ...]
    text: str


def default_max_edm(dtype) -> float:
    """The EDM tolerance: 1e-8 in float64 (a remaining distance of about 1.4e-4 standard
    deviations), 1e-4 in float32, whose gradients are only good to ~1e-7."""
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-4


@eqx.filter_jit
def _gradient(problem, params):
    x, unravel = tree.ravel(params)
    value, grad = jax.value_and_grad(lambda z: problem.nll(unravel(z)))(x)
    return value, grad


@eqx.filter_jit
def _newton_direction(problem, params, grad):
    x, unravel = tree.ravel(params)
    _, hvp = jax.linearize(jax.grad(lambda z: problem.nll(unravel(z))), x)
    operator = lx.FunctionLinearOperator(hvp, jax.eval_shape(lambda: x), lx.positive_semidefinite_tag)
    solution = lx.linear_solve(operator, grad, lx.CG(rtol=1e-10, atol=0.0, max_steps=CG_STEPS), throw=False)
    return solution.value, hvp(solution.value)


def _edm_dense(problem, params, grad) -> tuple[float, bool]:
    from .curvature import hessian
    from .curvature._diagnose import spectrum_of_matrix

    matrix = np.asarray(hessian(problem.nll, params))
    if not np.all(np.isfinite(matrix)):
        return float("nan"), False  # non-finite curvature: judged as non-finite by `assess`
    eps = float(jnp.finfo(matrix.dtype).eps)
    spectrum = spectrum_of_matrix(matrix, eps)
    top = max(float(spectrum.values.max()), 0.0)
    positive = top > 0 and float(spectrum.values.min()) > spectrum.rtol * top
    # Solve in the diagonal-normalised eigenbasis: units cancel, and only the
    # directions with positive curvature are inverted.
    scaled = spectrum.vectors.T @ (spectrum.scale * np.asarray(grad, np.float64))
    keep = spectrum.values > spectrum.rtol * top
    edm = 0.5 * float(np.sum(scaled[keep] ** 2 / spectrum.values[keep]))
    return (edm if positive else float("inf")), positive


def _edm_iterative(problem, params, grad) -> tuple[float, bool]:
    direction, curved = _newton_direction(problem, params, grad)
    direction, curved = np.asarray(direction), np.asarray(curved)
    edm = 0.5 * float(np.dot(np.asarray(grad), direction))
    positive = bool(np.isfinite(edm)) and float(np.dot(direction, curved)) > 0
    return edm, positive


def assess(
    problem, params: Any, engine_flags: tuple[str, ...] = (), *, max_edm: float | None = None
) -> Verdict:
    """Judge `params` as a minimum of `problem.nll` and combine it with what the engine reported.

    Args:
        problem: the `fk.Problem` that was fitted.
        params: the result's params.
        engine_flags: flags the engine already raised (`"call_limit"`, `"solver_failed"`, ...).
        max_edm: the EDM tolerance (default `default_max_edm`).

    Returns:
        A `Verdict`; `valid` only when there are no flags at all.
    """
    x, _ = tree.ravel(params)
    max_edm = default_max_edm(x.dtype) if max_edm is None else float(max_edm)
    flags = list(engine_flags)
    value, grad = _gradient(problem, params)
    finite = bool(np.isfinite(float(value))) and bool(np.all(np.isfinite(np.asarray(grad))))
    finite = finite and bool(np.all(np.isfinite(np.asarray(x))))
    edm = float("nan")
    if finite:
        edm, positive = (_edm_dense if x.size <= DENSE_LIMIT else _edm_iterative)(problem, params, grad)
        if np.isnan(edm):
            flags.append("non_finite")
        elif not positive:
            flags.append("curvature_not_positive_definite")
        elif not edm <= max_edm:
            flags.append("above_max_edm")
    else:
        flags.append("non_finite")
    flags = tuple(dict.fromkeys(flags))
    if flags:
        text = f"NOT VALID (edm={edm:.3g}, max_edm={max_edm:g}): {describe_flags(flags)}"
    else:
        text = f"Valid: edm={edm:.3g} <= max_edm={max_edm:g}, curvature positive definite."
    return Verdict(not flags, edm, flags, text)
