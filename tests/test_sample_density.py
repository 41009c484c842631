"""fk.sample samples exactly the problem's posterior: its density, improper posteriors, safe starts."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import fitkit as fk
from fitkit.sampling import SamplingWarning, sample
from fitkit.sampling._stepper import potential

TINY = {"num_warmup": 30, "num_samples": 30, "num_chains": 2, "progress": False}


class Peak(fk.Observation):
    """A Gaussian source of flux `flux` and width `width` on a fixed background, sampled at `x`."""

    x: jnp.ndarray

    def predict(self, params, model):
        w2 = 1.0 + params["width"] ** 2
        return params["flux"] * jnp.exp(-0.5 * self.x**2 / w2) / jnp.sqrt(w2) + 0.2


@pytest.fixture(scope="module")
def peak():
    x = jnp.linspace(-4.0, 4.0, 25)
    truth = {"flux": jnp.asarray(3.0), "width": jnp.asarray(0.6)}
    clean = Peak(data=jnp.zeros(25), error=0.1 * jnp.ones(25), x=x).predict(truth, None)
    data = clean + 0.1 * np.random.default_rng(3).normal(size=25)
    problem = fk.Problem(
        None, Peak(data=data, error=0.1 * jnp.ones(25), x=x), priors={"width": dist.HalfNormal(1.0)}
    )
    fit = fk.solve(problem, truth, method="lbfgs")
    return problem, fit


def test_the_sampled_density_is_minus_the_nll_plus_the_log_jacobian_exactly(peak):
    problem, fit = peak
    post = sample(problem, fit, **TINY)
    proj = post.projection
    energy = jax.jit(potential(problem, proj))

    def physical(u):
        return fk.tree.ravel(proj.to_params(u))[0]

    u = jax.random.normal(jax.random.key(7), (12, proj.dim)) * 2.0
    differences = []
    for point in u:
        # Independent of the projection's own Jacobian: slogdet of d params / du by autodiff.
        _, logdet = jnp.linalg.slogdet(jax.jacfwd(physical)(point))
        expected = problem.nll(proj.to_params(point)) - logdet
        differences.append(float(energy(point) - expected))
    # Equal up to the whitening's constant log-determinant, at every point.
    assert np.ptp(differences) < 1e-9
    assert post.config["latent_prior"] == "none"


def test_no_auxiliary_prior_unless_asked(peak):
    problem, fit = peak
    post = sample(problem, fit, **TINY)
    u = jnp.array([3.0, -40.0])
    plain = potential(problem, post.projection)(u)
    wide = potential(problem, post.projection, dist.Normal(0.0, 10.0))(u)
    # The opt-in prior adds exactly its own -log density, and only then.
    expected = -float(jnp.sum(dist.Normal(0.0, 10.0).log_prob(u)))
    assert float(wide - plain) == pytest.approx(expected, rel=1e-12)


def test_an_improper_posterior_is_refused_naming_the_flat_direction():
    class Product(fk.Observation):
        x: jnp.ndarray

        def predict(self, params, model):
            return params["a"] * params["b"] * self.x  # only a * b is constrained

    x = jnp.linspace(0.1, 1.0, 10)
    problem = fk.Problem(None, Product(data=2.0 * x, error=0.1 * jnp.ones(10), x=x))
    mode = {"a": jnp.asarray(1.0), "b": jnp.asarray(2.0)}
    with pytest.raises(fk.ProjectionError, match=r"(?s)a.*b.*not constrained"):
        sample(problem, mode, **TINY)

    class Unused(fk.Observation):
        x: jnp.ndarray

        def predict(self, params, model):
            return params["slope"] * self.x

    problem = fk.Problem(None, Unused(data=x, error=0.1 * jnp.ones(10), x=x))
    with pytest.raises(fk.ProjectionError, match="offset"):
        sample(problem, {"slope": jnp.asarray(1.0), "offset": jnp.asarray(0.0)}, **TINY)


class Root(fk.Observation):
    """Data about sqrt(rate): the density is not finite for a negative rate, a support no bound declares."""

    def predict(self, params, model):
        return jnp.full(4, jnp.sqrt(params["rate"]))


def test_starts_outside_the_support_are_redrawn_and_warned():
    problem = fk.Problem(None, Root(data=jnp.full(4, 0.3), error=jnp.full(4, 0.2)))
    fit = fk.solve(problem, {"rate": jnp.asarray(0.5)}, method="lbfgs")
    with pytest.warns(
        SamplingWarning, match=r"of 4 starting point\(s\) drawn with jitter=5 had a non-finite"
    ):
        post = sample(problem, fit, num_warmup=50, num_samples=50, num_chains=4, jitter=5.0, progress=False)
    assert np.all(np.isfinite(post.samples["rate"]))
    # The warm-up may not leave the support: every draw keeps a finite density.
    assert np.all(post.samples["rate"] >= 0.0)


def test_starts_inside_the_support_say_nothing():
    problem = fk.Problem(None, Root(data=jnp.full(4, 0.3), error=jnp.full(4, 0.2)))
    fit = fk.solve(problem, {"rate": jnp.asarray(0.5)}, method="lbfgs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Jitter 0.01 latent units around the mode: every start is inside the support.
        post = sample(
            problem, fit, num_warmup=100, num_samples=200, num_chains=2, jitter=0.01, progress=False
        )
    assert not [w for w in caught if "starting point" in str(w.message)]
    assert post.samples["rate"].shape == (2, 200)


def test_a_centre_outside_the_support_is_an_error_before_sampling():
    problem = fk.Problem(None, Root(data=jnp.full(4, 0.3), error=jnp.full(4, 0.2)))
    projection = fk.Projection.from_fisher(np.array([[100.0]]), center={"rate": jnp.asarray(-1.0)})
    with pytest.raises(ValueError, match="not finite at the params given"):
        sample(problem, {"rate": jnp.asarray(-1.0)}, projection=projection, **TINY)
