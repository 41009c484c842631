"""Benchmark: every `fk.solve` method against scipy on the tutorial's sum of Gaussians.

The zodiax tutorial's section 2: from its starting guess (reduced chi-squared
7.526), solve to the optimum (1.028246). Measured side by side in one run,
after warm-up, best of `--repeat` runs, compile time reported apart:

- `fk.solve` with each method (rtol = atol = 1e-8); the time is the whole
  call as a user sees it (checks, cached executable, result packaging);
- the tutorial's own call, `optx.minimise(loss, BestSoFarMinimiser(BFGS))`
  under `eqx.filter_jit`;
- `scipy.optimize.minimize(method="L-BFGS-B")` with a jitted JAX
  `value_and_grad`;
- `scipy.optimize.least_squares(method="lm")` with jitted JAX residuals and
  forward-mode Jacobian.

A second table measures method defaults (L-BFGS history, Nelder-Mead
simplex size, conjugate-gradient formula) on the same problem and on a badly
scaled copy whose params are in units that make their curvatures differ by
~1e12.

Usage: python scripts/bench/solvers.py [--repeat 3]
Writes scripts/bench/results/solvers.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
import warnings

# scipy's L-BFGS-B calls OpenBLAS, whose worker threads fight XLA's for the
# CPU: on a shared 2-core machine that made scipy ~60x slower. One BLAS
# thread is what a careful scipy user would run with.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optimistix as optx  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.examples.gaussians import make_problem  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "solvers.json"
TOL = 1e-8
# Units of the badly scaled copy: the solver sees mean/1e-3 and std/1e3.
SCALE = {"mean": 1e-3, "std": 1e3, "power": 1.0}


class ScaledCurve(fk.Observation):
    """The tutorial's curve with params in badly chosen units."""

    def predict(self, params, model):
        return model({k: v * SCALE[k] for k, v in params.items()})


def scaled_problem():
    problem, _, start = make_problem()
    obs = problem.observations[0]
    scaled = fk.Problem(problem.model, ScaledCurve(data=obs.data, error=obs.error))
    return scaled, {k: v / SCALE[k] for k, v in start.items()}


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def run_fitkit(problem, start, method, repeat, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fk.ConvergenceWarning)
        first = fk.solve(problem, start, method=method, max_steps=5000, rtol=TOL, atol=TOL, **options)
        seconds, res = best_time(
            lambda: fk.solve(problem, start, method=method, max_steps=5000, rtol=TOL, atol=TOL, **options),
            repeat,
        )
    evals = {k: v for k, v in res.stats.items() if k.endswith("_evals")}
    return {
        "steps": res.steps,
        "evals": evals,
        "compile_s": first.compile_time,
        "wall_s": seconds,
        "engine_wall_s": res.wall_time,
        "chi2r": float(problem.chi2r(res.params)),
        "converged": bool(res.converged),
    }


def run_tutorial_optx(problem, start, repeat):
    """The tutorial's call: optx.minimise with BestSoFarMinimiser(BFGS)."""
    solver = optx.BestSoFarMinimiser(optx.BFGS(TOL, TOL))
    call = eqx.filter_jit(
        lambda p: optx.minimise(lambda x, _: problem.loss(x), solver, p, max_steps=5000, throw=False)
    )
    start_time = time.perf_counter()
    jax.block_until_ready(call(start).value)
    compile_s = time.perf_counter() - start_time
    seconds, sol = best_time(lambda: jax.block_until_ready(call(start)), repeat)
    steps = int(sol.stats["num_steps"])
    return {
        "steps": steps,
        "evals": {"loss_evals": steps},
        "compile_s": compile_s,
        "wall_s": seconds,
        "chi2r": float(problem.chi2r(sol.value)),
        "converged": bool(sol.result == optx.RESULTS.successful),
    }


def run_scipy_lbfgsb(problem, start, repeat):
    flat, unravel = fk.tree.ravel(start)
    value_and_grad = jax.jit(jax.value_and_grad(lambda u: problem.loss(unravel(u))))

    def fun(x):
        value, grad = value_and_grad(x)
        return float(value), np.asarray(grad)

    x0 = np.asarray(flat)
    start_time = time.perf_counter()
    fun(x0)
    compile_s = time.perf_counter() - start_time
    seconds, out = best_time(
        lambda: scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", options={"maxiter": 5000}),
        repeat,
    )
    return {
        "steps": int(out.nit),
        "evals": {"loss_evals": int(out.nfev), "grad_evals": int(out.njev)},
        "compile_s": compile_s,
        "wall_s": seconds,
        "chi2r": float(problem.chi2r(unravel(jnp.asarray(out.x)))),
        "converged": bool(out.success),
    }


def run_scipy_lm(problem, start, repeat):
    flat, unravel = fk.tree.ravel(start)
    residuals = jax.jit(lambda u: problem.residuals(unravel(u)))
    jacobian = jax.jit(jax.jacfwd(lambda u: problem.residuals(unravel(u))))
    x0 = np.asarray(flat)
    start_time = time.perf_counter()
    residuals(x0).block_until_ready()
    jacobian(x0).block_until_ready()
    compile_s = time.perf_counter() - start_time
    seconds, out = best_time(
        lambda: scipy.optimize.least_squares(
            lambda x: np.asarray(residuals(x)), x0, jac=lambda x: np.asarray(jacobian(x)), method="lm"
        ),
        repeat,
    )
    return {
        "steps": int(out.njev),
        "evals": {"residual_evals": int(out.nfev), "jacobian_evals": int(out.njev)},
        "compile_s": compile_s,
        "wall_s": seconds,
        "chi2r": float(problem.chi2r(unravel(jnp.asarray(out.x)))),
        "converged": bool(out.success),
    }


def fmt_evals(evals):
    short = {
        "loss_evals": "f",
        "grad_evals": "g",
        "hessian_evals": "H",
        "residual_evals": "r",
        "jacobian_evals": "J",
    }
    return " ".join(f"{short[k]}={v}" for k, v in evals.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    problem, _, start = make_problem()
    rows = {}
    for method in fk.solving.METHODS:
        rows[f"fk.solve {method}"] = run_fitkit(problem, start, method, args.repeat)
    rows["optx.minimise BestSoFar(BFGS) (tutorial)"] = run_tutorial_optx(problem, start, args.repeat)
    rows["scipy L-BFGS-B + JAX grad"] = run_scipy_lbfgsb(problem, start, args.repeat)
    rows["scipy least_squares lm + JAX jac"] = run_scipy_lm(problem, start, args.repeat)

    fitkit_rows = {k: v for k, v in rows.items() if k.startswith("fk.solve") and v["converged"]}
    fastest = min(fitkit_rows, key=lambda k: fitkit_rows[k]["wall_s"])
    scipy_best = min(
        ("scipy L-BFGS-B + JAX grad", "scipy least_squares lm + JAX jac"), key=lambda k: rows[k]["wall_s"]
    )
    reference = rows[scipy_best]["wall_s"]

    print(
        f"\nSum of Gaussians, tutorial start (chi2r 7.526), rtol=atol={TOL:g}; jax {jax.__version__}, float64"
    )
    print(
        "| method | steps | evaluations | compile (s) | wall (ms) | vs fastest scipy | final chi2r | converged |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['steps']} | {fmt_evals(row['evals'])} | {row['compile_s']:.2f} | "
            f"{row['wall_s'] * 1e3:.2f} | {row['wall_s'] / reference:.2f}x | {row['chi2r']:.6f} | "
            f"{row['converged']} |"
        )
    print(
        f"\nfastest fitkit: {fastest} {rows[fastest]['wall_s'] * 1e3:.2f} ms; fastest scipy: {scipy_best} "
        f"{reference * 1e3:.2f} ms; ratio {rows[fastest]['wall_s'] / reference:.2f}"
    )

    # Method defaults, measured on the plain and the badly scaled problem.
    scaled, scaled_start = scaled_problem()
    variants = [("lbfgs", {"history_length": h}) for h in (5, 10, 20, 40)]
    variants += [("nelder-mead", {"rdelta": r}) for r in (0.05, 0.2)]
    variants += [
        ("nonlinear-cg", {"beta": b}) for b in ("polak-ribiere", "fletcher-reeves", "hestenes-stiefel")
    ]
    variants += [(m, {}) for m in ("bfgs", "newton", "gauss-newton", "levenberg-marquardt", "dogleg")]
    defaults = []
    print("\nMethod options on the plain and the badly scaled problem (steps, final chi2r, converged)")
    print(
        "| method | option | plain: steps | plain: chi2r | scaled: steps | scaled: chi2r | scaled: converged |"
    )
    print("|---|---|---|---|---|---|---|")
    for method, options in variants:
        plain = run_fitkit(problem, start, method, 1, **options)
        bad = run_fitkit(scaled, scaled_start, method, 1, **options)
        label = ", ".join(f"{k}={getattr(v, '__name__', v)}" for k, v in options.items()) or "default"
        defaults.append({"method": method, "option": label, "plain": plain, "scaled": bad})
        print(
            f"| {method} | {label} | {plain['steps']} | {plain['chi2r']:.6f} | {bad['steps']} | "
            f"{bad['chi2r']:.6f} | {bad['converged']} |"
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "problem": "sum of Gaussians (zodiax tutorial section 2), tutorial start",
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "jax": jax.__version__,
                    "scipy": scipy.__version__,
                    "optimistix": optx.__version__,
                    "devices": [str(d) for d in jax.devices()],
                    "dtype": "float64",
                },
                "rtol": TOL,
                "atol": TOL,
                "repeat": args.repeat,
                "rows": rows,
                "fastest_fitkit": fastest,
                "fastest_scipy": scipy_best,
                "ratio_fastest": rows[fastest]["wall_s"] / reference,
                "defaults": defaults,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
