"""Any stepper of the one loop, run on every member of a batch at once; each member stops on its own."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._loop import RUNNING, Step, Stepper

__all__ = ["BatchStepper", "DONE"]

# The batch's stop code: every member has stopped (each member's own code is in the state).
DONE = 1


def _hold(running, new, old):
    """`new` where the member is still running, `old` where it has stopped (leaves of any shape)."""

    def pick(a, b):
        if not eqx.is_array(a):
            return a
        return jnp.where(running.reshape(running.shape + (1,) * (a.ndim - 1)), a, b.astype(a.dtype))

    return jax.tree.map(pick, new, old)


def _finite_rows(loss, rows) -> jnp.ndarray:
    """Per member: its loss and every entry of its history row are finite."""
    leaves = [loss, *jax.tree.leaves(rows)]
    finite = [jnp.all(jnp.isfinite(x).reshape(x.shape[0], -1), axis=1) for x in leaves]
    return jnp.all(jnp.stack(finite), axis=0)


class BatchStepper(Stepper):
    """`inner` `vmap`ped over a leading batch axis of the iterate and of the args (the batched problem).

    A member whose own stepper has stopped stays exactly where it is (its iterate, state
    and best point), so its result is the one a single run would give. The loop stops when
    every member has; its history rows are batch summaries (members still running, the
    sum of the members' losses).

    Attributes:
        inner: the stepper of one member.
    """

    inner: Stepper

    def init(self, y0, args) -> dict[str, Any]:
        size = jax.tree.leaves(y0)[0].shape[0]
        first = lambda tree_: jax.tree.map(lambda x: x[0] if eqx.is_array(x) else x, tree_)  # noqa: E731
        dtype = self.inner.loss_dtype(first(y0), first(args))
        return {
            "inner": eqx.filter_vmap(self.inner.init)(y0, args),
            "code": jnp.zeros(size, jnp.int32),
            "steps": jnp.zeros(size, jnp.int32),
            "best": y0,
            "best_loss": jnp.full(size, jnp.inf, dtype),
            "nonfinite": jnp.zeros(size, jnp.int32),
        }

    def row_spec(self, y0, args) -> dict:
        dtype = jax.tree.leaves(y0)[0].dtype
        return {"running": jax.ShapeDtypeStruct((), dtype), "loss": jax.ShapeDtypeStruct((), dtype)}

    def step(self, y, state, args) -> Step:
        running = state["code"] == RUNNING
        out = eqx.filter_vmap(self.inner.step)(y, state["inner"], args)
        better = running & (out.loss < state["best_loss"])  # False for NaN
        code = jnp.where(running, jnp.asarray(out.code, jnp.int32), state["code"])
        new_state = {
            "inner": _hold(running, out.state, state["inner"]),
            "code": code,
            "steps": state["steps"] + running.astype(jnp.int32),
            "best": _hold(better, out.point, state["best"]),
            "best_loss": jnp.where(better, out.loss, state["best_loss"]),
            # Steps whose row (loss, gradient norm...) met a non-finite value: a fit skipping (or
            # zeroing) many is flagged, as one counts them in its history.
            "nonfinite": state["nonfinite"] + (running & ~_finite_rows(out.loss, out.row)).astype(jnp.int32),
        }
        y_new = _hold(running, out.y, y)
        dtype = state["best_loss"].dtype
        row = {
            "running": jnp.sum(code == RUNNING).astype(dtype),
            "loss": jnp.sum(jnp.where(jnp.isfinite(new_state["best_loss"]), new_state["best_loss"], 0.0)),
        }
        batch_code = jnp.where(jnp.any(code == RUNNING), RUNNING, DONE).astype(jnp.int32)
        return Step(y=y_new, state=new_state, point=y_new, loss=row["loss"], row=row, code=batch_code)
