"""Physics checks of the pure-JAX Fourier-optics example, and its tutorial problem."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import j1

import fitkit as fk
from fitkit.examples import optics
from fitkit.examples._zernike import noll_to_nm, zernike_basis

ARCSEC = optics.ARCSEC
EVEN, ODD = [0, 1, 2], [3, 4, 5, 6]  # wfe indices of Noll 4-6 (defocus, astigmatism) and 7-10


def clear(npixels=64, **kwargs):
    """An unobstructed circular aperture: no obscuration, no spiders."""
    return optics.Optics(npixels, obscuration=0.0, n_spiders=0, **kwargs)


def airy(theta, wavelength, diameter=1.2, pixel=0.075 * ARCSEC):
    """Photons per pixel (point-sampled) of a unit-flux Airy pattern at angles `theta`."""
    v = np.pi * diameter * theta / wavelength
    peak = np.pi * diameter**2 / (4 * wavelength**2) * pixel**2
    return peak * (2 * j1(v) / np.where(v == 0, 1.0, v)) ** 2 + peak * (v == 0)


def fisher(problem, params):
    flat, unravel = fk.tree.ravel(params)
    jac = jax.jacfwd(lambda f: problem.flat_predictions(unravel(f)))(flat)
    return (jac.T * problem.weights(params)) @ jac


@pytest.fixture(scope="module")
def tutorial(optics64):
    return optics64


# ------------------------------------------------------------------ geometry
def test_noll_ordering():
    assert [noll_to_nm(j) for j in range(1, 12)] == [
        (0, 0), (1, 1), (1, -1), (2, 0), (2, -2), (2, 2), (3, -1), (3, 1), (3, -3), (3, 3), (4, 0),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="start at 1"):
        noll_to_nm(0)


def test_zernikes_are_rms_normalised_and_orthogonal_over_the_disc():
    x = (np.arange(512) - 255.5) * (1.2 / 512)
    basis = zernike_basis(tuple(range(4, 11)), x, 0.6)
    yy, xx = np.meshgrid(x, x, indexing="ij")
    disc = np.hypot(xx, yy) <= 0.6
    gram = np.einsum("iyx,jyx->ij", basis * disc, basis * disc) / disc.sum()
    np.testing.assert_allclose(np.diag(gram), 1.0, atol=0.01)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 0.01


def test_pupil_is_normalised_and_not_centrosymmetric():
    model = optics.Optics(64)
    t = np.asarray(model.transmission)
    assert np.sum(t**2) == pytest.approx(1.0, abs=1e-12)
    # 20% obscuration and spiders: the clear area is well below the full disc's.
    assert np.count_nonzero(t) < 0.95 * np.pi / 4 * 64**2
    assert np.abs(t - t[::-1, ::-1]).max() > 0.5 * t.max()
    cross = np.asarray(optics.Optics(64, n_spiders=4, spider_offset=0.0).transmission)
    assert np.abs(cross - cross[::-1, ::-1]).max() < 1e-12


# ------------------------------------------------------------------- physics
def test_psf_conserves_energy():
    # A detector spanning exactly one period of the sampled pupil's far field
    # (M pixels with M * pixel = wavelength / dx) catches all the light: the
    # MFT is then unitary and the PSF sums to 1 for any tilt or aberration.
    n, m = 64, 160
    wavelength = np.array([m * 0.075 * ARCSEC * 1.2 / n])
    model = optics.Optics(n, psf_npixels=m)
    assert float(model.propagate(wavelength).sum()) == pytest.approx(1.0, abs=1e-12)
    aberrated = model.set("coefficients", 1e-7 * jnp.arange(7.0))
    tilted = aberrated.propagate(wavelength, jnp.array([0.3, -0.2]) * ARCSEC)
    assert float(tilted.sum()) == pytest.approx(1.0, abs=1e-12)


def test_clear_aperture_psf_is_the_airy_pattern():
    wavelength = 1.2e-6
    psf = np.asarray(clear(128).propagate(jnp.array([wavelength])))
    theta = (np.arange(32) - 15.5) * 0.075 * ARCSEC
    expected = airy(np.hypot(*np.meshgrid(theta, theta)), wavelength)
    # Pixel by pixel within 0.5% of the peak (the residual is the pupil's sampling).
    assert np.abs(psf - expected).max() < 5e-3 * expected.max()
    # The 32x32 detector clips the wings: it holds 96.9% of an Airy pattern's light.
    assert psf.sum() == pytest.approx(expected.sum(), abs=5e-3)
    assert 0.96 < psf.sum() < 0.98


def test_airy_first_dark_ring():
    wavelength, step = 1.5e-6, 0.005
    model = clear(128, psf_npixels=201, psf_pixel_scale=step)
    profile = np.asarray(model.propagate(jnp.array([wavelength])))[100, 100:]
    first_minimum = step * np.argmax(np.diff(profile) > 0)
    expected = 1.22 * wavelength / 1.2 / ARCSEC  # 0.3146 arcsec
    assert first_minimum == pytest.approx(expected, abs=step)  # well within a 0.075" pixel


def test_tilt_moves_the_psf_by_its_angle():
    model = optics.Optics(64, psf_npixels=128)
    centred = np.asarray(model.psf("green"))
    # A whole-pixel tilt shifts the image exactly.
    shifted = np.asarray(model.psf("green", jnp.array([3, -2]) * 0.075 * ARCSEC))
    np.testing.assert_allclose(shifted[:-2, 3:], centred[2:, :-3], atol=1e-14)

    def centroid(image):
        t = np.arange(128) - 63.5
        return np.array([image.sum(0) @ t, image.sum(1) @ t]) / image.sum()

    position = np.array([0.2, -0.1])
    tilted = np.asarray(model.psf("green", jnp.asarray(position) * ARCSEC))
    # To 1% (0.02 px): the detector clips a little more of one wing than the other.
    np.testing.assert_allclose(centroid(tilted) - centroid(centred), position / 0.075, rtol=0.01)


@pytest.mark.parametrize("pupil", ["clear", "default"])
def test_defocus_strehl_follows_marechal(pupil):
    wavelength, sigma = 1.2e-6, 0.2  # phase RMS in radians over the full disc
    model = clear(64, psf_npixels=33) if pupil == "clear" else optics.Optics(64, psf_npixels=33)
    defocus = jnp.zeros(7).at[0].set(sigma * wavelength / (2 * np.pi))
    peak = model.propagate(jnp.array([wavelength]))[16, 16]
    strehl = float(model.set("coefficients", defocus).propagate(jnp.array([wavelength]))[16, 16] / peak)
    # The phase variance over the actual (weighted) pupil, piston removed.
    weight = np.asarray(model.transmission) ** 2
    z4 = np.asarray(model.basis[0])
    variance = sigma**2 * (np.sum(weight * z4**2) - np.sum(weight * z4) ** 2)
    assert strehl == pytest.approx(np.exp(-variance), rel=0.01)
    if pupil == "clear":
        assert strehl == pytest.approx(np.exp(-(sigma**2)), rel=0.01)
        x = np.sqrt(3) * sigma  # exact for defocus on a clear disc: sinc^2(sqrt(3) sigma)
        assert strehl == pytest.approx((np.sin(x) / x) ** 2, rel=1e-3)


def test_psf_in_float32_matches_float64():
    model = optics.Optics(64)
    position = jnp.array([0.05, -0.02]) * ARCSEC
    wfe = 30e-9 * jnp.ones(7)
    ref = model.set("coefficients", wfe).psf("red", position)
    to32 = lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a  # noqa: E731
    model32 = jax.tree.map(to32, model)
    psf32 = jax.jit(lambda m, p: m.psf("red", p))(
        model32.set("coefficients", to32(wfe)), position.astype(jnp.float32)
    )
    assert psf32.dtype == jnp.float32
    assert np.abs(np.asarray(psf32) - np.asarray(ref)).max() < 1e-5 * float(ref.max())


# ---------------------------------------------------------- tutorial problem
def test_make_problem_matches_the_tutorial_recipe(tutorial):
    problem, truth, params = tutorial
    assert [obs.filter for obs in problem.observations] == ["blue", "green", "red"]
    assert fk.tree.size(truth) == fk.tree.size(params) == 16
    assert problem.n_data == 3 * 32 * 32
    for i, name in enumerate(["blue", "green", "red"]):
        obs = problem.observations[i]
        # Initial positions are whole pixels from the centre; fluxes are log10 of the image sums.
        assert np.allclose(np.asarray(params["position"][name]) / 0.075 % 1, 0)
        assert float(params["flux"][name]) == pytest.approx(np.log10(float(obs.data.sum())))
        assert 4.8 <= float(truth["flux"][name]) <= 7.2
    assert np.all(np.asarray(params["wfe"]) == 0)
    # The truth fits to within the noise; the tutorial's start is ~1e6 off.
    assert problem.chi2r(truth) == pytest.approx(1.0, abs=0.1)
    assert float(problem.chi2r(params)) > 1e5


def test_fisher_at_the_tutorial_start_is_non_singular(tutorial):
    problem, _, params = tutorial
    F = np.asarray(fisher(problem, params))
    scale = np.sqrt(np.diag(F))
    eigenvalues = np.linalg.eigvalsh(F / np.outer(scale, scale))
    assert eigenvalues.min() > 0.1
    assert eigenvalues.max() / eigenvalues.min() < 100
    # Every wavefront term is measured to far better than its 50 nm prior scale,
    # and the even terms are not much weaker than the odd ones.
    sigma_wfe = np.sqrt(np.diag(np.linalg.inv(F)))[-7:]
    assert sigma_wfe.max() < 0.1
    diag = np.diag(F)[-7:]
    assert diag[EVEN].min() > 0.01 * diag[ODD].max()


def test_centrosymmetric_pupil_loses_the_even_aberrations():
    # A cross of radial spiders: symmetric under a 180 degree rotation.
    problem, _, params = optics.make_problem(0, wf_npixels=64, n_frames=50, n_spiders=4, spider_offset=0.0)
    diag = np.diag(np.asarray(fisher(problem, params)))[-7:]
    assert diag[EVEN].max() < 1e-20 * diag[ODD].min()


def test_predict_and_gradient_are_jittable(tutorial):
    problem, truth, _ = tutorial
    loss, grad = eqx.filter_jit(eqx.filter_value_and_grad(problem.loss))(truth)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grad))


# ------------------------------------------------------------------ bad input
def test_bad_input_is_named():
    with pytest.raises(ValueError, match="wf_npixels"):
        optics.Optics(wf_npixels=0)
    with pytest.raises(ValueError, match="coefficients"):
        optics.Optics(16, coefficients=np.zeros(3))
    with pytest.raises(ValueError, match="obscuration"):
        optics.Optics(16, obscuration=1.0)
    with pytest.raises(KeyError, match="unknown filter 'uv'"):
        optics.Optics(16).psf("uv")
    with pytest.raises(TypeError, match="filter"):
        optics.FilterImage(data=jnp.zeros((2, 2)), error=1.0, filter=3)
