"""Hierarchical models: priors that are functions of the params, and sampling their posteriors.

The eight-schools model (Rubin 1981; the data and the posterior summaries are
those of the Stan and numpyro documentation): mu ~ N(0, 5), tau ~ HalfCauchy(5),
theta_i ~ N(mu, tau), y_i ~ N(theta_i, sigma_i).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import fitkit as fk

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
HYPER = {"mu": dist.Normal(0.0, 5.0), "tau": dist.HalfCauchy(5.0)}


class School(fk.Observation):
    def predict(self, params, model):
        return params["theta"]


def _centred():
    priors = {**HYPER, "theta": lambda p: dist.Normal(p["mu"], p["tau"])}
    return fk.Problem(None, School(data=Y, error=SIGMA), priors=priors)


def _non_centred():
    return fk.Problem(
        None,
        School(data=Y, error=SIGMA),
        priors={**HYPER, "eta": dist.Normal(0.0, 1.0)},
        ties={"theta": lambda p: p["mu"] + p["tau"] * p["eta"]},
    )


def test_non_centred_posterior_matches_the_published_summaries():
    problem = _non_centred()
    start = {"mu": jnp.asarray(4.0), "tau": jnp.asarray(3.0), "eta": jnp.zeros(8), "theta": jnp.zeros(8)}
    solved = fk.solve(problem, start, warn=False)
    # The mode of the params is at tau -> 0 (the HalfCauchy's peak): a poor centre for a sampler,
    # which centres at the mode of the density of log(tau) instead.
    assert float(solved.params["tau"]) < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", fk.SamplingWarning)
        post = fk.sample(problem, solved, num_warmup=300, num_samples=1500, num_chains=2, progress=False)
    mu, tau = np.asarray(post.samples["mu"]).ravel(), np.asarray(post.samples["tau"]).ravel()
    # Published (non-centred, long runs): mu 4.4 +- 3.3, tau 3.6 +- 3.2.
    assert abs(mu.mean() - 4.4) < 0.4 and abs(mu.std() - 3.3) < 0.4
    assert abs(tau.mean() - 3.6) < 0.5 and abs(tau.std() - 3.2) < 0.7
    assert post.diagnostics["divergences"] == 0
    assert post.diagnostics["max_r_hat"] < 1.01


def test_centred_funnel_is_refused_by_the_whitened_sampler_with_a_way_out():
    problem = _centred()
    start = {"mu": jnp.asarray(4.0), "tau": jnp.asarray(3.0), "theta": jnp.asarray(0.3 * Y + 3.0)}
    with pytest.raises(fk.ProjectionError, match=r"non-centred.*projection='identity', adapt_mass=True"):
        fk.sample(problem, start, num_warmup=10, num_samples=10, progress=False)


def test_short_chains_are_flagged_not_returned_as_good():
    problem = _centred()
    start = {"mu": jnp.asarray(4.0), "tau": jnp.asarray(3.0), "theta": jnp.asarray(0.3 * Y + 3.0)}
    with pytest.warns(fk.SamplingWarning, match="do not trust these draws yet.*bulk ESS"):
        post = fk.sample(
            problem, start, projection="identity", adapt_mass=True, num_warmup=50, num_samples=30,
            num_chains=2, progress=False,
        )  # fmt: skip
    assert post.diagnostics["min_ess_bulk"] < 200


def test_hierarchical_prior_log_density_and_its_gradient():
    problem = _centred()
    params = {"mu": jnp.asarray(1.5), "tau": jnp.asarray(2.5), "theta": jnp.asarray(Y / 3)}
    expected = (
        dist.Normal(0.0, 5.0).log_prob(1.5)
        + dist.HalfCauchy(5.0).log_prob(2.5)
        + jnp.sum(dist.Normal(1.5, 2.5).log_prob(Y / 3))
    )
    np.testing.assert_allclose(problem.log_prior(params), expected, rtol=1e-12)
    grad = jax.grad(lambda p: problem.log_prior(p))(params)
    # d/dmu of sum log N(theta | mu, tau) = sum (theta - mu) / tau^2, plus the N(0, 5) prior's -mu/25.
    np.testing.assert_allclose(grad["mu"], np.sum(Y / 3 - 1.5) / 2.5**2 - 1.5 / 25, rtol=1e-12)
