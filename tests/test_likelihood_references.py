"""The likelihood families against independent references.

- emcee's "fitting a model to data" line (a fitted noise model, `fk.Normal(scale=...)`):
  the maximum likelihood against scipy on a numpy nll, and the posterior
  quantiles of `fk.sample` against a brute-force grid integration (and, loosely,
  the values the emcee tutorial publishes).
- `fk.StudentT` on a line with 10% outliers: it recovers the truth where
  `fk.Normal` is biased; optimum and covariance against scipy and the analytic Hessian.
- `fk.Unbinned` (plain and extended) against iminuit's `UnbinnedNLL` /
  `ExtendedUnbinnedNLL` with MIGRAD and HESSE: values, errors and the cost.
- `fk.MultivariateNormal` with an exponential (OU) covariance: the optimum
  and covariance against the GLS closed form, and (slow) the coverage of the
  1-sigma intervals over 2000 simulated data sets.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.scipy.special import ndtr
from scipy.special import ndtr as np_ndtr

import fitkit as fk


class Line(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return params["m"] * self.x + params["b"]


def _as_params(**values):
    return {k: jnp.asarray(v, jnp.float64) for k, v in values.items()}


def _floats(params, names):
    return np.array([float(params[k]) for k in names])


# ----------------------------------------------------------------------------------------------
# 1. emcee's line with underestimated errors
# ----------------------------------------------------------------------------------------------

# emcee's tutorial (docs/tutorials/line, emcee 3): the maximum likelihood printed there, and the
# 16/50/84% quantiles of its 32 walkers x 5000 steps (100 discarded, thinned by 15).
EMCEE_ML = {"m": -1.003, "b": 4.528, "f": 0.454}
EMCEE_QUANTILES = {
    "m": (-1.007 - 0.078, -1.007, -1.007 + 0.080),
    "b": (4.544 - 0.357, 4.544, 4.544 + 0.359),
    "log_f": (-0.771 - 0.151, -0.771, -0.771 + 0.162),
}
EMCEE_BOUNDS = {"m": (-5.0, 0.5), "b": (0.0, 10.0), "log_f": (-10.0, 1.0)}
NAMES = ("m", "b", "log_f")


def _emcee_data():
    np.random.seed(123)
    m_true, b_true, f_true = -0.9594, 4.294, 0.534
    n = 50
    x = np.sort(10 * np.random.rand(n))
    yerr = 0.1 + 0.5 * np.random.rand(n)
    y = m_true * x + b_true
    y += np.abs(f_true * y) * np.random.randn(n)
    y += yerr * np.random.randn(n)
    return x, y, yerr


def _emcee_nll(m, b, log_f, x, y, yerr):
    """emcee's negative log-likelihood (with its 2 pi), broadcasting over the params' grids."""
    model = m * x + b
    s2 = yerr**2 + np.exp(2 * log_f) * model**2
    return 0.5 * np.sum((y - model) ** 2 / s2 + np.log(2 * np.pi * s2), axis=-1)


@pytest.fixture(scope="module")
def emcee_line():
    x, y, yerr = _emcee_data()
    noise = fk.Normal(scale=lambda p, mu, err: jnp.sqrt(err**2 + jnp.exp(2 * p["log_f"]) * mu**2))
    prob = fk.Problem(None, Line(data=y, error=yerr, x=jnp.asarray(x), likelihood=noise), bounds=EMCEE_BOUNDS)
    res = fk.solve(prob, _as_params(m=-1.0, b=4.0, log_f=-1.0))
    cov = fk.covariance(prob, res)
    return x, y, yerr, prob, res, cov


@pytest.fixture(scope="module")
def emcee_grid(emcee_line):
    """Marginal posterior CDFs of (m, b, log_f) from a 96^3 grid over +-7 sigma around the mode."""
    x, y, yerr, _, res, cov = emcee_line
    mode = _floats(res.params, NAMES)
    std = _floats(cov.std, NAMES)
    n = 96
    axes = [np.linspace(c - 7 * s, c + 7 * s, n) for c, s in zip(mode, std)]
    for axis, name in zip(axes, NAMES):  # the flat prior's bounds lie outside the grid
        assert EMCEE_BOUNDS[name][0] < axis[0] and axis[-1] < EMCEE_BOUNDS[name][1]
    b_grid, f_grid = np.meshgrid(axes[1], axes[2], indexing="ij")
    nll = np.empty((n, n, n))
    for i, m in enumerate(axes[0]):
        nll[i] = _emcee_nll(m, b_grid[..., None], f_grid[..., None], x, y, yerr)
    density = np.exp(-(nll - nll.min()))
    # the density has fallen far below its peak at the grid's faces: nothing is cut off
    for k in range(3):
        assert np.take(density, [0, -1], axis=k).max() < 1e-5
    marginals = {}
    for k, name in enumerate(NAMES):
        pdf = density.sum(axis=tuple(j for j in range(3) if j != k))
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(axes[k]))])
        marginals[name] = (axes[k], pdf / cdf[-1], cdf / cdf[-1])
    return marginals


def _grid_quantiles(marginal, probs):
    axis, _, cdf = marginal
    return np.interp(probs, cdf, axis)


def test_emcee_line_max_likelihood_matches_scipy(emcee_line):
    x, y, yerr, prob, res, _ = emcee_line
    assert res.valid

    def nll(theta):
        return _emcee_nll(*theta, x, y, yerr)

    # emcee's own recipe (start at the least-squares line, log f = log 0.5), then polished by BFGS
    A = np.vander(x, 2)
    w = np.linalg.solve(A.T @ (A / yerr[:, None] ** 2), A.T @ (y / yerr**2))
    start = np.array([w[0], w[1], np.log(0.5)])
    rough = scipy.optimize.minimize(
        nll, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-13}
    )
    ref = scipy.optimize.minimize(nll, rough.x, method="BFGS", options={"gtol": 1e-10})
    got = _floats(res.params, NAMES)
    np.testing.assert_allclose(got, ref.x, atol=1e-6, rtol=0)
    # the same normalised nll (2 pi included), and emcee's printed ML values
    np.testing.assert_allclose(float(prob.nll(res.params)), nll(got), rtol=1e-12)
    assert float(prob.nll(res.params)) <= ref.fun + 1e-10
    np.testing.assert_allclose(got[:2], [EMCEE_ML["m"], EMCEE_ML["b"]], atol=6e-4)
    np.testing.assert_allclose(math.exp(got[2]), EMCEE_ML["f"], atol=6e-4)


def test_emcee_line_grid_matches_published_quantiles(emcee_grid):
    for name in NAMES:
        grid = _grid_quantiles(emcee_grid[name], [0.16, 0.5, 0.84])
        # emcee's own Monte Carlo error on these is about 0.002 (m) to 0.01 (b)
        np.testing.assert_allclose(grid, EMCEE_QUANTILES[name], atol=0.02, err_msg=name)


def test_emcee_line_posterior_quantiles_match_grid(emcee_line, emcee_grid):
    from numpyro.diagnostics import effective_sample_size

    _, _, _, prob, res, cov = emcee_line
    post = fk.sample(prob, res, num_samples=2000, num_warmup=300, num_chains=2, progress=False, key=1)
    probs = np.array([0.16, 0.5, 0.84])
    for name in NAMES:
        draws = np.asarray(post.samples[name])
        assert draws.shape == (2, 2000)
        lo, hi = EMCEE_BOUNDS[name]
        assert (draws > lo).all() and (draws < hi).all()
        axis, pdf, _ = emcee_grid[name]
        exact = _grid_quantiles(emcee_grid[name], probs)
        got = np.quantile(draws, probs)
        # Monte Carlo error of a sample quantile: sqrt(p (1 - p) / ESS) / density, with the ESS of
        # the indicator draws <= q (Vehtari et al. 2021), floored at a tenth of the draws.
        for p, q_exact, q_got in zip(probs, exact, got):
            ess = float(effective_sample_size((draws <= q_exact).astype(float)[..., None])[0])
            ess = max(min(ess, draws.size), draws.size / 10)
            density = np.interp(q_exact, axis, pdf)
            mc_error = math.sqrt(p * (1 - p) / ess) / density
            assert abs(q_got - q_exact) < 4 * mc_error, (name, p, q_got, q_exact, mc_error)
            # and, whatever the ESS estimate, within 0.15 of the Laplace sigma
            assert abs(q_got - q_exact) < 0.15 * float(cov.std[name]), (name, p, q_got, q_exact)


# ----------------------------------------------------------------------------------------------
# 2. Student-t against outliers
# ----------------------------------------------------------------------------------------------

T_TRUTH = {"m": 0.7, "b": 2.0}


def _outlier_line():
    rng = np.random.default_rng(7)
    n = 100
    x = np.sort(rng.uniform(0, 10, n))
    err = np.full(n, 1.0)
    y = T_TRUTH["m"] * x + T_TRUTH["b"] + err * rng.standard_normal(n)
    outliers = rng.choice(n, 10, replace=False)
    y[outliers] += 8 * err[outliers]
    return x, y, err


def _fit_line(family, x, y, err, start=None, bounds=None):
    prob = fk.Problem(None, Line(data=y, error=err, x=jnp.asarray(x), likelihood=family), bounds=bounds)
    res = fk.solve(prob, start or _as_params(m=0.5, b=1.0))
    return prob, res, fk.covariance(prob, res)


def _pulls(res, cov):
    return {k: (float(res.params[k]) - v) / float(cov.std[k]) for k, v in T_TRUTH.items()}


def _t_nll(theta, x, y, err, nu):
    z = (y - theta[0] * x - theta[1]) / err
    norm = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * np.log(nu * np.pi)
    return -np.sum(norm - np.log(err) - 0.5 * (nu + 1) * np.log1p(z**2 / nu))


def test_student_t_resists_outliers_where_normal_is_biased():
    x, y, err = _outlier_line()
    _, normal, normal_cov = _fit_line(fk.Normal(), x, y, err)
    _, robust, robust_cov = _fit_line(fk.StudentT(nu=3.0), x, y, err)
    assert normal.valid and robust.valid
    normal_pulls, robust_pulls = _pulls(normal, normal_cov), _pulls(robust, robust_cov)
    # 10 of 100 points 8 sigma high pull the normal fit's intercept up by ~0.8 (its std is 0.2)
    assert normal_pulls["b"] > 3.0, normal_pulls
    assert all(abs(v) < 3.0 for v in robust_pulls.values()), robust_pulls
    # with fitted tails the t fit also recovers the truth, and finds heavy tails
    _, fitted, fitted_cov = _fit_line(
        fk.StudentT(nu=lambda p: p["nu"]),
        x,
        y,
        err,
        start=_as_params(m=0.5, b=1.0, nu=5.0),
        bounds={"nu": (0.1, 100.0)},
    )
    assert fitted.valid
    assert all(abs(v) < 3.0 for v in _pulls(fitted, fitted_cov).values())
    assert float(fitted.params["nu"]) < 5.0


def test_student_t_optimum_and_covariance_match_references():
    x, y, err = _outlier_line()
    nu = 3.0
    _, res, cov = _fit_line(fk.StudentT(nu=nu), x, y, err)
    ref = scipy.optimize.minimize(
        _t_nll, [0.5, 1.0], args=(x, y, err, nu), method="BFGS", options={"gtol": 1e-11}
    )
    got = _floats(res.params, ("m", "b"))
    np.testing.assert_allclose(got, ref.x, atol=1e-6, rtol=0)
    # the Hessian of sum (nu+1)/2 log(1 + z^2/nu) for a line: sum w_i [x_i, 1][x_i, 1]^T with
    # w = (nu + 1)(nu - z^2) / ((nu + z^2)^2 s^2)
    z = (y - got[0] * x - got[1]) / err
    w = (nu + 1) * (nu - z**2) / ((nu + z**2) ** 2 * err**2)
    X = np.stack([x, np.ones_like(x)], axis=1)
    expected = np.linalg.inv(X.T @ (w[:, None] * X))
    order = [cov.names.index(k) for k in ("m", "b")]
    np.testing.assert_allclose(np.asarray(cov.matrix)[np.ix_(order, order)], expected, rtol=1e-8)
    # the fitted-nu fit against scipy on (m, b, nu)
    _, fitted, _ = _fit_line(
        fk.StudentT(nu=lambda p: p["nu"]),
        x,
        y,
        err,
        start=_as_params(m=0.5, b=1.0, nu=5.0),
        bounds={"nu": (0.1, 100.0)},
    )
    ref3 = scipy.optimize.minimize(
        lambda t: _t_nll(t[:2], x, y, err, t[2]),
        [0.5, 1.0, 5.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000},
    )
    ref3 = scipy.optimize.minimize(
        lambda t: _t_nll(t[:2], x, y, err, t[2]), ref3.x, method="BFGS", options={"gtol": 1e-10}
    )
    np.testing.assert_allclose(_floats(fitted.params, ("m", "b", "nu")), ref3.x, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------
# 3. Unbinned Gaussian plus exponential against iminuit
# ----------------------------------------------------------------------------------------------

LO, HI = 0.0, 10.0
EVENT_NAMES = ("f", "mu", "sigma", "lam")


def _events():
    rng = np.random.default_rng(11)
    n_sig, n_bkg = 300, 700
    sig = rng.normal(4.0, 0.6, 3 * n_sig)
    sig = sig[(sig > LO) & (sig < HI)][:n_sig]
    bkg = rng.exponential(1 / 0.3, 3 * n_bkg)
    bkg = bkg[(bkg > LO) & (bkg < HI)][:n_bkg]
    return rng.permutation(np.concatenate([sig, bkg]))


def _gauss(x, mu, sigma, xp=jnp, cdf=ndtr):
    """A normal density truncated to [LO, HI] (normalised there)."""
    norm = cdf((HI - mu) / sigma) - cdf((LO - mu) / sigma)
    return xp.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi) * norm)


def _expo(x, lam, xp=jnp):
    """An exponential density truncated to [LO, HI]."""
    return lam * xp.exp(-lam * (x - LO)) / (1 - xp.exp(-lam * (HI - LO)))


def _np_mixture(x, f, mu, sigma, lam):
    return f * _gauss(x, mu, sigma, np, np_ndtr) + (1 - f) * _expo(x, lam, np)


class Events(fk.Observation):
    def predict(self, p, model):
        return p["f"] * _gauss(self.data, p["mu"], p["sigma"]) + (1 - p["f"]) * _expo(self.data, p["lam"])


class ExtendedEvents(fk.Observation):
    def predict(self, p, model):
        total = p["n_sig"] + p["n_bkg"]
        return (
            p["n_sig"] * _gauss(self.data, p["mu"], p["sigma"]) + p["n_bkg"] * _expo(self.data, p["lam"])
        ) / total


def _migrad(cost, start, limits=None):
    from iminuit import Minuit

    m = Minuit(cost, **start)
    m.strategy = 2
    m.tol = 1e-6  # EDM goal 2e-9 (errordef 1 for iminuit's costs, which are 2 * nll)
    for name, (lo, hi) in (limits or {}).items():
        m.limits[name] = (lo, hi)
    m.migrad()
    m.hesse()
    assert m.valid and m.accurate
    return m


def _compare_to_minuit(res, cov, minuit, names, rtol=1e-4):
    """fitkit's optimum and Hessian covariance against MIGRAD's values and HESSE's covariance.

    HESSE's covariance, not `Minuit.errors`: for a param with limits, iminuit's `errors` map the
    internal error through the limits' transform non-linearly (4e-4 off the covariance here),
    while the covariance is the linear transform, the inverse Hessian in the params.
    """
    values = _floats(res.params, names)
    ref_values = np.array([minuit.values[k] for k in names])
    np.testing.assert_allclose(values, ref_values, rtol=rtol)
    # the values also agree to a tiny fraction of their errors
    ref_order = [minuit.parameters.index(k) for k in names]
    ref_matrix = np.array(minuit.covariance)[np.ix_(ref_order, ref_order)]
    ref_errors = np.sqrt(np.diag(ref_matrix))
    assert np.all(np.abs(values - ref_values) < 1e-3 * ref_errors)
    np.testing.assert_allclose(_floats(cov.std, names), ref_errors, rtol=rtol)
    order = [cov.names.index(k) for k in names]
    matrix = np.asarray(cov.matrix)[np.ix_(order, order)]
    correlation = matrix / np.outer(np.sqrt(np.diag(matrix)), np.sqrt(np.diag(matrix)))
    np.testing.assert_allclose(correlation, ref_matrix / np.outer(ref_errors, ref_errors), atol=rtol)


@pytest.mark.parametrize("bounded", [False, True], ids=["free", "bounded"])
def test_unbinned_mixture_matches_iminuit(bounded):
    cost_functions = pytest.importorskip("iminuit.cost")
    x = _events()
    limits = {"f": (0.0, 1.0), "sigma": (0.0, None), "lam": (0.0, None)} if bounded else None
    prob = fk.Problem(None, Events(data=x, likelihood=fk.Unbinned()), bounds=limits)
    start = dict(f=0.4, mu=3.8, sigma=0.5, lam=0.25)
    res = fk.solve(prob, _as_params(**start))
    assert res.valid
    cov = fk.covariance(prob, res)
    cost = cost_functions.UnbinnedNLL(x, _np_mixture)
    minuit = _migrad(
        cost, start, {k: (lo, np.inf if hi is None else hi) for k, (lo, hi) in (limits or {}).items()}
    )
    _compare_to_minuit(res, cov, minuit, EVENT_NAMES)
    # UnbinnedNLL is -2 sum log f: twice fitkit's nll, with no constant dropped
    point = dict(f=0.35, mu=4.1, sigma=0.55, lam=0.28)
    np.testing.assert_allclose(2 * float(prob.nll(_as_params(**point))), cost(*point.values()), rtol=1e-12)
    np.testing.assert_allclose(2 * float(prob.nll(res.params)), minuit.fval, rtol=1e-12)


def test_extended_unbinned_mixture_matches_iminuit():
    cost_functions = pytest.importorskip("iminuit.cost")
    x = _events()
    family = fk.Unbinned(expected=lambda p: p["n_sig"] + p["n_bkg"])
    prob = fk.Problem(None, ExtendedEvents(data=x, likelihood=family))
    start = dict(n_sig=250.0, n_bkg=800.0, mu=3.8, sigma=0.5, lam=0.25)
    res = fk.solve(prob, _as_params(**start))
    assert res.valid
    cov = fk.covariance(prob, res)

    def scaled_pdf(xx, n_sig, n_bkg, mu, sigma, lam):
        return n_sig + n_bkg, n_sig * _gauss(xx, mu, sigma, np, np_ndtr) + n_bkg * _expo(xx, lam, np)

    cost = cost_functions.ExtendedUnbinnedNLL(x, scaled_pdf)
    minuit = _migrad(cost, start)
    names = ("n_sig", "n_bkg", "mu", "sigma", "lam")
    _compare_to_minuit(res, cov, minuit, names)
    # the extended fit's total is the number of events, with a Poisson error sqrt(n)
    total = float(res.params["n_sig"] + res.params["n_bkg"])
    np.testing.assert_allclose(total, x.size, rtol=1e-8)
    # ExtendedUnbinnedNLL is 2 (N - sum log(N f)) = 2 (N - n log N - sum log f): twice fitkit's
    # nll (sum log f + n log N - N, negated) exactly; neither has the log n! of the Poisson term
    point = dict(n_sig=280.0, n_bkg=690.0, mu=4.1, sigma=0.55, lam=0.28)
    np.testing.assert_allclose(2 * float(prob.nll(_as_params(**point))), cost(*point.values()), rtol=1e-12)
    np.testing.assert_allclose(2 * float(prob.nll(res.params)), minuit.fval, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# 4. Correlated (OU) noise: GLS and coverage
# ----------------------------------------------------------------------------------------------

OU_TRUTH = {"m": 0.4, "b": -1.0}


def _ou_setup(n=60, amplitude=0.5, length=1.5):
    t = np.linspace(0.0, 10.0, n)
    C = amplitude**2 * np.exp(-np.abs(t[:, None] - t[None, :]) / length)
    X = np.stack([t, np.ones(n)], axis=1)  # columns (m, b)
    C_inv_X = np.linalg.solve(C, X)
    gls_cov = np.linalg.inv(X.T @ C_inv_X)
    gls = lambda y: gls_cov @ (C_inv_X.T @ y)  # noqa: E731
    return t, C, np.linalg.cholesky(C), gls, gls_cov


def _ou_fit(t, C, y):
    obs = Line(data=y, x=jnp.asarray(t), likelihood=fk.MultivariateNormal(covariance=jnp.asarray(C)))
    prob = fk.Problem(None, obs)
    return prob, fk.solve(prob, _as_params(m=0.0, b=0.0))


def test_multivariate_normal_matches_gls():
    t, C, L, gls, gls_cov = _ou_setup()
    gls_std = np.sqrt(np.diag(gls_cov))
    rng = np.random.default_rng(3)
    for _ in range(5):
        y = OU_TRUTH["m"] * t + OU_TRUTH["b"] + L @ rng.standard_normal(t.size)
        prob, res = _ou_fit(t, C, y)
        assert res.valid
        # the solve stops on a step-size test: equal to a millionth of the errors
        assert np.all(np.abs(_floats(res.params, ("m", "b")) - gls(y)) < 1e-6 * gls_std)
    cov = fk.covariance(prob, res)
    order = [cov.names.index(k) for k in ("m", "b")]
    np.testing.assert_allclose(np.asarray(cov.matrix)[np.ix_(order, order)], gls_cov, rtol=1e-9)
    # the normalised log-likelihood: -0.5 r^T C^-1 r - 0.5 log det(2 pi C)
    r = y - gls(y) @ np.stack([t, np.ones_like(t)])
    expected = -0.5 * r @ np.linalg.solve(C, r) - 0.5 * np.linalg.slogdet(2 * np.pi * C)[1]
    np.testing.assert_allclose(float(prob.log_likelihood(res.params)), expected, rtol=1e-10)


@pytest.mark.slow
def test_multivariate_normal_coverage():
    t, C, L, gls, gls_cov = _ou_setup()
    gls_std = np.sqrt(np.diag(gls_cov))
    rng = np.random.default_rng(2024)
    n_sets = 2000
    truth = _floats(OU_TRUTH, ("m", "b"))
    std = None
    inside = np.zeros(2)
    for _ in range(n_sets):
        y = truth[0] * t + truth[1] + L @ rng.standard_normal(t.size)
        prob, res = _ou_fit(t, C, y)
        assert res.valid
        got = _floats(res.params, ("m", "b"))
        assert np.all(np.abs(got - gls(y)) < 1e-6 * gls_std)
        if std is None:  # a linear model: the covariance does not depend on the data
            std = _floats(fk.covariance(prob, res).std, ("m", "b"))
            np.testing.assert_allclose(std, np.sqrt(np.diag(gls_cov)), rtol=1e-9)
        inside += np.abs(got - truth) < std
    coverage = inside / n_sets
    # binomial sd of the coverage: sqrt(0.68 * 0.32 / 2000) = 0.010
    np.testing.assert_allclose(coverage, 0.6827, atol=0.03)
