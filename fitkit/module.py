"""Module: an immutable equinox module with path-based verbs."""

from __future__ import annotations

from typing import Any

import equinox as eqx

from . import tree

__all__ = ["Module"]


class Module(eqx.Module):
    """An immutable `equinox.Module` whose nodes can be read and replaced by path.

    Subclass it exactly like `equinox.Module`. Every verb returns a new module
    and leaves the original untouched, matching `zodiax.Base`:

    Example:
        >>> class Line(fk.Module):
        ...     slope: jax.Array
        ...     offset: jax.Array
        >>> line = Line(slope=jnp.array(1.0), offset=jnp.array(0.0))
        >>> line.set("slope", 2.0).get("slope")
        Array(2., dtype=float32)
        >>> line.set(["slope", "offset"], [2.0, 1.0]).multiply("offset", 3.0).get("offset")
        Array(3., dtype=float32)
    """

    def get(self, path: tree.Path) -> Any:
        """The value at `path` (a dotted string), or a list of values for a list of paths.

        Raises:
            PathError: the path does not exist; the message lists valid paths.
        """
        return tree.get(self, path)

    def set(self, path: tree.Path, value: Any) -> Module:
        """A copy with the node at `path` replaced by `value` (lists of both allowed)."""
        return tree.set(self, path, value)

    def add(self, path: tree.Path, value: Any) -> Module:
        """A copy with `value` added to the node(s) at `path`."""
        return tree.add(self, path, value)

    def multiply(self, path: tree.Path, value: Any) -> Module:
        """A copy with the node(s) at `path` multiplied by `value`."""
        return tree.multiply(self, path, value)
