"""Observation: data, its errors and an optional mask, plus how to predict it."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

__all__ = ["Observation", "ObservationError", "valid_mask"]

INVALID = "invalid"


class ObservationError(ValueError):
    """An observation's data, errors or mask are inconsistent or unusable."""


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

    @abc.abstractmethod
    def predict(self, params: Any, model: Any) -> Float[Array, "..."]:
        """The model's prediction of `data`, given `params` and the `model`."""

    def describe(self) -> str:
        """A short label naming the observation: its class and its text/number fields."""
        fields = []
        for name in self.__dataclass_fields__:
            if name in ("data", "error", "mask"):
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
