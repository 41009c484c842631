"""`fk.fit` on a `Batch`: one optax loop `vmap`ped over the members, each stopping on its own stopper."""

from __future__ import annotations

import time
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import tree
from .._cache import compiled
from .._loop import RUNNING, run
from ..fitting._engine import NONFINITE_FRACTION, Optimisers, checked_stopping
from ..fitting._optimisers import map_optimisers
from ..fitting._stepper import NONFINITE_CODE, STOPPED_CODE, Identity, OptaxStepper, finish
from ..fitting._stopper import Stopper
from ..parametrisation import TreeLatent
from ..solving._messages import ConvergenceWarning
from ._result import BatchResult
from ._stack import Batch, checked_starts
from ._stepper import BatchStepper
from ._verdict import assess_batch

__all__ = ["fit_batch"]

# The options of `fk.fit` that one batched loop cannot honour yet, and why each matters per member.
_SINGLE_ONLY = {
    "batch_size": "mini-batches over observations",
    "validation": "a validation problem",
    "callback": "a callback",
    "precondition": "a preconditioner",
    "projection": "a projection",
    "refresh_every": "refreshed curvature",
    "fixed": "fixed params",
}


def _refuse_single_only(options: dict[str, Any]) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        what = ", ".join(f"{name}= ({_SINGLE_ONLY[name]})" for name in given)
        raise ValueError(
            f"fk.fit on a batch does not take {what} yet; fit the members one by one "
            "(batch.member(i)) or drop the option"
        )


@eqx.filter_jit
def _latent_starts(latent, starts):
    return jax.vmap(latent.to_latent)(starts)


def _finish_all(stepper, y, best, problem):
    return eqx.filter_vmap(lambda y, b, p: finish(stepper, y, b, (p, None, None, None)))(y, best, problem)


def fit_batch(
    batch: Batch,
    starts: Any,
    optimisers: Optimisers,
    *,
    steps: int | None = None,
    nan: str = "raise",
    stopper: Stopper | None = None,
    max_edm: float | None = None,
    warn: bool = True,
    **single_only: Any,
) -> BatchResult:
    """Fit every member of `batch` with optax, as `fk.fit` fits one (see `fk.fit`).

    The members run together in the one loop, `vmap`ped: each member's optimiser
    and stopper are its own, so a member stops when its own patience runs out and
    then stays where it is, and its result (the best point seen, its verdict) is
    the one a single `fk.fit` from its start gives. Bounds declared on the problem
    apply as in `fk.fit` (the optimisers work on the unconstrained values).

    Args:
        batch: an `fk.Batch` (`fk.batch([...])`).
        starts: the start params with a leading axis of `len(batch)` on every leaf.
        optimisers, steps, stopper, max_edm, warn: as for `fk.fit`.
        nan: as for `fk.fit`, except that `"raise"` does not raise for one member:
            that member stops at its first non-finite step and is flagged `non_finite`.

    Returns:
        A `BatchResult` with `method="fit:optax"`; its `history` has the batch's
        `step`, `running` (members not yet stopped) and `loss` (the sum of the
        members' best losses).

    Raises:
        BatchError: starts of the wrong length or structure.
        ValueError: starts that are not finite or outside the bounds, ties declared on the
            problem, or an option of `fk.fit` a batch does not take yet (mini-batches,
            validation, callback, preconditioning, projection, fixed params); as `fk.fit`
            for the rest.

    Example:
        >>> res = fk.fit(survey, starts, optax.adam(0.05), steps=2000,
        ...              stopper=fk.Stopper(patience=50, rtol=1e-10))
        >>> print(res.summary())
    """
    _refuse_single_only(single_only)
    problem0, start0, parametrisation = checked_starts(batch, starts, "fk.fit")
    size = batch.size
    stopper, max_steps = checked_stopping(steps, stopper, nan)
    latent = Identity() if parametrisation is None else TreeLatent(parametrisation)
    x0 = _latent_starts(latent, jax.tree.map(jnp.asarray, starts))
    x0_member = jax.tree.map(lambda x: x[0], x0)
    optimiser, frozen = map_optimisers(x0_member, optimisers, frozenset())
    x_paths = tree.leaf_paths(x0_member)
    stepper = OptaxStepper(
        optimiser, stopper, latent, nan, tuple(p not in frozen for p in x_paths), False, (), False
    )
    problem = batch.problem
    args = (problem, None, None, None)

    t0 = time.perf_counter()
    out = run(BatchStepper(stepper), x0, args, max_steps=max_steps)
    state = out.carry.state
    params, loss, finish_compile = _finished(stepper, out.carry.y, state["best"], problem)
    code = np.asarray(state["code"])
    member_steps = np.asarray(state["steps"])
    nonfinite = np.asarray(state["nonfinite"])
    converged = code == STOPPED_CODE
    engine = {"nonfinite_steps": nonfinite > np.maximum(1, NONFINITE_FRACTION * member_steps)}
    valid, edm, flags = assess_batch(
        problem, params, engine, max_edm=max_edm, parametrisation=parametrisation
    )[:3]
    # As for one fit: running all the steps is a call limit only where the result is not at a minimum.
    flags["call_limit"] = ~valid & (code == RUNNING)
    flags["non_finite"] = flags["non_finite"] | (code == NONFINITE_CODE)
    valid = ~np.any(np.stack(list(flags.values())), axis=0)
    compile_time = out.compile_time + finish_compile
    result = BatchResult(
        params=params,
        loss=np.asarray(loss),
        steps=member_steps,
        converged=converged,
        valid=valid,
        edm=edm,
        flags=flags,
        method="fit:optax",
        tried=np.ones(size, int),
        wall_time=time.perf_counter() - t0 - compile_time,
        compile_time=compile_time,
        history={"step": np.arange(out.steps), **out.history},
    )
    if warn and not valid.all():
        warnings.warn(result.summary(), ConvergenceWarning, stacklevel=3)
    return result


def _finished(stepper, y, best, problem):
    """Each member's params and training loss (the best point or the last, as `fk.fit`), and the compile time."""
    executable, arrays, compile_time = compiled(_finish_all, (stepper, y, best, problem))
    params, loss = executable(arrays)
    return params, loss, compile_time
