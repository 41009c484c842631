"""Three optimistix solvers that optimistix 0.1.0 lacks or gets wrong, built from its own parts.

- `Newton`: a minimiser with the exact Hessian in a trust region (optimistix's
  `Newton` is a root finder, and it has no exact-Hessian minimiser).
- `DampedGaussNewton`: Gauss-Newton with a backtracking line search; the plain
  `optx.GaussNewton` takes full steps and diverges from a poor start.
- `NelderMead`: `optx.NelderMead` with a correct initial simplex. In 0.1.0 the
  simplex it builds around an array leaf of size > 1 is degenerate (most vertices
  coincide with the start), so the search stalls far from the minimum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, PyTree, Scalar

__all__ = ["Newton", "DampedGaussNewton", "NelderMead"]


def _quiet(**_: Any) -> None:
    return None


class Newton(optx.AbstractQuasiNewton):
    """Newton's method on the exact Hessian, globalised by a trust region.

    Each accepted step computes the full Hessian with `jax.hessian` (cost grows
    as the square of the number of parameters), then takes the damped step
    `-(H + λI)⁻¹ g` with `λ` set by `optx.ClassicalTrustRegion`, so indefinite
    Hessians far from the minimum are handled. Suits small problems (up to a
    few hundred parameters) where the Hessian is cheap and steps are costly.

    Args:
        rtol, atol: the Cauchy convergence test of optimistix (both the step in
            parameters and the change in loss below `atol + rtol * |value|`).
        norm: norm of that test (`optx.max_norm` by default).

    Example:
        >>> optx.minimise(lambda y, _: jnp.sum((y - 1.0) ** 4), Newton(1e-8, 1e-8), jnp.zeros(3))
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar] = optx.max_norm
    use_inverse: bool = eqx.field(default=False, static=True)
    descent: optx.AbstractDescent = optx.DampedNewtonDescent(
        linear_solver=lx.AutoLinearSolver(well_posed=None)
    )
    search: optx.AbstractSearch = optx.ClassicalTrustRegion()
    verbose: Callable[..., None] = _quiet
    # The objective is only known inside `init`/`step`; it is bound there so
    # that `update_hessian`, whose signature has no `fn`, can differentiate it.
    objective: Callable | None = None

    def _hessian(self, y):
        hessian = jax.hessian(lambda x: self.objective(x)[0])(y)
        return lx.PyTreeLinearOperator(hessian, jax.eval_shape(lambda: y), lx.symmetric_tag)

    def init_hessian(self, y, f, grad):
        template = eqx.filter_eval_shape(self._hessian, y)
        hessian = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
        return optx.FunctionInfo.EvalGradHessian(f, grad, hessian), None

    def update_hessian(self, y, y_eval, f_info, f_eval_info, hessian_update_state):
        del y, f_info, hessian_update_state
        return optx.FunctionInfo.EvalGradHessian(f_eval_info.f, f_eval_info.grad, self._hessian(y_eval)), None

    def _bind(self, fn, args) -> Newton:
        return eqx.tree_at(lambda s: s.objective, self, lambda x: fn(x, args), is_leaf=lambda x: x is None)

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        bound = self._bind(fn, args)
        return optx.AbstractQuasiNewton.init(bound, fn, y, args, options, f_struct, aux_struct, tags)

    def step(self, fn, y, args, options, state, tags):
        return optx.AbstractQuasiNewton.step(self._bind(fn, args), fn, y, args, options, state, tags)


class DampedGaussNewton(optx.AbstractGaussNewton):
    """Gauss-Newton steps `-(JᵀJ)⁻¹Jᵀr` shortened by a backtracking Armijo line search.

    The line search keeps the cheap Gauss-Newton direction but never accepts
    a step that fails to decrease the sum of squares, so it converges from
    starts where plain Gauss-Newton diverges.

    Args:
        rtol, atol: the Cauchy convergence test on parameters and residuals.
        norm: norm of that test (`optx.max_norm` by default).
        linear_solver: lineax solver for the least-squares step (QR by default).

    Example:
        >>> optx.least_squares(lambda y, _: y**2 - 2.0, DampedGaussNewton(1e-8, 1e-8), jnp.ones(2))
    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar]
    descent: optx.NewtonDescent
    search: optx.BacktrackingArmijo
    verbose: Callable[..., None]

    def __init__(
        self,
        rtol: float,
        atol: float,
        norm: Callable[[PyTree], Scalar] = optx.max_norm,
        linear_solver: lx.AbstractLinearSolver | None = None,
    ):
        self.rtol = rtol
        self.atol = atol
        self.norm = norm
        self.descent = optx.NewtonDescent(linear_solver=lx.QR() if linear_solver is None else linear_solver)
        self.search = optx.BacktrackingArmijo()
        self.verbose = _quiet


def _simplex(y: Array, rdelta: float, adelta: float) -> Array:
    """Vertex 0 is `y`; vertex i moves parameter i-1 by `adelta + rdelta * |y|`."""
    flat = jnp.ravel(y)
    steps = jnp.diag(adelta + rdelta * jnp.abs(flat))
    return jnp.concatenate([flat[None], flat[None] + steps]).reshape((flat.size + 1,) + jnp.shape(y))


class NelderMead(optx.AbstractMinimiser):
    """`optx.NelderMead` started from a proper simplex around a flat parameter vector.

    Derivative-free: use it when gradients are unavailable or meaningless
    (noisy or piecewise-constant losses). Needs thousands of steps beyond a
    handful of parameters.

    Args:
        rtol, atol: the simplex has converged when every vertex is within
            `atol + rtol * |best|` of the best one and their losses agree to
            `atol + rtol * |best loss|`.
        norm: norm of that test.
        rdelta, adelta: vertex `i` moves parameter `i-1` by `adelta + rdelta * |value|`.

    Example:
        >>> optx.minimise(lambda y, _: jnp.sum((y - 1.0) ** 2), NelderMead(1e-8, 1e-8), jnp.zeros(3))
    """

    solver: optx.NelderMead

    def __init__(
        self,
        rtol: float,
        atol: float,
        norm: Callable[[PyTree], Scalar] = optx.max_norm,
        rdelta: float = 0.05,
        adelta: float = 2.5e-4,
    ):
        self.solver = optx.NelderMead(rtol, atol, norm=norm, rdelta=rdelta, adelta=adelta)

    @property
    def rtol(self):
        return self.solver.rtol

    @property
    def atol(self):
        return self.solver.atol

    @property
    def norm(self):
        return self.solver.norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        if not isinstance(y, jax.Array | jnp.ndarray) or jnp.ndim(y) != 1:
            raise TypeError("fitkit's NelderMead works on a flat parameter vector; ravel the params first")
        state = self.solver.init(fn, y, args, options, f_struct, aux_struct, tags)
        simplex = _simplex(y, self.solver.rdelta, self.solver.adelta).astype(jnp.result_type(y))
        return eqx.tree_at(lambda s: s.simplex, state, simplex)

    def step(self, fn, y, args, options, state, tags):
        return self.solver.step(fn, y, args, options, state, tags)

    def terminate(self, fn, y, args, options, state, tags):
        return self.solver.terminate(fn, y, args, options, state, tags)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.solver.postprocess(fn, y, aux, args, options, state, tags, result)
