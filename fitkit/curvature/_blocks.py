"""Column blocks: how many columns fit in a memory budget, and running the blocks over devices.

A curvature matrix is built one block of `batch_size` columns at a time: each
block is a `vmap` of a linear map (a JVP or a Hessian-vector product) over
one-hot vectors, and the blocks run in sequence with `lax.map`, so peak memory
grows with `batch_size`, not with the number of parameters. With several
devices the block index is split over a one-axis mesh with `jax.shard_map`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, Int

from .._cache import memo, structure_key

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "memory_budget",
    "check_batch_size",
    "resolve_devices",
    "plan_batch_size",
    "one_hot",
    "linear_blocks",
    "map_blocks",
    "sum_blocks",
    "rows_in_chunks",
    "chunked",
]

# Used where the device does not report its memory (CPU): enough for a dense
# 8000 x 8000 float64 matrix and its working copies.
DEFAULT_MAX_MEMORY = 2 * 1024**3

# Used when the cost of one block cannot be compiled separately (a function that
# closes over tracers of an outer `jit`): small enough for most models.
FALLBACK_BATCH_SIZE = 64
# The plan of every new structure is logged here (logging.getLogger("fitkit").setLevel("INFO") shows it).
_log = logging.getLogger("fitkit")
# The widest block worth running per platform: beyond it a block is no faster
# per column (XLA already vectorises the columns) and needs far more memory.
FASTEST_BATCH = {"cpu": 16, "gpu": 128, "cuda": 128, "rocm": 128, "tpu": 128}

# (block jaxpr, n, budget, fixed bytes, device count) -> planned batch size


def memory_budget(max_memory: int | float | None) -> int:
    """Bytes the curvature code may use: `max_memory`, else a quarter of the device's memory.

    Raises:
        ValueError: `max_memory` is not a positive number.
    """
    if max_memory is not None:
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or max_memory <= 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        return int(max_memory)
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 4
    return DEFAULT_MAX_MEMORY


def check_batch_size(batch_size: Any, n: int) -> int | None:
    """Validate a user's `batch_size`; values above `n` are clipped to `n`.

    Raises:
        TypeError: not an integer.
        ValueError: smaller than 1.
    """
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return int(min(batch_size, n))


def resolve_devices(devices: Sequence[jax.Device] | None) -> tuple[jax.Device, ...]:
    """The devices to spread blocks over: all devices of the default backend unless given.

    Raises:
        ValueError: an empty sequence of devices.
    """
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one jax.Device, or None for all devices")
    return devices


def one_hot(idx: Int[Array, " b"], n: int, dtype) -> Float[Array, "b n"]:
    """Rows of the identity picked by `idx`; an index `>= n` (padding) gives a zero row."""
    return jax.nn.one_hot(idx, n, dtype=dtype)


def linear_blocks(g: Callable, n: int) -> Callable[[int], Callable]:
    """`make(b)`: the function applying the linearisation of `g` at `x` to `b` unit vectors.

    With `g = f` the rows are Jacobian columns (JVPs); with `g = grad(f)` they are
    Hessian rows (HVPs). `plan_batch_size` compiles it to measure one block's memory.
    """

    def make(b: int):
        def block(x):
            _, linear = jax.linearize(g, x)
            return jax.vmap(linear)(one_hot(jnp.arange(b), n, x.dtype))

        return block

    return make


def _block_bytes(make_block: Callable[[int], Callable], b: int, abstract: Any) -> int | None:
    try:
        compiled = jax.jit(make_block(b)).lower(abstract).compile()
        stats = compiled.memory_analysis()
    except jax.errors.UnexpectedTracerError:
        return None
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def plan_batch_size(
    make_block: Callable[[int], Callable],
    example: Any,
    n: int,
    max_memory: int | float | None,
    fixed_bytes: int = 0,
    devices: Sequence[jax.Device] | None = None,
    structure: Any = None,
) -> int:
    """Columns per block: the fastest width that fits the memory budget.

    The width is at most `FASTEST_BATCH` for the device's platform (wider
    blocks are no faster per column and take far more memory) and at most the
    largest block whose compiled working memory fits the budget.

    One block's memory is modelled as `a + s * batch_size`, with `a` and `s`
    measured from XLA's compiled memory analysis of the block at two sizes. The
    result is then evened out so the blocks (a multiple of the device count)
    need as little padding as possible.

    Args:
        make_block: `make_block(b)` returns a function of `example` that computes
            one block of `b` columns (linearisation included).
        example: the point (a flat array, or its `jax.ShapeDtypeStruct`).
        n: number of columns in all.
        max_memory: the budget in bytes (see `memory_budget`).
        fixed_bytes: memory needed besides the block, e.g. the output matrix.
        devices: the devices the blocks will be spread over.
        structure: pytrees that determine the block's program (e.g. `(f, params)`);
            the plan is remembered per their structure, so a second call with
            new values plans nothing. Without it the block is traced for a key.

    Returns:
        A batch size between 1 and `n`.

    Raises:
        ValueError: a `max_memory` given that the output alone (`fixed_bytes`)
            does not fit in, before anything is compiled; the message states
            the size it needs.
    """
    budget = memory_budget(max_memory)
    if max_memory is not None and fixed_bytes >= budget:
        raise ValueError(
            f"max_memory={max_memory!r} bytes is too small: the output and its working copy alone need "
            f"{_size(fixed_bytes)} ({fixed_bytes} bytes); give max_memory of at least a few times that, or None to use a "
            "quarter of the device's memory"
        )
    n_devices = len(resolve_devices(devices))
    abstract = jax.ShapeDtypeStruct(jnp.shape(example), jnp.result_type(example))
    platform = resolve_devices(devices)[0].platform
    if structure is not None:
        key = structure_key(structure, n, budget, fixed_bytes, n_devices, platform)
    else:
        key = None
    if key is None:
        try:
            # Memory depends on the program, not on the values it closes over.
            key = (str(jax.make_jaxpr(make_block(1))(abstract)), n, budget, fixed_bytes, n_devices, platform)
        except jax.errors.UnexpectedTracerError:
            key = None

    def plan() -> int:
        fastest = min(n, FASTEST_BATCH.get(platform, FASTEST_BATCH["cpu"]))
        # The widest block worth running first: when it fits, it is the answer
        # and one compiled probe is enough.
        cost_widest = None if key is None else _block_bytes(make_block, fastest, abstract)
        if cost_widest is None:
            batch = batch_by_memory = min(n, FALLBACK_BATCH_SIZE)
        elif cost_widest + fixed_bytes <= budget:
            batch, batch_by_memory = fastest, f">= {fastest}"
        elif fastest == 1:
            batch = batch_by_memory = 1
        else:
            # Memory grows about linearly with the width: a + s * b, from two probes.
            cost_one = _block_bytes(make_block, 1, abstract) or cost_widest
            per_column = max((cost_widest - cost_one) / (fastest - 1), 1.0)
            constant = max(cost_one - per_column, 0.0)
            batch = batch_by_memory = int((budget - fixed_bytes - constant) // per_column)
        batch = max(1, min(fastest, batch))
        n_blocks = math.ceil(math.ceil(n / batch) / n_devices) * n_devices
        chosen = math.ceil(n / n_blocks)
        _log.info(
            "fitkit: %d columns per block for %d columns on %d %s device(s) (memory allows %s)",
            chosen, n, n_devices, platform, "?" if cost_widest is None else batch_by_memory,
        )  # fmt: skip
        return chosen

    return memo("batch plans", key, plan)


def _size(n_bytes: int) -> str:
    """`n_bytes` in words: "512 B", "3.2 MiB"."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} B"


def _run_blocks(block_fn: Callable, n: int, batch_size: int, devices: Sequence[jax.Device] | None):
    """`lax.map` of `block_fn` over blocks of column indices; returns the stacked block outputs."""
    devices = resolve_devices(devices)
    n_blocks = math.ceil(math.ceil(n / batch_size) / len(devices)) * len(devices)
    # Indices past n are padding: their one-hot rows are zero, and they are cut off afterwards.
    idx = jnp.arange(n_blocks * batch_size).reshape(n_blocks, batch_size)
    run = lambda blocks: jax.lax.map(block_fn, blocks)
    if len(devices) > 1:
        mesh = Mesh(np.asarray(devices), ("blocks",))
        # The closed-over linearisation is the same on every device while the one-hot
        # tangents vary over the mesh; check_vma would reject that mix.
        run = jax.shard_map(run, mesh=mesh, in_specs=P("blocks"), out_specs=P("blocks"), check_vma=False)
    return run(idx)


def map_blocks(
    block_fn: Callable[[Int[Array, " b"]], Any],
    n: int,
    batch_size: int,
    devices: Sequence[jax.Device] | None = None,
) -> Any:
    """Apply `block_fn` to blocks of `batch_size` column indices covering `0..n-1`.

    Args:
        block_fn: maps a vector of `batch_size` indices to outputs with a leading
            axis of `batch_size` (one row per index; indices `>= n` are padding).
        n: number of indices.
        batch_size: indices per block; need not divide `n`.
        devices: spread the blocks over these devices (default: all).

    Returns:
        The outputs for indices `0..n-1`, stacked along a leading axis of size `n`.
    """
    out = _run_blocks(block_fn, n, batch_size, devices)
    return jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:])[:n], out)


def sum_blocks(
    block_fn: Callable[[Int[Array, " b"]], Any],
    n: int,
    batch_size: int,
    devices: Sequence[jax.Device] | None = None,
) -> Any:
    """Like `map_blocks`, but `block_fn` returns one summed output per block; returns their sum.

    `block_fn` must give zero contribution for padding indices (`>= n`).
    """
    out = _run_blocks(block_fn, n, batch_size, devices)
    return jax.tree.map(lambda o: o.sum(axis=0), out)


# With a progress bar the blocks run in about this many compiled calls, the bar moving between them.
PROGRESS_CHUNKS = 20


def chunked(progress: Any, n: int, batch_size: int, devices: Sequence[jax.Device] | None, *arrays) -> bool:
    """Whether to build the matrix in host-driven chunks of blocks, so that a bar can follow them:
    a bar is wanted, there are several blocks, one device, and nothing is being traced."""
    from .._progress import shown
    from ._flat import is_tracing

    return (
        math.ceil(n / batch_size) > 1
        and len(resolve_devices(devices)) == 1
        and not any(is_tracing(a) for a in arrays)
        and shown(progress)
    )


def rows_in_chunks(rows_of: Callable, n: int, batch_size: int, progress: Any, description: str) -> np.ndarray:
    """The `n` rows of a blockwise matrix, a chunk of blocks per compiled call, with a bar over the blocks.

    `rows_of(idx)` (compiled) maps a `(k, batch_size)` array of indices to their `k * batch_size`
    rows (indices `>= n` are padding). Every chunk has the same `k` (one program), the last
    padded; each call linearises again, which costs about one more gradient per chunk, and the
    rows gather on the host, so the device holds one chunk at a time. The bar moves between
    calls, never from inside one.
    """
    from .._progress import Progress

    n_blocks = math.ceil(n / batch_size)
    per_chunk = math.ceil(n_blocks / PROGRESS_CHUNKS)
    out = None
    with Progress(n_blocks, progress, description, unit="block") as bar:
        for first in range(0, n_blocks, per_chunk):
            start = first * batch_size
            idx = np.arange(start, start + per_chunk * batch_size, dtype=np.int32).reshape(per_chunk, -1)
            rows = np.asarray(rows_of(jnp.asarray(idx)))
            if out is None:
                out = np.empty((n, *rows.shape[1:]), rows.dtype)
            take = min(n - start, len(rows))
            out[start : start + take] = rows[:take]
            bar.advance(min(per_chunk, n_blocks - first))
    return out
