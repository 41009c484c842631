# %% [markdown]
# # 10. Hierarchical models: eight schools and the funnel
#
# Many astronomical questions are about a *population*: the intrinsic
# scatter of a scaling relation, the spread of metallicities among a
# cluster's stars, the distribution of planet masses behind a set of radial
# velocity detections. Each member is measured with its own error, and the
# population has params of its own. A hierarchical model says so:
#
# $$\theta_j \sim \mathcal{N}(\mu, \tau), \qquad y_j \sim \mathcal{N}(\theta_j, \sigma_j),$$
#
# with priors on the population mean `mu` and the intrinsic scatter `tau`.
# Each `theta_j` is pulled towards `mu` by an amount set by the data:
# strongly when `tau` is small compared with `sigma_j` (the members are
# alike, so the others tell us about this one), weakly when it is large.
# This *partial pooling* sits between fitting every member on its own
# (`tau -> inf`) and averaging them all (`tau = 0`).
#
# The classic example is Rubin's (1981) eight schools, from Gelman et al.,
# *Bayesian Data Analysis*, chapter 5: the estimated effects `y_j` of a
# coaching programme on test scores in eight schools, with standard errors
# `sigma_j`. Its posterior has the geometry every hierarchical model shares
# when the data constrain `tau` weakly, a *funnel*, which is hard for any
# sampler. This tutorial samples it in the two usual parametrisations, with
# `fk.sample` and with numpyro's own NUTS, and counts what goes wrong.
#
# In fitkit a hierarchical prior is a prior that is a function of the params,
# `priors={"theta": lambda p: dist.Normal(p["mu"], p["tau"])}`, and the
# non-centred form uses a tie, `ties={"theta": lambda p: p["mu"] + p["tau"] *
# p["eta"]}`.

# %%
import os
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import fitkit as fk
import fitkit.plot
from fitkit.sampling import ess_bulk, r_hat

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"

# the same settings for every sampler below
NUM_WARMUP, NUM_SAMPLES, NUM_CHAINS = (500, 1000, 2) if QUICK else (1000, 5000, 4)

# %% [markdown]
# ## 1. The data and the centred model
# The published data, and the model of Gelman et al. with the priors of the
# Stan and numpyro examples:
#
# * `mu ~ Normal(0, 5)`, `tau ~ HalfCauchy(5)`;
# * `theta_j ~ Normal(mu, tau)`: a prior whose params are params;
# * `y_j ~ Normal(theta_j, sigma_j)`: the observation predicts `theta`.
#
# `HalfCauchy` has support `tau > 0`, so it bounds `tau` by itself: the
# engines move `log(tau)`.

# %%
y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
J = y.size


class Schools(fk.Observation):
    def predict(self, params, model):
        return params["theta"]


schools = Schools(data=y, error=sigma)
population = {"mu": dist.Normal(0.0, 5.0), "tau": dist.HalfCauchy(5.0)}
centred = fk.Problem(None, schools, priors={**population, "theta": lambda p: dist.Normal(p["mu"], p["tau"])})
pooled = float(np.sum(y / sigma**2) / np.sum(1 / sigma**2))
print(f"complete pooling: mu = {pooled:.2f} +- {float(np.sum(1 / sigma**2) ** -0.5):.2f}")

# %% [markdown]
# ## 2. There is no mode
# Everything in fitkit so far started from the optimum. A hierarchical
# posterior has none worth the name. Put every `theta_j` at `mu` and let `tau`
# shrink: the prior density of the eight `theta_j` grows as `tau^-8`, the
# likelihood stays what it is, and `-log p` falls without bound. (In the
# coordinate `log tau` that the sampler uses, the Jacobian `tau` leaves
# `tau^-7`: no better.) `fk.solve` on this problem runs down that
# direction and stops, rightly, with a result that is not valid.

# %%
axis = jax.jit(lambda tau: centred.nll({"mu": jnp.asarray(pooled), "tau": tau, "theta": jnp.full(J, pooled)}))
for tau in (10.0, 1.0, 0.1, 0.01, 0.001):
    print(f"tau = {tau:6g}: -log p = {float(axis(jnp.asarray(tau))):8.2f}")

# %% [markdown]
# The infinite density at `tau = 0` carries no probability: the region where
# it is large is a sliver of vanishing volume, the *neck* of the funnel. The
# posterior mass lies at `tau` of a few units, spread over a wide range. What
# a sampler has to cope with is the change of scale between the two: at a
# given `tau`, each `theta_j` varies by about `tau` around `mu` (or less,
# when the data pin it), so where `tau` is small the posterior is a narrow
# tube, and where it is large a wide mouth. No single step size suits both.
#
# ## 3. Sampling the centred model with fk.sample
# `fk.sample` normally whitens the posterior with its curvature at the mode
# and runs NUTS on the whitened vector, where the posterior is close to a unit
# normal. With a bounded param it first looks for the mode of the density it
# actually samples, that of `log tau` with the Jacobian included, starting
# from the point it is given. Here that search walks down the funnel's axis,
# where the curvature soon has negative directions, and `fk.sample` refuses,
# naming them and suggesting what to do instead:

# %%
centred_start = {"mu": jnp.asarray(pooled), "tau": jnp.asarray(5.0), "theta": jnp.full(J, pooled)}
settings = dict(num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES, num_chains=NUM_CHAINS, progress=False)
try:
    fk.sample(centred, centred_start, key=0, **settings)
except fk.ProjectionError as err:
    print(f"{type(err).__name__}: {err}")

# %% [markdown]
# The second suggestion is plain NUTS: `projection="identity"` whitens
# nothing, so NUTS moves `(mu, log tau, theta)` themselves, and
# `adapt_mass=True` adapts a diagonal mass matrix (one scale per coordinate)
# during warm-up. That is what numpyro's NUTS does by default. One scale per
# coordinate cannot suit a funnel either, since the right scale of `theta`
# changes with `tau`; the step-size adaptation has to settle on one step for
# the whole funnel.
#
# `fk.sample` checks its own draws: it warns (a `SamplingWarning`) when there
# are divergent transitions, when the split R-hat of any coordinate exceeds
# 1.01 or when the bulk ESS is below 100 per chain. The helper below prints
# those warnings with the diagnostics.


# %%
def sample(problem, start, **options):
    """fk.sample, with any warnings it raises printed rather than sent to stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        posterior = fk.sample(problem, start, key=0, **settings, **options)
    for warning in caught:
        print(f"{warning.category.__name__}: {warning.message}")
    return posterior


def report(posterior):
    d = posterior.diagnostics
    print(
        f"divergences: {d['divergences']} of {posterior.num_chains * posterior.num_draws} draws "
        f"({d['warmup_divergences']} in warm-up); step size {np.round(d['step_size'], 3)}; "
        f"{d['mean_num_steps']:.1f} leapfrog steps per draw; {d['wall_time']:.1f} s"
    )
    rows = ["mu", "tau", "theta[0]"]
    print(
        posterior.summary().loc[rows, ["mean", "std", "q5", "q95", "ess_bulk", "ess_tail", "r_hat"]].round(3)
    )


fk_centred = sample(centred, centred_start, projection="identity", adapt_mass=True)
print(fk_centred)
report(fk_centred)

# %% [markdown]
# ## 4. The non-centred model
# The same model, written differently: draw a standardised offset
# `eta_j ~ Normal(0, 1)` for each school and *compute*
# `theta_j = mu + tau eta_j`. The joint distribution of `(mu, tau, theta)` is
# exactly the same; what changes is the space the sampler moves in. In
# `(mu, log tau, eta)` the prior is a product of independent pieces with no
# `tau`-dependent scale, so the funnel is gone, as long as the data do not
# pin the `theta_j` (here they hardly do: `sigma_j` is 9 to 18, larger than
# the typical `tau`). When the data do pin them, the centred form is the
# better one: the choice depends on how informative each member's data are.
#
# In fitkit, `theta` becomes a tied param: the observation still predicts
# `params["theta"]`, and every draw carries it, computed from `mu`, `tau`
# and `eta`.
#
# This posterior has a mode in the sampler's coordinates `(mu, log tau,
# eta)`, and `fk.sample`'s default whitening works: it finds that mode from
# the same typical point (`eta = 0`) and whitens there. (`fk.solve` would
# not find it: the solve maximises the density of the params as declared,
# without the Jacobian of `log tau`, and that maximum sits at `tau -> 0`. The
# two modes differ by the factor `tau` that the Jacobian adds.)

# %%
noncentred = fk.Problem(
    None,
    schools,
    priors={**population, "eta": dist.Normal(0.0, 1.0)},
    ties={"theta": lambda p: p["mu"] + p["tau"] * p["eta"]},
)
noncentred_start = {**centred_start, "eta": jnp.zeros(J)}
print("tied:", noncentred.parametrisation(noncentred_start).tied_names())
fk_noncentred = sample(noncentred, noncentred_start)
print(fk_noncentred)
center = fk_noncentred.projection.to_params(jnp.zeros(fk_noncentred.projection.dim))
print(f"whitened at mu = {float(center['mu']):.2f}, tau = {float(center['tau']):.2f}")
report(fk_noncentred)

# %% [markdown]
# The mode of the density in `(mu, log tau, eta)` lies at a large `tau`, well
# above the bulk of its marginal posterior: a mode of a skewed
# high-dimensional density is not a typical point. The whitening built there
# is still a good enough scale for this well-behaved geometry.
#
# ## 5. numpyro's NUTS on the same models
# The reference: numpyro's `NUTS` with its defaults (a diagonal mass matrix
# adapted in warm-up, target acceptance 0.8), on the two models written as
# numpyro programs, with the same numbers of chains, warm-up iterations and
# draws. The diagnostics below use the same ESS and R-hat estimators for both
# samplers (`fitkit.sampling.ess_bulk` and `r_hat`).


# %%
def centred_model(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def noncentred_model(sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * eta)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def numpyro_nuts(model):
    mcmc = MCMC(
        NUTS(model),
        num_warmup=NUM_WARMUP,
        num_samples=NUM_SAMPLES,
        num_chains=NUM_CHAINS,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), sigma, y=y, extra_fields=("diverging",))
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    step = np.asarray(mcmc.last_state.adapt_state.step_size)
    return draws, diverging, step


np_centred = numpyro_nuts(centred_model)
np_noncentred = numpyro_nuts(noncentred_model)
for name, (_, diverging, step) in [("centred", np_centred), ("non-centred", np_noncentred)]:
    print(f"numpyro {name}: {int(diverging.sum())} divergences; step size {np.round(step, 3)}")

# %% [markdown]
# ## 6. The four posteriors side by side
# Mean and standard deviation of `mu` and `tau`, with the Monte Carlo
# standard error of each mean (`std / sqrt(ESS)`), the bulk ESS and the
# divergences after warm-up. Two means that differ by several of their
# Monte Carlo errors are not from the same distribution.

# %%
runs = {
    "fitkit centred": (
        {k: np.asarray(fk_centred.samples[k]) for k in ("mu", "tau", "theta")},
        fk_centred.diagnostics["diverging"],
    ),
    "fitkit non-centred": (
        {k: np.asarray(fk_noncentred.samples[k]) for k in ("mu", "tau", "theta", "eta")},
        fk_noncentred.diagnostics["diverging"],
    ),
    "numpyro centred": np_centred[:2],
    "numpyro non-centred": np_noncentred[:2],
}
print(
    f"{'':20} {'div':>4} | {'mu mean':>7} {'+-mc':>5} {'std':>5} {'ess':>6} | {'tau mean':>8} {'+-mc':>5} {'std':>5} {'ess':>6} {'r_hat':>6}"
)
for label, (draws, diverging) in runs.items():
    row = f"{label:20} {int(np.sum(diverging)):4d} |"
    for name in ("mu", "tau"):
        x = draws[name]
        ess = float(ess_bulk(x))
        width = 7 if name == "mu" else 8
        row += f" {x.mean():{width}.2f} {x.std() / np.sqrt(ess):5.2f} {x.std():5.2f} {ess:6.0f}"
    row += f" {float(r_hat(draws['tau'])):6.3f}"
    print(row)

# %% [markdown]
# Both non-centred runs agree with each other (and with the published
# values, `mu` about 4.4 +- 3.3 and `tau` about 3.6 +- 3.2) to within their
# Monte Carlo errors, with a bulk ESS for `tau` of the order of the number of
# draws and no (or almost no) divergences. The two centred runs are the same
# algorithm (plain NUTS with an adapted diagonal mass matrix) and fail in the
# same way: divergences, an ESS for `tau` many times smaller, and a mean of
# `tau` that is too high. That is the signature of the funnel: the chains
# cannot enter its neck, so they under-sample small `tau` (section 7 shows
# where). Their Monte Carlo errors, computed from draws that never visit a
# region, are too small to be believed, and R-hat can stay close to 1 when
# every chain misses the same region. A divergence means the integrator met
# curvature its step could not follow *somewhere the posterior has mass*: the
# draws are then biased even if there are only a few of them, and R-hat and
# ESS need not flag it. (The longer runs give the non-centred form a few
# divergences too: isolated, scattered over the posterior, and too few to
# move the summaries; in a real analysis they would still deserve a look.)
#
# ## 7. The funnel, seen
# Each panel shows the draws of `log tau` against one coordinate, with the
# divergent transitions in red. Left: the centred samplers see `theta_0`
# against `log tau`, the funnel itself. Middle: the non-centred draws of the
# *same* two quantities (`theta_0` computed by the tie) trace the same
# funnel, further into its neck: it is the same posterior. Right: what the
# non-centred sampler actually moves, `eta_0` against `log tau`, has no
# funnel at all. (A red point is the draw kept from a transition that
# diverged, not the place where the trajectory diverged.)

# %%
fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), sharey=True)
panels = [
    ("fitkit centred", "theta", "centred: theta[0]"),
    ("fitkit non-centred", "theta", "non-centred: theta[0] (tied)"),
    ("fitkit non-centred", "eta", "non-centred: eta[0] (sampled)"),
    ("numpyro centred", "theta", "centred: theta[0]"),
    ("numpyro non-centred", "theta", "non-centred: theta[0] (deterministic)"),
    ("numpyro non-centred", "eta", "non-centred: eta[0] (sampled)"),
]
for ax, (label, leaf, title) in zip(axes.ravel(), panels):
    draws, diverging = runs[label]
    x, log_tau, bad = draws[leaf][..., 0].ravel(), np.log(draws["tau"]).ravel(), np.asarray(diverging).ravel()
    ax.scatter(x, log_tau, s=2, alpha=0.25, c="C0", rasterized=True)
    ax.scatter(x[bad], log_tau[bad], s=12, c="C3", label=f"{bad.sum()} divergent")
    ax.set(title=f"{label.split()[0]} {title}", xlabel=title.split(": ")[1].split(" ")[0])
    ax.set_xlim(*((-4.0, 4.0) if leaf == "eta" else (-25.0, 40.0)))
    ax.legend(loc="lower right", fontsize=8)
for ax in axes[:, 0]:
    ax.set_ylabel("log tau")
axes[0, 0].set_ylim(-7.0, 4.0)
fig.suptitle(
    "Eight schools: the funnel in the centred form, and its absence in the non-centred sampler's space"
)
fig.tight_layout()
fk.plot.show(fig, "10_funnel")

# %% [markdown]
# And the consequence for what one would report: the marginal posterior of
# `log tau`. The non-centred runs agree with each other and reach far into
# the tail of small `tau`. The centred ones have almost no draws below
# `log tau` of about -1, and (clearly in the longer runs) spikes where a
# chain stuck at the entrance of the neck for hundreds of iterations: the
# sticking that the divergences warn about.

# %%
bins = np.linspace(-6.0, 4.0, 41)
fig, ax = plt.subplots(figsize=(8, 4))
for (label, (draws, _)), style in zip(runs.items(), ["-", "-", "--", "--"]):
    ax.hist(
        np.log(draws["tau"]).ravel(), bins=bins, density=True, histtype="step", lw=1.8, ls=style, label=label
    )
ax.set(xlabel="log tau", ylabel="posterior density", title="Marginal posterior of the intrinsic scatter")
ax.legend()
fk.plot.show(fig, "10_tau")

# %% [markdown]
# ## 8. What helps, and what does not
# * **Reparametrise.** The non-centred form removes the funnel from the
#   sampler's space when the data are weak (here); the centred form is
#   better when they are strong (small `sigma_j` compared with `tau`). With
#   members of both kinds, each can have its own form.
# * **A higher target acceptance** (`fk.sample(..., target_accept=0.95)`)
#   makes the step smaller, so fewer divergences; it does not remove the
#   funnel, and the ESS of `tau` stays far below the non-centred one. It is
#   the usual first response to divergences; the usual second is to
#   reparametrise anyway.
# * **Whitening at a point** (`fk.sample`'s default) cannot fix a funnel,
#   since the right scale changes along it; neither can an adapted mass
#   matrix (numpyro's default, `adapt_mass=True` in `fk.sample`), which is
#   one global scale per coordinate too.

# %%
fk_careful = sample(centred, centred_start, projection="identity", adapt_mass=True, target_accept=0.95)
print("centred, target_accept=0.95:")
report(fk_careful)

# %% [markdown]
# ## Summary
# | | centred | non-centred |
# |---|---|---|
# | fitkit | `priors={"theta": lambda p: dist.Normal(p["mu"], p["tau"])}` | `priors={"eta": dist.Normal(0, 1)}`, `ties={"theta": lambda p: p["mu"] + p["tau"] * p["eta"]}` |
# | numpyro | `theta = sample("theta", Normal(mu, tau))` | `eta = sample("eta", Normal(0, 1))`; `deterministic("theta", mu + tau * eta)` |
# | geometry (weak data) | funnel in `(log tau, theta)` | close to independent `(mu, log tau, eta)` |
# | use when | each member's data are strong | each member's data are weak |
#
# Whatever the sampler, check the divergences (`posterior.diagnostics
# ["divergences"]`), the ESS of the population scale and R-hat before
# quoting a hierarchical posterior, and plot the scale against a member's
# param: a funnel is easy to see.
