"""Frequentist coverage of Fisher error bars on the tutorial's sum-of-Gaussians problem.

Each simulated data set is fitted by Gauss-Newton steps (fitkit's batched
Jacobian) started at the truth, and its Fisher covariance is computed with
`fk.fisher`; everything is `vmap`ped over data sets in one compiled call.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import fitkit as fk
from fitkit.examples import gaussians

ERROR = 0.05


def _simulate(n_sets: int, key):
    """(fitted - true) / std for each data set and flat parameter, and the problems."""
    base, truth, _ = gaussians.make_problem(error=ERROR)
    clean = base.model()
    noise = ERROR * np.asarray(jr.normal(key, (n_sets,) + clean.shape))
    error = np.full(clean.shape, ERROR)
    problems = [fk.Problem(base.model, gaussians.Curve(data=clean + e, error=error)) for e in noise]
    arrays = jax.tree.map(lambda *xs: jnp.stack(xs), *[eqx.filter(p, eqx.is_array) for p in problems])
    static = eqx.filter(problems[0], eqx.is_array, inverse=True)
    x_true, unravel = fk.tree.ravel(truth)

    def fit_one(arrays):
        problem = eqx.combine(arrays, static)

        def gauss_newton(x, _):
            params = unravel(x)
            jac = fk.jacobian(problem.residuals, params, batch_size=3)
            return x + jnp.linalg.lstsq(jac, -problem.residuals(params))[0], None

        x, _ = jax.lax.scan(gauss_newton, x_true, None, length=8)
        std = jnp.sqrt(jnp.diag(jnp.linalg.inv(fk.fisher(problem, unravel(x), batch_size=4))))
        return x, std

    fitted, std = jax.jit(jax.vmap(fit_one))(arrays)
    pulls = (np.asarray(fitted) - np.asarray(x_true)) / np.asarray(std)
    return pulls, problems, fitted, std, unravel


def test_one_sigma_coverage_over_200_data_sets():
    pulls, problems, fitted, std, unravel = _simulate(200, jr.key(0))
    assert np.all(np.isfinite(pulls))
    coverage = np.mean(np.abs(pulls) < 1.0, axis=0)
    np.testing.assert_allclose(coverage, 0.68, atol=0.05)
    # The vmapped Fisher standard deviations are those fk.covariance reports.
    for i in (0, 1):
        cov = fk.covariance(problems[i], unravel(fitted[i]), method="fisher")
        np.testing.assert_allclose(cov.flat_std, std[i], rtol=1e-9)


@pytest.mark.slow
def test_pulls_are_standard_normal_over_2000_data_sets():
    # With 200 data sets the +-0.05 band is only ~1.5 binomial sigma per parameter;
    # ten times the data sets allow +-0.025 (~2.4 sigma) and a check of the pulls' spread.
    pulls, *_ = _simulate(2000, jr.key(1))
    coverage = np.mean(np.abs(pulls) < 1.0, axis=0)
    np.testing.assert_allclose(coverage, 0.6827, atol=0.025)
    np.testing.assert_allclose(pulls.std(axis=0), 1.0, atol=0.05)
    np.testing.assert_allclose(pulls.mean(axis=0), 0.0, atol=0.1)
