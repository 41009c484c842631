"""Memory-batched Hessian from forward-over-reverse Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._cache import memo, structure_key
from .._config import warn_if_float32
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

__all__ = ["hessian"]


def _scalar(f_flat: Callable) -> Callable:
    return lambda z: f_flat(z)[0]


@eqx.filter_jit
def _hessian(f, params, batch_size: int, checkpoint: bool, devices: tuple | None) -> Float[Array, "n n"]:
    # f and params (not a fresh flat closure) are the jit arguments, so that a bound
    # method such as problem.nll hits the compilation cache on the next call.
    x, f_flat, _ = flatten(f, params, checkpoint)
    n = x.size
    # One linearisation of the gradient: each Hessian-vector product then reuses
    # the stored forward and backward passes instead of recomputing them.
    _, hvp = jax.linearize(jax.grad(_scalar(f_flat)), x)
    rows = map_blocks(lambda idx: jax.vmap(hvp)(one_hot(idx, n, x.dtype)), n, batch_size, devices)
    return 0.5 * (rows + rows.T)


@eqx.filter_jit
def _hessian_rows(f, params, idx, checkpoint: bool):
    """The Hessian rows of the indices `idx` (`(k, b)`, one block per row of it; `>= n` gives zeros)."""
    x, f_flat, _ = flatten(f, params, checkpoint)
    n = x.size
    _, hvp = jax.linearize(jax.grad(_scalar(f_flat)), x)
    rows = jax.lax.map(lambda block: jax.vmap(hvp)(one_hot(block, n, x.dtype)), idx)
    return rows.reshape(-1, n)


def hessian(
    f: Callable[[Any], Float[Array, ""]],
    params: Any,
    *,
    batch_size: int | None = None,
    max_memory: int | float | None = None,
    checkpoint: bool = False,
    devices: Sequence[jax.Device] | None = None,
    progress: bool | None = False,
) -> Float[Array, "n n"]:
    """The Hessian of a scalar function of a params pytree, built in memory-bounded column blocks.

    Each column is a Hessian-vector product (forward-mode JVP of the reverse-mode
    gradient, from one `jax.linearize`); blocks of `batch_size` columns are
    `vmap`ped and run one after another with `lax.map`, so peak memory grows with
    `batch_size` rather than with the number of parameters. With several devices
    visible the blocks are spread over them (one mesh axis over the block index).
    The result is symmetrised. Works under `jax.jit`.

    Args:
        f: scalar function of the params, e.g. `problem.nll` (the summed negative
            log-likelihood: the Hessian of a *mean* loss gives wrong error bars).
        params: the point: any pytree of float arrays (dict, tuple, equinox module).
        batch_size: columns per block (need not divide n). `None`: the largest
            block whose compiled working memory fits `max_memory`.
        max_memory: memory budget in bytes for `batch_size=None` (default: a
            quarter of the device memory, or 2 GiB where the device does not say).
        checkpoint: wrap `f` in `jax.checkpoint` to store fewer intermediates
            at the cost of recomputing them.
        devices: devices to spread the blocks over (default: all devices of the
            default backend; give one device to turn sharding off).
        progress: a bar of the blocks done out of all (`True`; `None`: where a notebook or a
            terminal shows it). With a bar and several blocks on one device, the blocks run
            in about 20 compiled calls (one more linearisation each) and gather on the host;
            under `jit` or over several devices there is no bar.

    Returns:
        The `(n, n)` matrix in `fitkit.tree.ravel` order (names: `fitkit.tree.names(params)`).

    Raises:
        TypeError: `f` does not return a real scalar, or params are not float arrays.
        ValueError: `batch_size < 1` or a non-positive `max_memory`.

    Example:
        >>> H = fk.hessian(problem.nll, params, batch_size=64)
        >>> H.shape == (fk.tree.size(params),) * 2
        True
    """
    x, f_flat, _ = flatten(f, params, checkpoint, what="the function given to fk.hessian")
    n = x.size
    structure = (f, params, checkpoint)
    out = memo("output shapes", structure_key("hessian", *structure), lambda: jax.eval_shape(f_flat, x))
    if out.shape != (1,) or not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"fk.hessian needs a function returning a real scalar (e.g. problem.nll); it returned "
            f"{out.dtype}{list(out.shape)} after raveling"
        )
    warn_if_float32(x.dtype, "The Hessian")
    batch_size = check_batch_size(batch_size, n)
    if batch_size is None:
        # The map output and its symmetrised copy live beside the block.
        fixed = 2 * n * n * x.dtype.itemsize
        batch_size = plan_batch_size(
            linear_blocks(jax.grad(_scalar(f_flat)), n), x, n, max_memory, fixed, devices, structure
        )
    if chunked(progress, n, batch_size, devices, params):
        rows = rows_in_chunks(
            lambda idx: _hessian_rows(f, params, idx, checkpoint), n, batch_size, progress, "hessian"
        )
        return jnp.asarray(0.5 * (rows + rows.T))
    return _hessian(f, params, batch_size, checkpoint, tuple(devices) if devices is not None else None)
