"""The names of the reasons a result is not valid, and how each reads in words."""

from __future__ import annotations

__all__ = ["FLAGS", "INFORMATIONAL", "describe_flags", "is_valid"]

# name -> the sentence a user reads; every `FitResult.flags` entry is a key here.
FLAGS: dict[str, str] = {
    "call_limit": "the engine ran out of steps (max_steps) before its convergence test passed",
    "solver_failed": "the engine stopped on a failure, not on its convergence test",
    "non_finite": "the loss, its gradient or the params are not finite (NaN or inf) at the result",
    "above_max_edm": "the estimated distance to the minimum (edm) is above max_edm: the minimum is further on",
    "curvature_not_positive_definite": "the curvature at the result is not positive definite: it is a "
    "saddle, a flat direction or a maximum, not a well-defined minimum",
    "edm_not_converged": "the conjugate-gradient estimate of the edm did not converge (the curvature is too "
    "ill-conditioned for the iterative check used above the dense limit), so the distance to the minimum is unknown",
    "nonfinite_steps": "more than a small fraction of the steps met non-finite values and were skipped or zeroed",
    "interrupted": "the run was interrupted before it finished",
    "at_limit": "some params sit at a bound: the minimum lies beyond it, so they are held there and have "
    "no symmetric error (the others are fitted and judged with them held)",
}

# Flags that describe a valid result rather than a reason to distrust it (iminuit's "at limit").
INFORMATIONAL = frozenset({"at_limit"})


def is_valid(flags: tuple[str, ...]) -> bool:
    """A result is valid when every flag it carries is informational."""
    return not set(flags) - INFORMATIONAL


def describe_flags(flags: tuple[str, ...]) -> str:
    """The flags as one sentence each, joined (empty for no flags)."""
    return " ".join(f"{FLAGS[name][0].upper()}{FLAGS[name][1:]}." for name in flags)
