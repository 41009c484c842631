"""The one search behind intervals and contours: along rays from the optimum, where the profiled nll rises by Δ.

Every search is a ray in the unconstrained vector `z` of the problem's
`Parametrisation`: `z_fixed(r) = z_hat + r d` for the coordinates the ray
holds (one param for an interval, two for a contour), while the other free
coordinates are minimised (damped Newton, warm-started from the previous point
of the same ray). Along the ray the profile `p(r) = min nll - nll_min` is
found where `sqrt(2 p(r)) = sqrt(2 Δ)`: Newton's method on `sqrt(2 p)`, which
is linear in `r` for a Gaussian likelihood (one step then), with the slope
`dp/dr = grad nll . d` from the envelope theorem. All rays run at once, under
`vmap`, in one compiled call.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["RaySearch", "search_rays", "profile_points"]

# An unconstrained coordinate this far out is at its bound (exp(-25) of the way).
Z_EDGE = 25.0
# The farthest a ray goes on an open side, in standard deviations of the curvature.
R_OPEN = 1.0e3


class RaySearch(NamedTuple):
    """Per ray: where it stopped and what it found.

    Attributes:
        r: the distance along the ray (units of its direction).
        delta: the profiled rise of the nll there.
        z: the unconstrained vector of the profile point.
        converged: the rise matches the target to the tolerance.
        inner_ok: the inner minimisation converged at the last point.
        capped: the ray reached its end (a bound or `R_OPEN`) below the target: one-sided.
        below: the profile fell below the optimum somewhere (a lower minimum exists).
    """

    r: Float[Array, " m"]
    delta: Float[Array, " m"]
    z: Float[Array, "m n"]
    converged: Bool[Array, " m"]
    inner_ok: Bool[Array, " m"]
    capped: Bool[Array, " m"]
    below: Bool[Array, " m"]


def _minimise(objective, z, mask, inner_steps: int):
    """Damped Newton (Levenberg) over the coordinates where `mask` is True; the others stay put."""
    both = mask[:, None] & mask[None, :]
    eye = jnp.eye(z.size, dtype=z.dtype)
    value_and_grad = jax.value_and_grad(objective)
    hess = jax.hessian(objective)

    def step(carry, _):
        z, value, lam = carry
        _, g = value_and_grad(z)
        h = hess(z)
        g = jnp.where(mask, g, 0.0)
        h = jnp.where(both, h, 0.0)
        scale = jnp.where(mask, jnp.maximum(jnp.abs(jnp.diag(h)), 1e-12), 1.0)
        damped = h + eye * jnp.where(mask, lam * scale, 1.0)
        move = -jnp.linalg.solve(damped, g)
        trial = z + jnp.where(mask & jnp.isfinite(move), move, 0.0)
        new_value = objective(trial)
        better = jnp.isfinite(new_value) & (new_value <= value)
        z = jnp.where(better, trial, z)
        value = jnp.where(better, new_value, value)
        lam = jnp.clip(jnp.where(better, lam * 0.3, lam * 10.0), 1e-12, 1e12)
        return (z, value, lam), None

    (z, value, _), _ = jax.lax.scan(step, (z, objective(z), jnp.asarray(1e-3, z.dtype)), None, inner_steps)
    _, g = value_and_grad(z)
    g = jnp.where(mask, g, 0.0)
    h = jnp.where(both, hess(z), 0.0) + eye * jnp.where(mask, 0.0, 1.0)
    edm = 0.5 * g @ jnp.linalg.lstsq(h, g)[0]
    return z, value, edm


@eqx.filter_jit
def search_rays(
    objective,
    z_hat: Float[Array, " n"],
    nll_min: Float[Array, ""],
    free: Bool[Array, " n"],
    held: Bool[Array, "m n"],
    direction: Float[Array, "m n"],
    r_cap: Float[Array, " m"],
    target: Float[Array, ""],
    *,
    outer_steps: int = 16,
    inner_steps: int = 12,
    tol: float = 1e-6,
) -> RaySearch:
    """Search every ray for the point where the profiled nll has risen by `target` (see the module)."""
    goal = jnp.sqrt(2.0 * target)

    def one(held_row, d, cap):
        mask = free & ~held_row
        grad = jax.grad(objective)

        def outer(carry, _):
            r, z, done, below, inner_ok = carry
            z_try = jnp.where(held_row, z_hat + r * d, z)
            z_new, value, edm = _minimise(objective, z_try, mask, inner_steps)
            rise = value - nll_min
            slope = grad(z_new) @ d  # dp/dr, by the envelope theorem
            g = jnp.sqrt(2.0 * jnp.maximum(rise, 0.0))
            dg = slope / jnp.maximum(g, 1e-300)
            newton = r + (goal - g) / dg
            # Where the profile is flat or turns back, step outward instead (double the distance).
            usable = jnp.isfinite(newton) & (dg > 0) & (newton > 0)
            r_next = jnp.clip(jnp.where(usable, newton, 2.0 * r), 0.0, cap)
            hit = jnp.abs(g - goal) < tol * jnp.maximum(goal, 1.0)
            r_next = jnp.where(done, r, r_next)
            z_keep = jnp.where(done, z, z_new)
            return (
                r_next,
                z_keep,
                done | hit,
                below | (rise < -tol * jnp.maximum(target, 1.0)),
                jnp.where(done, inner_ok, edm < 1e-8),
            ), None

        start = (
            jnp.minimum(jnp.asarray(1.0, z_hat.dtype), cap),
            z_hat,
            jnp.asarray(False),
            jnp.asarray(False),
            jnp.asarray(True),
        )
        (r, z, done, below, inner_ok), _ = jax.lax.scan(outer, start, None, outer_steps)
        # r is the next trial point; the profile point is z (where the last test ran).
        z_fixed = jnp.where(held_row, z_hat + r * d, z)
        z_final, value, edm = _minimise(objective, z_fixed, mask, inner_steps)
        rise = value - nll_min
        converged = jnp.abs(jnp.sqrt(2.0 * jnp.maximum(rise, 0.0)) - goal) < 10 * tol * jnp.maximum(goal, 1.0)
        capped = (r >= cap * (1 - 1e-12)) & (rise < target)
        return RaySearch(r, rise, z_final, converged, edm < 1e-8, capped, below | (rise < -tol))

    return jax.vmap(one)(held, direction, r_cap)


@eqx.filter_jit
def profile_points(
    objective,
    z_hat: Float[Array, " n"],
    free: Bool[Array, " n"],
    held: Bool[Array, " n"],
    z_fixed: Float[Array, "k n"],
    *,
    inner_steps: int = 30,
):
    """The profiled nll at each row of `z_fixed` (its `held` coordinates), warm-started in order."""
    mask = free & ~held

    def step(z, fixed_row):
        z = jnp.where(held, fixed_row, z)
        z, value, edm = _minimise(objective, z, mask, inner_steps)
        return z, (value, z, edm < 1e-8)

    _, (values, zs, ok) = jax.lax.scan(step, z_hat, z_fixed)
    return values, zs, ok
