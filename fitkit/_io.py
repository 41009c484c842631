"""Exact save and load of pytrees of arrays (dicts, lists, tuples, None) as `.npz`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["encode", "decode", "save_npz", "load_npz"]


def encode(tree: Any, arrays: dict[str, np.ndarray], where: str = "tree") -> Any:
    """Describe `tree` as JSON, moving its array leaves into `arrays`."""
    if tree is None:
        return {"t": "none"}
    if isinstance(tree, Mapping):
        keys = list(tree.keys())
        if not all(isinstance(k, (str, int)) for k in keys):
            raise TypeError(f"cannot save {where}: dict keys must be strings or integers")
        return {
            "t": "dict",
            "keys": [[type(k).__name__, k] for k in keys],
            "c": [encode(tree[k], arrays, f"{where}.{k}") for k in keys],
        }
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {"t": kind, "c": [encode(x, arrays, f"{where}[{i}]") for i, x in enumerate(tree)]}
    if isinstance(tree, (str, bool)) or (isinstance(tree, (int, float)) and not isinstance(tree, bool)):
        return {"t": "py", "v": tree}
    if isinstance(tree, (np.ndarray, np.generic, jax.Array)):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(tree)
        return {"t": "array", "k": name}
    raise TypeError(
        f"cannot save {where}: a {type(tree).__name__}; saving supports params made of "
        "dicts, lists, tuples and arrays"
    )


def decode(spec: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Rebuild a pytree from `encode`'s description and arrays."""
    kind = spec["t"]
    if kind == "none":
        return None
    if kind == "dict":
        keys = [int(v) if t == "int" else v for t, v in spec["keys"]]
        return {k: decode(c, arrays) for k, c in zip(keys, spec["c"])}
    if kind in ("list", "tuple"):
        items = [decode(c, arrays) for c in spec["c"]]
        return items if kind == "list" else tuple(items)
    if kind == "py":
        return spec["v"]
    return np.asarray(arrays[spec["k"]])


def save_npz(path: str | os.PathLike, fields: dict[str, Any]) -> None:
    """Write `fields` (JSON-able values and pytrees of arrays) to one `.npz` file."""
    arrays: dict[str, np.ndarray] = {}
    spec = encode(fields, arrays, "result")
    with open(path, "wb") as handle:  # a handle, so numpy does not append ".npz"
        np.savez(handle, __spec__=np.asarray(json.dumps(spec)), **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read what `save_npz` wrote."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    spec = json.loads(str(arrays.pop("__spec__")))
    return decode(spec, arrays)
