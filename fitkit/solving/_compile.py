"""Ahead-of-time compilation with a cache, so compile time is measured apart and paid once.

`compiled(fn, args, **static)` splits `args` into arrays (traced) and
everything else (baked in), lowers and compiles `fn` once per distinct
static part and array shapes, and returns the executable with the seconds
spent compiling (0 on a cache hit).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import equinox as eqx
import jax

__all__ = ["compiled", "clear_cache"]

_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_CACHE_SIZE = 32


def clear_cache() -> None:
    """Forget every compiled solve (frees their executables)."""
    _CACHE.clear()


def _key(treedef, static: tuple, arrays: list, options: dict) -> Hashable | None:
    shapes = tuple((x.shape, str(x.dtype), bool(getattr(x, "weak_type", False))) for x in arrays)
    key = (treedef, static, shapes, tuple(sorted(options.items())))
    try:
        hash(key)
        key == key  # noqa: B015 - leaves whose __eq__ returns arrays cannot key a dict
    except Exception:  # noqa: BLE001 - any unhashable static leaf: compile without caching
        return None
    return key


def compiled(fn: Callable, args: tuple, **options: Any) -> tuple[Callable, list, float]:
    """Compile `fn(*args, **options)` ahead of time, reusing a cached executable when possible.

    Args:
        fn: a pure function of `args` (pytrees) and hashable keyword `options`.
        args: its arguments; array leaves become inputs, other leaves constants.
        **options: static keyword arguments (part of the cache key).

    Returns:
        `(executable, arrays, seconds)`: call `executable(arrays)` to run;
        `seconds` is the time spent tracing and compiling (0 on a cache hit).
    """
    # One flatten instead of `eqx.partition`, which rebuilds every Module: this
    # runs on every call, so it is kept cheap.
    leaves, treedef = jax.tree.flatten(args)
    is_array = [eqx.is_array(x) for x in leaves]
    arrays = [x for x, a in zip(leaves, is_array) if a]
    static = tuple(None if a else x for x, a in zip(leaves, is_array))
    key = _key(treedef, static, arrays, options)
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key], arrays, 0.0

    def run(arrays):
        it = iter(arrays)
        merged = [next(it) if a else x for x, a in zip(static, is_array)]
        return fn(*jax.tree.unflatten(treedef, merged), **options)

    start = time.perf_counter()
    executable = jax.jit(run).lower(arrays).compile()
    seconds = time.perf_counter() - start
    if key is not None:
        _CACHE[key] = executable
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return executable, arrays, seconds
