"""Why a param has no error bar, and whether a covariance is a covariance: the answers in words."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._model import BAD, GOOD, INFO, WARN

__all__ = ["Reason", "REASONS", "CovarianceState", "covariance_state", "missing_error", "CHECK_LIMIT"]

# Up to this many params the covariance is checked for positive definiteness with an eigendecomposition
# (cheap next to the Hessian that made it); above, the display does not spend the time.
CHECK_LIMIT = 2000
# An eigenvalue of the correlation matrix below -NEGATIVE is a real negative direction (not rounding)...
NEGATIVE = 1e-10
# ...and one below SINGULAR (relative to the largest) is a direction the data do not constrain.
SINGULAR = 1e-12


class Reason(NamedTuple):
    """Why an error is missing: a short word for a table cell and a sentence for the report."""

    short: str
    words: str
    state: str | None = None


REASONS: dict[str, Reason] = {
    "fixed": Reason("fixed", "fixed: held at its start value (fixed=), so it has no error"),
    "at_limit": Reason(
        "at limit",
        "at a bound: the minimum lies beyond it, so it is held there and has no symmetric error "
        "(a profile interval, fk.intervals, gives its one-sided limit)",
        WARN,
    ),
    "tied": Reason("tied", "tied: computed from other params by its tie, so it has no error of its own"),
    "no_covariance": Reason(
        "n/a", "no covariance was computed: give covariance=fk.covariance(problem, result)"
    ),
    "not_in_covariance": Reason(
        "n/a", "the covariance does not hold this param (it was made for other params)"
    ),
    "nan": Reason(
        "nan",
        "the covariance holds NaN here: the curvature could not be computed (non-finite values at the result)",
        BAD,
    ),
    "negative": Reason(
        "not pos. def.",
        "the covariance is not positive definite: this variance is negative, so the result is a saddle "
        "or a maximum along this param, not a minimum",
        BAD,
    ),
    "zero": Reason(
        "0", "zero variance: the covariance holds this param constant (fixed when it was computed)"
    ),
}


class CovarianceState(NamedTuple):
    """Whether a covariance matrix is positive definite over its free params, in words and a state."""

    state: str
    words: str


def covariance_state(cov: Any) -> CovarianceState:
    """Check `cov.matrix` over the params it does not hold (fixed, at a bound, zero variance).

    Args:
        cov: an `fk.Covariance`.

    Returns:
        `GOOD` positive definite; `WARN` singular (a regularised pseudo-inverse,
        or a direction of zero variance); `BAD` not positive definite or not
        finite; `INFO` too large to check (above `CHECK_LIMIT` params).
    """
    matrix = np.asarray(cov.matrix, np.float64)
    held = set(cov.fixed) | set(cov.at_limit)
    keep = [i for i, n in enumerate(cov.names) if n not in held]
    sub = matrix[np.ix_(keep, keep)]
    if not np.all(np.isfinite(sub)):
        return CovarianceState(BAD, "NOT finite (it holds NaN or inf)")
    variance = np.diag(sub)
    if np.any(variance < 0):
        return CovarianceState(BAD, f"NOT positive definite ({int(np.sum(variance < 0))} negative variances)")
    if len(keep) > CHECK_LIMIT:
        return CovarianceState(INFO, f"not checked ({len(keep)} params)")
    live = variance > 0
    scale = np.sqrt(variance[live])
    # The correlation matrix: its eigenvalues are resolved relative to 1 whatever the params' units.
    correlation = sub[np.ix_(live, live)] / np.outer(scale, scale)
    eigenvalues = np.linalg.eigvalsh(0.5 * (correlation + correlation.T)) if live.any() else np.ones(1)
    if eigenvalues.min() < -NEGATIVE * max(1.0, eigenvalues.max()):
        return CovarianceState(BAD, "NOT positive definite (a negative eigenvalue)")
    zero = int(np.sum(~live))
    if cov.dropped or zero or eigenvalues.min() <= SINGULAR * eigenvalues.max():
        what = f"{len(cov.dropped)} directions dropped" if cov.dropped else "a direction of zero variance"
        return CovarianceState(WARN, f"singular ({what})")
    return CovarianceState(GOOD, "positive definite")


def missing_error(
    name: str,
    variance: float | None,
    *,
    fixed: frozenset[str],
    at_limit: frozenset[str],
    tied: frozenset[str],
    has_covariance: bool,
) -> Reason:
    """Why `name` has no error bar (call it only when its error is missing: NaN, zero or absent).

    Args:
        name: the flat param name.
        variance: its diagonal entry of the covariance, or None when the covariance does not hold it.
        fixed, at_limit, tied: the names held fixed, held at a bound and computed by ties.
        has_covariance: whether a covariance was given at all.

    Returns:
        The `Reason`, most specific first: fixed, at a bound, no covariance, tied, then what the
        covariance holds (NaN, a negative variance, zero).
    """
    if name in fixed:
        return REASONS["fixed"]
    if name in at_limit:
        return REASONS["at_limit"]
    if not has_covariance:
        return REASONS["tied"] if name in tied else REASONS["no_covariance"]
    if variance is None:
        return REASONS["not_in_covariance"]
    if np.isnan(variance):
        return REASONS["nan"]
    if variance < 0:
        return REASONS["negative"]
    return REASONS["tied"] if name in tied else REASONS["zero"]
