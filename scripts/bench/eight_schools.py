"""Benchmark: fitkit's NUTS against numpyro's NUTS on the eight-schools model, centred and non-centred.

The published data of Rubin (1981): eight treatment effects `y` with standard
errors `sigma`. The model: `mu ~ Normal(0, 5)`, `tau ~ HalfCauchy(5)`,
`theta_i ~ Normal(mu, tau)`, `y_i ~ Normal(theta_i, sigma_i)`. Centred, the
posterior of `(theta, tau)` is a funnel with no Gaussian core; non-centred
(`eta_i ~ Normal(0, 1)`, `theta = mu + tau * eta`, a tie in fitkit) it is close
to one. Four samplers, each with the same warm-up, draws and chains:

- fitkit, non-centred: `fk.solve`, then `fk.sample` whitened at the mode of the
  unconstrained density (its default);
- fitkit, centred: `fk.sample(projection="identity", adapt_mass=True)` from a
  plain start, since there is no mode to whiten around (the default refuses,
  saying so);
- numpyro NUTS on the same two models (diagonal mass adaptation, its defaults).

Reported: posterior mean and std of `mu` and `tau`, divergences after warm-up,
max R-hat, min bulk ESS over all params, gradient evaluations (leapfrog steps
over warm-up and sampling), ESS per 1000 gradients, and wall time including
compilation. Every ESS and R-hat is computed with the same function
(`fitkit.sampling.ess_bulk` / `r_hat`).

Usage: python scripts/bench/eight_schools.py [--warmup 1000] [--samples 2000] [--chains 4] [--seed 0]
Writes scripts/bench/results/eight_schools.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.sampling import ess_bulk, r_hat  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "eight_schools.json"
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
HYPER = {"mu": dist.Normal(0.0, 5.0), "tau": dist.HalfCauchy(5.0)}


class School(fk.Observation):
    def predict(self, params, model):
        return params["theta"]


def problems():
    obs = School(data=Y, error=SIGMA)
    centred = fk.Problem(None, obs, priors={**HYPER, "theta": lambda p: dist.Normal(p["mu"], p["tau"])})
    non_centred = fk.Problem(
        None,
        obs,
        priors={**HYPER, "eta": dist.Normal(0.0, 1.0)},
        ties={"theta": lambda p: p["mu"] + p["tau"] * p["eta"]},
    )
    return centred, non_centred


def numpyro_model(centred: bool):
    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", 8):
            if centred:
                theta = numpyro.sample("theta", dist.Normal(mu, tau))
            else:
                eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
                theta = numpyro.deterministic("theta", mu + tau * eta)
            numpyro.sample("y", dist.Normal(theta, SIGMA), obs=Y)

    return model


def summarise(label, draws: dict, divergences: int, grad_evals: int, seconds: float) -> dict:
    """draws: name -> (chain, draw, ...) arrays of the sampled (not deterministic) params."""
    flat = np.concatenate([np.reshape(v, v.shape[:2] + (-1,)) for v in draws.values()], axis=-1)
    ess = float(np.nanmin(ess_bulk(flat)))
    return {
        "sampler": label,
        "mu_mean": float(np.mean(draws["mu"])),
        "mu_std": float(np.std(draws["mu"])),
        "tau_mean": float(np.mean(draws["tau"])),
        "tau_std": float(np.std(draws["tau"])),
        "divergences": int(divergences),
        "max_r_hat": float(np.nanmax(r_hat(flat))),
        "min_ess_bulk": ess,
        "grad_evals": int(grad_evals),
        "ess_per_1000_grads": 1000.0 * ess / grad_evals,
        "seconds": seconds,
    }


def run_fitkit(args, centred: bool) -> dict:
    centred_problem, non_centred_problem = problems()
    t0 = time.perf_counter()
    options = dict(
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        progress=False,
        key=args.seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table reports what the warnings say
        if centred:
            start = {"mu": jnp.asarray(4.0), "tau": jnp.asarray(3.0), "theta": jnp.asarray(0.3 * Y + 3.0)}
            post = fk.sample(centred_problem, start, projection="identity", adapt_mass=True, **options)
            keys = ("mu", "tau", "theta")
        else:
            start = {
                "mu": jnp.asarray(4.0),
                "tau": jnp.asarray(3.0),
                "eta": jnp.zeros(8),
                "theta": jnp.zeros(8),
            }
            solved = fk.solve(non_centred_problem, start, warn=False)
            post = fk.sample(non_centred_problem, solved, **options)
            keys = ("mu", "tau", "eta")
    seconds = time.perf_counter() - t0
    draws = {k: np.asarray(post.samples[k]) for k in keys}
    d = post.diagnostics
    label = (
        "fitkit, centred (identity + mass adaptation)"
        if centred
        else "fitkit, non-centred (whitened, default)"
    )
    return summarise(label, draws, d["divergences"], d["grad_evals"], seconds)


def run_numpyro(args, centred: bool) -> dict:
    t0 = time.perf_counter()
    mcmc = MCMC(
        NUTS(numpyro_model(centred)),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.warmup(jax.random.key(args.seed), extra_fields=("num_steps",), collect_warmup=True)
    warm_grads = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("diverging", "num_steps"))
    seconds = time.perf_counter() - t0
    keys = ("mu", "tau", "theta") if centred else ("mu", "tau", "eta")
    samples = mcmc.get_samples(group_by_chain=True)
    draws = {k: np.asarray(samples[k]) for k in keys}
    extra = mcmc.get_extra_fields()
    grads = warm_grads + int(np.sum(extra["num_steps"]))
    label = f"numpyro NUTS, {'centred' if centred else 'non-centred'}"
    return {
        **summarise(label, draws, int(np.sum(extra["diverging"])), grads, seconds),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| sampler | mu mean ± std | tau mean ± std | divergences | max R-hat | min ESS bulk | "
        "gradients | ESS / 1000 grads | wall (s) |\n|---|---|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['mu_mean']:.2f} ± {r['mu_std']:.2f} | {r['tau_mean']:.2f} ± {r['tau_std']:.2f} "
            f"| {r['divergences']} | {r['max_r_hat']:.3f} | {r['min_ess_bulk']:.0f} | {r['grad_evals']} "
            f"| {r['ess_per_1000_grads']:.1f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [
        run_fitkit(args, centred=False),
        run_numpyro(args, centred=False),
        run_fitkit(args, centred=True),
        run_numpyro(args, centred=True),
    ]
    print(table(rows))
    machine = {
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpyro": numpyro.__version__,
        "fitkit": fk.__version__,
        "backend": jax.default_backend(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
