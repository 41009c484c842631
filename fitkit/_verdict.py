"""The verdict on a result: the estimated distance to the minimum (EDM) and whether to trust it."""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from . import tree
from ._flags import describe_flags, is_valid

__all__ = ["Verdict", "assess", "refine", "default_max_edm", "loss_at", "DENSE_LIMIT"]

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
        valid: no flags other than informational ones (`at_limit`).
        edm: `0.5 g^T H^-1 g` of `problem.nll` (NaN when it could not be computed).
        flags: names from `fitkit.FLAGS`.
        text: the verdict in words, for `FitResult.message`.
        value: `problem.nll` at the point.
        newton: the Newton step `-H^-1 g` on the flat free values (dense curvature only), or None.
    """

    valid: bool
    edm: float
    flags: tuple[str, ...]
    text: str
    value: float = float("nan")
    newton: Any = None


def default_max_edm(dtype) -> float:
    """The EDM tolerance: 1e-8 in float64 (a remaining distance of about 1.4e-4 standard
    deviations), 1e-4 in float32, whose gradients are only good to ~1e-7."""
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-4


@eqx.filter_jit
def loss_at(problem, params):
    """`problem.loss(params)`, compiled once per structure (engines report it on every result)."""
    return problem.loss(params)


@eqx.filter_jit
def _log_likelihood_at(problem, params):
    return problem.log_likelihood(params)


def comparison_numbers(problem, params, parametrisation=None) -> dict:
    """The `FitResult` fields for model comparison: log-likelihood, free params, data points."""
    n_free = tree.size(params) if parametrisation is None else len(parametrisation.independent())
    return {
        "log_likelihood": float(_log_likelihood_at(problem, params)),
        "n_free": int(n_free),
        "n_data": int(problem.n_data),
    }


@eqx.filter_jit
def _value_and_grad(f, point):
    x, unravel = tree.ravel(point)
    return jax.value_and_grad(lambda z: f(unravel(z)))(x)


def _gradient(problem, params):
    """The value and flat gradient of `problem.nll` at `params`."""
    return _value_and_grad(problem.nll, params)


def _hvp(f, point, mask):
    """Hessian-vector products of `f`; with a mask, the identity on the directions it leaves out."""
    x, unravel = tree.ravel(point)
    _, hvp = jax.linearize(jax.grad(lambda z: f(unravel(z))), x)
    if mask is None:
        return x, hvp
    return x, lambda v: jnp.where(mask, hvp(jnp.where(mask, v, 0.0)), v)


@eqx.filter_jit
def _newton_direction(f, point, grad, mask):
    x, hvp = _hvp(f, point, mask)
    operator = lx.FunctionLinearOperator(hvp, jax.eval_shape(lambda: x), lx.positive_semidefinite_tag)
    solver = lx.CG(rtol=CG_RTOL, atol=0.0, max_steps=CG_STEPS)
    solution = lx.linear_solve(operator, grad, solver, throw=False)
    return solution.value, hvp(solution.value)


@eqx.filter_jit
def _lanczos(f, point, mask, steps: int):
    """`steps` Lanczos steps (fully re-orthogonalised) on the Hessian from a fixed random start:
    the diagonal, the off-diagonal of the tridiagonal matrix whose eigenvalues (Ritz values)
    approach the Hessian's extreme eigenvalues first."""
    x, hvp = _hvp(f, point, mask)
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


def _edm_dense(f, point, grad, keep) -> tuple[float, bool, bool, Any]:
    from .curvature import hessian
    from .curvature._diagnose import spectrum_of_matrix

    matrix = np.asarray(hessian(f, point))
    if keep is not None:
        matrix, grad = matrix[np.ix_(keep, keep)], np.asarray(grad)[keep]
    if not np.all(np.isfinite(matrix)):
        return float("nan"), False, True, None  # non-finite curvature: judged as non-finite by `assess`
    eps = float(jnp.finfo(matrix.dtype).eps)
    spectrum = spectrum_of_matrix(matrix, eps)
    top = max(float(spectrum.values.max()), 0.0)
    positive = top > 0 and float(spectrum.values.min()) > spectrum.rtol * top
    # Solve in the diagonal-normalised eigenbasis: units cancel, and only the
    # directions with positive curvature are inverted.
    scaled = spectrum.vectors.T @ (spectrum.scale * np.asarray(grad, np.float64))
    keep = spectrum.values > spectrum.rtol * top
    edm = 0.5 * float(np.sum(scaled[keep] ** 2 / spectrum.values[keep]))
    step = -spectrum.scale * (spectrum.vectors[:, keep] @ (scaled[keep] / spectrum.values[keep]))
    return (edm if positive else float("inf")), positive, True, (step if positive else None)


def _edm_iterative(f, point, grad, keep) -> tuple[float, bool, bool, Any]:
    # Lanczos finds the extreme eigenvalues in a few dozen products, so a clear
    # saddle or maximum is caught; CG then gives g^T H^-1 g, whose iterates grow
    # towards the true value, so only a converged CG is an upper-bounded answer.
    mask = None
    if keep is not None:
        mask = np.zeros(np.size(grad), bool)
        mask[keep] = True
        grad = jnp.where(mask, grad, 0.0)
    steps = min(LANCZOS_STEPS, int(np.size(grad)))
    ritz = _ritz_values(*(np.asarray(a, np.float64) for a in _lanczos(f, point, mask, steps)))
    top = max(float(ritz.max()), 0.0)
    positive = top > 0 and float(ritz.min()) > -LANCZOS_RTOL * top
    if not positive:
        return float("inf"), False, True, None
    direction, curved = (np.asarray(a, np.float64) for a in _newton_direction(f, point, grad, mask))
    grad = np.asarray(grad, np.float64)
    edm = 0.5 * float(np.dot(grad, direction))
    residual = float(np.linalg.norm(curved - grad))
    converged = bool(np.isfinite(edm)) and residual <= CG_CHECK * float(np.linalg.norm(grad))
    if bool(np.isfinite(edm)) and float(np.dot(direction, curved)) <= 0:
        return float("inf"), False, True, None
    return edm, True, converged, None


def assess(
    problem,
    params: Any,
    engine_flags: tuple[str, ...] = (),
    *,
    max_edm: float | None = None,
    parametrisation: Any = None,
    at_limit: tuple[str, ...] = (),
) -> Verdict:
    """Judge `params` as a minimum of `problem.nll` and combine it with what the engine reported.

    With a `parametrisation`, the minimum is judged over the free params only
    (in their physical units), the others being held at their values or
    computed by their ties.

    Args:
        problem: the `fk.Problem` that was fitted.
        params: the result's params.
        engine_flags: flags the engine already raised (`"call_limit"`, `"solver_failed"`, ...).
        max_edm: the EDM tolerance (default `default_max_edm`).
        parametrisation: the `fk.Parametrisation` the engine worked through, if any.
        at_limit: flat names of params held at a bound (informational: flag `at_limit`).

    Returns:
        A `Verdict`; `valid` only when every flag is informational.
    """
    x, _ = tree.ravel(params)
    max_edm = default_max_edm(x.dtype) if max_edm is None else float(max_edm)
    flags = list(engine_flags)
    if parametrisation is None:
        objective, point, keep = problem.nll, params, None
    else:
        from ._reduced import OnFlat

        objective, point = OnFlat(problem, parametrisation), parametrisation.flat(params)
        keep = parametrisation.independent()
    value, grad = _value_and_grad(objective, point)
    finite = bool(np.isfinite(float(value))) and bool(np.all(np.isfinite(np.asarray(grad))))
    finite = finite and bool(np.all(np.isfinite(np.asarray(x))))
    edm, step = float("nan"), None
    if finite:
        size = x.size if keep is None else len(keep)
        edm, positive, converged, step = (_edm_dense if size <= DENSE_LIMIT else _edm_iterative)(
            objective, point, grad, keep
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
    if at_limit:
        flags.append("at_limit")
    flags = tuple(dict.fromkeys(flags))
    valid = is_valid(flags)
    if not valid:
        text = f"NOT VALID (edm={edm:.3g}, max_edm={max_edm:g}): {describe_flags(flags)}"
    else:
        text = f"Valid: edm={edm:.3g} <= max_edm={max_edm:g}, curvature positive definite."
    if at_limit:
        shown = ", ".join(at_limit[:6]) + (", ..." if len(at_limit) > 6 else "")
        text = f"{text} At a bound (held there; its error is one-sided, not a standard deviation): {shown}."
    return Verdict(valid, edm, flags, text, float(value), step)


# Below this EDM a result is at the minimum to the precision of float64 already.
POLISHED = 1e-24
# A refined point may have an nll this many ulps above the old one: the decrease a Newton step
# makes (the EDM, ~1e-15 here) is below the rounding of a sum over the data.
ROUNDING = 64.0


def refine(
    problem,
    params: Any,
    verdict: Verdict,
    engine_flags: tuple[str, ...] = (),
    *,
    max_edm: float | None = None,
    parametrisation: Any = None,
    at_limit: tuple[str, ...] = (),
) -> tuple[Any, Verdict]:
    """One Newton step from a valid result to the minimum, kept only where it is better.

    A solver stops on its step tolerance, somewhere within it of the minimum; the verdict's
    own Hessian and gradient give the Newton step `-H^-1 g`, which for a valid result (positive
    definite curvature, a small EDM) lands at the minimum to the float precision. Results
    from different routes to the same minimum (one fit, a batch, other devices) then agree to
    that precision rather than to the solver's tolerance. The step is kept only when the new
    point is valid, its nll is not higher and its EDM is lower, and it stays inside the bounds.

    Returns:
        `(params, verdict)`: the refined params and their verdict, or the given ones.
    """
    if not verdict.valid or verdict.newton is None or not verdict.edm > POLISHED:
        return params, verdict
    if parametrisation is None:
        x, unravel = tree.ravel(params)
        x_new = np.asarray(x, np.float64) + verdict.newton
    else:
        x = np.asarray(parametrisation.flat(params), np.float64)
        keep = parametrisation.independent()
        x_new = x.copy()
        x_new[keep] += verdict.newton
        lower, upper = np.asarray(parametrisation.lower), np.asarray(parametrisation.upper)
        if np.any((x_new[keep] <= lower[keep]) | (x_new[keep] >= upper[keep])):
            return params, verdict
    dtype = jnp.result_type(*jax.tree.leaves(params))
    x_new = jnp.asarray(x_new, dtype)
    candidate = unravel(x_new) if parametrisation is None else parametrisation.complete(x_new)
    better = assess(
        problem, candidate, engine_flags, max_edm=max_edm, parametrisation=parametrisation, at_limit=at_limit
    )
    rounding = ROUNDING * float(jnp.finfo(dtype).eps) * max(abs(verdict.value), 1.0)
    if better.valid and better.edm <= verdict.edm and better.value <= verdict.value + rounding:
        return candidate, better
    return params, verdict
