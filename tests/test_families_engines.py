"""Every engine runs with every built-in likelihood family (and a custom log-likelihood).

One small problem per family, each with a known optimum found independently
(scipy on the same negative log-likelihood), then: `fk.solve` with its default
method, `fk.fit` with natural gradients from the family's Fisher information,
`fk.covariance` by the Hessian and by the Fisher information, a Fisher-built
`fk.Projection`, and a short `fk.sample`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import fitkit as fk

RNG = np.random.default_rng(20261203)
X = np.linspace(0.0, 1.0, 40)


class Line(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return params["a"] + params["b"] * self.x


class Rate(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return jnp.exp(params["a"] + params["b"] * self.x)


class Events(fk.Observation):
    """Events on [0, 1] with the density `1 + b (x - 1/2)` (normalised for |b| < 2), centred at `a`-free."""

    def predict(self, params, model):
        return 1.0 + params["b"] * (self.data - 0.5)


class Cauchy(fk.Observation):
    x: jax.Array

    def log_likelihood(self, params, model):
        z = (self.data - params["a"] - params["b"] * self.x) / self.error
        return -jnp.sum(jnp.log1p(z**2) + jnp.log(jnp.pi * self.error))


def _line_data(noise):
    return 1.0 + 2.0 * X + noise


def _cases():
    err = np.full_like(X, 0.1)
    normal = _line_data(0.1 * RNG.standard_normal(X.size))
    jittered = _line_data(0.25 * RNG.standard_normal(X.size))
    heavy = _line_data(0.1 * RNG.standard_t(3.0, X.size))
    counts = RNG.poisson(np.exp(1.0 + 2.0 * X)).astype(float)
    cov = 0.1**2 * np.exp(-np.abs(X[:, None] - X[None, :]) / 0.2) + 1e-4 * np.eye(X.size)
    correlated = _line_data(np.linalg.cholesky(cov) @ RNG.standard_normal(X.size))
    u = RNG.random(4000)
    events = np.where(RNG.random(4000) < 0.5, u, np.sqrt(u))  # density 1/2 + x = 1 + (x - 1/2)
    line = {"a": 1.0, "b": 2.0}
    jitter = lambda p, mu, e: jnp.sqrt(e**2 + jnp.exp(2 * p["log_s"]))  # noqa: E731
    return {
        "normal": (Line(data=normal, error=err, x=X), line, {}),
        "normal-noise": (
            Line(data=jittered, error=err, x=X, likelihood=fk.Normal(scale=jitter)),
            {**line, "log_s": -1.0},
            {},
        ),
        "student-t": (Line(data=heavy, error=err, x=X, likelihood=fk.StudentT(nu=3.0)), line, {}),
        "student-t-fitted": (
            Line(data=heavy, error=err, x=X, likelihood=fk.StudentT(nu=lambda p: p["nu"])),
            {**line, "nu": 5.0},
            {"nu": (0.5, 200.0)},
        ),
        "poisson": (Rate(data=counts, x=X, likelihood=fk.Poisson()), line, {}),
        "multivariate": (
            Line(data=correlated, x=X, likelihood=fk.MultivariateNormal(covariance=cov)),
            line,
            {},
        ),
        "unbinned": (Events(data=events, likelihood=fk.Unbinned()), {"b": 0.3}, {"b": (-1.9, 1.9)}),
        "unbinned-extended": (
            Events(data=events, likelihood=fk.Unbinned(expected=lambda p: p["n"])),
            {"b": 0.3, "n": 3500.0},
            {"b": (-1.9, 1.9), "n": (1.0, None)},
        ),
        "custom": (Cauchy(data=heavy, error=err, x=X), line, {}),
    }


CASES = _cases()


def _problem(name):
    obs, start, bounds = CASES[name]
    problem = fk.Problem(None, obs, bounds=bounds or None)
    return problem, {k: jnp.asarray(v) for k, v in start.items()}


def _reference_optimum(problem, start):
    """The optimum by scipy (L-BFGS-B with the bounds, gradients from JAX): independent of fitkit's solvers."""
    flat, unravel = fk.tree.ravel(start)
    value_and_grad = jax.jit(jax.value_and_grad(lambda z: problem.nll(unravel(z))))
    names = fk.tree.names(start)
    bounds = [
        tuple(problem.bounds.get(n, (None, None))) if n in problem.bounds else (None, None) for n in names
    ]
    bounds = [tuple(None if b is None else float(b) for b in pair) for pair in bounds]
    out = scipy.optimize.minimize(
        lambda z: tuple(np.asarray(v, float) for v in value_and_grad(jnp.asarray(z))),
        np.asarray(flat),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000},
    )
    return out.x, np.linalg.inv(
        np.asarray(jax.hessian(lambda z: problem.nll(unravel(z)))(jnp.asarray(out.x)))
    )


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    problem, start = _problem(request.param)
    x_ref, cov_ref = _reference_optimum(problem, start)
    solved = fk.solve(problem, start)
    return request.param, problem, start, solved, x_ref, cov_ref


def test_solve_finds_the_reference_optimum(case):
    name, problem, _, solved, x_ref, cov_ref = case
    assert solved.valid, solved.message
    x = np.asarray(fk.tree.ravel(solved.params)[0])
    # Within a thousandth of a standard error of scipy's optimum.
    assert np.all(np.abs(x - x_ref) <= 1e-3 * np.sqrt(np.diag(cov_ref))), (name, x, x_ref)
    uses_least_squares = solved.method.endswith("levenberg-marquardt")
    assert uses_least_squares == problem.has_residuals, (name, solved.method)
    assert np.isfinite(solved.log_likelihood) and solved.n_free == x.size


def test_covariance_hessian_matches_the_inverse_hessian(case):
    name, problem, _, solved, _, cov_ref = case
    cov = fk.covariance(problem, solved)
    np.testing.assert_allclose(np.asarray(cov.matrix), cov_ref, rtol=1e-5, atol=1e-12)


def test_covariance_fisher_is_close_to_the_hessian_at_the_optimum(case):
    # The expected (or, unbinned, empirical) Fisher information approximates the observed one: the
    # standard errors agree to ~30% on these data sets (exactly, for the line with fixed normal errors).
    name, problem, _, solved, _, cov_ref = case
    cov = fk.covariance(problem, solved, method="fisher")
    ratio = np.sqrt(np.diag(np.asarray(cov.matrix)) / np.diag(cov_ref))
    tolerance = 1e-8 if name in ("normal", "multivariate") else 0.35
    np.testing.assert_allclose(ratio, 1.0, atol=tolerance)


def test_fit_with_natural_gradients_reaches_the_optimum(case):
    name, problem, start, solved, x_ref, cov_ref = case
    if problem.declares():
        optimiser = optax.adam(2e-2)
        steps = 3000
    else:
        # fit minimises loss = 2 nll / n_data, so the Fisher of the nll is scaled the same way.
        scaled = lambda p: fk.fisher(problem, p) * 2 / problem.n_data  # noqa: E731
        optimiser = optax.chain(fk.natural_gradient(scaled), optax.sgd(0.5))
        steps = 60
    result = fk.fit(problem, start, optimiser, steps=steps, progress=False, warn=False)
    x = np.asarray(fk.tree.ravel(result.params)[0])
    assert np.all(np.isfinite(x)) and np.isfinite(result.log_likelihood)
    assert np.all(np.abs(x - x_ref) <= 0.05 * np.sqrt(np.diag(cov_ref))), (name, x, x_ref)


def test_projection_and_sample(case):
    name, problem, _, solved, x_ref, cov_ref = case
    post = fk.sample(problem, solved, num_warmup=100, num_samples=300, progress=False, key=1)
    names = fk.tree.names(solved.params)
    draws = np.stack([np.asarray(post.samples[n]).ravel() for n in names], axis=1)
    assert np.all(np.isfinite(draws))
    # The posterior is near the Laplace approximation here (flat priors, many points), except for
    # the Student-t's degrees of freedom, whose posterior is wide and skewed towards large nu.
    near = np.array([n != "nu" for n in names])
    std = np.sqrt(np.diag(cov_ref))[near]
    assert np.all(np.abs(draws.mean(axis=0)[near] - x_ref[near]) < 0.5 * std), name
    np.testing.assert_allclose(draws.std(axis=0)[near], std, rtol=0.35)
