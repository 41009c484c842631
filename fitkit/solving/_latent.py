"""The latent vector a solver moves, and the map from it back to params.

Solvers work on one flat vector `u`; the objective is evaluated at
`latent.to_params(u)` and the start is `latent.to_latent(params)`. `Flat` is
the identity reparametrisation (the params raveled); anything else with
these two methods, such as a whitening `fk.Projection`, can take its place.
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
    """Ravel params into one vector and back, for a fixed structure, shapes and dtypes.

    Unlike the closure of `jax.flatten_util.ravel_pytree`, two `Flat`s built
    from params of the same structure compare and hash equal, so a compiled
    solve can be reused across calls; and building one does no array work.

    Example:
        >>> params = {"a": jnp.ones(2), "b": jnp.zeros(())}
        >>> flat = Flat.of(params)
        >>> u = flat.to_latent(params)
        >>> u.shape, flat.to_params(u)["a"].shape
        ((3,), (2,))
    """

    treedef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def of(cls, params: Any) -> Flat:
        """The map for params shaped like `params` (only their structure is read)."""
        leaves, treedef = jax.tree.flatten(params)
        shapes = tuple(tuple(jnp.shape(x)) for x in leaves)
        return cls(treedef, shapes, tuple(str(jnp.result_type(x)) for x in leaves))

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def to_latent(self, params: Any) -> Float[Array, " n"]:
        """The params raveled into one vector of their common dtype."""
        leaves = jax.tree.leaves(params)
        dtype = jnp.result_type(*self.dtypes)
        return jnp.concatenate([jnp.ravel(jnp.asarray(x, dtype)) for x in leaves])

    def to_params(self, u: Float[Array, " n"]) -> Any:
        """The params pytree holding the entries of `u`."""
        sizes = [math.prod(s) for s in self.shapes]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        leaves = [
            jnp.reshape(u[a:b], shape).astype(dtype)
            for a, b, shape, dtype in zip(offsets[:-1], offsets[1:], self.shapes, self.dtypes)
        ]
        return jax.tree.unflatten(self.treedef, leaves)
