"""`fit`: first-order fitting with optax, as a stepper of the one loop (`fitkit._loop`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from .. import tree
from .._cache import compiled
from .._checks import whole
from .._flags import describe_flags
from .._loop import run
from .._verdict import assess, comparison_numbers
from ..parametrisation import TreeLatent
from ..problem import Problem
from ..projection import resolve_projection
from ..results import FitResult, inherited_fixed, start_params
from ..solving._messages import ConvergenceWarning
from ._batches import EpochBatches
from ._nan import NAN_POLICIES, NonFiniteError, nonfinite_message
from ._natural import preconditioner
from ._optimisers import map_optimisers
from ._progress import Progress
from ._stepper import NONFINITE_CODE, STOPPED_CODE, Identity, OptaxStepper, finish
from ._stopper import Stopper

__all__ = ["fit"]

# More skipped (or zeroed) non-finite steps than this fraction flags the result.
NONFINITE_FRACTION = 0.01

Optimisers = optax.GradientTransformation | Mapping[Any, optax.GradientTransformation]


def _max_steps(steps: int | None, stopper: Stopper) -> int:
    if steps is None and stopper.max_steps is None:
        raise ValueError("give the number of steps: fit(..., steps=500) or Stopper(max_steps=500)")
    if steps is not None and stopper.max_steps is not None and steps != stopper.max_steps:
        raise ValueError(
            f"steps={steps} and Stopper(max_steps={stopper.max_steps}) disagree; give only one of them"
        )
    return whole(steps if steps is not None else stopper.max_steps, "steps")


def checked_stopping(steps: int | None, stopper: Stopper | None, nan: str) -> tuple[Stopper, int]:
    """The stopper (a default one for None) and the most steps, after checking them and the nan policy."""
    stopper = Stopper() if stopper is None else stopper
    if not isinstance(stopper, Stopper):
        raise TypeError(f"stopper is a {type(stopper).__name__}; give an fk.Stopper")
    max_steps = _max_steps(steps, stopper)
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan={nan!r} is not a policy; choose one of {NAN_POLICIES}")
    return stopper, max_steps


def _observation_counts(problem: Problem) -> np.ndarray:
    return np.array([int(np.sum(np.asarray(obs.valid))) for obs in problem.observations])


def fit(
    problem: Problem,
    params: Any,
    optimisers: Optimisers,
    *,
    steps: int | None = None,
    stopper: Stopper | None = None,
    batch_size: int | None = None,
    validation: Problem | None = None,
    history: bool = True,
    history_every: int = 1,
    progress: bool | None = None,
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
    fixed: Any = None,
) -> FitResult:
    """Fit `problem.loss` with optax optimisers, in a fused on-device loop.

    Each step evaluates the loss and its gradient at the current params
    (`eqx.filter_value_and_grad(problem.loss)`), records the loss, feeds the
    stopper, and applies the optimisers' update. Steps run on device in the
    one loop of `fitkit._loop`: compiled once per structure (new data, a new
    start, another `steps` or optimisers built again reuse it), in chunks of
    about 0.2 s; between chunks the progress bar advances, `callback` runs
    and Ctrl-C is checked (an interrupted fit returns the best params so far,
    flagged `interrupted`). A stop mid-chunk is exact: later steps of the
    chunk are not taken.

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
        progress: a bar of the steps done out of `steps`, with the latest loss (a widget in
            Jupyter, text on stderr elsewhere). `None` (default): shown in a notebook or when
            stderr is a terminal, not in logs or CI; `True`: always; `False`: never.
        nan: what to do with a non-finite loss or gradient: `"raise"` a
            `NonFiniteError` naming the step and the param paths; `"skip"` the
            update; or `"zero"` the non-finite gradient entries and update.
        key: random key for the mini-batch order (default `jax.random.key(0)`).
        callback: called between chunks as `callback(step, loss, params)`
            with the number of steps done, the last loss and the current
            params; return True to stop the fit there.
        chunk_size: a fixed number of steps between returns to Python
            (default: as many as take about 0.2 s).
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
        fixed: params held at their start values (paths, leaves or elements
            such as `"wfe[0]"`; default: those of a `FitResult` given as
            `params`). With bounds or ties declared on the problem, or fixed
            params, the optimisers work on the unconstrained values of the
            params (same pytree, same paths, so per-path optimisers apply):
            bounded params stay inside their bounds at every step.

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
    from ..batching import Batch, fit_batch

    if isinstance(problem, Batch):
        return fit_batch(
            problem, params, optimisers, steps=steps, stopper=stopper, nan=nan, max_edm=max_edm, warn=warn,
            batch_size=batch_size, validation=validation, callback=callback, precondition=precondition,
            projection=projection, refresh_every=refresh_every, fixed=fixed,
        )  # fmt: skip
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
        **_geometry(problem, params, optimisers, precondition, projection, damping, refresh_every, fixed),
    )


def _geometry(problem, params, optimisers, precondition, projection, damping, refresh_every, fixed) -> dict:
    """The `transform` and `latent` hooks of `_fit` for bounds and fixed params, natural gradients and projections."""
    parametrisation = None
    if isinstance(problem, Problem):
        fixed = inherited_fixed(params, fixed)
        if problem.declares(fixed):
            start = start_params(params)
            problem.check(start)
            parametrisation = problem.parametrisation(start, fixed)
    hooks = {} if parametrisation is None else {"parametrisation": parametrisation}
    if precondition is None and projection is None:
        if refresh_every is not None:
            raise ValueError("refresh_every needs precondition='fisher' or 'hessian'")
        return hooks
    if precondition is not None and projection is not None:
        raise ValueError(
            "give precondition or projection, not both: a whitened latent space needs no preconditioner"
        )
    if not isinstance(problem, Problem):
        raise TypeError(f"problem is a {type(problem).__name__}; give an fk.Problem")
    params = start_params(params)
    problem.check(params)
    if precondition is not None:
        return {
            **hooks,
            "transform": preconditioner(
                problem, params, precondition, damping, refresh_every, parametrisation
            ),
        }
    if isinstance(optimisers, dict):
        raise ValueError(
            "with projection=..., give one optax optimiser (e.g. optax.sgd(0.5)): the latent "
            "coordinates mix all params, so per-path optimisers do not apply"
        )
    if refresh_every is not None:
        raise ValueError("refresh_every applies to precondition=..., not to projection=...")
    proj = resolve_projection(problem, params, projection, parametrisation=parametrisation)
    # The loss is 2 / n_data times the nll, whose curvature is the identity in
    # latent units: rescale so that a learning rate of 1 is a Newton step here too.
    return {**hooks, "latent": proj, "transform": optax.scale(problem.n_data / 2.0)}


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
    latent: Any = None,
    parametrisation: Any = None,
) -> FitResult:
    """The engine behind `fit`: an `OptaxStepper` driven by the one loop.

    `transform` is chained before the optimisers (e.g. a preconditioner), and
    `latent` (an `fk.Projection`) optimises a latent vector `x` whose params
    are `latent.to_params(x)` (the optimisers then address `x`).
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem is a {type(problem).__name__}; give an fk.Problem")
    if validation is not None and not isinstance(validation, Problem):
        raise TypeError(f"validation is a {type(validation).__name__}; give an fk.Problem")
    stopper, max_steps = checked_stopping(steps, stopper, nan)
    history_every = whole(history_every, "history_every")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be a function callback(step, loss, params)")
    if chunk_size is not None:
        chunk_size = whole(chunk_size, "chunk_size")
    params = start_params(params)
    problem.check(params)
    if validation is not None:
        validation.check(params)
    if parametrisation is not None:
        params = parametrisation.complete(parametrisation.flat(params))
        latent = TreeLatent(parametrisation) if latent is None else latent
    latent = Identity() if latent is None else latent
    x0 = jax.tree.map(jnp.asarray, latent.to_latent(params))
    held = frozenset()
    if parametrisation is not None:
        free = parametrisation.layout.to_params(parametrisation.free)  # the free mask, leaf by leaf
        held = frozenset(p for p, leaf in zip(tree.leaf_paths(free), jax.tree.leaves(free)) if not leaf.any())
    optimiser, frozen = map_optimisers(x0, optimisers, held)
    if transform is not None:
        optimiser = optax.chain(transform, optimiser)
    x_paths = tree.leaf_paths(x0)
    batches = None
    if batch_size is not None:
        key = jr.key(0) if key is None else key
        batches = EpochBatches(len(problem.observations), batch_size, key)
    counts = _observation_counts(problem)
    stacked = problem.vmapped and len(np.unique(counts)) == 1
    subs = None if batches is None or stacked else [problem.take([i]) for i in range(len(counts))]
    stepper = OptaxStepper(
        optimiser,
        stopper,
        latent,
        nan,
        tuple(p not in frozen for p in x_paths),
        bool(stacked),
        tuple(int(c) for c in counts),
        bool(history),
    )
    args = (problem, validation, subs, batches)

    with Progress(max_steps, progress) as bar:

        def on_chunk(carry, rows, done):
            count = len(rows["loss"])
            last_loss = float(rows["loss"][count - 1]) if count else math.nan
            bar.advance(count, last_loss)
            if int(carry.code) == STOPPED_CODE:
                bar.finish()  # the stopper ended it: the fit is over, whatever `steps` was
            if callback is None or int(carry.code) != 0 or done >= max_steps:
                return False
            return bool(callback(done, last_loss, jax.tree.map(jnp.copy, latent.to_params(carry.y))))

        out = run(stepper, x0, args, max_steps=max_steps, on_chunk=on_chunk, chunk_steps=chunk_size)
    carry, n_steps = out.carry, out.steps
    run_finish, finish_arrays, finish_compile = compiled(finish, (stepper, carry.y, carry.best, args))
    result_params, result_loss = run_finish(finish_arrays)
    result_loss = float(result_loss)

    record = {"step": np.arange(n_steps)}
    for name in ("loss", "grad_norm", "validation_loss"):
        if name in out.history:
            record[name] = out.history[name]
    if "loss" not in record:
        record.update(loss=np.zeros(0), grad_norm=np.zeros(0))
    if history:
        params_step = np.arange(0, n_steps, history_every)
        if n_steps:
            record["params"] = jax.tree.map(lambda a: a[params_step], out.history["params"])
        else:
            record["params"] = jax.tree.map(lambda a: np.zeros((0, *np.shape(a))), params)
        record["params_step"] = params_step
    code = int(carry.code)
    converged = code == STOPPED_CODE
    stopper_state = carry.state["stopper"]
    if converged:
        message = f"{stopper.reason()} (best loss at step {int(stopper_state.best_step)})"
    elif out.interrupted:
        message = f"interrupted (Ctrl-C) after {n_steps} steps"
    elif out.stopped_by_callback:
        message = f"stopped by the callback after {n_steps} steps"
    else:
        message = f"reached the maximum of {max_steps} steps"
    restored = stopper.restore_best
    nonfinite = int(np.sum(~np.isfinite(record["loss"]) | ~np.isfinite(record["grad_norm"])))
    stats = {
        "loss_evals": n_steps + (2 if restored and validation is None else 1),
        "grad_evals": n_steps,
        "nonfinite_steps": nonfinite,
        "chunks": out.chunks,
        "chunk_size": chunk_size,
    }
    if validation is not None:
        stats["validation_evals"] = n_steps + (2 if restored else 0)
    if batches is not None:
        stats["epochs"] = n_steps / batches.steps_per_epoch
    packaged = dict(
        params=result_params,
        loss=result_loss,
        steps=n_steps,
        history=record,
        wall_time=out.wall_time,
        compile_time=out.compile_time + finish_compile,
        method="fit:optax",
        # The EDM tolerance as given (None: the default for the params' precision), for the displays.
        stats={**stats, "max_edm": max_edm},
        initial=params,
    )
    if code != NONFINITE_CODE:
        packaged.update(comparison_numbers(problem, result_params, parametrisation))
    if code == NONFINITE_CODE:
        bad_paths = [p for p, b in zip(x_paths, np.asarray(carry.state["bad_leaves"])) if b]
        text = nonfinite_message(n_steps - 1, bool(carry.state["loss_finite"]), bad_paths)
        message = f"{text}. NOT VALID: {describe_flags(('non_finite',))}"
        failure = FitResult(
            converged=False, message=message, valid=False, edm=float("nan"), flags=("non_finite",), **packaged
        )
        raise NonFiniteError(text, failure)
    # Running all `steps` is how a fit without a stopper ends: it counts as a
    # call limit only when the result is not at the minimum.
    engine_flags = ("nonfinite_steps",) if nonfinite > max(1, NONFINITE_FRACTION * n_steps) else ()
    if out.interrupted:
        engine_flags = (*engine_flags, "interrupted")
    verdict = assess(problem, result_params, engine_flags, max_edm=max_edm, parametrisation=parametrisation)
    flags = verdict.flags
    if not verdict.valid and not converged and not out.interrupted:
        flags = (*flags, "interrupted" if out.stopped_by_callback else "call_limit")
        verdict = verdict._replace(text=f"{verdict.text} {describe_flags(flags[-1:])}")
    if nonfinite:
        message = f"{message}; {nonfinite} of {n_steps} steps met non-finite values (nan={nan!r})"
    result = FitResult(
        converged=converged,
        message=f"{message}. {verdict.text}",
        valid=not flags,
        edm=verdict.edm,
        flags=flags,
        fixed=() if parametrisation is None else parametrisation.fixed_names(),
        **packaged,
    )
    if flags and warn:
        warnings.warn(result.message, ConvergenceWarning, stacklevel=3)
    return result
