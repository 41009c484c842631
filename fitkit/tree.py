"""Paths on pytrees: get and set by path, flat scalar names, ravel and unravel.

A path is a dotted string naming a node of a pytree: `"position.blue"` is the
`"blue"` entry of the `"position"` dict; `"layers.0"` or `"layers[0]"` is the
first element of a tuple or list; `"wfe"` may also be an attribute of an
equinox module. Several paths may be given at once as a list.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

__all__ = [
    "PathError",
    "split_path",
    "leaf_paths",
    "node_paths",
    "names",
    "get",
    "set",
    "add",
    "multiply",
    "ravel",
    "Layout",
    "size",
    "key_path_to_str",
]

Path = str | Sequence[str]


class PathError(ValueError, KeyError):
    """A parameter path does not exist in the tree.

    The message names the path, the part of it that failed and the valid paths
    closest to it.
    """

    def __str__(self) -> str:  # KeyError would add quotes around the message.
        return str(self.args[0])


def split_path(path: str) -> list[str]:
    """Split `"a.b[0].c"` into `["a", "b", "0", "c"]`."""
    if not isinstance(path, str):
        raise TypeError(f"a parameter path must be a string, got {type(path).__name__}")
    normalised = re.sub(r"\[(\-?\d+)\]", r".\1", path)
    parts = [p for p in normalised.split(".") if p != ""]
    if not parts:
        raise PathError(f"empty parameter path {path!r}")
    return parts


def key_path_to_str(key_path) -> str:
    """Turn a JAX key path (from `jax.tree_util.tree_flatten_with_path`) into a dotted path."""
    parts = []
    for key in key_path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:  # pragma: no cover - future key types
            parts.append(str(key))
    return ".".join(parts)


def leaf_paths(tree: Any) -> list[str]:
    """The dotted path of every leaf, in the order of `jax.tree.leaves`."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [key_path_to_str(kp) for kp, _ in flat]


def node_paths(tree: Any) -> list[str]:
    """Every path that `get` accepts: leaves and the nodes above them."""
    out: list[str] = []
    for path in leaf_paths(tree):
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix and prefix not in out:
                out.append(prefix)
    return out


def _index_names(shape: tuple[int, ...]) -> list[str]:
    if len(shape) == 0:
        return [""]
    return ["[" + ",".join(map(str, idx)) + "]" for idx in itertools.product(*map(range, shape))]


def names(tree: Any) -> list[str]:
    """Flat scalar names in `ravel` order: `position.blue[0]`, `wfe[3]`, `flux.red`.

    Example:
        >>> names({"wfe": jnp.zeros(2), "flux": 1.0})
        ['flux', 'wfe[0]', 'wfe[1]']
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for kp, leaf in flat:
        base = key_path_to_str(kp)
        out += [base + suffix for suffix in _index_names(np.shape(leaf))]
    return out


def size(tree: Any) -> int:
    """Total number of scalars in the leaves of `tree`."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def ravel(tree: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """Flatten a pytree of arrays into one vector.

    Returns:
        `(flat, unravel)`: the 1-D vector and the function that maps such a
        vector back into a pytree of the same structure, shapes and dtypes.
    """
    return ravel_pytree(tree)


class Layout(eqx.Module):
    """The layout of a params pytree: ravel params into one vector and back.

    Holds only the structure, shapes and dtypes, all static.

    Unlike the closure of `jax.flatten_util.ravel_pytree`, two `Layout`s built
    from params of the same structure compare and hash equal, so a compiled
    solve can be reused across calls; and building one does no array work.

    Example:
        >>> params = {"a": jnp.ones(2), "b": jnp.zeros(())}
        >>> layout = Layout.of(params)
        >>> u = layout.to_latent(params)
        >>> u.shape, layout.to_params(u)["a"].shape
        ((3,), (2,))
    """

    treedef: Any = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dtypes: tuple[str, ...] = eqx.field(static=True)

    @classmethod
    def of(cls, params: Any) -> Layout:
        """The map for params shaped like `params` (only their structure is read)."""
        leaves, treedef = jax.tree.flatten(params)
        shapes = tuple(tuple(jnp.shape(x)) for x in leaves)
        return cls(treedef, shapes, tuple(str(jnp.result_type(x)) for x in leaves))

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def to_latent(self, params: Any) -> Float[Array, " n"]:
        """The params raveled into one vector of their common dtype."""
        leaves = jax.tree.leaves(params)
        dtype = jnp.result_type(*self.dtypes)
        return jnp.concatenate([jnp.ravel(jnp.asarray(x, dtype)) for x in leaves])

    def to_params(self, u: Float[Array, " n"]) -> Any:
        """The params pytree holding the entries of `u`."""
        sizes = [math.prod(s) for s in self.shapes]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        leaves = [
            jnp.reshape(u[a:b], shape).astype(dtype)
            for a, b, shape, dtype in zip(offsets[:-1], offsets[1:], self.shapes, self.dtypes)
        ]
        return jax.tree.unflatten(self.treedef, leaves)


def _fields(node) -> list[str] | None:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [f.name for f in dataclasses.fields(node)]
    return None


def _children(node) -> list[str]:
    if isinstance(node, Mapping):
        return [str(k) for k in node.keys()]
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return list(node._fields)
    if isinstance(node, (list, tuple)):
        return [str(i) for i in range(len(node))]
    fields = _fields(node)
    return fields if fields is not None else []


def _lookup_key(node, part: str):
    """The key/index/attribute of `node` named by `part`, or raise LookupError."""
    if isinstance(node, Mapping):
        if part in node:
            return part
        for key in node.keys():
            if str(key) == part:
                return key
        raise LookupError
    if isinstance(node, tuple) and hasattr(node, "_fields") and part in node._fields:
        return part
    if isinstance(node, (list, tuple)):
        try:
            idx = int(part)
        except ValueError:
            raise LookupError from None
        if -len(node) <= idx < len(node):
            return idx % len(node)
        raise LookupError
    fields = _fields(node)
    if fields is not None and part in fields:
        return part
    raise LookupError


def _child(node, key):
    if isinstance(node, Mapping) or (isinstance(node, (list, tuple)) and isinstance(key, int)):
        return node[key]
    return getattr(node, key)


def _replace(node, key, value):
    if isinstance(node, Mapping):
        new = dict(node) if type(node) is dict else copy.copy(node)
        new[key] = value
        return new
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        name = key if isinstance(key, str) else node._fields[key]
        return node._replace(**{name: value})
    if isinstance(node, (list, tuple)):
        items = list(node)
        items[key] = value
        return type(node)(items)
    new = copy.copy(node)
    object.__setattr__(new, key, value)
    return new


def _path_error(tree, path: str, failed_at: str) -> PathError:
    valid = node_paths(tree)
    close = difflib.get_close_matches(path, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
    return PathError(
        f"unknown parameter path {path!r}: {failed_at!r} does not exist.{hint} "
        f"Valid paths: {shown or '(the tree is empty)'}."
    )


def _walk(tree, path: str) -> list[tuple[Any, Any]]:
    """The (node, key) pairs from the root down to the node named by `path`."""
    steps = []
    node = tree
    parts = split_path(path)
    for i, part in enumerate(parts):
        try:
            key = _lookup_key(node, part)
        except LookupError:
            raise _path_error(tree, path, ".".join(parts[: i + 1])) from None
        steps.append((node, key))
        node = _child(node, key)
    return steps


def _is_many(path: Path) -> bool:
    return isinstance(path, (list, tuple))


def get(tree: Any, path: Path) -> Any:
    """The node of `tree` at `path`; a list of nodes for a list of paths.

    Raises:
        PathError: a path does not exist (the message lists valid paths).

    Example:
        >>> get({"position": {"blue": 1.0}}, "position.blue")
        1.0
    """
    if _is_many(path):
        return [get(tree, p) for p in path]
    node, key = _walk(tree, path)[-1]
    return _child(node, key)


def _as_leaf(value):
    if isinstance(value, (float, int, complex, bool, np.ndarray, np.generic, list)):
        return jnp.asarray(value)
    return value


def set(tree: Any, path: Path, value: Any) -> Any:  # noqa: A001 - mirrors zodiax's verb
    """A copy of `tree` with the node at `path` replaced by `value`.

    With a list of paths, `value` is a list of the same length. Python numbers,
    lists and NumPy arrays are converted to JAX arrays; other values (arrays,
    sub-trees, modules) are placed as they are. The input is not modified.

    Raises:
        PathError: a path does not exist.
        ValueError: a list of paths is given with a different number of values.
    """
    if _is_many(path):
        paths = list(path)
        if not isinstance(value, (list, tuple)):
            raise ValueError(
                f"{len(paths)} paths were given with a single value; pass a list of {len(paths)} values"
            )
        if len(value) != len(paths):
            raise ValueError(f"{len(paths)} paths were given with {len(value)} values")
        for p, v in zip(paths, value):
            tree = set(tree, p, v)
        return tree
    steps = _walk(tree, path)
    new = _as_leaf(value)
    for node, key in reversed(steps):
        new = _replace(node, key, new)
    return new


def _update(tree: Any, path: Path, value: Any, op) -> Any:
    if _is_many(path):
        paths = list(path)
        values = value if isinstance(value, (list, tuple)) else [value] * len(paths)
        if len(values) != len(paths):
            raise ValueError(f"{len(paths)} paths were given with {len(values)} values")
        for p, v in zip(paths, values):
            tree = _update(tree, p, v, op)
        return tree
    old = get(tree, path)
    return set(tree, path, jax.tree.map(lambda leaf: op(leaf, value), old))


def add(tree: Any, path: Path, value: Any) -> Any:
    """A copy of `tree` with `value` added to the node(s) at `path`."""
    return _update(tree, path, value, lambda a, b: a + b)


def multiply(tree: Any, path: Path, value: Any) -> Any:
    """A copy of `tree` with the node(s) at `path` multiplied by `value`."""
    return _update(tree, path, value, lambda a, b: a * b)
