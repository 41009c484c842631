"""The one search behind intervals and contours: along rays from the optimum, where the profiled nll rises by Δ.

Every search is a ray in the unconstrained vector `z` of the problem's
`Parametrisation`: `z_fixed(r) = z_hat + r d` for the coordinates the ray
holds (one param for an interval, two for a contour), while the other free
coordinates are minimised (a scaled, saddle-free Levenberg–Newton method,
warm-started from the previous point of the same ray). Along the ray the
profile `p(r) = min nll - nll_min` is found where `sqrt(2 p(r)) = sqrt(2 Δ)`:
Newton's method on `sqrt(2 p)`, which is linear in `r` for a Gaussian
likelihood (one step then), with the slope `dp/dr = grad nll . d` from the
envelope theorem. Newton is kept inside a bracket `[below, above]` of the
crossing, and bisects where its step would leave it, so a profile that turns
back (a banana's) cannot send the search away from the crossing. All rays run
at once, under `vmap`, in one compiled call.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["RaySearch", "search_rays", "profile_points", "minimise", "centre"]

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


def _newton_parts(objective, z, mask):
    """The gradient and the Hessian over `mask`, scaled to a unit diagonal, and its eigen-decomposition."""
    both = mask[:, None] & mask[None, :]
    g = jnp.where(mask, jax.grad(objective)(z), 0.0)
    h = jnp.where(both, jax.hessian(objective)(z), 0.0)
    diag = jnp.abs(jnp.diag(h))
    floor = jnp.maximum(1e-12 * jnp.max(diag), jnp.finfo(z.dtype).tiny)
    scale = jnp.where(mask, jnp.sqrt(jnp.maximum(diag, floor)), 1.0)
    scaled = h / scale[:, None] / scale[None, :] + jnp.diag(jnp.where(mask, 0.0, 1.0))
    eigenvalues, vectors = jnp.linalg.eigh(scaled)
    return g / scale, scale, eigenvalues, vectors


def _edm(g_scaled, eigenvalues, vectors):
    """`0.5 g^T |H|^-1 g` and whether `H` is positive definite (over the masked coordinates)."""
    along = vectors.T @ g_scaled
    size = jnp.maximum(jnp.abs(eigenvalues), 1e-300)
    return 0.5 * jnp.sum(along**2 / size), jnp.min(eigenvalues) > 0


def minimise(objective, z, mask, inner_steps: int, max_edm: float = 1e-8):
    """Minimise `objective` over the coordinates where `mask` is True (the others stay put).

    Levenberg–Newton on the Hessian scaled to a unit diagonal, with its
    eigenvalues replaced by their absolute values (saddle-free Newton), so every
    step is a descent direction also where the Hessian is indefinite, and a
    step is kept only if it lowers the objective.

    Returns:
        `(z, value, edm, ok)`: the point, the objective there, the estimated
        distance to the minimum and whether it is a converged minimum
        (`edm <= max_edm`, Hessian positive definite).
    """

    def step(carry, _):
        z, value, lam = carry
        g_scaled, scale, eigenvalues, vectors = _newton_parts(objective, z, mask)
        size = jnp.maximum(jnp.abs(eigenvalues), 1e-12 * jnp.max(jnp.abs(eigenvalues)))
        move = -(vectors @ ((vectors.T @ g_scaled) / (size + lam))) / scale
        trial = z + jnp.where(mask & jnp.isfinite(move), move, 0.0)
        new_value = objective(trial)
        better = jnp.isfinite(new_value) & (new_value <= value)
        z = jnp.where(better, trial, z)
        value = jnp.where(better, new_value, value)
        lam = jnp.clip(jnp.where(better, lam * 0.1, lam * 10.0), 1e-12, 1e12)
        return (z, value, lam), None

    start = (z, objective(z), jnp.asarray(1e-3, z.dtype))
    (z, value, _), _ = jax.lax.scan(step, start, None, inner_steps)
    g_scaled, _, eigenvalues, vectors = _newton_parts(objective, z, mask)
    edm, positive = _edm(g_scaled, eigenvalues, vectors)
    return z, value, edm, positive & (edm <= max_edm)


@eqx.filter_jit
def centre(
    objective, z: Float[Array, " n"], free: Bool[Array, " n"], *, steps: int = 30, max_edm: float = 1e-8
):
    """The state of the optimum a search starts from, in one compiled call.

    Returns:
        `(edm_start, nll_start, z, nll, ok, hessian)`: the EDM and nll at `z`,
        then the point polished by `minimise` over the free coordinates, its
        nll, whether it converged and the Hessian there (for the ray scales).
    """
    g_scaled, _, eigenvalues, vectors = _newton_parts(objective, z, free)
    edm_start, _ = _edm(g_scaled, eigenvalues, vectors)
    nll_start = objective(z)
    polished, value, _, ok = minimise(objective, z, free, steps, max_edm)
    return edm_start, nll_start, polished, value, ok, jax.hessian(objective)(polished)


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
    max_edm: float = 1e-8,
) -> RaySearch:
    """Search every ray for the point where the profiled nll has risen by `target` (see the module)."""
    goal = jnp.sqrt(2.0 * target)
    dtype = z_hat.dtype
    inf = jnp.asarray(jnp.inf, dtype)

    def one(held_row, d, cap):
        mask = free & ~held_row
        grad = jax.grad(objective)

        def outer(state, _):
            r, lo, hi, z, done, below, last = state
            z_try = jnp.where(held_row, z_hat + r * d, z)
            z_new, value, _, ok = minimise(objective, z_try, mask, inner_steps, max_edm)
            rise = value - nll_min
            slope = grad(z_new) @ d  # dp/dr, by the envelope theorem
            g = jnp.sqrt(2.0 * jnp.maximum(rise, 0.0))
            miss = jnp.abs(g - goal)
            hit = miss < tol * jnp.maximum(goal, 1.0)
            # Newton goes on past `tol` (it is nearly free: every step of the scan runs anyway) until
            # the crossing is exact to rounding, so the point reported is far inside the tolerance.
            exact = miss < 1e-13 * jnp.maximum(goal, 1.0)
            lo_new = jnp.where(g < goal, r, lo)
            hi_new = jnp.where(g < goal, hi, r)
            newton = r + (goal - g) / (slope / jnp.maximum(g, 1e-300))
            inside = jnp.isfinite(newton) & (newton > lo_new) & (newton < hi_new)
            # Outward until the crossing is bracketed, then Newton inside the bracket, else bisection.
            fallback = jnp.where(jnp.isfinite(hi_new), 0.5 * (lo_new + hi_new), 2.0 * r)
            r_next = jnp.clip(jnp.where(inside, newton, fallback), 0.0, cap)
            at_cap = (r >= cap * (1 - 1e-12)) & (g < goal)
            stop = done | exact | at_cap | (hi_new - lo_new <= 1e-15 * r)
            evaluated = (r, rise, z_new, hit, ok)
            last = jax.tree.map(lambda old, new: jnp.where(done, old, new), last, evaluated)
            return (
                jnp.where(stop, r, r_next),
                jnp.where(done, lo, lo_new),
                jnp.where(done, hi, hi_new),
                jnp.where(done, z, z_new),
                stop,
                below | (rise < -tol * jnp.maximum(target, 1.0)),
                last,
            ), None

        false = jnp.asarray(False)
        last = (jnp.zeros((), dtype), jnp.zeros((), dtype), z_hat, false, false)
        r0 = jnp.minimum(jnp.asarray(1.0, dtype), cap)
        start = (r0, jnp.zeros((), dtype), inf, z_hat, false, false, last)
        state, _ = jax.lax.scan(outer, start, None, outer_steps)
        below = state[5]
        r, rise, z, hit, ok = state[6]
        capped = (r >= cap * (1 - 1e-12)) & (rise < target)
        return RaySearch(r, rise, z, hit, ok, capped, below)

    return jax.vmap(one)(held, direction, r_cap)


@eqx.filter_jit
def profile_points(
    objective,
    z_hat: Float[Array, " n"],
    free: Bool[Array, " n"],
    held: Bool[Array, " n"],
    z_fixed: Float[Array, "s k n"],
    *,
    inner_steps: int = 30,
    max_edm: float = 1e-8,
):
    """The profiled nll at each row of `z_fixed` (its `held` coordinates): each of the `s` sequences
    is walked in order from `z_hat`, every inner fit warm-started from the previous one."""
    mask = free & ~held

    def walk(rows):
        def step(z, fixed_row):
            z = jnp.where(held, fixed_row, z)
            z, value, _, ok = minimise(objective, z, mask, inner_steps, max_edm)
            return z, (value, z, ok)

        return jax.lax.scan(step, z_hat, rows)[1]

    return jax.vmap(walk)(z_fixed)
