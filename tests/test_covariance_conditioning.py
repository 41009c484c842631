"""Gaussian tools on ill-conditioned covariances, against exact high-precision propagation (mpmath)."""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
import mpmath
import numpy as np
import pytest

import fitkit as fk

mpmath.mp.dps = 50


def _exact_std(matrix: np.ndarray, row: np.ndarray) -> float:
    """sqrt(row^T C row) in 50-digit arithmetic from the float64 entries of C."""
    c = mpmath.matrix(matrix.tolist())
    j = mpmath.matrix(row.tolist())
    return float(mpmath.sqrt((j.T * c * j)[0]))


def _ill_conditioned(n: int, log_scales: tuple[float, float], rho: float, seed: int) -> np.ndarray:
    """C = D R D: variances spanning the given decades, an equicorrelated-plus-random R."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** np.linspace(*log_scales, n)
    a = rng.normal(size=(n, n))
    r = rho * np.ones((n, n)) + (1 - rho) * np.eye(n) + 1e-3 * (a @ a.T) / n
    d = np.sqrt(np.diag(r))
    r = r / np.outer(d, d)
    return scales[:, None] * r * scales[None, :]


def test_the_27x_case_predict_and_sample_agree_with_exact_propagation():
    # a bound-like parametrisation: one param of variance 1e-4, one of 3e13, strongly correlated
    std = np.array([1e-2, np.sqrt(3e13)])
    matrix = np.array([[1.0, 0.99], [0.99, 1.0]]) * np.outer(std, std)
    mean = {"a": jnp.array(0.5), "b": jnp.array(2e6)}
    cov = fk.Covariance(jnp.asarray(matrix), mean)
    for row, fn in (
        (np.array([1.0, 0.0]), lambda p: p["a"]),
        (np.array([3.0, -1e-8]), lambda p: 3 * p["a"] - 1e-8 * p["b"]),
    ):
        exact = _exact_std(matrix, row)
        band = cov.predict(fn)
        assert float(band.std) == pytest.approx(exact, rel=1e-6)
        root = np.asarray(cov._root())
        assert np.sqrt(np.sum((row @ root) ** 2)) == pytest.approx(exact, rel=1e-6)
    draws = cov.sample(jr.key(0), 4000)
    assert float(np.std(np.asarray(draws["a"]))) == pytest.approx(1e-2, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("log_scales", [(-2.0, 6.7), (-4.0, 4.5)])
def test_linear_predictions_match_mpmath_up_to_condition_1e17(seed, log_scales):
    matrix = _ill_conditioned(5, log_scales, 0.9, seed)
    values = np.linalg.eigvalsh(matrix)
    assert values.max() / max(values.min(), 1e-300) > 1e12
    mean = {"x": jnp.zeros(5)}
    cov = fk.Covariance(jnp.asarray(matrix), mean)
    # the former route, an eigenvalue square root of C itself, resolves small directions only
    # relative to the largest variance
    values, vectors = np.linalg.eigh(matrix)
    unscaled_root = vectors * np.sqrt(np.clip(values, 0.0, None))
    rng = np.random.default_rng(seed + 10)
    unscaled_error = scaled_error = 0.0
    for _ in range(3):
        row = rng.normal(size=5) / 10.0 ** np.linspace(*log_scales, 5)
        exact = _exact_std(matrix, row)
        band = cov.predict(lambda p, row=row: jnp.dot(jnp.asarray(row), p["x"]))
        assert float(band.std) == pytest.approx(exact, rel=1e-6)
        scaled_error = max(scaled_error, abs(float(band.std) / exact - 1))
        unscaled_error = max(unscaled_error, abs(np.sqrt(np.sum((row @ unscaled_root) ** 2)) / exact - 1))
    # How far off the former route is depends on the LAPACK build; that it is far worse does not.
    assert unscaled_error > 1e-7 and unscaled_error > 100 * scaled_error, (unscaled_error, scaled_error)
    std = np.asarray(cov.std["x"])
    np.testing.assert_allclose(std, np.sqrt(np.diag(matrix)), rtol=1e-12)
