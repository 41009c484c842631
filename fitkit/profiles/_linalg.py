"""The two matrix facts every search uses: a positive inverse of the Hessian and the Gaussian profile direction."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["positive_inverse", "gaussian_direction"]


def positive_inverse(hessian: Float[Array, "n n"], mask: Bool[Array, " n"]) -> Float[Array, "n n"]:
    """The inverse of the Hessian over `mask` (zero elsewhere), its eigenvalues made positive."""
    both = mask[:, None] & mask[None, :]
    block = jnp.where(both, hessian, 0.0) + jnp.diag(jnp.where(mask, 0.0, 1.0))
    eigenvalues, vectors = jnp.linalg.eigh(block)
    size = jnp.abs(eigenvalues)
    size = jnp.maximum(size, 1e-12 * jnp.max(size))
    return jnp.where(both, (vectors / size) @ vectors.T, 0.0)


def gaussian_direction(hessian, metric, d):
    """`d` with the inner coordinates moved as the conditional optimum moves for a Gaussian likelihood:
    `u = d - H_mm^-1 H_m. d` (`metric` is `positive_inverse(hessian, mask)`)."""
    return d - metric @ (hessian @ d)
