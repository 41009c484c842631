"""The likelihood families against scipy.stats, their Fisher information against Monte Carlo.

Each family's `nll` is checked against scipy at random params; `fk.fisher`
against the average outer product of the score over data simulated from the
model (within its Monte Carlo error); least-squares residuals against the
deviance; bad inputs against clear errors raised before anything compiles;
custom log-likelihoods and hierarchical priors against hand computations.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.optimize
import scipy.special
import scipy.stats as st

import fitkit as fk
from fitkit.likelihoods import Data
from fitkit.solving import _engine as solve_engine

RTOL = 1e-10


# ------------------------------------------------------------------ observations
class Line(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return params["slope"] * self.x + params["offset"]


class Level(fk.Observation):
    """One location `mu` at every point."""

    def predict(self, params, model):
        return jnp.broadcast_to(params["mu"], jnp.shape(self.data))


class Rate(fk.Observation):
    """A Poisson rate `exp(a + b x)`."""

    x: jax.Array

    def predict(self, params, model):
        return jnp.exp(params["a"] + params["b"] * self.x)


def mixture_pdf(x, p, norm):
    """A Gaussian peak on an exponential background, normalised on x >= 0 (`norm` is jnp or scipy)."""
    sigma = norm.exp(p["log_sigma"])
    if norm is np:
        peak = st.norm.pdf(x, p["mu"], sigma)
        tail = st.expon.pdf(x, scale=1.0 / p["lam"])
    else:
        peak = jax.scipy.stats.norm.pdf(x, p["mu"], sigma)
        tail = p["lam"] * jnp.exp(-p["lam"] * x)
    return p["frac"] * peak + (1.0 - p["frac"]) * tail


class Events(fk.Observation):
    """Unbinned events: `predict` is the mixture's density at each event."""

    def predict(self, params, model):
        return mixture_pdf(self.data, params, jnp)


class Cauchy(fk.Observation):
    """A likelihood no family covers: Cauchy noise of scale `error` around a line."""

    x: jax.Array

    def log_likelihood(self, params, model):
        z = (self.data - (params["slope"] * self.x + params["offset"])) / self.error
        return -jnp.sum(jnp.log1p(z**2) + jnp.log(jnp.pi * self.error))


def as_params(**values):
    return {k: jnp.asarray(v, jnp.float64) for k, v in values.items()}


def numpy_params(params):
    return {k: np.asarray(v) for k, v in params.items()}


def random_spd(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T / n + 0.3 * np.eye(n)


X = np.linspace(-1.0, 1.0, 12)
ERROR = np.linspace(0.3, 0.8, X.size)
JITTER = lambda p, mu, err: jnp.sqrt(err**2 + jnp.exp(2.0 * p["log_jit"]))
FRACTION = lambda p, mu, err: jnp.sqrt(err**2 + jnp.exp(2.0 * p["log_f"]) * mu**2)


# ------------------------------------------------------- 1. nll against scipy.stats
def case_normal(rng):
    data = rng.normal(1.0 + 0.5 * X, ERROR)
    prob = fk.Problem(None, Line(data=data, error=ERROR, x=X))

    def draw():
        return as_params(slope=rng.normal(), offset=rng.normal())

    def ref(p):
        return -st.norm.logpdf(data, p["slope"] * X + p["offset"], ERROR).sum()

    return prob, draw, ref


def case_normal_jitter(rng):
    data = rng.normal(1.0 + 0.5 * X, np.sqrt(ERROR**2 + 0.4**2))
    prob = fk.Problem(None, Line(data=data, error=ERROR, x=X, likelihood=fk.Normal(scale=JITTER)))

    def draw():
        return as_params(slope=rng.normal(), offset=rng.normal(), log_jit=rng.normal(-1.0, 0.5))

    def ref(p):
        sigma = np.sqrt(ERROR**2 + np.exp(2 * p["log_jit"]))
        return -st.norm.logpdf(data, p["slope"] * X + p["offset"], sigma).sum()

    return prob, draw, ref


def case_student_fixed(rng):
    data = 1.0 + 0.5 * X + ERROR * rng.standard_t(4.0, X.size)
    prob = fk.Problem(None, Line(data=data, error=ERROR, x=X, likelihood=fk.StudentT(nu=4.0)))

    def draw():
        return as_params(slope=rng.normal(), offset=rng.normal())

    def ref(p):
        return -st.t.logpdf(data, df=4.0, loc=p["slope"] * X + p["offset"], scale=ERROR).sum()

    return prob, draw, ref


def case_student_fitted(rng):
    data = 1.0 + 0.5 * X + 0.7 * ERROR * rng.standard_t(3.0, X.size)
    family = fk.StudentT(nu=lambda p: p["nu"], scale=lambda p, mu, err: jnp.exp(p["log_s"]) * err)
    prob = fk.Problem(None, Line(data=data, error=ERROR, x=X, likelihood=family))

    def draw():
        return as_params(
            slope=rng.normal(), offset=rng.normal(), log_s=rng.normal(0.0, 0.3), nu=rng.uniform(0.5, 20.0)
        )

    def ref(p):
        scale = np.exp(p["log_s"]) * ERROR
        return -st.t.logpdf(data, df=p["nu"], loc=p["slope"] * X + p["offset"], scale=scale).sum()

    return prob, draw, ref


def case_poisson(rng):
    counts = rng.poisson(np.exp(1.5 + 0.8 * X)).astype(float)
    prob = fk.Problem(None, Rate(data=counts, x=X), likelihood="poisson")

    def draw():
        return as_params(a=rng.normal(1.5, 0.3), b=rng.normal(0.8, 0.3))

    def ref(p):
        return -st.poisson.logpmf(counts, np.exp(p["a"] + p["b"] * X)).sum()

    return prob, draw, ref


def _mvn_case(rng, given, masked):
    n = 7
    x = np.linspace(0.0, 1.0, n)
    cov = random_spd(rng, n)
    data = rng.multivariate_normal(0.5 + x, cov)
    mask = np.array([True, True, False, True, False, True, True]) if masked else None
    used = np.ones(n, bool) if mask is None else mask
    family = (
        fk.MultivariateNormal(covariance=cov)
        if given == "covariance"
        else fk.MultivariateNormal(cholesky=np.linalg.cholesky(cov))
    )
    prob = fk.Problem(None, Line(data=data, x=x, mask=mask, likelihood=family))

    def draw():
        return as_params(slope=rng.normal(), offset=rng.normal())

    def ref(p):
        mean = p["slope"] * x + p["offset"]
        marginal = st.multivariate_normal(mean[used], cov[np.ix_(used, used)])
        return -marginal.logpdf(data[used])

    return prob, draw, ref


EVENTS_TRUTH = dict(frac=0.3, mu=2.0, log_sigma=np.log(0.4), lam=0.7)


def _events(rng, n):
    peak = rng.random(n) < EVENTS_TRUTH["frac"]
    x = np.where(
        peak,
        rng.normal(EVENTS_TRUTH["mu"], np.exp(EVENTS_TRUTH["log_sigma"]), n),
        rng.exponential(1.0 / EVENTS_TRUTH["lam"], n),
    )
    return np.abs(x) + 1e-3  # on x > 0, where the exponential's density is defined


def _events_draw(rng):
    return as_params(
        frac=rng.uniform(0.1, 0.9),
        mu=rng.normal(2.0, 0.3),
        log_sigma=rng.normal(np.log(0.4), 0.2),
        lam=rng.uniform(0.3, 1.5),
    )


def case_unbinned(rng):
    x = _events(rng, 200)
    prob = fk.Problem(None, Events(data=x, likelihood=fk.Unbinned()))

    def ref(p):
        return -np.log(mixture_pdf(x, numpy_params(p), np)).sum()

    return prob, lambda: _events_draw(rng), ref


def case_unbinned_extended(rng):
    x = _events(rng, 150)
    prob = fk.Problem(None, Events(data=x, likelihood=fk.Unbinned(expected=lambda p: p["n"])))

    def draw():
        return {**_events_draw(rng), "n": jnp.asarray(rng.uniform(100.0, 200.0))}

    def ref(p):
        n, expected = x.size, float(p["n"])
        extended = st.poisson.logpmf(n, expected) + scipy.special.gammaln(n + 1)  # n log N - N
        assert extended == pytest.approx(n * math.log(expected) - expected, rel=1e-12)
        return -(np.log(mixture_pdf(x, numpy_params(p), np)).sum() + extended)

    return prob, draw, ref


NLL_CASES = {
    "normal": case_normal,
    "normal-jitter": case_normal_jitter,
    "student-fixed": case_student_fixed,
    "student-fitted": case_student_fitted,
    "poisson": case_poisson,
    "mvn-covariance": lambda rng: _mvn_case(rng, "covariance", masked=False),
    "mvn-cholesky": lambda rng: _mvn_case(rng, "cholesky", masked=False),
    "mvn-covariance-masked": lambda rng: _mvn_case(rng, "covariance", masked=True),
    "mvn-cholesky-masked": lambda rng: _mvn_case(rng, "cholesky", masked=True),
    "unbinned": case_unbinned,
    "unbinned-extended": case_unbinned_extended,
}


@pytest.mark.parametrize("name", list(NLL_CASES))
def test_nll_matches_scipy(name):
    rng = np.random.default_rng(sorted(NLL_CASES).index(name))
    prob, draw, ref = NLL_CASES[name](rng)
    evaluate = eqx.filter_jit(lambda p: (prob.nll(p), prob.log_likelihood(p), jax.grad(prob.nll)(p)))
    for _ in range(3):
        params = draw()
        expected = ref(numpy_params(params))
        nll, log_lik, grad = evaluate(params)
        assert float(nll) == pytest.approx(expected, rel=RTOL)
        assert float(log_lik) == pytest.approx(-expected, rel=RTOL)
        assert np.isfinite(np.asarray(jax.tree.leaves(grad))).all()


def test_counts_and_flags_per_family():
    rng = np.random.default_rng(0)
    normal = case_normal(rng)[0]
    assert (normal.n_data, normal.n_fisher, normal.has_residuals) == (X.size, X.size, True)
    jitter = case_normal_jitter(rng)[0]
    assert (jitter.n_data, jitter.n_fisher, jitter.has_residuals) == (X.size, 2 * X.size, False)
    student = case_student_fitted(rng)[0]
    assert (student.n_data, student.n_fisher, student.has_residuals) == (X.size, 3 * X.size, False)
    masked = _mvn_case(rng, "covariance", masked=True)[0]
    assert (masked.n_data, masked.n_fisher, masked.has_residuals) == (5, 7, True)
    events = case_unbinned(rng)[0]
    assert (events.n_data, events.n_fisher, events.has_residuals) == (200, 200, False)
    assert events.families() == ["Unbinned"]
    assert jitter.families() == ["Normal(noise model)"]


# ----------------------------------------------- 2. Fisher against Monte Carlo scores
N_SETS = 20000


def mc_scores(prob, params, values):
    """The score `d log L / d x` (x the flat params) for each simulated data set in `values`.

    `values` holds one array per observation, shaped `(N_SETS, *data.shape)`.
    """
    x0, unravel = fk.tree.ravel(params)

    def log_lik(x, sets):
        p = unravel(x)
        total = 0.0
        for obs, v in zip(prob.observations, sets):
            view = obs.view()
            data = Data(jnp.where(view.valid, v, 0.0), view.error, view.valid)
            total = total + jnp.sum(obs.family.log_prob(p, obs.predict(p, prob.model), data))
        return total

    return np.asarray(jax.jit(jax.vmap(jax.grad(log_lik), in_axes=(None, 0)))(x0, values))


def assert_fisher_matches_scores(fisher, scores, n_sigma=4.5, rtol_diag=0.05):
    """`fisher` is `E[s s^T]` within the Monte Carlo error of the average, entry by entry."""
    fisher = np.asarray(fisher)
    n = scores.shape[0]
    mean = scores.mean(0)
    assert (np.abs(mean) < n_sigma * scores.std(0) / math.sqrt(n)).all(), "the score has mean 0"
    outer = scores[:, :, None] * scores[:, None, :]
    estimate, error = outer.mean(0), outer.std(0) / math.sqrt(n)
    assert fisher.shape == estimate.shape
    np.testing.assert_allclose(fisher, fisher.T, rtol=1e-12, atol=1e-12)
    excess = np.abs(estimate - fisher) / error
    assert (excess < n_sigma).all(), f"MC {estimate}\nfisher {fisher}\nin MC errors {excess}"
    np.testing.assert_allclose(np.diag(estimate), np.diag(fisher), rtol=rtol_diag)


def test_fisher_normal_fixed_errors():
    rng = np.random.default_rng(10)
    params = as_params(slope=0.7, offset=-0.3)
    mu = 0.7 * X - 0.3
    prob = fk.Problem(None, Line(data=rng.normal(mu, ERROR), error=ERROR, x=X))
    fisher = fk.fisher(prob, params)
    # in ravel order (offset, slope): J^T diag(1/err^2) J with J = [1, x]
    jac = np.stack([np.ones_like(X), X], 1)
    np.testing.assert_allclose(fisher, jac.T @ (jac / ERROR[:, None] ** 2), rtol=1e-12)
    sets = mu + ERROR * rng.standard_normal((N_SETS, X.size))
    assert_fisher_matches_scores(fisher, mc_scores(prob, params, [sets]))


@pytest.mark.parametrize("noise", ["jitter", "fraction"])
def test_fisher_normal_noise_model_two_observations(noise):
    rng = np.random.default_rng(11)
    scale, key = (JITTER, "log_jit") if noise == "jitter" else (FRACTION, "log_f")
    params = as_params(slope=1.2, offset=2.0, **{key: -0.7})
    family = fk.Normal(scale=scale)
    errors = [ERROR, 1.5 * ERROR[::-1]]
    mu = 1.2 * X + 2.0
    sigmas = [np.asarray(scale(numpy_params(params), mu, e)) for e in errors]
    obs = [Line(data=rng.normal(mu, s), error=e, x=X, likelihood=family) for s, e in zip(sigmas, errors)]
    prob = fk.Problem(None, obs)
    assert prob.vmapped and prob.n_fisher == 2 * 2 * X.size
    fisher = fk.fisher(prob, params)
    sets = [mu + s * rng.standard_normal((N_SETS, X.size)) for s in sigmas]
    assert_fisher_matches_scores(fisher, mc_scores(prob, params, sets))


@pytest.mark.parametrize("fitted", ["none", "nu", "scale", "nu-and-scale"])
def test_fisher_student_t(fitted):
    rng = np.random.default_rng(12)
    n, nu, log_s = 10, 5.0, -0.4
    error = np.linspace(0.5, 1.5, n)
    values = dict(mu=0.3)
    family_args = {}
    if "nu" in fitted:
        values["nu"] = nu
        family_args["nu"] = lambda p: p["nu"]
    else:
        family_args["nu"] = nu
    if "scale" in fitted:
        values["log_s"] = log_s
        family_args["scale"] = lambda p, mu, err: jnp.exp(p["log_s"]) * err
    scale = error * (math.exp(log_s) if "scale" in fitted else 1.0)
    params = as_params(**values)
    family = fk.StudentT(**family_args)
    prob = fk.Problem(None, Level(data=0.3 + scale * rng.standard_t(nu, n), error=error, likelihood=family))
    assert prob.has_residuals == (fitted == "none")
    fisher = fk.fisher(prob, params)
    # Lange, Little & Taylor (1989) per point, in ravel order (log_s, mu, nu) of what is fitted
    i_mu = np.sum((nu + 1) / ((nu + 3) * scale**2))
    i_log_s = n * 2 * nu / (nu + 3)
    i_cross = -n * 2 / ((nu + 1) * (nu + 3))
    i_nu = n * (
        0.25 * (scipy.special.polygamma(1, nu / 2) - scipy.special.polygamma(1, (nu + 1) / 2))
        - (nu + 5) / (2 * nu * (nu + 1) * (nu + 3))
    )
    full = {("mu", "mu"): i_mu, ("log_s", "log_s"): i_log_s, ("nu", "nu"): i_nu}
    full[("log_s", "nu")] = full[("nu", "log_s")] = i_cross
    names = sorted(values)
    expected = np.array([[full.get((a, b), 0.0) for b in names] for a in names])
    np.testing.assert_allclose(fisher, expected, rtol=1e-10, atol=1e-12)
    sets = 0.3 + scale * rng.standard_t(nu, (N_SETS, n))
    assert_fisher_matches_scores(fisher, mc_scores(prob, params, [sets]))


def test_fisher_poisson():
    rng = np.random.default_rng(13)
    params = as_params(a=1.5, b=0.8)
    rate = np.exp(1.5 + 0.8 * X)
    prob = fk.Problem(None, Rate(data=rng.poisson(rate).astype(float), x=X), likelihood="poisson")
    fisher = fk.fisher(prob, params)
    jac = np.stack([rate, rate * X], 1)  # d rate / d (a, b)
    np.testing.assert_allclose(fisher, jac.T @ (jac / rate[:, None]), rtol=1e-12)
    sets = rng.poisson(rate, (N_SETS, X.size)).astype(float)
    assert_fisher_matches_scores(fisher, mc_scores(prob, params, [sets]))


@pytest.mark.parametrize("masked", [False, True])
def test_fisher_multivariate_normal(masked):
    rng = np.random.default_rng(14)
    n = 8
    x = np.linspace(0.0, 2.0, n)
    cov = random_spd(rng, n)
    mask = np.array([True, False, True, True, True, False, True, True]) if masked else np.ones(n, bool)
    params = as_params(slope=0.5, offset=1.0)
    mu = 0.5 * x + 1.0
    obs = Line(
        data=rng.multivariate_normal(mu, cov),
        x=x,
        mask=mask,
        likelihood=fk.MultivariateNormal(covariance=cov),
    )
    prob = fk.Problem(None, obs)
    fisher = fk.fisher(prob, params)
    jac = np.stack([np.ones(n), x], 1)[mask]
    np.testing.assert_allclose(fisher, jac.T @ np.linalg.solve(cov[np.ix_(mask, mask)], jac), rtol=1e-10)
    sets = rng.multivariate_normal(mu, cov, N_SETS)
    assert_fisher_matches_scores(fisher, mc_scores(prob, params, [sets]))


@pytest.mark.parametrize("extended", [False, True])
def test_fisher_unbinned_is_the_empirical_outer_product(extended):
    rng = np.random.default_rng(15)
    x = _events(rng, 300)
    family = fk.Unbinned(expected=lambda p: p["n"]) if extended else fk.Unbinned()
    prob = fk.Problem(None, Events(data=x, likelihood=family))
    params = as_params(**EVENTS_TRUTH, **({"n": 280.0} if extended else {}))
    x0, unravel = fk.tree.ravel(params)

    def per_event(z):
        return jnp.log(mixture_pdf(jnp.asarray(x), unravel(z), jnp))

    # The shape's empirical Fisher (per-event score outer products), plus, extended, the Poisson
    # count's expected Fisher (dN)(dN)^T / N: the count and the shape are independent given the params.
    scores = np.asarray(jax.jit(jax.jacobian(per_event))(x0))
    expected = scores.T @ scores
    if extended:
        d_n = np.asarray(jax.grad(lambda z: unravel(z)["n"])(x0))
        expected = expected + np.outer(d_n, d_n) / 280.0
    np.testing.assert_allclose(fk.fisher(prob, params), expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------- 3. least-squares residuals
RESIDUAL_CASES = ["normal", "student-fixed", "poisson", "mvn-covariance", "mvn-cholesky-masked"]


@pytest.mark.parametrize("name", RESIDUAL_CASES)
def test_residuals_square_to_the_deviance(name):
    rng = np.random.default_rng(20 + RESIDUAL_CASES.index(name))
    prob, draw, _ = NLL_CASES[name](rng)
    assert prob.has_residuals
    evaluate = eqx.filter_jit(lambda p: (prob.residuals(p), prob.chi2(p), prob.nll(p)))
    offsets = []
    for _ in range(3):
        residuals, chi2, nll = evaluate(draw())
        assert residuals.shape == (prob.n_data,)
        assert float(jnp.sum(residuals**2)) == pytest.approx(float(chi2), rel=RTOL)
        offsets.append(float(chi2) / 2 - float(nll))
    np.testing.assert_allclose(offsets, offsets[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "name, family",
    [
        ("normal-jitter", "Normal(noise model)"),
        ("student-fitted", "StudentT(fitted nu, fitted scale)"),
        ("unbinned", "Unbinned"),
        ("unbinned-extended", "Unbinned(extended)"),
        ("cauchy", "custom log_likelihood"),
    ],
)
def test_no_residuals_refuses_least_squares(name, family, monkeypatch):
    rng = np.random.default_rng(30)
    if name == "cauchy":
        prob = fk.Problem(None, Cauchy(data=rng.standard_cauchy(X.size), error=ERROR, x=X))
        params = as_params(slope=0.1, offset=0.2)
    else:
        prob, draw, _ = NLL_CASES[name](rng)
        params = draw()
    assert not prob.has_residuals
    with pytest.raises(
        ValueError, match=r"problem\.residuals.*" + family.replace("(", r"\(").replace(")", r"\)")
    ):
        prob.residuals(params)

    def no_solve(*args, **kwargs):
        raise AssertionError("the solver ran")

    monkeypatch.setattr(solve_engine, "_solve_latent", no_solve)
    with pytest.raises(ValueError, match="levenberg-marquardt.*least-squares residuals"):
        fk.solve(prob, params, method="levenberg-marquardt")
    z = np.asarray(prob.z_scores(params)[0])
    if name.startswith(("unbinned", "cauchy")):
        assert np.isnan(z).all()
    if name == "student-fitted":
        p = numpy_params(params)
        scale = np.exp(p["log_s"]) * ERROR
        np.testing.assert_allclose(z, (prob.observations[0].data - (p["slope"] * X + p["offset"])) / scale)


def test_normal_noise_model_z_scores():
    prob, draw, _ = case_normal_jitter(np.random.default_rng(31))
    p = numpy_params(draw())
    sigma = np.sqrt(ERROR**2 + np.exp(2 * p["log_jit"]))
    expected = (np.asarray(prob.observations[0].data) - (p["slope"] * X + p["offset"])) / sigma
    np.testing.assert_allclose(prob.z_scores(as_params(**p))[0], expected, rtol=1e-12)


# ----------------------------------------------------------------- 4. bad inputs
def _line(**kwargs):
    return Line(data=np.ones(4), x=np.arange(4.0), **kwargs)


LINE = as_params(slope=1.0, offset=1.0)


def test_poisson_refuses_negative_or_fractional_counts():
    for counts in ([1.0, -1.0, 2.0], [1.0, 2.5, 2.0]):
        with pytest.raises(fk.ObservationError, match="not counts.*whole numbers >= 0"):
            fk.Problem(None, Rate(data=np.array(counts), x=np.arange(3.0)), likelihood="poisson")
    # a negative count that is masked out is not used
    fk.Problem(
        None,
        Rate(data=np.array([1.0, -1.0, 2.0]), x=np.arange(3.0), mask=np.array([True, False, True])),
        likelihood="poisson",
    )


@pytest.mark.parametrize(
    "family, match",
    [
        (fk.MultivariateNormal(covariance=np.eye(3)), r"shape \(3, 3\).*4 points"),
        (fk.MultivariateNormal(covariance=np.eye(4) + np.triu(np.ones((4, 4)), 1) * 0.1), "not symmetric"),
        (fk.MultivariateNormal(covariance=np.diag([1.0, 1.0, -1.0, 1.0])), "not positive definite"),
        (fk.MultivariateNormal(covariance=np.ones((4, 4))), "not positive definite"),
        (fk.MultivariateNormal(cholesky=np.ones((4, 4))), "not lower triangular"),
        (fk.MultivariateNormal(covariance=np.full((4, 4), np.nan)), "non-finite"),
    ],
)
def test_multivariate_normal_refuses_bad_covariances(family, match):
    with pytest.raises(fk.LikelihoodError, match=match) as caught:
        fk.Problem(None, _line(likelihood=family))
    assert isinstance(caught.value, fk.ObservationError)
    assert "Line()" in str(caught.value)


def test_multivariate_normal_needs_exactly_one_matrix():
    with pytest.raises(ValueError, match="exactly one"):
        fk.MultivariateNormal()
    with pytest.raises(ValueError, match="exactly one"):
        fk.MultivariateNormal(covariance=np.eye(2), cholesky=np.eye(2))


def test_family_constructor_errors():
    with pytest.raises(TypeError, match="Normal\\(scale=...\\) takes a function"):
        fk.Normal(scale=3.0)
    with pytest.raises(TypeError, match="StudentT\\(scale=...\\) takes a function"):
        fk.StudentT(scale=0.5)
    for nu in (-1.0, 0.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="degrees of freedom must be positive"):
            fk.StudentT(nu=nu)
    with pytest.raises(TypeError, match="Unbinned\\(expected=...\\) takes a function"):
        fk.Unbinned(expected=100.0)
    with pytest.raises(ValueError, match="unknown likelihood 'gaussian'"):
        fk.Problem(None, _line(error=1.0), likelihood="gaussian")
    with pytest.raises(TypeError, match="likelihood must be a name"):
        fk.Problem(None, _line(error=1.0), likelihood=3)
    with pytest.raises(fk.LikelihoodError, match="has no error"):
        fk.Problem(None, _line())
    with pytest.raises(fk.LikelihoodError, match="has no error"):
        fk.Problem(None, _line(likelihood=fk.StudentT()))


def _raises_at_start(prob, params, error, match, monkeypatch):
    with pytest.raises(error, match=match):
        prob.check(params)

    def no_solve(*args, **kwargs):
        raise AssertionError("the solver ran")

    monkeypatch.setattr(solve_engine, "_solve_latent", no_solve)
    with pytest.raises(error, match=match):
        fk.solve(prob, params)


def test_noise_model_not_positive_at_the_start(monkeypatch):
    family = fk.Normal(scale=lambda p, mu, err: p["s"] * err)
    prob = fk.Problem(None, _line(error=0.5, likelihood=family))
    prob.check({**LINE, "s": jnp.asarray(2.0)})
    _raises_at_start(
        prob,
        {**LINE, "s": jnp.asarray(-1.0)},
        fk.ParamsError,
        "noise model's sigma is not positive",
        monkeypatch,
    )


def test_student_nu_and_scale_not_positive_at_the_start(monkeypatch):
    family = fk.StudentT(nu=lambda p: p["nu"], scale=lambda p, mu, err: p["s"] * jnp.ones_like(mu))
    prob = fk.Problem(None, _line(likelihood=family))
    prob.check({**LINE, "nu": jnp.asarray(3.0), "s": jnp.asarray(1.0)})
    with pytest.raises(fk.ParamsError, match="Student-t scale is not positive"):
        prob.check({**LINE, "nu": jnp.asarray(3.0), "s": jnp.asarray(0.0)})
    _raises_at_start(
        prob,
        {**LINE, "nu": jnp.asarray(-2.0), "s": jnp.asarray(1.0)},
        fk.ParamsError,
        "degrees of freedom nu",
        monkeypatch,
    )


def test_poisson_rate_not_positive_at_the_start(monkeypatch):
    prob = fk.Problem(None, Line(data=np.array([1.0, 2.0, 3.0]), x=np.arange(3.0)), likelihood="poisson")
    _raises_at_start(
        prob, as_params(slope=-1.0, offset=0.5), fk.ParamsError, "predicted rate is not positive", monkeypatch
    )


def test_unbinned_density_not_positive_at_the_start(monkeypatch):
    prob = fk.Problem(None, Events(data=_events(np.random.default_rng(0), 50), likelihood=fk.Unbinned()))
    bad = as_params(**{**EVENTS_TRUTH, "frac": 1.5})  # (1 - frac) * background < 0 far from the peak
    _raises_at_start(prob, bad, fk.ParamsError, "event density is not positive", monkeypatch)
    extended = fk.Problem(
        None,
        Events(data=_events(np.random.default_rng(0), 50), likelihood=fk.Unbinned(expected=lambda p: p["n"])),
    )
    _raises_at_start(
        extended,
        as_params(**EVENTS_TRUTH, n=-5.0),
        fk.ParamsError,
        "must return one positive number",
        monkeypatch,
    )


class VectorLikelihood(fk.Observation):
    def log_likelihood(self, params, model):
        return -0.5 * (self.data - params["a"]) ** 2  # not summed


def test_custom_log_likelihood_must_be_a_scalar(monkeypatch):
    prob = fk.Problem(None, VectorLikelihood(data=np.arange(3.0), error=1.0))
    _raises_at_start(
        prob, as_params(a=0.5), fk.ParamsError, r"log_likelihood.*must return one float", monkeypatch
    )


def test_prior_function_must_return_a_distribution(monkeypatch):
    prob = fk.Problem(None, _line(error=1.0), priors={"slope": lambda p: p["offset"] * 2.0})
    _raises_at_start(
        prob, LINE, fk.ParamsError, r"prior for 'slope'.*return a numpyro distribution", monkeypatch
    )


def test_custom_log_likelihood_needs_no_error():
    class Exponential(fk.Observation):
        def log_likelihood(self, params, model):
            return jnp.sum(st_expon_logpdf(self.data, params["rate"]))

    prob = fk.Problem(None, Exponential(data=np.array([0.5, 1.0, 2.0])))
    assert float(prob.nll(as_params(rate=1.0))) == pytest.approx(3.5)


def st_expon_logpdf(x, rate):
    return jnp.log(rate) - rate * x


# ------------------------------------------------------ 5. custom log-likelihoods
# fk.fisher under jit: the Hessian of hessian_terms compiles once rather than running op by op
jit_fisher = eqx.filter_jit(fk.fisher)


def _cauchy_problem(rng):
    data = 0.8 * X - 0.2 + ERROR * rng.standard_cauchy(X.size)
    return fk.Problem(None, Cauchy(data=data, error=ERROR, x=X)), data


def test_custom_log_likelihood_nll_and_fisher():
    rng = np.random.default_rng(40)
    prob, data = _cauchy_problem(rng)
    assert prob.n_fisher == 0 and prob.has_hessian_terms and prob.families() == ["custom log_likelihood"]
    _, unravel = fk.tree.ravel(as_params(slope=0.0, offset=0.0))
    evaluate = eqx.filter_jit(
        lambda x: (
            prob.nll(unravel(x)),
            prob.hessian_terms(unravel(x)),
            jax.hessian(lambda z: prob.nll(unravel(z)))(x),
        )
    )
    for _ in range(2):
        params = as_params(slope=rng.normal(), offset=rng.normal())
        p = numpy_params(params)
        expected = -st.cauchy.logpdf(data, p["slope"] * X + p["offset"], ERROR).sum()
        nll, hessian_terms, hessian = evaluate(fk.tree.ravel(params)[0])
        assert float(nll) == pytest.approx(expected, rel=RTOL)
        assert float(hessian_terms) == pytest.approx(expected, rel=RTOL)
        np.testing.assert_allclose(jit_fisher(prob, params), hessian, rtol=1e-10, atol=1e-12)
    # and outside jit, as a user calls it
    np.testing.assert_allclose(fk.fisher(prob, params), hessian, rtol=1e-10, atol=1e-12)


def test_custom_and_family_observations_together():
    rng = np.random.default_rng(41)
    cauchy, _ = _cauchy_problem(rng)
    normal = fk.Problem(None, Line(data=rng.normal(0.8 * X - 0.2, ERROR), error=ERROR, x=X))
    both = fk.Problem(None, [normal.observations[0], cauchy.observations[0]])
    assert not both.vmapped and both.n_fisher == X.size and not both.has_residuals
    params = as_params(slope=0.5, offset=0.1)
    assert float(both.nll(params)) == pytest.approx(float(normal.nll(params) + cauchy.nll(params)), rel=RTOL)
    expected = np.asarray(jit_fisher(normal, params)) + np.asarray(jit_fisher(cauchy, params))
    np.testing.assert_allclose(jit_fisher(both, params), expected, rtol=1e-10)


def test_custom_log_likelihood_solves():
    rng = np.random.default_rng(42)
    prob, data = _cauchy_problem(rng)
    result = fk.solve(prob, as_params(slope=0.0, offset=0.0))
    assert result.valid, result.message

    def nll(v):
        return -st.cauchy.logpdf(data, v[0] * X + v[1], ERROR).sum()

    best = scipy.optimize.minimize(
        nll, [0.8, -0.2], method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-12)
    )
    found = [float(result.params["slope"]), float(result.params["offset"])]
    np.testing.assert_allclose(found, best.x, atol=1e-5)
    assert float(prob.nll(result.params)) <= best.fun + 1e-9


# --------------------------------------------------------- 6. hierarchical priors
def test_hierarchical_prior_and_log_prior_function():
    rng = np.random.default_rng(50)
    data = rng.normal(1.0, 0.5, 4)

    priors = {"theta": lambda p: dist.Normal(p["mu"], p["tau"]), "tau": dist.HalfNormal(5.0)}
    prob = fk.Problem(None, Groups(data=data, error=0.5), priors=priors)
    extra = lambda p: -0.5 * p["mu"] ** 2 / 3.0**2
    with_fn = fk.Problem(None, Groups(data=data, error=0.5), priors=priors, log_prior=extra)
    plain = fk.Problem(None, Groups(data=data, error=0.5))
    _, unravel = fk.tree.ravel(as_params(theta=np.zeros(4), mu=0.0, tau=1.0))
    evaluate = eqx.filter_jit(
        lambda p: (
            prob.log_prior(p),
            prob.nll(p),
            with_fn.log_prior(p),
            with_fn.nll(p),
            jax.hessian(lambda z: -with_fn.log_prior(unravel(z)))(fk.tree.ravel(p)[0]),
        )
    )
    for _ in range(2):
        params = as_params(theta=rng.normal(1.0, 1.0, 4), mu=rng.normal(), tau=rng.uniform(0.2, 3.0))
        p = numpy_params(params)
        prob.check(params)
        log_prior, nll, log_prior_fn, nll_fn, prior_hessian = evaluate(params)
        expected = st.norm.logpdf(p["theta"], p["mu"], p["tau"]).sum() + st.halfnorm.logpdf(
            p["tau"], scale=5.0
        )
        assert float(log_prior) == pytest.approx(expected, rel=RTOL)
        log_lik = st.norm.logpdf(data, p["theta"], 0.5).sum()
        assert float(nll) == pytest.approx(-log_lik - expected, rel=RTOL)
        added = expected - 0.5 * p["mu"] ** 2 / 9.0
        assert float(log_prior_fn) == pytest.approx(added, rel=RTOL)
        assert float(nll_fn) == pytest.approx(-log_lik - added, rel=RTOL)
        # the priors' curvature joins the Fisher information as the Hessian of -log_prior
        np.testing.assert_allclose(
            jit_fisher(with_fn, params),
            np.asarray(jit_fisher(plain, params)) + np.asarray(prior_hessian),
            rtol=1e-10,
            atol=1e-12,
        )
    # a hyperparameter outside its prior's support: named, before anything compiles
    tau_first = fk.Problem(
        None, Groups(data=data, error=0.5), priors={"tau": priors["tau"], "theta": priors["theta"]}
    )
    with pytest.raises(fk.ParamsError, match="'tau' starts outside the support"):
        tau_first.check(as_params(theta=np.zeros(4), mu=0.0, tau=-1.0))


class Groups(fk.Observation):
    def predict(self, params, model):
        return params["theta"]


def test_hierarchical_prior_with_invalid_hyperparameters_at_the_start():
    priors = {"theta": lambda p: dist.Normal(p["mu"], p["tau"]), "tau": dist.HalfNormal(5.0)}
    prob = fk.Problem(None, Groups(data=np.ones(4), error=0.5), priors=priors)
    with pytest.raises(fk.ParamsError, match="'t(heta|au)'"):
        prob.check(as_params(theta=np.zeros(4), mu=0.0, tau=-1.0))
