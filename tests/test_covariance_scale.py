"""fk.covariance(scale="chi2r") against lmfit's default (scale_covar=True) on an exponential decay."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import lmfit
import numpy as np
import pytest

import fitkit as fk

X = np.linspace(0.0, 4.0, 40)
TRUE = (3.0, 1.3)
NOISE = 0.05 * np.sin(7.0 * X + 0.3)  # fixed, deterministic "noise"
DATA = TRUE[0] * np.exp(-TRUE[1] * X) + NOISE


class Decay(fk.Module):
    x: jnp.ndarray

    def __call__(self, params):
        return params["amp"] * jnp.exp(-params["rate"] * self.x)


class Points(fk.Observation):
    def predict(self, params, model):
        return model(params)


def _problem(likelihood="normal"):
    error = None if likelihood == "poisson" else jnp.ones(X.size)  # relative errors only
    data = jnp.asarray(np.round(DATA * 10) if likelihood == "poisson" else DATA)
    return fk.Problem(Decay(x=jnp.asarray(X)), Points(data=data, error=error), likelihood=likelihood)


def test_chi2r_scale_matches_lmfit_default():
    problem = _problem()
    res = fk.solve(problem, {"amp": jnp.array(1.0), "rate": jnp.array(1.0)})
    assert res.valid
    # lmfit inverts J^T J from MINPACK's forward-difference Jacobian (good to ~1e-5): the Fisher route
    cov = fk.covariance(problem, res.params, method="fisher", scale="chi2r")
    unscaled = fk.covariance(problem, res.params, method="fisher")

    model = lmfit.Model(lambda x, amp, rate: amp * np.exp(-rate * x))
    out = model.fit(DATA, x=X, amp=1.0, rate=1.0)  # scale_covar=True is lmfit's default
    order = [cov.names.index("amp"), cov.names.index("rate")]
    np.testing.assert_allclose(np.asarray(cov.matrix)[np.ix_(order, order)], out.covar, rtol=1e-4)
    assert cov.scale == pytest.approx(out.redchi, rel=1e-8)
    assert unscaled.scale == 1.0 and "scaled by" in repr(cov)
    np.testing.assert_allclose(np.asarray(cov.matrix), cov.scale * np.asarray(unscaled.matrix), rtol=1e-12)


def test_scale_is_checked_before_any_work():
    problem = _problem()
    params = {"amp": jnp.array(3.0), "rate": jnp.array(1.3)}
    with pytest.raises(ValueError, match="unknown scale 'chi2'"):
        fk.covariance(problem, params, scale="chi2")
    with pytest.raises(ValueError, match="positive finite number"):
        fk.covariance(problem, params, scale=-1.0)
    with pytest.raises(ValueError, match="likelihood is 'poisson'"):
        fk.covariance(_problem("poisson"), params, scale="chi2r")
    assert fk.covariance(problem, params, scale=4.0).scale == 4.0


def test_covariance_away_from_the_minimum_warns():
    problem = _problem()
    res = fk.solve(problem, {"amp": jnp.array(1.0), "rate": jnp.array(1.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk.covariance(problem, res.params)  # at the minimum: silent
    away = {"amp": res.params["amp"] * 1.05, "rate": res.params["rate"]}
    with pytest.warns(fk.ConvergenceWarning, match="not at a minimum"):
        fk.covariance(problem, away)
