"""Zernike polynomials in Noll's ordering, evaluated on a grid with NumPy.

The basis is built once, when an optical model is constructed, so it is plain
NumPy in float64; the model stores it as a JAX array of the default dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["noll_to_nm", "zernike", "zernike_basis"]


def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order `n` and signed azimuthal order `m` of Noll index `j` (1-based).

    Noll's convention: within a radial order, `|m|` increases; for `m != 0` an
    even `j` is the cosine term (`m > 0`) and an odd `j` the sine term (`m < 0`).

    Raises:
        ValueError: `j` is not a positive integer.

    Example:
        >>> [noll_to_nm(j) for j in (1, 2, 3, 4, 5, 6)]
        [(0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2)]
    """
    if int(j) != j or j < 1:
        raise ValueError(f"Noll indices start at 1, got {j!r}")
    j = int(j)
    n = 0
    while j > (n + 1) * (n + 2) // 2:
        n += 1
    k = j - n * (n + 1) // 2 - 1  # position within the radial order
    m = n % 2 + 2 * ((k + (n + 1) % 2) // 2)
    return n, (m if m == 0 or j % 2 == 0 else -m)


def _radial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    m = abs(m)
    out = np.zeros_like(rho)
    for s in range((n - m) // 2 + 1):
        c = (-1) ** s * math.factorial(n - s)
        c /= math.factorial(s) * math.factorial((n + m) // 2 - s) * math.factorial((n - m) // 2 - s)
        out += c * rho ** (n - 2 * s)
    return out


def zernike(j: int, rho: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Noll-normalised Zernike `j` at polar coordinates (`rho` in units of the radius).

    The normalisation makes the RMS over the unit disc exactly 1 (continuous
    integral), so a coefficient is the RMS of its term. Values outside the disc
    are the polynomial continued, not zero: the pupil's transmission decides
    where light passes.
    """
    n, m = noll_to_nm(j)
    norm = math.sqrt(n + 1) if m == 0 else math.sqrt(2 * (n + 1))
    angular = 1.0 if m == 0 else (np.cos(m * phi) if m > 0 else np.sin(-m * phi))
    return norm * _radial(n, m, rho) * angular


def zernike_basis(noll: tuple[int, ...], x: np.ndarray, radius: float) -> np.ndarray:
    """The Zernikes `noll` on the square grid `x` (1-D coordinates, same units as `radius`).

    Returns:
        Array shaped `(len(noll), len(x), len(x))`; axis 1 is `y`, axis 2 is `x`.

    Example:
        >>> x = np.linspace(-0.6, 0.6, 64)
        >>> zernike_basis((4, 5, 6), x, 0.6).shape
        (3, 64, 64)
    """
    yy, xx = np.meshgrid(x, x, indexing="ij")
    rho = np.hypot(xx, yy) / radius
    phi = np.arctan2(yy, xx)
    return np.stack([zernike(j, rho, phi) for j in noll])
