"""Mini-batches of observations, reshuffled every epoch."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["EpochBatches"]


class EpochBatches(eqx.Module):
    """Which observations each step uses: every one exactly once per epoch.

    Each epoch is a fresh random permutation of the observations, cut into
    `steps_per_epoch = ceil(n / batch_size)` batches. When `batch_size` does
    not divide `n`, the last batch of an epoch is topped up with repeated
    observations of weight zero, so shapes stay fixed under `jit`.

    Args:
        n: the number of observations.
        batch_size: observations per step, `1 <= batch_size <= n`.
        key: the random key; epoch `e` is shuffled with `fold_in(key, e)`.

    Example:
        >>> batches = EpochBatches(10, 4, jr.key(0))
        >>> indices, weights = batches(jnp.asarray(2))  # the third step: 2 new ones + 2 of weight 0
    """

    n: int = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)
    key: PRNGKeyArray

    def __check_init__(self):
        if isinstance(self.batch_size, bool) or int(self.batch_size) != self.batch_size:
            raise TypeError(f"batch_size must be a whole number, got {self.batch_size!r}")
        if not 1 <= self.batch_size <= self.n:
            raise ValueError(
                f"batch_size={self.batch_size} must be between 1 and the number of observations ({self.n})"
            )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __call__(self, step: Int[Array, ""]) -> tuple[Int[Array, " b"], Float[Array, " b"]]:
        """`(indices, weights)` of the observations used at `step`."""
        epoch, position = jnp.divmod(step, self.steps_per_epoch)
        order = jr.permutation(jr.fold_in(self.key, epoch), self.n)
        padded = self.steps_per_epoch * self.batch_size
        order = jnp.concatenate([order, order[: padded - self.n]])
        weights = (jnp.arange(padded) < self.n).astype(jnp.result_type(float))
        start = position * self.batch_size
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, self.batch_size)  # noqa: E731
        return take(order), take(weights)
