"""Unbinned data: a list of events, each with a probability density, optionally extended."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Likelihood, require_callable, where_used

__all__ = ["Unbinned"]


class Unbinned(Likelihood):
    """Unbinned events: `log L = sum_i log f(x_i)`, with `predict` giving `f` at each event.

    The observation's `data` are the events (any shape; one event per
    element, or mask some out) and its `predict(params, model)` returns the
    normalised probability density at each event. With `expected`, a function
    of the params giving the expected number of events `N`, the likelihood is
    extended (the number of events is Poisson too):
    `log L = sum_i log f(x_i) + n log N - N`, as iminuit's
    `ExtendedUnbinnedNLL` (whose density is `N f`).

    There is no expected Fisher information without integrating over the
    density, so `fk.fisher` uses the empirical (outer-product) Fisher
    `sum_i s_i s_i^T` of the per-event scores `s_i = d log f(x_i)`, a
    consistent estimate at the maximum, plus, when extended, the expected
    Fisher information of the Poisson count, `(d N)(d N)^T / N`; `fk.covariance` defaults to the Hessian, as HESSE does. There are
    no least-squares residuals: `fk.solve` uses a minimiser.

    Args:
        expected: optional `expected(params) -> N` (> 0) for an extended fit.

    Example:
        >>> class Events(fk.Observation):
        ...     def predict(self, params, model):
        ...         return model.pdf(self.data, params)
        >>> obs = Events(data=x, likelihood=fk.Unbinned(expected=lambda p: p["n_sig"] + p["n_bkg"]))
    """

    expected: Callable | None = None

    def __check_init__(self):
        require_callable(
            self.expected,
            "Unbinned(expected=...)",
            "expected(params) -> N",
            "give the expected number of events",
        )

    positive_prediction = (
        "the event density",
        "predict must return a positive probability density at every event",
    )

    def _per_event(self, params, prediction, data):
        density = where_used(data, prediction, 1.0)
        value = jnp.log(density)
        if self.expected is not None:
            n = jnp.sum(data.valid).astype(prediction.dtype)
            expected = jnp.asarray(self.expected(params), prediction.dtype)
            value = value + jnp.log(expected) - expected / n
        return where_used(data, value)

    def log_prob(self, params, prediction, data):
        return self._per_event(params, prediction, data)

    @property
    def fisher_channels(self) -> int:
        return 1 if self.expected is None else 2

    def fisher_root(self, params, prediction, data):
        # The empirical Fisher of the shape: the Jacobian of the per-event log-densities holds the scores.
        log_density = where_used(data, jnp.log(where_used(data, prediction, 1.0)))
        if self.expected is None:
            return log_density[None]
        # The count is Poisson(N), independent of the shape given the params: its expected Fisher
        # (dN)^2 / N is one more row, held at the first used event.
        expected = jnp.asarray(self.expected(params), prediction.dtype)
        first = jnp.arange(data.valid.size).reshape(data.valid.shape) == jnp.argmax(jnp.ravel(data.valid))
        count = jnp.where(first, expected / jnp.sqrt(jax.lax.stop_gradient(expected)), 0.0)
        return jnp.stack([log_density, count])

    @property
    def empirical(self) -> bool:
        return True

    def check_start(self, params, prediction, data, label):
        super().check_start(params, prediction, data, label)
        if self.expected is not None:
            value = np.asarray(self.expected(params))
            if value.shape != () or not np.isfinite(value) or value <= 0:
                from ..problem import ParamsError

                raise ParamsError(
                    f"{label}: Unbinned(expected=...) must return one positive number at the start "
                    f"params, got {value!r}"
                )

    def describe(self) -> str:
        return "Unbinned(extended)" if self.expected is not None else "Unbinned"
