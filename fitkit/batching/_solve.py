"""`fk.solve` on a `Batch`: every member in one compiled loop, each stopping on its own test."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import tree
from .._loop import RUNNING, run
from .._verdict import loss_at
from ..solving._engine import NEWTON_LIMIT, STALL, _positive
from ..solving._messages import ConvergenceWarning
from ..solving._methods import resolve
from ..solving._stepper import CONVERGED_CODE, FAILED_CODE, STALLED_CODE, OptimistixStepper
from ._result import BatchResult
from ._stack import Batch, checked_starts
from ._stepper import BatchStepper
from ._verdict import assess_batch, refine_batch

__all__ = ["solve_batch"]


@eqx.filter_jit
def _to_latent(latent, starts):
    return jax.vmap(latent.to_latent)(starts)


@eqx.filter_jit
def _to_params(latent, ys):
    return jax.vmap(latent.to_params)(ys)


@eqx.filter_jit
def _losses(problem, params):
    return eqx.filter_vmap(lambda p, x: loss_at(p, x))(problem, params)


def _take(batch_tree, rows: np.ndarray):
    """The members `rows` of a batched pytree (array leaves only)."""
    return jax.tree.map(lambda x: x[rows] if eqx.is_array(x) else x, batch_tree)


def _padded(rows: np.ndarray, size: int | None = None) -> np.ndarray:
    """`rows` padded (repeating the last) to `size`, by default a power of two, and to a multiple of
    the local devices: a few compiled sizes serve every retry, and the batch divides over the mesh."""
    if size is None:
        size = 1 << max(0, math.ceil(math.log2(rows.size)))
    devices = len(jax.local_devices())
    size = -(-size // devices) * devices
    return np.concatenate([rows, np.repeat(rows[-1:], size - rows.size)])


def _spread(y0, problem):
    """The iterates and the problem's arrays sharded over the local devices along the batch axis
    (a 1-D mesh); unchanged on one device. XLA then runs each device's members there."""
    devices = jax.local_devices()
    if len(devices) == 1:
        return y0, problem
    mesh = Mesh(np.asarray(devices), ("batch",))

    def place(x):
        if not eqx.is_array(x):
            return x
        return jax.device_put(x, NamedSharding(mesh, P("batch", *([None] * (x.ndim - 1)))))

    return place(y0), jax.tree.map(place, problem)


def _cut(tree_, rows):
    """The members `rows` of every array leaf with a leading batch axis (scalars kept)."""
    return jax.tree.map(lambda x: x[rows] if eqx.is_array(x) and x.ndim else x, tree_)


def _run_members(problem, starts, rows, solver, objective, latent, max_steps):
    """One batched solve of the members `rows`; per-member params, steps and engine flags.

    Every member runs until it stops on its own test, but a vmapped step costs the same for
    all: once three quarters have stopped, the loop is cut down to the ones still running
    (their full state, so each goes on exactly as it would have) in a smaller batch.
    """
    stepper = BatchStepper(OptimistixStepper(solver, latent, objective, STALL))
    padded = _padded(rows)
    y0, members = _spread(_to_latent(latent, _take(starts, padded)), _take(problem, padded))
    where = np.arange(rows.size)  # the member (of `rows`) at each position of the running batch
    where = np.concatenate([where, np.repeat(where[-1:], padded.size - rows.size)])
    size = rows.size
    final = {"code": np.zeros(size, np.int32), "steps": np.zeros(size, np.int32)}
    best_loss, best, last = (
        np.full(size, np.inf),
        np.zeros((size, y0.shape[1])),
        np.zeros((size, y0.shape[1])),
    )
    wall = compile_time = 0.0
    resume = None

    def few_left(carry, history, done):
        running = history["running"][-1] if len(history["running"]) else carry_size
        return carry_size > 16 and running <= carry_size // 4

    while True:
        carry_size = where.size
        out = run(stepper, y0, members, max_steps=max_steps, on_chunk=few_left, resume=resume)
        wall, compile_time = wall + out.wall_time, compile_time + out.compile_time
        state = out.carry.state
        code = np.asarray(state["code"])
        first = np.unique(where, return_index=True)[1]  # the padding repeats a member: take it once
        members_here = where[first]
        final["code"][members_here] = code[first]
        final["steps"][members_here] = np.asarray(state["steps"])[first]
        best_loss[members_here] = np.asarray(state["best_loss"])[first]
        best[members_here] = np.asarray(state["best"])[first]
        last[members_here] = np.asarray(out.carry.y)[first]
        running = np.flatnonzero(code[first] == RUNNING)
        if not out.stopped_by_callback or running.size == 0:
            break
        # Cut to a quarter of the batch whatever the number still running (at most that): the sizes
        # depend on the batch size alone, so new data of the same shapes compile nothing new.
        keep = _padded(first[running], carry_size // 4)
        where = where[keep]
        resume = _cut(out.carry, jnp.asarray(keep))
        placed_y, members = _spread(resume.y, _take(members, keep))
        resume = eqx.tree_at(lambda c: c.y, resume, placed_y)
        y0 = resume.y
    chosen = np.where(np.isfinite(best_loss)[:, None], best, last)
    code = final["code"]
    return {
        "y": chosen,
        "steps": final["steps"],
        "converged": np.isin(code, (CONVERGED_CODE, STALLED_CODE)),
        "call_limit": code == RUNNING,
        "solver_failed": code == FAILED_CODE,
        "wall_time": wall,
        "compile_time": compile_time,
    }


def solve_batch(
    batch: Batch,
    starts: Any,
    *,
    method: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 1000,
    max_edm: float | None = None,
    retries: int = 2,
    warn: bool = True,
    **solver_options: Any,
) -> BatchResult:
    """Fit every member of `batch` from its start, as `fk.solve` fits one (see `fk.solve`).

    The members run together in the one loop, `vmap`ped: each stops on its own
    convergence test and then stays where it is. Every member gets the verdict
    of a single fit. With `method="auto"` the members that are not valid are
    retried with `"newton"`, as `fk.solve` retries one, in a smaller batch.

    Args:
        batch: an `fk.Batch` (`fk.batch([...])`).
        starts: the start params with a leading axis of `len(batch)` on every leaf.
        method, rtol, atol, max_steps, max_edm, retries, solver_options: as for `fk.solve`.
        warn: warn with `ConvergenceWarning` when some members are not valid.

    Returns:
        A `BatchResult`.

    Raises:
        BatchError: starts of the wrong length or structure.
        ValueError: a batch whose problem fixes or ties params (not batched yet), starts
            outside the bounds; as `fk.solve` for the rest.
    """
    problem0, start0, parametrisation = checked_starts(batch, starts, "fk.solve")
    size = batch.size
    auto = isinstance(method, str) and method.strip().lower() == "auto"
    rtol = _positive((1e-10 if auto else 1e-8) if rtol is None else rtol, "rtol")
    atol = _positive((1e-14 if auto else 1e-8) if atol is None else atol, "atol")
    has_prior = bool(problem0.priors or problem0.log_prior_fn)
    curvature = "newton" if tree.size(start0) <= NEWTON_LIMIT else "lbfgs"
    if auto:
        method = "levenberg-marquardt" if problem0.has_residuals and not has_prior else curvature
    latent = parametrisation if parametrisation is not None else tree.Layout.of(start0)
    problem = batch.problem

    y = np.array(_to_latent(latent, starts))
    steps = np.zeros(size, int)
    converged = np.zeros(size, bool)
    engine = {"call_limit": np.zeros(size, bool), "solver_failed": np.zeros(size, bool)}
    tried = np.zeros(size, int)
    names, wall, compile_time = [], 0.0, 0.0
    rows = np.arange(size)
    from_start = np.zeros(size, bool)
    valid = edm = flags = verdict = None
    t0 = time.perf_counter()
    for attempt in range(1 + (retries if auto else 0)):
        solver, name, least_squares = resolve(method, rtol, atol, solver_options if not auto else {})
        if least_squares and has_prior:
            raise ValueError(
                f"{name} solves problem.residuals, which cannot hold the priors; use method='auto'"
            )
        objective = "residuals" if least_squares else ("nll" if has_prior else "loss")
        names.append(name)
        begin = jnp.asarray(y[rows]) if attempt else None
        starts_now = starts if attempt == 0 else _to_params(latent, begin)
        if attempt:
            # From a saddle, a flat region or a failure a member starts again from its own start.
            original = _take(starts, rows)
            again = from_start[rows]
            starts_now = jax.tree.map(
                lambda a, b, again=again: jnp.where(again.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                original,
                starts_now,
            )
            part = _run_members(
                _take(problem, rows), starts_now, np.arange(rows.size), solver, objective, latent, max_steps
            )
        else:
            part = _run_members(problem, starts, rows, solver, objective, latent, max_steps)
        y[rows] = part["y"]
        steps[rows], converged[rows] = part["steps"], part["converged"]
        engine["call_limit"][rows], engine["solver_failed"][rows] = part["call_limit"], part["solver_failed"]
        tried[rows] += 1
        wall, compile_time = wall + part["wall_time"], compile_time + part["compile_time"]
        params = _to_params(latent, jnp.asarray(y))
        verdict = assess_batch(problem, params, engine, max_edm=max_edm, parametrisation=parametrisation)
        valid, edm, flags = verdict[:3]
        # Who goes on (as fk.solve): not valid, not non-finite; onward from where it stopped when it
        # was heading for a minimum, else from its start, and only once from the start.
        onward = ~(flags["curvature_not_positive_definite"] | flags["solver_failed"])
        retry = ~valid & ~flags["non_finite"]
        if attempt > 0:
            retry &= ~(from_start & (tried > 1))
        from_start = retry & ~onward
        rows = np.flatnonzero(retry)
        if rows.size == 0:
            break
        method = curvature
    params = _to_params(latent, jnp.asarray(y))
    params, verdict = refine_batch(
        problem, params, verdict, engine, max_edm=max_edm, parametrisation=parametrisation
    )
    valid, edm, flags = verdict[:3]
    result = BatchResult(
        params=params,
        loss=np.asarray(_losses(problem, params)),
        steps=steps,
        converged=converged,
        valid=valid,
        edm=edm,
        flags=flags,
        method="solve:" + "->".join(dict.fromkeys(names)),
        tried=tried,
        wall_time=time.perf_counter() - t0 - compile_time,
        compile_time=compile_time,
    )
    if warn and not valid.all():
        warnings.warn(result.summary(), ConvergenceWarning, stacklevel=3)
    return result
