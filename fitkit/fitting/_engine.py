"""`fit`: first-order fitting with optax, fused into jitted `lax.scan` chunks."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Bool, Int, PyTree

from .. import tree
from .._checks import whole
from .._flags import describe_flags
from .._verdict import assess
from ..problem import Problem
from ..projection import resolve_projection
from ..results import FitResult, start_params
from ..solving._messages import ConvergenceWarning
from ._batches import EpochBatches
from ._nan import NAN_POLICIES, NonFiniteError, nonfinite_leaves, nonfinite_message, zero_nonfinite
from ._natural import preconditioner
from ._optimisers import map_optimisers
from ._progress import Progress
from ._stopper import Stopper, StopperState

__all__ = ["fit"]

# More skipped (or zeroed) non-finite steps than this fraction flags the result.
NONFINITE_FRACTION = 0.01

Optimisers = optax.GradientTransformation | Mapping[Any, optax.GradientTransformation]


class _Carry(eqx.Module):
    """Everything a step changes; lives on device between chunks."""

    x: PyTree
    opt_state: PyTree
    stopper: StopperState
    best_x: PyTree
    step: Int[Array, ""]
    done: Bool[Array, ""]
    failed: Bool[Array, ""]
    bad_leaves: Bool[Array, " leaves"]
    loss_finite: Bool[Array, ""]


def _tree_where(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def _max_steps(steps: int | None, stopper: Stopper) -> int:
    if steps is None and stopper.max_steps is None:
        raise ValueError("give the number of steps: fit(..., steps=500) or Stopper(max_steps=500)")
    if steps is not None and stopper.max_steps is not None and steps != stopper.max_steps:
        raise ValueError(
            f"steps={steps} and Stopper(max_steps={stopper.max_steps}) disagree; give only one of them"
        )
    return whole(steps if steps is not None else stopper.max_steps, "steps")


def _observation_counts(problem: Problem) -> np.ndarray:
    return np.array([int(np.sum(np.asarray(obs.valid))) for obs in problem.observations])


def fit(
    problem: Problem,
    params: Any,
    optimisers: Optimisers,
    steps: int | None = None,
    stopper: Stopper | None = None,
    batch_size: int | None = None,
    validation: Problem | None = None,
    history: bool = True,
    history_every: int = 1,
    progress: bool = True,
    nan: str = "raise",
    key: jax.Array | None = None,
    callback: Callable[[int, float, Any], bool | None] | None = None,
    chunk_size: int | None = None,
    precondition: Any = None,
    projection: Any = None,
    damping: float = 1e-10,
    refresh_every: int | None = None,
    max_edm: float | None = None,
    warn: bool = True,
) -> FitResult:
    """Fit `problem.loss` with optax optimisers, in a fused on-device loop.

    Each step evaluates the loss and its gradient at the current params
    (`eqx.filter_value_and_grad(problem.loss)`), records the loss, feeds the
    stopper, and applies the optimisers' update. Steps run on device in
    jitted `lax.scan` chunks; between chunks the progress bar advances and
    `callback` runs. A stop mid-chunk is exact: later steps of the chunk do
    nothing and are not recorded.

    Args:
        problem: the `fk.Problem` to fit.
        params: the starting params (a pytree of float arrays), or a previous
            `FitResult` to continue from its params.
        optimisers: one optax transformation for all params, or a dict from a
            path or a tuple of paths to an optax transformation, e.g.
            `{("mean", "std"): optax.sgd(2e-3), "power": optax.sgd(fk.delay(5e-3, 50))}`.
            Params not named stay fixed (a warning lists them).
        steps: the most steps to take (or `Stopper(max_steps=...)`).
        stopper: an `fk.Stopper` (patience, tolerances, restore-best); by
            default the fit runs `steps` steps and returns the best params seen.
        batch_size: observations per step: each epoch visits every observation
            once, in an order reshuffled with `key`. The recorded loss is then
            the mini-batch loss. `None` uses all observations every step.
        validation: a `Problem` whose loss (at each step's params) drives the
            stopper and restore-best instead of the training loss; it is
            recorded as the `"validation_loss"` history column.
        history: also record the params (every `history_every` steps) in
            `history["params"]`; the loss is always recorded.
        history_every: thin the params history to every k-th step.
        progress: show a tqdm progress bar.
        nan: what to do with a non-finite loss or gradient: `"raise"` a
            `NonFiniteError` naming the step and the param paths; `"skip"` the
            update; or `"zero"` the non-finite gradient entries and update.
        key: random key for the mini-batch order (default `jax.random.key(0)`).
        callback: called between chunks as `callback(step, loss, params)`
            with the number of steps done, the last loss and the current
            params; return True to stop the fit there.
        chunk_size: steps per jitted chunk (default: 1/50 of `steps` with a
            progress bar or callback, else all steps in one chunk), rounded
            up to a multiple of `history_every`.
        precondition: natural-gradient descent: the curvature of `problem.nll`
            as an `(n, n)` Fisher or Hessian matrix (`fk.fisher`, `fk.hessian`),
            `"fisher"` or `"hessian"` (computed at the start), or an
            `fk.Projection`. Gradients are multiplied by its (damped) inverse,
            scaled to the loss, before the optimisers, so one learning rate of
            order 0.1-1 suits every param: a rate of 1 is a Newton step.
        projection: optimise in the whitened latent space of an
            `fk.Projection` (or `"fisher"` / `"hessian"` to build one at the
            start); `optimisers` must then be one optax transformation, as the
            latent coordinates mix all params. The result holds params.
        damping: relative damping of the preconditioner's small eigenvalues.
        refresh_every: with `precondition="fisher"`/`"hessian"`, recompute the
            curvature at the current params every this many steps.
        max_edm: the verdict's tolerance on the estimated distance to the
            minimum, `0.5 g^T H^-1 g` of `problem.nll` (default 1e-8 in
            float64, 1e-4 in float32). The result is `valid` only when the
            EDM is below it, the Hessian is positive definite, every value is
            finite and at most 1% of the steps met non-finite values; running
            all `steps` (or a callback stop) is flagged only when the EDM test
            fails. `res.flags` says why not; a result that is not valid warns
            with `fk.ConvergenceWarning`.
        warn: warn when the result is not valid.

    Returns:
        A `FitResult` with `method="fit:optax"`; `history` has `step`, `loss`,
        `grad_norm` (and `validation_loss`, `params`, `params_step`).
        `converged` is True only when the stopper's patience ran out.

    Raises:
        PathError: an optimisers path does not exist in `params`.
        OptimiserError: a param is named by two optimisers entries.
        ParamsError: the params do not fit the problem.
        ValueError: a bad step count, batch size, nan policy or chunk size.
        NonFiniteError: with `nan="raise"`, at the first non-finite step.

    Example:
        >>> res = fk.fit(prob, params, {("mean", "std"): optax.sgd(2e-3, momentum=0.5),
        ...                             "power": optax.sgd(fk.delay(5e-3, 50), momentum=0.5)}, steps=500)
        >>> res.loss, res.to_dataframe().tail()
    """
    return _fit(
        problem,
        params,
        optimisers,
        steps=steps,
        stopper=stopper,
        batch_size=batch_size,
        validation=validation,
        history=history,
        history_every=history_every,
        progress=progress,
        nan=nan,
        key=key,
        callback=callback,
        chunk_size=chunk_size,
        max_edm=max_edm,
        warn=warn,
        **_geometry(problem, params, optimisers, precondition, projection, damping, refresh_every),
    )


def _geometry(problem, params, optimisers, precondition, projection, damping, refresh_every) -> dict:
    """The `transform` and `latent` hooks of `_fit` for natural gradients and projections."""
    if precondition is None and projection is None:
        if refresh_every is not None:
            raise ValueError("refresh_every needs precondition='fisher' or 'hessian'")
        return {}
    if precondition is not None and projection is not None:
        raise ValueError(
            "give precondition or projection, not both: a whitened latent space needs no preconditioner"
        )
    if not isinstance(problem, Problem):
        raise TypeError(f"problem is a {type(problem).__name__}; give an fk.Problem")
    params = start_params(params)
    problem.check(params)
    if precondition is not None:
        return {"transform": preconditioner(problem, params, precondition, damping, refresh_every)}
    if isinstance(optimisers, dict):
        raise ValueError(
            "with projection=..., give one optax optimiser (e.g. optax.sgd(0.5)): the latent "
            "coordinates mix all params, so per-path optimisers do not apply"
        )
    if refresh_every is not None:
        raise ValueError("refresh_every applies to precondition=..., not to projection=...")
    proj = resolve_projection(problem, params, projection)
    # The loss is 2 / n_data times the nll, whose curvature is the identity in
    # latent units: rescale so that a learning rate of 1 is a Newton step here too.
    return {
        "latent": (proj.to_latent(params), proj.to_params),
        "transform": optax.scale(problem.n_data / 2.0),
    }


def _fit(
    problem: Problem,
    params: Any,
    optimisers: Optimisers,
    *,
    steps,
    stopper,
    batch_size,
    validation,
    history,
    history_every,
    progress,
    nan,
    key,
    callback,
    chunk_size,
    max_edm=None,
    warn=True,
    transform: optax.GradientTransformation | None = None,
    latent: tuple[Any, Callable[[Any], Any]] | None = None,
) -> FitResult:
    """The engine behind `fit`.

    `transform` is chained before the optimisers (e.g. a preconditioner), and
    `latent = (x0, to_params)` optimises a latent pytree `x` whose params are
    `to_params(x)` (the optimisers then address `x`).
    """
    # ---------------------------------------------------------------- checks
    if not isinstance(problem, Problem):
        raise TypeError(f"problem is a {type(problem).__name__}; give an fk.Problem")
    if validation is not None and not isinstance(validation, Problem):
        raise TypeError(f"validation is a {type(validation).__name__}; give an fk.Problem")
    stopper = Stopper() if stopper is None else stopper
    if not isinstance(stopper, Stopper):
        raise TypeError(f"stopper is a {type(stopper).__name__}; give an fk.Stopper")
    max_steps = _max_steps(steps, stopper)
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan={nan!r} is not a policy; choose one of {NAN_POLICIES}")
    history_every = whole(history_every, "history_every")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be a function callback(step, loss, params)")
    params = start_params(params)
    problem.check(params)
    if validation is not None:
        validation.check(params)
    if latent is None:
        x0, to_params = params, lambda x: x
    else:
        x0, to_params = jax.tree.map(jnp.asarray, latent[0]), latent[1]
    optimiser, frozen = map_optimisers(x0, optimisers)
    if transform is not None:
        optimiser = optax.chain(transform, optimiser)
    x_paths = tree.leaf_paths(x0)
    trainable = [p not in frozen for p in x_paths]
    batches = None
    if batch_size is not None:
        key = jr.key(0) if key is None else key
        batches = EpochBatches(len(problem.observations), batch_size, key)
    if chunk_size is None:
        chunk_size = math.ceil(max_steps / 50) if (progress or callback) else max_steps
    chunk_size = whole(chunk_size, "chunk_size")
    groups = math.ceil(min(chunk_size, max_steps) / history_every)
    chunk_size = groups * history_every
    n_chunks = math.ceil(max_steps / chunk_size)

    # -------------------------------------------------------------- objective
    counts = _observation_counts(problem)
    stacked = problem.vmapped and len(np.unique(counts)) == 1
    subs = None if batches is None or stacked else [problem.take([i]) for i in range(len(counts))]
    arrays, static = eqx.partition((problem, validation, subs, batches), eqx.is_array)

    def objective(x, arrays, step):
        problem, _, subs, batches = eqx.combine(arrays, static)
        p = to_params(x)
        if batches is None:
            return problem.loss(p)
        indices, weights = batches(step)
        if stacked:
            chi2 = jax.vmap(lambda i: problem.take(i[None]).chi2(p))(indices)
        else:
            # lax.switch runs one observation's branch per batch slot.
            branches = [lambda p, s=s: s.chi2(p) for s in subs]
            chi2 = jax.lax.map(lambda i: jax.lax.switch(i, branches, p), indices)
        return jnp.sum(weights * chi2) / jnp.sum(weights * jnp.asarray(counts)[indices])

    value_and_grad = eqx.filter_value_and_grad(objective)
    loss_dtype = jax.eval_shape(problem.loss, params).dtype
    nan_value = jnp.asarray(jnp.nan, loss_dtype)

    def monitor(x, arrays, loss):
        validation = eqx.combine(arrays, static)[1]
        return loss if validation is None else validation.loss(to_params(x))

    # ------------------------------------------------------------------ steps
    def take_step(carry: _Carry, arrays):
        loss, grads = value_and_grad(carry.x, arrays, carry.step)
        bad = nonfinite_leaves(grads, trainable)
        loss_finite = jnp.isfinite(loss)
        broken = jnp.any(bad) | ~loss_finite
        if nan == "zero":
            grads = zero_nonfinite(grads)
        updates, opt_state = optimiser.update(grads, carry.opt_state, carry.x)
        x = optax.apply_updates(carry.x, updates)
        if nan != "zero":
            x = _tree_where(broken, carry.x, x)
            opt_state = _tree_where(broken, carry.opt_state, opt_state)
        monitored = monitor(carry.x, arrays, loss)
        state = stopper.update(carry.stopper, carry.step, monitored)
        failed = broken if nan == "raise" else jnp.asarray(False)
        new = _Carry(
            x=x,
            opt_state=opt_state,
            stopper=state,
            best_x=_tree_where(state.best_step == carry.step, carry.x, carry.best_x),
            step=carry.step + 1,
            done=state.stopped | failed | (carry.step + 1 >= max_steps),
            failed=failed,
            bad_leaves=bad,
            loss_finite=loss_finite,
        )
        row = {"loss": loss, "grad_norm": optax.tree.norm(grads), "active": jnp.asarray(True)}
        if validation is not None:
            row["validation_loss"] = monitored
        return new, row

    def idle(carry: _Carry, arrays):
        row = {"loss": nan_value, "grad_norm": nan_value, "active": jnp.asarray(False)}
        if validation is not None:
            row["validation_loss"] = nan_value
        return carry, row

    def maybe_step(carry, arrays):
        return jax.lax.cond(carry.done, idle, take_step, carry, arrays)

    def group(carry, arrays):
        snapshot = to_params(carry.x) if history else None
        carry, rows = jax.lax.scan(lambda c, _: maybe_step(c, arrays), carry, length=history_every)
        return carry, (snapshot, rows)

    def chunk(carry, arrays):
        return jax.lax.scan(lambda c, _: group(c, arrays), carry, length=groups)

    def finish(carry: _Carry, arrays):
        problem, validation, _, _ = eqx.combine(arrays, static)
        x = carry.x
        if not stopper.restore_best:
            return to_params(x), problem.loss(to_params(x))
        judge = problem if validation is None else validation
        last, best = judge.loss(to_params(x)), judge.loss(to_params(carry.best_x))
        use_last = (last < best) | (carry.stopper.best_step < 0)
        result = to_params(_tree_where(use_last, x, carry.best_x))
        loss = jnp.where(use_last, last, best) if validation is None else problem.loss(result)
        return result, loss

    # ---------------------------------------------------------------- compile
    carry = _Carry(
        x=x0,
        opt_state=optimiser.init(x0),
        stopper=stopper.init(loss_dtype),
        best_x=x0,
        step=jnp.asarray(0),
        done=jnp.asarray(False),
        failed=jnp.asarray(False),
        bad_leaves=jnp.zeros(len(x_paths), bool),
        loss_finite=jnp.asarray(True),
    )
    # The carry is donated to each chunk: give every leaf its own buffer, and
    # leave the caller's arrays alone.
    carry = jax.tree.map(jnp.copy, carry)
    t0 = time.perf_counter()
    run_chunk = jax.jit(chunk, donate_argnums=0).lower(carry, arrays).compile()
    run_finish = jax.jit(finish).lower(carry, arrays).compile()
    compile_time = time.perf_counter() - t0

    # -------------------------------------------------------------------- run
    rows, snapshots = [], []
    stopped_by_callback = False
    t0 = time.perf_counter()
    with Progress(max_steps, progress) as bar:
        for _ in range(n_chunks):
            carry, (snapshot, chunk_rows) = run_chunk(carry, arrays)
            chunk_rows = jax.tree.map(lambda a: np.asarray(a).reshape(-1), chunk_rows)
            rows.append(chunk_rows)
            snapshots.append(snapshot)
            done_here = int(chunk_rows["active"].sum())
            last_loss = float(chunk_rows["loss"][done_here - 1]) if done_here else math.nan
            bar.advance(done_here, last_loss)
            if bool(carry.failed):
                step = int(carry.step) - 1
                bad_paths = [p for p, b in zip(x_paths, np.asarray(carry.bad_leaves)) if b]
                raise NonFiniteError(nonfinite_message(step, bool(carry.loss_finite), bad_paths))
            if bool(carry.done):
                break
            if callback is not None:
                current = jax.tree.map(jnp.copy, to_params(carry.x))
                if callback(int(carry.step), last_loss, current):
                    stopped_by_callback = True
                    break
    result_params, result_loss = run_finish(carry, arrays)
    result_loss = float(result_loss)
    wall_time = time.perf_counter() - t0

    # ---------------------------------------------------------------- result
    n_steps = int(carry.step)
    names = ["loss", "grad_norm"] + (["validation_loss"] if validation is not None else [])
    columns = {name: np.concatenate([r[name] for r in rows])[:n_steps] for name in names}
    record = {"step": np.arange(n_steps), **columns}
    if history:
        params_step = np.arange(0, n_steps, history_every)
        stacked_params = jax.tree.map(lambda *a: np.concatenate(a), *snapshots)
        record["params"] = jax.tree.map(lambda a: a[: len(params_step)], stacked_params)
        record["params_step"] = params_step
    converged = bool(carry.stopper.stopped)
    if converged:
        message = f"{stopper.reason()} (best loss at step {int(carry.stopper.best_step)})"
    elif stopped_by_callback:
        message = f"stopped by the callback after {n_steps} steps"
    else:
        message = f"reached the maximum of {max_steps} steps"
    restored = stopper.restore_best
    stats = {
        "loss_evals": n_steps + (2 if restored and validation is None else 1),
        "grad_evals": n_steps,
        "nonfinite_steps": int(np.sum(~np.isfinite(columns["loss"]) | ~np.isfinite(columns["grad_norm"]))),
        "chunks": len(rows),
        "chunk_size": chunk_size,
    }
    if validation is not None:
        stats["validation_evals"] = n_steps + (2 if restored else 0)
    if batches is not None:
        stats["epochs"] = n_steps / batches.steps_per_epoch
    # Running all `steps` is how a fit without a stopper ends: it counts as a
    # call limit only when the result is not at the minimum.
    skipped = stats["nonfinite_steps"]
    engine_flags = ("nonfinite_steps",) if skipped > max(1, NONFINITE_FRACTION * n_steps) else ()
    verdict = assess(problem, result_params, engine_flags, max_edm=max_edm)
    flags = verdict.flags
    if not verdict.valid and not converged:
        flags = (*flags, "interrupted" if stopped_by_callback else "call_limit")
        verdict = verdict._replace(text=f"{verdict.text} {describe_flags(flags[-1:])}")
    if skipped:
        message = f"{message}; {skipped} of {n_steps} steps met non-finite values (nan={nan!r})"
    result = FitResult(
        params=result_params,
        loss=result_loss,
        steps=n_steps,
        converged=converged,
        message=f"{message}. {verdict.text}",
        valid=not flags,
        edm=verdict.edm,
        flags=flags,
        history=record,
        wall_time=wall_time,
        compile_time=compile_time,
        method="fit:optax",
        stats=stats,
    )
    if flags and warn:
        warnings.warn(result.message, ConvergenceWarning, stacklevel=3)
    return result
