"""Poisson counts: the prediction is the expected count (rate) of each pixel or bin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from ._base import Likelihood, LikelihoodError, concrete, where_used

__all__ = ["Poisson"]


class Poisson(Likelihood):
    """Counts: each used point is `data ~ Poisson(prediction)`, independently.

    The data must be whole numbers >= 0 and the prediction (the rate) positive.
    Its deviance `2 sum [d log(d / mu) - (d - mu)]` is a sum of squares of the
    signed deviance residuals, so least-squares solvers apply. Expected Fisher
    information per point: `(d mu)^2 / mu`.

    Example:
        >>> obs = Image(data=counts, likelihood=fk.Poisson())   # or Problem(..., likelihood="poisson")
    """

    positive_prediction = (
        "the predicted rate",
        "a Poisson rate must be positive: check predict (e.g. add a background, or predict exp(...))",
    )

    def prepare(self, obs) -> Poisson:
        if not concrete(obs.data):
            return self
        used = np.asarray(obs.valid)
        data = np.asarray(obs.data)[used]
        bad = (data < 0) | (data != np.round(data))
        if bad.any():
            first = ", ".join(f"{v:.6g}" for v in data[bad][:3])
            raise LikelihoodError(
                f"{obs.describe()}: {int(bad.sum())} of {data.size} used data points are not counts "
                f"(e.g. {first}); likelihood='poisson' needs whole numbers >= 0 (fk.Poisson). Use a normal "
                "likelihood with errors for other data, or mask these points"
            )
        return self

    def _rate(self, prediction, data):
        return where_used(data, prediction, 1.0)

    def log_prob(self, params, prediction, data):
        rate = self._rate(prediction, data)
        return where_used(data, xlogy(data.values, rate) - rate - gammaln(data.values + 1.0))

    def _deviance_terms(self, prediction, data):
        rate = self._rate(prediction, data)
        counts = where_used(data, data.values, 1.0)
        return where_used(data, 2.0 * (xlogy(counts, counts) - xlogy(counts, rate) - (counts - rate)))

    def deviance(self, params, prediction, data):
        return jnp.sum(self._deviance_terms(prediction, data))

    @property
    def has_residuals(self) -> bool:
        return True

    def residuals(self, params, prediction, data):
        dev = self._deviance_terms(prediction, data)
        signed = jnp.sign(data.values - prediction) * jnp.sqrt(jnp.maximum(dev, jnp.finfo(dev.dtype).tiny))
        return where_used(data, signed)

    def weights(self, params, prediction, data):
        return where_used(data, 1.0 / self._rate(prediction, data))

    @property
    def fisher_channels(self) -> int:
        return 1

    def fisher_root(self, params, prediction, data):
        rate = self._rate(prediction, data)
        return where_used(data, rate / jnp.sqrt(jax.lax.stop_gradient(rate)))[None]
