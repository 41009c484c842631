"""Functions of a params pytree seen as functions of one flat vector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import tree

__all__ = ["flatten", "is_tracing"]


def is_tracing(params: Any) -> bool:
    """Whether `params` are being traced (inside `jit`, `vmap`, `grad`, ...)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params))


def flatten(
    f: Callable[[Any], Any], params: Any, checkpoint: bool = False, what: str = "f"
) -> tuple[Float[Array, " n"], Callable[[Float[Array, " n"]], Float[Array, " m"]], Callable]:
    """Flatten params and outputs: `f(params)` becomes `f_flat(x)` with `x = ravel(params)`.

    Args:
        f: a function of the params pytree returning an array or a pytree of arrays.
        params: the point; every leaf must be a floating-point array.
        checkpoint: wrap `f` in `jax.checkpoint`, trading recomputation for the
            memory of stored intermediates.
        what: how to call `f` in error messages.

    Returns:
        `(x, f_flat, unravel)`: the flat params, the flat function (its output
        raveled to 1-D) and the map from a flat vector back to params.

    Raises:
        TypeError: `f` is not callable, or a leaf of `params` is not a float array.
    """
    if not callable(f):
        raise TypeError(f"{what} must be a function of the params, got {type(f).__name__}")
    if not jax.tree.leaves(params):
        raise TypeError("params is empty: give a pytree (e.g. a dict) of float arrays")
    for path, leaf in zip(tree.leaf_paths(params), jax.tree.leaves(params)):
        if not eqx.is_array_like(leaf) or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"params leaf {path!r} is {type(leaf).__name__} of dtype {getattr(leaf, 'dtype', None)}; "
                "curvature needs float arrays (write 1.0, not 1)"
            )
    x, unravel = tree.ravel(params)

    def f_flat(z):
        return tree.ravel(f(unravel(z)))[0]

    return x, (jax.checkpoint(f_flat) if checkpoint else f_flat), unravel
