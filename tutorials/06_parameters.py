# %% [markdown]
# # 6. Parameters: bounds, fixed values and ties
#
# A model usually knows more than its data do: an amplitude is never
# negative, a phase only makes sense within one half-turn, two emission lines
# of the same gas share its temperature, a calibration already pins a
# normalisation. fitkit takes three kinds of such knowledge:
#
# * **bounds**, `fk.Problem(..., bounds={path: (lower, upper)})`: the path
#   may be a sub-tree (`"flux"`), a leaf (`"width.blue"`) or one element
#   (`"wfe[0]"`); a side given as `None` is open, and the limits may be
#   arrays shaped like the leaf. A numpyro prior with bounded support
#   (`HalfNormal`, `Uniform`, `Beta`, ...) bounds its leaf by itself.
# * **ties**, `fk.Problem(..., ties={path: fn})`: the param at `path` is
#   computed from the others by `fn(params)` instead of being fitted.
# * **fixed params**, `fixed=[paths]`, given to each call (`fk.solve`,
#   `fk.fit`, `fk.covariance`, `fk.sample`, `fk.analyse`).
#
# Bounds and ties describe the model, so they live on the problem. Which
# params to hold is a question you put to the model, often several times in
# a row (calibrated, then free; a scan), so it belongs to the call, and
# changing it does not recompile anything.
#
# Every engine works on one unconstrained vector `z` and evaluates the
# problem at `params = T(z)`. `T` uses Stan's transforms: `lo + exp(z)` for a
# lower bound, `hi - exp(-z)` for an upper one and
# `lo + (hi - lo) * sigmoid(z)` for both; it then writes the fixed values in
# and computes the ties. The params you pass in and get back are always the
# physical ones.

# %%
import importlib.util
import os

import jax
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
import numpyro.distributions as dist
import optax

import fitkit as fk
import fitkit.plot

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


def show(params, digits=4):
    """A params pytree as a flat dict of rounded floats, for printing."""
    flat = fk.tree.ravel(params)[0]
    return {name: round(float(v), digits) for name, v in zip(fk.tree.names(params), flat)}


# %% [markdown]
# ## 1. A damped sine wave: bounds that pick one answer
# A signal `amp * exp(-decay t) * sin(omega t + shift)`, sampled 120 times with
# noise 0.08. The model has a symmetry: `(amp, shift)` and
# `(-amp, shift + pi)` draw the same curve, so an unbounded fit lands on
# either depending on where it starts. Declaring `amp >= 0`, `decay >= 0` and
# `shift` inside `(-pi/2, pi/2)` leaves one of them.
#
# An observation is an `fk.Observation` with its own fields (here the sample
# times `t`) and a `predict(params, model)`; this model is just a formula, so
# the problem's `model` is `None`.


# %%
class Wave(fk.Observation):
    t: jax.Array

    def predict(self, params, model):
        p = params
        return p["amp"] * jnp.exp(-p["decay"] * self.t) * jnp.sin(p["omega"] * self.t + p["shift"])


t = jnp.linspace(0.0, 10.0, 120)
wave_truth = {"amp": 1.5, "decay": 0.15, "omega": 2.2, "shift": 0.6}
noise = 0.08
clean = Wave(data=jnp.zeros_like(t), t=t).predict(wave_truth, None)
wave_obs = Wave(data=clean + noise * jr.normal(jr.key(4), t.shape), error=noise, t=t)
wave = fk.Problem(
    None,
    wave_obs,
    bounds={"amp": (0.0, None), "decay": (0.0, None), "shift": (-np.pi / 2, np.pi / 2)},
)
wave_start = {"amp": 1.0, "decay": 0.1, "omega": 2.0, "shift": 1.2}
wave_fit = fk.solve(wave, wave_start)
print(wave_fit)
print("bounded fit:", show(wave_fit.params), " chi2r", round(float(wave.chi2r(wave_fit.params)), 4))
mirror = {**wave_fit.params, "amp": -wave_fit.params["amp"], "shift": wave_fit.params["shift"] + np.pi}
print("its mirror: ", show(mirror), " chi2r", round(float(wave.chi2r(mirror)), 4))

# %% [markdown]
# The mirror image fits exactly as well, but it lies outside the bounds, so
# no engine can reach it. A start outside the bounds is refused, with the
# param named:

# %%
try:
    fk.solve(wave, {**wave_start, "shift": 2.5})
except fk.ParametrisationError as err:
    print(err)

# %% [markdown]
# `problem.parametrisation(params)` is the map `T` itself. `to_latent` gives
# the unconstrained `z` the engines move: `log(amp)` and `log(decay)` for the
# one-sided bounds, the logit of the position inside the interval for
# `shift`, and `omega` unchanged.

# %%
T = wave.parametrisation(wave_fit.params)
print("names:", T.names)
print("lower:", np.asarray(T.lower), " upper:", np.round(np.asarray(T.upper), 4))
print("z at the fit:", np.round(np.asarray(T.to_latent(wave_fit.params)), 4))

# %% [markdown]
# The logistic map is used rather than the sine map of MINUIT and lmfit
# (`lo + (hi - lo) * (sin z + 1) / 2`) because it is one-to-one: every value
# inside the interval has exactly one `z`, so a sampler moving in `z` sees one
# copy of the posterior (the sine map repeats it every `2 pi`), and the
# log-Jacobian `log |dx/dz|` is finite for every `z` (the sine map's is
# `-inf` at each turning point).

# %%
z = jnp.linspace(-6.0, 6.0, 401)
x = jax.vmap(T.constrain)(jnp.tile(z[:, None], (1, T.size)))
lo, hi = -np.pi / 2, np.pi / 2
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
left.plot(z, x[:, T.names.index("amp")], label="lower bound 0: exp(z)")
left.plot(z, x[:, T.names.index("omega")], label="no bound: z")
left.set(xlabel="z (what the engines move)", ylabel="param", ylim=(-3, 6), title="One-sided and free")
left.legend()
right.plot(z, x[:, T.names.index("shift")], label="fitkit / Stan: logistic")
right.plot(z, lo + (hi - lo) * (np.sin(z) + 1) / 2, ls="--", label="MINUIT / lmfit: sine")
right.axhline(lo, c="k", lw=0.8)
right.axhline(hi, c="k", lw=0.8)
right.set(xlabel="z", ylabel="shift", title="Two-sided, (-pi/2, pi/2)")
right.legend(loc="lower right")
fig.tight_layout()
fk.plot.show(fig, "06_transforms")

# %% [markdown]
# Error bars come from the curvature in the physical params, so bounds that
# are far from the optimum change nothing: these are the usual Hessian
# errors. The pulls `(estimate - truth) / std` are all within one standard
# deviation here.

# %%
wave_cov = fk.covariance(wave, wave_fit)
print(wave_cov)
print(wave_cov.to_dataframe().assign(truth=[wave_truth[n] for n in wave_cov.names]).round(5))
band = wave_cov.predict(lambda p: wave_obs.predict(p, None))

fig, ax = plt.subplots(figsize=(9, 4))
ax.errorbar(t, wave_obs.data, yerr=noise, fmt=".", ms=3, alpha=0.5, label="data")
ax.plot(t, clean, c="k", lw=1, label="truth")
ax.plot(t, band.mean, c="C1", label="bounded fit")
ax.fill_between(
    t, band.mean - 3 * band.std, band.mean + 3 * band.std, color="C1", alpha=0.3, label="3 sigma band"
)
ax.set(xlabel="t", ylabel="signal", title="Damped sine with amp >= 0 and |shift| < pi/2")
ax.legend()
fk.plot.show(fig, "06_wave")
fig = fk.plot.errorbars(wave_cov, truth=wave_truth, relative=True)
fig.axes[0].set_title("Pulls of the damped-sine fit")
fk.plot.show(fig, "06_wave_pulls")


# %% [markdown]
# ## 2. Two emission lines with tied widths
# Thermal (Doppler) broadening makes a line's width proportional to its
# wavelength, so two lines of the same gas at 500 nm and 600 nm have widths in
# the ratio 1.2. Each line has its own flux and centre, on a flat continuum;
# the red line is weak. The tie is a function of the params pytree that
# returns the tied leaf. A tied param cannot carry bounds of its own (it
# follows the params it is computed from), so the bound goes on `width.blue`.


# %%
class Spectrum(fk.Observation):
    wavelength: jax.Array

    def predict(self, params, model):
        p, out = params, params["continuum"]
        for line in ("blue", "red"):
            u = (self.wavelength - p["centre"][line]) / p["width"][line]
            out = out + p["flux"][line] * jnp.exp(-0.5 * u**2) / (p["width"][line] * jnp.sqrt(2 * jnp.pi))
        return out


RATIO = 600.0 / 500.0
wavelength = jnp.linspace(480.0, 620.0, 281)
lines_truth = {
    "continuum": 1.0,
    "flux": {"blue": 30.0, "red": 12.0},
    "centre": {"blue": 500.0, "red": 600.0},
    "width": {"blue": 3.0, "red": 3.0 * RATIO},
}
spectrum = Spectrum(data=jnp.zeros_like(wavelength), wavelength=wavelength).predict(lines_truth, None)
spectrum = spectrum + 0.15 * jr.normal(jr.key(6), wavelength.shape)
lines_obs = Spectrum(data=spectrum, error=0.15, wavelength=wavelength)

separate = fk.Problem(None, lines_obs, bounds={"width": (0.0, None)})
tied = fk.Problem(
    None,
    lines_obs,
    bounds={"width.blue": (0.0, None)},
    ties={"width.red": lambda p: p["width"]["blue"] * RATIO},
)
lines_start = {
    "continuum": 0.8,
    "flux": {"blue": 20.0, "red": 20.0},
    "centre": {"blue": 498.0, "red": 603.0},
    "width": {"blue": 2.0, "red": 2.0},
}
print("tied:", tied.parametrisation(lines_start).tied_names())
separate_fit = fk.solve(separate, lines_start)
tied_fit = fk.solve(tied, lines_start)
print("widths, fitted separately:", show(separate_fit.params["width"]))
print("widths, tied:             ", show(tied_fit.params["width"]))

# %% [markdown]
# The tied width is not a free param: the covariance is built over the six
# free ones and propagated exactly to all seven through the Jacobian of the
# map, so `width.red` gets an error bar 1.2 times that of `width.blue`, with
# correlation 1. The strong blue line now measures the red line's width: its
# error drops about threefold. The chi-squared rises by about half a unit for
# the one constraint added, so the data agree with the tie.

# %%
separate_cov = fk.covariance(separate, separate_fit)
tied_cov = fk.covariance(tied, tied_fit)
table = separate_cov.to_dataframe().join(tied_cov.to_dataframe(), lsuffix=" (separate)", rsuffix=" (tied)")
print(table.round(4).to_string())
i, j = tied_cov.names.index("width.blue"), tied_cov.names.index("width.red")
print("std ratio red / blue:", round(float(tied_cov.std["width"]["red"] / tied_cov.std["width"]["blue"]), 6))
print("correlation of the two widths:", round(float(tied_cov.correlation[i, j]), 6))
delta = float(tied.chi2(tied_fit.params) - separate.chi2(separate_fit.params))
print(f"chi2(tied) - chi2(separate) = {delta:.3f} for one constraint")

# %% [markdown]
# `fk.fit` respects the same declarations, and its per-path optimisers work
# at any depth of the params tree. They act on the unconstrained `z`, arranged
# like the params. Adam moves each coordinate by about its learning rate per
# step, so each rate is set by how far that param has to travel: the two
# centres get their own. `"width"` names the sub-tree; its tied member has no
# free coordinate (it is computed), so only `width.blue` moves, and since its
# `z` is `log(width)` its rate is a relative step. The Levenberg-Marquardt
# polish from the result reuses the compiled solve.

# %%
optimisers = {
    "continuum": optax.adam(1e-2),
    "flux": optax.adam(0.3),
    "centre.blue": optax.adam(0.05),
    "centre.red": optax.adam(0.2),
    "width": optax.adam(0.02),
}
warm = fk.fit(tied, lines_start, optimisers, steps=300, progress=False)
polished = fk.solve(tied, warm)
print(warm)
print("after Adam:", show(warm.params["width"]), " after the polish:", show(polished.params["width"]))
print(f"polish: {polished.steps} steps, compile {polished.compile_time:.2f} s")

# %%
tied_band = tied_cov.predict(lambda p: lines_obs.predict(p, None))
fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=(3, 1))
top.plot(wavelength, spectrum, ".", ms=3, alpha=0.5, label="data")
top.plot(wavelength, tied_band.mean, c="C1", label="tied widths")
top.plot(
    wavelength, lines_obs.predict(separate_fit.params, None), c="C2", ls="--", lw=1, label="separate widths"
)
top.set(ylabel="flux density", title="Two lines whose widths are tied (red = 1.2 x blue)")
top.legend()
bottom.plot(wavelength, tied.residuals(tied_fit.params), ".", ms=3)
bottom.set(xlabel="wavelength (nm)", ylabel="z-score")
fig.tight_layout()
fk.plot.show(fig, "06_lines")


# %% [markdown]
# ## 3. Fixed params: a decay with a calibrated normalisation
# Counts from a source that decays as `N exp(-t / tau)` over a flat
# background `B`, with Poisson-like errors `sqrt(counts)`. Suppose a
# calibration says `N = 500`: `fixed=["N"]` holds it at its start value.
# The result remembers `res.fixed`, and `fk.covariance` given the result
# holds the same params, with zero variance.


# %%
class Decay(fk.Observation):
    t: jax.Array

    def predict(self, params, model):
        return params["N"] * jnp.exp(-self.t / params["tau"]) + params["B"]


times = jnp.linspace(0.0, 20.0, 60)
decay_truth = {"N": 500.0, "tau": 4.0, "B": 20.0}
rate = Decay(data=jnp.zeros_like(times), t=times).predict(decay_truth, None)
counts = jr.poisson(jr.key(3), rate).astype(float)
decay = fk.Problem(
    None,
    Decay(data=counts, error=jnp.sqrt(jnp.maximum(counts, 1.0)), t=times),
    bounds={"tau": (0.0, None), "B": (0.0, None)},
)
calibrated = fk.solve(decay, {"N": 500.0, "tau": 2.0, "B": 10.0}, fixed=["N"])
print("fixed:", calibrated.fixed, show(calibrated.params, 3))
calibrated_cov = fk.covariance(decay, calibrated)
print(calibrated_cov)
print("cov.fixed:", calibrated_cov.fixed)

# %% [markdown]
# To release it, pass `fixed=[]`: with the default `fixed=None` a call given a
# `FitResult` keeps what that result held. `N` moves, and `tau` becomes less
# certain because the two are correlated: holding `N` had hidden part of the
# uncertainty in `tau`. The solve with another choice of fixed params did not
# compile again.

# %%
released = fk.solve(decay, calibrated, fixed=[])
released_cov = fk.covariance(decay, released)
print("fixed:", released.fixed, show(released.params, 3), f"(compile {released.compile_time:.2f} s)")
print(
    calibrated_cov.to_dataframe()
    .join(released_cov.to_dataframe(), lsuffix=" N fixed", rsuffix=" N free")
    .round(4)
)
k, m = released_cov.names.index("N"), released_cov.names.index("tau")
print("correlation of N and tau:", round(float(released_cov.correlation[k, m]), 3))


# %% [markdown]
# ## 4. An active bound: the data prefer the forbidden side
# A faint line on a background that cannot be negative (a photon rate). The
# true background is 0, and in this realisation of the noise an unbounded fit
# prefers a negative level, 1.8 sigma below zero.


# %%
class Line(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        p = params
        return p["background"] + p["flux"] * jnp.exp(-0.5 * ((self.x - p["centre"]) / p["width"]) ** 2)


xs = jnp.linspace(-5.0, 5.0, 80)
line_truth = {"background": 0.0, "centre": 0.3, "flux": 1.0, "width": 0.8}
line_clean = Line(data=jnp.zeros_like(xs), x=xs).predict(line_truth, None)
line_obs = Line(data=line_clean + 0.2 * np.random.default_rng(7).normal(size=xs.shape), error=0.2, x=xs)
line_start = {"background": 0.1, "centre": 0.0, "flux": 0.8, "width": 1.0}

line = fk.Problem(None, line_obs, bounds={"background": (0.0, None), "width": (0.0, None)})
# The same problem with no lower bound on the background (bound values are data, not structure:
# this shares every compiled engine with `line`).
free_line = fk.Problem(None, line_obs, bounds={"background": (-np.inf, None), "width": (0.0, None)})
free_fit = fk.solve(free_line, line_start)
free_cov = fk.covariance(free_line, free_fit)
print(free_cov.to_dataframe().round(4))

# %% [markdown]
# With `background >= 0` the minimum lies beyond the bound. `fk.solve` notices
# that the param ends within a hair of its limit, holds it exactly there and
# solves the others again. The result is still valid (it is the best fit
# inside the bounds), but it carries the informational flag `at_limit`, lists
# the param in `res.at_limit` and says so in its message.

# %%
line_fit = fk.solve(line, line_start)
print("valid:", line_fit.valid, " flags:", line_fit.flags, " at_limit:", line_fit.at_limit)
print(line_fit.message)
print(show(line_fit.params))

# %% [markdown]
# A symmetric error bar makes no sense for a param at its limit (it could only
# move one way), so `fk.covariance` reports `std` NaN there and lists it in
# `cov.at_limit`. The other errors are those with the background held at zero.

# %%
line_cov = fk.covariance(line, line_fit)
print(line_cov)
print("cov.at_limit:", line_cov.at_limit)
print(line_cov.to_dataframe().round(4))

# %% [markdown]
# What to quote instead is a one-sided limit, from the profile of the
# chi-squared along the background; section 5 computes it.
#
# ## 5. Scans reuse the compiled solve
# Which params are fixed is an array inside `T`, not part of the compiled
# program: a loop that fixes one param after another runs on the solve that
# section 1 compiled, and compiles nothing itself. A useful loop: fix each param of the damped sine in
# turn at its estimate plus one standard deviation and solve the others. If
# the Hessian errors describe the chi-squared surface, each such profile
# point lies one unit above the minimum (MINOS asks the same question, the
# other way round).

# %%
chi2_min = float(wave.chi2(wave_fit.params))
print(f"section 1's solve: compile {wave_fit.compile_time:.2f} s, run {1e3 * wave_fit.wall_time:.2f} ms")
print(f"{'fixed':>7} {'value':>9} {'delta chi2':>11} {'compile (s)':>12} {'run (ms)':>9}")
for name in wave_cov.names:
    shifted = {**wave_fit.params, name: wave_fit.params[name] + wave_cov.std[name]}
    res = fk.solve(wave, shifted, fixed=[name])
    delta = float(wave.chi2(res.params)) - chi2_min
    print(
        f"{name:>7} {float(shifted[name]):9.4f} {delta:11.4f} {res.compile_time:12.2f} {1e3 * res.wall_time:9.2f}"
    )

# %% [markdown]
# The same mechanism profiles the background of section 4: fix it on a grid
# from the bound upwards and minimise the chi-squared over the other params.
# Above its minimum at the bound, the profile reaches 2.71, the one-sided 95%
# level of a chi-squared with one degree of freedom, at the upper limit. (For
# limits with exact coverage close to a boundary see Feldman and Cousins,
# 1998; this is the simple recipe.)

# %%
grid = np.linspace(0.0, 0.1, 11 if QUICK else 41)
profile = []
for level in grid:
    res = fk.solve(line, {**line_fit.params, "background": level}, fixed=["background"])
    profile.append(float(line.chi2(res.params)))
profile = np.asarray(profile) - float(line.chi2(line_fit.params))
upper_limit = float(np.interp(2.71, profile, grid))
print(f"background < {upper_limit:.4f} (95%, one-sided); last compile {res.compile_time:.2f} s")

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
left.errorbar(xs, line_obs.data, yerr=0.2, fmt=".", ms=4, alpha=0.5, label="data")
left.plot(
    xs,
    line_obs.predict(free_fit.params, None),
    label=f"unbounded: b = {float(free_fit.params['background']):.3f}",
)
left.plot(xs, line_obs.predict(line_fit.params, None), label="b >= 0: held at 0")
left.axhline(0.0, c="k", lw=0.8)
left.set(xlabel="x", ylabel="signal", title="A faint line on a non-negative background")
left.legend()
right.plot(grid, profile, "o-", ms=3)
right.axhline(2.71, c="k", ls="--", lw=0.8, label="2.71: one-sided 95%")
right.axvline(upper_limit, c="C3", lw=1, label=f"upper limit {upper_limit:.3f}")
right.set(xlabel="background (fixed)", ylabel="profile chi2 - minimum", title="Profile of the background")
right.legend()
fig.tight_layout()
fk.plot.show(fig, "06_background")


# %% [markdown]
# ## 6. Sampling a bounded param, and the Jacobian
# A second exposure of the same faint line, now with prior knowledge of the
# background: a `HalfNormal(0.05)` prior. Its support is `(0, inf)`, so the
# background is bounded at zero without a `bounds` entry.
#
# `fk.solve` returns the maximum a posteriori point of the *physical*
# params, as CmdStan's `optimize` with `jacobian=False` does, and
# `jacobian=False` is the only choice. `fk.sample`, however, moves NUTS in `z`,
# where the density of `z = log(b)` is `p(b | data) |db/dz| =
# p(b | data) * b`; it adds that log-Jacobian, `log b = z`, to the
# log-density. Without it the draws of `b` would follow `p(b | data) / b`,
# which does not even integrate near zero: the chains would slide towards
# `z = -inf`, and a prior on the physical param would not mean what it says.
#
# In `z` the posterior has an exponential tail towards `-inf` (the region
# just above the bound), where its curvature differs from that at the mode
# used to whiten the latent space. A target acceptance of 0.9 instead of the
# default 0.8 gives a smaller step that keeps NUTS out of divergent
# transitions there.

# %%
exposure = Line(data=line_clean + 0.2 * np.random.default_rng(6).normal(size=xs.shape), error=0.2, x=xs)
with_prior = fk.Problem(
    None, exposure, priors={"background": dist.HalfNormal(0.05)}, bounds={"width": (0.0, None)}
)
P = with_prior.parametrisation(line_start)
for name, low, high in zip(P.names, np.asarray(P.lower), np.asarray(P.upper)):
    print(f"{name:>10}: ({low:g}, {high:g})")
map_fit = fk.solve(with_prior, line_start)
print(map_fit)
map_cov = fk.covariance(with_prior, map_fit)
print(map_cov)

# %%
num_warmup, num_samples = 200, (1000 if QUICK else 4000)
post = fk.sample(
    with_prior,
    map_fit,
    num_warmup=num_warmup,
    num_samples=num_samples,
    target_accept=0.9,
    key=2,
    progress=False,
)
print(post)
print(post.summary()[["mean", "std", "median", "ess_bulk", "r_hat"]].round(4).to_string())

# %% [markdown]
# The mode sits less than half a standard deviation above the bound, so the
# Gaussian (Laplace) approximation spills across it. `Covariance.sample`
# truncates its draws to the bounds (a draw outside is drawn again). Because
# the background enters the model linearly, that truncated Gaussian is close
# to the exact marginal posterior here, and the NUTS draws agree with it; both
# differ clearly from the untruncated Gaussian and from the prior.

# %%
laplace = map_cov.sample(jr.key(1), 20_000)
nuts_b = np.asarray(post.samples["background"]).ravel()
laplace_b = np.asarray(laplace["background"])
print(f"NUTS:              mean {nuts_b.mean():.4f}  std {nuts_b.std():.4f}  min {nuts_b.min():.2e}")
print(f"truncated Laplace: mean {laplace_b.mean():.4f}  std {laplace_b.std():.4f}  min {laplace_b.min():.2e}")
mode, sigma = float(map_fit.params["background"]), float(map_cov.std["background"])
print(f"untruncated:       mean {mode:.4f}  std {sigma:.4f}")

b = np.linspace(-0.06, 0.15, 400)
fig, ax = plt.subplots(figsize=(8, 4))
bins = np.linspace(0.0, 0.12, 41)
ax.hist(nuts_b, bins=bins, density=True, alpha=0.5, label="NUTS draws (fk.sample)")
ax.hist(
    laplace_b, bins=bins, density=True, histtype="step", lw=2, label="truncated Laplace (Covariance.sample)"
)
gauss = np.exp(-0.5 * ((b - mode) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
ax.plot(b, gauss, c="k", ls=":", label="untruncated Laplace")
prior = np.where(b > 0, 2 * np.exp(-0.5 * (b / 0.05) ** 2) / (0.05 * np.sqrt(2 * np.pi)), 0.0)
ax.plot(b, prior, c="C3", label="prior HalfNormal(0.05)")
ax.axvline(0.0, c="k", lw=0.8)
ax.set(xlabel="background", ylabel="density", title="Posterior of a param bounded at zero")
ax.legend()
fk.plot.show(fig, "06_posterior")


# %% [markdown]
# ## Coming from lmfit or iminuit
# | | fitkit | lmfit | iminuit |
# |---|---|---|---|
# | bounds | `Problem(bounds={"amp": (0, None)})` | `Parameter(min=0)` | `m.limits["amp"] = (0, None)` |
# | fixed | `fixed=["N"]` per call | `Parameter(vary=False)` | `m.fixed["N"] = True` |
# | ties | `ties={"w2": lambda p: 1.2 * p["w1"]}` | `Parameter(expr="1.2 * w1")` | none (reparametrise) |
# | bounded map | exp / logistic (Stan) | sqrt / sine (MINUIT) | sqrt / sine (MINUIT) |
# | error of a param at a bound | NaN, flagged `at_limit` | a symmetric stderr | `fmin.has_parameters_at_limit` |
#
# * lmfit's `expr` is a string evaluated with the other params' names; a
#   fitkit tie is a JAX function of the whole params tree, so it can use any
#   array operation and is differentiated exactly when errors are propagated.
# * lmfit's `vary` and iminuit's `fixed` are state on the parameter object,
#   changed between calls; fitkit's `fixed` is an argument, remembered by the
#   result and reused downstream, and changing it compiles nothing.
# * lmfit multiplies its covariance by the reduced chi-squared by default
#   (`scale_covar=True`); `fk.covariance(..., method="fisher",
#   scale="chi2r")` gives the same numbers, with `n_data - n_free` degrees of
#   freedom. Leave `scale` at `None` when the errors are known.
#
# When lmfit is installed (it is a development dependency of fitkit), both
# claims can be checked on the damped sine and the faint line.

# %%
if importlib.util.find_spec("lmfit") is None:
    print("lmfit is not installed; skipping the comparison")
else:
    import lmfit

    def lmfit_fit(observation, start, bounds, **options):
        params = lmfit.Parameters()
        for name, value in start.items():
            low, high = bounds.get(name, (None, None))
            params.add(
                name, float(value), min=-np.inf if low is None else low, max=np.inf if high is None else high
            )

        z_scores = jax.jit(lambda v: (observation.predict(v, None) - observation.data) / observation.error)

        def residual(p):
            return np.asarray(z_scores({k: jnp.asarray(v) for k, v in p.valuesdict().items()}))

        return lmfit.minimize(residual, params, **options).params

    wave_bounds = {"amp": (0.0, None), "decay": (0.0, None), "shift": (-np.pi / 2, np.pi / 2)}
    reference = lmfit_fit(wave_obs, wave_start, wave_bounds)
    scaled = fk.covariance(wave, wave_fit, method="fisher", scale="chi2r")
    print(f"{'param':>7} {'lmfit stderr':>13} {'fitkit chi2r':>13}")
    for name in scaled.names:
        print(f"{name:>7} {reference[name].stderr:13.6f} {float(scaled.std[name]):13.6f}")

    at_bound = lmfit_fit(
        line_obs, line_start, {"background": (0.0, None), "width": (0.0, None)}, scale_covar=False
    )
    b_ref = at_bound["background"]
    print(f"lmfit, faint line: background = {b_ref.value:.3g} +- {b_ref.stderr:.4f} (no warning)")
    print(
        f"fitkit:            background = {float(line_fit.params['background']):.3g}, std NaN, flag at_limit"
    )

# %% [markdown]
# lmfit returns a background a hair above zero with a symmetric error bar of
# about twice the unbounded one, and no sign that the bound is active;
# fitkit holds it at the bound, says so, and leaves the one-sided question
# to the profile of section 5 or to the posterior of section 6.
