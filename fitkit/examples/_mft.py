"""Matrix Fourier transforms from a pupil to a detector in angle, and pixel binning.

A matrix Fourier transform (MFT) evaluates the Fraunhofer far field at any
grid of angles with two small matrix products, `B_y @ field @ B_x.T`, rather
than an FFT of a padded array. With the normalisation used here the far-field
intensity is in units of the pupil's power per detector pixel: a pupil field
with `sum |E|^2 = 1` gives a PSF that sums to 1 over a Nyquist-sampled
detector large enough to hold all the light.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

__all__ = ["mft_matrix", "mft", "bin_pixels"]


def mft_matrix(
    sky_pupil: Float[Array, "m n"],
    x: Float[Array, " n"],
    wavelength: Float[Array, ""],
    tilt: Float[Array, ""],
    norm: Float[Array, ""],
) -> Complex[Array, "m n"]:
    """One axis of the MFT: `norm * exp(-2 pi i x_k (theta_j - tilt) / wavelength)`.

    Args:
        sky_pupil: the fixed outer product `theta_j * x_k` (radians times metres).
        x: pupil coordinates along the axis, in metres.
        wavelength: in metres.
        tilt: the source's angle along the axis, in radians: the PSF centre
            moves to `theta = tilt` (the same as a pupil phase ramp).
        norm: `sqrt(dx * dtheta)`, the grid steps in metres and radians.

    Returns:
        Complex matrix shaped `(len(theta), len(x))`.
    """
    phase = (-2 * math.pi / wavelength) * (sky_pupil - tilt * x[None, :])
    return (norm / jnp.sqrt(wavelength)) * jnp.exp(1j * phase)


def mft(
    field: Complex[Array, "n n"],
    sky_pupil: Float[Array, "m n"],
    x: Float[Array, " n"],
    wavelength: Float[Array, ""],
    position: Float[Array, "2"],
    norm: Float[Array, ""],
) -> Complex[Array, "m m"]:
    """The far field of a square pupil `field` (rows `y`, columns `x`) on a square detector.

    Args:
        field: complex pupil field, axis 0 along `y`, axis 1 along `x`.
        sky_pupil, x, wavelength, norm: as in `mft_matrix`.
        position: the source's `(x, y)` angle in radians.

    Returns:
        The complex detector field, axis 0 along `y`, axis 1 along `x`.
    """
    b_x = mft_matrix(sky_pupil, x, wavelength, position[0], norm)
    b_y = mft_matrix(sky_pupil, x, wavelength, position[1], norm)
    return (b_y @ field) @ b_x.T


def bin_pixels(image: Float[Array, "... a a"], factor: int) -> Float[Array, "... b b"]:
    """Sum `factor x factor` blocks of the last two axes (oversampled image to detector pixels).

    Example:
        >>> bin_pixels(jnp.ones((4, 4)), 2)
        Array([[4., 4.],
               [4., 4.]], dtype=float32)
    """
    if factor == 1:
        return image
    *batch, ny, nx = image.shape
    blocks = image.reshape(*batch, ny // factor, factor, nx // factor, factor)
    return blocks.sum(axis=(-3, -1))
