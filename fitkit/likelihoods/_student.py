"""Student-t noise: a likelihood robust to outliers, with fixed or fitted degrees of freedom."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, polygamma

from ._base import Likelihood, require_callable, require_error, where_used
from ._normal import check_positive, noise_value

__all__ = ["StudentT", "student_fisher"]


def student_fisher(nu):
    """The expected Fisher information of one Student-t point in `(mu, log s, nu)`, per unit `1/s^2` for mu.

    Returns `(i_mu, i_log_s, i_log_s_nu, i_nu)`: `i_mu * s^-2 = (nu+1)/((nu+3) s^2)`,
    `2 nu/(nu+3)`, `-2/((nu+1)(nu+3))` and
    `(psi'(nu/2) - psi'((nu+1)/2))/4 - (nu+5)/(2 nu (nu+1)(nu+3))` (Lange, Little & Taylor 1989).
    """
    i_mu = (nu + 1.0) / (nu + 3.0)
    i_log_s = 2.0 * nu / (nu + 3.0)
    i_cross = -2.0 / ((nu + 1.0) * (nu + 3.0))
    i_nu = 0.25 * (polygamma(1, 0.5 * nu) - polygamma(1, 0.5 * (nu + 1.0))) - (nu + 5.0) / (
        2.0 * nu * (nu + 1.0) * (nu + 3.0)
    )
    return i_mu, i_log_s, i_cross, i_nu


def _log1p_over(u):
    """`log1p(u) / u`, 1 at u = 0, smooth (so residuals have a gradient where a point fits exactly)."""
    small = u < 1e-8
    safe = jnp.where(small, 1.0, u)
    return jnp.where(small, 1.0 - 0.5 * u, jnp.log1p(safe) / safe)


class StudentT(Likelihood):
    """Student-t noise: `(data - prediction) / s ~ t(nu)`, independently per point.

    Heavier tails than a Gaussian, so a few outliers pull the fit far less;
    as `nu -> inf` it becomes `fk.Normal`. The scale `s` is the observation's
    `error` unless `scale(params, prediction, error)` gives it; `nu` is a
    number or a function of the params (`lambda p: p["nu"]`, declare
    `bounds={"nu": (0.0, None)}` or a positive prior) to fit the tails.
    With fixed `s` and `nu` the negative log-likelihood is a sum of squares of
    `sign(z) sqrt((nu + 1) log(1 + z^2 / nu))`, so least-squares solvers
    apply; with fitted ones `fk.solve` uses a minimiser.

    Expected Fisher information per point, in `(mu, log s, nu)`:
    `(nu+1)/((nu+3) s^2)` for the location, `2 nu/(nu+3)` for `log s`,
    `-2/((nu+1)(nu+3))` between `log s` and `nu`, and
    `(psi'(nu/2) - psi'((nu+1)/2))/4 - (nu+5)/(2 nu (nu+1)(nu+3))` for `nu`.

    Args:
        nu: degrees of freedom (> 0): a number, or a function of the params.
        scale: optional `scale(params, prediction, error) -> s`.

    Raises:
        ValueError: a fixed `nu` that is not positive and finite.
        TypeError: `scale` is given but not callable.

    Example:
        >>> robust = fk.StudentT(nu=4.0)
        >>> obs = Line(data=y, error=yerr, x=x, likelihood=robust)
    """

    nu: Any = 4.0
    scale: Callable | None = None

    def __check_init__(self):
        if not callable(self.nu):
            nu = float(self.nu)
            if not (math.isfinite(nu) and nu > 0):
                raise ValueError(
                    f"StudentT(nu={self.nu!r}): the degrees of freedom must be positive and finite"
                )
        require_callable(
            self.scale,
            "StudentT(scale=...)",
            "scale(params, prediction, error) -> s",
            "for a fixed scale give the observation's error",
        )

    def prepare(self, obs) -> StudentT:
        if self.scale is None:
            require_error(
                obs, "StudentT (as its scale)", "fk.StudentT(scale=lambda params, prediction, error: ...)"
            )
        return self

    def _nu(self, params, dtype):
        nu = self.nu(params) if callable(self.nu) else self.nu
        return jnp.asarray(nu, dtype)

    def _scale(self, params, prediction, data):
        if self.scale is None:
            return data.error
        return noise_value(self.scale, params, prediction, data, "scale")

    def _parts(self, params, prediction, data):
        s = self._scale(params, prediction, data)
        nu = self._nu(params, prediction.dtype)
        return where_used(data, (data.values - prediction) / s), s, nu

    def log_prob(self, params, prediction, data):
        z, s, nu = self._parts(params, prediction, data)
        norm = gammaln(0.5 * (nu + 1.0)) - gammaln(0.5 * nu) - 0.5 * jnp.log(nu * math.pi)
        value = norm - jnp.log(s) - 0.5 * (nu + 1.0) * jnp.log1p(jnp.square(z) / nu)
        return where_used(data, value)

    @property
    def has_residuals(self) -> bool:
        return self.scale is None and not callable(self.nu)

    def deviance(self, params, prediction, data):
        if self.has_residuals:
            return jnp.sum(jnp.square(self.residuals(params, prediction, data)))
        return -2.0 * jnp.sum(self.log_prob(params, prediction, data))

    def residuals(self, params, prediction, data):
        z, _, nu = self._parts(params, prediction, data)
        u = jnp.square(z) / nu
        return where_used(data, z * jnp.sqrt((nu + 1.0) / nu * _log1p_over(u)))

    def standardised(self, params, prediction, data):
        return self._parts(params, prediction, data)[0]

    def weights(self, params, prediction, data):
        if not self.has_residuals:
            return super().weights(params, prediction, data)
        i_mu = student_fisher(self._nu(params, prediction.dtype))[0]
        return where_used(data, i_mu / jnp.square(data.error))

    @property
    def fisher_channels(self) -> int:
        return 1 + (self.scale is not None) + callable(self.nu)

    def fisher_root(self, params, prediction, data):
        z, s, nu = self._parts(params, prediction, data)
        i_mu, i_log_s, i_cross, i_nu = student_fisher(jax.lax.stop_gradient(nu))
        s_fixed = jax.lax.stop_gradient(s)
        rows = [prediction * jnp.sqrt(i_mu) / s_fixed]
        nu_row = jnp.broadcast_to(nu, prediction.shape)
        if self.scale is not None and callable(self.nu):
            # The 2x2 block of (log s, nu) per point, as L^T c with L its Cholesky factor.
            l11 = jnp.sqrt(i_log_s)
            l21 = i_cross / l11
            l22 = jnp.sqrt(i_nu - l21**2)
            rows += [l11 * jnp.log(s) + l21 * nu_row, l22 * nu_row]
        elif self.scale is not None:
            rows.append(jnp.sqrt(i_log_s) * jnp.log(s))
        elif callable(self.nu):
            rows.append(jnp.sqrt(i_nu) * nu_row)
        return jnp.stack([where_used(data, r) for r in rows])

    @property
    def checks_start(self) -> bool:
        return self.scale is not None or callable(self.nu)

    def check_start(self, params, prediction, data, label):
        if self.scale is not None:
            check_positive(
                self._scale(params, prediction, data),
                data,
                label,
                "the Student-t scale",
                "make scale(params, prediction, error) return a positive scale there",
            )
        if callable(self.nu):
            check_positive(
                self._nu(params, prediction.dtype),
                data,
                label,
                "the Student-t degrees of freedom nu",
                "start nu above 0 (and bound it: bounds={'nu': (0.0, None)})",
            )

    def describe(self) -> str:
        nu = "fitted nu" if callable(self.nu) else f"nu={float(self.nu):g}"
        return f"StudentT({nu}{', fitted scale' if self.scale is not None else ''})"
