"""The one registry of fitkit's caches: compiled executables, checked structures, one-time notices.

Every cache fitkit keeps lives here, so `fk.clear_caches()` frees them all,
and nothing else in the package holds mutable state at module level.

`compiled(fn, args, **options)` is the compile-once-per-structure entry point
of the engines: it splits `args` into arrays (traced, so new data values or
new start params reuse the executable) and everything else (baked in, part of
the key), and compiles `fn` ahead of time once per key.

The persistent cache stores XLA executables on disk, so a new Python process
does not recompile what an earlier one compiled.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import equinox as eqx
import jax
import numpy as np

__all__ = [
    "clear_caches",
    "compiled",
    "enable_compile_cache",
    "registry",
    "once",
    "structure_key",
    "memo",
    "ENV_VARIABLE",
]

# FITKIT_COMPILE_CACHE=<folder> puts the persistent cache there; 0/off/false/no turns it off.
ENV_VARIABLE = "FITKIT_COMPILE_CACHE"
_OFF = {"0", "off", "false", "no", "none"}
# Compilations quicker than this are not written to disk: reading them back
# would cost about as much as compiling them again.
MIN_COMPILE_SECONDS = 0.2
# Compiled engines kept in memory; the oldest is dropped first.
EXECUTABLES = 64


class _Registry:
    """Named caches: `get(name)` gives an `OrderedDict` that lives until `clear`."""

    def __init__(self) -> None:
        self._caches: dict[str, OrderedDict] = {}

    def get(self, name: str) -> OrderedDict:
        return self._caches.setdefault(name, OrderedDict())

    def clear(self) -> None:
        for cache in self._caches.values():
            cache.clear()


registry = _Registry()


def once(what: Hashable) -> bool:
    """True the first time `what` is asked about in this process (or since `clear_caches`)."""
    seen = registry.get("once")
    if what in seen:
        return False
    seen[what] = True
    return True


def clear_caches() -> None:
    """Forget every compiled executable and checked structure fitkit and JAX hold in memory.

    The next call of each engine compiles again (from the persistent cache on
    disk, where it is enabled). Use it to free memory after many problems of
    different shapes, or to time a first call.

    Example:
        >>> fk.clear_caches()
    """
    registry.clear()
    jax.clear_caches()


def default_cache_folder() -> pathlib.Path:
    """The per-user folder of the persistent cache: `$XDG_CACHE_HOME/fitkit/jax` or `~/.cache/fitkit/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "fitkit" / "jax"


def enable_compile_cache(enable: bool = True, path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turn JAX's persistent compilation cache on (in `path`) or off.

    `import fitkit` turns it on in `default_cache_folder()` unless the
    environment variable `FITKIT_COMPILE_CACHE` is `0`/`off` (or names another
    folder), or the user already set `jax_compilation_cache_dir`. The cache
    holds compiled XLA programs keyed by the program, the JAX version and the
    device, so a stale entry is never used; delete the folder to reclaim space.

    Args:
        enable: `False` stops reading and writing the cache in this process.
        path: the folder to use (default: `$FITKIT_COMPILE_CACHE` if it names
            one, else `default_cache_folder()`).

    Returns:
        The folder in use, or None when turned off.

    Example:
        >>> fk.enable_compile_cache(path="/tmp/fitkit-cache")
        PosixPath('/tmp/fitkit-cache')
    """
    if not enable:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if path is None:
        setting = os.environ.get(ENV_VARIABLE, "").strip()
        path = setting if setting and setting.lower() not in _OFF else default_cache_folder()
    folder = pathlib.Path(path).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder


def enable_from_environment() -> None:
    """What `import fitkit` does: the persistent cache on unless turned off or already configured."""
    setting = os.environ.get(ENV_VARIABLE, "").strip()
    if setting.lower() in _OFF:
        return
    if jax.config.jax_compilation_cache_dir:
        return  # the user configured JAX's cache themselves
    try:
        enable_compile_cache(True, setting or None)
    except OSError:  # a read-only home: run without a persistent cache
        pass


# Arrays closed over by a function enter its fingerprint by value up to this size.
_SMALL_ARRAY = 4096
# optax nests closures deeply (a delayed SGD with momentum is ~25 levels); a
# self-referencing closure ends here and is then matched by identity.
MAX_DEPTH = 100


class _Same:
    """Matches only the very object it holds (and keeps it alive, so its id is not reused)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value


def fingerprint(value: Any, depth: int = 0) -> Hashable:
    """A hashable stand-in for a static leaf that is equal for leaves that compute the same thing.

    Functions are compared by their code, the values they close over and
    their defaults, not by identity: `optax.adam(1e-2)` built twice gives two
    sets of closures that compile to the same program, so they share one
    executable. (As with `jax.jit`, globals a function reads are not part of
    it.) Anything else unhashable falls back to its identity.
    """
    if depth > MAX_DEPTH:
        return ("object", _Same(value))
    if isinstance(value, types.FunctionType):
        cells = []
        for cell in value.__closure__ or ():
            try:
                cells.append(fingerprint(cell.cell_contents, depth + 1))
            except ValueError:  # an empty cell
                cells.append(None)
        defaults = fingerprint((value.__defaults__, value.__kwdefaults__), depth + 1)
        return ("function", value.__code__, tuple(cells), defaults)
    if isinstance(value, types.MethodType):
        return ("method", fingerprint(value.__func__, depth + 1), fingerprint(value.__self__, depth + 1))
    if isinstance(value, functools.partial):
        parts = (value.func, value.args, value.keywords)
        return ("partial", fingerprint(parts, depth + 1))
    if isinstance(value, tuple | list):
        return (type(value), tuple(fingerprint(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((fingerprint(k, depth + 1), fingerprint(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, np.ndarray | jax.Array):
        if value.size <= _SMALL_ARRAY and not isinstance(value, jax.core.Tracer):
            host = np.asarray(value)
            return ("array", host.shape, str(host.dtype), host.tobytes())
        return ("array", _Same(value))
    try:
        hash(value)
        value == value  # noqa: B015 - an __eq__ that returns arrays cannot key a dict
    except Exception:  # noqa: BLE001 - unhashable: only the same object matches
        return ("object", _Same(value))
    return value


def _spread(x) -> Any:
    """The sharding of an array spread over several devices (an executable is compiled for it), else None."""
    sharding = getattr(x, "sharding", None)
    if sharding is None or len(sharding.device_set) == 1:
        return None
    return sharding


def _key(treedef, static: tuple, arrays: list, options: dict) -> Hashable | None:
    shapes = tuple((x.shape, str(x.dtype), bool(getattr(x, "weak_type", False)), _spread(x)) for x in arrays)
    static = tuple(fingerprint(x) for x in static)
    key = (treedef, static, shapes, tuple(sorted(options.items())))
    try:
        hash(key)
        key == key  # noqa: B015 - leaves whose __eq__ returns arrays cannot key a dict
    except Exception:  # noqa: BLE001 - any unhashable static leaf: compile without caching
        return None
    return key


def structure_key(*parts: Any) -> Hashable | None:
    """A key that is equal for pytrees of the same structure, shapes, dtypes and static leaves
    (array values do not enter it), or None when a static leaf cannot be hashed."""
    leaves, treedef = jax.tree.flatten(parts)
    is_array = [eqx.is_array(x) for x in leaves]
    arrays = [x for x, a in zip(leaves, is_array) if a]
    static = tuple(None if a else x for x, a in zip(leaves, is_array))
    return _key(treedef, static, arrays, {})


def memo(name: str, key: Hashable | None, compute: Callable[[], Any], size: int = 256) -> Any:
    """`compute()`, remembered under `key` in the registry's cache `name` (not when `key` is None)."""
    if key is None:
        return compute()
    cache = registry.get(name)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = compute()
    while len(cache) > size:
        cache.popitem(last=False)
    return value


def _placed(executable, shardings) -> Callable:
    def call(arrays):
        return executable(jax.device_put(arrays, shardings))

    return call


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
    key = _key(treedef, static, arrays, {"fn": fn, **options})
    cache = registry.get("executables")
    if key is not None and key in cache:
        cache.move_to_end(key)
        return cache[key], arrays, 0.0

    def run(arrays):
        it = iter(arrays)
        merged = [next(it) if a else x for x, a in zip(static, is_array)]
        return fn(*jax.tree.unflatten(treedef, merged), **options)

    start = time.perf_counter()
    executable = jax.jit(run).lower(arrays).compile()
    seconds = time.perf_counter() - start
    if any(_spread(x) is not None for x in arrays):
        # Sharded over several devices, XLA picks the shardings of the outputs; a loop that feeds
        # them back in (a chunk's carry) must be put back on the shardings compiled for.
        executable = _placed(executable, executable.input_shardings[0][0])
    if key is not None:
        cache[key] = executable
        while len(cache) > EXECUTABLES:
            cache.popitem(last=False)
    return executable, arrays, seconds
