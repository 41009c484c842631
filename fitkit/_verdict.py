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

__all__ = ["Verdict", "assess", "default_max_edm", "loss_at", "DENSE_LIMIT"]

# Up to this many params the curvature is a dense Hessian (eigenvalues give an
# exact positive-definiteness test); above it, Lanczos on Hessian-vector
# products tests the extreme eigenvalues and conjugate gradients estimate the
# EDM, without forming the matrix.
DENSE_LIMIT = 2000
CG_STEPS = 200
CG_RTOL = 1e-8
CG_CHECK = 1e-4  # relative residual of the Newton direction below which the CG edm is trusted
LANCZOS_STEPS = 40
LANCZOS_RTOL = 1e-10  # Ritz values below -LANCZOS_RTOL * largest mark a saddle or a maximum


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
def loss_at(problem, params):
    """`problem.loss(params)`, compiled once per structure (engines report it on every result)."""
    return problem.loss(params)


@eqx.filter_jit
def _gradient(problem, params):
    x, unravel = tree.ravel(params)
    value, grad = jax.value_and_grad(lambda z: problem.nll(unravel(z)))(x)
    return value, grad


def _hvp(problem, params):
    x, unravel = tree.ravel(params)
    _, hvp = jax.linearize(jax.grad(lambda z: problem.nll(unravel(z))), x)
    return x, hvp


@eqx.filter_jit
def _newton_direction(problem, params, grad):
    x, hvp = _hvp(problem, params)
    operator = lx.FunctionLinearOperator(hvp, jax.eval_shape(lambda: x), lx.positive_semidefinite_tag)
    solver = lx.CG(rtol=CG_RTOL, atol=0.0, max_steps=CG_STEPS)
    solution = lx.linear_solve(operator, grad, solver, throw=False)
    return solution.value, hvp(solution.value)


@eqx.filter_jit
def _lanczos(problem, params, steps: int):
    """`steps` Lanczos steps (fully re-orthogonalised) on the Hessian from a fixed random start:
    the diagonal, the off-diagonal of the tridiagonal matrix whose eigenvalues (Ritz values)
    approach the Hessian's extreme eigenvalues first."""
    x, hvp = _hvp(problem, params)
    start = jax.random.normal(jax.random.key(0), x.shape, x.dtype)
    basis = jnp.zeros((steps + 1, x.size), x.dtype).at[0].set(start / jnp.linalg.norm(start))

    def step(j, carry):
        basis, alpha, beta = carry
        w = hvp(basis[j])
        alpha = alpha.at[j].set(jnp.dot(basis[j], w))
        for _ in range(2):  # twice is enough to keep the basis orthogonal in floating point
            w = w - basis.T @ (basis @ w)
        norm = jnp.linalg.norm(w)
        beta = beta.at[j].set(norm)
        basis = basis.at[j + 1].set(jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1.0), 0.0))
        return basis, alpha, beta

    zeros = jnp.zeros(steps, x.dtype)
    _, alpha, beta = jax.lax.fori_loop(0, steps, step, (basis, zeros, zeros))
    return alpha, beta


def _ritz_values(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The eigenvalues of the tridiagonal matrix, up to the first breakdown (an invariant subspace)."""
    scale = max(float(np.max(np.abs(alpha))), 1e-300)
    size = len(alpha)
    for j, b in enumerate(beta[:-1]):
        if b <= 1e-12 * scale:
            size = j + 1
            break
    tridiagonal = np.diag(alpha[:size]) + np.diag(beta[: size - 1], 1) + np.diag(beta[: size - 1], -1)
    return np.linalg.eigvalsh(tridiagonal)


def _edm_dense(problem, params, grad) -> tuple[float, bool, bool]:
    from .curvature import hessian
    from .curvature._diagnose import spectrum_of_matrix

    matrix = np.asarray(hessian(problem.nll, params))
    if not np.all(np.isfinite(matrix)):
        return float("nan"), False, True  # non-finite curvature: judged as non-finite by `assess`
    eps = float(jnp.finfo(matrix.dtype).eps)
    spectrum = spectrum_of_matrix(matrix, eps)
    top = max(float(spectrum.values.max()), 0.0)
    positive = top > 0 and float(spectrum.values.min()) > spectrum.rtol * top
    # Solve in the diagonal-normalised eigenbasis: units cancel, and only the
    # directions with positive curvature are inverted.
    scaled = spectrum.vectors.T @ (spectrum.scale * np.asarray(grad, np.float64))
    keep = spectrum.values > spectrum.rtol * top
    edm = 0.5 * float(np.sum(scaled[keep] ** 2 / spectrum.values[keep]))
    return (edm if positive else float("inf")), positive, True


def _edm_iterative(problem, params, grad) -> tuple[float, bool, bool]:
    # Lanczos finds the extreme eigenvalues in a few dozen products, so a clear
    # saddle or maximum is caught; CG then gives g^T H^-1 g, whose iterates grow
    # towards the true value, so only a converged CG is an upper-bounded answer.
    steps = min(LANCZOS_STEPS, int(np.size(grad)))
    ritz = _ritz_values(*(np.asarray(a, np.float64) for a in _lanczos(problem, params, steps)))
    top = max(float(ritz.max()), 0.0)
    positive = top > 0 and float(ritz.min()) > -LANCZOS_RTOL * top
    if not positive:
        return float("inf"), False, True
    direction, curved = (np.asarray(a, np.float64) for a in _newton_direction(problem, params, grad))
    grad = np.asarray(grad, np.float64)
    edm = 0.5 * float(np.dot(grad, direction))
    residual = float(np.linalg.norm(curved - grad))
    converged = bool(np.isfinite(edm)) and residual <= CG_CHECK * float(np.linalg.norm(grad))
    if bool(np.isfinite(edm)) and float(np.dot(direction, curved)) <= 0:
        return float("inf"), False, True
    return edm, True, converged


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
        edm, positive, converged = (_edm_dense if x.size <= DENSE_LIMIT else _edm_iterative)(
            problem, params, grad
        )
        if np.isnan(edm):
            flags.append("non_finite")
        elif not positive:
            flags.append("curvature_not_positive_definite")
        elif not converged:
            flags.append("edm_not_converged")
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
