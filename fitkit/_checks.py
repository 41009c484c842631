"""Argument checks shared by the engines, raised before anything is compiled."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["refuse_batch", "whole"]


def whole(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as an int, or a `ValueError` naming `name` unless it is a whole number >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def refuse_batch(problem: Any, what: str) -> None:
    """A `TypeError` when `problem` is an `fk.Batch` and `what` (an engine's name) takes one problem."""
    from .batching import Batch  # the batching package imports the engines

    if isinstance(problem, Batch):
        raise TypeError(
            f"{what} does not take a batch yet (fk.solve, fk.fit and fk.covariance do); call {what} "
            "on one member, batch.member(i), or loop over the members"
        )
