"""Validity boxes: is the fit a minimum, the covariance a covariance, the chains mixed, the profiles done."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree
from .._flags import describe_flags
from ._format import number
from ._model import BAD, GOOD, INFO, WARN, Box, Cell
from ._table import ESS_PER_CHAIN, RHAT_MAX
from ._why import covariance_state

__all__ = ["result_box", "covariance_box", "posterior_box", "intervals_box", "edm_tolerance", "evaluations"]

# A flag -> (key, label, text when clear, text when raised), shown as one cell each, like
# iminuit's "Below call limit" / "Hesse ok" grid. `above_max_edm` is the EDM cell's colour.
ALWAYS = {
    "call_limit": ("call_limit", "call limit", "not reached", "REACHED"),
    "solver_failed": ("solver", "solver", "ok", "FAILED"),
    "non_finite": ("finite", "finite values", "yes", "NO"),
    "curvature_not_positive_definite": (
        "curvature",
        "curvature",
        "positive definite",
        "NOT positive definite",
    ),
}
# Flags shown only when raised: rare, and a cell saying "no" would only crowd the box.
WHEN_RAISED = {
    "edm_not_converged": ("edm_estimate", "edm estimate", "converged", "NOT converged"),
    "nonfinite_steps": ("nonfinite_steps", "non-finite steps", "few", "MANY"),
    "interrupted": ("interrupted", "run", "finished", "INTERRUPTED"),
}


def edm_tolerance(result: Any) -> float | None:
    """The `max_edm` a result was judged against, or None where it is not known.

    Engines record the tolerance they were given in `stats["max_edm"]` (None for the
    default, which depends on the params' precision); a result built by hand, loaded
    from an older file or taken from a batch has no record.
    """
    if "max_edm" not in result.stats:
        return None
    given = result.stats["max_edm"]
    if given is not None:
        return float(given)
    from .._verdict import default_max_edm

    return default_max_edm(np.asarray(tree.ravel(result.params)[0]).dtype)


def evaluations(stats: dict) -> str:
    """The evaluation counters of `stats` in words: `"loss 27, grad 27"` (`"not recorded"` without any)."""
    counts = [
        f"{key[: -len('_evals')]} {int(value)}" for key, value in stats.items() if key.endswith("_evals")
    ]
    return ", ".join(counts) or "not recorded"


def _seconds(value: float) -> str:
    return f"{float(value):.3g} s"


def result_box(result: Any, title: str = "Fit") -> Box:
    """The validity box of a `FitResult`: verdict, EDM, counts, times, each flag, the reason in words."""
    flags = tuple(result.flags)
    judged = bool(result.valid) or bool(flags)
    if result.valid:
        valid = Cell("valid", "valid", "yes", GOOD)
    else:
        valid = Cell("valid", "valid", f"NO ({', '.join(flags or ('unchecked',))})", BAD)
    tolerance = edm_tolerance(result)
    edm = float(result.edm)
    edm_text = number(edm, 3) + (f" (max_edm {tolerance:g})" if tolerance is not None else "")
    if not judged:
        edm_state = INFO
    elif "above_max_edm" in flags or not np.isfinite(edm):
        edm_state = BAD
    else:
        edm_state = GOOD
    steps_state = BAD if "call_limit" in flags else INFO
    first = (
        valid,
        Cell("edm", "EDM", edm_text, edm_state),
        Cell("loss", "loss", number(result.loss, 8)),
        Cell("steps", "steps", str(int(result.steps)), steps_state),
        Cell("evaluations", "evaluations", evaluations(result.stats)),
    )
    checks = []
    for name, (key, label, clear, raised) in ALWAYS.items():
        if not judged:
            checks.append(Cell(key, label, "not checked", INFO))
        else:
            checks.append(
                Cell(key, label, raised if name in flags else clear, BAD if name in flags else GOOD)
            )
    for name, (key, label, _, raised) in WHEN_RAISED.items():
        if name in flags:
            checks.append(Cell(key, label, raised, BAD))
    held = tuple(result.at_limit)
    checks.append(
        Cell("at_limit", "at a bound", ", ".join(held) if held else "none", WARN if held else GOOD)
        if judged or held
        else Cell("at_limit", "at a bound", "not checked", INFO)
    )
    third = (
        Cell("method", "method", result.method or "unknown"),
        Cell("wall_time", "wall time", _seconds(result.wall_time)),
        Cell("compile_time", "compile time", _seconds(result.compile_time)),
        Cell("counts", "free params / data", f"{int(result.n_free)} / {int(result.n_data)}"),
    )
    rows = [first, tuple(checks), third]
    described = describe_flags(flags)
    rows.append(
        (Cell("message", "reason", result.message or "none given", GOOD if result.valid else BAD, 5),)
    )
    if described and described not in (result.message or ""):
        rows.append((Cell("flags", "flags", described, BAD if not result.valid else WARN, 5),))
    return Box(title, tuple(rows))


def covariance_box(cov: Any, title: str = "Covariance") -> Box:
    """The validity box of a `Covariance`: positive definite or not, how it was made and scaled, what it holds."""
    state = covariance_state(cov)
    scale = "none (1)" if cov.scale == 1.0 else f"x {cov.scale:.6g}"
    first = (
        Cell("positive_definite", "matrix", state.words, state.state),
        Cell("method", "method", cov.method or "given"),
        Cell("scale", "scaled", scale),
        Cell("size", "params", str(cov.size)),
    )
    second = (
        Cell(
            "dropped",
            "dropped directions",
            f"{len(cov.dropped)}: {'; '.join(cov.dropped)}" if cov.dropped else "none",
            WARN if cov.dropped else GOOD,
        ),
        Cell("fixed", "fixed", ", ".join(cov.fixed) or "none"),
        Cell("at_limit", "at a bound", ", ".join(cov.at_limit) or "none", WARN if cov.at_limit else GOOD),
    )
    return Box(title, (first, second))


def posterior_box(post: Any, summary: Any, title: str = "Posterior") -> Box:
    """The validity box of a `Posterior`: divergences, R-hat and ESS against their goals, sampler statistics.

    Args:
        post: the `fk.Posterior`.
        summary: its summary DataFrame (`Posterior.summary()`, perhaps of its first params only).
        title: the box's title.
    """
    d = post.diagnostics
    divergences = int(d.get("divergences", 0))
    rhat = float(np.nanmax(summary["r_hat"].to_numpy())) if summary["r_hat"].notna().any() else float("nan")
    ess = (
        float(np.nanmin(summary["ess_bulk"].to_numpy()))
        if summary["ess_bulk"].notna().any()
        else float("nan")
    )
    goal = ESS_PER_CHAIN * post.num_chains
    first = (
        Cell("draws", "draws", f"{post.num_chains} chain(s) x {post.num_draws}"),
        Cell("divergences", "divergences", str(divergences), GOOD if divergences == 0 else BAD),
        Cell(
            "r_hat",
            "max R-hat",
            f"{number(rhat, 4)} (goal <= {RHAT_MAX})",
            INFO if not np.isfinite(rhat) else (GOOD if rhat <= RHAT_MAX else BAD),
        ),
        Cell(
            "ess_bulk",
            "min ESS bulk",
            f"{number(ess, 4)} (goal >= {goal})",
            INFO if not np.isfinite(ess) else (GOOD if ess >= goal else WARN),
        ),
    )
    step_size = np.atleast_1d(np.asarray(d.get("step_size", np.nan), np.float64))
    second = (
        Cell("accept_prob", "mean accept prob.", number(d.get("accept_prob", np.nan), 3)),
        Cell("step_size", "step size", ", ".join(number(s, 3) for s in step_size[:8])),
        Cell("leapfrog", "mean leapfrog steps", number(d.get("mean_num_steps", np.nan), 3)),
        Cell("grad_evals", "gradient evaluations", str(d.get("grad_evals", "not recorded"))),
    )
    third = [
        Cell("wall_time", "wall time", _seconds(d.get("wall_time", np.nan))),
        Cell("compile_time", "compile time", _seconds(d.get("compile_time", np.nan))),
    ]
    if post.unsampled:
        third.append(Cell("unsampled", "not sampled", ", ".join(post.unsampled), WARN))
    if d.get("interrupted"):
        third.append(Cell("interrupted", "run", "INTERRUPTED", BAD))
    return Box(title, (first, second, tuple(third)))


def intervals_box(iv: Any, title: str = "Profile intervals") -> Box:
    """The validity box of `Intervals`: every side converged or not, one-sided sides, a lower minimum found."""
    sides = np.concatenate([np.asarray(iv.lower_valid, bool), np.asarray(iv.upper_valid, bool)])
    failed = int(np.sum(~sides))
    bound = [
        f"{n} ({side})"
        for side, flags in (("lower", iv.lower_at_bound), ("upper", iv.upper_at_bound))
        for n, at in zip(iv.names, np.asarray(flags, bool))
        if at
    ]
    found = iv.new_minimum is not None
    reasons = [f"{failed} side(s) did not converge"] * bool(failed) + ["a lower minimum was found"] * found
    first = (
        Cell(
            "valid", "valid", "yes" if iv.valid else f"NO ({'; '.join(reasons)})", GOOD if iv.valid else BAD
        ),
        Cell("cl", "confidence level", f"{100 * iv.cl:.3g}% (nll rise {iv.delta:.4g})"),
        Cell(
            "sides", "sides converged", f"{sides.size - failed} of {sides.size}", GOOD if not failed else BAD
        ),
        Cell("one_sided", "one-sided", ", ".join(bound) or "none", WARN if bound else GOOD),
        Cell(
            "new_minimum",
            "new minimum",
            "FOUND: solve again from Intervals.new_minimum" if found else "none",
            BAD if found else GOOD,
        ),
    )
    rows = [first]
    if iv.messages:
        state = BAD if not iv.valid else (WARN if bound else GOOD)
        rows.append((Cell("messages", "messages", "; ".join(iv.messages), state, 5),))
    return Box(title, tuple(rows))
