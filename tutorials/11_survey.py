# %% [markdown]
# # 11. Fitting a survey: thousands of sources in one call
#
# A survey fits the same model to many objects: the photometry of every star
# in a field, the line of every spectrum, the transit of every light curve.
# Doing that with a Python loop costs a dispatch and a host round trip per
# object, and often a compilation. fitkit stacks the objects into one
# *batch* and fits every member in one compiled loop:
#
# * `fk.batch(problems)` stacks problems of one structure (same model, same
#   shapes, different data) along a new leading axis, and
#   `fk.Batch.from_arrays` builds the same batch from arrays with one row per
#   object;
# * `fk.solve(batch, starts)` runs every member's fit at once. Each member
#   stops on its own convergence test, and each gets the same verdict
#   (`valid`, `edm`, flags) that a single `fk.solve` would give it;
# * `fk.covariance(batch, result)` returns every member's error bars.
#
# With several devices (GPUs, or CPU devices) the batch axis is split over
# them automatically.

# %%
import os
import time
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import fitkit as fk
from fitkit.batching import stack_params

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"
SOURCES = 300 if QUICK else 10_000

# %% [markdown]
# ## 1. The sources
# Each source is a point source on a flat sky background, imaged on 16 x 16
# pixels with a Gaussian point-spread function of width 1.5 px. Its five
# params are the flux, the centre `(x0, y0)`, the PSF width `sigma` and the
# background per pixel. The noise is Gaussian with the Poisson variance of the
# true image. The fluxes and positions differ from source to source. A few
# sources (one in fifty) are *blank fields*, with no source at all: the fit
# of a blank field may find a noise peak (a valid minimum with a flux
# consistent with zero), or no minimum at all, and must say which.


# %%
class Stamp(fk.Observation):
    """A 16 x 16 pixel cut-out around a source: a circular Gaussian PSF on a flat background."""

    x: jax.Array
    y: jax.Array

    def predict(self, p, model):
        r2 = (self.x - p["x0"]) ** 2 + (self.y - p["y0"]) ** 2
        return p["flux"] * jnp.exp(-0.5 * r2 / p["sigma"] ** 2) / (2 * jnp.pi * p["sigma"] ** 2) + p["bkg"]


grid = np.arange(16.0) - 7.5
X, Y = (jnp.asarray(a) for a in np.meshgrid(grid, grid, indexing="xy"))
rng = np.random.default_rng(42)
truth = {
    "flux": rng.uniform(2000.0, 5000.0, SOURCES),
    "x0": rng.uniform(-1.0, 1.0, SOURCES),
    "y0": rng.uniform(-1.0, 1.0, SOURCES),
    "sigma": np.full(SOURCES, 1.5),
    "bkg": np.full(SOURCES, 10.0),
}
blank = np.arange(SOURCES) % 50 == 7
truth["flux"][blank] = 0.0


def image(k):
    r2 = (np.asarray(X) - truth["x0"][k]) ** 2 + (np.asarray(Y) - truth["y0"][k]) ** 2
    return truth["flux"][k] * np.exp(-0.5 * r2 / 1.5**2) / (2 * np.pi * 1.5**2) + truth["bkg"][k]


# %% [markdown]
# A survey is held in arrays, not in 10,000 Python objects. `fk.Batch.from_arrays`
# takes one *template* problem, with the structure and shapes of every member,
# and the arrays that differ from member to member (here the images and their
# errors), one row per member. The template's other arrays (the pixel grids)
# are shared. The data checks of a single problem run on every member first.

# %%
t0 = time.perf_counter()
clean = np.stack([image(k) for k in range(SOURCES)])
images = clean + np.sqrt(clean) * rng.normal(size=clean.shape)
errors = np.sqrt(clean)
template = fk.Problem(None, Stamp(data=jnp.asarray(images[0]), error=jnp.asarray(errors[0]), x=X, y=Y))
survey = fk.Batch.from_arrays(
    template, lambda p: (p.observations[0].data, p.observations[0].error), (images, errors)
)
start = {"flux": 3000.0, "x0": 0.0, "y0": 0.0, "sigma": 2.0, "bkg": 8.0}
starts = stack_params([{k: jnp.asarray(v) for k, v in start.items()}] * SOURCES)
print(f"{len(survey)} sources built and stacked in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## 2. One call for every fit
# `fk.solve` takes the batch and one start per member (every leaf with a
# leading axis). The members run together, and a member that has converged
# stays where it is while the others go on. With `method="auto"` (the
# default) a member that is not valid is retried with Newton's method, as a
# single `fk.solve` would retry it. The result holds every member's params,
# `valid`, `edm` and flags, and a summary says how many fits to trust.

# %%
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the summary below says what the warning would
    res = fk.solve(survey, starts)
seconds = time.perf_counter() - t0
print(f"{len(res)} fits in {seconds:.1f} s (compilation included): {len(res) / seconds:.0f} fits/s")
print(res.summary())

# %% [markdown]
# Every real source is valid. A blank field is either fitted validly (a noise
# peak: a minimum whose flux is consistent with zero) or flagged as not valid,
# where the five params are not all constrained by the data; the counts below
# say which. When there are invalid fits, the `summary` names the worst of
# them by their EDM.

# %%
print("real sources valid:", int((res.valid & ~blank).sum()), "of", int((~blank).sum()))
print("blank fields flagged as not valid:", int((~res.valid & blank).sum()), "of", int(blank.sum()))
print("fits flagged that are real sources:", int((~res.valid & ~blank).sum()))
print(res.member(int(np.flatnonzero(~res.valid)[0])).message if (~res.valid).any() else "")

# %% [markdown]
# For comparison, the same fits one at a time (the first 50), each a whole
# `fk.solve` call. The compiled solve is reused after the first call, so
# this loop only pays the per-call overhead:

# %%
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    singles = [fk.solve(survey.member(k), {k2: jnp.asarray(v) for k2, v in start.items()}) for k in range(50)]
loop = (time.perf_counter() - t0) / 50
print(f"a loop of fk.solve: {1 / loop:.0f} fits/s; the batch: {len(res) / seconds:.0f} fits/s")
flux_error = np.asarray(fk.covariance(survey, res).std["flux"])
gap = max(
    abs(float(s.params["flux"]) - float(res.params["flux"][k])) / flux_error[k]
    for k, s in enumerate(singles)
    if s.valid and not blank[k]
)
print(f"largest flux difference from the single fits of real sources: {gap:.2g} standard deviations")

# %% [markdown]
# ## 3. Error bars and pulls
# `fk.covariance(batch, result)` inverts every member's Hessian in one
# compiled call. A member whose Hessian is not positive definite (a flat
# direction, as in a blank field without a noise peak) gets NaN and
# `ok=False` instead of an error.
#
# If the error bars are honest, the *pulls* `(estimate - truth) / error` of
# the valid fits are distributed as a standard normal.

# %%
cov = fk.covariance(survey, res)
print("covariances defined:", int(cov.ok.sum()), "of", len(cov.ok))
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
normal = np.linspace(-4, 4, 200)
for ax, name in zip(axes, ("flux", "x0", "sigma")):
    ok = cov.ok & res.valid & ~blank
    pulls = (np.asarray(res.params[name])[ok] - truth[name][ok]) / np.asarray(cov.std[name])[ok]
    ax.hist(pulls, bins=40, range=(-4, 4), density=True, alpha=0.6, label="pulls")
    ax.plot(normal, np.exp(-0.5 * normal**2) / np.sqrt(2 * np.pi), "k", label="N(0, 1)")
    ax.set(title=f"{name}: mean {pulls.mean():+.2f}, std {pulls.std():.2f}", xlabel="(fit - truth) / error")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The pulls have mean about 0 and standard deviation about 1, so the batched
# fits and their error bars can be trusted as a whole, source by source.
#
# A blank field that was fitted validly has a flux consistent with zero: its
# significance `flux / error` is the test of a detection.

# %%
significance = np.asarray(res.params["flux"]) / np.asarray(cov.std["flux"])
fitted_blank = blank & res.valid & cov.ok
print("flux / error of the valid blank fields:", np.round(significance[fitted_blank], 1))
print("smallest flux / error of a real source:", round(float(significance[~blank & res.valid].min()), 1))

# %% [markdown]
# ## 4. Objects of different sizes
# Spectra and light curves rarely have the same number of points.
# `fk.batch(problems, pad=True)` pads each member to the largest with masked
# points, and each member keeps its own count of points: its loss is its own
# chi-squared per point, and `survey.member(i)` is the problem it stands for.
# Here, peaks sampled on 40 to 100 points:


# %%
class Peak(fk.Observation):
    """A Gaussian line on a flat continuum."""

    x: jax.Array

    def predict(self, p, model):
        return p["amp"] * jnp.exp(-0.5 * ((self.x - p["mu"]) / p["width"]) ** 2) + p["bkg"]


lengths = rng.integers(40, 101, size=200)
curves = []
for n in lengths:
    x = np.linspace(-5.0, 5.0, n)
    line = 5.0 * np.exp(-0.5 * ((x - 0.3) / 1.2) ** 2) + 1.0 + 0.3 * rng.normal(size=n)
    curves.append(fk.Problem(None, Peak(data=jnp.asarray(line), error=jnp.full(n, 0.3), x=jnp.asarray(x))))
ragged = fk.batch(curves, pad=True)
line_start = {"amp": 4.0, "mu": 0.0, "width": 1.0, "bkg": 0.8}
lines = fk.solve(ragged, stack_params([{k: jnp.asarray(v) for k, v in line_start.items()}] * len(curves)))
print(lines.summary())
print("points of member 0:", ragged.member(0).n_data, "of", ragged.problem.observations[0].data.shape[1])
alone = fk.solve(curves[0], {k: jnp.asarray(v) for k, v in line_start.items()})
print("member 0, batched and alone:", float(lines.params["mu"][0]), float(alone.params["mu"]))

# %% [markdown]
# **What is not batched yet:** fixed or tied params, `fk.fit` and
# `fk.intervals`, and batches larger than memory. Until then, fit those
# members with `fk.solve(survey.member(i), ...)`. Over several processes, see
# `fitkit.batching.local_rows` and `gather` in the API pages.
