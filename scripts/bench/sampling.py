"""Benchmark: whitened NUTS (`fk.sample`) against numpyro NUTS on the raw params.

The zodiax tutorial's section 7 on fitkit's optics problem (16 params: three
positions, three fluxes, seven Zernike coefficients), at its optimum (a
Levenberg-Marquardt solve from the tutorial's start). Three samplers run in one
process with the same warm-up and draw counts, the same number of chains
(vectorised on one device) and no progress bar:

- `fk.sample` with its defaults: NUTS in the latent space whitened by the
  Hessian at the optimum, identity mass matrix, warm-up 200;
- numpyro NUTS on the raw params with diagonal mass adaptation, written as a
  user would: a wide `Normal(0, 1e3)` prior on the raveled params and
  `numpyro.factor("ll", -problem.nll(params))`, started at the optimum;
- the same with dense mass adaptation.

Reported per sampler: the minimum bulk ESS over the 16 params (rank-normalised,
`fk.sampling.ess_bulk`, the same function for every row), the maximum split
R-hat, divergences after warm-up, gradient evaluations (leapfrog steps summed
over warm-up and sampling and over chains), wall time, and the time JAX spent
tracing and compiling (from `jax.monitoring` events), so ESS/s is given both on
the wall time and on the time left after compilation.

On this problem the params' posterior standard deviations span 1e-6 to 2e-3.
numpyro's mass adaptation shrinks its variance estimates towards 1e-3 (Stan's
regularisation, in the params' own units), which swamps variances of 1e-12 to
1e-6: the raw samplers keep a step size set by the narrowest direction and hit
the maximum tree depth on almost every draw. At depth 10 that is 1023 leapfrog
steps per draw (about 7 s per draw on the shared 2-core CPU, over an hour per
run), so the raw samplers run with `--raw-depth` (default 5); the table says
how often they hit it. The script prints the adapted inverse mass matrix
against the Hessian's variances to show the shrinkage.

Usage: python scripts/bench/sampling.py [--npix 64] [--warmup 200] [--samples 500]
       [--chains 2] [--raw-depth 5]
Writes scripts/bench/results/sampling.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS, init_to_value  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.examples.optics import make_problem  # noqa: E402
from fitkit.sampling import ess_bulk, r_hat  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "sampling.json"
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _on_duration(event: str, seconds: float, **_) -> None:
    if event in COMPILE_EVENTS:
        _compile_seconds[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def timed(fn):
    """Run `fn()`; return its output, the wall time and the JAX trace+compile time inside it."""
    compiled = _compile_seconds[0]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, _compile_seconds[0] - compiled


def setup(npix: int):
    problem, truth, start = make_problem(0, wf_npixels=npix)
    fit = fk.solve(problem, start, method="levenberg-marquardt")
    print(f"optimum: {fit.steps} LM steps, chi2r {float(problem.chi2r(fit.params)):.6f}", flush=True)
    return problem, fit.params


def run_fitkit(problem, params, args) -> dict:
    post, wall, compile_time = timed(
        lambda: fk.sample(
            problem,
            params,
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            key=0,
            progress=False,
        )
    )
    diag = post.diagnostics
    return {
        "draws": post.flat(),
        "grad_evals": diag["grad_evals"],
        "warmup_grad_evals": diag["warmup_grad_evals"],
        "num_steps": diag["num_steps"],
        "divergences": diag["divergences"],
        "step_size": float(np.mean(diag["step_size"])),
        "max_tree_depth": post.config["max_tree_depth"],
        "wall": wall,
        "compile": compile_time,
    }


def run_numpyro(problem, params, args, dense: bool, inverse_mass=None) -> dict:
    """numpyro NUTS on the raveled params, as a user would write it, started at the optimum.

    With `inverse_mass` (a dense matrix) the mass matrix is fixed to it instead of adapted.
    """
    x0, unravel = fk.tree.ravel(params)

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1e3).expand([x0.size]).to_event(1))
        numpyro.factor("ll", -problem.nll(unravel(x)))

    fixed = inverse_mass is not None
    kernel = NUTS(
        model,
        dense_mass=dense or fixed,
        inverse_mass_matrix=inverse_mass,
        adapt_mass_matrix=not fixed,
        max_tree_depth=10 if fixed else args.raw_depth,
        init_strategy=init_to_value(values={"x": x0}),
    )
    mcmc = MCMC(
        kernel,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    warm_key, run_key = jax.random.split(jax.random.key(0))
    fields = ("num_steps", "diverging", "adapt_state.step_size")

    def run():
        mcmc.warmup(warm_key, extra_fields=("num_steps",), collect_warmup=True)
        warm_steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
        mcmc.run(run_key, extra_fields=fields)
        return warm_steps

    warm_steps, wall, compile_time = timed(run)
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    adapted = next(iter(mcmc.last_state.adapt_state.inverse_mass_matrix.values()))
    adapted = np.asarray(adapted).reshape(args.chains, x0.size, -1)
    variances = adapted[..., 0] if not (dense or fixed) else np.diagonal(adapted, axis1=-2, axis2=-1)
    return {
        "draws": np.asarray(mcmc.get_samples(group_by_chain=True)["x"]),
        "grad_evals": warm_steps + int(extra["num_steps"].sum()),
        "warmup_grad_evals": warm_steps,
        "num_steps": extra["num_steps"],
        "divergences": int(extra["diverging"].sum()),
        "step_size": float(np.mean(extra["adapt_state.step_size"][:, -1])),
        "max_tree_depth": 10 if fixed else args.raw_depth,
        "wall": wall,
        "compile": compile_time,
        "mass_variances": variances.mean(0),
    }


def row(name: str, run: dict) -> dict:
    ess = ess_bulk(run["draws"])
    sampling = run["wall"] - run["compile"]
    steps = run["num_steps"]
    return {
        "sampler": name,
        "min_ess_bulk": float(ess.min()),
        "max_r_hat": float(np.max(r_hat(run["draws"]))),
        "divergences": run["divergences"],
        "mean_steps_per_draw": float(steps.mean()),
        "max_depth_hits": float(np.mean(steps >= 2 ** run["max_tree_depth"] - 1)),
        "max_tree_depth": run["max_tree_depth"],
        "step_size": run["step_size"],
        "grad_evals": run["grad_evals"],
        "warmup_grad_evals": run["warmup_grad_evals"],
        "ess_per_grad": float(ess.min()) / run["grad_evals"],
        "wall_s": run["wall"],
        "compile_s": run["compile"],
        "ess_per_s": float(ess.min()) / sampling,
        "ess_per_s_with_compile": float(ess.min()) / run["wall"],
        "means": run["draws"].reshape(-1, run["draws"].shape[-1]).mean(0).tolist(),
    }


def table(rows: list[dict]) -> str:
    base = rows[1]
    lines = [
        "| sampler | max depth | min ESS bulk | max r_hat | divergences | steps/draw | at max depth "
        "| grad evals | ESS/grad | wall (s) | compile (s) | ESS/s | ESS/s vs raw diag "
        "| ESS/grad vs raw diag |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['max_tree_depth']} | {r['min_ess_bulk']:.3g} | {r['max_r_hat']:.4f} "
            f"| {r['divergences']} | {r['mean_steps_per_draw']:.1f} | {100 * r['max_depth_hits']:.0f}% "
            f"| {r['grad_evals']:,} | {r['ess_per_grad']:.3g} | {r['wall_s']:.1f} | {r['compile_s']:.1f} "
            f"| {r['ess_per_s']:.3g} | {r['ess_per_s'] / base['ess_per_s']:,.0f}x "
            f"| {r['ess_per_grad'] / base['ess_per_grad']:,.0f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npix", type=int, default=64, help="pupil pixels of the optics model")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up iterations (fk.sample's default)")
    parser.add_argument("--samples", type=int, default=500, help="draws per chain")
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--raw-depth", type=int, default=5, help="max tree depth of the raw numpyro NUTS")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args()

    problem, params = setup(args.npix)
    names = fk.tree.names(params)
    cov = fk.covariance(problem, params)
    hessian_var = np.asarray(cov.flat_std) ** 2
    runs = {}
    for name, fn in [
        ("fk.sample (whitened NUTS)", lambda: run_fitkit(problem, params, args)),
        ("numpyro NUTS, raw params, diagonal mass", lambda: run_numpyro(problem, params, args, dense=False)),
        ("numpyro NUTS, raw params, dense mass", lambda: run_numpyro(problem, params, args, dense=True)),
        (
            "numpyro NUTS, raw params, inverse mass = Hessian covariance (fixed)",
            lambda: run_numpyro(problem, params, args, dense=True, inverse_mass=cov.matrix),
        ),
    ]:
        print(f"running {name} ...", flush=True)
        runs[name] = fn()
        print(f"  done in {runs[name]['wall']:.1f} s", flush=True)
    rows = [row(name, run) for name, run in runs.items()]
    print()
    print(table(rows))

    print("\nadapted inverse mass (variance) / Hessian variance, per param:")
    for name, run in list(runs.items())[1:3]:
        ratio = run["mass_variances"] / hessian_var
        print(f"  {name}: min {ratio.min():.3g}, median {np.median(ratio):.3g}, max {ratio.max():.3g}")
    fitkit, raw = rows[0], rows[1]
    checks = {
        "ess_per_s_ratio_vs_raw_diag": fitkit["ess_per_s"] / raw["ess_per_s"],
        "ess_per_s_ratio_at_least_20": fitkit["ess_per_s"] / raw["ess_per_s"] >= 20,
        "zero_divergences": fitkit["divergences"] == 0,
        "r_hat_below_1.01": fitkit["max_r_hat"] < 1.01,
        "ess_per_grad_at_least_0.15": fitkit["ess_per_grad"] >= 0.15,
    }
    print("\ndone-when checks (fk.sample):", json.dumps(checks, indent=1))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "devices": [str(d) for d in jax.devices()],
                "jax": jax.__version__,
                "numpyro": numpyro.__version__,
                "dtype": "float64",
            },
            "settings": vars(args),
            "names": names,
            "hessian_std": np.sqrt(hessian_var).tolist(),
            "mass_variance_over_hessian_variance": {
                name: (run["mass_variances"] / hessian_var).tolist() for name, run in list(runs.items())[1:3]
            },
            "rows": rows,
            "checks": checks,
        }
        RESULTS.write_text(json.dumps(record, indent=1, default=float))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
