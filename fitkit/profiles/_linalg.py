"""The two matrix facts every search uses: a positive inverse of the Hessian and the Gaussian profile direction."""

from __future__ import annotations

from jaxtyping import Array, Bool, Float

__all__ = ["positive_inverse", "gaussian_direction"]


def positive_inverse(
    xp, hessian: Float[Array, "*b n n"], mask: Bool[Array, "*b n"]
) -> Float[Array, "*b n n"]:
    """The inverse of the Hessian over `mask` (zero elsewhere), its eigenvalues made positive;
    batched over leading axes. `xp` is `numpy` or `jax.numpy`."""
    both = mask[..., :, None] & mask[..., None, :]
    n = mask.shape[-1]
    block = xp.where(both, hessian, 0.0) + xp.eye(n) * xp.where(mask, 0.0, 1.0)[..., None, :]
    eigenvalues, vectors = xp.linalg.eigh(block)
    size = xp.abs(eigenvalues)
    size = xp.maximum(size, 1e-12 * xp.max(size, axis=-1, keepdims=True))
    inverse = (vectors / size[..., None, :]) @ xp.swapaxes(vectors, -1, -2)
    return xp.where(both, inverse, 0.0)


def gaussian_direction(
    xp, hessian: Float[Array, "n n"], metric: Float[Array, "m n n"], d: Float[Array, "m n"]
):
    """`d` with the inner coordinates moved as the conditional optimum moves for a Gaussian likelihood:
    `u = d - H_mm^-1 H_m. d` (`metric` is `positive_inverse(xp, hessian, mask)`), per ray."""
    return d - xp.einsum("mij,mj->mi", metric, d @ hessian.T)
