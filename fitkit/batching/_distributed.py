"""Batches over several processes (`jax.distributed`): each process fits its own members, results gathered on request."""

from __future__ import annotations

from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["gather", "local_rows"]

Gathered = TypeVar("Gathered")
# A method name travels between processes as bytes in an array of fixed length.
_TEXT_BYTES = 512


def local_rows(size: int) -> np.ndarray:
    """The members of a batch of `size` that this process fits: one contiguous block per process.

    The members of a survey are independent, so each process fits its block on its own local
    devices, with no communication until `gather`. The blocks differ in length by at most one.

    Args:
        size: the number of members of the whole survey.

    Returns:
        The indices (into the whole survey) of this process's members, in order.

    Raises:
        ValueError: a `size` smaller than the number of processes (a process would have nothing to fit).

    Example:
        >>> jax.distributed.initialize(...)          # once, in every process
        >>> rows = fk.batching.local_rows(len(catalogue))
        >>> res = fk.solve(fk.batch([make_problem(k) for k in rows]), starts_for(rows))
        >>> everything = fk.batching.gather(res)     # every member, on every process
    """
    processes = jax.process_count()
    if size < processes:
        raise ValueError(f"a batch of {size} members cannot be split over {processes} processes")
    return np.array_split(np.arange(size), processes)[jax.process_index()]


def _allgather(array: np.ndarray) -> np.ndarray:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=False))


def _local_size(result) -> int:
    if hasattr(result, "size") and isinstance(result.size, int):
        return result.size
    if hasattr(result, "ok"):
        return int(np.shape(result.ok)[0])
    raise TypeError(f"gather takes a BatchResult or a BatchCovariance, not a {type(result).__name__}")


def gather(result: Gathered) -> Gathered:
    """Every process's members of a batched result, in process order, on every process.

    Call it in every process (it is a collective). Arrays with a leading batch axis are
    concatenated in the order of `local_rows`; times are the slowest process's; the method
    is the one of the process that needed the most retries. With one process it returns
    `result` unchanged.

    Args:
        result: a `BatchResult` or a `BatchCovariance` of this process's members.

    Returns:
        The same kind of result for the members of all processes.

    Raises:
        TypeError: anything else.

    Example:
        >>> cov = fk.batching.gather(fk.covariance(local_survey, res))
    """
    size = _local_size(result)
    if jax.process_count() == 1:
        return result
    sizes = _allgather(np.asarray(size, np.int64))
    longest = int(sizes.max())

    def one(leaf):
        if eqx.is_array(leaf) and np.ndim(leaf) and np.shape(leaf)[0] == size:
            local = np.asarray(leaf)
            padded = np.zeros((longest,) + local.shape[1:], local.dtype)
            padded[:size] = local
            parts = _allgather(padded)
            joined = np.concatenate([parts[p, : sizes[p]] for p in range(sizes.size)])
            return jnp.asarray(joined) if isinstance(leaf, jax.Array) else joined
        if isinstance(leaf, str):
            encoded = np.zeros(_TEXT_BYTES, np.uint8)
            raw = leaf.encode()[:_TEXT_BYTES]
            encoded[: len(raw)] = np.frombuffer(raw, np.uint8)
            texts = [bytes(row).rstrip(b"\0").decode() for row in _allgather(encoded)]
            return max(texts, key=len)
        if isinstance(leaf, float):
            return float(_allgather(np.asarray(leaf, np.float64)).max())
        return leaf

    return jax.tree.map(one, result, is_leaf=lambda x: isinstance(x, str))
