"""Everything known about each flat param, gathered from a result, a covariance, intervals and a problem."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import tree
from ._why import Reason, missing_error

__all__ = ["Facts", "gather", "declared", "posterior_summary"]


@dataclasses.dataclass
class Facts:
    """Per flat param, aligned on `names` (NaN where a source says nothing about a param).

    Attributes:
        names: flat names, in ravel order.
        values: the estimates, or None (a posterior alone has only its draws).
        initial: the start values, or None.
        errors: the covariance's standard deviations, or None without a covariance.
        variances: the covariance's diagonal (None without one; NaN for names it lacks).
        reasons: why an error is missing, by name (only for names whose error is missing).
        minus, plus: the profile-interval distances (positive), or None without intervals.
        minus_state, plus_state: per name, `"ok"`, `"bound"` (one-sided) or `"failed"`.
        lower, upper: flat bounds (`-inf`/`inf` where open), or None when none are known.
        fixed, at_limit, tied: the names held fixed, held at a bound, computed by ties.
        posterior: a DataFrame of `Posterior.summary()` rows for the shown names, or None.
        num_chains: the posterior's chains (sets the ESS it should reach).
        truth: the true values (simulations), or None.
        covariance: the covariance itself (for correlations), or None.
        intervals: the intervals themselves, or None.
    """

    names: list[str]
    values: np.ndarray | None = None
    initial: np.ndarray | None = None
    errors: np.ndarray | None = None
    variances: np.ndarray | None = None
    reasons: dict[str, Reason] = dataclasses.field(default_factory=dict)
    minus: np.ndarray | None = None
    plus: np.ndarray | None = None
    minus_state: list[str] | None = None
    plus_state: list[str] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    fixed: frozenset[str] = frozenset()
    at_limit: frozenset[str] = frozenset()
    tied: frozenset[str] = frozenset()
    posterior: Any = None
    num_chains: int = 1
    truth: np.ndarray | None = None
    covariance: Any = None
    intervals: Any = None

    def error_of(self, i: int) -> float | None:
        """The usable error of param `i` (finite and positive), else None."""
        if self.errors is None:
            return None
        error = float(self.errors[i])
        return error if np.isfinite(error) and error > 0 else None


def _flat(params: Any) -> np.ndarray:
    return np.asarray(tree.ravel(params)[0], np.float64)


def declared(problem: Any, params: Any) -> tuple[np.ndarray | None, np.ndarray | None, frozenset[str]]:
    """The flat bounds and the tied names a problem declares for `params` (`None, None` without bounds).

    The declarations were checked when the problem was built, so a failure here (params of another
    shape) only means the display shows no bounds: it must not stop a result from being shown.
    """
    from ..parametrisation import declared_bounds, resolve_ties

    names = tree.names(params)
    try:
        lower, upper = declared_bounds(params, problem.bounds, problem.priors)
        _, tied_mask = resolve_ties(params, problem.ties)
    except Exception:  # noqa: BLE001 - a display never raises for what it cannot show
        return None, None, frozenset()
    tied = frozenset(n for n, t in zip(names, tied_mask) if t)
    if not (np.isfinite(lower).any() or np.isfinite(upper).any()):
        return None, None, tied
    return lower, upper, tied


def posterior_summary(posterior: Any, limit: int):
    """`posterior.summary()` for its first `limit` params (the ESS of thousands is not worth waiting for)."""
    if len(posterior.names) <= limit:
        return posterior.summary()
    from ..sampling._diagnostics import summary_frame

    with np.errstate(invalid="ignore", divide="ignore"):
        frame = summary_frame(posterior.flat()[..., :limit], list(posterior.names[:limit]))
    unsampled = [n for n in posterior.unsampled if n in frame.index]
    frame.loc[unsampled, [c for c in frame.columns if c not in ("mean", "median")]] = np.nan
    return frame


def _by_name(names: list[str], source_names, values, fill=np.nan) -> np.ndarray:
    lookup = dict(zip(source_names, np.asarray(values, np.float64)))
    return np.asarray([lookup.get(n, fill) for n in names], np.float64)


def _side_states(names, iv, side: str) -> list[str]:
    valid = dict(zip(iv.names, np.asarray(getattr(iv, f"{side}_valid"))))
    bound = dict(zip(iv.names, np.asarray(getattr(iv, f"{side}_at_bound"))))
    states = []
    for n in names:
        if n not in valid:
            states.append("")
        elif not valid[n]:
            states.append("failed")
        else:
            states.append("bound" if bound[n] else "ok")
    return states


def gather(
    params: Any = None,
    *,
    names: list[str] | None = None,
    initial: Any = None,
    covariance: Any = None,
    intervals: Any = None,
    problem: Any = None,
    posterior: Any = None,
    truth: Any = None,
    fixed: tuple[str, ...] = (),
    at_limit: tuple[str, ...] = (),
    limit: int = 10**9,
) -> Facts:
    """The `Facts` of `params` from whichever sources are given.

    Args:
        params: the estimates (a params pytree), or None for a posterior alone (give `names`).
        names: the flat names when `params` is None.
        initial, truth: params pytrees of the same structure, or None.
        covariance: an `fk.Covariance` of these params, or None.
        intervals: an `fk.Intervals`, or None.
        problem: the `fk.Problem`, for its declared bounds and ties, or None.
        posterior: an `fk.Posterior`, or None.
        fixed, at_limit: flat names the engine held (the covariance's are added).
        limit: the most params whose posterior summary is computed.

    Returns:
        The `Facts`, every array aligned on the flat names of `params`.
    """
    names = tree.names(params) if params is not None else list(names or ())
    facts = Facts(names=names)
    n = len(names)
    if params is not None:
        facts.values = _flat(params)
    if initial is not None:
        start = _flat(initial)
        facts.initial = start if start.size == n else None
    if truth is not None:
        true = _flat(truth)
        facts.truth = true if true.size == n else None
    held = set(fixed)
    limited = set(at_limit)
    if covariance is not None:
        facts.covariance = covariance
        held |= set(covariance.fixed)
        limited |= set(covariance.at_limit)
        variance = np.diag(np.asarray(covariance.matrix, np.float64))
        facts.variances = _by_name(names, covariance.names, variance)
        facts.errors = _by_name(names, covariance.names, np.asarray(covariance.flat_std, np.float64))
        if covariance.lower is not None:
            facts.lower = _by_name(names, covariance.names, covariance.lower, -np.inf)
            facts.upper = _by_name(names, covariance.names, covariance.upper, np.inf)
    if problem is not None and params is not None:
        lower, upper, tied = declared(problem, params)
        facts.tied = tied
        if lower is not None:
            facts.lower, facts.upper = lower, upper
    facts.fixed, facts.at_limit = frozenset(held), frozenset(limited - held)
    if intervals is not None:
        facts.intervals = intervals
        minus, plus = intervals.errors
        facts.minus = _by_name(names, intervals.names, minus)
        facts.plus = _by_name(names, intervals.names, plus)
        facts.minus_state = _side_states(names, intervals, "lower")
        facts.plus_state = _side_states(names, intervals, "upper")
    if posterior is not None:
        facts.posterior = posterior_summary(posterior, limit)
        facts.num_chains = posterior.num_chains
    known_names = set(covariance.names) if covariance is not None else set()
    for i, name in enumerate(names):
        if facts.error_of(i) is not None:
            continue
        variance = None
        if covariance is not None and name in known_names:
            variance = float(facts.variances[i])
        facts.reasons[name] = missing_error(
            name,
            variance,
            fixed=facts.fixed,
            at_limit=facts.at_limit,
            tied=facts.tied,
            has_covariance=covariance is not None,
        )
    return facts
