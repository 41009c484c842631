# %% [markdown]
# # 3. Uncertainties from curvature
#
# The zodiax tutorial's third section computes the Hessian of the summed
# negative log-likelihood with a batched helper, inverts it with
# `np.linalg.inv`, and unpacks the standard deviations into the params dict
# by hand. It warns about two traps: float32 Hessians give NaNs, and the
# Hessian of the *mean* loss gives wrong error bars. In fitkit:
#
# * `fk.hessian(problem.nll, params, batch_size=...)` builds the Hessian in
#   memory-bounded column blocks (`batch_size=None` picks the block from a
#   memory budget);
# * `fk.covariance(problem, params)` inverts it with a verdict: a singular or
#   indefinite matrix is an error that names the unconstrained parameters;
# * the `Covariance` it returns has `std` shaped like the params, the
#   correlation matrix, Laplace draws and delta-method predictive bands.
#
# `problem.nll` is the *summed* negative log-likelihood, so the second trap is
# avoided by construction, and fitkit warns once when curvature runs in float32.

# %%
import os

import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

import fitkit as fk
import fitkit.plot

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


# %% [markdown]
# ## The optimum
# The tutorial's problem, solved as in section 2 (BFGS to a reduced
# chi-squared of 1.028246).

# %%
problem, truth, start = fk.examples.gaussians.make_problem()
model = problem.model
result = fk.solve(problem, start, method="bfgs")
print(result)
print("reduced chi-squared:", float(problem.chi2r(result.params)))

# %% [markdown]
# ## The Hessian, in blocks
# `fk.hessian` takes any scalar function of a params pytree and returns a flat
# `(n, n)` matrix in `fk.tree.ravel` order; `fk.tree.names` labels it. Each
# block of `batch_size` columns is a `vmap` of Hessian-vector products, and
# blocks run one after another, so memory grows with `batch_size`, not with
# the number of parameters. The result does not depend on the batch size.

# %%
names = fk.tree.names(result.params)
H = fk.hessian(problem.nll, result.params, batch_size=2)
H_auto = fk.hessian(problem.nll, result.params)  # block size from a memory budget
print("parameters:", names)
print("max |H(batch 2) - H(auto)|:", float(jnp.max(jnp.abs(H - H_auto))))

# %% [markdown]
# ## The covariance
# `fk.covariance` inverts the curvature after normalising it by its diagonal,
# so its verdict does not depend on units. `method="fisher"` uses the Fisher
# information `J^T W J` instead, from an SVD of the whitened Jacobian.

# %%
cov = fk.covariance(problem, result)  # a FitResult is accepted directly
cov_fisher = fk.covariance(problem, result, method="fisher")
print(cov)
print(cov.to_dataframe().assign(fisher_std=np.asarray(cov_fisher.flat_std)))
print("std, shaped like the params:", jax.tree.map(lambda s: np.round(np.asarray(s), 4), cov.std))

fig = fk.plot.matrix(H, names, title="Hessian of the nll")
fk.plot.show(fig, "03_hessian")
fig = fk.plot.matrix(cov, title="Covariance (inverse Hessian)")
fk.plot.show(fig, "03_covariance")
fig = fk.plot.matrix(cov.correlation, names, title="Correlation")
fk.plot.show(fig, "03_correlation")

# %% [markdown]
# ## Error bars at 5 sigma
# `cov.errorbar(sigma)` returns the names, values and errors that
# `plt.errorbar` needs; `fk.plot.errorbars` draws them with the truth.

# %%
labels, values, errors = cov.errorbar(sigma=5)
for label, value, error in zip(labels, values, errors):
    print(f"{label:10s} {value: .4f} +- {error:.4f} (5 sigma)")
fig = fk.plot.errorbars(cov, sigma=5, truth=truth)
fig.axes[0].set_title("Parameter estimates with +-5 sigma error bars")
fk.plot.show(fig, "03_errorbars")

# %% [markdown]
# ## The model with its predictive band
# `cov.predict(fn)` propagates the covariance through any function of the
# params by the delta method (a JVP per column of a square root of the
# covariance, never forming the Jacobian of `fn`). Laplace draws from
# `cov.sample` give the same band by Monte Carlo.

# %%
band = cov.predict(model)
draws = cov.sample(jr.key(0), 200 if QUICK else 2000)
curves = jax.jit(jax.vmap(model))(draws)
mc_std = np.asarray(curves.std(axis=0))
peak = np.asarray(band.std) > 0.1 * float(band.std.max())
print(
    "delta-method std / Monte-Carlo std near the peaks:",
    np.round(np.median(mc_std[peak] / band.std[peak]), 3),
)

fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(2, 1))
top.scatter(model.xs, problem.observations[0].data, s=6, alpha=0.5, label="Data")
top.plot(model.xs, model(truth), c="k", lw=1, label="True")
top.plot(model.xs, band.mean, c="C1", label="Fit")
top.fill_between(
    model.xs, band.mean - 5 * band.std, band.mean + 5 * band.std, color="C1", alpha=0.3, label="5 sigma band"
)
top.set(ylabel="f(x)", title="Model with its predictive band")
top.legend()
bottom.plot(model.xs, band.std, c="C1", label="delta method")
bottom.plot(model.xs, mc_std, c="k", ls=":", label="Laplace draws")
bottom.set(xlabel="x", ylabel="1 sigma of f(x)")
bottom.legend()
fig.tight_layout()
fk.plot.show(fig, "03_band")

# %% [markdown]
# ## Honest failure
# A model the data cannot pin down makes the curvature singular. Here a
# third Gaussian is stacked exactly on top of the first: the data see only
# their sum, so moving the two means in opposite directions changes nothing
# to first order. The Fisher information is then singular, and
# `fk.covariance` says which combination is free instead of returning `inf`
# or garbage; `regularise=True` gives a pseudo-inverse that lists what it
# dropped.

# %%
doubled = {k: jnp.append(v, v[0]) for k, v in result.params.items()}
wide = fk.Problem(fk.examples.gaussians.Gaussians(**doubled), problem.observations)
try:
    fk.covariance(wide, doubled, method="fisher")
except fk.CurvatureError as err:
    print(err)
    print("involved:", err.unconstrained)
partial = fk.covariance(wide, doubled, method="fisher", regularise=True)
print("dropped:", partial.dropped)

# %% [markdown]
# ## Asymmetric errors: the profile likelihood
# Curvature error bars assume the likelihood is Gaussian around the optimum.
# With few events it is not. Take a decay time measured from twelve
# events: the likelihood of the lifetime `tau` falls slowly towards long
# lifetimes and fast towards short ones, so a symmetric `tau +- sigma`
# misplaces both ends. The profile-likelihood (MINOS) interval is where
# the negative log-likelihood, minimised over every other param, has risen
# by 0.5 (one sigma; `chi2.ppf(cl, 1) / 2` in general). `fk.intervals`
# finds both ends of every free param's interval at once: all the
# searches are rays from the optimum, run together, a gradient per ray
# per step, reusing the gradient the fit compiled.

# %%
events = np.random.default_rng(3).exponential(2.0, 12)


class Decay(fk.Observation):
    """Unbinned decay times; `predict` is the normalised density at each event."""

    def predict(self, params, model):
        return jnp.exp(-self.data / params["tau"]) / params["tau"]


decay = fk.Problem(None, Decay(data=events, likelihood=fk.Unbinned()), bounds={"tau": (0.0, None)})
decay_fit = fk.solve(decay, {"tau": jnp.array(1.0)})
decay_cov = fk.covariance(decay, decay_fit)
decay_iv = fk.intervals(decay, decay_fit)
minus, plus = decay_iv.errors
print(f"tau = {float(decay_fit.params['tau']):.4f}")
print(f"curvature: +- {float(decay_cov.std['tau']):.4f}")
print(
    f"profile:   -{minus[0]:.4f} +{plus[0]:.4f}   ({decay_iv.lower['tau']:.4f}, {decay_iv.upper['tau']:.4f})"
)
print(decay_iv.table())
fk.plot.show(fk.plot.profile(decay, decay_fit, "tau", covariance=decay_cov), "03_profile")

# %% [markdown]
# The upper error is half as large again as the lower one, and the Gaussian
# parabola (dashed) sits inside the profile to the right. For a lifetime of
# a short-lived state measured from a dozen events, the profile interval is
# the one that covers the truth 68% of the time (`tests/test_intervals.py`
# checks this over 2,000 simulated data sets).
#
# The same search gives two-parameter regions: `fk.contour` finds where the
# profiled nll rises by `chi2.ppf(cl, 2) / 2` along rays in the plane of two
# params. On the Gaussians above, whose likelihood is close to Gaussian,
# the profile contour and the covariance ellipse coincide, and the
# profile intervals equal the curvature errors.

# %%
first_mean, first_sigma = "mean[0]", "std[0]"
fk.plot.show(fk.plot.contour(problem, result, (first_mean, first_sigma), covariance=cov), "03_contour")
gauss_iv = fk.intervals(problem, result, ["mean", "std"])
minus, plus = gauss_iv.errors
flat_std = dict(zip(cov.names, np.asarray(cov.flat_std)))
for name, m, p in zip(gauss_iv.names, minus, plus):
    print(f"{name:>9}: profile -{m:.3g} +{p:.3g}, curvature +-{flat_std[name]:.3g}")
fk.plot.show(fk.plot.errorbars(cov, intervals=gauss_iv), "03_intervals")
