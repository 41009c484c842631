"""The one loop behind `fk.fit` and `fk.solve`: any stepper, in jitted chunks, with the host in control.

A *stepper* follows optimistix's `init`/`step`/`terminate` contract, folded
into one `step` that also says whether to stop: `init(y0, args)` gives the
state, `step(y, state, args)` gives a `Step`. `args` holds the problem's
arrays, so one compiled loop serves new data values and new starts.

`run` compiles two programs once per structure (through `fitkit._cache`):
the stepper's `init`, and a *chunk* that takes up to `capacity` steps in a
`lax.while_loop` and stops early at a dynamic `stop_at` (so a new step
count does not recompile). Between chunks the host advances the progress
bar, prints the log, calls the callback and checks for Ctrl-C. Chunks are
sized by measured time (about `CHUNK_SECONDS` each), so an interrupt takes
effect within a fraction of a second whatever a step costs.

The loop keeps, in one place for every stepper: the step counter, the
best point seen (by the stepper's `loss`), the per-step history rows and
the stop code.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PyTree

from ._cache import compiled

__all__ = ["Step", "Stepper", "Carry", "Outcome", "run", "best_or_last", "capacity_for", "RUNNING"]

# Host control at least this often (seconds of device work per chunk).
CHUNK_SECONDS = 0.2
# Most steps per compiled chunk (a power of two; history rows are buffered per chunk).
MAX_CAPACITY = 512
# History rows hold at most this many numbers per chunk (params snapshots count).
ROW_BUDGET = 2**24
# The stop code while a stepper is still running; steppers define the others.
RUNNING = 0


class Step(NamedTuple):
    """What one step of a stepper returns.

    Attributes:
        y: the next iterate.
        state: the stepper's next state.
        point: the iterate whose `loss` this step measured (the new one for
            optimistix, the one before the update for optax).
        loss: the loss at `point`; the loop keeps the point with the lowest.
        row: the history entries of this step (scalars, or pytrees such as params).
        code: `RUNNING`, or the stepper's reason to stop (an int32 scalar).
    """

    y: PyTree
    state: PyTree
    point: PyTree
    loss: Float[Array, ""]
    row: dict[str, Any]
    code: Int[Array, ""]


class Stepper(eqx.Module):
    """The contract of a stepper; `fitkit.fitting` (optax) and `fitkit.solving` (optimistix) implement it."""

    def init(self, y0: PyTree, args: PyTree) -> PyTree:
        raise NotImplementedError

    def step(self, y: PyTree, state: PyTree, args: PyTree) -> Step:
        raise NotImplementedError

    def row_spec(self, y0: PyTree, args: PyTree) -> dict[str, Any]:
        """The shapes and dtypes (`jax.ShapeDtypeStruct`s) of `Step.row`, declared so that
        the loop need not trace a step to size its history buffer."""
        raise NotImplementedError

    def loss_dtype(self, y0: PyTree, args: PyTree) -> Any:
        """The dtype of `Step.loss` (default: that of the first floating leaf of `y0`)."""
        floats = [x for x in jax.tree.leaves(y0) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
        return jnp.result_type(floats[0]) if floats else jnp.result_type(float)


class Carry(eqx.Module):
    """The loop's state between chunks (all arrays, so it stays on device)."""

    y: PyTree
    state: PyTree
    step: Int[Array, ""]
    code: Int[Array, ""]
    best: PyTree
    best_loss: Float[Array, ""]


def _state_parts(stepper, y0, args):
    """The static (non-array) part of the stepper's state.

    `init` runs inside the chunk's own trace: its static part can hold jaxprs
    of that trace (optimistix's linearised Jacobians do), and the unused
    array outputs cost nothing once compiled.
    """
    return eqx.partition(stepper.init(y0, args), eqx.is_array)[1]


def _strong(tree):
    """`tree` without weak types, so a chunk's output state has exactly the types of its input."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)) if eqx.is_array(x) else x, tree)


def _start(stepper: Stepper, y0, args) -> Carry:
    state = _strong(eqx.filter(stepper.init(y0, args), eqx.is_array))
    loss_dtype = stepper.loss_dtype(y0, args)
    return Carry(
        y=y0,
        state=state,
        step=jnp.asarray(0, jnp.int32),
        code=jnp.asarray(RUNNING, jnp.int32),
        best=y0,
        best_loss=jnp.asarray(jnp.inf, loss_dtype),
    )


def _chunk(stepper: Stepper, carry: Carry, args, stop_at, *, capacity: int):
    """Up to `capacity` steps, ending early at step `stop_at` or when the stepper stops."""
    static = _state_parts(stepper, carry.y, args)
    shapes = stepper.row_spec(carry.y, args)
    rows = jax.tree.map(
        lambda s: (
            jnp.full((capacity, *s.shape), jnp.nan, s.dtype)
            if jnp.issubdtype(s.dtype, jnp.inexact)
            else jnp.zeros((capacity, *s.shape), s.dtype)
        ),
        shapes,
    )

    def cond(loop):
        carry, _, i = loop
        return (carry.code == RUNNING) & (carry.step < stop_at) & (i < capacity)

    def body(loop):
        carry, rows, i = loop
        out = stepper.step(carry.y, eqx.combine(carry.state, static), args)
        better = out.loss < carry.best_loss  # False for NaN
        carry = Carry(
            y=out.y,
            state=jax.tree.map(
                lambda new, old: new.astype(old.dtype), eqx.filter(out.state, eqx.is_array), carry.state
            ),
            step=carry.step + 1,
            code=jnp.asarray(out.code, jnp.int32),
            best=jax.tree.map(lambda a, b: jnp.where(better, a, b), out.point, carry.best),
            best_loss=jnp.where(better, out.loss, carry.best_loss),
        )
        rows = jax.tree.map(lambda buffer, value: buffer.at[i].set(value.astype(buffer.dtype)), rows, out.row)
        return carry, rows, i + 1

    carry, rows, done = jax.lax.while_loop(cond, body, (carry, rows, jnp.asarray(0, jnp.int32)))
    return carry, rows, done


def capacity_for(max_steps: int, row_size: int) -> int:
    """Steps per compiled chunk: a power of two (few distinct programs), within the row budget."""
    fits = max(1, ROW_BUDGET // max(1, row_size))
    wanted = min(max_steps, MAX_CAPACITY, fits)
    return 1 << max(0, math.ceil(math.log2(wanted)))


class Outcome(NamedTuple):
    """What `run` hands back to an engine.

    Attributes:
        carry: the final loop state (on device).
        history: per-step rows as numpy arrays (pytrees stay pytrees), one entry per step.
        steps: the number of steps taken.
        interrupted: Ctrl-C (SIGINT) ended the loop, between two chunks.
        stopped_by_callback: the callback returned True.
        chunks: the number of chunks run.
        compile_time: seconds spent compiling (0 when every program was cached).
        wall_time: seconds spent running.
    """

    carry: Carry
    history: dict[str, Any]
    steps: int
    interrupted: bool
    stopped_by_callback: bool
    chunks: int
    compile_time: float
    wall_time: float


class _Interrupts:
    """Turns Ctrl-C (SIGINT) into a flag the loop reads between chunks, in the main thread only."""

    def __init__(self) -> None:
        self.seen = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.seen:  # a second Ctrl-C: the user wants out now
            raise KeyboardInterrupt
        self.seen = True

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # an embedded interpreter that owns the signals
                self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _to_host(rows, count: int):
    return jax.tree.map(lambda a: np.asarray(a)[:count], rows)


def run(
    stepper: Stepper,
    y0: PyTree,
    args: PyTree,
    *,
    max_steps: int,
    on_chunk: Callable[[Carry, dict, int], bool] | None = None,
    chunk_steps: int | None = None,
    resume: Carry | None = None,
) -> Outcome:
    """Drive `stepper` from `y0` for at most `max_steps` steps.

    Args:
        stepper: the stepper (its array fields are inputs of the compiled
            programs, the rest is part of their cache key).
        y0: the first iterate.
        args: the problem's arrays and anything else the stepper reads.
        max_steps: the most steps to take.
        on_chunk: called after each chunk as `on_chunk(carry, rows, steps_done)`
            with that chunk's rows (numpy); return True to stop there.
        chunk_steps: a fixed number of steps per chunk (default: by time).
        resume: go on from this carry (of an earlier `run`, possibly cut down to fewer
            members of a batch) instead of starting at `y0`; its step counter carries on.

    Returns:
        An `Outcome`.
    """
    y0 = jax.tree.map(jnp.asarray, y0)
    row_size = sum(math.prod(s.shape) for s in jax.tree.leaves(stepper.row_spec(y0, args)))
    capacity = capacity_for(max_steps, row_size)
    if resume is None:
        start, start_arrays, t_start = compiled(_start, (stepper, y0, args))
        probe = start(start_arrays)
    else:
        probe, t_start = resume, 0.0
    chunk, _, t_chunk = compiled(_chunk, (stepper, probe, args, jnp.asarray(0, jnp.int32)), capacity=capacity)
    compile_time = t_start + t_chunk

    def arrays_of(carry, stop_at):
        leaves = jax.tree.leaves((stepper, carry, args, jnp.asarray(stop_at, jnp.int32)))
        return [x for x in leaves if eqx.is_array(x)]

    carry, history, chunks = probe, [], 0
    stopped_by_callback = False
    size = chunk_steps or 1  # the first chunk measures the time a step takes
    t0 = time.perf_counter()
    with _Interrupts() as interrupts:
        done = int(carry.step)
        while done < max_steps and int(carry.code) == RUNNING:
            began = time.perf_counter()
            target = min(max_steps, done + size)
            carry, rows, count = chunk(arrays_of(carry, target))
            count = int(count)
            rows = _to_host(rows, count)
            history.append(rows)
            chunks += 1
            done = int(carry.step)
            if on_chunk is not None and on_chunk(carry, rows, done):
                stopped_by_callback = True
                break
            if interrupts.seen:
                break
            if chunk_steps is None:
                seconds = max(time.perf_counter() - began, 1e-6)
                size = int(min(capacity, max(1, count * CHUNK_SECONDS / seconds)))
    wall_time = time.perf_counter() - t0
    steps = int(carry.step)
    merged = jax.tree.map(lambda *parts: np.concatenate(parts), *history) if history else {}
    return Outcome(
        carry=carry,
        history=merged,
        steps=steps,
        interrupted=interrupts.seen,
        stopped_by_callback=stopped_by_callback,
        chunks=chunks,
        compile_time=compile_time,
        wall_time=wall_time,
    )


def best_or_last(carry: Carry) -> Any:
    """The best point seen if its loss was ever finite, else the last iterate."""
    finite = bool(np.isfinite(np.asarray(carry.best_loss)))
    return carry.best if finite else carry.y
