"""What one step of an optimistix solver reveals: loss, gradient, step size, evaluations.

Optimistix keeps the loss and gradient of the last accepted point in its
solver states (`f_info`), so the log and history cost no extra evaluation of
the objective for the solvers fitkit names. Only for a solver whose state
holds no loss does the engine evaluate the objective once more per step.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Float, Int

from ._solvers import NelderMead, Newton

__all__ = [
    "Observation",
    "inner_state",
    "inner_solver",
    "holds_loss",
    "observe",
    "evaluations",
    "evaluation_names",
]

_NAN = float("nan")


class Observation(eqx.Module):
    """Per-step readings; NaN where the solver does not have the quantity."""

    loss: Float[Array, ""]
    grad_norm: Float[Array, ""]
    step_size: Float[Array, ""]
    accepted: Int[Array, ""]


def inner_state(state):
    """Unwrap `optx.BestSoFar*` states, which hold the wrapped solver's state in `.state`."""
    while hasattr(state, "best_y") and hasattr(state, "state"):
        state = state.state
    return state


def inner_solver(solver):
    while isinstance(solver, optx.BestSoFarMinimiser | optx.BestSoFarLeastSquares | NelderMead):
        solver = solver.solver
    return solver


def holds_loss(state) -> bool:
    """Whether `observe` can read the loss at the current point from `state`."""
    state = inner_state(state)
    info = getattr(state, "f_info", None)
    has_f = isinstance(info, optx.FunctionInfo.ResidualJac) or hasattr(info, "f")
    return has_f or hasattr(state, "f_simplex")


def observe(state, n_data: int, dtype) -> Observation:
    """Read the loss, gradient norm, step size and accepted-step count from a state.

    Args:
        state: the solver state after a step.
        n_data: number of residuals; least-squares solvers report the loss
            `|r|^2 / n_data` (the problem's `loss`), so every method logs the same quantity.
        dtype: floating dtype of the readings.
    """
    state = inner_state(state)
    nan = jnp.asarray(_NAN, dtype)
    info = getattr(state, "f_info", None)
    loss = grad_norm = nan
    if isinstance(info, optx.FunctionInfo.ResidualJac):
        loss = jnp.sum(jnp.square(info.residual)) / n_data
        # The gradient of |r|^2 / n is 2 J^T r / n: one transposed Jacobian product.
        grad_norm = 2.0 / n_data * jnp.linalg.norm(jnp.ravel(info.compute_grad()))
    elif hasattr(info, "f"):
        loss = info.f
        if hasattr(info, "grad"):
            grad_norm = jnp.linalg.norm(jnp.ravel(info.grad))
    elif hasattr(state, "f_simplex"):
        loss = state.best[0]
    step_size = getattr(getattr(state, "search_state", None), "step_size", nan)
    accepted = getattr(state, "num_accepted_steps", jnp.asarray(-1))
    return Observation(
        loss=jnp.asarray(loss, dtype),
        grad_norm=jnp.asarray(grad_norm, dtype),
        step_size=jnp.asarray(step_size, dtype),
        accepted=jnp.asarray(accepted, jnp.int32),
    )


def evaluation_names(solver) -> tuple[str, ...]:
    """The counters `evaluations` returns for this solver, in order."""
    base = inner_solver(solver)
    if isinstance(base, optx.NelderMead):
        return ("loss_evals",)
    if isinstance(base, optx.AbstractGaussNewton):
        return ("residual_evals", "jacobian_evals")
    if isinstance(base, Newton):
        return ("loss_evals", "grad_evals", "hessian_evals")
    if isinstance(base, optx.AbstractQuasiNewton | optx.AbstractGradientDescent):
        return ("loss_evals", "grad_evals")
    return ()


def evaluations(solver, state, steps, accepted, n_params: int) -> dict[str, Array]:
    """Objective, gradient, Hessian and Jacobian evaluations implied by the solver's algorithm.

    Each step of a line-search or trust-region solver evaluates the objective
    once at its trial point; gradients (and Newton's Hessian) are formed only
    at accepted points; least-squares solvers linearise the residuals at every
    trial point. Nelder-Mead evaluates its whole simplex at the start and on
    every shrink, and two trial vertices on every other step. Keys are
    `evaluation_names(solver)`, in that order.
    """
    names = evaluation_names(solver)
    if names == ("loss_evals",):
        shrinks = inner_state(state).stats.n_shrink
        counts = ((n_params + 1) * (1 + shrinks) + 2 * jnp.maximum(steps - 1, 0),)
    elif names == ("residual_evals", "jacobian_evals"):
        counts = (steps, steps)
    else:
        counts = (steps, accepted, accepted)[: len(names)]
    return {name: jnp.asarray(count) for name, count in zip(names, counts)}
