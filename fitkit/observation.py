"""Observation: data, its errors and an optional mask, plus how to predict it."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import likelihoods
from ._errors import ObservationError
from .likelihoods import Likelihood

__all__ = ["Observation", "ObservationError", "valid_mask"]

INVALID = "invalid"


def _as_float_array(x) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def _as_optional_float_array(x):
    return None if x is None else _as_float_array(x)


def _as_mask(x):
    if x is None or isinstance(x, str):
        return x
    return jnp.asarray(x)


def _is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays if a is not None)


def valid_mask(data, error=None) -> Bool[Array, "..."]:
    """True where `data` is finite and `error` (if given) is finite and positive.

    Args:
        data: the data array.
        error: optional errors, shaped like `data` (or broadcastable).

    Returns:
        A boolean array shaped like `data`, for `Observation(mask=...)`.

    Example:
        >>> fk.valid_mask(jnp.array([1.0, jnp.nan]), jnp.array([1.0, 1.0]))
        Array([ True, False], dtype=bool)
    """
    ok = jnp.isfinite(data)
    if error is not None:
        ok = ok & jnp.isfinite(error) & (error > 0)
    return ok


class Observation(eqx.Module):
    """Base class for one data set and the way a model predicts it.

    Subclass it, add your own fields (an `x` grid, a `filter` name...) and write
    `predict(params, model)`. The base fields are keyword-only, so no
    `__init__` is needed: `MyObs(data=..., error=..., x=...)`. A subclass may
    still write its own `__init__` and assign `self.data`, `self.error` and
    (optionally) `self.mask` there.

    Attributes:
        data: the measured values (any shape); converted to a float array.
        error: the standard deviation of each point, shaped like `data` or a
            scalar; may be omitted for a Poisson likelihood.
        mask: optional boolean array shaped like `data`, True where a point is
            used; or the string `"invalid"`, which drops every point whose data
            or error is non-finite, or whose error is not positive.
        likelihood: how likely the data are: an `fk.Likelihood` (`fk.Normal`,
            `fk.Normal(scale=...)` with a noise model, `fk.StudentT`,
            `fk.Poisson`, `fk.MultivariateNormal`, `fk.Unbinned`), a name
            (`"normal"`, `"poisson"`), or None for the problem's default.

    Raises:
        ObservationError: on construction, when the data are empty, the data
            or error are complex, shapes disagree, or an unmasked point has a
            non-finite data value or a non-finite or non-positive error (the
            message names the observation and counts the points).

    Example:
        >>> class Spectrum(fk.Observation):
        ...     wavelength: jax.Array
        ...     def predict(self, params, model):
        ...         return model.flux(self.wavelength, params)
        >>> obs = Spectrum(data=y, error=sigma, wavelength=wl, mask="invalid")
    """

    data: Float[Array, "..."] = eqx.field(kw_only=True, converter=_as_float_array)
    error: Float[Array, "..."] | None = eqx.field(
        kw_only=True, default=None, converter=_as_optional_float_array
    )
    mask: Bool[Array, "..."] | str | None = eqx.field(kw_only=True, default=None, converter=_as_mask)
    likelihood: Likelihood | str | None = eqx.field(kw_only=True, default=None)

    def predict(self, params: Any, model: Any) -> Float[Array, "..."]:
        """The model's prediction of `data`, given `params` and the `model`: write it in a subclass.

        It is the mean (normal families), the rate (Poisson) or the density at
        each event (unbinned), shaped like `data`.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define predict(params, model); write it (or a "
            "log_likelihood(params, model) of your own)"
        )

    def log_likelihood(self, params: Any, model: Any) -> Float[Array, ""]:
        """The log-likelihood of this observation's data at `params`: a scalar.

        By default, the observation's likelihood family applied to `predict`.
        Override it for a likelihood no family covers: `fk.Problem` sums the
        observations' values, and every engine uses it (`nll`, `fit`, `solve`
        with a minimiser, curvature, sampling). An observation that overrides
        it has no least-squares residuals, and in the Fisher information its
        part is the Hessian of its negative log-likelihood.

        Example:
            >>> class Cauchy(fk.Observation):
            ...     x: jax.Array
            ...     def log_likelihood(self, params, model):
            ...         z = (self.data - model(self.x, params)) / self.error
            ...         return -jnp.sum(jnp.log1p(z**2) + jnp.log(jnp.pi * self.error))
        """
        return jnp.sum(self.family.log_prob(params, self.predict(params, model), self.view()))

    @property
    def family(self) -> Likelihood:
        """The likelihood family (`Normal()` when none was given and no `fk.Problem` set one)."""
        return likelihoods.family("normal" if self.likelihood is None else self.likelihood)

    @property
    def custom(self) -> bool:
        """Whether this observation's class writes its own `log_likelihood`."""
        return type(self).log_likelihood is not Observation.log_likelihood

    def view(self) -> likelihoods.Data:
        """The data as a likelihood sees them: values and errors made safe where a point is unused."""
        valid = self.valid
        values = jnp.where(valid, self.data, 0.0)
        error = None
        if self.error is not None:
            error = jnp.where(valid, jnp.broadcast_to(self.error, jnp.shape(self.data)), 1.0)
        return likelihoods.Data(values, error, valid)

    # The engines' view of one observation (Problem sums, stacks or concatenates these).
    def _deviance(self, params: Any, model: Any) -> Float[Array, ""]:
        if self.custom:
            return -2.0 * self.log_likelihood(params, model)
        return self.family.deviance(params, self.predict(params, model), self.view())

    def _residuals(self, params: Any, model: Any) -> Float[Array, "..."]:
        return self.family.residuals(params, self.predict(params, model), self.view())

    def _standardised(self, params: Any, model: Any) -> Float[Array, "..."]:
        return self.family.standardised(params, self.predict(params, model), self.view())

    def _fisher_root(self, params: Any, model: Any) -> Float[Array, "k ..."]:
        return self.family.fisher_root(params, self.predict(params, model), self.view())

    def describe(self) -> str:
        """A short label naming the observation: its class and its text/number fields."""
        fields = []
        for name in self.__dataclass_fields__:
            if name in ("data", "error", "mask", "likelihood"):
                continue
            value = getattr(self, name, None)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    @property
    def valid(self) -> Bool[Array, "..."]:
        """Boolean array shaped like `data`: True where the point is used."""
        shape = jnp.shape(self.data)
        if self.mask is None:
            return jnp.ones(shape, bool)
        if isinstance(self.mask, str):
            return jnp.broadcast_to(valid_mask(self.data, self.error), shape)
        return jnp.broadcast_to(self.mask, shape)

    def __check_init__(self):
        label = self.describe()
        shape = jnp.shape(self.data)
        if jnp.size(self.data) == 0:
            raise ObservationError(
                f"{label}: data is empty (shape {shape}); give at least one data point, or leave "
                "this observation out of the Problem"
            )
        for name in ("data", "error"):
            value = getattr(self, name)
            if value is not None and jnp.issubdtype(jnp.result_type(value), jnp.complexfloating):
                raise ObservationError(
                    f"{label}: {name} is complex ({jnp.result_type(value)}); the likelihoods are real: "
                    "fit the real and imaginary parts as two real observations (or stack them, "
                    "jnp.stack([z.real, z.imag])) and predict them the same way"
                )
        if self.error is not None and jnp.shape(self.error) not in ((), shape):
            raise ObservationError(
                f"{label}: error has shape {jnp.shape(self.error)} but data has shape {shape}; "
                "give one error per data point (or a single scalar)"
            )
        if isinstance(self.mask, str):
            if self.mask != INVALID:
                raise ObservationError(
                    f"{label}: mask={self.mask!r} is not understood; use mask={INVALID!r} or a boolean array"
                )
        elif self.mask is not None:
            if jnp.shape(self.mask) != shape:
                raise ObservationError(
                    f"{label}: mask has shape {jnp.shape(self.mask)} but data has shape {shape}"
                )
            if self.mask.dtype != jnp.bool_:
                raise ObservationError(f"{label}: mask must be a boolean array, got dtype {self.mask.dtype}")
        if not _is_concrete(self.data, self.error, None if isinstance(self.mask, str) else self.mask):
            return
        used = np.asarray(self.valid)
        n_used = int(used.sum())
        bad_data = int((~np.isfinite(np.asarray(self.data)) & used).sum())
        if bad_data:
            raise ObservationError(
                f"{label}: {bad_data} of {n_used} unmasked data points are not finite; "
                f"pass mask={INVALID!r} to drop them, or a boolean mask"
            )
        if self.error is not None:
            error = np.broadcast_to(np.asarray(self.error), shape)
            bad_error = int(((~np.isfinite(error) | (error <= 0)) & used).sum())
            if bad_error:
                raise ObservationError(
                    f"{label}: {bad_error} of {n_used} unmasked points have a non-finite or "
                    f"non-positive error; pass mask={INVALID!r} to drop them, or a boolean mask"
                )
