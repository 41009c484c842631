"""Exact save and load of pytrees of arrays (dicts, lists, tuples, None) as `.npz`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["FitKitFileError", "encode", "decode", "save_npz", "load_npz", "KINDS"]

# What fitkit saves, by class name -> the fields every such file holds.
KINDS: dict[str, tuple[str, ...]] = {
    "FitResult": ("params", "loss", "steps", "converged", "message"),
    "Covariance": ("matrix", "mean", "method"),
    "Posterior": ("samples", "latent", "names"),
}


class FitKitFileError(ValueError):
    """A file fitkit cannot load: truncated, corrupted, or not written by a fitkit `save`.

    The message names the path and what is wrong with the file.
    """


class _Fields(dict):
    """The loaded fields; a missing one is a `FitKitFileError` naming the file, not a bare `KeyError`."""

    def __init__(self, fields: dict, where: str):
        super().__init__(fields)
        self.where = where

    def __missing__(self, key):
        raise FitKitFileError(
            f"cannot load {self.where}: it has no {key!r} field; it holds {_what_it_holds(self)}, "
            "so it was saved by another kind of object (or an older fitkit)"
        )


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


def _what_it_holds(fields: Mapping) -> str:
    for kind, required in KINDS.items():
        if all(name in fields for name in required):
            return f"a saved {kind}"
    shown = ", ".join(map(str, list(fields)[:8]))
    return f"the fields {shown}" if shown else "no fields"


def _unreadable(where: str, path: str | os.PathLike, err: Exception) -> FitKitFileError:
    """Why a file could not be opened as an `.npz` archive, in words."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b""
    if head.startswith(b"PK"):
        what = "it is a damaged zip archive (truncated or corrupted: save it again)"
    elif head.startswith(b"\x93NUMP"):
        what = "it is a single .npy array, not an .npz archive written by a fitkit save"
    elif not head:
        what = "it is empty"
    else:
        what = f"it is not an .npz archive (it starts with {head!r})"
    return FitKitFileError(f"cannot load {where}: {what} [{type(err).__name__}: {err}]")


def load_npz(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read what `save_npz` wrote.

    Args:
        path: the `.npz` file.
        kind: the class the caller expects (a key of `KINDS`, e.g. `"Covariance"`);
            its fields must then be present.

    Raises:
        FileNotFoundError: there is no file at `path`.
        FitKitFileError: the file is truncated, corrupted, not an `.npz`
            archive, an `.npz` archive not written by fitkit, or (with `kind`)
            one saved by another kind of object; the message names the path
            and what is wrong.
    """
    where = os.fspath(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - numpy/zipfile errors name nothing the user wrote
        raise _unreadable(where, path, err) from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise FitKitFileError(
            f"cannot load {where}: it is a single .npy array, not an .npz archive written by a fitkit save"
        )
    with npz:
        if "__spec__" not in npz.files:
            shown = ", ".join(npz.files[:8]) or "none"
            raise FitKitFileError(
                f"cannot load {where}: it is an .npz archive but not one written by a fitkit save "
                f"(no '__spec__' entry; its arrays: {shown})"
            )
        try:
            arrays = {k: npz[k] for k in npz.files}
        except Exception as err:  # noqa: BLE001 - a damaged member (bad CRC, truncated data)
            raise FitKitFileError(
                f"cannot load {where}: an array in it is damaged (truncated or corrupted: save it "
                f"again) [{type(err).__name__}: {err}]"
            ) from err
    try:
        spec = json.loads(str(arrays.pop("__spec__")))
        fields = decode(spec, arrays)
    except Exception as err:  # noqa: BLE001 - a spec that does not match its arrays
        raise FitKitFileError(
            f"cannot load {where}: its description of the saved object is damaged or does not match "
            f"its arrays [{type(err).__name__}: {err}]"
        ) from err
    if not isinstance(fields, dict):
        raise FitKitFileError(f"cannot load {where}: it holds a {type(fields).__name__}, not saved fields")
    fields = _Fields(fields, where)
    if kind is not None:
        missing = [name for name in KINDS[kind] if name not in fields]
        if missing:
            raise FitKitFileError(
                f"cannot load {where} as a {kind}: it has no {', '.join(map(repr, missing))} "
                f"field(s); it holds {_what_it_holds(fields)}"
            )
    return fields
