"""The latent vector a solver moves, and the map from it back to params.

Solvers work on one flat vector `u`; the objective is evaluated at
`to_params(u)`. `Flat` is the identity reparametrisation (the params
raveled); anything else with the same call signature, such as a whitening
projection, can take its place.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["Flat"]


class Flat(eqx.Module):
    """Map a flat vector back to a params pytree of fixed structure, shapes and dtypes.

    Unlike the closure of `jax.flatten_util.ravel_pytree`, two `Flat`s built
    from params of the same structure compare and hash equal, so a compiled
    solve can be reused across calls.

    Example:
        >>> u, to_params = Flat.of({"a": jnp.ones(2), "b": jnp.zeros(())})
        >>> to_params(u)["a"].shape, u.shape
        ((2,), (3,))
    """

    treedef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def of(cls, params: Any) -> tuple[Float[Array, " n"], Flat]:
        """`(u, flat)`: the params raveled into one vector (their common dtype) and the inverse map."""
        leaves, treedef = jax.tree.flatten(params)
        dtype = jnp.result_type(*leaves)
        u = jnp.concatenate([jnp.ravel(jnp.asarray(x, dtype)) for x in leaves])
        shapes = tuple(tuple(jnp.shape(x)) for x in leaves)
        return u, cls(treedef, shapes, tuple(str(jnp.result_type(x)) for x in leaves))

    def __call__(self, u: Float[Array, " n"]) -> Any:
        sizes = [math.prod(s) for s in self.shapes]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        leaves = [
            jnp.reshape(u[a:b], shape).astype(dtype)
            for a, b, shape, dtype in zip(offsets[:-1], offsets[1:], self.shapes, self.dtypes)
        ]
        return jax.tree.unflatten(self.treedef, leaves)
