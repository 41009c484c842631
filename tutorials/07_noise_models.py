# %% [markdown]
# # 7. Noise models: the line with underestimated errors
#
# emcee's tutorial "Fitting a model to data" fits a straight line to 50
# points whose quoted error bars are too small: besides the quoted
# `yerr_n`, every point scatters by a fixed fraction `f` of the model. This
# is the everyday situation of a catalogue whose errors are only
# statistical, or a reduction whose noise model is incomplete: the
# chi-squared comes out far above the number of points, and the question is
# what to believe.
#
# Rescaling the errors by `sqrt(chi2r)` until the fit "looks good" assumes
# that every error is too small by the same factor. The better answer
# (Hogg, Bovy & Lang 2010, arXiv:1008.4686) is to write down a *generative*
# model of the noise, with parameters of its own, and to fit them with the
# line:
#
#     y_n ~ Normal(m x_n + b, s_n^2),   s_n^2 = yerr_n^2 + f^2 (m x_n + b)^2 .
#
# The log-likelihood is then
#
#     ln L = -1/2 sum_n [ (y_n - m x_n - b)^2 / s_n^2 + ln(2 pi s_n^2) ] ,
#
# and the second term, the normalisation, now depends on the params. In
# fitkit the noise model is part of the observation's likelihood:
# `fk.Normal(scale=lambda params, prediction, error: s)` returns the standard
# deviation of every point from the params, the prediction and the quoted
# error. Everything downstream (`fk.solve`, `fk.covariance`, `fk.sample`,
# AIC, BIC, the Laplace evidence) uses the normalised log-likelihood.

# %%
import importlib.util
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy.special import logsumexp

import fitkit as fk
import fitkit.plot

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"
NAMES = ("m", "b", "log_f")


def show(params, digits=4):
    """A params pytree as a flat dict of rounded floats, for printing."""
    flat = fk.tree.ravel(params)[0]
    return {name: round(float(v), digits) for name, v in zip(fk.tree.names(params), flat)}


# %% [markdown]
# ## The data
# emcee's synthetic data set, generated exactly as there (NumPy's legacy
# global generator, seed 123), so that every number below can be compared
# with the numbers emcee's documentation prints.

# %%
np.random.seed(123)
m_true, b_true, f_true = -0.9594, 4.294, 0.534
N = 50
x = np.sort(10 * np.random.rand(N))
yerr = 0.1 + 0.5 * np.random.rand(N)
y = m_true * x + b_true
y += np.abs(f_true * y) * np.random.randn(N)
y += yerr * np.random.randn(N)
truth = {"m": m_true, "b": b_true, "log_f": np.log(f_true)}


class Line(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return params["m"] * self.x + params["b"]


# %% [markdown]
# ## 1. The naive fit: the quoted errors taken at their word
# With the default likelihood (`fk.Normal()` with the observation's `error`)
# the fit is linear least squares: `fk.solve` runs Levenberg-Marquardt on
# the z-scores. It reproduces emcee's least-squares numbers
# (`m = -1.104 +- 0.016`, `b = 5.441 +- 0.091`), but the reduced chi-squared
# is about 26: the errors cannot be right, and neither can error bars
# computed from them.

# %%
start = {"m": -1.0, "b": 4.0}
naive = fk.Problem(None, Line(data=y, error=yerr, x=x), bounds={"m": (-5.0, 0.5), "b": (0.0, 10.0)})
naive_fit = fk.solve(naive, start)
naive_cov = fk.covariance(naive, naive_fit)
print(naive_fit.method, naive_fit.valid)
print(naive_cov.to_dataframe().round(3))
chi2, ddof = float(naive.chi2(naive_fit.params)), naive.ddof(naive_fit.params)
print(f"chi2 = {chi2:.1f} for {ddof} degrees of freedom, chi2r = {chi2 / ddof:.2f}")
pulls = {k: (float(naive_fit.params[k]) - truth[k]) / float(naive_cov.std[k]) for k in ("m", "b")}
print("pulls of the truth (estimate - truth) / std:", {k: round(v, 1) for k, v in pulls.items()})

# %% [markdown]
# The truth lies 9 and 13 "standard deviations" away. The bounds are emcee's
# uniform priors (section 5 uses them); they are far from the optimum and
# change nothing here.
#
# ## 2. The noise model
# `log_f` rather than `f` is the param, as in emcee: it keeps `f` positive,
# and a uniform prior on `log f` is the usual scale-free choice for a
# quantity whose order of magnitude is unknown. The bounds are emcee's
# priors, `-5 < m < 1/2`, `0 < b < 10`, `-10 < log f < 1`; for the maximum
# likelihood they only keep the search in a sensible box.
#
# `fk.solve` sees that this likelihood is not a sum of squares and picks a
# minimiser: the exact-Hessian trust-region Newton method.


# %%
def fractional(params, prediction, error):
    """emcee's noise model: the quoted error plus a fraction f of the model, in quadrature."""
    return jnp.sqrt(error**2 + jnp.exp(2 * params["log_f"]) * prediction**2)


bounds = {"m": (-5.0, 0.5), "b": (0.0, 10.0), "log_f": (-10.0, 1.0)}
problem = fk.Problem(
    None, Line(data=y, error=yerr, x=x, likelihood=fk.Normal(scale=fractional)), bounds=bounds
)
print(problem.families())
fit = fk.solve(problem, {"m": -1.0, "b": 4.0, "log_f": -1.0})
print(fit)
print("maximum likelihood:", show(fit.params, 3), f" f = {np.exp(float(fit.params['log_f'])):.3f}")
print("emcee's published ML estimate: m = -1.003, b = 4.528, f = 0.454")
print(f"max log-likelihood {fit.log_likelihood:.3f} (normalisation included), {fit.n_free} free params")

# %% [markdown]
# Identical to the three decimals emcee prints. `fit.log_likelihood` is the
# full `ln L`, `2 pi` included, the same number as emcee's
# `log_likelihood` function plus `-N/2 ln(2 pi)` (emcee drops the constant).
#
# ## 3. Why Levenberg-Marquardt does not apply
# Least-squares solvers (Levenberg-Marquardt, Gauss-Newton, scipy's
# `least_squares`, lmfit's default) minimise a sum of squares `sum r_n^2`.
# With fixed errors `-2 ln L` is exactly that, with `r_n` the z-scores, up to
# a constant. With a noise model it is `sum z_n^2 + sum ln(2 pi s_n^2)`, and
# the second sum is not a square of anything. Dropping it is not an option:
# the chi-squared alone keeps falling as `f` grows (larger error bars always
# "fit better"), so a least-squares solver handed the z-scores would drive
# `f` to its upper bound. The normalisation is what makes the noise
# parameters identifiable: it charges `ln s_n` for every bit of error bar.

# %%
print(f"{'log_f':>6} {'sum z^2':>9} {'sum ln(2 pi s^2)':>17} {'-2 ln L':>9}")
for log_f in (-2.0, -1.0, float(fit.params["log_f"]), 0.0, 1.0):
    p = {**fit.params, "log_f": jnp.asarray(log_f)}
    z2 = float(jnp.nansum(problem.z_scores(p)[0] ** 2))
    deviance = -2.0 * float(problem.log_likelihood(p))
    print(f"{log_f:6.2f} {z2:9.2f} {deviance - z2:17.2f} {deviance:9.2f}")

# %% [markdown]
# fitkit knows which likelihoods are sums of squares, and asking for a
# least-squares method on one that is not fails before anything is compiled:

# %%
try:
    fk.solve(problem, fit, method="levenberg-marquardt")
except ValueError as err:
    print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## 4. Error bars: the Laplace approximation
# `fk.covariance` inverts the Hessian of `-ln L` at the maximum. With
# `method="fisher"` it inverts the *expected* Fisher information instead,
# which for a Normal noise model is known in closed form:
# `sum_n [ (d mu_n)^2 / s_n^2 + 2 (d ln s_n)^2 ]` (the second term is the
# information the scatter carries about the noise params, and, since
# `s_n` grows with the model, a little about `m` and `b` too). The two agree
# to about 1% here.

# %%
cov = fk.covariance(problem, fit)
fisher_cov = fk.covariance(problem, fit, method="fisher")
print(cov.to_dataframe().join(fisher_cov.to_dataframe()[["std"]], rsuffix=" (fisher)").round(4))
print("correlation m-b:", round(float(cov.correlation[cov.names.index("m"), cov.names.index("b")]), 3))

# %% [markdown]
# ## 5. The posterior
# emcee samples `p(m, b, log f | data)` with 32 walkers for 5000 steps, with
# the uniform priors above. `fk.sample` runs NUTS on the same posterior: the
# bounds with no prior given are the uniform priors (the sampler moves in
# the unconstrained space and adds the log-Jacobian of the map, so the
# prior is uniform in `m`, `b` and `log f` as declared).

# %%
num_chains, num_samples = (1, 1000) if QUICK else (4, 5000)
post = fk.sample(problem, fit, num_samples=num_samples, num_chains=num_chains, key=1, progress=False)
print(post)
print(post.summary()[["mean", "std", "ess_bulk", "r_hat"]].round(4).to_string())


def quantiles(draws):
    """The 16/50/84% quantiles of some draws, as (median, +upper, -lower)."""
    q16, q50, q84 = np.percentile(np.ravel(draws), [16, 50, 84])
    return q50, q84 - q50, q50 - q16


# emcee's documentation ("Fitting a model to data", emcee 3 notebook): 16/50/84% quantiles of
# 32 walkers x 5000 steps, the first 100 discarded, thinned by 15. (An older rendering of the
# same page printed -1.007 +0.080 -0.078, 4.544 +0.359 -0.357 and -0.771 +0.162 -0.151: the
# published figures themselves move by Monte Carlo noise of this size.)
EMCEE_PUBLISHED = {"m": (-1.007, 0.077, 0.081), "b": (4.550, 0.366, 0.358), "log_f": (-0.772, 0.161, 0.148)}


def row(name, values):
    return f"{name:>6} " + "  ".join(f"{v[0]:7.3f} +{v[1]:.3f} -{v[2]:.3f}" for v in values)


print(f"{'':>6} {'fitkit NUTS':>21}  {'emcee (published)':>21}  {'Laplace: ML +- std':>21}")
for name in NAMES:
    laplace = (float(fit.params[name]), float(cov.std[name]), float(cov.std[name]))
    print(row(name, [quantiles(post.samples[name]), EMCEE_PUBLISHED[name], laplace]))

# %% [markdown]
# The medians and 68% intervals agree with emcee's to within the Monte Carlo
# error of either run (a few thousandths to a hundredth for these ESS). The
# Laplace intervals are centred on the maximum likelihood rather than the
# median: the posterior of `log f` is a little skewed (longer towards large
# `f`), so its median lies above the mode, and `b` and `m` follow through
# their correlation with it.
#
# When emcee is installed, the same posterior can be sampled by emcee itself,
# with its recipe: walkers in a small ball around the maximum likelihood,
# then the chain thinned. (It is not a fitkit dependency: this cell skips
# itself otherwise.)

# %%
if importlib.util.find_spec("emcee") is None:
    print("emcee is not installed; skipping the side-by-side run")
else:
    import emcee

    def log_probability(theta):
        m, b, log_f = theta
        inside = -5.0 < m < 0.5 and 0.0 < b < 10.0 and -10.0 < log_f < 1.0
        if not inside:
            return -np.inf
        model = m * x + b
        s2 = yerr**2 + model**2 * np.exp(2 * log_f)
        return -0.5 * np.sum((y - model) ** 2 / s2 + np.log(s2))

    rng = np.random.default_rng(42)
    ml = np.array([float(fit.params[name]) for name in NAMES])
    sampler = emcee.EnsembleSampler(32, 3, log_probability)
    clock = time.perf_counter()
    sampler.run_mcmc(ml + 1e-4 * rng.normal(size=(32, 3)), 2000 if QUICK else 5000, progress=False)
    flat = sampler.get_chain(discard=100, thin=15, flat=True)
    seconds = time.perf_counter() - clock
    print(f"emcee {emcee.__version__}: {flat.shape[0]} draws kept, {seconds:.1f} s")
    print(f"{'':>6} {'fitkit NUTS':>21}  {'emcee (this run)':>21}")
    for i, name in enumerate(NAMES):
        print(row(name, [quantiles(post.samples[name]), quantiles(flat[:, i])]))

# %% [markdown]
# The figure shows the data, the truth, the least-squares line (too steep,
# pulled by the few points with the smallest error bars) and the maximum
# likelihood with 100 lines drawn from the posterior. On the right, the
# residuals in units of the noise (`problem.z_scores`, which for a noise
# model divides by the fitted `s_n`): with the quoted errors they spread
# from -7 to +21, with the noise model they look like a unit normal.

# %%
x0 = np.linspace(0.0, 10.0, 200)
draws = {k: np.ravel(v) for k, v in post.samples.items()}
pick = np.random.default_rng(0).choice(draws["m"].size, 100, replace=False)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
for i in pick:
    left.plot(x0, draws["m"][i] * x0 + draws["b"][i], c="C2", alpha=0.08, lw=1)
left.errorbar(x, y, yerr=yerr, fmt=".k", capsize=0, label="data (quoted errors)")
left.plot(x0, m_true * x0 + b_true, c="k", alpha=0.3, lw=3, label="truth")
left.plot(
    x0, float(naive_fit.params["m"]) * x0 + float(naive_fit.params["b"]), "--", c="C0", label="least squares"
)
left.plot(
    x0, float(fit.params["m"]) * x0 + float(fit.params["b"]), c="C3", label="max. likelihood, noise model"
)
left.plot([], [], c="C2", label="posterior draws")
left.set(xlim=(0, 10), xlabel="x", ylabel="y", title="emcee's line: quoted errors too small")
left.legend(fontsize="small")
bins = np.arange(-8.0, 22.5, 1.0)
right.hist(np.asarray(naive.z_scores(naive_fit.params)[0]), bins=bins, alpha=0.5, label="quoted errors")
right.hist(np.asarray(problem.z_scores(fit.params)[0]), bins=bins, alpha=0.5, label="noise model")
grid = np.linspace(-4, 4, 200)
right.plot(
    grid, N * (bins[1] - bins[0]) * np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), c="k", label="N(0, 1)"
)
right.set(xlabel="(y - model) / sigma", ylabel="points", title="Residuals in units of the noise")
right.legend(fontsize="small")
fig.tight_layout()
fk.plot.show(fig, "07_line")

# %% [markdown]
# The corner plot of the posterior and of the Laplace approximation: close,
# apart from the skew of `log f`.

# %%
fig = fk.plot.corner(
    [post, cov], truth=truth, labels=["NUTS posterior", "Laplace (Hessian)"], covariance_draws=20_000
)
fk.plot.show(fig, "07_corner")

# %% [markdown]
# ## 6. A second noise model, and which one the data prefer
# A fractional error is one guess. Another is a *jitter*: an extra scatter of
# fixed size added in quadrature to every point (stellar jitter in radial
# velocities, an intrinsic scatter about a scaling relation):
#
#     s_n^2 = yerr_n^2 + exp(2 log_jitter) .
#
# Same number of params, same kind of uniform prior (`log_jitter` in
# `(-10, 1)`); only the noise model changes.


# %%
def jitter(params, prediction, error):
    """A constant extra scatter, in quadrature with the quoted error."""
    return jnp.sqrt(error**2 + jnp.exp(2 * params["log_jitter"]))


jitter_problem = fk.Problem(
    None,
    Line(data=y, error=yerr, x=x, likelihood=fk.Normal(scale=jitter)),
    bounds={"m": (-5.0, 0.5), "b": (0.0, 10.0), "log_jitter": (-10.0, 1.0)},
)
jitter_fit = fk.solve(jitter_problem, {"m": -1.0, "b": 4.0, "log_jitter": 0.0})
jitter_cov = fk.covariance(jitter_problem, jitter_fit)
print(
    jitter_fit.valid,
    show(jitter_fit.params, 3),
    f" jitter = {np.exp(float(jitter_fit.params['log_jitter'])):.3f}",
)
print(jitter_cov.to_dataframe().round(3))

# %% [markdown]
# Three ways to compare the models, each fitted to the same 50 points:
#
# * **AIC** `= 2k - 2 ln L_max` estimates the expected predictive error, and
#   **BIC** `= k ln n - 2 ln L_max` approximates `-2 ln Z` for large `n`;
#   lower is better, and a difference above about 10 is decisive.
# * The **Laplace evidence** `ln Z ~ ln L_max + ln pi(theta_max) +
#   (k/2) ln 2 pi + (1/2) ln det C` approximates the marginal likelihood
#   `Z = int L pi d theta` by a Gaussian integral around the mode. It needs
#   proper priors: here the uniform priors of the bounds, the same volume
#   for both noise models. Differences of `ln Z` are log Bayes factors.
#
# `fit.aic`, `fit.bic`, `fit.log_likelihood` and `fit.n_free` are on every
# `FitResult`; `fk.laplace_evidence(problem, fit)` computes `ln Z` (and says
# what it assumed).

# %%
models = {
    "quoted errors": (naive, naive_fit, naive_cov),
    "fractional f": (problem, fit, cov),
    "jitter": (jitter_problem, jitter_fit, jitter_cov),
}
evidence = {name: fk.laplace_evidence(*model) for name, model in models.items()}
print(f"{'model':>14} {'k':>2} {'ln L_max':>9} {'AIC':>8} {'BIC':>8} {'ln Z (Laplace)':>15}")
for name, (_, res, _) in models.items():
    row = f"{name:>14} {res.n_free:2d} {res.log_likelihood:9.2f} {res.aic:8.2f} {res.bic:8.2f}"
    print(row, f"{evidence[name].log_evidence:15.2f}")
print(evidence["fractional f"].assumptions)
bayes = evidence["fractional f"].log_evidence - evidence["jitter"].log_evidence
print(f"ln Bayes factor, fractional over jitter: {bayes:.2f} (odds {np.exp(bayes):.1e} : 1)")

# %% [markdown]
# The quoted errors alone are excluded by more than a thousand units of AIC
# and BIC. Between the two noise models, the fractional one (the truth) is
# preferred by about 44 in AIC and BIC and by a log Bayes factor of about
# 21, far beyond the `ln B > 5` that Jeffreys' scale calls decisive: the
# scatter grows with `|model|`, which is large at both ends and near zero
# around `x = 4.5`, and a constant jitter cannot follow that. With equal
# `k` and equal prior volumes the three criteria rank the models by
# `ln L_max` alone; they would differ for models with different numbers of
# params or priors of different widths.
#
# Is the Laplace approximation good enough for an evidence? With three
# params the integral can be done by brute force. `m` and `b` are 99%
# correlated, so a grid along the params' own axes would need to be very
# fine to resolve the ridge; a grid in the whitened coordinates `u`, with
# `theta = theta_max + L u` and `L` the Cholesky factor of the covariance,
# follows it. The likelihood on `60^3` such points (`40^3` with
# `FITKIT_QUICK=1`) over `|u| < 7`, summed and multiplied by the cell volume
# `|det L| du^3` and the prior density `1/V` (constant inside the prior
# box), is the evidence.


# %%
def grid_log_evidence(sigma_of, centre, covariance, n=40 if QUICK else 60):
    """ln Z = ln int L(theta) / V d^3 theta on an n^3 grid in whitened coordinates; s = sigma_of(model, c)."""
    chol = np.linalg.cholesky(covariance)
    u = np.linspace(-7.0, 7.0, n)
    u1, u2 = (a.ravel() for a in np.meshgrid(u, u, indexing="ij"))
    log_like = []
    for u0 in u:  # one slice of the grid at a time
        theta = centre + np.stack([np.full_like(u1, u0), u1, u2], axis=-1) @ chol.T
        model = theta[:, :1] * x + theta[:, 1:2]
        s = sigma_of(model, theta[:, 2:])
        log_like.append(-0.5 * np.sum((y - model) ** 2 / s**2 + np.log(2 * np.pi * s**2), axis=-1))
    log_cell = 3 * np.log(u[1] - u[0]) + np.sum(np.log(np.diag(chol)))
    volume = 5.5 * 10.0 * 11.0  # the prior box: (0.5 + 5) x (10 - 0) x (1 + 10)
    return float(logsumexp(np.concatenate(log_like)) + log_cell - np.log(volume))


noise_models = {
    "fractional f": (lambda mu, c: np.sqrt(yerr**2 + np.exp(2 * c) * mu**2), "log_f"),
    "jitter": (lambda mu, c: np.sqrt(yerr**2 + np.exp(2 * c)), "log_jitter"),
}
for name, (sigma_of, noise) in noise_models.items():
    _, res, res_cov = models[name]
    index = [list(res_cov.names).index(k) for k in ("m", "b", noise)]
    centre = np.array([float(res.params[k]) for k in ("m", "b", noise)])
    block = np.asarray(res_cov.matrix)[np.ix_(index, index)]
    grid_z = grid_log_evidence(sigma_of, centre, block)
    print(f"{name:>14}: ln Z grid {grid_z:.3f}, Laplace {evidence[name].log_evidence:.3f}")

# %% [markdown]
# The Laplace evidence is within 0.04 of the integral for both (slightly
# low: a Gaussian misses the skewed tail of the noise param), so the Bayes
# factor stands. (It would not be for a multimodal or strongly
# non-Gaussian posterior, or with a param piled up against a bound: there
# `fk.laplace_evidence` returns NaN and says why.)
#
# The last figure shows what the two models claim about the noise: the
# standard deviation `s_n` each assigns to every point, against the
# absolute residuals from the maximum-likelihood line.

# %%
mu = np.asarray(problem.predict(fit.params)[0])
mu_jitter = np.asarray(jitter_problem.predict(jitter_fit.params)[0])
order = np.argsort(x)
fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(x, np.abs(y - mu), "o", c="k", ms=4, label="|y - model| (fractional fit)")
ax.plot(x[order], np.asarray(fractional(fit.params, mu, yerr))[order], c="C3", label="s_n, fractional f")
ax.plot(x[order], np.asarray(jitter(jitter_fit.params, mu_jitter, yerr))[order], c="C0", label="s_n, jitter")
ax.plot(x[order], yerr[order], c="0.5", ls=":", label="quoted yerr_n")
ax.set(xlabel="x", ylabel="noise", title="What each noise model says about the scatter")
ax.legend(fontsize="small")
fk.plot.show(fig, "07_noise_models")

# %% [markdown]
# ## The whole pipeline
# `fk.analyse` runs the solve, the error bars and (optionally) the sampler in
# one call, and its report now ends with the model-comparison numbers. On a
# noise model it reports the deviance per degree of freedom instead of a
# reduced chi-squared, since `-2 ln L` is then not a chi-squared (and, being
# defined up to a constant, its value is not expected to be near 1).

# %%
analysis = fk.analyse(
    problem, {"m": -1.0, "b": 4.0, "log_f": -1.0}, sample=False, truth=truth, progress=False
)
print(analysis.report())

# %% [markdown]
# ## Summary
# * A noise model is a likelihood: `fk.Normal(scale=lambda params,
#   prediction, error: s)` on the observation. The params it reads are fitted
#   with the others; bounds or priors keep them in range.
# * Its normalisation depends on the params, so least-squares solvers do not
#   apply; `fk.solve` picks a minimiser and refuses
#   `method="levenberg-marquardt"` with a message that says why.
# * `fk.covariance` (Hessian or expected Fisher), `fk.sample` and
#   `fk.laplace_evidence` all use the normalised likelihood, so models with
#   different noise can be compared with `fit.aic`, `fit.bic` or Bayes
#   factors.
