"""The point the searches start from: polished to the minimum where it is not, and the maps between z and x."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._linalg import positive_inverse

__all__ = ["polish", "latent_view", "map_rows"]


@eqx.filter_jit
def polish(
    objective, z: Float[Array, " n"], free: Bool[Array, " n"], *, steps: int = 50, max_edm: float = 1e-8
):
    """Newton steps over the free coordinates from a point off the minimum, in one compiled call.

    The Hessian's eigenvalues are made positive and Levenberg-damped in the
    diagonally scaled coordinates, and a step is kept only if it lowers the
    objective; it stops once the EDM `0.5 g^T |H|^-1 g` is at most `max_edm`.

    Returns:
        `(z, value, ok, hessian)`: the point, the objective there, whether it is
        a converged minimum (EDM at most `max_edm`, Hessian positive definite
        over the free coordinates) and the Hessian there.
    """
    value_and_grad = jax.value_and_grad(objective)
    hessian_of = jax.hessian(objective)
    both = free[:, None] & free[None, :]

    def measure(z):
        value, grad = value_and_grad(z)
        hessian = hessian_of(z)
        g = jnp.where(free, grad, 0.0)
        return value, grad, hessian, 0.5 * g @ positive_inverse(jnp, hessian, free) @ g

    def cond(state):
        k, _, _, _, _, edm, _ = state
        return (k < steps) & ~(edm <= max_edm)

    def body(state):
        k, z, value, grad, hessian, edm, lam = state
        scale = jnp.sqrt(jnp.maximum(jnp.abs(jnp.diag(hessian)), jnp.finfo(z.dtype).tiny))
        scale = jnp.where(free, scale, 1.0)
        scaled = jnp.where(both, hessian / scale[:, None] / scale[None, :], 0.0)
        move = (
            -(positive_inverse(jnp, scaled + lam * jnp.eye(z.size, dtype=z.dtype), free) @ (grad / scale))
            / scale
        )
        trial = z + jnp.where(free & jnp.isfinite(move), move, 0.0)
        measured = measure(trial)
        better = jnp.isfinite(measured[0]) & ~(measured[0] > value)
        kept = jax.tree.map(
            lambda new, old: jnp.where(better, new, old), (trial, *measured), (z, value, grad, hessian, edm)
        )
        lam = jnp.clip(jnp.where(better, 0.1 * lam, 10.0 * lam), 1e-12, 1e12)
        return (k + 1, *kept, lam)

    state = (0, z, *measure(z), jnp.asarray(1e-3, z.dtype))
    _, z, value, _, hessian, edm, _ = jax.lax.while_loop(cond, body, state)
    block = jnp.where(both, hessian, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    positive = jnp.min(jnp.linalg.eigvalsh(block)) > 0
    return z, value, positive & (edm <= max_edm), hessian


@eqx.filter_jit
def latent_view(parametrisation, x: Float[Array, " n"]):
    """`(z, dx/dz, d2x/dz2)` of the physical flat values `x`: the chain rule from the physical
    gradient and Hessian to the unconstrained ones (the bijection is elementwise)."""
    z = parametrisation.unconstrain(x)
    one = jnp.ones_like(z)
    first = lambda z: jax.jvp(parametrisation.constrain, (z,), (one,))[1]  # noqa: E731
    return z, first(z), jax.jvp(first, (z,), (one,))[1]


@eqx.filter_jit
def map_rows(parametrisation, rows: Float[Array, "m n"], method: str):
    """`parametrisation.<method>` (`"constrain"`, `"unconstrain"` or `"to_params"`) of each row, compiled."""
    return jax.vmap(getattr(parametrisation, method))(rows)
