"""A pure-JAX Fourier-optics model of the zodiax tutorial's hierarchical problem.

One telescope images one star through three filters. The wavefront error (7
Zernike coefficients) is shared by every image, while each filter has its own
star position and flux: 16 parameters, tied together hierarchically. This is
the problem of sections 4-7 of the zodiax "Optimising Models" tutorial, built
here without dLux:

- `Optics`: a 1.2 m pupil sampled on `wf_npixels` pixels, with a 20% central
  obscuration and three 5 cm spider vanes; a basis of Zernikes (Noll 4-10)
  whose coefficients are in metres of optical path; matrix-Fourier-transform
  propagation to a 32x32 detector of 0.075 arcsec pixels.
- `FilterImage`: one filter's image; `predict(params, model)` takes positions
  in arcsec, fluxes as log10 photons and the wavefront error in nm.
- `make_problem(seed)`: simulated data (Poisson plus read noise, averaged over
  1000 frames), the true params and the tutorial's initial guess.

Why the pupil is not centrosymmetric: the PSF's first-order response to an
aberration `Z` at zero wavefront error is `-2 Im(conj(A^) FT[A Z])`, with `A`
the real pupil transmission and `A^` its Fourier transform. If `A` is symmetric
under a 180 degree rotation, `A^` is real, and for an even aberration (defocus,
astigmatism) so is `FT[A Z]`: the derivative vanishes at every pixel and the
Fisher matrix at the tutorial's start (zero wavefront error) is singular. The
three vanes here point at 90, 210 and 330 degrees (a tripod has no 180 degree
symmetry) and each is displaced sideways by `spider_offset` (tangential vanes,
as used to hold real secondary mirrors), so the pupil has no point symmetry
for any vane count. `n_spiders=4, spider_offset=0` (a cross) or `n_spiders=0`
gives a centrosymmetric pupil, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..module import Module
from ..observation import Observation
from ..problem import Problem
from ._mft import bin_pixels, mft
from ._zernike import zernike_basis

__all__ = [
    "ARCSEC",
    "FILTERS",
    "Optics",
    "FilterImage",
    "pupil_transmission",
    "filter_image",
    "take_image",
    "simulate_images",
    "true_params",
    "initial_params",
    "make_problem",
]

#: One arcsecond in radians.
ARCSEC = math.pi / (180 * 3600)

#: The tutorial's three (arbitrary) filters: 5 wavelengths each, in microns.
FILTERS = {
    "blue": np.linspace(1.0, 1.2, 5),
    "green": np.linspace(1.2, 1.4, 5),
    "red": np.linspace(1.4, 1.6, 5),
}


def _coverage(distance: np.ndarray, step: float, soft: bool) -> np.ndarray:
    """Fraction of a pixel inside a shape, from the signed distance to its edge (positive inside).

    The soft version is the area-coverage approximation of a straight edge
    across a square pixel; it removes the staircase of a hard-edged pupil, so
    the PSF changes smoothly with the geometry.
    """
    if soft:
        return np.clip(distance / step + 0.5, 0.0, 1.0)
    return (distance >= 0).astype(float)


def pupil_transmission(
    npixels: int,
    diameter: float = 1.2,
    obscuration: float = 0.2,
    n_spiders: int = 3,
    spider_width: float = 0.05,
    spider_offset: float = 0.06,
    spider_angle: float = 90.0,
    soft_edges: bool = True,
) -> np.ndarray:
    """Amplitude transmission of an obscured circular pupil with spider vanes.

    Args:
        npixels: pixels across the square grid, which spans exactly `diameter`.
        diameter: outer diameter, in metres.
        obscuration: diameter of the central obscuration as a fraction of `diameter`.
        n_spiders: number of vanes, equally spaced in angle.
        spider_width: vane width, in metres.
        spider_offset: sideways displacement of each vane from the radial
            direction, in metres (0: radial vanes meeting at the centre).
            Keep it below the obscuration's radius so the vanes reach it.
        spider_angle: direction of the first vane, in degrees from `+x`.
        soft_edges: anti-alias the edges (pixel area coverage) instead of
            thresholding pixel centres.

    Returns:
        Array `(npixels, npixels)` in `[0, 1]`, axis 0 along `y`, not normalised.

    Raises:
        ValueError: a size is out of range.

    Example:
        >>> pupil_transmission(64).shape
        (64, 64)
    """
    if not 0 <= obscuration < 1:
        raise ValueError(f"obscuration must be a fraction of the diameter in [0, 1), got {obscuration}")
    if n_spiders < 0 or spider_width < 0:
        raise ValueError(f"n_spiders and spider_width must be >= 0, got {n_spiders} and {spider_width}")
    step = diameter / npixels
    x = (np.arange(npixels) - (npixels - 1) / 2) * step
    yy, xx = np.meshgrid(x, x, indexing="ij")
    r = np.hypot(xx, yy)
    radius = diameter / 2
    amplitude = _coverage(radius - r, step, soft_edges)
    if obscuration > 0:
        amplitude = amplitude * (1 - _coverage(obscuration * radius - r, step, soft_edges))
    for i in range(n_spiders):
        angle = math.radians(spider_angle + 360.0 * i / n_spiders)
        along = xx * math.cos(angle) + yy * math.sin(angle)
        across = -xx * math.sin(angle) + yy * math.cos(angle) - spider_offset
        # A vane is a half-strip: from its foot point outwards along its direction.
        vane = _coverage(spider_width / 2 - np.abs(across), step, soft_edges)
        vane = vane * _coverage(along, step, soft_edges)
        amplitude = amplitude * (1 - vane)
    return amplitude


class Optics(Module):
    """A telescope imaging through a pupil onto a pixelated detector, by MFT.

    The pupil field at wavelength `lambda` is `A exp(2 pi i OPD / lambda)`,
    with `A` the transmission normalised so that `sum A^2 = 1` and
    `OPD = coefficients @ basis` in metres. The detector samples the far
    field at pixel centres `(j - (psf_npixels - 1) / 2) * psf_pixel_scale`
    (so for an even size the optical axis falls between the central pixels),
    with `oversample^2` sub-pixels summed into each pixel. A source at angle
    `position` (radians, `(x, y)`) puts its PSF centre at that angle.

    Args:
        wf_npixels: pupil pixels across `diameter`.
        diameter: pupil diameter, in metres.
        obscuration, n_spiders, spider_width, spider_offset, spider_angle, soft_edges: the
            pupil's geometry, see `pupil_transmission`.
        noll: Noll indices of the Zernike basis, RMS-normalised over the
            full disc of radius `diameter / 2`.
        coefficients: initial Zernike coefficients in metres (default zeros).
        psf_npixels: detector pixels across.
        psf_pixel_scale: detector pixel size, in arcsec.
        oversample: sub-pixels per detector pixel along each axis.
        filters: mapping from filter name to its wavelengths in microns
            (default `FILTERS`: blue, green and red, 5 wavelengths each).

    Raises:
        ValueError: a size is out of range, or `coefficients` does not match `noll`.
        TypeError: `filters` is not a mapping of names to wavelength arrays.

    Example:
        >>> optics = Optics(wf_npixels=64)
        >>> psf = optics.psf("green")              # centred, unit total flux
        >>> psf.shape, float(psf.sum()) < 1        # a 32x32 detector clips the wings
        ((32, 32), True)
        >>> tilted = optics.propagate(1.2e-6 * jnp.ones(1), jnp.array([0.1, 0.0]) * ARCSEC)
    """

    transmission: Float[Array, "n n"]
    basis: Float[Array, "k n n"]
    coefficients: Float[Array, " k"]
    filters: dict[str, Float[Array, " w"]]
    x: Float[Array, " n"]
    sky_pupil: Float[Array, "m n"]
    wf_npixels: int = eqx.field(static=True)
    diameter: float = eqx.field(static=True)
    psf_npixels: int = eqx.field(static=True)
    psf_pixel_scale: float = eqx.field(static=True)
    oversample: int = eqx.field(static=True)
    noll: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        wf_npixels: int = 256,
        diameter: float = 1.2,
        obscuration: float = 0.2,
        n_spiders: int = 3,
        spider_width: float = 0.05,
        spider_offset: float = 0.06,
        spider_angle: float = 90.0,
        soft_edges: bool = True,
        noll: Sequence[int] = tuple(range(4, 11)),
        coefficients: Any = None,
        psf_npixels: int = 32,
        psf_pixel_scale: float = 0.075,
        oversample: int = 1,
        filters: Mapping[str, Any] | None = None,
    ):
        for name, value, least in (
            ("wf_npixels", wf_npixels, 2),
            ("psf_npixels", psf_npixels, 1),
            ("oversample", oversample, 1),
        ):
            if not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if diameter <= 0 or psf_pixel_scale <= 0:
            raise ValueError(
                f"diameter and psf_pixel_scale must be positive, got {diameter} and {psf_pixel_scale}"
            )
        filters = FILTERS if filters is None else filters
        if not isinstance(filters, Mapping) or not all(isinstance(k, str) for k in filters):
            raise TypeError("filters must be a dict from filter name to wavelengths in microns")
        filters = {name: jnp.atleast_1d(jnp.asarray(w, float)) for name, w in filters.items()}
        for name, w in filters.items():
            if w.ndim != 1 or not bool(jnp.all(w > 0)):
                raise ValueError(f"filter {name!r}: give a 1-D array of positive wavelengths in microns")
        noll = tuple(int(j) for j in noll)
        transmission = pupil_transmission(
            wf_npixels,
            diameter,
            obscuration,
            n_spiders,
            spider_width,
            spider_offset,
            spider_angle,
            soft_edges,
        )
        total = np.sum(transmission**2)
        if total == 0:
            raise ValueError("the pupil lets no light through; check obscuration and spider_width")
        step = diameter / wf_npixels
        x = (np.arange(wf_npixels) - (wf_npixels - 1) / 2) * step
        n_sky = psf_npixels * oversample
        theta = (np.arange(n_sky) - (n_sky - 1) / 2) * (psf_pixel_scale * ARCSEC / oversample)
        if coefficients is None:
            coefficients = np.zeros(len(noll))
        coefficients = jnp.asarray(coefficients, float)
        if coefficients.shape != (len(noll),):
            raise ValueError(
                f"coefficients has shape {coefficients.shape}; give one per Zernike, shape ({len(noll)},)"
            )
        self.transmission = jnp.asarray(transmission / np.sqrt(total), float)
        self.basis = jnp.asarray(zernike_basis(noll, x, diameter / 2), float)
        self.coefficients = coefficients
        self.filters = filters
        self.x = jnp.asarray(x, float)
        # The fixed part of both MFT matrices; wavelength and tilt enter per call.
        self.sky_pupil = jnp.asarray(np.outer(theta, x), float)
        self.wf_npixels = int(wf_npixels)
        self.diameter = float(diameter)
        self.psf_npixels = int(psf_npixels)
        self.psf_pixel_scale = float(psf_pixel_scale)
        self.oversample = int(oversample)
        self.noll = noll

    @property
    def opd(self) -> Float[Array, "n n"]:
        """The optical path difference over the pupil, in metres."""
        return jnp.tensordot(self.coefficients, self.basis, axes=1)

    def propagate_mono(
        self, wavelength: Float[Array, ""], position: Float[Array, "2"] = (0.0, 0.0)
    ) -> Float[Array, "m m"]:
        """The PSF at one `wavelength` (metres) of a source at `position` (radians, `(x, y)`).

        The image is in units of the source's flux: it sums to 1 when the
        detector catches all the light.
        """
        return self.propagate(jnp.reshape(wavelength, (1,)), position)

    def propagate(
        self,
        wavelengths: Float[Array, " w"],
        position: Float[Array, "2"] = (0.0, 0.0),
        weights: Float[Array, " w"] | None = None,
    ) -> Float[Array, "m m"]:
        """The polychromatic PSF of a source at `position`, on the detector.

        Args:
            wavelengths: in metres.
            position: the source's `(x, y)` angle in radians.
            weights: relative spectral weights (default equal); normalised to sum to 1.

        Returns:
            Image `(psf_npixels, psf_npixels)`, axis 0 along `y`, summing to 1
            when the detector catches all the light.
        """
        wavelengths = jnp.atleast_1d(jnp.asarray(wavelengths, self.x.dtype))
        position = jnp.asarray(position, self.x.dtype)
        if weights is None:
            weights = jnp.ones(wavelengths.shape, self.x.dtype)
        weights = weights / jnp.sum(weights)
        opd = self.opd
        step = self.diameter / self.wf_npixels
        norm = math.sqrt(step * self.psf_pixel_scale * ARCSEC / self.oversample)

        def intensity(wavelength):
            field = self.transmission * jnp.exp((2j * math.pi / wavelength) * opd)
            far = mft(field, self.sky_pupil, self.x, wavelength, position, norm)
            # real^2 + imag^2 rather than abs()^2: abs has no derivative at 0.
            return jnp.square(far.real) + jnp.square(far.imag)

        psf = jnp.tensordot(weights, jax.vmap(intensity)(wavelengths), axes=1)
        return bin_pixels(psf, self.oversample)

    def psf(self, filter: str, position: Float[Array, "2"] = (0.0, 0.0)) -> Float[Array, "m m"]:
        """The PSF through `filter` (a key of `filters`) of a source at `position` (radians).

        Raises:
            KeyError: unknown filter; the message lists the known ones.
        """
        return self.propagate(1e-6 * self.wavelengths(filter), position)

    def wavelengths(self, filter: str) -> Float[Array, " w"]:
        """The wavelengths of `filter`, in microns.

        Raises:
            KeyError: unknown filter; the message lists the known ones.
        """
        if filter not in self.filters:
            raise KeyError(f"unknown filter {filter!r}; this model has {sorted(self.filters)}")
        return self.filters[filter]


def filter_image(params: Mapping[str, Any], model: Optics, filter: str) -> Float[Array, "m m"]:
    """The tutorial's forward model of one filter's image.

    Args:
        params: `{"position": {filter: (x, y) arcsec}, "flux": {filter: log10
            photons}, "wfe": Zernike coefficients in nm}`.
        model: the `Optics`.
        filter: which filter.

    Returns:
        The expected photons per pixel.
    """
    wavelengths = 1e-6 * model.wavelengths(filter)
    position = ARCSEC * params["position"][filter]
    flux = 10.0 ** params["flux"][filter]
    optics = model.set("coefficients", 1e-9 * params["wfe"])
    return flux * optics.propagate(wavelengths, position)


class FilterImage(Observation):
    """One filter's image of the star: the tutorial's `Observation`.

    Attributes:
        filter: the filter's name, a key of the model's `filters`.
        data, error, mask: as in `fk.Observation`.

    Example:
        >>> obs = FilterImage(data=image, error=sigma, filter="blue", mask="invalid")
        >>> obs.predict(params, optics).shape
        (32, 32)
    """

    filter: str = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.filter, str):
            raise TypeError(f"filter must be a filter name (str), got {type(self.filter).__name__}")

    def predict(self, params: Mapping[str, Any], model: Optics) -> Float[Array, "m m"]:
        """Photons per pixel: position in arcsec, flux as log10 photons, wfe in nm."""
        return filter_image(params, model, self.filter)

    def estimate_position(self, model: Optics) -> Float[Array, "2"]:
        """The brightest pixel's `(x, y)` offset from the detector's centre, in arcsec.

        A rough initial guess (the tutorial's `est_pos`): it counts from pixel
        `n / 2`, half a pixel off the optical axis of an even detector.
        """
        data = np.asarray(self.data)
        iy, ix = np.unravel_index(np.nanargmax(data), data.shape)
        offset = np.array([ix - data.shape[1] / 2, iy - data.shape[0] / 2])
        return jnp.asarray(offset * model.psf_pixel_scale, float)


def take_image(psf: Float[Array, "..."], key: PRNGKeyArray, read_noise: float = 10.0) -> Float[Array, "..."]:
    """One noisy frame: Poisson photon counts of `psf` plus Gaussian read noise (the tutorial's)."""
    k_photons, k_read = jr.split(key)
    photons = jr.poisson(k_photons, psf).astype(psf.dtype)
    return photons + read_noise * jr.normal(k_read, psf.shape, psf.dtype)


@eqx.filter_jit
def simulate_images(
    psfs: Float[Array, "..."], key: PRNGKeyArray, n_frames: int = 1000, read_noise: float = 10.0
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """Average `n_frames` noisy frames of `psfs`: returns `(mean, std / sqrt(n_frames))`."""
    frames = jax.vmap(lambda k: take_image(psfs, k, read_noise))(jr.split(key, n_frames))
    return frames.mean(0), frames.std(0) / math.sqrt(n_frames)


def true_params(seed: int, model: Optics) -> dict[str, Any]:
    """The tutorial's true params, drawn from `jr.key(seed)`.

    Positions `0.1 * normal` arcsec, fluxes `6 * uniform(0.8, 1.2)` log10
    photons, one per filter (in the order of `model.filters`), and wavefront
    error `50 * normal` nm, one per Zernike.
    """
    keys = jr.split(jr.key(seed), 3)
    names = list(model.filters)
    positions = 0.1 * jr.normal(keys[0], (len(names), 2))
    fluxes = 6 * jr.uniform(keys[1], (len(names),), minval=0.8, maxval=1.2)
    wfe = 50 * jr.normal(keys[2], model.coefficients.shape)
    return {
        "wfe": wfe,
        "position": {name: positions[i] for i, name in enumerate(names)},
        "flux": {name: fluxes[i] for i, name in enumerate(names)},
    }


def initial_params(observations: Sequence[FilterImage], model: Optics) -> dict[str, Any]:
    """The tutorial's starting guess: no wavefront error, brightest-pixel positions, summed fluxes."""
    return {
        "wfe": jnp.zeros(model.coefficients.shape),
        "position": {obs.filter: obs.estimate_position(model) for obs in observations},
        "flux": {obs.filter: jnp.log10(jnp.sum(obs.data)) for obs in observations},
    }


def make_problem(
    seed: int = 0,
    wf_npixels: int = 256,
    n_frames: int = 1000,
    read_noise: float = 10.0,
    **optics_kwargs: Any,
) -> tuple[Problem, dict[str, Any], dict[str, Any]]:
    """The tutorial's hierarchical optics problem, simulated.

    Args:
        seed: the true params come from `jr.key(seed)` exactly as in the
            tutorial; the noise frames from `jr.fold_in(jr.key(seed), 1)`.
        wf_npixels: pupil pixels (use 64-128 for quick tests).
        n_frames: frames averaged into each image.
        read_noise: read noise per frame, in photons.
        **optics_kwargs: passed to `Optics` (pupil geometry, `filters`...).

    Returns:
        `(problem, true_params, initial_params)`: a normal-likelihood
        `Problem` with one `FilterImage` per filter (`mask="invalid"`), the
        true params, and the tutorial's initial guess.

    Example:
        >>> problem, truth, params = make_problem(0, wf_npixels=64, n_frames=100)
        >>> float(problem.chi2r(truth))            # about 1
    """
    model = Optics(wf_npixels=wf_npixels, **optics_kwargs)
    truth = true_params(seed, model)
    psfs = jnp.stack([filter_image(truth, model, name) for name in model.filters])
    data, error = simulate_images(psfs, jr.fold_in(jr.key(seed), 1), n_frames, read_noise)
    observations = [
        FilterImage(data=d, error=e, filter=name, mask="invalid")
        for name, d, e in zip(model.filters, data, error)
    ]
    problem = Problem(model, observations)
    return problem, truth, initial_params(observations, model)
