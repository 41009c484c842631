"""A batch of problems of one structure: their arrays stacked on a leading axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..problem import Problem
from ._arrays import from_arrays
from ._ragged import dense, pad_problems, rebuild

__all__ = ["Batch", "BatchError", "batch", "stack_params", "batch_size_of", "checked_starts"]


class BatchError(ValueError):
    """Problems or params that cannot be stacked into one batch (the message says where they differ)."""


class Batch(eqx.Module):
    """Many problems of one structure as one: every array of the `Problem` has a leading batch axis.

    Engines `vmap` over that axis: `fk.solve(batch, starts)` fits every member in one compiled
    loop. Build one with `fk.batch([...])`.

    Attributes:
        problem: the stacked `fk.Problem` (arrays with a leading axis of length `size`).
        size: the number of members.

    Example:
        >>> survey = fk.batch([fk.Problem(model, Peak(data=d, error=e, x=x)) for d, e in sets])
        >>> res = fk.solve(survey, starts)   # starts: params with a leading axis
        >>> res.valid.mean(), res.params["amp"].shape
    """

    problem: Problem
    size: int = eqx.field(static=True)

    def __len__(self) -> int:
        return self.size

    def member(self, index: int) -> Problem:
        """Member `index` as an ordinary `fk.Problem` (with its own count of used points)."""
        if not -self.size <= index < self.size:
            raise IndexError(f"member {index} of a batch of {self.size}")
        one = jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, self.problem)
        return one if one._count is None else rebuild(one)

    @classmethod
    def from_arrays(cls, template: Problem, where, values) -> Batch:
        """A batch from one template problem and the arrays that differ per member (see `fitkit.batching.from_arrays`)."""
        return from_arrays(template, where, values)


_PAD_HINT = (
    "; members whose data differ in size can be padded with masked points: fk.batch(problems, pad=True)"
)


def _describe(leaf) -> str:
    if eqx.is_array(leaf):
        return f"an array of shape {tuple(np.shape(leaf))} and dtype {jnp.result_type(leaf)}"
    return f"{type(leaf).__name__} {leaf!r}"[:120]


def _difference(first, other, index: int) -> str:
    """Where `other` differs from `first` in structure, shape, dtype or a static value, in words."""
    a, tree_a = jax.tree_util.tree_flatten_with_path(first)
    b, tree_b = jax.tree_util.tree_flatten_with_path(other)
    for (path_a, leaf_a), (path_b, leaf_b) in zip(a, b):
        where = jax.tree_util.keystr(path_a)
        if path_a != path_b:
            return f"problem {index} has {jax.tree_util.keystr(path_b)} where problem 0 has {where}"
        arrays = eqx.is_array(leaf_a), eqx.is_array(leaf_b)
        if arrays != (True, True):
            same = arrays == (False, False) and bool(eqx.tree_equal(leaf_a, leaf_b))
            if not same:
                return (
                    f"problem {index} has {_describe(leaf_b)} at {where}; problem 0 has {_describe(leaf_a)}"
                )
        elif np.shape(leaf_a) != np.shape(leaf_b) or jnp.result_type(leaf_a) != jnp.result_type(leaf_b):
            return f"problem {index} has {_describe(leaf_b)} at {where}; problem 0 has {_describe(leaf_a)}"
    if len(a) != len(b) or tree_a != tree_b:
        return f"problem {index} has another structure than problem 0 (its model, observations or options differ)"
    return ""


def _stacked(*leaves):
    # On the host, then one copy to the device: jnp.stack of 10^4 arrays would compile a program
    # whose compilation grows with their number.
    return jnp.asarray(np.stack([np.asarray(x) for x in leaves]))


def _refusal(first: Problem, other: Problem, index: int) -> BatchError:
    difference = _difference(first, other, index) or "structures differ"
    if "shape" in difference and ".observations" in difference:
        difference += _PAD_HINT
    return BatchError("fk.batch: " + difference)


def batch(problems: Sequence[Problem], *, pad: bool = False) -> Batch:
    """Stack problems of one structure into a `Batch` (their arrays on a new leading axis).

    The members may differ in their arrays (data, errors, masks, the model's array fields)
    but not in structure, shapes or anything static (the model's class, its non-array
    fields, the likelihood, priors, bounds, ties). Members that use different numbers of
    points (other masks, or with `pad=True` other data lengths) are kept whole: each
    member's loss counts its own points.

    Args:
        problems: the `fk.Problem`s, at least one.
        pad: pad observations of different sizes to the largest, with masked points
            (data 0, error 1, the other data-shaped fields repeating their last value):
            light curves or spectra of different lengths in one batch.

    Returns:
        A `Batch` of `len(problems)` members.

    Raises:
        TypeError: an item that is not an `fk.Problem`.
        BatchError: (a `ValueError`) problems that differ in structure: the message names
            the first member and field that differ.

    Example:
        >>> survey = fk.batch([make_problem(seed) for seed in range(1000)])
    """
    problems = list(problems)
    if not problems:
        raise BatchError("fk.batch needs at least one problem")
    for index, problem in enumerate(problems):
        if not isinstance(problem, Problem):
            raise TypeError(f"fk.batch: item {index} is a {type(problem).__name__}, not an fk.Problem")
    if pad:
        try:
            problems = pad_problems(problems)
        except ValueError as err:
            raise BatchError(f"fk.batch(pad=True): {err}") from err
    if len({problem.n_data for problem in problems}) > 1:
        problems = [dense(problem) for problem in problems]
    first_arrays, first_static = eqx.partition(problems[0], eqx.is_array)
    parts = [first_arrays]
    for index, problem in enumerate(problems[1:], start=1):
        arrays, static = eqx.partition(problem, eqx.is_array)
        if jax.tree.structure(arrays) != jax.tree.structure(first_arrays) or not eqx.tree_equal(
            static, first_static
        ):
            raise _refusal(problems[0], problem, index)
        for leaf, reference in zip(jax.tree.leaves(arrays), jax.tree.leaves(first_arrays)):
            if np.shape(leaf) != np.shape(reference) or jnp.result_type(leaf) != jnp.result_type(reference):
                raise _refusal(problems[0], problem, index)
        parts.append(arrays)
    stacked = jax.tree.map(_stacked, *parts)
    return Batch(eqx.combine(stacked, first_static), len(problems))


def stack_params(params: Sequence[Any]) -> Any:
    """Params of one structure stacked on a leading axis (the starts of a batched fit).

    Raises:
        BatchError: params of different structure or shapes.
    """
    params = list(params)
    if not params:
        raise BatchError("stack_params needs at least one params pytree")
    structure = jax.tree.structure(params[0])
    shapes = [np.shape(x) for x in jax.tree.leaves(params[0])]
    for index, p in enumerate(params[1:], start=1):
        if jax.tree.structure(p) != structure or [np.shape(x) for x in jax.tree.leaves(p)] != shapes:
            raise BatchError(f"params {index} differ in structure or shapes from params 0")
    return jax.tree.map(_stacked, *params)


def batch_size_of(params: Any, what: str = "the starts") -> int:
    """The common leading length of every leaf of `params`.

    Raises:
        BatchError: a leaf without a leading axis, or leaves of different lengths.
    """
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise BatchError(f"{what} hold no arrays")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise BatchError(
            f"{what} must have one leading batch axis on every leaf, found leading lengths {sorted(map(str, sizes))}"
        )
    return sizes.pop()


def checked_starts(batch: Batch, starts: Any, engine: str) -> tuple[Problem, Any, Any]:
    """Check a batch's starts before compiling; `(member 0, its start, the parametrisation or None)`.

    Raises:
        BatchError: starts of the wrong length or structure.
        ValueError: starts that are not finite or on or outside the bounds, or ties declared
            on the problem (`engine` names the call in the message).
    """
    size = batch_size_of(starts)
    if size != batch.size:
        raise BatchError(f"the starts hold {size} members, the batch {batch.size}: give one start per member")
    problem0 = batch.member(0)
    start0 = jax.tree.map(lambda x: x[0], starts)
    problem0.check(start0)
    rows = np.concatenate([np.asarray(x).reshape(size, -1) for x in jax.tree.leaves(starts)], axis=1)
    finite = np.all(np.isfinite(rows), axis=1)
    if not finite.all():
        raise ValueError(f"the starts of members {np.flatnonzero(~finite)[:10].tolist()} are not finite")
    if problem0.ties:
        raise ValueError(f"{engine} on a batch does not yet handle ties; run it on the members one by one")
    parametrisation = problem0.parametrisation(start0) if problem0.declares() else None
    if parametrisation is not None:
        lower, upper = np.asarray(parametrisation.lower), np.asarray(parametrisation.upper)
        outside = np.any((rows <= lower) | (rows >= upper), axis=1)
        if outside.any():
            raise ValueError(
                f"the starts of members {np.flatnonzero(outside)[:10].tolist()} are on or outside the bounds; "
                "start every member strictly inside them"
            )
    return problem0, start0, parametrisation
