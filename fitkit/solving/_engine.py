"""`solve`: second-order and least-squares solving with optimistix, in one jitted loop."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PyTree

from .. import tree
from .._checks import whole
from .._verdict import assess
from ..problem import Problem
from ..projection import resolve_projection
from ..results import FitResult, start_params
from . import _log
from ._compile import compiled
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
from ._observe import (
    Observation,
    evaluation_names,
    evaluations,
    holds_loss,
    inner_solver,
    inner_state,
    observe,
)

__all__ = ["solve"]

_COLUMNS = ("loss", "grad_norm", "dx_norm", "step_size", "accepted")
_COUNTERS = ("steps", "terminate", "result", "accepted", "extra_evals", "stalled")
# optimistix tests convergence on accepted steps only: at a minimum to machine
# precision no trial is accepted again and the solve would run to max_steps.
# This many rejected trials in a row (a backtracking search has then shrunk the
# step by 2**-60, far below float64 precision) end it as converged ("stalled").
STALL = 60
# Above this many params method="auto" uses L-BFGS where it would use Newton.
NEWTON_LIMIT = 500


class _Carry(eqx.Module):
    y: Float[Array, " n"]
    state: PyTree
    step: Int[Array, ""]
    terminate: Bool[Array, ""]
    result: optx.RESULTS
    best_y: Float[Array, " n"]
    best_loss: Float[Array, ""]
    accepted: Int[Array, ""]
    last_step_size: Float[Array, ""]
    extra_evals: Int[Array, ""]
    since_accepted: Int[Array, ""]
    history: Float[Array, "max_steps columns"]


def _objective(problem: Problem, kind: str, to_params: Callable) -> Callable:
    method = getattr(problem, kind)
    return lambda u, args: (method(to_params(u)), None)


def _run(problem, solver, start, latent, *, objective, max_steps, log_every, report):
    """The whole solve, traced once: init, a `lax.while_loop` of steps, and the outputs.

    `latent` maps params to the solver's vector (`to_latent`) and back (`to_params`).
    """
    to_params = latent.to_params
    u0 = latent.to_latent(start)
    fn = _objective(problem, objective, to_params)
    options, tags = {}, frozenset()
    dtype = u0.dtype
    f_struct = jax.eval_shape(lambda: fn(u0, None)[0])
    state = solver.init(fn, u0, None, options, f_struct, None, tags)
    dynamic_state, static_state = eqx.partition(state, eqx.is_array)
    reads_loss = holds_loss(state)
    counts_accepted = hasattr(inner_state(state), "num_accepted_steps")
    n_data = problem.n_data

    def measure(state, y) -> Observation:
        if reads_loss:
            return observe(state, n_data, dtype)
        value = fn(y, None)[0]
        value = jnp.sum(jnp.square(value)) / n_data if objective == "residuals" else value
        nan = jnp.asarray(jnp.nan, dtype)
        return Observation(jnp.asarray(value, dtype), nan, nan, jnp.asarray(-1, jnp.int32))

    stall = STALL if not isinstance(inner_solver(solver), optx.NelderMead) else max_steps + 1

    def cond(carry: _Carry):
        running = jnp.invert(carry.terminate) & (carry.result == optx.RESULTS.successful)
        return running & (carry.step < max_steps) & (carry.since_accepted < stall)

    def body(carry: _Carry) -> _Carry:
        state = eqx.combine(carry.state, static_state)
        y, state, _ = solver.step(fn, carry.y, None, options, state, tags)
        terminate, result = solver.terminate(fn, y, None, options, state, tags)
        finite = jnp.all(jnp.isfinite(y))
        result = optx.RESULTS.where(finite, result, optx.RESULTS.nonfinite)
        step = carry.step + 1
        seen = measure(state, y)
        if counts_accepted:
            accepted = seen.accepted
        else:
            moved = jnp.any(y != carry.y) | (step == 1)
            accepted = carry.accepted + moved.astype(carry.accepted.dtype)
        is_accepted = accepted > carry.accepted
        extra_evals = carry.extra_evals + (0 if reads_loss else 1)
        better = seen.loss < carry.best_loss
        dx = jnp.linalg.norm(y - carry.y)
        # step_size: the one that produced the point evaluated in this step
        row = jnp.stack([seen.loss, seen.grad_norm, dx, carry.last_step_size, is_accepted.astype(dtype)])
        if report:
            evals = evaluations(solver, state, step, accepted, u0.size)
            first = next(iter(evals.values()), jnp.asarray(-1)) + extra_evals
            stop = terminate | (result != optx.RESULTS.successful) | (step >= max_steps)
            jax.lax.cond(
                (step % log_every == 0) | stop,
                lambda: jax.debug.callback(
                    _log.emit, step, seen.loss, dx, seen.grad_norm, carry.last_step_size, first, is_accepted
                ),
                lambda: None,
            )
        return _Carry(
            y=y,
            state=eqx.filter(state, eqx.is_array),
            step=step,
            terminate=terminate,
            result=result,
            best_y=jnp.where(better, y, carry.best_y),
            best_loss=jnp.where(better, seen.loss, carry.best_loss),
            accepted=accepted,
            last_step_size=seen.step_size,
            extra_evals=extra_evals,
            since_accepted=jnp.where(is_accepted, 0, carry.since_accepted + 1),
            history=carry.history.at[step - 1].set(row),
        )

    nan = jnp.asarray(jnp.nan, dtype)
    carry = _Carry(
        y=u0,
        state=dynamic_state,
        step=jnp.asarray(0),
        terminate=jnp.asarray(False),
        result=optx.RESULTS.successful,
        best_y=u0,
        best_loss=jnp.asarray(jnp.inf, dtype),
        accepted=jnp.asarray(0, jnp.int32),
        last_step_size=nan,
        extra_evals=jnp.asarray(0),
        since_accepted=jnp.asarray(0),
        history=jnp.full((max_steps, len(_COLUMNS)), jnp.nan, dtype),
    )
    carry = jax.lax.while_loop(cond, body, carry)
    state = eqx.combine(carry.state, static_state)
    evals = evaluations(solver, state, carry.step, carry.accepted, u0.size)
    # Use the best point only if one was seen (the loss was finite somewhere).
    best_y = jnp.where(jnp.isfinite(carry.best_loss), carry.best_y, carry.y)
    best_params, final_params = to_params(best_y), to_params(carry.y)
    stalled = jnp.invert(carry.terminate) & (carry.since_accepted >= stall)
    counters = (carry.step, carry.terminate, carry.result._value, carry.accepted, carry.extra_evals, stalled)
    counters = jnp.stack([jnp.asarray(c, jnp.int32) for c in (*counters, *evals.values())])
    losses = jnp.stack([problem.loss(best_params), problem.loss(final_params)])
    # One packed float64/32 vector for the host (each fetched array costs a
    # transfer); counts are far below 2**24, so exact in either precision.
    packed = jnp.concatenate([losses.astype(dtype), counters.astype(dtype), jnp.ravel(carry.history)])
    return {"best": best_params, "final": final_params}, packed


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
    method: str | optx.AbstractMinimiser | optx.AbstractLeastSquaresSolver = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1000,
    verbose: bool = False,
    log_every: int = 1,
    progress: bool = False,
    throw: bool = False,
    best_so_far: bool = True,
    projection: Any = None,
    max_edm: float | None = None,
    retries: int = 2,
    warn: bool = True,
    **solver_options: Any,
) -> FitResult:
    """Fit `problem` with a quasi-Newton, Newton or least-squares solver from optimistix.

    The whole solve (every step, the log, best-so-far tracking and the
    history) runs in one compiled `lax.while_loop`; the compiled solve is
    cached, so repeated calls on problems of the same structure and shapes
    skip compilation.

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

    Minimisers run on `problem.loss` (mean squared z-score), or on
    `problem.nll` when the problem has priors, which gives the maximum a
    posteriori (MAP) point. Least-squares methods run on `problem.residuals`
    (the z-scores) and so ignore priors.

    Args:
        problem: the `fk.Problem` to fit.
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
        progress: show a tqdm progress bar.
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
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be an fk.Problem, got {type(problem).__name__}")
    params = start_params(params)
    problem.check(params)
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
        method = "levenberg-marquardt" if not problem.priors else _curvature_method(params)
        if solver_options:
            raise TypeError(
                f"solver options {sorted(solver_options)} need a named method; method='auto' picks one itself"
            )
    latent = tree.Layout.of(params) if projection is None else resolve_projection(problem, params, projection)
    tried, result = [], params
    for attempt in range(1 + (retries if auto else 0)):
        solver, name, least_squares = resolve(method, rtol, atol, solver_options)
        if least_squares and problem.priors:
            raise ValueError(
                f"{name} solves problem.residuals, which cannot hold the priors, so it would return the "
                "maximum-likelihood point instead of the MAP point; use method='auto', 'newton' or 'bfgs'"
            )
        objective = "residuals" if least_squares else ("nll" if problem.priors else "loss")
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
            latent if attempt == 0 else tree.Layout.of(start),
            max_steps,
            log_every,
            verbose,
            progress,
            max_edm,
            best_so_far,
        )
        # A start whose loss was never finite cannot be repaired by another method.
        if result.valid or "non_finite" in result.flags:
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
    max_steps,
    log_every,
    verbose,
    progress,
    max_edm,
    best_so_far,
) -> FitResult:
    """Solve for the latent vector `u` (params = `latent.to_params(u)`) and package the result."""
    report = bool(verbose or progress)
    executable, dynamic, compile_time = compiled(
        _run,
        (problem, solver, start, latent),
        objective=objective,
        max_steps=max_steps,
        log_every=log_every,
        report=report,
    )
    what = {"loss": "the loss", "nll": "the negative log-posterior", "residuals": "the residuals"}[objective]
    rtol, atol = getattr(solver, "rtol", float("nan")), getattr(solver, "atol", float("nan"))
    title = f"fk.solve: {name} on {what}, {tree.size(start)} params, rtol={rtol:g}, atol={atol:g}, max_steps={max_steps}"
    simplex = isinstance(inner_solver(solver), optx.NelderMead)
    with _log.Reporter(
        title, max_steps, verbose, progress, rejected="no new best" if simplex else "rejected"
    ) as reporter:
        start_time = time.perf_counter()
        params, packed = jax.block_until_ready(executable(dynamic))
        if report:
            jax.effects_barrier()
        packed = np.asarray(packed)
        wall_time = time.perf_counter() - start_time
        names = _COUNTERS + evaluation_names(solver)
        losses = packed[:2]
        counters = {k: int(v) for k, v in zip(names, packed[2 : 2 + len(names)])}
        table = packed[2 + len(names) :].reshape(max_steps, len(_COLUMNS))
        steps = counters["steps"]
        kind = outcome(counters["result"], bool(counters["terminate"]), bool(counters["stalled"]))
        message = stop_message(kind, solver, steps, max_steps, None, None, stall=STALL)
        reporter.finish(message)
    history = {"step": np.arange(1, steps + 1)}
    history.update({k: table[:steps, i] for i, k in enumerate(_COLUMNS)})
    history["accepted"] = history["accepted"] > 0
    evals = {k: counters[k] for k in evaluation_names(solver)}
    if counters["extra_evals"]:
        evals["loss_evals"] = evals.get("loss_evals", 0) + counters["extra_evals"]
    stats = {
        "num_steps": steps,
        "num_accepted": counters["accepted"],
        **evals,
        "objective": objective,
        "max_steps": max_steps,
        "rtol": float(rtol),
        "atol": float(atol),
        "outcome": kind,
    }
    chosen = params["best" if best_so_far else "final"]
    engine_flags = (
        () if kind in (CONVERGED, STALLED) else ("call_limit",) if kind == MAX_STEPS else ("solver_failed",)
    )
    verdict = assess(problem, chosen, engine_flags, max_edm=max_edm)
    result = FitResult(
        params=chosen,
        loss=float(losses[0 if best_so_far else 1]),
        steps=steps,
        converged=kind in (CONVERGED, STALLED),
        message=f"{message} {verdict.text}",
        valid=verdict.valid,
        edm=verdict.edm,
        flags=verdict.flags,
        history=history,
        wall_time=wall_time,
        compile_time=compile_time,
        method=f"solve:{name}",
        stats=stats,
    )
    return result
