"""Fisher information (Gauss-Newton matrix) `J^T W J` of a Problem, plus its priors' curvature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .. import tree
from .._checks import refuse_batch
from .._config import warn_if_float32
from ..problem import Problem
from ..results import start_params
from ._blocks import (
    check_batch_size,
    chunked,
    map_blocks,
    memory_budget,
    one_hot,
    plan_batch_size,
    rows_in_chunks,
)
from ._flat import flatten, is_tracing
from ._jacobian import jacobian

__all__ = ["fisher", "prior_curvature", "whitened_jacobian", "check_problem"]


def check_problem(problem: Any, params: Any, what: str) -> Any:
    """Validate `problem` and `params` (a pytree or a FitResult) before anything is compiled."""
    refuse_batch(problem, what)
    if not isinstance(problem, Problem):
        raise TypeError(f"{what} needs an fk.Problem as its first argument, got {type(problem).__name__}")
    params = start_params(params)
    if not is_tracing(params):
        problem.check(params)
    return params


def prior_curvature(problem: Problem, params: Any) -> Float[Array, "n n"] | None:
    """The Hessian of `problem.hessian_terms` (the negative log-prior, and custom log-likelihoods
    with no Fisher information of their own), or `None` when there are none."""
    if not problem.has_hessian_terms:
        return None
    return _hessian_of_terms(problem, params)


@eqx.filter_jit
def _hessian_of_terms(problem: Problem, params: Any) -> Float[Array, "n n"]:
    x, unravel = tree.ravel(params)
    return jax.hessian(lambda z: problem.hessian_terms(unravel(z)))(x)


def whitened_jacobian(
    problem: Problem,
    params: Any,
    batch_size: int | None = None,
    max_memory: int | float | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool | None = False,
) -> Float[Array, "m n"]:
    """The Jacobian of `problem.fisher_root`: its Gram matrix is the likelihood's Fisher information.

    For normal data with fixed errors this is (minus) the Jacobian of `problem.residuals`.
    """
    if problem.n_fisher == 0:  # only custom log-likelihoods: no rows
        return jnp.zeros((0, tree.size(params)), jnp.result_type(float))
    return jacobian(
        problem.fisher_root,
        params,
        batch_size=batch_size,
        max_memory=max_memory,
        devices=devices,
        progress=progress,
    )


def _gauss_newton_rows(problem: Problem, x, unravel):
    """Rows of `J^T J` (J the Jacobian of `fisher_root`) for one-hot vectors, one JVP and one VJP each."""
    root = lambda z: problem.fisher_root(unravel(z))
    _, jvp = jax.linearize(root, x)
    vjp = jax.linear_transpose(jvp, x)
    n = x.size
    return lambda idx: jax.vmap(lambda e: vjp(jvp(e))[0])(one_hot(idx, n, x.dtype))


@eqx.filter_jit
def _fisher_products(problem: Problem, params: Any, batch_size: int, devices: tuple | None):
    x, unravel = tree.ravel(params)
    return map_blocks(_gauss_newton_rows(problem, x, unravel), x.size, batch_size, devices)


@eqx.filter_jit
def _fisher_rows(problem: Problem, params: Any, idx):
    """The rows of `J^T J` of the indices `idx` (`(k, b)`); an index `>= n` gives zeros."""
    x, unravel = tree.ravel(params)
    rows = jax.lax.map(_gauss_newton_rows(problem, x, unravel), idx)
    return rows.reshape(-1, x.size)


@eqx.filter_jit
def _fisher_dense(jac: Float[Array, "m n"]) -> Float[Array, "n n"]:
    return jac.T @ jac


def fisher(
    problem: Problem,
    params: Any,
    *,
    batch_size: int | None = None,
    max_memory: int | float | None = None,
    devices: Sequence[jax.Device] | None = None,
    progress: bool | None = False,
) -> Float[Array, "n n"]:
    """The Fisher information (Gauss-Newton matrix) of a problem at `params`, plus prior curvature.

    `F = J^T J + H_rest`, with `J` the Jacobian of `problem.fisher_root`
    (each family's expected Fisher information: `J_mu^T diag(1/sigma^2) J_mu`
    for normal data, `1 / rate` weights for Poisson, `J^T C^-1 J` for a
    `MultivariateNormal`, plus rows for fitted noise terms; the empirical
    outer-product Fisher for unbinned data) and `H_rest` the Hessian of
    `problem.hessian_terms`: the negative log-prior, and the negative
    log-likelihood of observations with a custom `log_likelihood`, which
    have no Fisher information of their own. When J fits in `max_memory` it is built in batched JVP
    blocks and multiplied out; otherwise each block of columns of F comes from
    one JVP and one VJP per column, so J is never held whole. For a Gaussian
    likelihood at the optimum F matches the Hessian of `problem.nll` up to the
    residual term `-sum_i w_i r_i d^2 prediction_i`. Works under `jax.jit` and `jax.vmap`.

    Args:
        problem: the `fk.Problem`.
        params: the point: a params pytree or a `FitResult`.
        batch_size: columns per block; `None` plans it from `max_memory`.
        max_memory: memory budget in bytes (default: a quarter of device memory, or 2 GiB).
        devices: devices to spread the blocks over (default: all).
        progress: a bar of the blocks of columns done (as for `fk.hessian`).

    Returns:
        The `(n, n)` matrix in `fitkit.tree.ravel` order.

    Raises:
        TypeError: `problem` is not an `fk.Problem`, or params are not float arrays.
        ParamsError: params do not fit the problem.

    Example:
        >>> F = fk.fisher(problem, result)
        >>> cov = np.linalg.inv(F)
    """
    params = check_problem(problem, params, "fk.fisher")
    x, _, unravel = flatten(problem.fisher_root, params)
    n, m = x.size, problem.n_fisher
    warn_if_float32(x.dtype, "The Fisher information")
    batch_size = check_batch_size(batch_size, n)
    if m == 0:
        matrix = jnp.zeros((n, n), x.dtype)
    elif 3 * m * n * x.dtype.itemsize <= memory_budget(max_memory):
        matrix = _fisher_dense(whitened_jacobian(problem, params, batch_size, max_memory, devices, progress))
    else:
        if batch_size is None:

            def make_block(b):
                return lambda z: _gauss_newton_rows(problem, z, unravel)(jnp.arange(b))

            fixed = 2 * n * n * x.dtype.itemsize
            batch_size = plan_batch_size(make_block, x, n, max_memory, fixed, devices, (problem, params))
        if chunked(progress, n, batch_size, devices, params):
            rows = rows_in_chunks(
                lambda idx: _fisher_rows(problem, params, idx), n, batch_size, progress, "fisher"
            )
            matrix = jnp.asarray(0.5 * (rows + rows.T))
        else:
            rows = _fisher_products(
                problem, params, batch_size, tuple(devices) if devices is not None else None
            )
            matrix = 0.5 * (rows + rows.T)
    prior = prior_curvature(problem, params)
    return matrix if prior is None else matrix + prior
