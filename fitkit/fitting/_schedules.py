"""`delay`: a learning rate that switches on after a number of steps."""

from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["delay"]


def delay(learning_rate: float | optax.Schedule, start: int, length: int = 1) -> optax.Schedule:
    """A learning rate that is exactly zero before step `start`, then ramps up.

    From step `start` it grows linearly to `learning_rate` over `length` steps
    (`length=1`: the full rate at step `start`). A parameter given this rate is
    therefore held exactly fixed for the first `start` steps, which lets other
    parameters settle first (the zodiax tutorial delays the Gaussians' `power`
    by 50 steps). Use it wherever optax takes a learning rate.

    Args:
        learning_rate: the rate after the ramp: a number, or an optax schedule,
            which is then called with the number of steps since `start`.
        start: the first step (counted from 0) with a non-zero rate.
        length: the number of steps the linear ramp takes.

    Returns:
        An optax schedule, `step -> rate`.

    Raises:
        ValueError: `start` is negative or `length` is not positive.

    Example:
        >>> optax.sgd(fk.delay(0.005, 50), momentum=0.5)
        >>> float(fk.delay(0.1, 2)(1)), float(fk.delay(0.1, 2)(2))
        (0.0, 0.1)
    """
    if int(start) != start or start < 0:
        raise ValueError(f"delay start must be a non-negative whole number of steps, got {start!r}")
    if int(length) != length or length < 1:
        raise ValueError(f"delay length must be a positive whole number of steps, got {length!r}")
    rate = learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate)

    def ramped(count):
        return rate(count) * jnp.clip((count + 1) / length, 0.0, 1.0)

    return optax.join_schedules([optax.constant_schedule(0.0), ramped], [int(start)])
