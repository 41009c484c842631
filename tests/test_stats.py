import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

import fitkit as fk
from fitkit import stats


def test_z_score_chi2_and_ddof():
    pred, data, err = jnp.array([1.0, 2.0, 3.0]), jnp.array([2.0, 2.0, 1.0]), jnp.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(stats.z_score(pred, data, err), [2.0, 0.0, -1.0])
    assert float(stats.chi2(pred, data, err)) == pytest.approx(5.0)
    assert stats.ddof({"a": jnp.zeros(2)}, data) == 1
    assert float(stats.chi2r(pred, data, err, 1)) == pytest.approx(5.0)
    assert float(stats.chi2r_from_z(jnp.array([2.0, jnp.nan, 1.0]), 2)) == pytest.approx(2.5)


def test_mask_excludes_points_and_keeps_gradients_finite():
    pred = jnp.array([1.0, 2.0, 3.0])
    data = jnp.array([2.0, jnp.nan, 1.0])
    err = jnp.array([1.0, jnp.nan, -1.0])
    mask = jnp.array([True, False, False])
    assert float(stats.chi2(pred, data, err, mask)) == pytest.approx(1.0)
    grad = jax.grad(lambda p: stats.chi2(p, data, err, mask))(pred)
    np.testing.assert_allclose(grad, [-2.0, 0.0, 0.0])
    assert stats.ddof(jnp.zeros(1), data, mask) == 0


def test_normal_loglike_matches_scipy():
    pred, data, err = np.array([0.3, -1.0]), np.array([0.1, 0.5]), np.array([0.2, 3.0])
    expected = sps.norm.logpdf(data, loc=pred, scale=err)
    np.testing.assert_allclose(stats.loglike(pred, data, err), expected, rtol=1e-12)
    np.testing.assert_allclose(stats.normal_loglike(pred, data, err), expected, rtol=1e-12)


def test_poisson_loglike_and_deviance_closed_form():
    rate, counts = np.array([2.5, 0.7, 10.0]), np.array([3.0, 0.0, 7.0])
    np.testing.assert_allclose(
        stats.loglike(rate, counts, likelihood="poisson"), sps.poisson.logpmf(counts, rate), rtol=1e-12
    )
    dev = stats.poisson_deviance(rate, counts)
    expected = 2 * np.array([3 * math.log(3 / 2.5) - 0.5, 0.7, 7 * math.log(0.7) + 3.0])
    np.testing.assert_allclose(dev, expected, rtol=1e-12)
    assert float(stats.poisson_deviance(jnp.array(4.0), jnp.array(4.0))) == 0.0


def test_stats_are_vmappable():
    preds = jnp.ones((4, 3))
    out = jax.vmap(lambda p: stats.chi2(p, jnp.zeros(3), jnp.ones(3)))(preds)
    np.testing.assert_allclose(out, 3.0)


def test_loglike_bad_arguments():
    with pytest.raises(ValueError, match="poisson"):
        stats.loglike(1.0, 1.0, 1.0, likelihood="cauchy")
    with pytest.raises(ValueError, match="needs `error`"):
        stats.loglike(1.0, 1.0)
    assert fk.stats is stats
