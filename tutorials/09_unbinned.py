# %% [markdown]
# # 9. Unbinned fits: a line on a continuum, photon by photon
#
# An X-ray CCD, a gamma-ray telescope or a neutrino detector records a list
# of *events*, each with a measured energy (or arrival time, position, ...).
# Binning them into a spectrum and fitting the counts throws information
# away when the bins are wider than the features, and the choice of bins is
# arbitrary. The unbinned likelihood uses every event as it is:
#
# $$\log L(\theta) = \sum_{i=1}^{n} \log f(x_i \mid \theta),$$
#
# where `f` is the probability density of one event, normalised over the
# range where events could have been recorded: $\int_{a}^{b} f(x)\, dx = 1$.
# Forgetting that normalisation is the classic mistake: a density that is
# too large everywhere always looks more likely.
#
# When the number of events is itself informative (a source's flux, not only
# its spectral shape), the *extended* likelihood adds a Poisson term for the
# total. With an expected number of events `N(theta)`,
#
# $$\log L = \sum_i \log f(x_i) + n \log N - N \quad(+\text{const}),$$
#
# and the density of events per unit `x` is `N f(x)`, so the model can be
# written in yields: `N = n_sig + n_bkg`, `N f = n_sig f_sig + n_bkg f_bkg`.
#
# In fitkit an observation's `data` are the events and its `predict` returns
# the normalised density at each one; `likelihood=fk.Unbinned()` turns it
# into the sum of logs, and `fk.Unbinned(expected=lambda p: ...)` into the
# extended form. Everything else (`fk.solve`, `fk.covariance`, `fk.sample`,
# bounds, priors) works as for any other problem.

# %%
import importlib.util
import math
import os

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.scipy.special import ndtr
from scipy.special import ndtr as np_ndtr

import fitkit as fk
import fitkit.plot

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


def show(params, digits=5):
    """A params pytree as a flat dict of rounded floats, for printing."""
    flat = fk.tree.ravel(params)[0]
    return {name: round(float(v), digits) for name, v in zip(fk.tree.names(params), flat)}


# %% [markdown]
# ## 1. The events
# A toy X-ray spectrum between 0 and 10 keV: 300 photons from an iron line
# (a Gaussian at 6.4 keV with a width of 0.3 keV, instrumental resolution
# included) on 1200 photons of a continuum falling as `exp(-lam E)` with
# `lam = 0.35 / keV`. Each component is drawn inside the range only, so both
# densities are *truncated* to `[0, 10]` keV and normalised there:
#
# * line: `exp(-(E - mu)^2 / 2 sigma^2) / (sigma sqrt(2 pi) [Phi((10 - mu) / sigma) - Phi((0 - mu) / sigma)])`;
# * continuum: `lam exp(-lam E) / (1 - exp(-10 lam))`.
#
# The normalisations depend on the params, so they must be inside the model,
# not computed once.

# %%
LO, HI = 0.0, 10.0
N_LINE, N_CONT = 300, 1200
truth = {"f": N_LINE / (N_LINE + N_CONT), "mu": 6.4, "sigma": 0.3, "lam": 0.35}
rng = np.random.default_rng(9)


def draw_inside(sampler, n):
    """`n` draws of `sampler(size)` that fall inside [LO, HI] (rejection of the rest)."""
    kept = np.empty(0)
    while kept.size < n:
        x = sampler(2 * n)
        kept = np.concatenate([kept, x[(x > LO) & (x < HI)]])
    return kept[:n]


line_events = draw_inside(lambda size: rng.normal(truth["mu"], truth["sigma"], size), N_LINE)
cont_events = draw_inside(lambda size: rng.exponential(1 / truth["lam"], size), N_CONT)
energy = rng.permutation(np.concatenate([line_events, cont_events]))
print(f"{energy.size} events between {energy.min():.3f} and {energy.max():.3f} keV")


def line_pdf(x, mu, sigma, xp=jnp, cdf=ndtr):
    """A Gaussian truncated to [LO, HI], normalised there."""
    norm = cdf((HI - mu) / sigma) - cdf((LO - mu) / sigma)
    return xp.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi) * norm)


def continuum_pdf(x, lam, xp=jnp):
    """An exponential truncated to [LO, HI], normalised there."""
    return lam * xp.exp(-lam * (x - LO)) / (1 - xp.exp(-lam * (HI - LO)))


def mixture(x, p, xp=jnp, cdf=ndtr):
    """The density of one event: a fraction `f` in the line, the rest in the continuum."""
    return p["f"] * line_pdf(x, p["mu"], p["sigma"], xp, cdf) + (1 - p["f"]) * continuum_pdf(x, p["lam"], xp)


grid = np.linspace(LO, HI, 2001)
print("integral of the density over [0, 10] keV:", round(float(np.trapezoid(mixture(grid, truth), grid)), 8))

# %% [markdown]
# ## 2. The unbinned fit
# The observation's `data` are the 1500 energies and `predict` is the
# mixture density at each of them. The signal fraction lies in `(0, 1)` and
# the width and slope are positive: bounds keep every engine there. With no
# least-squares residuals, `fk.solve` picks a minimiser (Newton here).
#
# `fk.covariance` inverts the Hessian of the negative log-likelihood at the
# optimum, as MINUIT's HESSE does. `problem.nll` is `-log L` with no constant
# dropped, so `2 * nll` is exactly iminuit's `UnbinnedNLL` cost.


# %%
class Photons(fk.Observation):
    def predict(self, params, model):
        return mixture(self.data, params)


bounds = {"f": (0.0, 1.0), "sigma": (0.0, None), "lam": (0.0, None)}
shape = fk.Problem(None, Photons(data=energy, likelihood=fk.Unbinned()), bounds=bounds)
print("family:", shape.families(), " n_data:", shape.n_data)
start = {"f": 0.3, "mu": 6.0, "sigma": 0.5, "lam": 0.25}
fit = fk.solve(shape, start)
print(fit)
cov = fk.covariance(shape, fit)
print(cov.to_dataframe().assign(truth=[truth[k] for k in cov.names]).round(5))
print("-2 log L at the optimum:", round(2 * float(shape.nll(fit.params)), 6))

# %% [markdown]
# ## 3. The same fit with iminuit
# iminuit's `UnbinnedNLL(x, pdf)` takes the same normalised density (here in
# NumPy) and returns `-2 log L`, so its `errordef` is 1 and HESSE's
# covariance is the inverse Hessian of `-log L`, like fitkit's. Minuit gets
# the same limits (without them MIGRAD's first steps can try a negative
# width). Both transform bounded params internally (tutorial 6), and both
# report the covariance in the physical params; but iminuit's `errors`
# property maps the internal error through the limit's transform
# non-linearly, which moves it by a few 1e-4, so the errors compared here
# are the square roots of HESSE's covariance diagonal. MIGRAD's default
# tolerance stops it at `edm` about 1e-5, which leaves differences of 1e-4 in
# the values; `tol = 1e-6` asks for an `edm` below 2e-9, close to fitkit's
# own criterion (`edm` below 1e-8 in `log L`).


# %%
def np_mixture(x, f, mu, sigma, lam):
    return mixture(x, {"f": f, "mu": mu, "sigma": sigma, "lam": lam}, np, np_ndtr)


def migrad(cost, start, limits):
    """MIGRAD then HESSE, with the most careful strategy and a tight tolerance."""
    m = Minuit(cost, **start)
    m.strategy, m.tol = 2, 1e-6
    for name, (low, high) in limits.items():
        m.limits[name] = (low, np.inf if high is None else high)
    m.migrad().hesse()
    return m


def compare(fit, cov, minuit, names):
    """fitkit's and MINUIT's values and errors side by side, with their relative differences."""
    print(
        f"{'param':>6} {'fitkit':>12} {'iminuit':>12} {'rel':>9} {'fitkit err':>11} {'HESSE err':>11} {'rel':>9}"
    )
    worst = 0.0
    for name in names:
        value, error = float(fit.params[name]), float(cov.std[name])
        ref_value = minuit.values[name]
        ref_error = math.sqrt(minuit.covariance[name, name])
        dv, de = value / ref_value - 1, error / ref_error - 1
        worst = max(worst, abs(dv), abs(de))
        print(
            f"{name:>6} {value:12.6f} {ref_value:12.6f} {dv:9.1e} {error:11.6f} {ref_error:11.6f} {de:9.1e}"
        )
    print(f"largest relative difference: {worst:.1e}")


HAVE_IMINUIT = importlib.util.find_spec("iminuit") is not None
if not HAVE_IMINUIT:
    print("iminuit is not installed; skipping the comparisons with it")
else:
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL, ExtendedUnbinnedNLL, UnbinnedNLL

    minuit = migrad(UnbinnedNLL(energy, np_mixture), start, bounds)
    print(f"MIGRAD: valid {minuit.valid}, accurate {minuit.accurate}, edm {minuit.fmin.edm:.1e}")
    print(f"cost: iminuit {minuit.fval:.8f}   2 * fitkit nll {2 * float(shape.nll(fit.params)):.8f}")
    compare(fit, cov, minuit, list(start))

# %% [markdown]
# Values and errors agree to about 1e-5 relative or better, and the two
# costs to about 1e-12: the same likelihood, the same optimum, the same
# curvature.
#
# ## 4. The empirical Fisher information
# For a binned or Gaussian fit, the *expected* Fisher information (the
# average curvature over data sets) is known in closed form, and
# `fk.covariance(..., method="fisher")` uses it. For unbinned data it would
# need an integral of the density's derivatives over `x`, so `fk.Unbinned`
# offers the *empirical* Fisher instead: the sum of outer products of the
# per-event scores, `sum_i s_i s_i^T` with `s_i = grad log f(x_i)` (the
# "outer product of gradients", or BHHH, estimate). At the maximum it
# estimates the same matrix as the Hessian, but it is noisier, and it differs
# from the Hessian where the model is wrong (their sandwich `H^-1 F H^-1` is
# the robust covariance). Here the errors agree to within 10%:

# %%
fisher_cov = fk.covariance(shape, fit, method="fisher")
print("method:", fisher_cov.method)
ratio = {k: round(float(fisher_cov.std[k] / cov.std[k]), 4) for k in cov.names}
print("empirical Fisher error / Hessian error:", ratio)

# %% [markdown]
# ## 5. The extended fit: yields
# Astronomers usually want a line *flux*, i.e. a number of photons, not a
# fraction. With `expected = n_line + n_cont`, and the density written as
# `(n_line f_line + n_cont f_cont) / (n_line + n_cont)` (what `predict`
# returns is always normalised to one; the total is in `expected`), the
# extended likelihood fits the two yields directly. Its cost is iminuit's
# `ExtendedUnbinnedNLL`, whose model returns the total and the
# un-normalised density `N f`.


# %%
class Yields(fk.Observation):
    def predict(self, params, model):
        p = params
        total = p["n_line"] + p["n_cont"]
        return (
            p["n_line"] * line_pdf(self.data, p["mu"], p["sigma"])
            + p["n_cont"] * continuum_pdf(self.data, p["lam"])
        ) / total


extended = fk.Unbinned(expected=lambda p: p["n_line"] + p["n_cont"])
positive = {name: (0.0, None) for name in ("n_line", "n_cont", "sigma", "lam")}
yields = fk.Problem(None, Yields(data=energy, likelihood=extended), bounds=positive)
yield_start = {"n_line": 400.0, "n_cont": 1000.0, "mu": 6.0, "sigma": 0.5, "lam": 0.25}
yield_fit = fk.solve(yields, yield_start)
yield_cov = fk.covariance(yields, yield_fit)
print(yield_fit)
yield_truth = {"n_line": N_LINE, "n_cont": N_CONT, **truth}
print(yield_cov.to_dataframe().assign(truth=[yield_truth[k] for k in yield_cov.names]).round(4))

if HAVE_IMINUIT:

    def np_yields(x, n_line, n_cont, mu, sigma, lam):
        density = n_line * line_pdf(x, mu, sigma, np, np_ndtr) + n_cont * continuum_pdf(x, lam, np)
        return n_line + n_cont, density

    minuit_ext = migrad(ExtendedUnbinnedNLL(energy, np_yields), yield_start, positive)
    print(
        f"cost: iminuit {minuit_ext.fval:.8f}   2 * fitkit nll {2 * float(yields.nll(yield_fit.params)):.8f}"
    )
    compare(yield_fit, yield_cov, minuit_ext, list(yield_start))

# %% [markdown]
# The shape params are those of the plain fit, and the yields add up to the
# number of events exactly (the maximum of `n log N - N` is `N = n`). The
# yield's error is larger than `n * sigma_f`: it carries the Poisson
# fluctuation of the total too. At the maximum the fraction and the total
# are uncorrelated, so `var(n_line) = n^2 var(f) + f^2 n`:

# %%
n = energy.size
f_hat, f_err = float(fit.params["f"]), float(cov.std["f"])
print(
    "n_line + n_cont =", round(float(yield_fit.params["n_line"] + yield_fit.params["n_cont"]), 8), " n =", n
)
print(f"n * f = {n * f_hat:.3f} +- {n * f_err:.3f} (plain fit, total held at n)")
print(f"sqrt(n^2 var(f) + f^2 n) = {math.sqrt(n**2 * f_err**2 + f_hat**2 * n):.3f}")
print(
    f"n_line = {float(yield_fit.params['n_line']):.3f} +- {float(yield_cov.std['n_line']):.3f} (extended fit)"
)

# %% [markdown]
# ## 6. The binned alternative: Poisson counts
# The usual alternative is to histogram the events and fit the counts with a
# Poisson likelihood, `fk.Poisson()`: each bin's expected count is the
# integral of `N f` over the bin, here in closed form from the two CDFs (the
# density at the bin centre times the width is a good approximation only for
# narrow bins). With bins much narrower than the line (0.1 keV against its
# 0.3 keV width) almost nothing is lost, and the numbers are close to the
# unbinned ones. Coarser bins would smear the line and inflate its errors.
#
# The binned fit gives something the unbinned one cannot: a goodness of
# fit. The Poisson deviance, `2 sum [d log(d / mu) - (d - mu)]`, is about
# chi-squared distributed with `n_bins - n_free` degrees of freedom (when
# the counts are not too small); the value of an unbinned likelihood at its
# maximum says nothing by itself about how well the model fits.


# %%
def line_cdf(x, mu, sigma):
    norm = ndtr((HI - mu) / sigma) - ndtr((LO - mu) / sigma)
    return (ndtr((x - mu) / sigma) - ndtr((LO - mu) / sigma)) / norm


def continuum_cdf(x, lam):
    return (1 - jnp.exp(-lam * (x - LO))) / (1 - jnp.exp(-lam * (HI - LO)))


class Counts(fk.Observation):
    edges: jnp.ndarray

    def predict(self, params, model):
        p = params
        line = jnp.diff(line_cdf(self.edges, p["mu"], p["sigma"]))
        continuum = jnp.diff(continuum_cdf(self.edges, p["lam"]))
        return p["n_line"] * line + p["n_cont"] * continuum


edges = np.linspace(LO, HI, 101)
counts, _ = np.histogram(energy, edges)
binned = fk.Problem(
    None, Counts(data=counts, edges=jnp.asarray(edges), likelihood=fk.Poisson()), bounds=positive
)
binned_fit = fk.solve(binned, yield_start)
binned_cov = fk.covariance(binned, binned_fit)
print(binned_fit)
table = yield_cov.to_dataframe().join(binned_cov.to_dataframe(), lsuffix=" unbinned", rsuffix=" binned")
print(table.round(4).to_string())
deviance, dof = float(binned.chi2(binned_fit.params)), binned.ddof(binned_fit.params)
print(f"Poisson deviance {deviance:.2f} for {dof} degrees of freedom")

if HAVE_IMINUIT:

    def np_yields_cdf(x, n_line, n_cont, mu, sigma, lam):
        norm = np_ndtr((HI - mu) / sigma) - np_ndtr((LO - mu) / sigma)
        line = (np_ndtr((x - mu) / sigma) - np_ndtr((LO - mu) / sigma)) / norm
        continuum = (1 - np.exp(-lam * (x - LO))) / (1 - np.exp(-lam * (HI - LO)))
        return n_line * line + n_cont * continuum

    minuit_binned = migrad(ExtendedBinnedNLL(counts, edges, np_yields_cdf), yield_start, positive)
    compare(binned_fit, binned_cov, minuit_binned, list(yield_start))

# %% [markdown]
# The binned errors are at most a few percent larger than the unbinned ones,
# the price of forgetting where in its bin each photon fell. iminuit's
# `ExtendedBinnedNLL` (a CDF per bin, as here) agrees with `fk.Poisson` as
# closely as the unbinned costs did (the last 1e-5 in the errors is HESSE's
# finite differences; fitkit's Hessian is exact).
#
# How much is lost grows with the bin width. Each width is a new data shape,
# so each fit compiles again (a few seconds each; `FITKIT_QUICK=1` runs two).

# %%
widths = (0.5, 1.0) if QUICK else (0.05, 0.25, 0.5, 1.0)
print(
    f"{'bin width':>9} {'bins':>5} {'err n_line':>11} {'err mu':>8} {'err sigma':>10}  (relative to unbinned)"
)
for bin_width in sorted({*widths, 0.1}):
    scan_edges = np.linspace(LO, HI, round((HI - LO) / bin_width) + 1)
    scan_counts, _ = np.histogram(energy, scan_edges)
    scan = fk.Problem(
        None,
        Counts(data=scan_counts, edges=jnp.asarray(scan_edges), likelihood=fk.Poisson()),
        bounds=positive,
    )
    scan_cov = fk.covariance(scan, fk.solve(scan, yield_start))
    rel = [float(scan_cov.std[k] / yield_cov.std[k]) for k in ("n_line", "mu", "sigma")]
    print(f"{bin_width:9.2f} {scan_counts.size:5d} {rel[0]:11.3f} {rel[1]:8.3f} {rel[2]:10.3f}")

# %% [markdown]
# Bins narrower than the line cost a few percent at most; bins wider than
# it put the line into one or two bins, and its position and width become
# much less certain (up to twice the unbinned error with 1 keV bins), while
# its yield, a count, suffers least.
#
# ## 7. The fit and its uncertainty, against the events
# A histogram of the events (its bins for the eye only: the unbinned fit never
# saw them) with the fitted density scaled to counts per bin, `N f(E) dE`,
# its two components and the delta-method band of the extended fit
# (`Covariance.predict`).

# %%
width = 0.2
view_edges = np.arange(LO, HI + width / 2, width)
view_counts, _ = np.histogram(energy, view_edges)
centres = 0.5 * (view_edges[1:] + view_edges[:-1])
e = jnp.linspace(LO, HI, 801)


def counts_per_bin(p):
    """The fitted `N f(E)` on the plotting grid, in counts per plotting bin."""
    return width * (p["n_line"] * line_pdf(e, p["mu"], p["sigma"]) + p["n_cont"] * continuum_pdf(e, p["lam"]))


band = yield_cov.predict(counts_per_bin)
p = yield_fit.params
fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(3, 1))
top.errorbar(centres, view_counts, yerr=np.sqrt(view_counts), fmt=".k", ms=4, label="events (0.2 keV bins)")
top.plot(e, band.mean, c="C1", label="extended unbinned fit")
top.fill_between(
    e, band.mean - 3 * band.std, band.mean + 3 * band.std, color="C1", alpha=0.3, label="3 sigma band"
)
top.plot(e, width * p["n_cont"] * continuum_pdf(e, p["lam"]), c="C0", ls="--", label="continuum")
top.plot(e, width * p["n_line"] * line_pdf(e, p["mu"], p["sigma"]), c="C2", ls=":", label="Fe line")
top.set(ylabel="events per 0.2 keV", title="1500 photons: an iron line on an exponential continuum")
top.legend()
expected = np.asarray(
    width
    * (p["n_line"] * line_pdf(centres, p["mu"], p["sigma"]) + p["n_cont"] * continuum_pdf(centres, p["lam"]))
)
bottom.plot(centres, (view_counts - expected) / np.sqrt(expected), ".k")
bottom.axhline(0.0, c="C1")
bottom.set(xlabel="energy (keV)", ylabel="(data - model) / sqrt(model)")
fig.tight_layout()
fk.plot.show(fig, "09_events")

# %% [markdown]
# And the uncertainty itself: the 1-sigma (39% in two dimensions) ellipses of
# the line's yield and width from the unbinned Hessian, the empirical Fisher
# (of the plain fit, its fraction turned into a yield at fixed total, so
# without the Poisson term) and the binned Poisson fit. They describe almost
# the same region; the two from the plain fit are a little narrower in the
# yield, since they leave out the Poisson fluctuation of the total.


# %%
def ellipse(covariance, names, scale=(1.0, 1.0)):
    """Points on the 1-sigma ellipse of two params of a Covariance."""
    idx = [covariance.names.index(k) for k in names]
    block = np.asarray(covariance.matrix)[np.ix_(idx, idx)] * np.outer(scale, scale)
    centre = np.array([float(covariance.mean[k]) for k in names]) * np.asarray(scale)
    angle = np.linspace(0, 2 * np.pi, 200)
    return centre[:, None] + np.linalg.cholesky(block) @ np.stack([np.cos(angle), np.sin(angle)])


fig, ax = plt.subplots(figsize=(6.5, 6))
for covariance, names, scale, label, style in [
    (yield_cov, ("n_line", "sigma"), (1.0, 1.0), "extended unbinned, Hessian", "-"),
    (binned_cov, ("n_line", "sigma"), (1.0, 1.0), "binned Poisson (0.1 keV), Hessian", "--"),
    (cov, ("f", "sigma"), (n, 1.0), "unbinned, Hessian, n f", "-."),
    (fisher_cov, ("f", "sigma"), (n, 1.0), "unbinned, empirical Fisher, n f", ":"),
]:
    xs, ys = ellipse(covariance, names, scale)
    ax.plot(xs, ys, ls=style, label=label)
ax.plot(N_LINE, truth["sigma"], "k*", ms=10, label="truth")
ax.set(xlabel="photons in the line", ylabel="line width sigma (keV)", title="1-sigma regions")
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
fig.tight_layout()
fk.plot.show(fig, "09_ellipses")

# %% [markdown]
# ## Coming from iminuit
# | | fitkit | iminuit |
# |---|---|---|
# | unbinned | `Observation(data=x, likelihood=fk.Unbinned())`, `predict` = density | `UnbinnedNLL(x, pdf)` |
# | extended | `fk.Unbinned(expected=lambda p: N)`, `predict` = normalised density | `ExtendedUnbinnedNLL(x, f)`, `f` returns `(N, N * pdf)` |
# | binned counts | `likelihood=fk.Poisson()`, `predict` = expected counts | `ExtendedBinnedNLL(n, edges, cdf)` |
# | cost | `problem.nll` = `-log L` | `-2 log L` (`errordef = 1`) |
# | minimise | `fk.solve(problem, start)` | `Minuit(cost, **start).migrad()` |
# | errors | `fk.covariance(problem, fit)` (Hessian) | `.hesse()` |
# | limits | `Problem(bounds={"f": (0, 1)})` | `m.limits["f"] = (0, 1)` |
#
# The gradients and the Hessian are exact (automatic differentiation), not
# finite differences, and the density is an ordinary JAX function, so the
# same problem goes on to `fk.sample` for a posterior, or into a joint fit
# with other observations (a binned spectrum from a second instrument, say)
# by listing both in one `fk.Problem`.
