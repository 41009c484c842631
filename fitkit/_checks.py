"""Argument checks shared by the engines, raised before anything is compiled."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["whole"]


def whole(value: Any, name: str, minimum: int = 1) -> int:
    """`value` as an int, or a `ValueError` naming `name` unless it is a whole number >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)
