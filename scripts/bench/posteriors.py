"""Benchmark: `fk.sample` configurations against numpyro NUTS on small non-Gaussian posteriors with exact references.

Each target is a fitkit problem (`fk.Problem` with observations and priors)
of 2 or 3 params whose posterior is known exactly, independently of any
sampler: in closed form (`gauss_corr`) or by quadrature on a 2001 x 2001 grid
in the unconstrained coordinates the samplers move (`log x` for a positive
param, log-Jacobian included). The grid's box is found from a coarse pass (it
holds every cell within 30 nats of the peak), the strip of the outer 1% of
each axis must carry < 1e-10 of the mass, and the reference is recomputed on a
1001 x 1001 grid to show the quadrature error. Marginal means and standard
deviations are grid sums; the 5% and 95% quantiles come from each marginal's
CDF (piecewise-constant density per cell, interpolated linearly).

The log-density used for the references and for numpyro is written again here
in plain `jax.numpy` (not `problem.nll`); at start-up it is checked against
`problem.nll` at 16 points (equal up to a constant).

Targets:

- `gauss_corr`: a 3-D Gaussian, standard deviations 0.01, 1 and 100,
  correlation 0.95 between the first two (closed form; a control);
- `decay_banana`: `y = A exp(-t / tau)` at three noisy times; `A ~ Normal(0, 3)`,
  `tau ~ LogNormal(0, 1)`: a curved (A, tau) posterior;
- `poisson_log`: counts 0-5 in 8 bins with `log rate = a + b x`, Normal(0, 2) priors;
- `poisson_linear`: counts 0-3 with `rate = b + s * profile`; `s >= 0` by a bound
  (with a Normal(0, 10) prior), `b ~ HalfNormal(2)`: both pressed against zero;
- `michaelis_menten`: `v = Vmax S / (K + S)` with `S` well below `K`, so only
  `Vmax / K` is measured: a long curved ridge kept proper by LogNormal priors;
- `width_halfnormal_near`, `width_halfnormal_at`: a source of flux `F` and
  Gaussian width `w` (`w ~ HalfNormal(1)`) seen through a PSF of width 1;
  noise-free data whose MAP width is about 1e-2 of the posterior sd of `w`
  (near) or exactly 0 (a point source, at).

Samplers, each with the same warm-up, draws and chains, over 3 seeds:

- `fk.sample(problem, fk.solve(problem, start), **options)` for each entry of
  `FK_CONFIGS` (an option `fk.sample` does not take is skipped with a note);
- numpyro NUTS with `potential_fn=` on the same unconstrained coordinates
  (`x = exp(z)` for positive params), with diagonal and with dense mass
  adaptation, its chains started at the reference mode with a jitter of 0.1
  reference sd (fitkit jitters its chains by 0.1 in whitened units).

Reported per sampler (worst over params and seeds unless said): the error of
the posterior means, standard deviations and 5% / 95% quantiles in units of
the reference sd, the largest |error| / MCSE (arviz `mcse`: method "mean",
"sd" and "quantile"), the min bulk and tail ESS (arviz `ess`, mean over seeds
of the min over params), min ESS bulk per gradient evaluation with warm-up
included (fitkit: `diagnostics["grad_evals"]`; numpyro: `num_steps` summed over
warm-up and sampling), its ratio to the better numpyro row, divergences after
warm-up (summed over seeds), max R-hat (arviz, rank-normalised split) and the
wall time (first seed, which compiles; and the mean of the others). A sampler
passes a target when every error is within 3 MCSE, for every seed. With 8 to
12 (param, stat) pairs and 3 seeds, a correct sampler fails now and then
(arviz's MCSE of an sd or a quantile is itself an estimate), so the tables
also give how many of the errors exceed 3 MCSE and the "pooled z", the largest
over (param, stat) of |sum over seeds of the errors| / sqrt(sum of MCSE^2):
about N(0, 1) for an unbiased sampler, so a bias shared by the seeds stands
out in it while one unlucky seed does not.

Usage: python scripts/bench/posteriors.py [--quick] [--targets a,b] [--seeds 3]
       [--warmup 500] [--samples 1000] [--chains 2] [--no-save]
Writes scripts/bench/results/posteriors.json (not with --quick unless --save).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import pathlib
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import jax

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.special import gammaln, logsumexp  # noqa: E402
from jax.scipy.stats import norm  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from scipy.special import ndtri  # noqa: E402

import fitkit as fk  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "posteriors.json"

# The fk.sample configurations compared: name -> keyword options of fk.sample. Add rows freely;
# one whose options fk.sample does not take is skipped with a printed note.
FK_CONFIGS: dict[str, dict] = {
    "fk default": {},
    "fk adapt diag": {"adapt_mass": True},
    "fk adapt dense": {"adapt_mass": True, "dense_mass": True},
    "fk identity + adapt": {"projection": "identity", "adapt_mass": True},
}
# numpyro NUTS on the same potential: name -> NUTS options.
NUMPYRO_CONFIGS: dict[str, dict] = {
    "numpyro diag": {"dense_mass": False},
    "numpyro dense": {"dense_mass": True},
}
STATS = ("mean", "std", "q05", "q95")
PASS_Z = 3.0  # |error| / MCSE allowed for every stat, param and seed
EDGE_MASS = 1e-10  # the most mass the outer 1% strip of the grid may carry
BOX_NATS = 30.0  # the fine grid holds every coarse cell within this many nats of the peak


# --------------------------------------------------------------------------- targets
@dataclass
class Target:
    """A posterior: the fitkit problem, its own log-density and the reference."""

    name: str
    about: str
    problem: fk.Problem
    start: dict
    names: tuple[str, ...]
    positive: tuple[bool, ...]  # sampled as log(x) (x = exp(z)), else as x
    log_density: Callable  # physical params (dict of arrays) -> unnormalised log posterior
    coarse_box: tuple[tuple[float, float], ...] | None = None  # unconstrained ranges to search
    closed_form: dict | None = None  # name -> {mean, std, q05, q95}; mode (unconstrained)
    reference: dict = field(default_factory=dict)
    mode_z: np.ndarray | None = None
    sd_z: np.ndarray | None = None
    notes: dict = field(default_factory=dict)

    def to_physical(self, z):
        """Unconstrained `z` (..., d) -> physical params dict and the summed log |dx/dz|."""
        z = jnp.asarray(z)
        params, log_jac = {}, jnp.zeros(z.shape[:-1], z.dtype)
        for i, (name, pos) in enumerate(zip(self.names, self.positive)):
            params[name] = jnp.exp(z[..., i]) if pos else z[..., i]
            if pos:
                log_jac = log_jac + z[..., i]
        return params, log_jac

    def log_density_z(self, z):
        """Log-density of the unconstrained `z` (what both samplers move), unnormalised."""
        params, log_jac = self.to_physical(z)
        return self.log_density(params) + log_jac


class Vector(fk.Observation):
    """Observes the params (a, b, c) directly: the Gaussian control."""

    def predict(self, params, model):
        return jnp.stack([params["a"], params["b"], params["c"]])


class Decay(fk.Observation):
    t: jax.Array

    def predict(self, params, model):
        return params["A"] * jnp.exp(-self.t / params["tau"])


class LogRate(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return jnp.exp(params["a"] + params["b"] * self.x)


class LinearRate(fk.Observation):
    profile: jax.Array

    def predict(self, params, model):
        return params["b"] + params["s"] * self.profile


class Enzyme(fk.Observation):
    S: jax.Array

    def predict(self, params, model):
        return params["Vmax"] * self.S / (params["K"] + self.S)


PIXELS = np.linspace(-4.0, 4.0, 17)  # pixel centres, pixel size 0.5
PSF = 1.0


def blob(x, flux, width):
    """A Gaussian source of `flux` and intrinsic `width` through a Gaussian PSF, sampled at pixels."""
    s2 = PSF**2 + width**2
    return flux * 0.5 * jnp.exp(-0.5 * x**2 / s2) / jnp.sqrt(2.0 * jnp.pi * s2)


class Source(fk.Observation):
    x: jax.Array

    def predict(self, params, model):
        return blob(self.x, params["F"], params["w"])


def _normal_ll(y, mu, sigma):
    return jnp.sum(-0.5 * ((y - mu) / sigma) ** 2 - jnp.log(sigma) - 0.5 * math.log(2 * math.pi))


def _poisson_ll(k, rate):
    return jnp.sum(k * jnp.log(rate) - rate - gammaln(k + 1.0))


def _lognormal_lp(x, mu, sigma):
    return norm.logpdf(jnp.log(x), mu, sigma) - jnp.log(x)


def _halfnormal_lp(x, sigma):
    return norm.logpdf(x, 0.0, sigma) + math.log(2.0)


def gauss_corr() -> Target:
    mean = np.array([0.3, -1.0, 50.0])
    sd = np.array([0.01, 1.0, 100.0])
    corr = np.array([[1.0, 0.95, -0.3], [0.95, 1.0, -0.2], [-0.3, -0.2, 1.0]])
    cov = corr * np.outer(sd, sd)
    prec = np.linalg.inv(cov)
    problem = fk.Problem(None, Vector(data=mean, likelihood=fk.MultivariateNormal(covariance=cov)))

    def log_density(p):
        d = jnp.stack([p["a"], p["b"], p["c"]], -1) - mean
        return -0.5 * jnp.einsum("...i,ij,...j->...", d, prec, d)

    q = ndtri(0.95)
    closed = {
        n: {"mean": m, "std": s, "q05": m - q * s, "q95": m + q * s} for n, m, s in zip("abc", mean, sd)
    }
    return Target(
        "gauss_corr",
        "3-D Gaussian, sd 0.01 / 1 / 100, corr(a, b) = 0.95; flat prior (closed form)",
        problem,
        {"a": 0.0, "b": 0.0, "c": 0.0},
        ("a", "b", "c"),
        (False, False, False),
        log_density,
        closed_form=closed,
        mode_z=mean,
        sd_z=sd,
    )


def decay_banana() -> Target:
    t = np.array([0.5, 1.5, 3.0])
    y = np.array([0.62, 0.41, 0.05])
    sigma = 0.15
    priors = {"A": dist.Normal(0.0, 3.0), "tau": dist.LogNormal(0.0, 1.0)}
    problem = fk.Problem(None, Decay(data=y, error=sigma, t=t), priors=priors)

    def log_density(p):
        A, tau = p["A"], p["tau"]
        mu = A[..., None] * jnp.exp(-t / tau[..., None])
        ll = jnp.sum(-0.5 * ((y - mu) / sigma) ** 2, -1)
        return ll + norm.logpdf(A, 0.0, 3.0) + _lognormal_lp(tau, 0.0, 1.0)

    return Target(
        "decay_banana",
        "y = A exp(-t/tau), 3 points, noise 0.15; A ~ N(0, 3), tau ~ LogNormal(0, 1)",
        problem,
        {"A": 1.0, "tau": 1.0},
        ("A", "tau"),
        (False, True),
        log_density,
        coarse_box=((-40.0, 40.0), (-10.0, 10.0)),
    )


def poisson_log() -> Target:
    x = np.linspace(-1.0, 1.0, 8)
    k = np.array([0.0, 1.0, 0.0, 2.0, 1.0, 3.0, 2.0, 5.0])
    problem = fk.Problem(
        None,
        LogRate(data=k, x=x),
        likelihood="poisson",
        priors={"a": dist.Normal(0.0, 2.0), "b": dist.Normal(0.0, 2.0)},
    )

    def log_density(p):
        lr = p["a"][..., None] + p["b"][..., None] * x
        ll = jnp.sum(k * lr - jnp.exp(lr), -1)
        return ll + norm.logpdf(p["a"], 0.0, 2.0) + norm.logpdf(p["b"], 0.0, 2.0)

    return Target(
        "poisson_log",
        "counts 0-5 in 8 bins, log rate = a + b x; a, b ~ N(0, 2)",
        problem,
        {"a": 0.0, "b": 0.0},
        ("a", "b"),
        (False, False),
        log_density,
        coarse_box=((-8.0, 8.0), (-10.0, 10.0)),
    )


def poisson_linear() -> Target:
    profile = np.exp(-0.5 * (np.linspace(-3.5, 3.5, 8) / 1.2) ** 2)
    k = np.array([0.0, 0.0, 1.0, 2.0, 1.0, 3.0, 0.0, 0.0])
    problem = fk.Problem(
        None,
        LinearRate(data=k, profile=profile),
        likelihood="poisson",
        priors={"s": dist.Normal(0.0, 10.0), "b": dist.HalfNormal(2.0)},
        bounds={"s": (0.0, None)},
    )

    def log_density(p):
        rate = p["b"][..., None] + p["s"][..., None] * profile
        ll = jnp.sum(k * jnp.log(rate) - rate, -1)
        return ll + norm.logpdf(p["s"], 0.0, 10.0) + _halfnormal_lp(p["b"], 2.0)

    return Target(
        "poisson_linear",
        "counts 0-3 in 8 bins, rate = b + s profile; s >= 0 (bound, N(0, 10)), b ~ HalfNormal(2)",
        problem,
        {"s": 1.0, "b": 0.2},
        ("b", "s"),
        (True, True),
        log_density,
        coarse_box=((-60.0, 5.0), (-60.0, 5.0)),
    )


def michaelis_menten() -> Target:
    S = np.array([0.2, 0.4, 0.7, 1.0, 1.5])
    v = np.array([0.24, 0.37, 0.71, 0.89, 1.33])
    sigma = 0.05
    priors = {"Vmax": dist.LogNormal(math.log(5.0), 1.0), "K": dist.LogNormal(math.log(5.0), 1.0)}
    problem = fk.Problem(None, Enzyme(data=v, error=sigma, S=S), priors=priors)

    def log_density(p):
        mu = p["Vmax"][..., None] * S / (p["K"][..., None] + S)
        ll = jnp.sum(-0.5 * ((v - mu) / sigma) ** 2, -1)
        return ll + _lognormal_lp(p["Vmax"], math.log(5.0), 1.0) + _lognormal_lp(p["K"], math.log(5.0), 1.0)

    return Target(
        "michaelis_menten",
        "v = Vmax S/(K+S), S in 0.2-1.5, noise 0.05; Vmax, K ~ LogNormal(log 5, 1)",
        problem,
        {"Vmax": 5.0, "K": 5.0},
        ("K", "Vmax"),
        (True, True),
        log_density,
        coarse_box=((-8.0, 10.0), (-8.0, 10.0)),
    )


def _width(name: str, data_width: float, about: str) -> Target:
    sigma, flux = 0.05, 10.0
    x = jnp.asarray(PIXELS)
    data = np.asarray(blob(x, flux, data_width))  # noise-free: the MAP is set by data_width
    priors = {"F": dist.Normal(10.0, 10.0), "w": dist.HalfNormal(1.0)}
    problem = fk.Problem(None, Source(data=data, error=sigma, x=x), priors=priors)

    def log_density(p):
        mu = blob(x, p["F"][..., None], p["w"][..., None])
        ll = jnp.sum(-0.5 * ((data - mu) / sigma) ** 2, -1)
        return ll + norm.logpdf(p["F"], 10.0, 10.0) + _halfnormal_lp(p["w"], 1.0)

    target = Target(
        name,
        about,
        problem,
        {"F": 10.0, "w": 0.3},
        ("F", "w"),
        (False, True),
        log_density,
        coarse_box=((0.0, 20.0), (-70.0, 4.0)),
    )
    target.notes["data_width"] = data_width
    return target


# Tuned so that the MAP of w is about 1e-2 of its posterior sd (printed and recorded at start-up).
NEAR_WIDTH = 0.026646


def width_halfnormal_near() -> Target:
    return _width(
        "width_halfnormal_near",
        NEAR_WIDTH,
        f"F, w: noise-free data at w = {NEAR_WIDTH}, PSF 1, noise 0.05; w ~ HalfNormal(1): MAP w ~ 1e-2 sd",
    )


def width_halfnormal_at() -> Target:
    return _width(
        "width_halfnormal_at",
        0.0,
        "F, w: noise-free point-source data, PSF 1, noise 0.05; w ~ HalfNormal(1): MAP w = 0",
    )


TARGETS = {
    f.__name__: f
    for f in (
        gauss_corr,
        decay_banana,
        poisson_log,
        poisson_linear,
        michaelis_menten,
        width_halfnormal_near,
        width_halfnormal_at,
    )
}


# ------------------------------------------------------------------------ references
def _grid_log_density(target: Target, axes: list[np.ndarray]) -> np.ndarray:
    """Log-density of z on the outer product of 1-D axes, row by row (vectorised in jax)."""
    f = jax.jit(lambda z: target.log_density_z(z))
    a0, rest = axes[0], np.stack(np.meshgrid(*axes[1:], indexing="ij"), -1).reshape(-1, len(axes) - 1)
    out = np.empty((a0.size, rest.shape[0]))
    rest_j = jnp.asarray(rest)
    for i, v in enumerate(a0):
        z = jnp.concatenate([jnp.full((rest.shape[0], 1), v), rest_j], axis=1)
        out[i] = np.asarray(f(z))
    out = out.reshape([a.size for a in axes])
    return np.where(np.isfinite(out), out, -np.inf)


def _box(target: Target, coarse: int = 401) -> list[tuple[float, float]]:
    axes = [np.linspace(lo, hi, coarse) for lo, hi in target.coarse_box]
    lp = _grid_log_density(target, axes)
    keep = lp > lp.max() - BOX_NATS
    box = []
    for k, axis in enumerate(axes):
        other = tuple(j for j in range(len(axes)) if j != k)
        idx = np.flatnonzero(keep.any(axis=other))
        if idx[0] == 0 or idx[-1] == coarse - 1:
            raise AssertionError(f"{target.name}: the coarse box for {target.names[k]} cuts the mass off")
        h = axis[1] - axis[0]
        box.append((axis[idx[0]] - 2 * h, axis[idx[-1]] + 2 * h))
    return box


def _quadrature(target: Target, box, n: int) -> dict:
    axes = [np.linspace(lo, hi, n) for lo, hi in box]
    lp = _grid_log_density(target, axes)
    w = np.exp(lp - float(logsumexp(lp)))
    strip = max(n // 100, 1)
    inner = np.zeros_like(w, bool)
    inner[tuple(slice(strip, n - strip) for _ in axes)] = True
    edge_mass = float(w[~inner].sum())
    out, mode_idx = {}, np.unravel_index(np.argmax(lp), lp.shape)
    mode_z, sd_z, cells_per_sd = [], [], []
    for k, (name, pos, axis) in enumerate(zip(target.names, target.positive, axes)):
        other = tuple(j for j in range(len(axes)) if j != k)
        m = w.sum(axis=other)
        x = np.exp(axis) if pos else axis
        mean = float(np.sum(m * x))
        std = float(np.sqrt(np.sum(m * (x - mean) ** 2)))
        h = axis[1] - axis[0]
        edges = np.concatenate([[axis[0] - h / 2], axis + h / 2])
        cdf = np.concatenate([[0.0], np.cumsum(m)])
        cdf /= cdf[-1]
        quant = {}
        for label, q in (("q05", 0.05), ("q95", 0.95)):
            zq = float(np.interp(q, cdf, edges))
            quant[label] = math.exp(zq) if pos else zq
        out[name] = {"mean": mean, "std": std, **quant}
        mz = float(np.sum(m * axis))
        sz = float(np.sqrt(np.sum(m * (axis - mz) ** 2)))
        mode_z.append(axis[mode_idx[k]])
        sd_z.append(sz)
        cells_per_sd.append(sz / h)
    return {
        "stats": out,
        "edge_mass": edge_mass,
        "mode_z": np.array(mode_z),
        "sd_z": np.array(sd_z),
        "cells_per_sd": cells_per_sd,
    }


def _check_against_fitkit(target: Target, rng: np.random.Generator) -> float:
    """Max spread of log_density + problem.nll over 16 points near the mode (a constant if they agree)."""
    z = target.mode_z + target.sd_z * rng.normal(size=(16, len(target.names)))
    params, _ = target.to_physical(z)
    mine = np.asarray(target.log_density(params))
    theirs = np.asarray(jax.vmap(target.problem.nll)(params))
    diff = mine + theirs
    spread = float(diff.max() - diff.min())
    if not spread < 1e-8 * (1.0 + np.abs(diff).max()):
        raise AssertionError(f"{target.name}: log_density and problem.nll differ by more than a constant")
    return spread


def build_reference(target: Target, n: int, rng: np.random.Generator) -> None:
    t0 = time.perf_counter()
    if target.closed_form is not None:
        target.reference = target.closed_form
        target.notes.update(method="closed form")
    else:
        box = _box(target)
        fine = _quadrature(target, box, n)
        half = _quadrature(target, box, n // 2 + 1)
        if not fine["edge_mass"] < EDGE_MASS:
            raise AssertionError(f"{target.name}: the grid edges carry {fine['edge_mass']:.2e} of the mass")
        quad_err = max(
            abs(fine["stats"][p][s] - half["stats"][p][s]) / fine["stats"][p]["std"]
            for p in target.names
            for s in STATS
        )
        target.reference = fine["stats"]
        target.mode_z, target.sd_z = fine["mode_z"], fine["sd_z"]
        target.notes.update(
            method=f"quadrature {n}x{n} in unconstrained coords",
            box=[list(map(float, b)) for b in box],
            edge_mass=fine["edge_mass"],
            cells_per_sd=[float(c) for c in fine["cells_per_sd"]],
            quadrature_error_sd=quad_err,
        )
    target.notes["nll_check_spread"] = _check_against_fitkit(target, rng)
    if target.name.startswith("width"):
        target.notes["map_w_over_sd"] = _map_width(target) / target.reference["w"]["std"]
    target.notes["seconds"] = time.perf_counter() - t0


def _map_width(target: Target) -> float:
    """The MAP of w, with F profiled exactly (the prediction is linear in F), on a fine grid near 0."""
    from scipy.optimize import minimize_scalar

    x = jnp.asarray(PIXELS)

    def neg(w):
        g = np.asarray(blob(x, 1.0, w))
        data = np.asarray(target.problem.observations[0].data)
        prec = g @ g / 0.05**2 + 1 / 10.0**2
        F = (g @ data / 0.05**2 + 10.0 / 10.0**2) / prec
        return -float(target.log_density({"F": jnp.asarray(F), "w": jnp.asarray(w)}))

    ws = np.linspace(0.0, 1.0, 2001)
    values = [neg(w) for w in ws]
    i = int(np.argmin(values))
    if i == 0:
        fine = minimize_scalar(neg, bounds=(0.0, ws[1]), method="bounded", options={"xatol": 1e-10})
        return float(fine.x) if fine.fun < values[0] else 0.0
    fine = minimize_scalar(neg, bounds=(ws[i - 1], ws[i + 1]), method="bounded", options={"xatol": 1e-10})
    return float(fine.x)


# -------------------------------------------------------------------------- samplers
def run_fitkit(target: Target, fit, options: dict, args, seed: int) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = fk.sample(
            target.problem,
            fit,
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            key=seed,
            progress=False,
            **options,
        )
    wall = time.perf_counter() - t0
    d = post.diagnostics
    draws = np.stack([np.asarray(post.samples[n]) for n in target.names], -1)
    return {
        "draws": draws,
        "grad_evals": int(d["grad_evals"]),
        "divergences": int(d["divergences"]),
        "wall": wall,
        "warnings": sorted({type(w.message).__name__ for w in caught}),
    }


class NumpyroRunner:
    """One MCMC object per (target, config), reused over seeds (compiled once)."""

    def __init__(self, target: Target, options: dict, args):
        self.target = target
        potential = jax.jit(lambda z: -target.log_density_z(z))
        self.mcmc = MCMC(
            NUTS(potential_fn=potential, **options),
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            chain_method="sequential",
            progress_bar=False,
        )
        self.chains = args.chains

    def __call__(self, seed: int) -> dict:
        t = self.target
        rng = np.random.default_rng(seed)
        init = t.mode_z + 0.1 * t.sd_z * rng.normal(size=(self.chains, len(t.names)))
        warm_key, run_key = jax.random.split(jax.random.key(seed))
        t0 = time.perf_counter()
        self.mcmc.warmup(
            warm_key, init_params=jnp.asarray(init), extra_fields=("num_steps",), collect_warmup=True
        )
        warm_steps = int(np.sum(self.mcmc.get_extra_fields()["num_steps"]))
        self.mcmc.run(run_key, extra_fields=("num_steps", "diverging"))
        z = np.asarray(self.mcmc.get_samples(group_by_chain=True))
        wall = time.perf_counter() - t0
        extra = self.mcmc.get_extra_fields()
        params, _ = t.to_physical(z)
        draws = np.stack([np.asarray(params[n]) for n in t.names], -1)
        return {
            "draws": draws,
            "grad_evals": warm_steps + int(np.sum(extra["num_steps"])),
            "divergences": int(np.sum(extra["diverging"])),
            "wall": wall,
            "warnings": [],
        }


# --------------------------------------------------------------------------- metrics
def metrics(target: Target, run: dict) -> dict:
    draws = run["draws"]  # (chain, draw, param), physical
    ds = az.convert_to_dataset({n: draws[..., i] for i, n in enumerate(target.names)})
    mcse = {
        "mean": az.mcse(ds, method="mean"),
        "std": az.mcse(ds, method="sd"),
        "q05": az.mcse(ds, method="quantile", prob=0.05),
        "q95": az.mcse(ds, method="quantile", prob=0.95),
    }
    ess_bulk, ess_tail, rhat = az.ess(ds, method="bulk"), az.ess(ds, method="tail"), az.rhat(ds)
    per_param = {}
    for i, n in enumerate(target.names):
        x = draws[..., i].ravel()
        est = {
            "mean": float(x.mean()),
            "std": float(x.std(ddof=1)),
            "q05": float(np.quantile(x, 0.05)),
            "q95": float(np.quantile(x, 0.95)),
        }
        ref = target.reference[n]
        per_param[n] = {
            "estimate": est,
            "reference": dict(ref),
            "error_sd": {s: (est[s] - ref[s]) / ref["std"] for s in STATS},
            "mcse": {s: float(mcse[s][n].values) for s in STATS},
            "z": {s: (est[s] - ref[s]) / float(mcse[s][n].values) for s in STATS},
            "ess_bulk": float(ess_bulk[n].values),
            "ess_tail": float(ess_tail[n].values),
            "r_hat": float(rhat[n].values),
        }
    min_bulk = min(p["ess_bulk"] for p in per_param.values())
    return {
        "per_param": per_param,
        "min_ess_bulk": min_bulk,
        "min_ess_tail": min(p["ess_tail"] for p in per_param.values()),
        "max_r_hat": max(p["r_hat"] for p in per_param.values()),
        "max_abs_z": max(abs(v) for p in per_param.values() for v in p["z"].values()),
        "grad_evals": run["grad_evals"],
        "ess_per_grad": min_bulk / run["grad_evals"],
        "divergences": run["divergences"],
        "wall": run["wall"],
        "warnings": run["warnings"],
    }


def aggregate(seeds: list[dict]) -> dict:
    def worst(stat_pred):
        return max(
            abs(v)
            for s in seeds
            for p in s["per_param"].values()
            for k, v in p["error_sd"].items()
            if stat_pred(k)
        )

    walls = [s["wall"] for s in seeds]
    zs = [abs(v) for s in seeds for p in s["per_param"].values() for v in p["z"].values()]
    pooled = []  # per (param, stat): the seeds' errors summed over their combined MCSE, ~N(0, 1) if unbiased
    for name in seeds[0]["per_param"]:
        for k in STATS:
            err = sum(
                s["per_param"][name]["estimate"][k] - s["per_param"][name]["reference"][k] for s in seeds
            )
            se = math.sqrt(sum(s["per_param"][name]["mcse"][k] ** 2 for s in seeds))
            pooled.append(abs(err) / se)
    return {
        "err_mean": worst(lambda k: k == "mean"),
        "err_std": worst(lambda k: k == "std"),
        "err_q": worst(lambda k: k in ("q05", "q95")),
        "max_abs_z": max(s["max_abs_z"] for s in seeds),
        "passes": all(s["max_abs_z"] <= PASS_Z for s in seeds),
        "n_over": int(sum(z > PASS_Z for z in zs)),
        "n_tests": len(zs),
        "pooled_z": max(pooled),
        "ess_bulk": float(np.mean([s["min_ess_bulk"] for s in seeds])),
        "ess_tail": float(np.mean([s["min_ess_tail"] for s in seeds])),
        "grad_evals": float(np.mean([s["grad_evals"] for s in seeds])),
        "ess_per_grad": float(np.mean([s["ess_per_grad"] for s in seeds])),
        "divergences": int(sum(s["divergences"] for s in seeds)),
        "max_r_hat": max(s["max_r_hat"] for s in seeds),
        "wall_first": walls[0],
        "wall_rest": float(np.mean(walls[1:])) if len(walls) > 1 else float("nan"),
        "warnings": sorted({w for s in seeds for w in s["warnings"]}),
    }


# ---------------------------------------------------------------------------- tables
def target_table(rows: dict[str, dict], best: float) -> str:
    lines = [
        "| sampler | err mean | err std | err q05/q95 | max abs(err)/MCSE | > 3 MCSE | pooled z | pass "
        "| ESS bulk | ESS tail | grads | ESS/grad | vs numpyro best | div | max r_hat | wall 1st / rest (s) |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        if "skipped" in r:
            lines.append(f"| {name} | skipped: {r['skipped']} |" + " |" * 15)
            continue
        lines.append(
            f"| {name} | {r['err_mean']:.3f} | {r['err_std']:.3f} | {r['err_q']:.3f} | {r['max_abs_z']:.2f} "
            f"| {r['n_over']}/{r['n_tests']} | {r['pooled_z']:.2f} | {'yes' if r['passes'] else 'NO'} | {r['ess_bulk']:.0f} | {r['ess_tail']:.0f} "
            f"| {r['grad_evals']:.0f} | {r['ess_per_grad']:.3f} | {r['ess_per_grad'] / best:.2f}x "
            f"| {r['divergences']} | {r['max_r_hat']:.3f} | {r['wall_first']:.1f} / {r['wall_rest']:.2f} |"
        )
    return "\n".join(lines)


def summary_table(results: dict, samplers: list[str]) -> str:
    head = "| target | " + " | ".join(samplers) + " |"
    lines = [head, "|---|" + "---|" * len(samplers)]
    for tname, res in results.items():
        best = res["numpyro_best_ess_per_grad"]
        cells = []
        for s in samplers:
            r = res["rows"].get(s)
            if r is None or "skipped" in r:
                cells.append("skipped")
                continue
            verdict = "pass" if r["passes"] else "FAIL"
            cells.append(
                f"{verdict} (max z {r['max_abs_z']:.1f}, {r['n_over']}/{r['n_tests']} > 3, pooled "
                f"{r['pooled_z']:.1f}), {r['ess_per_grad'] / best:.2f}x"
            )
        lines.append(f"| {tname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 200 warm-up, 300 draws")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of targets")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--grid", type=int, default=2001, help="quadrature points per axis")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    parser.add_argument("--save", action="store_true", help="write the JSON even with --quick")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.warmup, args.samples = 1, 200, 300
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {list(TARGETS)}")

    accepted = inspect.signature(fk.sample).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    fk_configs, skipped = {}, {}
    for cname, options in FK_CONFIGS.items():
        missing = [k for k in options if k not in accepted and not takes_any]
        if missing:
            skipped[cname] = f"fk.sample has no option {', '.join(missing)}"
            print(f"note: skipping {cname!r}: {skipped[cname]}", flush=True)
        else:
            fk_configs[cname] = options
    samplers = list(FK_CONFIGS) + list(NUMPYRO_CONFIGS)

    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    results = {}
    for tname in names:
        target = TARGETS[tname]()
        build_reference(target, args.grid, rng)
        print(f"\n## {tname}: {target.about}", flush=True)
        extras = {k: v for k, v in target.notes.items() if k not in ("box",)}
        print("reference:", json.dumps(extras, default=lambda v: round(float(v), 6)), flush=True)
        for p in target.names:
            r = target.reference[p]
            print(f"  {p}: " + ", ".join(f"{s} {r[s]:.6g}" for s in STATS), flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fk.solve(
                target.problem, {k: jnp.asarray(float(v)) for k, v in target.start.items()}, warn=False
            )
        rows, raw = {}, {}
        for cname in samplers:
            if cname in skipped:
                rows[cname] = {"skipped": skipped[cname]}
                continue
            try:
                if cname in fk_configs:
                    runner = lambda seed, o=fk_configs[cname], t=target, f=fit: run_fitkit(
                        t, f, o, args, seed
                    )  # noqa: E731
                else:
                    runner = NumpyroRunner(target, NUMPYRO_CONFIGS[cname], args)
                per_seed = [metrics(target, runner(seed)) for seed in range(args.seeds)]
            except Exception as err:  # a config that fails is reported, not fatal
                rows[cname] = {"skipped": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"}
                print(f"note: {cname} failed on {tname}: {rows[cname]['skipped']}", flush=True)
                continue
            rows[cname] = aggregate(per_seed)
            raw[cname] = per_seed
        best = max(rows[c]["ess_per_grad"] for c in NUMPYRO_CONFIGS if "skipped" not in rows[c])
        print(target_table(rows, best), flush=True)
        results[tname] = {
            "about": target.about,
            "reference": target.reference,
            "reference_notes": target.notes,
            "fit_params": {k: float(v) for k, v in fit.params.items()},
            "numpyro_best_ess_per_grad": best,
            "rows": rows,
            "per_seed": raw,
        }
    total = time.perf_counter() - t_start

    print(
        "\n## Summary: pass = every error within 3 MCSE for every seed (max |err|/MCSE); ESS/grad vs numpyro best"
    )
    print(summary_table(results, samplers))
    print(f"\ntotal wall time {total:.0f} s", flush=True)
    if not args.no_save and (args.save or not args.quick):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "devices": [str(d) for d in jax.devices()],
                "jax": jax.__version__,
                "numpyro": numpyro.__version__,
                "arviz": az.__version__,
                "fitkit": fk.__version__,
                "dtype": "float64",
            },
            "settings": vars(args),
            "fk_configs": FK_CONFIGS,
            "numpyro_configs": NUMPYRO_CONFIGS,
            "skipped_configs": skipped,
            "total_seconds": total,
            "targets": results,
        }
        RESULTS.write_text(json.dumps(record, indent=1, default=_json_default))
        print(f"wrote {RESULTS}")


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return float(value)


if __name__ == "__main__":
    main()
