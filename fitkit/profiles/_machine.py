"""One search step per gradient: the state machine of a ray (or a profile walk), whichever loop drives it.

A ray holds some coordinates of the unconstrained vector `z` on a line,
`z_held(r) = z_hat + r d`, and minimises the others (the inner coordinates)
at each `r` it visits. Each call of `advance` takes the nll and its gradient
at the ray's `trial` point and decides the next trial point:

- inside an inner fit, a BFGS step (the metric starts as the inverse of the
  optimum's Hessian over the inner coordinates and its updates are carried
  along the ray), kept only where it lowers the nll;
- once the inner fit has converged, the next `r`: for an interval or a
  contour, Newton's method on `sqrt(2 p(r))`, `p` the profiled rise, with the
  slope `dp/dr = grad nll . d` (the envelope theorem), kept inside a bracket of
  the crossing and bisecting where its step would leave it; for a profile
  walk, the next point of its grid. The new inner fit starts from the last
  point moved along the Gaussian profile direction `u = d - H_mm^-1 H_m. d`,
  which for a Gaussian likelihood is the profile point itself.

So each step costs exactly one gradient per ray, and the same `advance` is
driven either by a `lax.while_loop` over a `vmap`ped gradient (one compiled
call) or by a Python loop that evaluates an already-compiled gradient
(`_search.py`). Gradients arrive in physical coordinates `x = constrain(z)`;
`advance` applies the chain rule with `dx/dz`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._linalg import gaussian_direction, positive_inverse

__all__ = ["Rays", "State", "Settings", "rays", "start", "advance"]


class Settings(NamedTuple):
    """What every ray shares: the optimum, the target rise and the tolerances (arrays, traced)."""

    z_hat: Float[Array, " n"]
    nll_min: Float[Array, ""]
    target: Float[Array, ""]  # the rise sought (unused by walks)
    stop_edm: Float[Array, ""]  # an inner fit stops at this EDM
    max_edm: Float[Array, ""]  # ... and has converged at this one
    noise: Float[Array, ""]  # the rounding of the nll
    tol: Float[Array, ""]  # relative tolerance on sqrt(2 rise) at the crossing


class Rays(NamedTuple):
    """Per ray (leading axis `m`): what it holds and where it goes."""

    held: Bool[Array, "m n"]
    mask: Bool[Array, "m n"]  # the inner coordinates: free and not held
    direction: Float[Array, "m n"]
    gaussian: Float[Array, "m n"]  # u
    metric: Float[Array, "m n n"]  # the starting BFGS metric
    cap: Float[Array, " m"]  # the farthest r (a bound, or far out)
    schedule: Float[Array, "m k"]  # a walk's r values, in order (one unused column for a search)


class State(NamedTuple):
    """Per ray (leading axis `m`): where the search is."""

    trial: Float[Array, "m n"]  # the point to evaluate next
    fresh: Bool[Array, " m"]  # the trial starts a new inner fit (a new r)
    z: Float[Array, "m n"]  # the inner fit's best point, its nll and gradient (in z)
    value: Float[Array, " m"]
    grad: Float[Array, "m n"]
    metric: Float[Array, "m n n"]
    alpha: Float[Array, " m"]  # the BFGS step length (shrunk after a rejected step)
    inner: Int[Array, " m"]  # evaluations in the current inner fit
    outer: Int[Array, " m"]  # r values visited
    r: Float[Array, " m"]  # the r of the current inner fit
    lo: Float[Array, " m"]  # the bracket of the crossing: below the target at lo, above at hi
    hi: Float[Array, " m"]
    done: Bool[Array, " m"]
    below: Bool[Array, " m"]  # the profile fell below the optimum somewhere
    evaluations: Int[Array, " m"]
    last_r: Float[Array, " m"]  # the last converged inner fit: its r, rise, point, flags
    last_rise: Float[Array, " m"]
    last_z: Float[Array, "m n"]
    last_hit: Bool[Array, " m"]
    last_ok: Bool[Array, " m"]
    walk_value: Float[Array, "m k"]  # a walk's record: the nll, point and convergence at each r
    walk_z: Float[Array, "m k n"]
    walk_ok: Bool[Array, "m k"]


def rays(hessian, free, held, direction, cap, schedule) -> Rays:
    """The per-ray constants: the inner masks, their starting metrics and Gaussian directions."""
    mask = free[None, :] & ~held
    metric = jax.vmap(positive_inverse, in_axes=(None, 0))(hessian, mask)
    gaussian = jax.vmap(gaussian_direction, in_axes=(None, 0, 0))(hessian, metric, direction)
    return Rays(held, mask, direction, gaussian, metric, cap, schedule)


def start(settings: Settings, ray: Rays) -> State:
    """The state of every ray before its first evaluation: the first `r` predicted from the optimum."""
    m, n = ray.held.shape
    k = ray.schedule.shape[1]
    dtype = settings.z_hat.dtype
    r0 = ray.schedule[:, 0]
    z_hat = jnp.broadcast_to(settings.z_hat, (m, n))
    trial = jnp.where(ray.held, z_hat + r0[:, None] * ray.direction, z_hat + r0[:, None] * ray.gaussian)
    zeros, false = jnp.zeros(m, dtype), jnp.zeros(m, bool)
    inf = jnp.full(m, jnp.inf, dtype)
    return State(
        trial=trial,
        fresh=jnp.ones(m, bool),
        z=z_hat,
        value=inf,
        grad=jnp.zeros((m, n), dtype),
        metric=ray.metric,
        alpha=jnp.ones(m, dtype),
        inner=jnp.zeros(m, jnp.int32),
        outer=jnp.zeros(m, jnp.int32),
        r=r0,
        lo=zeros,
        hi=inf,
        done=false,
        below=false,
        evaluations=jnp.zeros(m, jnp.int32),
        last_r=zeros,
        last_rise=zeros,
        last_z=z_hat,
        last_hit=false,
        last_ok=false,
        walk_value=jnp.full((m, k), jnp.nan, dtype),
        walk_z=jnp.broadcast_to(settings.z_hat, (m, k, n)),
        walk_ok=jnp.zeros((m, k), bool),
    )


def _advance_one(
    settings: Settings, ray: Rays, s: State, value, grad, *, walk: bool, inner_steps, outer_steps
):
    """`advance` for one ray (no leading axis)."""
    mask, d = ray.mask, ray.direction
    # 1. The evaluation at the trial point, into the inner fit.
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    better = finite & (s.fresh | ~(value > s.value))
    g_old = jnp.where(mask, s.grad, 0.0)
    step = s.trial - s.z
    change = jnp.where(mask, grad, 0.0) - g_old
    sy = step @ change
    curved = better & ~s.fresh & (sy > 1e-12 * jnp.sqrt((step @ step) * (change @ change)))
    rho = 1.0 / jnp.where(curved, sy, 1.0)
    left = jnp.eye(step.size, dtype=step.dtype) - rho * jnp.outer(step, change)
    metric = jnp.where(curved, left @ s.metric @ left.T + rho * jnp.outer(step, step), s.metric)
    # A new r whose nll is not finite counts as above the target (the bracket then closes on it).
    z = jnp.where(better | s.fresh, s.trial, s.z)
    value_now = jnp.where(better, value, jnp.where(s.fresh, jnp.inf, s.value))
    grad_now = jnp.where(better, grad, jnp.where(s.fresh, 0.0, s.grad))
    alpha = jnp.where(better, 1.0, 0.2 * s.alpha)
    g_inner = jnp.where(mask, grad_now, 0.0)
    edm = 0.5 * g_inner @ metric @ g_inner
    inner = s.inner + 1
    settled = (edm <= settings.stop_edm) | (inner > inner_steps) | ~jnp.isfinite(value_now)

    # 2. Where the inner fit has settled: the next r.
    rise = value_now - settings.nll_min
    ok = jnp.isfinite(value_now) & (edm <= settings.max_edm)
    below = s.below | (rise < -settings.tol * jnp.maximum(settings.target, 1.0))
    outer = s.outer + 1
    if walk:
        index = jnp.minimum(s.outer, ray.schedule.shape[0] - 1)
        walk_value = s.walk_value.at[index].set(jnp.where(settled, value_now, s.walk_value[index]))
        walk_z = s.walk_z.at[index].set(jnp.where(settled, z, s.walk_z[index]))
        walk_ok = s.walk_ok.at[index].set(jnp.where(settled, ok, s.walk_ok[index]))
        r_next = ray.schedule[jnp.minimum(outer, ray.schedule.shape[0] - 1)]
        lo, hi = s.lo, s.hi
        finished = outer >= ray.schedule.shape[0]
        last = (s.last_r, s.last_rise, s.last_z, s.last_hit, s.last_ok)
    else:
        goal = jnp.sqrt(2.0 * settings.target)
        slope = grad_now @ d  # dp/dr, by the envelope theorem
        g = jnp.sqrt(2.0 * jnp.maximum(rise, 0.0))
        miss = jnp.abs(g - goal)
        hit = miss < settings.tol * jnp.maximum(goal, 1.0)
        lo = jnp.where(g < goal, s.r, s.lo)
        hi = jnp.where(g < goal, s.hi, s.r)
        newton = s.r + (goal - g) / (slope / jnp.maximum(g, 1e-300))
        inside = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        # Outward until the crossing is bracketed, then Newton inside the bracket, else bisection.
        fallback = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * s.r)
        r_next = jnp.clip(jnp.where(inside, newton, fallback), 0.0, ray.cap)
        # Newton goes on past `tol` while it still moves (a Gaussian-like profile needs one more
        # gradient), so the point reported is far inside the tolerance; it stops at the rounding
        # of the rise, at a bound below the target, or where the bracket has closed.
        exact = jnp.abs(rise - settings.target) <= jnp.maximum(1e-12 * settings.target, 4.0 * settings.noise)
        at_cap = (s.r >= ray.cap * (1 - 1e-12)) & (g < goal)
        still = hit & (jnp.abs(r_next - s.r) <= 1e-9 * s.r)
        finished = exact | at_cap | (hi - lo <= 1e-15 * s.r) | still | (outer >= outer_steps)
        last = (s.r, rise, z, hit, ok)
        walk_value, walk_z, walk_ok = s.walk_value, s.walk_z, s.walk_ok

    # 3. The next trial: another BFGS step, or the start of the inner fit at the next r.
    inner_trial = z + jnp.where(mask, -alpha * (metric @ g_inner), 0.0)
    moved = z + (r_next - s.r) * ray.gaussian
    outer_trial = jnp.where(ray.held, settings.z_hat + r_next * d, moved)
    pick = lambda a, b: jnp.where(settled, a, b)  # noqa: E731
    new = State(
        trial=pick(outer_trial, inner_trial),
        fresh=settled,
        z=z,
        value=value_now,
        grad=grad_now,
        metric=metric,
        alpha=pick(jnp.ones_like(alpha), alpha),
        inner=pick(0, inner),
        outer=pick(outer, s.outer),
        r=pick(r_next, s.r),
        lo=pick(lo, s.lo),
        hi=pick(hi, s.hi),
        done=settled & finished,
        below=pick(below, s.below),
        evaluations=s.evaluations + 1,
        last_r=pick(last[0], s.last_r),
        last_rise=pick(last[1], s.last_rise),
        last_z=pick(last[2], s.last_z),
        last_hit=pick(last[3], s.last_hit),
        last_ok=pick(last[4], s.last_ok),
        walk_value=walk_value,
        walk_z=walk_z,
        walk_ok=walk_ok,
    )
    # A ray that is done stays as it is.
    return jax.tree.map(lambda old, updated: jnp.where(s.done, old, updated), s, new)


def advance(
    settings: Settings,
    ray: Rays,
    state: State,
    value: Float[Array, " m"],
    grad_x: Float[Array, "m n"],
    dx_dz: Float[Array, "m n"],
    *,
    walk: bool,
    inner_steps: int,
    outer_steps: int,
) -> State:
    """One step of every ray, given the nll and its physical gradient at each `state.trial`
    (and `dx/dz` there: the chain rule to the gradient in z)."""
    return jax.vmap(
        lambda r, s, v, g: _advance_one(
            settings, r, s, v, g, walk=walk, inner_steps=inner_steps, outer_steps=outer_steps
        )
    )(ray, state, value, grad_x * dx_dz)
