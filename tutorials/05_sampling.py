# %% [markdown]
# # 5. Posterior sampling in the whitened latent space
#
# The zodiax tutorial's seventh section samples the posterior of the
# hierarchical optics problem (one star imaged through three filters: a
# position and a flux per filter, seven shared Zernike coefficients; 16
# params) with numpyro's NUTS. Sampling the raw params works badly: their
# posterior widths span three orders of magnitude (micro-arcseconds for the
# positions, nanometres for the wavefront), so a single step size is either
# too large for the narrow directions or far too small for the wide ones. The
# tutorial therefore computes the Hessian at the best fit, builds the
# eigen-projection that whitens it, writes a numpyro model over a latent
# vector with a `Uniform(-5, 5)` prior, projects the draws back to params,
# flattens them into a DataFrame with hand-made column names, and overlays
# the Hessian covariance and the truth in a chainconsumer corner plot.
#
# In fitkit that is three calls:
#
# * `fk.solve(problem, start, projection="fisher")` finds the optimum
#   (MCMC is not an optimiser: start the chains at the mode);
# * `fk.covariance(problem, fit)` gives the Laplace approximation;
# * `fk.sample(problem, fit)` builds the projection from the Hessian at the
#   optimum, runs NUTS on the latent vector `u` (log-density
#   `-problem.nll(projection.to_params(u))`, which includes the problem's
#   priors, and nothing else: no auxiliary prior changes the density) and
#   returns a `Posterior` whose draws are already params.
#
# `fk.plot.corner([posterior, covariance], truth=truth)` draws the figure.

# %%
import os
import pathlib
import tempfile

import numpy as np

import fitkit as fk
import fitkit.plot
from fitkit.examples.optics import make_problem

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


# %% [markdown]
# ## The problem and its optimum
# The tutorial's optics problem: 256 pupil pixels and 1000 frames averaged per
# image (64 pixels and 100 frames with `FITKIT_QUICK=1`). As in section 6 of
# the tutorial, the solve runs in the latent space whitened by the Fisher
# information at the start, where L-BFGS converges in a few dozen steps.

# %%
problem, truth, start = make_problem(seed=0, wf_npixels=64 if QUICK else 256, n_frames=100 if QUICK else 1000)
fit = fk.solve(problem, start, method="lbfgs", projection="fisher")
print(fit)
print("reduced chi-squared at the optimum:", round(float(problem.chi2r(fit.params)), 4))

# %% [markdown]
# ## The Laplace approximation
# `fk.covariance` inverts the Hessian of `problem.nll` at the optimum. Its
# matrix shows why the raw params are hard to sample: the variances range
# over about six orders of magnitude, while the correlations are mild.

# %%
cov = fk.covariance(problem, fit)
print(cov)
names = list(cov.names)
H = fk.hessian(problem.nll, fit.params)
fk.plot.show(fk.plot.matrix(H, names, title="log10 |Hessian of the nll|", kind="log"), "05_hessian")
fk.plot.show(fk.plot.matrix(cov, title="log10 |covariance|", kind="log"), "05_covariance")
fk.plot.show(fk.plot.matrix(cov.correlation, names, title="Correlation"), "05_correlation")

# %% [markdown]
# ## Sampling
# `fk.sample` starts each chain near the optimum (a jitter of 0.1 in latent
# units) and keeps the identity mass matrix: the latent space is already
# whitened, so NUTS needs only a few leapfrog steps per draw at a step size
# near 1, and the default warm-up of 200 iterations is plenty (the tutorial
# used 1000). With several chains, the default runs them one after another
# in the compiled loop on a CPU (chains of different tree depths gain nothing
# from running in lock-step there) and vectorised on an accelerator;
# `chain_method="parallel"` spreads them over the devices.

# %%
num_warmup, num_samples, num_chains = (50, 100, 1) if QUICK else (200, 1000, 2)
post = fk.sample(
    problem,
    fit,
    num_warmup=num_warmup,
    num_samples=num_samples,
    num_chains=num_chains,
    key=0,
    progress=not QUICK,
)
print(post)

# %% [markdown]
# ## The summary table
# One row per flat param name (the names of `fk.tree.names`, in ravel
# order): mean, standard deviation, median, the central 90% interval, the
# bulk and tail effective sample sizes and the split R-hat, computed with
# numpyro's diagnostics. The draws themselves are `post.samples`, the params
# pytree with leading `(chain, draw)` axes.

# %%
summary = post.summary()
print(summary.round(6).to_string())
print("wfe draws shape:", np.shape(post.samples["wfe"]))

# %% [markdown]
# ## Did it work?
# Three checks before trusting a posterior:
#
# * **divergences** after warm-up must be 0 (a divergence means the
#   integrator met curvature far stronger than the step size allows);
# * **R-hat** must be below about 1.01 (it compares the variance between and
#   within chains, each split in half, so it works with one chain too);
# * the **effective sample size** must be large enough for what you report
#   (hundreds for standard deviations, more for tails).
#
# The diagnostics also record the cost: leapfrog steps per draw and the
# gradient evaluations over warm-up and sampling.

# %%
diag = post.diagnostics
print("divergences:", diag["divergences"], "(warm-up:", diag["warmup_divergences"], ")")
print("max R-hat:", round(float(summary["r_hat"].max()), 4))
print(
    "min ESS bulk / tail:",
    round(float(summary["ess_bulk"].min())),
    "/",
    round(float(summary["ess_tail"].min())),
)
print("mean leapfrog steps per draw:", round(diag["mean_num_steps"], 2))
print(
    "step size per chain:", np.round(diag["step_size"], 3), " mean acceptance:", round(diag["accept_prob"], 3)
)
print(
    "gradient evaluations:",
    diag["grad_evals"],
    f"({diag['warmup_grad_evals']} in warm-up);",
    "min ESS per gradient evaluation:",
    round(float(summary["ess_bulk"].min()) / diag["grad_evals"], 3),
)

# %% [markdown]
# The latent draws (`post.latent`, shape `(chain, draw, 16)`) should look like
# a unit normal if the Laplace approximation is good; the posterior standard
# deviations should match the Hessian's.

# %%
latent_std = post.latent.reshape(-1, post.latent.shape[-1]).std(0)
print("latent std: min", round(float(latent_std.min()), 3), "max", round(float(latent_std.max()), 3))
ratio = summary["std"].to_numpy() / np.asarray(cov.flat_std)
print("posterior std / Hessian std:", np.round(ratio, 3))

# %% [markdown]
# ## Posterior, Laplace approximation and truth
# `fk.plot.corner` takes any mix of posteriors, covariances (drawn as the
# Gaussian they describe) and fits, labels the axes with the flat param
# names and draws the truth lines. `columns=` picks a subset; here the full
# corner plot and the wavefront error alone.

# %%
labels = ["NUTS posterior", "Hessian covariance"]
draws = 20_000 if QUICK else 200_000
fig = fk.plot.corner([post, cov], truth=truth, labels=labels, covariance_draws=draws)
fk.plot.show(fig, "05_corner")
wfe = [name for name in names if name.startswith("wfe")]
fig = fk.plot.corner([post, cov], truth=truth, labels=labels, columns=wfe, covariance_draws=draws)
fk.plot.show(fig, "05_corner_wfe")

# %% [markdown]
# ## Keeping the draws
# `post.save(path)` writes draws, latent draws, diagnostics and settings to
# one `.npz` file; `fk.Posterior.load` reads it back. `post.to_dataframe()`
# has one row per draw, and `post.to_arviz()` returns an ArviZ
# `InferenceData` for its plots and diagnostics.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = pathlib.Path(folder) / "posterior.npz"
    post.save(path)
    loaded = fk.Posterior.load(path)
print("reloaded:", loaded)
print(post.to_dataframe().head(3).round(6).to_string())
