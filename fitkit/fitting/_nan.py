"""What to do when a step's loss or gradients are not finite."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

__all__ = ["NAN_POLICIES", "NonFiniteError", "nonfinite_leaves", "zero_nonfinite", "nonfinite_message"]

NAN_POLICIES = ("raise", "skip", "zero")


class NonFiniteError(ValueError, FloatingPointError):
    """A fit met a non-finite loss or gradient under `nan="raise"`.

    Attributes:
        result: the `FitResult` of the steps done before it (the best params
            so far and the history), flagged `non_finite` and not valid.
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


def nonfinite_leaves(grads: Any, trainable: list[bool]) -> Bool[Array, " leaves"]:
    """One flag per leaf of `grads`: True where a trained leaf holds a NaN or infinity."""
    flags = [
        jnp.logical_and(train, ~jnp.all(jnp.isfinite(g)))
        for g, train in zip(jax.tree.leaves(grads), trainable)
    ]
    return jnp.stack(flags) if flags else jnp.zeros((0,), bool)


def zero_nonfinite(grads: Any) -> Any:
    """`grads` with every NaN or infinite entry set to zero."""
    return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, jnp.zeros_like(g)), grads)


def nonfinite_message(step: int, loss_finite: bool, bad_paths: list[str]) -> str:
    """The error message of `nan="raise"`, naming the step and the offending params."""
    if bad_paths:
        what = f"the gradient of the loss is not finite for {', '.join(bad_paths)}"
    else:
        what = "the loss is not finite"
    loss = "" if loss_finite or not bad_paths else " (the loss is not finite either)"
    return (
        f"at step {step} {what}{loss}. The params were left as they were before this step. "
        "Lower the learning rate, check the model at these params, or pass nan='skip' "
        "(skip such steps) or nan='zero' (zero the non-finite gradients)"
    )
