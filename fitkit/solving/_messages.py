"""Why a solve stopped, in words: which convergence test passed, or what went wrong."""

from __future__ import annotations

import optimistix as optx

__all__ = [
    "CONVERGED",
    "STALLED",
    "MAX_STEPS",
    "ConvergenceError",
    "ConvergenceWarning",
    "outcome",
    "stop_message",
]

CONVERGED = "converged"
STALLED = "stalled"
MAX_STEPS = "max_steps"

# optimistix/lineax RESULTS names, by how a user should read them.
_FAILURES = {
    "nonfinite": "the parameters became non-finite (NaN or inf): the loss or its gradient overflowed "
    "along the step. Start closer, check the model at these params, or work in float64",
    "nonlinear_divergence": "the solver diverged: the loss is not finite at its best point",
    "singular": "the linear solve for the step failed because the (approximate) Hessian or Jacobian "
    "is singular: some parameters may not be constrained by the data, or are degenerate with others",
    "breakdown": "the iterative linear solve inside the step broke down",
    "stagnation": "the iterative linear solve inside the step stagnated",
    "conlim": "the matrix of the step's linear solve is too ill-conditioned",
    "max_steps_reached": "the iterative linear solve inside the step ran out of iterations",
    "nonfinite_input": "the step's linear solve received non-finite values (NaN or inf) from the "
    "Hessian or Jacobian",
    "nonlinear_max_steps_reached": "an inner nonlinear solve ran out of steps",
}


class ConvergenceWarning(UserWarning):
    """`fk.solve` stopped without meeting its convergence test (`throw=False`)."""


class ConvergenceError(RuntimeError):
    """`fk.solve(..., throw=True)` stopped without meeting its convergence test.

    Attributes:
        result: the `FitResult` it would have returned (best params so far included).
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def outcome(code: int, terminated: bool, stalled: bool = False) -> str:
    """Name the stop: `CONVERGED`, `STALLED`, `MAX_STEPS`, or an optimistix/lineax failure name."""
    if code == int(optx.RESULTS.successful._value):
        if stalled:
            return STALLED
        return CONVERGED if terminated else MAX_STEPS
    for name in _FAILURES:
        item = getattr(optx.RESULTS, name, None)
        if item is not None and int(item._value) == code:
            return name
    return "unknown"


def _criterion(solver) -> str:
    from ._observe import inner_solver

    base = inner_solver(solver)
    if isinstance(base, optx.NelderMead):
        return (
            "every vertex of the simplex lies within atol + rtol*|best| of the best vertex and their "
            "losses agree to within atol + rtol*|best loss|"
        )
    if isinstance(base, optx.AbstractGaussNewton):
        return (
            "the last accepted step changed every parameter by less than atol + rtol*|parameter| "
            "and every residual by less than atol + rtol*|residual|"
        )
    if isinstance(base, optx.AbstractQuasiNewton | optx.AbstractGradientDescent):
        return (
            "the last accepted step changed every parameter by less than atol + rtol*|parameter| "
            "and the loss by less than atol + rtol*|loss|"
        )
    return f"the convergence test of {type(base).__name__} passed"


def stop_message(kind: str, solver, steps: int, max_steps: int, rtol, atol, stall: int = 20) -> str:
    """The final line of the log and `FitResult.message`.

    Args:
        kind: from `outcome`.
        solver: the optimistix solver (its family decides how convergence is described).
        steps: steps taken.
        max_steps: the step limit.
        rtol, atol: the tolerances (None for a solver instance: read from it).
    """
    rtol = getattr(solver, "rtol", None) if rtol is None else rtol
    atol = getattr(solver, "atol", None) if atol is None else atol
    tolerances = f"rtol={rtol:g}, atol={atol:g}" if rtol is not None and atol is not None else ""
    if kind == CONVERGED:
        return f"Converged after {steps} steps: {_criterion(solver)} ({tolerances})."
    if kind == STALLED:
        return (
            f"Converged after {steps} steps: the last {stall} trial steps found no lower loss, so the "
            "loss cannot be reduced further at this precision (check history['grad_norm'] is small)."
        )
    if kind == MAX_STEPS:
        return (
            f"Not converged: reached max_steps={max_steps} before {_criterion(solver)} ({tolerances}). "
            "Raise max_steps, loosen rtol/atol, or chain another solve from this result."
        )
    reason = _FAILURES.get(kind, "the solver reported an unknown failure")
    return f"Stopped at step {steps} without converging: {reason}."
