"""`solve`: second-order and least-squares solving with optimistix, in one jitted loop."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import optimistix as optx

from .. import tree
from .._checks import whole
from .._limits import find_at_limit
from .._loop import RUNNING, best_or_last, run
from .._verdict import assess, comparison_numbers, loss_at, refine
from ..parametrisation import normalise_fixed
from ..problem import Problem
from ..projection import resolve_projection
from ..results import FitResult, inherited_fixed, start_params
from . import _log
from ._messages import (
    CONVERGED,
    MAX_STEPS,
    STALLED,
    ConvergenceError,
    ConvergenceWarning,
    outcome,
    stop_message,
)
from ._methods import resolve
from ._observe import inner_solver
from ._stepper import COLUMNS, CONVERGED_CODE, FAILED_CODE, STALLED_CODE, OptimistixStepper

__all__ = ["solve"]

# optimistix tests convergence on accepted steps only: at a minimum to machine
# precision no trial is accepted again and the solve would run to max_steps.
# This many rejected trials in a row (a backtracking search has then shrunk the
# step by 2**-60, far below float64 precision) end it as converged ("stalled").
STALL = 60
# Nelder-Mead's trials do not move the best vertex as a rejected step would: no stall test.
NEVER_STALL = 2**31 - 1
# Above this many params method="auto" uses L-BFGS where it would use Newton.
NEWTON_LIMIT = 500


def _curvature_method(params) -> str:
    """Newton (exact Hessian: insensitive to the params' units) where a Hessian per step is affordable."""
    return "newton" if tree.size(params) <= NEWTON_LIMIT else "lbfgs"


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)


def solve(
    problem: Problem,
    params: Any,
    *,
    method: str | optx.AbstractMinimiser | optx.AbstractLeastSquaresSolver = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1000,
    verbose: bool = False,
    log_every: int = 1,
    progress: bool | None = False,
    throw: bool = False,
    best_so_far: bool = True,
    projection: Any = None,
    max_edm: float | None = None,
    retries: int = 2,
    warn: bool = True,
    fixed: Any = None,
    jacobian: bool = False,
    **solver_options: Any,
) -> FitResult:
    """Fit `problem` with a quasi-Newton, Newton or least-squares solver from optimistix.

    The solve (every step, best-so-far tracking and the history) runs on
    device in the one loop of `fitkit._loop`, compiled once per structure:
    repeated calls with new data, a new start or another `max_steps` skip
    compilation. The host prints the log between chunks of about 0.2 s and
    checks for Ctrl-C there (an interrupted solve returns the best params so
    far, flagged `interrupted`).

    Which method (measured in `scripts/bench/solvers.py`; see `docs/performance.md`
    and `fitkit.solving.METHODS`):

    - a normal likelihood (least squares on z-scores), up to a few thousand
      params: `"levenberg-marquardt"` (16 steps on the tutorial's Gaussians,
      robust when some params are poorly constrained) or `"gauss-newton"`
      (invariant to the params' units: fewest steps on a badly scaled copy).
    - a small dense problem (up to ~1000 params): `"bfgs"` (the least wall
      time on the Gaussians) or `"newton"` (exact Hessian, insensitive to
      scaling, a few hundred params at most).
    - many params, priors, or a Poisson likelihood: `"lbfgs"` (the default;
      memory linear in the number of params).
    - `"nonlinear-cg"` only when memory is very tight; `"nelder-mead"` only
      when the loss has no useful gradient.

    `method="auto"` (the default) picks the most robust method for the
    problem: Levenberg-Marquardt on `problem.residuals` when the problem has
    no priors (a trust-region least-squares method), else the exact-Hessian
    trust-region `"newton"` (up to 500 params) or `"lbfgs"`, with tight
    tolerances (`rtol=1e-10`, `atol=1e-14`). When that result is not valid
    (see below) it retries with `"newton"` (exact curvature: insensitive
    to the params' units; `"lbfgs"` above 500 params) up to `retries` times,
    from where it stopped or, from a saddle or a flat region, from the start, as
    MINUIT's MIGRAD iterates; `stats["tried"]` lists the methods run.

    Every result carries a verdict: `res.edm` is the estimated distance to
    the minimum `0.5 g^T H^-1 g` of `problem.nll` (the decrease of the nll
    still to be had, in its own units, so free of the params' scales), and
    `res.valid` is True only when the solver stopped on its convergence test
    (or could not improve the loss any further), no step limit was hit,
    every value is finite, the Hessian is positive definite and
    `edm <= max_edm` (default 1e-8 in float64, 1e-4 in float32). `res.flags`
    names every reason it is not (see `fk.FLAGS`) and `res.message` says it
    in words. A result that is not valid warns with `ConvergenceWarning`.

    All methods stop on optimistix's step-size test (see `rtol`): on badly
    scaled params a slow method (L-BFGS with a short history, nonlinear CG)
    can take steps so short that the test passes far from the minimum. Check
    `history["grad_norm"]`, use a Newton-type method, or rescale the params.

    Bounds and ties declared on the problem, and the `fixed` params, are
    respected by working on an unconstrained vector of the free params (see
    `fk.Parametrisation`). A free param whose minimum lies beyond its bound
    ends within a tiny distance of it; it is then held at the bound, the
    others are solved again, and the result carries the informational flag
    `at_limit` (still valid) with those params listed in `res.at_limit`.

    Minimisers run on `problem.loss` (mean squared z-score), or on
    `problem.nll` when the problem has priors, which gives the maximum a
    posteriori (MAP) point. Least-squares methods run on `problem.residuals`
    (the z-scores) and so ignore priors.

    Args:
        problem: the `fk.Problem` to fit, or an `fk.Batch` of many (`fk.batch`): then `params`
            holds one start per member on a leading axis and the result is an `fk.BatchResult`
            (every member in one compiled loop, each with its own verdict; see
            `fitkit.batching.solve_batch`).
        params: the starting params pytree, or a previous `FitResult` to
            continue from (a first-order `fk.fit` followed by a polish).
        method: `"bfgs"`, `"lbfgs"`, `"newton"`, `"nonlinear-cg"`,
            `"nelder-mead"`, `"gauss-newton"`, `"levenberg-marquardt"`,
            `"dogleg"`; or any `optx.AbstractMinimiser` or
            `optx.AbstractLeastSquaresSolver` instance (used as given: its own
            tolerances apply and `solver_options` must be empty).
        rtol, atol: stop when the last accepted step changed every parameter
            by less than `atol + rtol * |parameter|` and the loss (residuals,
            for least squares) by less than `atol + rtol * |loss|`. Default:
            1e-10 and 1e-14 for `"auto"`, 1e-8 and 1e-8 for a named method.
        max_steps: most steps to take; a step is one trial point, so rejected
            line-search or trust-region trials count.
        verbose: print a CmdStan-style table (step, loss, ||dx||, ||grad||, step
            size, function evaluations) from inside the compiled loop, then a
            line saying why it stopped.
        log_every: print every `log_every`-th step (the last step always).
        progress: a bar of the steps out of `max_steps`, with the loss and the gradient's norm
            (a widget in Jupyter, text on stderr elsewhere); it ends full when the solve stops.
            Off by default (most solves take well under a second; `verbose` prints the log):
            `True` shows it, `None` shows it where a notebook or a terminal can.
        throw: raise `ConvergenceError` (carrying the result) instead of warning
            when the solve does not converge.
        best_so_far: return the params with the lowest loss seen rather than
            the last iterate.
        projection: solve in the whitened latent space of an `fk.Projection`
            (or `"fisher"` / `"hessian"` to build one at the start): every
            latent direction then has unit curvature, which turns a badly
            scaled, strongly correlated problem (the hierarchical optics
            example) into an easy one for any method. The result holds params.
        max_edm: the EDM below which a result can be valid (default: 1e-8 in
            float64, 1e-4 in float32).
        retries: with `method="auto"`, how many times to retry with `"newton"`
            from a result that is not valid (0 to never retry).
        warn: warn with `ConvergenceWarning` when the result is not valid.
        fixed: params to hold at their start values: a path or a list of
            paths (sub-trees, leaves or elements such as `"wfe[0]"`). Default:
            none, or the same as the `FitResult` given as `params`. Another
            choice of fixed params reuses the compiled solve.
        jacobian: must be False: the solve maximises the density of the
            params as declared (the MAP point of the physical params, CmdStan's
            `jacobian=False`), whatever bounds transform the solver works
            through; the log-Jacobian of the bounds is added only by `fk.sample`.
        **solver_options: passed to the named method's constructor, e.g.
            `history_length=10` for `"lbfgs"`, `beta="fletcher-reeves"` for
            `"nonlinear-cg"`, `rdelta=0.2` for `"nelder-mead"`,
            `linear_solver=lx.SVD()` for the least-squares methods.

    Returns:
        A `FitResult`: `params`, `loss` (`problem.loss` at `params`), `steps`,
        `converged`, `message` (why it stopped, in words), `history` (per step:
        `loss` of the objective solved, `grad_norm`, `dx_norm`, `step_size`,
        `accepted`), `wall_time` and `compile_time` in seconds, `method`
        (`"solve:<name>"`), and `stats` (`num_steps`, `num_accepted`, and the
        loss/gradient or residual/Jacobian evaluation counts).

    Raises:
        UnknownMethodError: (a `ValueError`) an unknown method name; the
            message lists the valid ones.
        TypeError, ValueError: bad arguments or params that do not fit the
            problem, before anything is compiled.
        ConvergenceError: with `throw=True`, when it did not converge.

    Warns:
        ConvergenceWarning: with `throw=False`, when it did not converge.

    Example:
        >>> prob, truth, start = fk.examples.gaussians.make_problem()
        >>> res = fk.solve(prob, start, method="bfgs", verbose=True)
        >>> res.converged, res.steps, float(prob.chi2r(res.params))
        (True, 25, 1.0282461...)
    """
    from ..batching import Batch, solve_batch

    if isinstance(problem, Batch):
        unsupported = {
            "verbose": verbose, "progress": progress, "throw": throw, "projection": projection is not None,
            "fixed": fixed is not None, "best_so_far": not best_so_far, "jacobian": jacobian,
        }  # fmt: skip
        asked = [name for name, given in unsupported.items() if given]
        if asked:
            raise TypeError(
                f"fk.solve on a batch does not take {', '.join(asked)} yet; solve members one by one"
            )
        return solve_batch(
            problem, params, method=method, rtol=rtol, atol=atol, max_steps=max_steps, max_edm=max_edm,
            retries=retries, warn=warn, **solver_options,
        )  # fmt: skip
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an fk.Problem or an fk.Batch, got {type(problem).__name__}")
    if jacobian is not False:
        raise ValueError(
            "jacobian=True (the mode of the unconstrained density) is not offered: fk.solve gives the "
            "MAP point of the params as declared; use fk.sample for the posterior"
        )
    declared = sorted({"bounds", "ties", "priors"} & set(solver_options))
    if declared:
        raise TypeError(
            f"{', '.join(declared)} belong to the problem, not to the solve: declare them with "
            f"fk.Problem(model, observations, {declared[0]}={{...}}) and every engine respects them"
        )
    fixed = inherited_fixed(params, fixed)
    params = start_params(params)
    problem.check(params)
    parametrisation = problem.parametrisation(params, fixed) if problem.declares(fixed) else None
    auto = isinstance(method, str) and method.strip().lower() == "auto"
    rtol = _positive((1e-10 if auto else 1e-8) if rtol is None else rtol, "rtol")
    atol = _positive((1e-14 if auto else 1e-8) if atol is None else atol, "atol")
    max_steps = whole(max_steps, "max_steps")
    log_every = whole(log_every, "log_every")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
    if max_edm is not None:
        max_edm = _positive(max_edm, "max_edm")
    if auto:
        least_squares_fits = problem.has_residuals and not (problem.priors or problem.log_prior_fn)
        method = "levenberg-marquardt" if least_squares_fits else _curvature_method(params)
        if solver_options:
            raise TypeError(
                f"solver options {sorted(solver_options)} need a named method; method='auto' picks one itself"
            )
    if parametrisation is not None:
        params = parametrisation.complete(parametrisation.flat(params))
        latent = (
            parametrisation
            if projection is None
            else resolve_projection(problem, params, projection, parametrisation=parametrisation)
        )
    else:
        latent = (
            tree.Layout.of(params) if projection is None else resolve_projection(problem, params, projection)
        )
    tried, result, at_limit = [], params, ()
    # The same for every attempt: how long to run, what to show, how to judge.
    run_options = dict(
        max_steps=max_steps,
        log_every=log_every,
        verbose=verbose,
        progress=progress,
        max_edm=max_edm,
        best_so_far=best_so_far,
    )
    for attempt in range(1 + (retries if auto else 0)):
        solver, name, least_squares = resolve(method, rtol, atol, solver_options)
        if least_squares and (problem.priors or problem.log_prior_fn is not None):
            raise ValueError(
                f"{name} solves problem.residuals, which cannot hold the priors, so it would return the "
                "maximum-likelihood point instead of the MAP point; use method='auto', 'newton' or 'bfgs'"
            )
        if least_squares:
            problem._need_residuals(f"method={name!r}")
        objective = (
            "residuals" if least_squares else ("nll" if problem.priors or problem.log_prior_fn else "loss")
        )
        tried.append(name)
        # Go on from a point that was heading for a minimum; from a saddle, a flat
        # region or a failure, start again from the user's start instead.
        onward = attempt > 0 and set(result.flags) <= {"above_max_edm", "call_limit"}
        start = start_params(result) if onward else params
        result = _solve_latent(
            problem,
            solver,
            f"{name}+projection" if projection is not None and attempt == 0 else name,
            objective,
            start,
            latent if attempt == 0 else (parametrisation or tree.Layout.of(start)),
            parametrisation,
            at_limit,
            **run_options,
        )
        if (
            parametrisation is not None
            and not result.valid
            and not {"non_finite", "interrupted"} & set(result.flags)
        ):
            held, values = find_at_limit(problem, parametrisation, result.params)
            if held.any():
                # Hold the params whose minimum lies beyond their bound, and solve the others again.
                parametrisation = parametrisation.with_fixed(values, held)
                at_limit = (*at_limit, *(n for n, h in zip(parametrisation.names, held) if h))
                tried.append(name)
                first = result
                result = _solve_latent(
                    problem,
                    solver,
                    name,
                    objective,
                    parametrisation.complete(parametrisation.flat(result.params)),
                    parametrisation,
                    parametrisation,
                    at_limit,
                    **run_options,
                )
                result = dataclasses.replace(
                    result,
                    wall_time=first.wall_time + result.wall_time,
                    compile_time=first.compile_time + result.compile_time,
                )
        # A start whose loss was never finite cannot be repaired by another method,
        # and a user who pressed Ctrl-C wants the result now.
        if result.valid or {"non_finite", "interrupted"} & set(result.flags):
            break
        if attempt > 0 and not onward:
            break  # the fallback has already run from the user's start
        method = _curvature_method(params)
    if len(tried) > 1:
        result = dataclasses.replace(
            result,
            method=f"solve:{'->'.join(tried)}",
            message=f"{result.message} Methods tried: {', '.join(tried)}.",
            stats={**result.stats, "tried": tried},
        )
    else:
        result = dataclasses.replace(result, stats={**result.stats, "tried": tried})
    if parametrisation is not None:
        user_fixed = normalise_fixed(params, fixed)
        result = dataclasses.replace(result, fixed=user_fixed, at_limit=at_limit)
    # The user's start, not that of a retry or of the solve again with params held at a bound.
    result = dataclasses.replace(result, initial=params)
    if not result.valid:
        if throw:
            raise ConvergenceError(result.message, result)
        if warn:
            warnings.warn(result.message, ConvergenceWarning, stacklevel=2)
    return result


def _solve_latent(
    problem,
    solver,
    name,
    objective,
    start,
    latent,
    parametrisation=None,
    at_limit=(),
    *,
    max_steps,
    log_every,
    verbose,
    progress,
    max_edm,
    best_so_far,
) -> FitResult:
    """Solve for the latent vector `u` (params = `latent.to_params(u)`) and package the result."""
    simplex = isinstance(inner_solver(solver), optx.NelderMead)
    stepper = OptimistixStepper(solver, latent, objective, STALL if not simplex else NEVER_STALL)
    what = {"loss": "the loss", "nll": "the negative log-posterior", "residuals": "the residuals"}[objective]
    rtol, atol = getattr(solver, "rtol", float("nan")), getattr(solver, "atol", float("nan"))
    title = f"fk.solve: {name} on {what}, {tree.size(start)} params, rtol={rtol:g}, atol={atol:g}, max_steps={max_steps}"
    with _log.Reporter(
        title,
        max_steps,
        verbose,
        progress,
        rejected="no new best" if simplex else "rejected",
        description=f"solve {name}",
    ) as reporter:

        def on_chunk(carry, rows, done):
            if verbose or reporter.bar is not None:
                final = int(carry.code) != RUNNING or done >= max_steps
                reporter.chunk(rows, done, log_every, final)
            return False

        out = run(stepper, latent.to_latent(start), problem, max_steps=max_steps, on_chunk=on_chunk)
        carry, steps = out.carry, out.steps
        code = int(carry.code)
        kind = {CONVERGED_CODE: CONVERGED, STALLED_CODE: STALLED}.get(code)
        if code == FAILED_CODE:
            kind = outcome(int(carry.state["result"]), False)
        elif kind is None:
            kind = MAX_STEPS
        message = stop_message(kind, solver, steps, max_steps, None, None, stall=STALL)
        if out.interrupted:
            message = f"Interrupted (Ctrl-C) after {steps} steps; the best params so far are returned."
        reporter.finish(message)
    history = {"step": np.arange(1, steps + 1)}
    history.update(
        {k: out.history[k] for k in COLUMNS if k != "evals"}
        if steps
        else {k: np.zeros(0) for k in COLUMNS if k != "evals"}
    )
    history["accepted"] = history["accepted"] > 0
    counts = stepper.counts(carry.state, carry.y)
    extra = int(carry.state["extra_evals"])
    if extra:
        counts["loss_evals"] = counts.get("loss_evals", 0) + extra
    stats = {
        "num_steps": steps,
        "num_accepted": int(carry.state["accepted"]),
        **counts,
        "objective": objective,
        "max_steps": max_steps,
        "rtol": float(rtol),
        "atol": float(atol),
        "outcome": "interrupted" if out.interrupted else kind,
        "chunks": out.chunks,
        "max_edm": max_edm,  # as given; None is the default for the params' precision
    }
    chosen_y = best_or_last(carry) if best_so_far else carry.y
    chosen = latent.to_params(chosen_y)
    if out.interrupted:
        engine_flags = ("interrupted",)
    elif kind in (CONVERGED, STALLED):
        engine_flags = ()
    else:
        engine_flags = ("call_limit",) if kind == MAX_STEPS else ("solver_failed",)
    judged = {"max_edm": max_edm, "parametrisation": parametrisation, "at_limit": at_limit}
    verdict = assess(problem, chosen, engine_flags, **judged)
    chosen, verdict = refine(problem, chosen, verdict, engine_flags, **judged)
    return FitResult(
        params=chosen,
        loss=float(loss_at(problem, chosen)),
        steps=steps,
        converged=kind in (CONVERGED, STALLED) and not out.interrupted,
        message=f"{message} {verdict.text}",
        valid=verdict.valid,
        edm=verdict.edm,
        flags=verdict.flags,
        history=history,
        wall_time=out.wall_time,
        compile_time=out.compile_time,
        method=f"solve:{name}",
        stats=stats,
        initial=start,
        **comparison_numbers(problem, chosen, parametrisation),
    )
