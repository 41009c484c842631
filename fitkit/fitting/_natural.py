"""Natural-gradient preconditioning as an optax gradient transformation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from .. import tree

__all__ = ["natural_gradient", "NaturalGradientState", "damped_inverse"]


class NaturalGradientState(NamedTuple):
    """State of `natural_gradient`: the damped inverse in use and the step count."""

    inverse: Float[Array, "n n"]
    count: Array


def damped_inverse(matrix: Float[Array, "n n"], damping: float = 1e-10) -> Float[Array, "n n"]:
    """`F^-1` from one eigen-decomposition, damped and independent of the params' units.

    `F` is first normalised by its diagonal, `S F S` with `S = diag(F)^-1/2`,
    so that params of very different sizes do not wreck the precision of the
    decomposition; eigenvalues of the normalised matrix below `damping` times
    the largest are raised to that floor, so unconstrained directions get
    bounded steps instead of infinite ones. Returns `S (S F S + floor)^-1 S`.
    """
    matrix = 0.5 * (matrix + matrix.T)
    diag = jnp.diag(matrix)
    scale = jnp.where(diag > 0, 1.0 / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), 1.0)
    eigenvalues, vectors = jnp.linalg.eigh(scale[:, None] * matrix * scale[None, :])
    floor = damping * jnp.max(jnp.abs(eigenvalues))
    inverse_values = 1.0 / (jnp.maximum(eigenvalues, 0.0) + floor)
    inverse = (vectors * inverse_values[None, :]) @ vectors.T
    return scale[:, None] * inverse * scale[None, :]


def natural_gradient(
    matrix: Float[Array, "n n"] | Callable[[Any], Float[Array, "n n"]],
    damping: float = 1e-10,
    refresh_every: int | None = None,
    parametrisation: Any = None,
) -> optax.GradientTransformation:
    """Precondition gradients with the inverse of a Fisher or Hessian matrix.

    The flat gradient `g` becomes `F^-1 g`, so an optimiser that follows (any
    optax transformation, chained after this one) steps in the natural
    geometry of the problem: with `optax.sgd(1.0)` after it, a quadratic loss
    whose Hessian is `F` is minimised in one step. Parameters of wildly
    different scales then share one learning rate.

    Args:
        matrix: the `(n, n)` curvature of the *loss being minimised* in
            `fk.tree.ravel` order (e.g. `fk.fisher(prob, p) * 2 / prob.n_data`
            for `prob.loss`), or a function `params -> matrix` when it is to
            be refreshed during the fit.
        damping: relative damping of small eigenvalues (see `damped_inverse`).
        refresh_every: with a function for `matrix`, recompute it at the
            current params every this many steps (the transformation must then
            be given `params` in `update`).

    Returns:
        An `optax.GradientTransformation`.

    Raises:
        ValueError: `refresh_every` without a function, or a non-positive value.

    Example:
        >>> F = fk.fisher(prob, params) * 2 / prob.n_data
        >>> opt = optax.chain(fk.natural_gradient(F), optax.sgd(0.5))
    """
    refresh = callable(matrix)
    if refresh_every is not None and (not refresh or refresh_every < 1):
        raise ValueError(
            "refresh_every needs a function params -> matrix and a positive step count, "
            f"got refresh_every={refresh_every!r} with a {'function' if refresh else 'fixed matrix'}"
        )

    def init(params):
        flat, _ = tree.ravel(params)
        start = matrix(params) if refresh else jnp.asarray(matrix, flat.dtype)
        if start.shape != (flat.size, flat.size):
            raise ValueError(
                f"the preconditioning matrix has shape {start.shape}, but the params have "
                f"{flat.size} scalars; pass an ({flat.size}, {flat.size}) matrix in fk.tree.ravel order"
            )
        return NaturalGradientState(damped_inverse(start, damping), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        inverse = state.inverse
        if refresh_every is not None:
            if params is None:
                raise ValueError("natural_gradient(refresh_every=...) needs params in update(...)")
            inverse = jax.lax.cond(
                (state.count > 0) & (state.count % refresh_every == 0),
                lambda p: damped_inverse(matrix(p), damping).astype(inverse.dtype),
                lambda p: inverse,
                params,
            )
        flat, unravel = tree.ravel(updates)
        preconditioned = unravel((inverse @ flat).astype(flat.dtype))
        return preconditioned, NaturalGradientState(inverse, state.count + 1)

    return optax.GradientTransformation(init, update)


def _latent_preconditioner(problem, params, precondition, damping, refresh_every, parametrisation):
    """Natural gradients in the unconstrained space of a parametrisation: its curvature there,
    the identity for the params that are not free (their gradient is zero)."""
    from .._reduced import latent_curvature
    from ..projection import CURVATURES

    if not isinstance(precondition, str) or precondition not in CURVATURES:
        raise ValueError(
            "with bounds, ties or fixed params the fit runs in the unconstrained space of the free "
            f"params; give precondition='fisher' or 'hessian' (one of {CURVATURES}) and it is computed there"
        )
    scale = 2.0 / problem.n_data
    free = jnp.asarray(parametrisation.free)
    layout = parametrisation.layout

    def at(z_tree):
        matrix = latent_curvature(problem, parametrisation, layout.to_latent(z_tree), precondition)
        both = free[:, None] & free[None, :]
        return jnp.where(both, scale * matrix, jnp.diag(jnp.where(free, 0.0, 1.0)))

    if refresh_every is not None:
        return natural_gradient(at, damping, refresh_every)
    return natural_gradient(at(layout.to_params(parametrisation.to_latent(params))), damping)


def preconditioner(
    problem,
    params: Any,
    precondition: Any,
    damping: float = 1e-10,
    refresh_every: int | None = None,
    parametrisation: Any = None,
) -> optax.GradientTransformation:
    """The `natural_gradient` transformation that `fk.fit(precondition=...)` chains first.

    `precondition` is the curvature of the problem's `nll` (an `(n, n)`
    Fisher or Hessian matrix, `"fisher"`, `"hessian"`, or an `fk.Projection`,
    whose `P P^T` is the inverse curvature). `fit` minimises `problem.loss`,
    which is `2 / n_data` times the nll up to a constant, so the matrix is
    scaled by that factor: a learning rate of 1 is then a Newton step.

    Raises:
        ValueError: a matrix of the wrong shape, an unknown curvature name, or
            `refresh_every` with a fixed matrix.
        TypeError: `precondition` of another type.
    """
    from .. import curvature
    from ..projection import CURVATURES, Projection

    scale = 2.0 / problem.n_data
    n = tree.size(params)

    def at(p, kind):
        matrix = curvature.fisher(problem, p) if kind == "fisher" else curvature.hessian(problem.nll, p)
        return scale * matrix

    if parametrisation is not None:
        return _latent_preconditioner(problem, params, precondition, damping, refresh_every, parametrisation)
    if isinstance(precondition, str):
        if precondition not in CURVATURES:
            raise ValueError(
                f"unknown precondition {precondition!r}; give a matrix, an fk.Projection or one of {CURVATURES}"
            )
        if refresh_every is not None:
            return natural_gradient(lambda p: at(p, precondition), damping, refresh_every)
        return natural_gradient(at(params, precondition), damping)
    if refresh_every is not None:
        raise ValueError(
            "refresh_every needs precondition='fisher' or 'hessian', to recompute it at new params"
        )
    if isinstance(precondition, Projection):
        if precondition.center.size != n:
            raise ValueError(f"the projection has {precondition.center.size} params but params have {n}")
        matrix = precondition.inverse.T @ precondition.inverse
    elif hasattr(precondition, "shape"):
        matrix = jnp.asarray(precondition)
    else:
        raise TypeError(
            f"precondition must be an (n, n) matrix, an fk.Projection, 'fisher' or 'hessian'; got {type(precondition).__name__}"
        )
    if matrix.shape != (n, n):
        raise ValueError(f"the preconditioning matrix has shape {matrix.shape}; the params need ({n}, {n})")
    return natural_gradient(scale * matrix, damping)
