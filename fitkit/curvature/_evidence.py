"""The Laplace approximation of the log evidence (marginal likelihood) at a fitted mode."""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from .. import tree
from ..results import start_params

__all__ = ["Evidence", "laplace_evidence"]


class Evidence(NamedTuple):
    """The Laplace log evidence and what it assumed.

    Attributes:
        log_evidence: `log Z`, NaN where the priors are not proper.
        n_free: how many params it integrates over.
        assumptions: the assumptions in words (for reports).
    """

    log_evidence: float
    n_free: int
    assumptions: str


def _prior_covered(problem, params) -> np.ndarray:
    """Per flat param: whether a prior (a path-wise prior, or the log_prior function) covers it."""
    from ..parametrisation import element_indices

    covered = np.zeros(tree.size(params), bool)
    if problem.log_prior_fn is not None:
        covered[:] = True
    for path in problem.priors:
        covered[element_indices(params, path, "priors")] = True
    return covered


def laplace_evidence(problem: Any, result: Any, covariance: Any = None) -> Evidence:
    """The Laplace approximation of the log evidence `log Z = log ∫ L(theta) pi(theta) d theta`.

    `log Z ≈ log L(m) + log pi(m) + (k / 2) log(2 pi) + (1 / 2) log det C`, with
    `m` the mode (the MAP point), `C` the inverse Hessian of `problem.nll` over
    the `k` free params there, in their physical units. It assumes: the
    posterior is close to a Gaussian around one mode, inside any bounds (a
    param at a bound makes it NaN); the priors are proper and normalised. A
    free param with no prior but two finite bounds takes the uniform prior
    `1 / (upper - lower)` (what `fk.sample` samples); a free param with
    neither makes the evidence undefined (NaN, with a warning), since an
    improper prior leaves `Z` arbitrary. Compare models on the same data by
    differences of `log Z` (Bayes factors).

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` at the mode (or params).
        covariance: its `fk.covariance(problem, result)` (computed with the
            Hessian when not given).

    Returns:
        An `Evidence` (`log_evidence`, `n_free`, `assumptions`).

    Example:
        >>> res = fk.solve(prob, start)
        >>> fk.laplace_evidence(prob, res).log_evidence
    """
    from ._engine import covariance as covariance_of

    if covariance is None:
        covariance = covariance_of(problem, result)
    params = start_params(result)
    held = set(getattr(covariance, "fixed", ())) | set(getattr(covariance, "at_limit", ()))
    fixed = list(held) or None
    parametrisation = (
        problem.parametrisation(params, fixed, on_bound=True) if problem.declares(fixed) else None
    )
    keep = (
        np.arange(tree.size(params)) if parametrisation is None else np.asarray(parametrisation.independent())
    )
    assumptions = (
        f"Laplace approximation over {len(keep)} free params: a Gaussian posterior around one mode, "
        "proper normalised priors"
    )
    if getattr(covariance, "at_limit", ()):
        return Evidence(float("nan"), len(keep), assumptions + "; undefined: a param is held at a bound")
    covered = _prior_covered(problem, params)
    log_uniform = 0.0
    if parametrisation is not None:
        lower, upper = np.asarray(parametrisation.lower), np.asarray(parametrisation.upper)
    else:
        lower = upper = None
    improper = []
    names = tree.names(params)
    for i in keep:
        if covered[i]:
            continue
        if lower is not None and np.isfinite(lower[i]) and np.isfinite(upper[i]):
            log_uniform -= math.log(float(upper[i] - lower[i]))
        else:
            improper.append(names[i])
    if improper:
        warnings.warn(
            f"the Laplace evidence needs proper priors, but {', '.join(improper[:5])} have neither a prior "
            "nor two finite bounds: it is undefined (NaN); give priors or bounds",
            stacklevel=2,
        )
        return Evidence(
            float("nan"), len(keep), assumptions + f"; undefined: no prior on {', '.join(improper)}"
        )
    block = np.asarray(covariance.matrix, np.float64)[np.ix_(keep, keep)]
    sign, log_det = np.linalg.slogdet(block)
    if sign <= 0:
        return Evidence(
            float("nan"), len(keep), assumptions + "; undefined: the covariance is not positive definite"
        )
    log_post = -float(problem.nll(params)) + log_uniform
    value = log_post + 0.5 * len(keep) * math.log(2 * math.pi) + 0.5 * log_det
    if log_uniform:
        assumptions += "; params with bounds and no prior take uniform priors over their bounds"
    return Evidence(value, len(keep), assumptions)
