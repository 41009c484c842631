"""A problem's objectives seen through a `Parametrisation`: functions of one flat vector.

They are equinox Modules, so the compiled curvature and verdict functions,
which take the function as an argument, are reused when only the arrays of
the parametrisation (which params are fixed, their values) change.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["OnFlat", "OnLatent", "latent_curvature"]


class OnFlat(eqx.Module):
    """`objective(parametrisation.complete(x))`: in the physical flat values `x` (for errors and the verdict)."""

    problem: Any
    parametrisation: Any
    objective: str = eqx.field(static=True, default="nll")

    def __call__(self, x: Float[Array, " n"]) -> Any:
        return getattr(self.problem, self.objective)(self.parametrisation.complete(x))


class OnLatent(eqx.Module):
    """`objective(parametrisation.to_params(z))`: in the unconstrained vector `z` (for whitening and sampling).

    With `jacobian=True` the log-Jacobian of the bounds is subtracted from an
    `nll`, so its minimum is the mode of the density of `z` (CmdStan's `jacobian=True`).
    """

    problem: Any
    parametrisation: Any
    objective: str = eqx.field(static=True, default="nll")
    jacobian: bool = eqx.field(static=True, default=False)

    def __call__(self, z: Float[Array, " n"]) -> Any:
        value = getattr(self.problem, self.objective)(self.parametrisation.to_params(z))
        if self.jacobian:
            value = value - self.parametrisation.log_det_jacobian(z)
        return value


def latent_curvature(problem, parametrisation, z, kind: str, jacobian: bool = False):
    """The `(n, n)` curvature of `problem.nll` in the unconstrained vector `z`: its Hessian, or the
    Fisher information `J^T J` of `problem.fisher_root` plus the Hessian of `problem.hessian_terms`
    (`kind="fisher"`).

    With `jacobian=True` the log-Jacobian of the bounds is part of the function (the density a
    sampler sees). Rows of params that are not free are zero.
    """
    from .curvature import hessian
    from .curvature import jacobian as jacobian_of

    if kind == "hessian":
        return hessian(OnLatent(problem, parametrisation, "nll", jacobian), z)
    matrix = jnp.zeros((z.size, z.size), z.dtype)
    if problem.n_fisher:
        jac = jacobian_of(OnLatent(problem, parametrisation, "fisher_root"), z)
        matrix = jac.T @ jac
    if problem.has_hessian_terms or jacobian:
        matrix = matrix + hessian(OnLatent(problem, parametrisation, "hessian_terms", jacobian), z)
    return matrix
