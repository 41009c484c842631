"""Correlated Gaussian noise: one multivariate normal over all of an observation's points."""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, Float, Int

from ._base import Data, Likelihood, LikelihoodError, concrete

__all__ = ["MultivariateNormal"]


class MultivariateNormal(Likelihood):
    """Correlated Gaussian noise: `data.ravel() ~ N(prediction.ravel(), C)`.

    For noise correlated across pixels or time. Give the covariance `C`
    (`n x n` for `n = data.size`, in `data.ravel()` order) or its lower
    Cholesky factor. Masked points are marginalised out (their rows and
    columns dropped). Everything is computed with triangular solves against
    the Cholesky factor of the used block, never an explicit inverse. The
    whitened residuals `L^-1 (data - prediction)` are a sum of squares, so
    least-squares solvers apply; the expected Fisher information is
    `J^T C^-1 J`. The observation's `error` is not used.

    Args:
        covariance: the `(n, n)` covariance matrix (symmetric, positive definite).
        cholesky: or its lower-triangular Cholesky factor.

    Raises:
        ValueError: neither or both are given.

    Example:
        >>> C = 0.1**2 * jnp.exp(-jnp.abs(t[:, None] - t[None, :]) / 3.0)   # an OU kernel
        >>> obs = LightCurve(data=flux, t=t, likelihood=fk.MultivariateNormal(covariance=C))
    """

    covariance: Float[Array, "n n"] | None = None
    cholesky: Float[Array, "n n"] | None = None
    index: Int[Array, " m"] | None = eqx.field(default=None, kw_only=True)
    prepared_from_data: ClassVar[bool] = True  # the Cholesky factor of the block of used points

    def __check_init__(self):
        if (self.covariance is None) == (self.cholesky is None):
            raise ValueError("MultivariateNormal needs exactly one of covariance= or cholesky=")

    def prepare(self, obs) -> MultivariateNormal:
        if self.index is not None:  # prepared already (a sub-problem of prepared observations)
            return self
        label = obs.describe()
        n = int(np.size(obs.data))
        given = self.covariance if self.covariance is not None else self.cholesky
        what = "covariance" if self.covariance is not None else "cholesky"
        if np.shape(given) != (n, n):
            raise LikelihoodError(
                f"{label}: the MultivariateNormal {what} has shape {np.shape(given)}, but the data have "
                f"{n} points (shape {np.shape(obs.data)}); give an ({n}, {n}) matrix in data.ravel() order"
            )
        if not concrete(given, obs.data):
            return self
        matrix = np.asarray(given, np.float64)
        if not np.isfinite(matrix).all():
            raise LikelihoodError(f"{label}: the MultivariateNormal {what} has non-finite entries")
        used = np.flatnonzero(np.asarray(obs.valid).ravel())
        if self.covariance is not None:
            if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12 * np.abs(matrix).max()):
                raise LikelihoodError(
                    f"{label}: the MultivariateNormal covariance is not symmetric (largest asymmetry "
                    f"{np.abs(matrix - matrix.T).max():.3g}); symmetrise it, (C + C.T) / 2"
                )
            block = matrix[np.ix_(used, used)]
        else:
            if np.any(np.triu(matrix, 1) != 0):
                raise LikelihoodError(
                    f"{label}: the MultivariateNormal cholesky factor is not lower triangular; give "
                    "np.linalg.cholesky(C), or covariance=C"
                )
            full = matrix @ matrix.T
            block = full[np.ix_(used, used)]
        try:
            factor = np.linalg.cholesky(block)
        except np.linalg.LinAlgError:
            smallest = float(np.linalg.eigvalsh(block).min())
            raise LikelihoodError(
                f"{label}: the MultivariateNormal covariance (of the used points) is not positive "
                f"definite (smallest eigenvalue {smallest:.3g}); check the kernel, or add a small "
                "diagonal (white-noise) term"
            ) from None
        if not (np.diag(factor) > 0).all():
            raise LikelihoodError(f"{label}: the MultivariateNormal covariance is singular")
        dtype = jnp.result_type(float)
        return MultivariateNormal(cholesky=jnp.asarray(factor, dtype), index=jnp.asarray(used, jnp.int32))

    def _whiten(self, vector, data: Data):
        if self.index is None:
            raise LikelihoodError("MultivariateNormal must be prepared by fk.Problem before use")
        return jsl.solve_triangular(self.cholesky, jnp.ravel(vector)[self.index], lower=True)

    def _scatter(self, values, data: Data):
        flat = jnp.zeros(data.valid.size, values.dtype).at[self.index].set(values)
        return flat.reshape(data.valid.shape)

    def log_prob(self, params, prediction, data):
        w = self._whiten(data.values - prediction, data)
        log_det = jnp.sum(jnp.log(jnp.diag(self.cholesky)))
        return -0.5 * jnp.sum(jnp.square(w)) - log_det - 0.5 * w.size * math.log(2 * math.pi)

    def deviance(self, params, prediction, data):
        return jnp.sum(jnp.square(self._whiten(data.values - prediction, data)))

    @property
    def has_residuals(self) -> bool:
        return True

    def residuals(self, params, prediction, data):
        return self._scatter(self._whiten(data.values - prediction, data), data)

    @property
    def fisher_channels(self) -> int:
        return 1

    def fisher_root(self, params, prediction, data):
        return self._scatter(self._whiten(prediction, data), data)[None]

    def n_points(self, data) -> int:
        return int(np.size(self.index)) if self.index is not None else super().n_points(data)

    def describe(self) -> str:
        return "MultivariateNormal"
