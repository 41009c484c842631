"""Surveys larger than device memory: chunks streamed from host arrays, each result saved as it finishes."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import tree
from .._flags import FLAGS
from ..problem import Problem
from ..solving._messages import ConvergenceWarning
from ._arrays import from_arrays
from ._covariance import BatchCovariance, covariance_batch
from ._result import BatchResult
from ._solve import solve_batch
from ._stack import BatchError, batch_size_of

__all__ = ["solve_chunks"]

_MANIFEST = "manifest.json"


def _rows(values, start: int, stop: int, size: int):
    """Rows `start:stop` of every array in `values`, read from the host (or a memory map), padded to
    `size` rows by repeating the last: every chunk then has one shape and one compiled solve."""

    def cut(x):
        part = np.asarray(x[start:stop])
        if part.shape[0] < size:
            part = np.concatenate([part, np.repeat(part[-1:], size - part.shape[0], axis=0)])
        return part

    return jax.tree.map(cut, values)


def _fingerprint(values, starts, names, size: int, chunk_size: int, settings: dict) -> dict:
    """What identifies a survey: its size, chunking, params, the settings of its fits, and the shapes
    and end rows of its arrays."""
    digest = hashlib.sha256()
    for x in jax.tree.leaves((values, starts)):
        digest.update(str((tuple(x.shape), str(x.dtype))).encode())
        digest.update(np.ascontiguousarray(np.asarray(x[:1])).tobytes())
        digest.update(np.ascontiguousarray(np.asarray(x[-1:])).tobytes())
    return {
        "size": size,
        "chunk_size": chunk_size,
        "names": list(names),
        "settings": repr(sorted(settings.items())),
        "arrays": digest.hexdigest(),
    }


def _open_store(store, fingerprint: dict) -> pathlib.Path | None:
    if store is None:
        return None
    path = pathlib.Path(store)
    path.mkdir(parents=True, exist_ok=True)
    manifest = path / _MANIFEST
    if manifest.exists():
        held = json.loads(manifest.read_text())
        if held != fingerprint:
            differ = sorted(k for k in fingerprint if held.get(k) != fingerprint[k])
            raise BatchError(
                f"{path} holds the results of another survey (its {', '.join(differ)} differ); "
                "give another store, or delete this one to start again"
            )
    else:
        manifest.write_text(json.dumps(fingerprint))
    return path


def _save(path: pathlib.Path, index: int, arrays: dict) -> None:
    final = path / f"chunk-{index:06d}.npz"
    partial = path / f"chunk-{index:06d}.partial.npz"
    np.savez(partial, **arrays)
    os.replace(partial, final)  # a chunk file exists whole or not at all, also after an interruption


def _solved(template, where, values, starts, start, stop, chunk_size, covariance, options) -> dict:
    """One chunk fitted, as flat arrays (the members beyond `stop - start` are padding, dropped)."""
    survey = from_arrays(template, where, _rows(values, start, stop, chunk_size))
    begin = jax.tree.map(jnp.asarray, _rows(starts, start, stop, chunk_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one summary at the end says it for all
        res = solve_batch(survey, begin, warn=False, **options)
    used = stop - start
    flat = np.concatenate(
        [np.asarray(x).reshape(chunk_size, -1) for x in jax.tree.leaves(res.params)], axis=1
    )
    out = {
        "params": flat[:used],
        "loss": res.loss[:used],
        "steps": res.steps[:used],
        "converged": res.converged[:used],
        "valid": res.valid[:used],
        "edm": res.edm[:used],
        "tried": res.tried[:used],
        "flags": np.stack([np.asarray(res.flags.get(name, np.zeros(chunk_size, bool))) for name in FLAGS], 1)[
            :used
        ],
        "seconds": np.asarray([res.wall_time + res.compile_time]),
        "method": np.asarray(res.method),
    }
    if covariance:
        cov = covariance_batch(survey, res)
        out["matrix"], out["ok"] = cov.matrix[:used], cov.ok[:used]
    return out


def solve_chunks(
    template: Problem,
    where: Callable[[Problem], Any],
    values: Any,
    starts: Any,
    *,
    chunk_size: int = 4096,
    store: str | os.PathLike | None = None,
    covariance: bool = True,
    progress: bool = True,
    warn: bool = True,
    **options: Any,
) -> tuple[BatchResult, BatchCovariance | None]:
    """Fit a survey too large for device memory, chunk by chunk, streamed from host arrays.

    Each chunk of `chunk_size` members is read from `values` (NumPy arrays, memory maps
    from `np.load(path, mmap_mode="r")`, or anything sliced like them, as an h5py
    dataset), built with `fitkit.batching.from_arrays`, fitted with one batched
    `fk.solve` and, with `store`, saved at once. Every chunk has the same shape (the
    last is padded), so the solve compiles once. Called again with the same `store`,
    it loads the chunks saved already and fits only the rest: an interrupted run
    resumes where it stopped.

    Args:
        template, where: as for `fitkit.batching.from_arrays`.
        values: the per-member arrays, each with a leading axis of the survey's size.
        starts: the start params, every leaf with that leading axis (a broadcast
            array, `np.broadcast_to(x, (size,) + x.shape)`, costs no memory).
        chunk_size: members per chunk; choose what fits the device's memory.
        store: a directory for the chunks' results (made if missing); None keeps
            them in memory only.
        covariance: also take every member's covariance (as `fk.covariance` on a batch).
        progress: a progress bar over the members (tqdm; a widget in notebooks).
        warn: warn with `ConvergenceWarning` when some members are not valid.
        options: for `fk.solve` (method, rtol, atol, max_steps, max_edm, retries).

    Returns:
        `(result, covariance)`: a `BatchResult` of every member, and a `BatchCovariance`
        (None with `covariance=False`).

    Raises:
        BatchError: values or starts of different lengths, a `chunk_size` below 1, a
            store that holds another survey's results.
        ParamsError: as `from_arrays` and `fk.solve` raise for a chunk's data and starts.

    Example:
        >>> images = np.load("stamps.npy", mmap_mode="r")      # (10**6, 16, 16), on disk
        >>> res, cov = fitkit.batching.solve_chunks(
        ...     template, lambda p: p.observations[0].data, images, starts, store="fits/")
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise BatchError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    size = batch_size_of(values, "the values")
    if batch_size_of(starts) != size:
        raise BatchError(f"the starts hold {batch_size_of(starts)} members, the values {size}")
    one_start = jax.tree.map(lambda x: np.asarray(x[0]), starts)
    names = tree.names(one_start)
    chunk_size = min(chunk_size, size)
    path = _open_store(
        store, _fingerprint(values, starts, names, size, chunk_size, {**options, "covariance": covariance})
    )
    bounds = [(start, min(start + chunk_size, size)) for start in range(0, size, chunk_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=size, desc="survey", unit="fit")
    parts = []
    try:
        for index, (start, stop) in enumerate(bounds):
            saved = None if path is None else path / f"chunk-{index:06d}.npz"
            if saved is not None and saved.exists():
                with np.load(saved) as held:
                    part = dict(held)
            else:
                part = _solved(template, where, values, starts, start, stop, chunk_size, covariance, options)
                if saved is not None:
                    _save(path, index, part)
            parts.append(part)
            if bar is not None:
                bar.update(stop - start)
                bar.set_postfix(valid=f"{sum(int(p['valid'].sum()) for p in parts)}/{stop}")
    finally:
        if bar is not None:
            bar.close()
    return _joined(parts, one_start, covariance, warn)


def _joined(parts: list[dict], one_start, covariance: bool, warn: bool):
    layout = tree.Layout.of(jax.tree.map(jnp.asarray, one_start))
    flat = np.concatenate([p["params"] for p in parts])
    params = jax.vmap(layout.to_params)(jnp.asarray(flat))
    flags = np.concatenate([p["flags"] for p in parts])
    methods = [str(p["method"]) for p in parts]
    result = BatchResult(
        params=params,
        loss=np.concatenate([p["loss"] for p in parts]),
        steps=np.concatenate([p["steps"] for p in parts]),
        converged=np.concatenate([p["converged"] for p in parts]),
        valid=np.concatenate([p["valid"] for p in parts]),
        edm=np.concatenate([p["edm"] for p in parts]),
        flags={name: flags[:, k] for k, name in enumerate(FLAGS) if flags[:, k].any()},
        method=max(methods, key=len),
        tried=np.concatenate([p["tried"] for p in parts]),
        wall_time=float(sum(float(p["seconds"][0]) for p in parts)),
    )
    if warn and not result.valid.all():
        warnings.warn(result.summary(), ConvergenceWarning, stacklevel=3)
    if not covariance:
        return result, None
    matrix = np.concatenate([p["matrix"] for p in parts])
    std = jax.vmap(layout.to_params)(jnp.asarray(np.sqrt(np.diagonal(matrix, axis1=1, axis2=2))))
    names = tuple(tree.names(one_start))
    return result, BatchCovariance(matrix, std, params, names, np.concatenate([p["ok"] for p in parts]))
