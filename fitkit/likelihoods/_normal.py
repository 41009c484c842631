"""Gaussian noise with quoted errors, or with a noise model fitted with the signal."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Data, Likelihood, concrete, require_callable, require_error, where_used

__all__ = ["Normal", "noise_value", "check_positive"]


def noise_value(fn: Callable, params: Any, prediction, data: Data, what: str):
    """A noise model's value at every point, shaped like the data (1 where a point is unused)."""
    value = fn(params, where_used(data, prediction), data.error)
    value = jnp.broadcast_to(jnp.asarray(value, prediction.dtype), prediction.shape)
    return where_used(data, value, 1.0)


def check_positive(values, data: Data, label: str, what: str, hint: str) -> None:
    """Raise ParamsError when concrete `values` are not finite and positive at every used point."""
    from ..problem import ParamsError

    if not concrete(values):
        return
    values = np.broadcast_to(np.asarray(values), np.shape(data.valid))
    bad = (~np.isfinite(values) | (values <= 0)) & np.asarray(data.valid)
    if bad.any():
        shown = ", ".join(f"{v:.6g}" for v in values[bad][:3])
        raise ParamsError(
            f"{label}: {what} is not positive at {int(bad.sum())} of {int(np.sum(data.valid))} used points "
            f"at the start params (e.g. {shown}); {hint}"
        )


class Normal(Likelihood):
    """Gaussian noise: each used point is `data ~ N(prediction, sigma^2)`, independently.

    With `scale=None` (the default, and `likelihood="normal"`), sigma is the
    observation's `error`: fixed data, so the negative log-likelihood is half
    the chi-squared and least-squares solvers apply. With a noise model,
    `scale(params, prediction, error)` returns sigma (a scalar or an array
    shaped like the data) from the params, so noise terms are fitted with
    the signal: a jitter added in quadrature, an error scale, a fraction of
    the model. `error` is the observation's quoted error (None if it has
    none). The normalisation `log sigma` then depends on the params, so the
    likelihood is not a sum of squares: fit it with a minimiser (`fk.solve`
    picks one), not Levenberg-Marquardt.

    Expected Fisher information per point: `(d mu)^2 / sigma^2` with fixed
    errors, plus `2 (d log sigma)^2` with a noise model.

    Args:
        scale: optional noise model `scale(params, prediction, error) -> sigma`.

    Raises:
        TypeError: `scale` is not callable.

    Example:
        >>> # emcee's line with underestimated errors: sigma^2 = yerr^2 + f^2 model^2
        >>> noise = fk.Normal(scale=lambda p, mu, err: jnp.sqrt(err**2 + jnp.exp(2 * p["log_f"]) * mu**2))
        >>> obs = Line(data=y, error=yerr, x=x, likelihood=noise)
    """

    scale: Callable | None = None

    def __check_init__(self):
        require_callable(
            self.scale,
            "Normal(scale=...)",
            "scale(params, prediction, error) -> sigma",
            "for fixed errors give the observation's error instead",
        )

    def prepare(self, obs) -> Normal:
        if self.scale is None:
            require_error(
                obs,
                "a normal likelihood with fixed errors",
                "a noise model fk.Normal(scale=lambda params, prediction, error: ...), or "
                "likelihood='poisson' for counts",
            )
        return self

    def sigma(self, params: Any, prediction, data: Data):
        """The standard deviation of every point (1 where unused)."""
        if self.scale is None:
            return data.error
        return noise_value(self.scale, params, prediction, data, "sigma")

    def _z(self, params, prediction, data):
        sigma = self.sigma(params, prediction, data)
        return where_used(data, (data.values - prediction) / sigma), sigma

    def log_prob(self, params, prediction, data):
        z, sigma = self._z(params, prediction, data)
        value = -0.5 * jnp.square(z) - jnp.log(sigma) - 0.5 * math.log(2 * math.pi)
        return where_used(data, value)

    def deviance(self, params, prediction, data):
        z, sigma = self._z(params, prediction, data)
        value = jnp.sum(jnp.square(z))
        return value if self.scale is None else value + 2.0 * jnp.sum(where_used(data, jnp.log(sigma)))

    @property
    def has_residuals(self) -> bool:
        return self.scale is None

    def residuals(self, params, prediction, data):
        return self._z(params, prediction, data)[0]

    def standardised(self, params, prediction, data):
        return self._z(params, prediction, data)[0]

    def weights(self, params, prediction, data):
        if self.scale is not None:
            return super().weights(params, prediction, data)
        return where_used(data, 1.0 / jnp.square(data.error))

    @property
    def fisher_channels(self) -> int:
        return 1 if self.scale is None else 2

    def fisher_root(self, params, prediction, data):
        sigma = self.sigma(params, prediction, data)
        mean = where_used(data, prediction / jax.lax.stop_gradient(sigma))
        if self.scale is None:
            return mean[None]
        return jnp.stack([mean, where_used(data, math.sqrt(2.0) * jnp.log(sigma))])

    @property
    def checks_start(self) -> bool:
        return self.scale is not None

    def check_start(self, params, prediction, data, label):
        if self.scale is not None:
            check_positive(
                self.sigma(params, prediction, data),
                data,
                label,
                "the noise model's sigma",
                "make scale(params, prediction, error) return a positive standard deviation there",
            )

    def describe(self) -> str:
        return "Normal(error)" if self.scale is None else "Normal(noise model)"
