"""Displays of fitkit's results: coloured notebook tables, the same cells as text, and a full fit report.

Every `fk.FitResult`, `fk.Covariance`, `fk.Posterior`, `fk.Intervals` and
`fk.Analysis` shows itself in a notebook as HTML (`_repr_html_`) and as text
(`repr`): a validity box (valid or not, EDM, steps, evaluations, times, each
reason a result may not be trusted, coloured green, orange or red) and a
parameter table (value, error, profile errors, bounds, marks, start value,
posterior mean, std, ESS and R-hat, as far as the object knows them).

Example:
    >>> res = fk.solve(prob, start)
    >>> res                                   # a notebook shows the coloured tables
    >>> cov = fk.covariance(prob, res)
    >>> fk.display.display(res, covariance=cov, problem=prob)   # one table for both
    >>> print(fk.fit_report(res, cov, problem=prob))            # lmfit-style report
"""

from ._build import display, html, text
from ._format import number, significant, value_error
from ._model import BAD, GOOD, INFO, WARN, Box, Cell, Display, Entry, Table
from ._report import correlations, fit_report

__all__ = [
    "display",
    "html",
    "text",
    "fit_report",
    "correlations",
    "Display",
    "Box",
    "Cell",
    "Table",
    "Entry",
    "GOOD",
    "BAD",
    "WARN",
    "INFO",
    "number",
    "significant",
    "value_error",
]
