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

Every function takes the array module `xp` first: `numpy` when a Python loop
drives the search (nothing to compile), `jax.numpy` inside the compiled loop.
"""

from __future__ import annotations

from typing import NamedTuple

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


def _stack(xp, a, b):
    """`a @ b` over a leading ray axis (matrix @ matrix or matrix @ vector)."""
    return xp.einsum("mij,mj...->mi...", a, b)


def rays(xp, hessian, free, held, direction, cap, schedule) -> Rays:
    """The per-ray constants: the inner masks, their starting metrics and Gaussian directions."""
    mask = free[None, :] & ~held
    metric = positive_inverse(xp, hessian[None], mask)
    gaussian = gaussian_direction(xp, hessian, metric, direction)
    return Rays(held, mask, direction, gaussian, metric, cap, schedule)


def start(xp, settings: Settings, ray: Rays) -> State:
    """The state of every ray before its first evaluation: the first `r` predicted from the optimum."""
    m, n = ray.held.shape
    k = ray.schedule.shape[1]
    dtype = settings.z_hat.dtype
    r0 = ray.schedule[:, 0]
    z_hat = xp.broadcast_to(settings.z_hat, (m, n))
    trial = xp.where(ray.held, z_hat + r0[:, None] * ray.direction, z_hat + r0[:, None] * ray.gaussian)
    zeros, false = xp.zeros(m, dtype), xp.zeros(m, bool)
    inf = xp.full(m, xp.inf, dtype)
    return State(
        trial=trial,
        fresh=xp.ones(m, bool),
        z=z_hat,
        value=inf,
        grad=xp.zeros((m, n), dtype),
        metric=ray.metric,
        alpha=xp.ones(m, dtype),
        inner=xp.zeros(m, xp.int32),
        outer=xp.zeros(m, xp.int32),
        r=r0,
        lo=zeros,
        hi=inf,
        done=false,
        below=false,
        evaluations=xp.zeros(m, xp.int32),
        last_r=zeros,
        last_rise=zeros,
        last_z=z_hat,
        last_hit=false,
        last_ok=false,
        walk_value=xp.full((m, k), xp.nan, dtype),
        walk_z=xp.broadcast_to(settings.z_hat, (m, k, n)),
        walk_ok=xp.zeros((m, k), bool),
    )


def advance(
    xp,
    settings: Settings,
    ray: Rays,
    s: State,
    value: Float[Array, " m"],
    grad_x: Float[Array, "m n"],
    dx_dz: Float[Array, "m n"],
    *,
    walk: bool,
    inner_steps: int,
    outer_steps: int,
) -> State:
    """One step of every ray, given the nll and its physical gradient at each `s.trial` (and
    `dx/dz` there: the chain rule to the gradient in z). `xp` is `numpy` or `jax.numpy`."""
    mask, d = ray.mask, ray.direction
    col = lambda v: v[:, None]  # noqa: E731  (a per-ray scalar against per-ray vectors)
    grad = grad_x * dx_dz
    # 1. The evaluation at the trial point, into the inner fit.
    finite = xp.isfinite(value) & xp.all(xp.isfinite(grad), axis=-1)
    better = finite & (s.fresh | ~(value > s.value))
    g_old = xp.where(mask, s.grad, 0.0)
    step = s.trial - s.z
    change = xp.where(mask, grad, 0.0) - g_old
    sy = xp.sum(step * change, axis=-1)
    size = xp.sqrt(xp.sum(step * step, axis=-1) * xp.sum(change * change, axis=-1))
    curved = better & ~s.fresh & (sy > 1e-12 * size)
    rho = 1.0 / xp.where(curved, sy, 1.0)
    left = xp.eye(step.shape[-1], dtype=step.dtype)[None] - rho[:, None, None] * (
        step[:, :, None] * change[:, None, :]
    )
    updated = _stack(xp, _stack(xp, left, s.metric), xp.swapaxes(left, -1, -2))
    updated = updated + rho[:, None, None] * (step[:, :, None] * step[:, None, :])
    metric = xp.where(curved[:, None, None], updated, s.metric)
    # A new r whose nll is not finite counts as above the target (the bracket then closes on it).
    z = xp.where(col(better | s.fresh), s.trial, s.z)
    value_now = xp.where(better, value, xp.where(s.fresh, xp.inf, s.value))
    grad_now = xp.where(col(better), grad, xp.where(col(s.fresh), 0.0, s.grad))
    alpha = xp.where(better, 1.0, 0.2 * s.alpha)
    g_inner = xp.where(mask, grad_now, 0.0)
    edm = 0.5 * xp.sum(g_inner * _stack(xp, metric, g_inner), axis=-1)
    inner = s.inner + 1
    settled = (edm <= settings.stop_edm) | (inner > inner_steps) | ~xp.isfinite(value_now)

    # 2. Where the inner fit has settled: the next r.
    rise = value_now - settings.nll_min
    ok = xp.isfinite(value_now) & (edm <= settings.max_edm)
    below = s.below | (rise < -settings.tol * xp.maximum(settings.target, 1.0))
    outer = s.outer + 1
    if walk:
        length = ray.schedule.shape[1]
        here = (xp.arange(length)[None, :] == col(s.outer)) & col(settled)
        walk_value = xp.where(here, col(value_now), s.walk_value)
        walk_z = xp.where(here[:, :, None], z[:, None, :], s.walk_z)
        walk_ok = xp.where(here, col(ok), s.walk_ok)
        after = xp.arange(length)[None, :] == col(xp.minimum(outer, length - 1))
        r_next = xp.sum(xp.where(after, ray.schedule, 0.0), axis=-1)
        lo, hi = s.lo, s.hi
        finished = outer >= length
        last = (s.last_r, s.last_rise, s.last_z, s.last_hit, s.last_ok)
    else:
        goal = xp.sqrt(2.0 * settings.target)
        slope = xp.sum(grad_now * d, axis=-1)  # dp/dr, by the envelope theorem
        g = xp.sqrt(2.0 * xp.maximum(rise, 0.0))
        miss = xp.abs(g - goal)
        hit = miss < settings.tol * xp.maximum(goal, 1.0)
        lo = xp.where(g < goal, s.r, s.lo)
        hi = xp.where(g < goal, s.hi, s.r)
        newton = s.r + (goal - g) / (slope / xp.maximum(g, 1e-300))
        inside = xp.isfinite(newton) & (newton > lo) & (newton < hi)
        # Outward until the crossing is bracketed, then Newton inside the bracket, else bisection.
        fallback = xp.where(xp.isfinite(hi), 0.5 * (lo + hi), 2.0 * s.r)
        r_next = xp.clip(xp.where(inside, newton, fallback), 0.0, ray.cap)
        # Newton goes on past `tol` while it still moves (a Gaussian-like profile needs one more
        # gradient), so the point reported is far inside the tolerance; it stops at the rounding
        # of the rise, at a bound below the target, or where the bracket has closed.
        exact = xp.abs(rise - settings.target) <= xp.maximum(1e-12 * settings.target, 4.0 * settings.noise)
        at_cap = (s.r >= ray.cap * (1 - 1e-12)) & (g < goal)
        still = hit & (xp.abs(r_next - s.r) <= 1e-9 * s.r)
        finished = exact | at_cap | (hi - lo <= 1e-15 * s.r) | still | (outer >= outer_steps)
        last = (s.r, rise, z, hit, ok)
        walk_value, walk_z, walk_ok = s.walk_value, s.walk_z, s.walk_ok

    # 3. The next trial: another BFGS step, or the start of the inner fit at the next r.
    inner_trial = z + xp.where(mask, -col(alpha) * _stack(xp, metric, g_inner), 0.0)
    moved = z + col(r_next - s.r) * ray.gaussian
    outer_trial = xp.where(ray.held, settings.z_hat + col(r_next) * d, moved)

    def pick(a, b):
        return xp.where(settled.reshape(settled.shape + (1,) * (xp.ndim(a) - 1)), a, b)

    new = State(
        trial=pick(outer_trial, inner_trial),
        fresh=settled,
        z=z,
        value=value_now,
        grad=grad_now,
        metric=metric,
        alpha=pick(xp.ones_like(alpha), alpha),
        inner=pick(xp.zeros_like(inner), inner),
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
    return State(*(
        xp.where(s.done.reshape(s.done.shape + (1,) * (xp.ndim(old) - 1)), old, updated)
        for old, updated in zip(s, new)
    ))  # fmt: skip
