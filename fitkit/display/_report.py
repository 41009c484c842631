"""`fit_report`: a fit in text, lmfit's `fit_report` with fitkit's verdict, profile errors and bounds."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._flags import describe_flags
from ._facts import Facts, gather
from ._format import number, significant, value_error
from ._table import marks
from ._validity import edm_tolerance, evaluations
from ._why import covariance_state

__all__ = ["fit_report", "correlations"]

INDENT = "    "


def correlations(covariance: Any, threshold: float = 0.1) -> list[tuple[str, str, float]]:
    """The pairs of params whose correlation exceeds `threshold` in size, largest first.

    Params the covariance holds (fixed, at a bound, zero or NaN variance) are left out:
    they have no correlation.

    Args:
        covariance: an `fk.Covariance`.
        threshold: the smallest `|corr|` listed (exclusive).

    Returns:
        `(name_a, name_b, corr)` triples, `name_a` before `name_b` in ravel order, sorted by
        `|corr|` descending (ties in ravel order).

    Example:
        >>> fk.display.correlations(cov, 0.5)
        [('slope', 'offset', -0.93)]
    """
    names = list(covariance.names)
    std = np.asarray(covariance.flat_std, np.float64)
    held = set(covariance.fixed) | set(covariance.at_limit)
    live = [i for i, n in enumerate(names) if n not in held and np.isfinite(std[i]) and std[i] > 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.asarray(covariance.correlation, np.float64)
    pairs = [
        (names[i], names[j], float(correlation[i, j]))
        for k, i in enumerate(live)
        for j in live[k + 1 :]
        if np.isfinite(correlation[i, j]) and abs(correlation[i, j]) > threshold
    ]
    # A stable sort keeps pairs of equal size in ravel order.
    return sorted(pairs, key=lambda pair: -abs(pair[2]))


def _lines(pairs: list[tuple[str, str]]) -> list[str]:
    width = max(len(label) for label, _ in pairs)
    return [f"{INDENT}{label.ljust(width)} = {value}" for label, value in pairs]


def _chi_squared(result: Any, problem: Any) -> list[tuple[str, str]]:
    if problem is None:
        return [("chi-squared", "unknown (give problem= to compute it)")]
    if not problem.fixed_errors:
        return [("chi-squared", "not defined: the data are not all Gaussian with fixed errors")]
    # The same reduced chi-squared (and its "undefined" for ddof <= 0) as fk.analyse reports.
    from ..analysis import _chi2r, _show

    chi2 = float(problem.chi2(result.params))
    return [("chi-squared", f"{chi2:.10g}"), ("reduced chi-squared", _show(_chi2r(problem, result.params)))]


def _fit_section(result: Any, problem: Any) -> list[str]:
    pairs = [
        ("method", result.method or "unknown"),
        ("data points", str(int(result.n_data))),
        ("free parameters", str(int(result.n_free))),
        *_chi_squared(result, problem),
        ("log-likelihood", f"{float(result.log_likelihood):.10g}"),
        ("AIC", f"{result.aic:.10g}"),
        ("BIC", f"{result.bic:.10g}"),
        ("steps", str(int(result.steps))),
        ("evaluations", evaluations(result.stats)),
        ("wall time", f"{float(result.wall_time):.3g} s"),
        ("compile time", f"{float(result.compile_time):.3g} s"),
    ]
    return ["[[Fit]]", *_lines(pairs)]


def _validity_section(result: Any, covariance: Any, intervals: Any) -> list[str]:
    flags = tuple(result.flags)
    valid = "yes" if result.valid else f"NO ({', '.join(flags or ('unchecked',))})"
    tolerance = edm_tolerance(result)
    edm = number(result.edm, 3) + (f" (max_edm {tolerance:g})" if tolerance is not None else "")
    pairs = [
        ("valid", valid),
        ("EDM", edm),
        ("flags", f"{', '.join(flags)}: {describe_flags(flags)}" if flags else "none"),
        ("message", result.message or "none given"),
    ]
    if tuple(result.at_limit):
        pairs.append(("at a bound", ", ".join(result.at_limit)))
    if covariance is not None:
        pairs.append(("covariance", f"{covariance.method or 'given'}, {covariance_state(covariance).words}"))
    if intervals is not None:
        state = "valid" if intervals.valid else "NOT VALID: " + "; ".join(intervals.messages)
        pairs.append((f"profile intervals ({100 * intervals.cl:.3g}%)", state))
    return ["[[Validity]]", *_lines(pairs)]


def _profile_text(facts: Facts, i: int) -> str:
    if facts.minus_state is None or not facts.minus_state[i]:
        return ""
    parts, notes = [], []
    for sign, side, distance, state in (
        ("-", "lower", facts.minus[i], facts.minus_state[i]),
        ("+", "upper", facts.plus[i], facts.plus_state[i]),
    ):
        parts.append(f"{sign}failed" if state == "failed" else f"{sign}{significant(distance)}")
        if state == "failed":
            notes.append(f"the {side} side did not converge")
        elif state == "bound":
            notes.append(f"the {side} side is at its bound")
    level = f"{100 * facts.intervals.cl:.3g}%"
    extra = f"; {'; '.join(notes)}" if notes else ""
    return f" {parts[0]}/{parts[1]} (profile {level}{extra})"


def _variable(facts: Facts, i: int, width: int) -> str:
    name, value = facts.names[i], float(facts.values[i])
    error = facts.error_of(i)
    head = f"{INDENT}{(name + ':').ljust(width + 1)} "
    if error is not None:
        value_text, error_text = value_error(value, error)
        percent = f" ({100 * error / abs(value):.2f}%)" if value != 0 else ""
        line = f"{head}{value_text} +/- {error_text}{percent}"
    else:
        line = f"{head}{number(value, 8)} (no error: {facts.reasons[name].words})"
    if facts.initial is not None:
        line += f" (init = {number(facts.initial[i])})"
    line += _profile_text(facts, i)
    if facts.lower is not None and (np.isfinite(facts.lower[i]) or np.isfinite(facts.upper[i])):
        line += f" [bounds {number(facts.lower[i])}, {number(facts.upper[i])}]"
    mark, _ = marks(facts, i)
    # A fixed or held param says so in its "no error" text already; the others say it here.
    if mark and not (error is None and mark in ("fixed", "tied") or mark.startswith("one-sided")):
        line += f" ({mark})"
    return line


def _variables_section(facts: Facts) -> list[str]:
    width = max((len(n) for n in facts.names), default=0)
    return ["[[Variables]]", *(_variable(facts, i, width) for i in range(len(facts.names)))]


def _correlations_section(covariance: Any, threshold: float) -> list[str]:
    head = f"[[Correlations]] (|corr| > {threshold:g}, sorted)"
    if covariance is None:
        return [head, f"{INDENT}none: no covariance was given (covariance=fk.covariance(problem, result))"]
    pairs = correlations(covariance, threshold)
    if not pairs:
        return [head, f"{INDENT}none above the threshold"]
    labels = [f"C({a}, {b})" for a, b, _ in pairs]
    width = max(len(label) for label in labels)
    return [head, *(f"{INDENT}{label.ljust(width)} = {c:+.4f}" for label, (_, _, c) in zip(labels, pairs))]


def fit_report(
    result: Any,
    covariance: Any = None,
    intervals: Any = None,
    problem: Any = None,
    correlation_threshold: float = 0.1,
    *,
    initial: Any = None,
) -> str:
    """A fit in text, section by section, like lmfit's `fit_report`, with fitkit's verdict on it.

    Sections: `[[Fit]]` (method, data points, free parameters, chi-squared and reduced
    chi-squared for Gaussian data with fixed errors, log-likelihood, AIC, BIC, steps,
    evaluations, times), `[[Validity]]` (valid, EDM and its tolerance, flags in words, the
    engine's message, the covariance's and the profile intervals' state), `[[Variables]]`
    (`name: value +/- error (x.xx%) (init = v)`, the profile errors, bounds and marks, and
    why an error is missing where it is) and `[[Correlations]]` (the pairs above the
    threshold, largest first).

    Args:
        result: the `fk.FitResult`.
        covariance: its `fk.Covariance` (errors and correlations), or None.
        intervals: its `fk.Intervals` (asymmetric profile errors), or None.
        problem: the `fk.Problem` fitted (chi-squared, bounds, ties), or None.
        correlation_threshold: list correlations with `|corr|` above this, in [0, 1).
        initial: start values to quote instead of `result.initial` (e.g. the start of a
            whole `fk.analyse` rather than of its last stage).

    Returns:
        The report, lines joined by newlines.

    Raises:
        TypeError: `result` is not an `fk.FitResult`.
        ValueError: `correlation_threshold` is not in [0, 1).

    Example:
        >>> res = fk.solve(prob, start)
        >>> print(fk.fit_report(res, fk.covariance(prob, res), problem=prob))
        [[Fit]]
            method              = solve:levenberg-marquardt
            ...
    """
    from ..results import FitResult

    if not isinstance(result, FitResult):
        raise TypeError(f"fit_report needs an fk.FitResult, got a {type(result).__name__}")
    threshold = correlation_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"correlation_threshold must be a number in [0, 1), got {threshold!r}")
    facts = gather(
        result.params,
        initial=result.initial if initial is None else initial,
        covariance=covariance,
        intervals=intervals,
        problem=problem,
        fixed=tuple(result.fixed),
        at_limit=tuple(result.at_limit),
    )
    lines = _fit_section(result, problem)
    lines += _validity_section(result, covariance, intervals)
    lines += _variables_section(facts)
    lines += _correlations_section(covariance, float(threshold))
    return "\n".join(lines)
