"""A batch built from arrays: one template problem, and the arrays that differ from member to member."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..observation import ObservationError
from ..problem import Problem
from ._ragged import rebuild, with_fields

__all__ = ["from_arrays"]


def _explicit_masks(template: Problem) -> Problem:
    """The template with a boolean mask array on every observation, so that masks can differ."""
    observations = [
        dataclasses.replace(obs, mask=jnp.asarray(np.asarray(obs.valid))) for obs in template.observations
    ]
    return rebuild(template, observations)


def _check_members(template: Problem, members: Problem, size: int) -> None:
    """The data checks of `fk.Observation` and of each likelihood, on every member at once."""
    for j, (obs, stacked) in enumerate(zip(template.observations, members.observations)):
        valid = np.asarray(stacked.mask)
        empty = ~valid.reshape(size, -1).any(axis=1)
        if empty.any():
            raise ObservationError(
                f"fk.Batch.from_arrays: members {np.flatnonzero(empty)[:10].tolist()} use none of the points of "
                f"observation {j} ({obs.describe()}); unmask some points, or leave those members out"
            )
        error = None if stacked.error is None else np.broadcast_to(np.asarray(stacked.error), valid.shape)
        merged = dict(data=jnp.ravel(stacked.data), mask=jnp.ravel(stacked.mask))
        if error is not None:
            merged["error"] = jnp.asarray(error.ravel())
        try:
            flat = dataclasses.replace(obs, **merged)
            prepared = obs.family.prepare(flat)
        except ValueError as err:
            raise type(err)(f"fk.Batch.from_arrays, over all members: {err}") from err
        if obs.family.prepared_from_data or prepared is not obs.family:
            raise ValueError(
                f"fk.Batch.from_arrays cannot batch observation {j}: its likelihood "
                f"({obs.family.describe()}) is prepared from each member's data; build the members "
                "as problems and stack them with fk.batch"
            )


def from_arrays(template: Problem, where: Callable[[Problem], Any], values: Any) -> Any:
    """A batch whose members are `template` with the arrays `where(template)` set to rows of `values`.

    The way to build a survey of 10^5 objects without making 10^5 Python objects: give
    one problem as the template and the arrays that differ between members (the data,
    the errors, the masks, a model field), each with a leading axis of one row per
    member. Every other array of the template is shared (repeated for each member).
    Members may use different points (their masks differ); each member's loss counts its
    own points.

    Args:
        template: an `fk.Problem` with the structure and shapes of every member.
        where: a function of a problem returning the arrays to replace, as for
            `eqx.tree_at`: e.g. `lambda p: (p.observations[0].data, p.observations[0].error)`.
            A mask may be named even where the template has none.
        values: the new arrays, in the structure `where` returns, each of shape
            `(members,) + shape of the array it replaces`.

    Returns:
        An `fk.Batch` of `members` problems.

    Raises:
        TypeError: a template that is not an `fk.Problem`.
        BatchError: values of the wrong shapes, lengths or number.
        ObservationError: (a `ValueError`) data not finite or errors not positive at used
            points, or a member using no point: the same checks as for one problem.
        ValueError: a likelihood prepared from each member's data (`fk.MultivariateNormal`).

    Example:
        >>> template = fk.Problem(None, Stamp(data=images[0], error=errors[0], x=X, y=Y))
        >>> survey = fk.Batch.from_arrays(
        ...     template, lambda p: (p.observations[0].data, p.observations[0].error), (images, errors)
        ... )
    """
    from ._stack import Batch, BatchError

    if not isinstance(template, Problem):
        raise TypeError(
            f"fk.Batch.from_arrays needs an fk.Problem as the template, not a {type(template).__name__}"
        )
    template = _explicit_masks(template)
    targets = where(template)
    single = not isinstance(targets, tuple | list)
    targets = (targets,) if single else tuple(targets)
    rows = (values,) if single else tuple(values) if isinstance(values, tuple | list) else None
    if rows is None or len(rows) != len(targets):
        raise BatchError(
            f"where names {len(targets)} arrays; give as many values, in a tuple in the same order"
        )
    arrays = []
    for k, (target, value) in enumerate(zip(targets, rows)):
        value = np.asarray(value)
        if not eqx.is_array(target):
            raise BatchError(f"where's item {k} is {type(target).__name__}, not an array of the template")
        if value.ndim != np.ndim(target) + 1 or value.shape[1:] != np.shape(target):
            raise BatchError(
                f"values {k} has shape {value.shape}; it replaces an array of shape {np.shape(target)}, "
                f"so give shape (members,) + {np.shape(target)}"
            )
        if value.dtype == np.bool_ and jnp.result_type(target) != jnp.bool_:
            raise BatchError(f"values {k} is boolean where the template's array is {jnp.result_type(target)}")
        arrays.append(jnp.asarray(value, jnp.result_type(target)))
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) != 1 or 0 in sizes:
        raise BatchError(f"the values hold {sorted(sizes)} members; give every array one row per member")
    size = sizes.pop()
    shared, static = eqx.partition(template, eqx.is_array)
    repeated = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + jnp.shape(x)), shared)
    replaced = eqx.combine(eqx.tree_at(where, repeated, tuple(arrays) if not single else arrays[0]), static)
    _check_members(template, replaced, size)
    # What fk.Problem derives from the observations, for every member at once.
    valid = [obs.mask for obs in replaced.observations]
    stacked = replaced._stacked
    if template.vmapped:
        parts = [eqx.partition(obs, eqx.is_array) for obs in replaced.observations]
        stacked_arrays = jax.tree.map(lambda *xs: jnp.stack(xs, axis=1), *[a for a, _ in parts])
        stacked = eqx.combine(stacked_arrays, eqx.partition(template._stacked, eqx.is_array)[1])
        valid = jnp.stack(valid, axis=1)
    else:
        valid = tuple(valid)
    total = sum(int(np.size(obs.data)) for obs in template.observations)
    count = sum(np.asarray(v).reshape(size, -1).sum(axis=1) for v in jax.tree.leaves(valid))
    built = with_fields(
        replaced,
        _stacked=stacked,
        _valid=valid,
        _valid_index=jnp.broadcast_to(jnp.arange(total), (size, total)),
        _count=jnp.asarray(count, jnp.result_type(float)),
        n_data=total,
    )
    return Batch(built, size)
