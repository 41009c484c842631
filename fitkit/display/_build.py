"""`display`: the `Display` of a FitResult, Covariance, Posterior, Intervals or Analysis."""

from __future__ import annotations

import sys
from html import escape
from typing import Any

import numpy as np

from ._facts import gather
from ._model import Display
from ._summary import analysis_line, covariance_line, intervals_line, posterior_line, result_line
from ._table import MAX_ROWS, correlation_table, parameter_table
from ._validity import covariance_box, intervals_box, posterior_box, result_box

__all__ = ["display", "html", "text"]


def _result(result, covariance, intervals, problem, posterior, truth, max_rows) -> Display:
    facts = gather(
        result.params,
        initial=result.initial,
        covariance=covariance,
        intervals=intervals,
        problem=problem,
        posterior=posterior,
        truth=truth,
        fixed=tuple(result.fixed),
        at_limit=tuple(result.at_limit),
        limit=max_rows,
    )
    boxes = [result_box(result)]
    boxes += [covariance_box(covariance)] if covariance is not None else []
    boxes += [intervals_box(intervals)] if intervals is not None else []
    boxes += [posterior_box(posterior, facts.posterior)] if posterior is not None else []
    return Display(
        "FitResult", result_line(result), tuple(boxes), (parameter_table(facts, max_rows, "Parameters"),)
    )


def _covariance(cov, problem, max_rows) -> Display:
    facts = gather(cov.mean, covariance=cov, problem=problem, limit=max_rows)
    tables = [parameter_table(facts, max_rows, "Parameters")]
    # Held params (fixed, at a bound) have no correlation: they get no row.
    held = set(cov.fixed) | set(cov.at_limit)
    keep = [i for i, n in enumerate(cov.names) if n not in held]
    matrix = np.asarray(cov.correlation, np.float64)[np.ix_(keep, keep)]
    correlation = correlation_table([cov.names[i] for i in keep], matrix)
    tables += [correlation] if correlation is not None else []
    return Display("Covariance", covariance_line(cov), (covariance_box(cov),), tuple(tables))


def _posterior(post, max_rows) -> Display:
    facts = gather(names=list(post.names), posterior=post, limit=max_rows)
    return Display(
        "Posterior",
        posterior_line(post),
        (posterior_box(post, facts.posterior),),
        (parameter_table(facts, max_rows, "Parameters"),),
    )


def _intervals(iv, problem, max_rows) -> Display:
    facts = gather(iv.params, intervals=iv, problem=problem, limit=max_rows)
    # Only the profiled params have rows: the others have nothing to show here.
    keep = [i for i, n in enumerate(facts.names) if n in set(iv.names)]
    facts.names = [facts.names[i] for i in keep]
    for name in ("values", "minus", "plus", "lower", "upper"):
        if getattr(facts, name) is not None:
            setattr(facts, name, getattr(facts, name)[keep])
    facts.minus_state = [facts.minus_state[i] for i in keep]
    facts.plus_state = [facts.plus_state[i] for i in keep]
    return Display(
        "Intervals",
        intervals_line(iv),
        (intervals_box(iv),),
        (parameter_table(facts, max_rows, "Parameters"),),
    )


def _analysis(analysis, max_rows) -> Display:
    stage = analysis.solve or analysis.fit
    facts = gather(
        analysis.params,
        initial=analysis.start,
        covariance=analysis.covariance,
        intervals=analysis.intervals,
        problem=analysis.problem,
        posterior=analysis.posterior,
        truth=analysis.truth,
        fixed=tuple(stage.fixed) if stage is not None else (),
        at_limit=tuple(stage.at_limit) if stage is not None else (),
        limit=max_rows,
    )
    boxes = []
    for title, fitted in (("Warm start (fk.fit)", analysis.fit), ("Polish (fk.solve)", analysis.solve)):
        if fitted is not None:
            boxes.append(result_box(fitted, title))
    if analysis.covariance is not None:
        boxes.append(covariance_box(analysis.covariance))
    if analysis.intervals is not None:
        boxes.append(intervals_box(analysis.intervals))
    if analysis.posterior is not None:
        boxes.append(posterior_box(analysis.posterior, facts.posterior))
    return Display(
        "Analysis",
        analysis_line(analysis),
        tuple(boxes),
        (parameter_table(facts, max_rows, "Parameters"),),
        tuple(analysis.notes),
    )


# Where each class lives. An object of a class is only there if its module was imported, so the
# display looks the class up instead of importing it: a repr must not load numpyro or optax.
_CLASSES = (
    ("fitkit.results", "FitResult"),
    ("fitkit.curvature._covariance", "Covariance"),
    ("fitkit.profiles._api", "Intervals"),
    ("fitkit.sampling._posterior", "Posterior"),
    ("fitkit.analysis", "Analysis"),
)


class _Never:
    """Stands for a class whose module is not imported: nothing is an instance of it."""


def _loaded(module: str, name: str) -> type:
    return getattr(sys.modules.get(module), name, _Never)


def display(
    obj: Any,
    *,
    covariance: Any = None,
    intervals: Any = None,
    problem: Any = None,
    posterior: Any = None,
    truth: Any = None,
    max_rows: int = MAX_ROWS,
) -> Display:
    """The display of a fitkit result: validity boxes and a parameter table, as HTML and as text.

    What each class shows by itself (its `_repr_html_` and `repr`) is `display(obj)`;
    for a `FitResult`, give the other results of the same fit to see them in one table.

    Args:
        obj: an `fk.FitResult`, `fk.Covariance`, `fk.Posterior`, `fk.Intervals` or `fk.Analysis`.
        covariance: (`FitResult` only) its `fk.Covariance`: an Error column and its validity.
        intervals: (`FitResult` only) its `fk.Intervals`: the Profile - / + columns.
        problem: (`FitResult`, `Covariance`, `Intervals`) the `fk.Problem`, for the bounds and
            ties it declares (an `Analysis` knows its problem).
        posterior: (`FitResult` only) an `fk.Posterior` of the same params: mean, std, ESS, R-hat.
        truth: (`FitResult` only) the true params of a simulation.
        max_rows: the most params shown; the rest are counted under the table.

    Returns:
        A `Display`: `_repr_html_()` in a notebook, `str()` as text.

    Raises:
        TypeError: `obj` is none of the classes above, or a keyword is given for a class that
            does not take it.

    Example:
        >>> res = fk.solve(prob, start)
        >>> cov = fk.covariance(prob, res)
        >>> fk.display.display(res, covariance=cov, problem=prob)  # in a notebook: coloured tables
        >>> print(fk.display.display(res, covariance=cov))         # the same, as text
    """
    FitResult, Covariance, Intervals, Posterior, Analysis = (_loaded(*where) for where in _CLASSES)
    extras = {"covariance": covariance, "intervals": intervals, "posterior": posterior, "truth": truth}
    if isinstance(obj, FitResult):
        return _result(obj, covariance, intervals, problem, posterior, truth, max_rows)
    given = sorted(k for k, v in extras.items() if v is not None)
    if given:
        raise TypeError(f"{', '.join(given)} go with a FitResult, not a {type(obj).__name__}")
    if isinstance(obj, Covariance):
        return _covariance(obj, problem, max_rows)
    if isinstance(obj, Intervals):
        return _intervals(obj, problem, max_rows)
    if problem is not None:
        raise TypeError(
            f"problem= goes with a FitResult, a Covariance or Intervals, not a {type(obj).__name__}"
        )
    if isinstance(obj, Posterior):
        return _posterior(obj, max_rows)
    if isinstance(obj, Analysis):
        return _analysis(obj, max_rows)
    raise TypeError(
        f"cannot display a {type(obj).__name__}; give an fk.FitResult, fk.Covariance, fk.Posterior, "
        "fk.Intervals or fk.Analysis"
    )


_SUMMARIES = {
    "FitResult": result_line,
    "Covariance": covariance_line,
    "Posterior": posterior_line,
    "Intervals": intervals_line,
    "Analysis": analysis_line,
}


def _short(obj: Any, err: Exception) -> str:
    """The one-line summary, said to be all there is, for an object whose display failed."""
    try:
        line = _SUMMARIES[type(obj).__name__](obj)
    except Exception:  # noqa: BLE001 - e.g. traced leaves inside jit: no number can be printed
        line = f"{type(obj).__name__}(...)"
    return f"{line} [display failed: {type(err).__name__}: {err}]"


def text(obj: Any, **options: Any) -> str:
    """The text display of `obj` (`str(display(obj, **options))`); never raises.

    A repr must not fail (a debugger, a log line, a traced value inside `jit`): if the
    display cannot be built, the one-line summary is returned with the error that stopped it.
    """
    try:
        return str(display(obj, **options))
    except Exception as err:  # noqa: BLE001 - see above
        return _short(obj, err)


def html(obj: Any, **options: Any) -> str:
    """The HTML display of `obj` (`display(obj, **options)._repr_html_()`); never raises (see `text`)."""
    try:
        return display(obj, **options)._repr_html_()
    except Exception as err:  # noqa: BLE001 - see `text`
        return f"<pre>{escape(_short(obj, err))}</pre>"
