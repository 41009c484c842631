"""The likelihood interface: how likely one observation's data are, given its prediction."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._errors import ObservationError

__all__ = [
    "Data",
    "Likelihood",
    "LikelihoodError",
    "where_used",
    "concrete",
    "require_callable",
    "require_error",
]


class LikelihoodError(ObservationError):
    """A likelihood and its observation's data do not fit together (also an `ObservationError`)."""


class Data(NamedTuple):
    """One observation's data as a likelihood sees them.

    Attributes:
        values: the data, 0 where a point is not used.
        error: the quoted errors broadcast to the data's shape (1 where not used), or None.
        valid: True where a point is used.
    """

    values: Float[Array, "..."]
    error: Float[Array, "..."] | None
    valid: Bool[Array, "..."]


def where_used(data: Data, values: Array, fill: float = 0.0) -> Array:
    """`values` at used points and `fill` elsewhere (so unused points never reach a gradient)."""
    return jnp.where(data.valid, values, fill)


def require_callable(value: Any, where: str, signature: str, otherwise: str) -> None:
    """Raise TypeError unless `value` is None or callable (a family's function-valued setting)."""
    if value is not None and not callable(value):
        raise TypeError(f"{where} takes a function {signature}, got {type(value).__name__}; {otherwise}")


def require_error(obs: Any, what: str, alternative: str) -> None:
    """Raise LikelihoodError when the observation has no `error` but the family uses it."""
    if obs.error is None:
        raise LikelihoodError(
            f"{obs.describe()} has no error, which {what} needs; give error=... or {alternative}"
        )


def concrete(*arrays) -> bool:
    """Whether every array is a concrete value (not traced), so it can be checked on the host."""
    import jax

    return not any(isinstance(a, jax.core.Tracer) for a in arrays if a is not None)


class Likelihood(eqx.Module):
    """Base class of the likelihood families: the log-density of one observation's data.

    A family turns an observation's prediction (and, for noise models, the
    params) into a log-likelihood, and tells the engines what else it
    offers: least-squares residuals (for Levenberg-Marquardt and friends),
    a square root of its expected Fisher information (for `fk.fisher`,
    natural gradients and projections), and standardised residual maps
    (for plots). Every method takes the params, the prediction and the
    observation's `Data`, and returns arrays shaped like the data with
    exact zeros where a point is not used.

    Subclass it to add a family: write `log_prob`, and `fisher_root` and
    `fisher_channels` when the expected Fisher information is known (otherwise
    leave them, and the engines use the Hessian of this
    observation's negative log-likelihood in its place).
    """

    def prepare(self, obs: Any) -> Likelihood:
        """Check this family against the observation's data and precompute what it needs.

        Called once by `fk.Problem` on concrete data, before anything is compiled.

        Raises:
            LikelihoodError: the data do not suit this family (message names the observation).
        """
        return self

    def log_prob(self, params: Any, prediction: Array, data: Data) -> Array:
        """The log-density of each used point (0 where unused); a scalar for joint families."""
        raise NotImplementedError(f"{type(self).__name__} does not define log_prob")

    def deviance(self, params: Any, prediction: Array, data: Data) -> Array:
        """`-2 log L` up to a constant of the data: `sum z^2` for normal data with fixed errors."""
        return -2.0 * jnp.sum(self.log_prob(params, prediction, data))

    @property
    def has_residuals(self) -> bool:
        """Whether `deviance` is a sum of squares of `residuals` (so least-squares solvers apply)."""
        return False

    def residuals(self, params: Any, prediction: Array, data: Data) -> Array:
        """Signed residuals whose squares sum to `deviance` (only where `has_residuals`)."""
        raise NotImplementedError(f"{type(self).__name__} has no least-squares residuals")

    def standardised(self, params: Any, prediction: Array, data: Data) -> Array:
        """A residual map for plots: about N(0, 1) per point at a good fit (NaN where a family has none)."""
        if self.has_residuals:
            return self.residuals(params, prediction, data)
        return jnp.full(jnp.shape(data.valid), jnp.nan, prediction.dtype)

    def weights(self, params: Any, prediction: Array, data: Data) -> Array:
        """Per-point Fisher weights `w` with Fisher `J^T diag(w) J` (families with one diagonal channel)."""
        raise NotImplementedError(
            f"{self.describe()} has no per-point Fisher weight; use problem.fisher_root (its Jacobian J "
            "gives the Fisher information J^T J)"
        )

    @property
    def fisher_channels(self) -> int:
        """How many rows per data point `fisher_root` returns (0: no expected Fisher information)."""
        return 0

    def fisher_root(self, params: Any, prediction: Array, data: Data) -> Array:
        """A vector `r(params)` whose Jacobian `J` gives the expected Fisher information `J^T J`.

        Shaped `(fisher_channels, *data.shape)`, zero where a point is unused.
        """
        raise NotImplementedError(f"{type(self).__name__} has no expected Fisher information")

    @property
    def empirical(self) -> bool:
        """Whether `fisher_root` gives the empirical (outer-product) Fisher rather than the expected one."""
        return False

    #: `(what, hint)` when the prediction must be positive at every used point (rates, densities).
    positive_prediction: ClassVar[tuple[str, str] | None] = None
    # Whether `prepare` stores something computed from one observation's data or mask (so a
    # batch built from arrays, whose members share one prepared family, cannot use it).
    prepared_from_data: ClassVar[bool] = False

    @property
    def checks_start(self) -> bool:
        """Whether `check_start` needs the prediction at the start (so `fk.Problem.check` computes it)."""
        return self.positive_prediction is not None

    def check_start(self, params: Any, prediction: Array, data: Data, label: str) -> None:
        """Check concrete start values (a positive noise model, a positive rate); raise ParamsError."""
        if self.positive_prediction is not None:
            from ._normal import check_positive

            check_positive(prediction, data, label, *self.positive_prediction)

    def n_points(self, data: Data) -> int:
        """How many data points (events, for unbinned data) this observation contributes."""
        return int(np.asarray(data.valid).sum())

    def describe(self) -> str:
        """A short name for reports: the family and its settings."""
        return type(self).__name__
