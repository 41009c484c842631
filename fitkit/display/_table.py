"""The parameter table: one row per flat param, the columns its sources can fill."""

from __future__ import annotations

import numpy as np

from ._facts import Facts
from ._format import number, significant, value_error
from ._model import BAD, GOOD, INFO, WARN, Entry, Table

__all__ = ["parameter_table", "correlation_table", "marks", "MAX_ROWS", "RHAT_MAX", "ESS_PER_CHAIN"]

# Rows shown before the table is cut short (a 10^4-param fit would fill a notebook).
MAX_ROWS = 100
# R-hat above this means the chains have not mixed (Vehtari et al. 2021)...
RHAT_MAX = 1.01
# ...and a bulk ESS below this many draws per chain is too few for a reliable mean and interval.
ESS_PER_CHAIN = 100
# Correlation matrices are shown as a table up to this many params.
CORRELATION_ROWS = 12


def marks(facts: Facts, i: int) -> tuple[str, str | None]:
    """The mark of param `i` (`"fixed"`, `"at lower limit"`, `"tied"`, ...) and its state."""
    name = facts.names[i]
    if name in facts.fixed:
        return "fixed", INFO
    if name in facts.at_limit:
        side = "limit"
        if facts.values is not None and facts.lower is not None:
            if facts.values[i] == facts.lower[i]:
                side = "lower limit"
            elif facts.values[i] == facts.upper[i]:
                side = "upper limit"
        return f"at {side}", WARN
    if name in facts.tied:
        return "tied", INFO
    sides = [
        side
        for side, states in (("lower", facts.minus_state), ("upper", facts.plus_state))
        if states is not None and states[i] == "bound"
    ]
    if sides:
        return f"one-sided ({' and '.join(sides)} at bound)", WARN
    return "", None


def _profile(facts: Facts, i: int, side: str) -> Entry:
    distance = (facts.minus if side == "lower" else facts.plus)[i]
    state = (facts.minus_state if side == "lower" else facts.plus_state)[i]
    sign = "-" if side == "lower" else "+"
    if not state:
        return Entry("", note="not profiled")
    if state == "failed":
        return Entry(
            "failed" if not np.isfinite(distance) else f"{sign}{significant(distance)}",
            None if not np.isfinite(distance) else float(distance),
            BAD,
            note=f"the {side} side of the profile did not converge",
        )
    if state == "bound":
        return Entry(f"{sign}{significant(distance)}", float(distance), WARN)
    return Entry(f"{sign}{significant(distance)}", float(distance))


def _bound(value: float) -> Entry:
    return Entry("", note="no bound") if not np.isfinite(value) else Entry(number(value), float(value))


def _value(facts: Facts, i: int) -> Entry:
    error = facts.error_of(i)
    if error is None and facts.minus is not None and np.isfinite(facts.minus[i] + facts.plus[i]):
        # No curvature error: quote the value to the digits the profile interval justifies.
        error = 0.5 * float(facts.minus[i] + facts.plus[i]) or None
    return Entry(value_error(facts.values[i], error)[0], float(facts.values[i]))


def _error(facts: Facts, i: int) -> Entry:
    error = facts.error_of(i)
    if error is not None:
        return Entry(value_error(facts.values[i], error)[1], error)
    reason = facts.reasons[facts.names[i]]
    return Entry(reason.short, None, reason.state, note=reason.words)


def _posterior(facts: Facts, name: str) -> list[Entry]:
    frame = facts.posterior
    if name not in frame.index:
        return [Entry("", note="not in the posterior")] * 4
    row = frame.loc[name]
    mean, std = float(row["mean"]), float(row["std"])
    mean_text, std_text = value_error(mean, std)
    ess, rhat = float(row["ess_bulk"]), float(row["r_hat"])
    goal = ESS_PER_CHAIN * facts.num_chains
    ess_state = None if not np.isfinite(ess) else (GOOD if ess >= goal else WARN)
    rhat_state = None if not np.isfinite(rhat) else (GOOD if rhat <= RHAT_MAX else BAD)
    return [
        Entry(mean_text, mean),
        Entry(std_text if np.isfinite(std) else number(std), std),
        Entry(number(ess, 4) if not np.isfinite(ess) else f"{ess:.0f}", ess, ess_state),
        Entry(f"{rhat:.3f}" if np.isfinite(rhat) else number(rhat), rhat, rhat_state),
    ]


def parameter_table(facts: Facts, max_rows: int = MAX_ROWS, title: str = "") -> Table:
    """The table of `facts`: Name, then Value, Error, Profile -/+, Lower, Upper, Initial, Mark,
    Post. mean, Post. std, ESS bulk, R-hat and Truth where a source fills them.

    Args:
        facts: the gathered `Facts`.
        max_rows: the most rows shown (the rest are counted in `Table.omitted`).
        title: the table's caption.

    Returns:
        A `Table`; entries keep their numbers in full (`Entry.value`).
    """
    bounded = facts.lower is not None and (np.isfinite(facts.lower).any() or np.isfinite(facts.upper).any())
    shown = range(min(len(facts.names), max_rows))
    with_marks = any(marks(facts, i)[0] for i in range(len(facts.names)))
    columns = ["Name"]
    columns += ["Value"] if facts.values is not None else []
    columns += ["Error"] if facts.covariance is not None else []
    columns += ["Profile -", "Profile +"] if facts.intervals is not None else []
    columns += ["Lower", "Upper"] if bounded else []
    columns += ["Initial"] if facts.initial is not None else []
    columns += ["Mark"] if with_marks else []
    columns += ["Post. mean", "Post. std", "ESS bulk", "R-hat"] if facts.posterior is not None else []
    columns += ["Truth"] if facts.truth is not None else []
    rows = []
    for i in shown:
        name = facts.names[i]
        row = [Entry(name)]
        if facts.values is not None:
            row.append(_value(facts, i))
        if facts.covariance is not None:
            row.append(_error(facts, i))
        if facts.intervals is not None:
            row += [_profile(facts, i, "lower"), _profile(facts, i, "upper")]
        if bounded:
            row += [_bound(facts.lower[i]), _bound(facts.upper[i])]
        if facts.initial is not None:
            row.append(Entry(number(facts.initial[i]), float(facts.initial[i])))
        if with_marks:
            mark, state = marks(facts, i)
            row.append(Entry(mark, state=state))
        if facts.posterior is not None:
            row += _posterior(facts, name)
        if facts.truth is not None:
            row.append(Entry(number(facts.truth[i]), float(facts.truth[i])))
        rows.append(tuple(row))
    return Table(tuple(columns), tuple(rows), omitted=len(facts.names) - len(rows), title=title)


def correlation_table(names: list[str], correlation: np.ndarray, threshold: float = 0.5) -> Table | None:
    """The correlation matrix as a table (iminuit's covariance display), or None for too many params.

    Off-diagonal entries with `|corr| >= threshold` are coloured: orange, red above 0.9.
    """
    if len(names) > CORRELATION_ROWS or len(names) < 2:
        return None
    rows = []
    for i, name in enumerate(names):
        row = [Entry(name)]
        for j in range(len(names)):
            c = float(correlation[i, j])
            state = None
            if i != j and np.isfinite(c) and abs(c) >= threshold:
                state = BAD if abs(c) > 0.9 else WARN
            row.append(Entry(f"{c:+.2f}" if np.isfinite(c) else number(c), c, state))
        rows.append(tuple(row))
    return Table(("Name", *names), tuple(rows), title="Correlations")
