"""Frequentist coverage of the error bars of a bounded fit whose truth lies near the bound.

A Gaussian peak (amp, center, width) on a background bounded below at 0, whose
true value is one standard deviation above the bound: about one data set in six
has its least-squares minimum at a negative background, so `fk.solve` holds the
background at 0 (`res.at_limit`) and `fk.covariance` gives it a NaN error. The
errors of the other params, at or off the bound, must still cover the truth
68% of the time.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk

X = np.linspace(-15.0, 15.0, 120)
SIGMA = 1.0
# The background's error is 0.0985 at the truth: its true value is one sigma above the bound.
TRUTH = {"amp": 6.0, "center": 0.3, "width": 0.8, "background": 0.1}
START = {"amp": 5.0, "center": 0.0, "width": 1.0, "background": 0.5}
INSIDE = ("amp", "center", "width")


class Peak(fk.Observation):
    """A Gaussian peak on a flat background, measured at abscissae `x`."""

    x: jax.Array

    def predict(self, params, model):
        peak = params["amp"] * jnp.exp(-0.5 * ((self.x - params["center"]) / params["width"]) ** 2)
        return peak + params["background"]


def _problem(y, bounded=True):
    # Every data set has the same shapes, so the solve compiled for the first is reused.
    observation = Peak(data=y, error=np.full(X.size, SIGMA), x=jnp.asarray(X))
    return fk.Problem(None, observation, bounds={"background": (0.0, None)} if bounded else None)


@pytest.mark.slow
def test_errors_cover_the_truth_with_a_param_near_its_bound_over_2000_data_sets():
    # ~100 s on 2 CPU cores: ~25 ms a solve (~65 ms when the background is held), ~9 ms a covariance.
    truth = {k: jnp.asarray(v) for k, v in TRUTH.items()}
    clean = np.asarray(Peak(data=X, error=SIGMA, x=jnp.asarray(X)).predict(truth, None))
    sigma_b = float(fk.covariance(_problem(clean), truth).std["background"])
    assert TRUTH["background"] / sigma_b == pytest.approx(1.0, abs=0.05)

    rng = np.random.default_rng(20240611)
    n_sets = 2000
    covered = {name: [] for name in INSIDE}
    n_at_limit = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", fk.ConvergenceWarning)  # a covariance away from the minimum fails
        for _ in range(n_sets):
            y = clean + SIGMA * rng.standard_normal(X.size)
            problem = _problem(y)
            res = fk.solve(problem, START, warn=False)
            assert res.valid, res.message
            cov = fk.covariance(problem, res)
            background = float(res.params["background"])
            if res.at_limit:
                n_at_limit += 1
                assert res.at_limit == ("background",) and "at_limit" in res.flags
                assert cov.at_limit == ("background",)
                assert background == 0.0
                assert np.isnan(float(cov.std["background"]))
            else:
                assert res.flags == () and background > 0.0
                assert np.isfinite(float(cov.std["background"]))
            if res.at_limit or background < 0.05 * sigma_b:
                # Held exactly when the unbounded minimum lies beyond the bound.
                free = fk.solve(_problem(y, bounded=False), START, warn=False)
                assert free.valid, free.message
                assert bool(res.at_limit) == (float(free.params["background"]) < 0.0)
            for name in INSIDE:
                std = float(cov.std[name])
                assert np.isfinite(std) and std > 0.0, name
                covered[name].append(abs(float(res.params[name]) - TRUTH[name]) < std)

    # P(b_hat < 0) = P(Z < -1) = 0.16 for a linear model: a sixth of the data sets take the at_limit path.
    assert 0.10 < n_at_limit / n_sets < 0.25
    coverage = {name: float(np.mean(hits)) for name, hits in covered.items()}
    # The binomial sigma of a 68% coverage over 2000 data sets is 0.010: +-0.03 is ~3 sigma.
    for name in INSIDE:
        assert coverage[name] == pytest.approx(0.68, abs=0.03), coverage
