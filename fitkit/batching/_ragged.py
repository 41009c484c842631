"""Members that use different numbers of points: padded to one shape, masked, and kept whole in one batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from ..observation import Observation
from ..problem import Problem

__all__ = ["dense", "pad_problems", "rebuild", "with_fields"]


def with_fields(problem: Problem, **changes) -> Problem:
    # Built field by field, as Problem.take does: __init__ would count the points of each member again.
    new = object.__new__(Problem)
    for field in dataclasses.fields(problem):
        object.__setattr__(new, field.name, changes.get(field.name, getattr(problem, field.name)))
    return new


def dense(problem: Problem) -> Problem:
    """`problem` with every point of its observations in its residual vector and its count as an array.

    The unused points' residuals are zeros already (the families fill them so), so the
    chi-squared, the nll and the minimum are unchanged; what changes is that members of
    different masks now have residual vectors of one length, and `loss` divides by each
    member's own count.
    """
    total = sum(int(np.size(obs.data)) for obs in problem.observations)
    return with_fields(
        problem,
        _valid_index=jnp.arange(total),
        _count=jnp.asarray(float(problem.n_data)),
        n_data=total,
    )


def rebuild(problem: Problem, observations: Sequence[Observation] | None = None) -> Problem:
    """`problem` built again through `fk.Problem` (with other `observations` when given): a member cut
    out of a dense batch becomes the problem it stands for, with its own count of points."""
    return problem.with_observations(problem.observations if observations is None else observations)


def _padded_observation(obs: Observation, shape: tuple[int, ...]) -> Observation:
    """`obs` padded to the data shape `shape`: data 0, error 1, unused (masked) in the pads; every
    other field that starts with the data's shape repeats its edge values, so predictions stay finite."""
    own = np.shape(obs.data)
    widths = [(0, target - size) for size, target in zip(own, shape)]
    changes = {}
    for field in dataclasses.fields(obs):
        value = getattr(obs, field.name)
        if field.name in ("data", "mask", "likelihood") or not hasattr(value, "shape"):
            continue
        if np.shape(value)[: len(own)] == own and np.ndim(value) >= len(own):
            extra = [(0, 0)] * (np.ndim(value) - len(own))
            mode = {"constant_values": 1.0} if field.name == "error" else {}
            padded = np.pad(np.asarray(value), widths + extra, mode="constant" if mode else "edge", **mode)
            changes[field.name] = jnp.asarray(padded)
    valid = np.asarray(obs.valid)
    data = np.where(valid, np.asarray(obs.data), 0.0)
    changes["data"] = jnp.asarray(np.pad(data, widths))
    changes["mask"] = jnp.asarray(np.pad(valid, widths, constant_values=False))
    return dataclasses.replace(obs, **changes)


def pad_problems(problems: Sequence[Problem]) -> list[Problem]:
    """Each problem with its observations padded to the largest shape among the members.

    Raises:
        ValueError: members whose observations differ in number or in the number of dimensions.
    """
    counts = {len(p.observations) for p in problems}
    if len(counts) != 1:
        raise ValueError(
            f"the problems have different numbers of observations ({sorted(counts)}); pad cannot fix that"
        )
    shapes = []
    for j in range(counts.pop()):
        ndims = {np.ndim(p.observations[j].data) for p in problems}
        if len(ndims) != 1:
            raise ValueError(f"observation {j} has data of {sorted(ndims)} dimensions in different problems")
        shapes.append(
            tuple(int(s) for s in np.max([np.shape(p.observations[j].data) for p in problems], axis=0))
        )
    padded = []
    for problem in problems:
        observations = [_padded_observation(obs, shape) for obs, shape in zip(problem.observations, shapes)]
        padded.append(rebuild(problem, observations))
    return padded
