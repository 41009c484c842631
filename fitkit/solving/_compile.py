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


def _key(dynamic, static, options: dict) -> Hashable | None:
    static_leaves, static_def = jax.tree.flatten(static)
    arrays, array_def = jax.tree.flatten(dynamic)
    shapes = tuple((x.shape, str(x.dtype), bool(getattr(x, "weak_type", False))) for x in arrays)
    key = (static_def, tuple(static_leaves), array_def, shapes, tuple(sorted(options.items())))
    try:
        hash(key)
        key == key  # noqa: B015 - leaves whose __eq__ returns arrays cannot key a dict
    except Exception:  # noqa: BLE001 - any unhashable static leaf: compile without caching
        return None
    return key


def compiled(fn: Callable, args: tuple, **options: Any) -> tuple[Callable, Any, float]:
    """Compile `fn(*args, **options)` ahead of time, reusing a cached executable when possible.

    Args:
        fn: a pure function of `args` (pytrees) and hashable keyword `options`.
        args: its arguments; array leaves become inputs, other leaves constants.
        **options: static keyword arguments (part of the cache key).

    Returns:
        `(executable, dynamic, seconds)`: call `executable(dynamic)` to run;
        `seconds` is the time spent tracing and compiling (0 on a cache hit).
    """
    dynamic, static = eqx.partition(args, eqx.is_array)
    key = _key(dynamic, static, options)
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key], dynamic, 0.0
    start = time.perf_counter()
    executable = jax.jit(lambda d: fn(*eqx.combine(d, static), **options)).lower(dynamic).compile()
    seconds = time.perf_counter() - start
    if key is not None:
        _CACHE[key] = executable
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return executable, dynamic, seconds
