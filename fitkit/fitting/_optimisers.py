"""Map optax transformations to parameter paths (zodiax's `map_optimisers`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import optax

from .. import tree

__all__ = ["OptimiserError", "map_optimisers"]

FROZEN = "frozen"


class OptimiserError(ValueError):
    """The `optimisers` argument of `fit` is malformed (a param named twice, a non-optax value)."""


def _is_transformation(value: Any) -> bool:
    return isinstance(value, optax.GradientTransformation) or (
        hasattr(value, "init") and hasattr(value, "update") and callable(value.update)
    )


def _leaves_under(paths: list[str], node: str) -> list[str]:
    return [p for p in paths if p == node or p.startswith(node + ".")]


def map_optimisers(
    params: Any,
    optimisers: optax.GradientTransformation | Mapping[Any, optax.GradientTransformation],
    held: frozenset[str] = frozenset(),
) -> tuple[optax.GradientTransformation, list[str]]:
    """One optax transformation that applies each optimiser to the params it names.

    Args:
        params: the params pytree being fitted.
        optimisers: one optax transformation for every param, or a dict from a
            path (`"position"`, `"flux.blue"`) or a tuple of paths to an optax
            transformation. A path naming a sub-tree covers all its leaves.
            Params that no entry names are frozen (their updates are zero) and
            a warning lists them once.
        held: leaf paths that are fixed or tied anyway (not warned about).

    Returns:
        `(optimiser, frozen)`: an `optax.multi_transform` and the leaf paths
        that are frozen (empty when one transformation covers everything).

    Raises:
        PathError: a path does not exist in `params` (the message lists the valid ones).
        OptimiserError: a param is named by two entries, or nothing is left to fit.
        TypeError: a value is not an optax transformation, or a key is not a path.

    Example:
        >>> opt, frozen = map_optimisers(params, {("mean", "std"): optax.sgd(2e-3), "power": optax.adam(1e-2)})
    """
    if _is_transformation(optimisers):
        return optimisers, []
    if not isinstance(optimisers, Mapping):
        raise TypeError(
            f"optimisers is a {type(optimisers).__name__}; give an optax transformation "
            "(optax.adam(1e-2)) or a dict {path or tuple of paths: transformation}"
        )
    if not optimisers:
        raise OptimiserError("optimisers is an empty dict: name at least one param path to fit")
    paths = tree.leaf_paths(params)
    owner: dict[str, str] = {}
    transforms: dict[str, optax.GradientTransformation] = {}
    for i, (key, transform) in enumerate(optimisers.items()):
        group = (key,) if isinstance(key, str) else key
        if not isinstance(group, tuple) or not all(isinstance(p, str) for p in group):
            raise TypeError(f"optimisers key {key!r} is not a path string or a tuple of path strings")
        if not _is_transformation(transform):
            raise TypeError(
                f"optimisers[{key!r}] is a {type(transform).__name__}; give an optax "
                "transformation such as optax.adam(1e-2)"
            )
        label = str(i)
        transforms[label] = transform
        for path in group:
            tree.get(params, path)  # raises PathError naming the valid paths
            node = ".".join(tree.split_path(path))
            for leaf in _leaves_under(paths, node):
                if leaf in owner:
                    raise OptimiserError(
                        f"param {leaf!r} is named by two optimisers entries, {owner[leaf]!r} "
                        f"and {key!r}; give each param one optimiser"
                    )
                owner[leaf] = key
    frozen = [p for p in paths if p not in owner]
    unnamed = [p for p in frozen if p not in held]
    if unnamed:
        warnings.warn(
            f"these params are not named in optimisers and stay fixed: {', '.join(unnamed)}",
            UserWarning,
            stacklevel=3,
        )
    if frozen:
        transforms[FROZEN] = optax.set_to_zero()
    labels = [str(list(optimisers).index(owner[p])) if p in owner else FROZEN for p in paths]
    label_tree = jax.tree.unflatten(jax.tree.structure(params), labels)
    return optax.multi_transform(transforms, label_tree), frozen
