"""The verdict of every member of a batch: the same test as `fitkit._verdict.assess`, vectorised."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import tree
from .._reduced import OnFlat
from .._verdict import default_max_edm

__all__ = ["assess_batch", "refine_batch"]


@eqx.filter_jit
def _curvature(problem, params, parametrisation):
    """Per member: the nll, its flat gradient and Hessian, in the physical units the verdict uses."""

    def one(problem, params):
        if parametrisation is None:
            x, unravel = tree.ravel(params)
            f = lambda z: problem.nll(unravel(z))  # noqa: E731
        else:
            x, f = parametrisation.flat(params), OnFlat(problem, parametrisation)
        value, grad = jax.value_and_grad(f)(x)
        return value, grad, jax.hessian(f)(x), jnp.all(jnp.isfinite(x))

    return eqx.filter_vmap(one)(problem, params)


def _scales(diagonals: np.ndarray) -> np.ndarray:
    """`fitkit.curvature._diagnose._scale` per row: 1/sqrt(diagonal), the others' scale where it is not positive."""
    positive = diagonals > 0
    largest = np.where(positive, diagonals, 0.0).max(axis=1, keepdims=True)
    fallback = np.where(largest > 0, 1.0 / np.sqrt(np.where(largest > 0, largest, 1.0)), 1.0)
    return np.where(positive, 1.0 / np.sqrt(np.where(positive, diagonals, 1.0)), fallback)


def assess_batch(
    problem, params: Any, engine_flags: dict[str, np.ndarray], *, max_edm=None, parametrisation=None
):
    """`(valid, edm, flags, value, newton)` per member; `flags` maps each flag name to a boolean
    array, `value` is the nll and `newton` the Newton step `-H^-1 g` on the flat free values
    (zero where the curvature is not positive definite).

    `engine_flags` are the engine's own per-member flags (`call_limit`, `solver_failed`).
    """
    leaves = jax.tree.leaves(params)
    dtype = jnp.result_type(leaves[0])
    max_edm = default_max_edm(dtype) if max_edm is None else float(max_edm)
    value, grad, hessian, finite_x = (
        np.asarray(a, np.float64) for a in _curvature(problem, params, parametrisation)
    )
    if parametrisation is not None:
        keep = parametrisation.independent()
        grad, hessian = grad[:, keep], hessian[:, keep][:, :, keep]
    size = grad.shape[1]
    finite = np.isfinite(value) & np.all(np.isfinite(grad), axis=1) & (finite_x > 0)
    curvature_finite = np.all(np.isfinite(hessian), axis=(1, 2))
    eps = float(jnp.finfo(dtype).eps)
    rtol = size * eps
    safe = np.where(curvature_finite[:, None, None], hessian, 0.0)
    scale = _scales(np.diagonal(safe, axis1=1, axis2=2))
    values, vectors = np.linalg.eigh(scale[:, :, None] * safe * scale[:, None, :])
    top = np.maximum(values.max(axis=1), 0.0)
    positive = (top > 0) & (values.min(axis=1) > rtol * top)
    scaled = np.einsum("bji,bj->bi", vectors, scale * np.where(np.isfinite(grad), grad, 0.0))
    kept = values > rtol * top[:, None]
    edm = 0.5 * np.sum(np.where(kept, scaled**2 / np.where(kept, values, 1.0), 0.0), axis=1)
    edm = np.where(positive, edm, np.inf)
    edm = np.where(finite & ~curvature_finite, np.nan, edm)
    edm = np.where(finite, edm, np.nan)
    flags = {name: np.asarray(mask, bool) for name, mask in engine_flags.items()}
    flags["non_finite"] = ~finite | (finite & ~curvature_finite)
    judged = finite & curvature_finite
    flags["curvature_not_positive_definite"] = judged & ~positive
    flags["above_max_edm"] = judged & positive & ~(edm <= max_edm)
    valid = ~np.any(np.stack(list(flags.values())), axis=0)
    inverse = np.where(kept, scaled / np.where(kept, values, 1.0), 0.0)
    newton = -scale * np.einsum("bij,bj->bi", vectors, inverse)
    newton = np.where((judged & positive)[:, None], newton, 0.0)
    return valid, edm, flags, value, newton


@eqx.filter_jit
def _flat(params, parametrisation):
    if parametrisation is None:
        return jax.vmap(lambda p: tree.ravel(p)[0])(params)
    return jax.vmap(parametrisation.flat)(params)


@eqx.filter_jit
def _unflat(x, like, parametrisation):
    if parametrisation is None:
        unravel = tree.ravel(jax.tree.map(lambda a: a[0], like))[1]
        return jax.vmap(unravel)(x)
    return jax.vmap(parametrisation.complete)(x)


def refine_batch(problem, params, verdict, engine_flags, *, max_edm=None, parametrisation=None):
    """`fitkit._verdict.refine` for every member: one Newton step from each valid result, kept per
    member where the new point is valid, not higher and has a lower EDM (and stays inside the bounds)."""
    from .._verdict import POLISHED, ROUNDING

    valid, edm, flags, value, newton = verdict
    move = valid & (edm > POLISHED)
    if not move.any():
        return params, verdict
    x = np.asarray(_flat(params, parametrisation), np.float64)
    keep = np.arange(x.shape[1]) if parametrisation is None else parametrisation.independent()
    x_new = x.copy()
    x_new[:, keep] += np.where(move[:, None], newton, 0.0)
    if parametrisation is not None:
        lower, upper = np.asarray(parametrisation.lower)[keep], np.asarray(parametrisation.upper)[keep]
        move &= np.all((x_new[:, keep] > lower) & (x_new[:, keep] < upper), axis=1)
        x_new = np.where(move[:, None], x_new, x)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    candidate = _unflat(jnp.asarray(x_new, dtype), params, parametrisation)
    new = assess_batch(problem, candidate, engine_flags, max_edm=max_edm, parametrisation=parametrisation)
    rounding = ROUNDING * float(jnp.finfo(dtype).eps) * np.maximum(np.abs(value), 1.0)
    take = move & new[0] & (new[1] <= edm) & (new[3] <= value + rounding)

    def pick(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return np.where(take.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    refined = jax.tree.map(lambda a, b: jnp.asarray(pick(a, b)), candidate, params)
    flags_out = {name: pick(new[2][name], mask) for name, mask in flags.items()}
    return refined, (
        pick(new[0], valid),
        pick(new[1], edm),
        flags_out,
        pick(new[3], value),
        pick(new[4], newton),
    )
