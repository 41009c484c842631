"""Memory-batched Jacobian from forward-mode Jacobian-vector products."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._cache import memo, structure_key
from ._blocks import (
    check_batch_size,
    chunked,
    linear_blocks,
    map_blocks,
    one_hot,
    plan_batch_size,
    rows_in_chunks,
)
from ._flat import flatten

__all__ = ["jacobian"]


@eqx.filter_jit
def _jacobian(f, params, batch_size: int, checkpoint: bool, devices: tuple | None) -> Float[Array, "m n"]:
    x, f_flat, _ = flatten(f, params, checkpoint)
    n = x.size
    # One linearisation: every JVP reuses the stored forward pass.
    _, jvp = jax.linearize(f_flat, x)
    columns = map_blocks(lambda idx: jax.vmap(jvp)(one_hot(idx, n, x.dtype)), n, batch_size, devices)
    return columns.T


@eqx.filter_jit
def _jacobian_columns(f, params, idx, checkpoint: bool):
    """The Jacobian columns of the indices `idx` (`(k, b)`), as rows; an index `>= n` gives zeros."""
    x, f_flat, _ = flatten(f, params, checkpoint)
    n = x.size
    _, jvp = jax.linearize(f_flat, x)
    columns = jax.lax.map(lambda block: jax.vmap(jvp)(one_hot(block, n, x.dtype)), idx)
    return columns.reshape(-1, columns.shape[-1])


def jacobian(
    f: Callable[[Any], Any],
    params: Any,
    *,
    batch_size: int | None = None,
    max_memory: int | float | None = None,
    checkpoint: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool | None = False,
) -> Float[Array, "m n"]:
    """The Jacobian of a function of a params pytree, built in memory-bounded column blocks.

    Columns are forward-mode JVPs from one `jax.linearize`, `vmap`ped over blocks
    of `batch_size` one-hot vectors that run one after another with `lax.map`
    (spread over devices when several are visible). Works under `jax.jit`.

    Args:
        f: function of the params returning an array or a pytree of arrays
            (raveled to a vector of length m), e.g. `problem.residuals`.
        params: the point: any pytree of float arrays.
        batch_size: columns per block (need not divide n); `None` picks the
            largest block that fits `max_memory` from the compiled cost of one block.
        max_memory: memory budget in bytes for `batch_size=None`.
        checkpoint: wrap `f` in `jax.checkpoint` to store fewer intermediates.
        devices: devices to spread the blocks over (default: all).
        progress: a bar of the blocks of columns done (as for `fk.hessian`).

    Returns:
        The `(m, n)` matrix: rows follow the raveled output, columns the
        `fitkit.tree.ravel` order of params.

    Raises:
        TypeError: `f` does not return float arrays, or params are not float arrays.
        ValueError: `batch_size < 1` or a non-positive `max_memory`.

    Example:
        >>> J = fk.jacobian(problem.residuals, params, batch_size=16)
        >>> J.shape == (problem.n_data, fk.tree.size(params))
        True
    """
    x, f_flat, _ = flatten(f, params, checkpoint, what="the function given to fk.jacobian")
    n = x.size
    structure = (f, params, checkpoint)
    out = memo("output shapes", structure_key("jacobian", *structure), lambda: jax.eval_shape(f_flat, x))
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"fk.jacobian needs a function returning real float arrays; it returned {out.dtype}")
    batch_size = check_batch_size(batch_size, n)
    if batch_size is None:
        fixed = 2 * out.size * n * x.dtype.itemsize  # the columns and their transpose
        batch_size = plan_batch_size(linear_blocks(f_flat, n), x, n, max_memory, fixed, devices, structure)
    if chunked(progress, n, batch_size, devices, params):
        columns = rows_in_chunks(
            lambda idx: _jacobian_columns(f, params, idx, checkpoint), n, batch_size, progress, "jacobian"
        )
        return jnp.asarray(columns.T)
    return _jacobian(f, params, batch_size, checkpoint, tuple(devices) if devices is not None else None)
