"""`Stopper`: when to end a first-order fit, and which params to keep."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = ["Stopper", "StopperState"]


class StopperState(eqx.Module):
    """The stopper's memory during a fit (all arrays, so it lives on device).

    Attributes:
        reference: the loss that the next step must beat by the tolerance.
        best_loss: the lowest finite loss seen so far.
        best_step: the step at which `best_loss` was seen (-1 before any).
        wait: steps since the loss last improved by more than the tolerance.
        stopped: whether the patience ran out.
    """

    reference: Float[Array, ""]
    best_loss: Float[Array, ""]
    best_step: Int[Array, ""]
    wait: Int[Array, ""]
    stopped: Bool[Array, ""]


def _whole(value, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"Stopper {name} must be a whole number >= {minimum} (or None), got {value!r}")
    return int(value)


class Stopper(eqx.Module):
    """Early stopping for `fk.fit`: patience, tolerances, step limit, restore-best.

    A step *improves* the loss when `loss < reference - (atol + rtol * |reference|)`,
    where `reference` is the loss of the last improving step. The fit stops
    once `patience` steps in a row have not improved. Steps whose loss is not
    finite never improve.

    Args:
        max_steps: the most steps to take (or give `steps=` to `fit`).
        patience: how many steps in a row without improvement end the fit;
            `None` never stops early.
        atol: absolute improvement a step must make to count.
        rtol: improvement relative to `|reference|` a step must make to count.
        restore_best: return the params with the lowest loss seen (`True`),
            or the params after the last step (`False`).

    Raises:
        ValueError: a negative tolerance, or a step count that is not a
            positive whole number.

    Example:
        >>> fk.fit(prob, params, optax.adam(1e-2), steps=5000, stopper=fk.Stopper(patience=50, rtol=1e-6))
    """

    max_steps: int | None = eqx.field(default=None, static=True)
    patience: int | None = eqx.field(default=None, static=True)
    atol: float = eqx.field(default=0.0, static=True)
    rtol: float = eqx.field(default=0.0, static=True)
    restore_best: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _whole(self.max_steps, "max_steps", 1)
        _whole(self.patience, "patience", 1)
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"Stopper {name} must be a number >= 0, got {value!r}")

    def init(self, dtype=float) -> StopperState:
        """The state before the first step, with losses of `dtype`."""
        inf = jnp.asarray(jnp.inf, dtype)
        return StopperState(
            reference=inf,
            best_loss=inf,
            best_step=jnp.asarray(-1, jnp.int32),
            wait=jnp.asarray(0, jnp.int32),
            stopped=jnp.asarray(False),
        )

    def update(self, state: StopperState, step: Int[Array, ""], loss: Float[Array, ""]) -> StopperState:
        """The state after seeing `loss` at `step`; pure and jit-friendly.

        `state.stopped` turns True at the step that exhausts the patience; the
        new best params are the ones evaluated where `best_step == step`.
        """
        finite = jnp.isfinite(loss)
        margin = self.atol + self.rtol * jnp.abs(state.reference)
        improved = finite & ((loss < state.reference - margin) | jnp.isinf(state.reference))
        best = finite & (loss < state.best_loss)
        wait = jnp.where(improved, 0, state.wait + 1).astype(state.wait.dtype)
        stopped = state.stopped | (False if self.patience is None else wait >= self.patience)
        return StopperState(
            reference=jnp.where(improved, loss, state.reference),
            best_loss=jnp.where(best, loss, state.best_loss),
            best_step=jnp.where(best, step, state.best_step).astype(state.best_step.dtype),
            wait=wait,
            stopped=stopped,
        )

    def reason(self) -> str:
        """Why a fit stopped when the patience ran out, in words."""
        return (
            f"stopped after {self.patience} steps without improvement of the loss by more "
            f"than atol={self.atol:g}, rtol={self.rtol:g}"
        )
