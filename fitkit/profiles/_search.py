"""The two loops that drive the ray machine (`_machine.py`): one compiled call, or Python over a compiled gradient.

- `"compiled"`: a `lax.while_loop` over `advance` and the `vmap`ped gradient
  of every ray: one compiled call for all the searches, the rays sharded over
  the local devices when there are several. Best where a batch of gradients
  costs about one (an accelerator) and where the call is repeated.
- `"host"`: a Python loop that evaluates each ray's trial point with the
  gradient the verdict of a fit has already compiled (`fitkit._verdict`), and
  runs `advance` in NumPy. Nothing is compiled, which on a CPU makes the first
  call as fast as later ones.

`engine="auto"` takes `"host"` on a CPU and `"compiled"` elsewhere.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Bool, Float

from .._reduced import OnFlat
from .._verdict import _value_and_grad
from ._machine import Settings, State, advance, rays, start

__all__ = ["Objective", "Found", "run", "ENGINES"]

ENGINES = ("auto", "compiled", "host")


class Objective(eqx.Module):
    """The nll of a problem as a function of the physical flat values `x` of a parametrisation."""

    problem: Any
    parametrisation: Any
    declared: bool = eqx.field(static=True)

    def __call__(self, x: Float[Array, " n"]):
        return OnFlat(self.problem, self.parametrisation)(x)

    def host_value_and_grad(self, x: Float[Array, " n"]):
        """The nll and its flat gradient at `x`, through the verdict's compiled function (the same
        function and argument structure a fit's verdict uses, so a fit has compiled it already)."""
        if self.declared:
            return _value_and_grad(OnFlat(self.problem, self.parametrisation), x)
        return _value_and_grad(self.problem.nll, _host_params(self.parametrisation.layout, x))


def _host_params(layout, x: np.ndarray):
    """`layout.to_params(x)` in NumPy (no device work; the compiled gradient takes NumPy leaves as
    it takes JAX ones, with the same shapes and dtypes)."""
    leaves, offset = [], 0
    for shape, dtype in zip(layout.shapes, layout.dtypes):
        size = math.prod(shape)
        leaves.append(np.reshape(x[offset : offset + size], shape).astype(dtype))
        offset += size
    return jax.tree.unflatten(layout.treedef, leaves)


class Found(NamedTuple):
    """Per ray: where it stopped (its last settled inner fit) and what it found.

    Attributes:
        r: the distance along the ray (units of its direction).
        delta: the profiled rise of the nll there.
        z: the unconstrained vector of the profile point.
        converged: the rise matches the target to the tolerance.
        inner_ok: the inner minimisation converged at the last point.
        capped: the ray reached its end (a bound or far out) below the target: one-sided.
        below: the profile fell below the optimum somewhere (a lower minimum exists).
        evaluations: the gradients the ray took.
        walk_value, walk_z, walk_ok: a profile walk's nll, point and convergence at each of its r.
        devices: how many devices the rays were spread over.
    """

    r: Float[Array, " m"]
    delta: Float[Array, " m"]
    z: Float[Array, "m n"]
    converged: Bool[Array, " m"]
    inner_ok: Bool[Array, " m"]
    capped: Bool[Array, " m"]
    below: Bool[Array, " m"]
    evaluations: Array
    walk_value: Array
    walk_z: Array
    walk_ok: Array
    devices: int = 1


def _physical(parametrisation, z):
    """`x = constrain(z)` and `dx/dz` of each row (the bijection is elementwise)."""
    one = jnp.ones_like(z[0])
    return jax.vmap(lambda row: jax.jvp(parametrisation.constrain, (row,), (one,)))(z)


_physical_compiled = eqx.filter_jit(_physical)


@eqx.filter_jit
def _run_compiled(objective, settings, ray, *, walk, inner_steps, outer_steps, max_steps):
    value_and_grad = jax.vmap(jax.value_and_grad(objective))
    settings = Settings(*(jnp.asarray(v) for v in settings))
    ray = rays(jnp, *ray)
    options = {"walk": walk, "inner_steps": inner_steps, "outer_steps": outer_steps}

    def cond(carry):
        i, state = carry
        return (i < max_steps) & ~jnp.all(state.done)

    def body(carry):
        i, state = carry
        x, dx_dz = _physical(objective.parametrisation, state.trial)
        value, grad = value_and_grad(x)
        return i + 1, advance(jnp, settings, ray, state, value, grad, dx_dz, **options)

    return ray, jax.lax.while_loop(cond, body, (0, start(jnp, settings, ray)))[1]


def _run_host(objective, settings, ray, *, walk, inner_steps, outer_steps, max_steps, on_step=None):
    """The same search in NumPy, each trial point evaluated by the fit's compiled gradient;
    `on_step(done)` sees which rays have finished after every step."""
    options = {"walk": walk, "inner_steps": inner_steps, "outer_steps": outer_steps}
    parametrisation = objective.parametrisation
    bounded = parametrisation.bounded()
    dtype = np.asarray(parametrisation.reference).dtype
    settings = Settings(*(np.asarray(v, np.float64) for v in settings))
    ray = rays(np, *(np.asarray(a) for a in ray))
    m, n = ray.held.shape
    with np.errstate(all="ignore"):
        state = start(np, settings, ray)
        for _ in range(max_steps):
            if state.done.all():
                break
            if bounded:
                x, dx_dz = (
                    np.asarray(a, np.float64)
                    for a in _physical_compiled(parametrisation, jnp.asarray(state.trial))
                )
            else:
                x, dx_dz = state.trial, np.ones((m, n))
            # Dispatch every gradient first, then read them: JAX runs them while Python goes on.
            rows = np.asarray(x, dtype)
            pending = [(k, objective.host_value_and_grad(rows[k])) for k in np.flatnonzero(~state.done)]
            values, grads = np.zeros(m), np.zeros((m, n))
            for k, (value, grad) in pending:
                values[k], grads[k] = float(value), np.asarray(grad)
            state = advance(np, settings, ray, state, values, grads, dx_dz, **options)
            if on_step is not None:
                on_step(np.asarray(state.done))
    return ray, state


def run(
    objective: Objective,
    settings: Settings,
    ray: tuple,
    *,
    walk: bool,
    engine: str,
    inner_steps: int,
    outer_steps: int,
    on_step=None,
) -> Found:
    """Every ray's search, driven by `engine` (see the module), to its end.

    `ray` is `(hessian, free, held, direction, cap, schedule)` as host arrays (see `rays`).
    `on_step(done)` is called with the rays' done flags after every host step (the host
    engine only: the compiled engine is one call).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        engine = "host" if jax.default_backend() == "cpu" else "compiled"
    length = np.shape(ray[-1])[1]
    max_steps = (length if walk else outer_steps) * (inner_steps + 1)
    options = {"walk": walk, "inner_steps": inner_steps, "outer_steps": outer_steps, "max_steps": max_steps}
    m = np.shape(ray[2])[0]
    devices = 1
    if engine == "host":
        ray, state = _run_host(objective, settings, ray, **options, on_step=on_step)
    else:
        placed, devices = _spread(ray)
        ray, state = _run_compiled(objective, settings, placed, **options)
        # Cut the padding rays off again.
        ray = type(ray)(*(np.asarray(a)[:m] for a in ray))
        state = State(*(np.asarray(a)[:m] for a in state))
    state = State(*(np.asarray(a) for a in state))
    capped = (state.last_r >= np.asarray(ray.cap) * (1 - 1e-12)) & (state.last_rise < float(settings.target))
    return Found(
        state.last_r,
        state.last_rise,
        state.last_z,
        state.last_hit,
        state.last_ok,
        capped,
        state.below,
        state.evaluations,
        state.walk_value,
        state.walk_z,
        state.walk_ok,
        devices,
    )


def _spread(ray: tuple) -> tuple[tuple, int]:
    """The rays sharded over the local devices (a 1-D mesh over the ray axis, padded with copies
    of the last ray to a multiple of their number); unchanged on one device."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return ray, 1
    hessian, free, held, direction, cap, schedule = ray
    m = held.shape[0]
    padded = -(-m // len(devices)) * len(devices)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], padded - m, axis=0)])  # noqa: E731
    mesh = Mesh(np.asarray(devices), ("rays",))
    per_ray = lambda a: jax.device_put(pad(a), NamedSharding(mesh, P("rays", *([None] * (a.ndim - 1)))))  # noqa: E731
    shared = lambda a: jax.device_put(a, NamedSharding(mesh, P()))  # noqa: E731
    return (shared(hessian), shared(free), *(per_ray(a) for a in (held, direction, cap, schedule))), len(
        devices
    )
