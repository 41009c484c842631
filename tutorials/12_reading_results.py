# %% [markdown]
# # 12. Reading the results
#
# Every fitkit result says, by itself, whether it can be trusted and what it
# found. In a notebook a cell ending with a `fk.FitResult`, `fk.Covariance`,
# `fk.Intervals`, `fk.Posterior` or `fk.Analysis` shows coloured tables; as
# text (`print`, `repr`, a log file) the same cells are written out line by
# line. This tutorial fits one small problem and walks through each display,
# the lmfit-style `fk.fit_report`, and the figures of `fk.plot` that check a
# fit by eye:
#
# * the **validity box**: valid or not, the estimated distance to the minimum
#   (EDM), steps, evaluations, times and the reason in words;
# * the **parameter table**: value, error, profile errors, bounds, start
#   value, posterior mean, std, ESS and R-hat, as far as the object knows them;
# * the **colours**: green for a check that passed, red for a reason not to
#   trust the result, orange for something to know about (a param at a
#   bound, a strong correlation, few effective draws) and grey for plain
#   information.
#
# Here is what a fit and its covariance look like in a browser (this
# picture was rendered by headless Chromium with
# `scripts/screenshot_display.py`; the cells below make the same tables live):
#
# ![The display of a FitResult with its covariance: a validity box of green cells and a parameter table](../../images/display.png)

# %%
import os

import jax
import jax.numpy as jnp
import jax.random as jr

import fitkit as fk
import fitkit.plot

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


# %% [markdown]
# ## The problem: a faint peak on a sloping background
# A spectrum of 100 points with Gaussian noise of known size 0.3: a Gaussian
# line of height `amplitude`, position `centre` and width `width`, on a
# background `background + slope * x`. The line is faint (its height is four
# times the noise), so its width is measured to only about 20%, which makes
# the profile errors below visibly asymmetric. The problem declares what is
# physical: the height and the background are not negative, and the width
# lies between 0 and 5 (tutorial 6 explains bounds).


# %%
class Peak(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        p = params
        u = (self.x - p["centre"]) / p["width"]
        return p["background"] + p["slope"] * self.x + p["amplitude"] * jnp.exp(-0.5 * u**2)


x = jnp.linspace(-10.0, 10.0, 100)
truth = {"amplitude": 1.2, "centre": 0.7, "width": 0.8, "background": 1.0, "slope": 0.05}
noise = 0.3
clean = Peak(data=jnp.zeros_like(x), x=x).predict(truth, None)
observation = Peak(data=clean + noise * jr.normal(jr.key(2), x.shape), error=noise, x=x)
problem = fk.Problem(
    None,
    observation,
    bounds={"amplitude": (0.0, None), "background": (0.0, None), "width": (0.0, 5.0)},
)
start = {"amplitude": 2.0, "centre": 0.0, "width": 2.0, "background": 0.5, "slope": 0.0}
res = fk.solve(problem, start)

# %% [markdown]
# ## (a) The fit: its validity box and parameter table
# A cell that ends with the result shows it:

# %%
res

# %% [markdown]
# **The validity box** ("Fit") answers "can I use this?" before anything else.
#
# * **valid**: `yes` (green) when the engine converged *and* the result
#   passed fitkit's checks; otherwise `NO` (red) followed by the flags that
#   failed. This is `res.valid`; the flags are `res.flags`.
# * **EDM**: the estimated distance to the minimum, `g^T H^-1 g / 2` with the
#   gradient `g` and the curvature `H` of `problem.nll` at the result. It
#   estimates how much lower the negative log-likelihood could still go if
#   it were quadratic; it is compared with `max_edm` (shown beside it; `1e-8`
#   in float64) and is red above it.
# * **loss**, **steps** and **evaluations**: the loss at the result, the
#   steps taken (red when the step limit stopped the engine) and how many
#   times the residuals and their Jacobian (or the loss and its gradient,
#   for a minimiser) were evaluated.
# * The second row is the checklist, one cell per check, like iminuit's:
#   **call limit** not reached, **solver** ok, **finite values**, **curvature**
#   positive definite (a minimum, not a saddle), and **at a bound**, which
#   names any param held at its limit (orange: the result is still the best
#   fit inside the bounds, but that param has no symmetric error).
# * The third row is plain information (grey): the **method** `method="auto"`
#   picked (Levenberg-Marquardt for a least-squares problem), the **wall
#   time** of the run, the **compile time** (the first call of a problem
#   shape compiles; later calls reuse it) and the numbers of **free params**
#   and **data** points.
# * **reason**: the engine's message in words (`res.message`), green when
#   valid and red when not.
#
# **The parameter table** has a row per flat parameter (`fk.tree.names`
# order), with its **Value** and the **Initial** value the solve started
# from. A `FitResult` knows no error bars and no bounds by itself: its
# covariance and its problem hold them. `fk.display.display` puts them
# in one table (section (c) computes the covariance). Once an error is
# known, each value is rounded to the digits that error justifies (two
# significant digits of the error); in a notebook, hovering over a cell shows
# the number to full precision.
#
# The text form is the same cells, for logs and terminals:

# %%
print(res)

# %% [markdown]
# ## (b) A fit that failed, and why
# Stop the engine after three steps (`retries=0` keeps `method="auto"` from
# trying again with Newton's method). fitkit warns, and the display turns
# red where the result fails: **valid** says `NO` and lists the flags,
# the **EDM** is far above `max_edm`, the **steps** and **call limit** cells
# say the step limit was reached, and the **reason** spells out what went
# wrong and what to do (raise `max_steps`, or solve again from this result).

# %%
failed = fk.solve(problem, start, max_steps=3, retries=0)
failed

# %% [markdown]
# The same verdict is in the attributes, for code that must decide:

# %%
print("valid:", failed.valid, " flags:", failed.flags)
print(f"EDM {float(failed.edm):.3g} against {float(res.edm):.1e} for the converged fit")

# %% [markdown]
# ## (c) The covariance and the correlations
# `fk.covariance` inverts the curvature at the result. Its own box says
# whether the matrix is a covariance at all (**positive definite**, green;
# red when not, orange when singular), how it was made (`hessian` or
# `fisher`), whether it was **scaled** (by the reduced chi-squared, with
# `scale="chi2r"`), and which params it holds (**fixed**, **at a bound**) or
# had to drop. Given the problem, the table adds the **Error** (one standard
# deviation) and the **Lower** and **Upper** bounds; an empty bound cell is
# an open side. Below it the **Correlations** table shows the correlation
# matrix: entries of size 0.5 and above are orange, above 0.9 red.

# %%
cov = fk.covariance(problem, res)
fk.display.display(cov, problem=problem)

# %% [markdown]
# The height and the width of the line are anticorrelated (a taller,
# narrower line has about the same area), and the background with the width
# (a wider line lifts the wings). `fk.display.display` gathers every result
# of the same fit into one table: here the fit with its covariance, its
# bounds and the truth of this simulation.

# %%
fk.display.display(res, covariance=cov, problem=problem, truth=truth)

# %% [markdown]
# ## (d) The fit report
# `fk.fit_report` writes everything as text, section by section, as lmfit's
# `fit_report` does, with fitkit's verdict added.

# %%
print(fk.fit_report(res, cov, problem=problem))

# %% [markdown]
# How to read the **[[Fit]]** section:
#
# * **chi-squared** is the sum of the squared z-scores `(data - model) /
#   error` over the data points; **reduced chi-squared** divides it by the
#   degrees of freedom, data points minus free parameters. With the right
#   model and the right error bars it is close to 1, within about
#   `sqrt(2 / dof)` (0.15 here). Well above 1: the model misses something or
#   the errors are too small; well below: the errors are too large. Both are
#   shown only when every observation is Gaussian with fixed errors (for
#   Poisson or unbinned data they are not defined, and the report says so).
# * **log-likelihood** is `-problem.nll` at the result, normalising
#   constants included, so it can be compared between models of the same
#   data.
# * **AIC** (`2 k - 2 log L`) and **BIC** (`k log n - 2 log L`, with `k`
#   free parameters and `n` data points) trade the fit's quality against its
#   number of parameters. Only differences between models of the same data
#   mean anything; the lower value is preferred, and BIC penalises extra
#   parameters more.
#
# **[[Validity]]** repeats the box: valid, EDM, the flags in words, the
# engine's message and the state of the covariance (and of the profile
# intervals, when given). **[[Variables]]** gives each parameter as
# `value +/- error (relative error) (init = start)` with its bounds.
# **[[Correlations]]** lists the pairs with `|corr|` above 0.1 (change it
# with `correlation_threshold=`), largest first; a correlation near +-1
# means the data measure only a combination of the two.
#
# ### Why no error bar
# When a parameter has no error, the report says why instead of printing
# `nan`. Fit a flat background by fixing `slope` at its start value 0:
# `fixed=["slope"]` reuses the compiled solve, and the covariance of a
# result holds the same params fixed.

# %%
flat = fk.solve(problem, start, fixed=["slope"])
flat_cov = fk.covariance(problem, flat)
print(fk.fit_report(flat, flat_cov, problem=problem))
print(f"AIC sloped - flat: {res.aic - flat.aic:+.1f}, BIC sloped - flat: {res.bic - flat.bic:+.1f}")

# %% [markdown]
# The fixed `slope` has "no error: fixed ...". A parameter held at a bound
# gets "at a bound: ..." (tutorial 6, section 4), a tied one "tied: ...", and
# one whose variance came out NaN or negative is named too, in red in the
# table. Both AIC and BIC are lower for the sloped background: the slope is
# worth its parameter.
#
# ## (e) Profile intervals: asymmetric errors
# The covariance gives symmetric errors, exact only when the likelihood is
# Gaussian. `fk.intervals` finds, for each parameter, where the negative
# log-likelihood minimised over all the others rises by 0.5 (one sigma;
# MINOS's errors). Its box says whether every side converged, at which
# confidence level, whether a side ran into a bound (**one-sided**, orange)
# and whether the search found a lower minimum than the fit (red: solve
# again from `Intervals.new_minimum`).

# %%
iv = fk.intervals(problem, res)
fk.display.display(iv, problem=problem)

# %% [markdown]
# For the well-measured `background` and `slope`, **Profile -** and
# **Profile +** agree with the curvature error. The faint line's `width` has
# a longer upper side: a wider line is easier to hide in the noise than a
# narrower one. Given the intervals, the fit report writes both errors after
# the symmetric one.

# %%
print(fk.fit_report(res, cov, iv, problem))

# %% [markdown]
# ## (f) The posterior
# `fk.sample` runs NUTS from the fit. The box reports the sampler's health:
# **divergences** (red if any: the sampler met curvature it could not follow
# and the draws may be biased), the largest **R-hat** (red above 1.01: the
# chains, or halves of one chain, disagree) and the smallest bulk **ESS**,
# the number of independent draws the correlated chain is worth (orange below
# 100 per chain). The table gives each parameter's posterior **mean** and
# **std**, and its own ESS and R-hat, coloured the same way.

# %%
num_warmup, num_samples = (200, 1000) if QUICK else (500, 4000)
post = fk.sample(problem, res, num_warmup=num_warmup, num_samples=num_samples, key=1, progress=False)
post

# %% [markdown]
# Everything in one table: the fit, its covariance and profile errors, the
# bounds, the start, the posterior and the truth.

# %%
fk.display.display(res, covariance=cov, intervals=iv, problem=problem, posterior=post, truth=truth)

# %% [markdown]
# ## (g) Figures
# ### Pulls against the truth
# `fk.plot.pulls` draws `(estimate - truth) / error` for each parameter on the
# shaded 1, 2 and 3 sigma bands, with the pull written at the right. For a
# correct fit with correct errors the pulls scatter like draws from N(0, 1):
# about two in three inside the inner band, rarely one beyond 3 (drawn red;
# beyond the axis, an arrow). A parameter without an error is a grey cross
# marked "no σ". Given the intervals, the profile errors are drawn beside
# the pulls (orange) in the same units, so an asymmetric interval shows as
# an off-centre bar. The title counts the rms pull and the pulls beyond 2
# and 3 sigma. Against a simulation's truth this is the first check of a
# fit; against another fit's params (`reference_label="fit A"`) it compares
# two analyses.

# %%
fig = fk.plot.pulls(res, cov, truth, intervals=iv)
fk.plot.show(fig, "12_pulls")

# %% [markdown]
# ### Error bars: raw values or pulls
# `fk.plot.errorbars(cov, truth=truth)` draws the estimates with their
# error bars and the truth as crosses (`kind="raw"`). When values of
# different sizes share one axis a bar can become too short to see: here the
# `slope`, 0.05 with an error of 0.005, beside an amplitude near 1. The
# default `kind="auto"` then switches to the pulls of the truth
# (`kind="pulls"`), which every parameter fills alike.

# %%
fig = fk.plot.errorbars(cov, truth=truth, kind="raw")
fig.axes[0].set_title('kind="raw"')
fk.plot.show(fig, "12_errorbars_raw")
fig = fk.plot.errorbars(cov, truth=truth, kind="pulls")
fk.plot.show(fig, "12_errorbars_pulls")

# %% [markdown]
# ### The z-scores of the data
# `fk.plot.zscores` histograms `(data - model) / error` over every data point
# at the fit, against the standard normal curve it should follow. Read the
# legend: a mean away from 0 is a bias, a std above 1 means the errors are
# underestimated or the model misses something (the reduced chi-squared
# says the same in one number), and more points beyond 3 sigma than the
# normal count given beside it are outliers (tutorial 8 fits through them).

# %%
fig = fk.plot.zscores(problem, res.params)
fk.plot.show(fig, "12_zscores")

# %% [markdown]
# ### Residuals
# `fk.plot.residuals` draws the z-scores of each observation in place: an
# image for 2-D data, points against their index for 1-D data like this
# spectrum, all panels on one shared scale. The histogram above shows
# whether the residuals are too large; this shows *where*. Structure, such as a
# run of points on one side of zero at the line's position, means a model
# that misses a shape the data have, even when the histogram looks normal.

# %%
fig = fk.plot.residuals(problem, res.params, titles=["Peak on a sloping background"])
fk.plot.show(fig, "12_residuals")

# %% [markdown]
# ### Corner plot of a subset
# `fk.plot.corner` overlays any mix of posteriors (their draws), covariances
# (the Gaussian they describe) and fits (a round marker with dotted lines),
# with the truth as red dashed lines (the legend names the contours only).
# `params=` picks the parameters to show by path (`["wfe"]` would select
# every element of a vector leaf), which keeps a plot of many parameters
# readable; `intervals=` marks each profile interval on its marginal as
# dashed lines. Where the NUTS contours and the covariance's ellipses agree,
# the Gaussian approximation is good; the line's `width` has a posterior
# that leans towards larger values, as its profile interval does.

# %%
fig = fk.plot.corner(
    [post, cov, res],
    truth=truth,
    params=["amplitude", "width", "centre"],
    labels=["NUTS", "covariance", "best fit"],
    intervals=iv,
    covariance_draws=20_000,
)
fk.plot.show(fig, "12_corner")

# %% [markdown]
# ## Where the numbers live
# Every cell of a display is an attribute too, for code and for tables of
# many fits:
#
# | shown | attribute |
# |---|---|
# | valid, flags, reason | `res.valid`, `res.flags`, `res.message` |
# | EDM, loss, steps | `res.edm`, `res.loss`, `res.steps` |
# | evaluations | `res.stats` |
# | wall and compile time | `res.wall_time`, `res.compile_time` |
# | log-likelihood, AIC, BIC | `res.log_likelihood`, `res.aic`, `res.bic` |
# | Error, Correlations | `cov.std`, `cov.correlation`, `cov.to_dataframe()` |
# | Profile - / + | `iv.errors`, `iv.lower`, `iv.upper`, `iv.table()` |
# | Post. mean, std, ESS, R-hat | `post.summary()` |
# | the display itself | `fk.display.display(...)`, `fk.display.html(obj)`, `fk.display.text(obj)` |
