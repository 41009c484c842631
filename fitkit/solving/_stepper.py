"""An optimistix minimiser or least-squares solver as a stepper of the one loop (`fitkit._loop`)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx

from .._loop import RUNNING, Step, Stepper
from ..parametrisation import Parametrisation
from ._observe import Observation, evaluations, holds_loss, inner_solver, inner_state, observe

__all__ = ["OptimistixStepper", "CONVERGED_CODE", "STALLED_CODE", "FAILED_CODE", "COLUMNS"]

CONVERGED_CODE, STALLED_CODE, FAILED_CODE = 1, 2, 3
COLUMNS = ("loss", "grad_norm", "dx_norm", "step_size", "accepted", "evals")
_OPTIONS: dict = {}
_TAGS: frozenset = frozenset()


class OptimistixStepper(Stepper):
    """One optimistix step per loop step, on `getattr(problem, objective)(latent.to_params(u))`.

    `args` is the `fk.Problem`. optimistix tests convergence on accepted steps
    only, so `stall` rejected trials in a row (a search that has shrunk the
    step far below the float precision) end the solve as converged ("stalled").

    Attributes:
        solver: the optimistix solver, used as given.
        latent: the map between params and the solver's vector (`to_params`/`to_latent`).
        objective: `"loss"`, `"nll"` or `"residuals"`.
        stall: rejected trials in a row that end the solve.
    """

    solver: Any
    latent: Any
    objective: str = eqx.field(static=True)
    stall: int = eqx.field(static=True)

    def _fn(self, u, problem):
        value = getattr(problem, self.objective)(self.latent.to_params(u))
        if isinstance(self.latent, Parametrisation):
            # Unit curvature for the params that are not free keeps Newton-type steps defined.
            if self.objective == "residuals":
                value = jnp.concatenate([value, self.latent.anchor_residuals(u)])
            else:
                scale = 1.0 if self.objective == "nll" else 2.0 / problem.n_data
                value = value + scale * self.latent.penalty(u)
        return value, None

    def _measure(self, state, y, problem) -> Observation:
        dtype = y.dtype
        if holds_loss(state):
            return observe(state, problem.n_data, dtype)
        value = self._fn(y, problem)[0]
        value = jnp.sum(jnp.square(value)) / problem.n_data if self.objective == "residuals" else value
        nan = jnp.asarray(jnp.nan, dtype)
        return Observation(jnp.asarray(value, dtype), nan, nan, jnp.asarray(-1, jnp.int32))

    def init(self, y0, problem):
        f_struct = jax.eval_shape(lambda: self._fn(y0, problem)[0])
        inner = self.solver.init(self._fn, y0, problem, _OPTIONS, f_struct, None, _TAGS)
        nan = jnp.asarray(jnp.nan, y0.dtype)
        return {
            "inner": inner,
            "accepted": jnp.asarray(0, jnp.int32),
            "since_accepted": jnp.asarray(0, jnp.int32),
            "last_step_size": nan,
            "extra_evals": jnp.asarray(0, jnp.int32),
            "steps": jnp.asarray(0, jnp.int32),
            "result": jnp.asarray(optx.RESULTS.successful._value, jnp.int32),
            "terminated": jnp.asarray(False),
        }

    def row_spec(self, y0, problem) -> dict:
        return {name: jax.ShapeDtypeStruct((), y0.dtype) for name in COLUMNS}

    def step(self, y, state, problem) -> Step:
        inner = state["inner"]
        y_new, inner, _ = self.solver.step(self._fn, y, problem, _OPTIONS, inner, _TAGS)
        terminate, result = self.solver.terminate(self._fn, y_new, problem, _OPTIONS, inner, _TAGS)
        result = optx.RESULTS.where(jnp.all(jnp.isfinite(y_new)), result, optx.RESULTS.nonfinite)
        steps = state["steps"] + 1
        seen = self._measure(inner, y_new, problem)
        if hasattr(inner_state(inner), "num_accepted_steps"):
            accepted = seen.accepted
        else:
            moved = jnp.any(y_new != y) | (steps == 1)
            accepted = state["accepted"] + moved.astype(jnp.int32)
        is_accepted = accepted > state["accepted"]
        extra_evals = state["extra_evals"] + (0 if holds_loss(inner) else 1)
        since = jnp.where(is_accepted, 0, state["since_accepted"] + 1)
        evals = evaluations(self.solver, inner, steps, accepted, y.size)
        first = next(iter(evals.values()), jnp.asarray(-1)) + extra_evals
        failed = result != optx.RESULTS.successful
        code = jnp.where(
            failed,
            FAILED_CODE,
            jnp.where(terminate, CONVERGED_CODE, jnp.where(since >= self.stall, STALLED_CODE, RUNNING)),
        )
        dtype = y.dtype
        row = {
            "loss": seen.loss,
            "grad_norm": seen.grad_norm,
            "dx_norm": jnp.linalg.norm(y_new - y),
            # the step size that produced the point evaluated in this step
            "step_size": state["last_step_size"],
            "accepted": is_accepted.astype(dtype),
            "evals": jnp.asarray(first, dtype),
        }
        state = {
            "inner": inner,
            "accepted": jnp.asarray(accepted, jnp.int32),
            "since_accepted": jnp.asarray(since, jnp.int32),
            "last_step_size": seen.step_size,
            "extra_evals": jnp.asarray(extra_evals, jnp.int32),
            "steps": steps,
            "result": jnp.asarray(result._value, jnp.int32),
            "terminated": jnp.asarray(terminate),
        }
        return Step(y=y_new, state=state, point=y_new, loss=seen.loss, row=row, code=code)

    def counts(self, state, y) -> dict[str, Any]:
        """The evaluation counters of the solve so far (host numbers)."""
        evals = evaluations(self.solver, state["inner"], state["steps"], state["accepted"], y.size)
        return {k: int(v) for k, v in evals.items()}

    @property
    def simplex(self) -> bool:
        return isinstance(inner_solver(self.solver), optx.NelderMead)
