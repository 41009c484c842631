"""Benchmark: the zodiax tutorial's recipes on the hierarchical optics problem (sections 4-6).

`fk.examples.optics.make_problem(seed)`: one star imaged through three
filters, 7 shared wavefront-error coefficients plus a position and a log-flux
per filter (16 params), from the tutorial's starting guess (zero wavefront
error, brightest-pixel positions, summed fluxes). In one run:

- plain SGD, 200 steps, the tutorial's per-path learning rates (times 3: see
  `TUTORIAL_RATES`);
- natural gradient descent (`precondition=F`), 100 steps, one learning rate
  for every param; and the same recipe as the tutorial's hand-written loop
  (Python loop over a jitted `value_and_grad`, gradient times `F^-1`, eager
  optax update), which must land on the same params;
- L-BFGS in the raw params (512 steps at most, as in the tutorial) and in the
  whitened Fisher latent space (`projection=proj`);
- Levenberg-Marquardt on the residuals, raw and projected.

The optimum is Levenberg-Marquardt started from the true params. The Fisher
matrix and the projection are built once, timed apart ("setup"), and handed
to the recipes that use them. Wall times exclude compilation (`FitResult.
wall_time`; `compile_time` is reported apart).

Usage: python scripts/bench/optics.py [--npix 256] [--frames 1000] [--seed 0]
Writes scripts/bench/results/optics.json (or --out) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.examples.optics import make_problem  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "optics.json"
TOL = 1e-6  # the tutorial's rtol = atol for L-BFGS
NGD_RATE = 0.2


def tutorial_rates() -> dict:
    """The tutorial's plain-SGD optimisers, with every rate times 3.

    The tutorial's loss is the mean over pixels of the sum over the 3 images;
    `problem.loss` is the mean over all pixels of all images, 3x smaller, so
    its gradients are 3x smaller too: tripling the rates takes the same steps.
    """
    return {
        "position": optax.sgd(3e-10, momentum=0.5),
        "wfe": optax.sgd(fk.delay(3e-4, 25), momentum=0.5),
        "flux": optax.sgd(fk.delay(3e-9, 50), momentum=0.5),
    }


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def row(problem, res, setup_s=0.0):
    return {
        "chi2r": float(problem.chi2r(res.params)),
        "steps": int(res.steps),
        "evals": {k: int(v) for k, v in res.stats.items() if k.endswith("_evals")},
        "compile_s": float(res.compile_time),
        "wall_s": float(res.wall_time),
        "setup_s": float(setup_s),
        "converged": bool(res.converged),
        "message": res.message,
        "params": res.params,
    }


def tutorial_ngd_loop(problem, start, fisher, steps):
    """The tutorial's section-5 loop: jitted value_and_grad, gradient times F^-1, eager optax."""
    inverse = np.linalg.inv(2.0 / problem.n_data * np.asarray(fisher))
    loss_grad = eqx.filter_jit(eqx.filter_value_and_grad(problem.loss))
    compile_s, _ = timed(lambda: loss_grad(start))
    optim = optax.sgd(NGD_RATE, momentum=0.5)
    params, state = start, optim.init(start)
    begin = time.perf_counter()
    for _ in range(steps):
        _, grads = loss_grad(params)
        flat, unravel = fk.tree.ravel(grads)
        updates, state = optim.update(unravel(inverse @ flat), state)
        params = optax.apply_updates(params, updates)
    jax.block_until_ready(params)
    wall_s = time.perf_counter() - begin
    return {
        "chi2r": float(problem.chi2r(params)),
        "steps": steps,
        "evals": {"loss_evals": steps, "grad_evals": steps},
        "compile_s": compile_s,
        "wall_s": wall_s,
        "setup_s": 0.0,
        "converged": False,
        "message": f"ran {steps} steps",
        "params": params,
    }


def run(npix: int, frames: int, seed: int) -> dict:
    problem, truth, start = make_problem(seed, wf_npixels=npix, n_frames=frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fk.ConvergenceWarning)
        optimum = fk.solve(problem, truth, method="levenberg-marquardt", rtol=1e-10, atol=1e-10)
        optimum_chi2r = float(problem.chi2r(optimum.params))

        # Setup, timed twice: the first call compiles the Jacobian, the second does not.
        fisher_first_s, _ = timed(lambda: fk.fisher(problem, start))
        fisher_s, fisher = timed(lambda: fk.fisher(problem, start))
        projection_s, proj = timed(lambda: fk.Projection.from_fisher(fisher, start))

        rows = {}
        rows["SGD, tutorial rates"] = row(
            problem, fk.fit(problem, start, tutorial_rates(), steps=200, progress=False, history=False)
        )
        ngd = fk.fit(
            problem,
            start,
            optax.sgd(NGD_RATE, momentum=0.5),
            steps=100,
            precondition=fisher,
            progress=False,
            history=False,
        )
        rows[f"NGD, sgd({NGD_RATE}, momentum=0.5)"] = row(problem, ngd, fisher_s)
        rows["tutorial-style NGD loop"] = tutorial_ngd_loop(problem, start, fisher, 100)
        rows["L-BFGS raw"] = row(
            problem, fk.solve(problem, start, method="lbfgs", rtol=TOL, atol=TOL, max_steps=512)
        )
        rows["L-BFGS projected"] = row(
            problem,
            fk.solve(problem, start, method="lbfgs", rtol=TOL, atol=TOL, max_steps=512, projection=proj),
            fisher_s + projection_s,
        )
        rows["Levenberg-Marquardt raw"] = row(
            problem, fk.solve(problem, start, method="levenberg-marquardt", rtol=TOL, atol=TOL, max_steps=512)
        )
        rows["Levenberg-Marquardt projected"] = row(
            problem,
            fk.solve(
                problem,
                start,
                method="levenberg-marquardt",
                rtol=TOL,
                atol=TOL,
                max_steps=512,
                projection=proj,
            ),
            fisher_s + projection_s,
        )

    flat_ngd = np.asarray(fk.tree.ravel(rows[f"NGD, sgd({NGD_RATE}, momentum=0.5)"]["params"])[0])
    flat_loop = np.asarray(fk.tree.ravel(rows["tutorial-style NGD loop"]["params"])[0])
    for r in rows.values():
        r["gap"] = (r["chi2r"] - optimum_chi2r) / optimum_chi2r
        del r["params"]
    return {
        "npix": npix,
        "frames": frames,
        "seed": seed,
        "n_params": fk.tree.size(start),
        "n_data": int(problem.n_data),
        "start_chi2r": float(problem.chi2r(start)),
        "truth_chi2r": float(problem.chi2r(truth)),
        "optimum_chi2r": optimum_chi2r,
        "optimum_steps": int(optimum.steps),
        "fisher_first_s": fisher_first_s,
        "fisher_s": fisher_s,
        "projection_s": projection_s,
        "ngd_loop_max_param_diff": float(np.max(np.abs(flat_ngd - flat_loop))),
        "rows": rows,
    }


def fmt_evals(evals: dict) -> str:
    short = {"loss_evals": "f", "grad_evals": "g", "residual_evals": "r", "jacobian_evals": "J"}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in evals.items())


def table(out: dict) -> str:
    lines = [
        "| recipe | final chi2r | gap to optimum | steps | evaluations | setup (s) | compile (s) | wall (s) |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, r in out["rows"].items():
        lines.append(
            f"| {name} | {r['chi2r']:.7g} | {r['gap']:.1e} | {r['steps']} | {fmt_evals(r['evals'])} "
            f"| {r['setup_s']:.2f} | {r['compile_s']:.2f} | {r['wall_s']:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npix", type=int, default=256, help="pupil pixels (the tutorial: 256)")
    parser.add_argument("--frames", type=int, default=1000, help="frames averaged per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()

    out = run(args.npix, args.frames, args.seed)
    out["machine"] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "dtype": "float64",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    print(
        f"make_problem({args.seed}, wf_npixels={args.npix}, n_frames={args.frames}): "
        f"{out['n_params']} params, {out['n_data']} data; start chi2r {out['start_chi2r']:.6g}, "
        f"truth {out['truth_chi2r']:.6f}, optimum {out['optimum_chi2r']:.7f} (LM from the truth, "
        f"{out['optimum_steps']} steps)"
    )
    print(
        f"setup: fk.fisher {out['fisher_s']:.3f} s ({out['fisher_first_s']:.2f} s with compilation), "
        f"Projection.from_fisher {out['projection_s']:.3f} s"
    )
    print(f"NGD fk.fit vs the tutorial-style loop: max param difference {out['ngd_loop_max_param_diff']:.1e}")
    print()
    print(table(out))
    rows = out["rows"]
    fit_ngd = rows[f"NGD, sgd({NGD_RATE}, momentum=0.5)"]["wall_s"]
    print(
        f"\nNGD: the tutorial-style loop takes {rows['tutorial-style NGD loop']['wall_s'] / fit_ngd:.1f}x fk.fit's time"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
