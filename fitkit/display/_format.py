"""Numbers in words: values with the digits their error justifies, everything else to six digits."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["number", "significant", "value_error", "full"]

# Significant digits kept of an error: two, as the PDG and iminuit quote them (one
# digit rounds 0.15 to 0.2, a third digit is noise for anything but huge samples).
ERROR_DIGITS = 2
# Fixed-point notation inside this range of powers of ten, scientific outside it.
FIXED_RANGE = (-5, 6)
# The most decimals a value of order one is written with before it turns scientific.
MAX_DECIMALS = 12


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def number(x: Any, digits: int = 6) -> str:
    """`x` to `digits` significant digits (`%.6g`); `""` for None, `"nan"`/`"inf"` as Python writes them.

    Example:
        >>> number(3.14159265)
        '3.14159'
    """
    if x is None:
        return ""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{value:.{digits}g}"


def full(x: Any) -> str:
    """`x` to every digit a float64 holds (`%.17g`): what a display keeps for a reader to copy."""
    return "" if x is None else f"{float(x):.17g}"


def significant(x: float, digits: int = ERROR_DIGITS) -> str:
    """`x` rounded to `digits` significant digits, in fixed point where that is short.

    Example:
        >>> significant(0.012345)
        '0.012'
    """
    if not _finite(x) or float(x) == 0.0:
        return number(x)
    place = math.floor(math.log10(abs(float(x)))) - digits + 1
    if abs(round(float(x), -place)) >= 10.0 ** (place + digits):  # 0.0996 -> 0.10, not 0.100
        place += 1
    if FIXED_RANGE[0] <= place and place + digits <= FIXED_RANGE[1]:
        # round() first: a format with no decimals would print digits beyond the significant ones.
        return f"{round(float(x), -place):.{max(0, -place)}f}"
    return f"{float(x):.{digits - 1}e}"


def value_error(value: float, error: float | None) -> tuple[str, str]:
    """`value` and `error`, the error to two significant digits and the value to the same decimal place.

    A value without a usable error (None, NaN, zero, negative) gets six significant digits.

    Args:
        value: the estimate.
        error: its standard deviation, or None.

    Returns:
        `(value_text, error_text)`; `error_text` is `""` for a missing error and the
        error as written (`"nan"`) when it is not a positive number.

    Example:
        >>> value_error(1.23456, 0.0123)
        ('1.235', '0.012')
        >>> value_error(123456789.0, 1234.0)
        ('1.234568e+08', '1.2e+03')
    """
    if not _finite(value) or not _finite(error) or float(error) <= 0.0:
        return number(value), ("" if error is None else number(error))
    value, error = float(value), float(error)
    place = math.floor(math.log10(error)) - ERROR_DIGITS + 1
    # Rounding can carry into a new digit (0.0996 -> 0.10): quote it at the place it now has.
    if round(error, -place) >= 10.0 ** (place + ERROR_DIGITS):
        place += 1
    top = math.floor(math.log10(max(abs(value), error)))
    if FIXED_RANGE[0] <= place and top < FIXED_RANGE[1]:
        decimals = max(0, -place)
        return f"{round(value, -place):.{decimals}f}", f"{round(error, -place):.{decimals}f}"
    if 0 <= -place <= MAX_DECIMALS and FIXED_RANGE[0] <= top < FIXED_RANGE[1]:
        # A value of order one with a tiny error reads best as lmfit writes it: 7.0174716 +/- 9.7e-06.
        return f"{round(value, -place):.{-place}f}", f"{error:.{ERROR_DIGITS - 1}e}"
    mantissa = max(0, math.floor(math.log10(abs(value))) - place) if value else 0
    return f"{value:.{mantissa}e}", f"{error:.{ERROR_DIGITS - 1}e}"
