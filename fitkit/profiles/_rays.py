"""The one search behind intervals, profiles and contours: along rays from the optimum, where the profiled nll rises by Δ.

Every search is a ray in the unconstrained vector `z` of the problem's
`Parametrisation`: `z_held(r) = z_hat + r d` for the coordinates the ray
holds (one param for an interval, two for a contour), while the other free
coordinates are minimised. The cost is counted in gradient evaluations, as
MINOS counts it, and kept small in three ways:

- the inner minimisations are BFGS started from the inverse of the optimum's
  Hessian restricted to the inner coordinates (no Hessian is computed along
  a ray), its updates carried from one point of a ray to the next;
- each point starts from the previous one moved along the Gaussian profile
  direction `u = d - H_mm^-1 H_m. d`: where the likelihood is Gaussian that is
  the profile point itself;
- along the ray, Newton's method on `sqrt(2 p(r))` (linear in `r` for a
  Gaussian likelihood, so one step then), with the slope `dp/dr = grad nll . d`
  from the envelope theorem, is kept inside a bracket of the crossing and
  bisects where its step would leave it, so a profile that turns back (a
  banana's) cannot send the search away from the crossing.

Both loops are `lax.while_loop`s that stop when done; all rays run at once,
under `vmap`, in one compiled call.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["RaySearch", "search_rays", "profile_points", "polish", "latent_view", "map_rows"]

# An unconstrained coordinate this far out is at its bound (exp(-25) of the way).
Z_EDGE = 25.0
# The farthest a ray goes on an open side, in standard deviations of the curvature.
R_OPEN = 1.0e3
# The inner fits go on to this fraction of `max_edm`, so the profile values are exact well inside it,
# or to the rounding of the nll (`ROUNDING` ulps of it), below which no step can be judged.
EDM_MARGIN = 1e-2
ROUNDING = 16.0


def _stop_edm(nll_min, max_edm: float):
    """Where an inner fit stops: well inside `max_edm`, unless the nll's own rounding is larger."""
    noise = ROUNDING * jnp.finfo(nll_min.dtype).eps * jnp.maximum(jnp.abs(nll_min), 1.0)
    return jnp.maximum(EDM_MARGIN * max_edm, noise), noise


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
        evaluations: the gradient evaluations the ray took.
    """

    r: Float[Array, " m"]
    delta: Float[Array, " m"]
    z: Float[Array, "m n"]
    converged: Bool[Array, " m"]
    inner_ok: Bool[Array, " m"]
    capped: Bool[Array, " m"]
    below: Bool[Array, " m"]
    evaluations: Float[Array, " m"]


def _positive_inverse(hessian, mask):
    """The inverse of the Hessian over `mask` (zero elsewhere), its eigenvalues made positive."""
    both = mask[:, None] & mask[None, :]
    block = jnp.where(both, hessian, 0.0) + jnp.diag(jnp.where(mask, 0.0, 1.0))
    eigenvalues, vectors = jnp.linalg.eigh(block)
    size = jnp.abs(eigenvalues)
    size = jnp.maximum(size, 1e-12 * jnp.max(size))
    return jnp.where(both, (vectors / size) @ vectors.T, 0.0)


def _gaussian_direction(hessian, metric, d):
    """`d` with the inner coordinates moved as the conditional optimum moves for a Gaussian likelihood."""
    return d - metric @ (hessian @ d)


class _Inner(NamedTuple):
    z: Array
    value: Array
    grad: Array  # the full gradient (held coordinates too: the slope of the profile)
    metric: Array  # BFGS's inverse Hessian over the inner coordinates
    edm: Array
    evaluations: Array


def _bfgs(value_and_grad, start: _Inner, mask, steps: int, stop_edm) -> _Inner:
    """Minimise over the coordinates where `mask` is True by BFGS from `start` (see `_unevaluated`)."""

    def edm_of(metric, grad):
        g = jnp.where(mask, grad, 0.0)
        return 0.5 * g @ metric @ g

    def cond(state):
        k, inner, _ = state
        return (k < steps) & ~(inner.edm <= stop_edm)

    def body(state):
        k, inner, alpha = state
        g = jnp.where(mask, inner.grad, 0.0)
        move = -alpha * (inner.metric @ g)
        trial = inner.z + jnp.where(mask, move, 0.0)
        value, grad = value_and_grad(trial)
        # `inner.value` is inf before the first evaluation, so the start is always taken.
        better = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & ~(value > inner.value)
        s = trial - inner.z
        y = jnp.where(mask, grad, 0.0) - g
        sy = s @ y
        curved = better & (sy > 1e-12 * jnp.sqrt((s @ s) * (y @ y)))
        rho = 1.0 / jnp.where(curved, sy, 1.0)
        left = jnp.eye(s.size, dtype=s.dtype) - rho * jnp.outer(s, y)
        updated = left @ inner.metric @ left.T + rho * jnp.outer(s, s)
        metric = jnp.where(curved, updated, inner.metric)
        z = jnp.where(better, trial, inner.z)
        value = jnp.where(better, value, inner.value)
        grad = jnp.where(better, grad, inner.grad)
        new = _Inner(z, value, grad, metric, edm_of(metric, grad), inner.evaluations + 1)
        return k + 1, new, jnp.where(better, 1.0, 0.2 * alpha)

    _, inner, _ = jax.lax.while_loop(cond, body, (0, start, jnp.asarray(1.0, start.z.dtype)))
    return inner


def _unevaluated(z, metric, evaluations) -> _Inner:
    """An inner state at `z` not yet evaluated: the first BFGS iteration evaluates it (a zero move)."""
    inf = jnp.asarray(jnp.inf, z.dtype)
    return _Inner(z, inf, jnp.zeros_like(z), metric, inf, evaluations)


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
        return value, grad, hessian, 0.5 * g @ _positive_inverse(hessian, free) @ g

    def cond(state):
        k, _, _, _, _, edm, _ = state
        return (k < steps) & ~(edm <= max_edm)

    def body(state):
        k, z, value, grad, hessian, edm, lam = state
        scale = jnp.sqrt(jnp.maximum(jnp.abs(jnp.diag(hessian)), jnp.finfo(z.dtype).tiny))
        scale = jnp.where(free, scale, 1.0)
        scaled = jnp.where(both, hessian / scale[:, None] / scale[None, :], 0.0)
        move = (
            -(_positive_inverse(scaled + lam * jnp.eye(z.size, dtype=z.dtype), free) @ (grad / scale)) / scale
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


@eqx.filter_jit
def search_rays(
    objective,
    z_hat: Float[Array, " n"],
    nll_min: Float[Array, ""],
    hessian: Float[Array, "n n"],
    free: Bool[Array, " n"],
    held: Bool[Array, "m n"],
    direction: Float[Array, "m n"],
    r_cap: Float[Array, " m"],
    target: Float[Array, ""],
    *,
    outer_steps: int = 30,
    inner_steps: int = 100,
    tol: float = 1e-6,
    max_edm: float = 1e-8,
) -> RaySearch:
    """Search every ray for the point where the profiled nll has risen by `target` (see the module)."""
    goal = jnp.sqrt(2.0 * target)
    dtype = z_hat.dtype
    value_and_grad = jax.value_and_grad(objective)

    stop_edm, noise = _stop_edm(nll_min, max_edm)

    def one(held_row, d, cap):
        mask = free & ~held_row
        metric0 = _positive_inverse(hessian, mask)
        u = _gaussian_direction(hessian, metric0, d)

        def cond(state):
            return (state["k"] < outer_steps) & ~state["done"]

        def body(state):
            r = state["r"]
            moved = state["z"] + (r - state["r_prev"]) * u
            z_try = jnp.where(held_row, z_hat + r * d, moved)
            inner = _unevaluated(z_try, state["metric"], state["evaluations"])
            inner = _bfgs(value_and_grad, inner, mask, inner_steps + 1, stop_edm)
            rise = inner.value - nll_min
            slope = inner.grad @ d  # dp/dr, by the envelope theorem
            g = jnp.sqrt(2.0 * jnp.maximum(rise, 0.0))
            miss = jnp.abs(g - goal)
            lo = jnp.where(g < goal, r, state["lo"])
            hi = jnp.where(g < goal, state["hi"], r)
            newton = r + (goal - g) / (slope / jnp.maximum(g, 1e-300))
            inside = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
            # Outward until the crossing is bracketed, then Newton inside the bracket, else bisection.
            fallback = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * r)
            r_next = jnp.clip(jnp.where(inside, newton, fallback), 0.0, cap)
            # Newton goes on past `tol` (a Gaussian-like profile needs one more gradient) until the
            # crossing is exact to rounding, so the point reported is far inside the tolerance.
            exact = jnp.abs(rise - target) <= jnp.maximum(1e-12 * target, 4.0 * noise)
            at_cap = (r >= cap * (1 - 1e-12)) & (g < goal)
            ok = inner.edm <= max_edm
            hit = miss < tol * jnp.maximum(goal, 1.0)
            return {
                "k": state["k"] + 1,
                "r": r_next,
                "r_prev": r,
                "lo": lo,
                "hi": hi,
                "z": inner.z,
                "metric": inner.metric,
                # Also done where Newton has stopped moving at a crossing within `tol`: the rise's
                # rounding (sums over many pixels) can sit above `noise`, and steps there are noise.
                "done": exact | at_cap | (hi - lo <= 1e-15 * r) | (hit & (jnp.abs(r_next - r) <= 1e-9 * r)),
                "below": state["below"] | (rise < -tol * jnp.maximum(target, 1.0)),
                "evaluations": inner.evaluations,
                "last": (r, rise, inner.z, hit, ok),
            }

        false = jnp.asarray(False)
        zero = jnp.zeros((), dtype)
        start = {
            "k": 0,
            "r": jnp.minimum(jnp.asarray(1.0, dtype), cap),
            "r_prev": zero,
            "lo": zero,
            "hi": jnp.asarray(jnp.inf, dtype),
            "z": z_hat,
            "metric": metric0,
            "done": false,
            "below": false,
            "evaluations": zero,
            "last": (zero, zero, z_hat, false, false),
        }
        state = jax.lax.while_loop(cond, body, start)
        r, rise, z, hit, ok = state["last"]
        capped = (r >= cap * (1 - 1e-12)) & (rise < target)
        return RaySearch(r, rise, z, hit, ok, capped, state["below"], state["evaluations"])

    return jax.vmap(one)(held, direction, r_cap)


@eqx.filter_jit
def profile_points(
    objective,
    z_hat: Float[Array, " n"],
    hessian: Float[Array, "n n"],
    free: Bool[Array, " n"],
    held: Bool[Array, " n"],
    z_fixed: Float[Array, "s k n"],
    *,
    inner_steps: int = 100,
    max_edm: float = 1e-8,
):
    """The profiled nll at each row of `z_fixed` (its `held` coordinates): each of the `s` sequences
    is walked in order from `z_hat`, every inner fit started from the previous one moved along the
    Gaussian profile direction."""
    mask = free & ~held
    metric0 = _positive_inverse(hessian, mask)
    u = _gaussian_direction(hessian, metric0, held.astype(z_hat.dtype))
    stop_edm, _ = _stop_edm(objective(z_hat), max_edm)
    value_and_grad = jax.value_and_grad(objective)

    def walk(rows):
        def step(carry, fixed_row):
            z, metric = carry
            shift = jnp.sum(jnp.where(held, fixed_row - z, 0.0))
            z_try = jnp.where(held, fixed_row, z + shift * u)
            inner = _unevaluated(z_try, metric, jnp.zeros((), z.dtype))
            inner = _bfgs(value_and_grad, inner, mask, inner_steps + 1, stop_edm)
            return (inner.z, inner.metric), (inner.value, inner.z, inner.edm <= max_edm)

        return jax.lax.scan(step, (z_hat, metric0), rows)[1]

    return jax.vmap(walk)(z_fixed)
