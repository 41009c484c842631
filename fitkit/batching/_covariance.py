"""The covariance of every member of a batch: the inverse Hessian of each member's nll at its fit."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from .. import tree
from ._result import BatchResult
from ._stack import Batch, BatchError, batch_size_of
from ._verdict import _curvature, _scales

__all__ = ["BatchCovariance", "covariance_batch"]


class BatchCovariance(eqx.Module):
    """Per member: the covariance matrix of the flat params and the standard deviations.

    Attributes:
        matrix: `(size, n, n)`; NaN rows for members whose Hessian is not positive definite.
        std: a pytree shaped like the params (a leading batch axis): the standard deviations.
        mean: the params the covariances belong to.
        names: the flat param names.
        ok: per member, whether its Hessian was positive definite (its covariance is defined).

    Example:
        >>> cov = fk.covariance(survey, res)
        >>> pulls = (res.params["amp"] - truth) / cov.std["amp"]
    """

    matrix: np.ndarray
    std: Any
    mean: Any
    names: tuple[str, ...] = eqx.field(static=True)
    ok: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, bool))


def covariance_batch(batch: Batch, result: BatchResult | Any) -> BatchCovariance:
    """The Hessian covariance of every member at its params, in one compiled call (see `fk.covariance`).

    Each member's Hessian is normalised by its diagonal and inverted through its eigenvalues,
    as `fk.covariance(method="hessian")` does; a member whose Hessian is not positive definite
    (a flat or unconstrained direction) gets NaN instead of an error, and `ok` False.

    Raises:
        BatchError: params of another length than the batch.
        ValueError: a batch whose problem declares bounds, ties or fixed params (not batched yet).
    """
    params = result.params if isinstance(result, BatchResult) else result
    if batch_size_of(params, "the params") != batch.size:
        raise BatchError(
            f"the params hold {batch_size_of(params, 'the params')} members, the batch {batch.size}"
        )
    if batch.member(0).declares():
        raise ValueError(
            "fk.covariance on a batch does not yet handle bounds, ties or fixed params; "
            "take each member's covariance with fk.covariance(batch.member(i), ...)"
        )
    _, _, hessian, _ = _curvature(batch.problem, params, None)
    hessian = np.asarray(hessian, np.float64)
    finite = np.all(np.isfinite(hessian), axis=(1, 2))
    safe = np.where(finite[:, None, None], hessian, 0.0)
    scale = _scales(np.diagonal(safe, axis1=1, axis2=2))
    values, vectors = np.linalg.eigh(scale[:, :, None] * safe * scale[:, None, :])
    n = hessian.shape[1]
    top = np.maximum(values.max(axis=1), 0.0)
    ok = finite & (top > 0) & (values.min(axis=1) > n * np.finfo(np.float64).eps * top)
    inverse = np.einsum("bij,bj,bkj->bik", vectors, 1.0 / np.where(ok[:, None], values, 1.0), vectors)
    matrix = np.where(ok[:, None, None], scale[:, :, None] * inverse * scale[:, None, :], np.nan)
    std = np.sqrt(np.diagonal(matrix, axis1=1, axis2=2))
    layout = tree.Layout.of(jax.tree.map(lambda x: x[0], params))
    std_tree = jax.vmap(layout.to_params)(std)
    return BatchCovariance(
        matrix, std_tree, params, tuple(tree.names(jax.tree.map(lambda x: x[0], params))), ok
    )
