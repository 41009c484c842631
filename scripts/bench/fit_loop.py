"""Benchmark: fk.fit's fused on-device loop against the tutorial's Python loop.

The zodiax tutorial's section 1: the sum-of-Gaussians problem, 500 steps of
SGD with momentum, `power` delayed by 50 steps. Measured side by side in one
run, after warm-up, best of `--repeat` runs, compile time reported apart:

- the tutorial's loop: jitted `value_and_grad`, then an eager optax update and
  `apply_updates` per step (what the tutorial does);
- a Python loop over one jitted step function (value_and_grad + update +
  apply fused per step: the best a hand-written loop does);
- `fk.fit` with its progress bar and without (chunks of about 0.2 s either way).

Usage: python scripts/bench/fit_loop.py [--steps 500] [--repeat 3]
Writes scripts/bench/results/fit_loop.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.fitting import map_optimisers  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "fit_loop.json"


def tutorial_optimisers():
    return {
        ("mean", "std"): optax.sgd(0.002, momentum=0.5),
        "power": optax.sgd(fk.delay(0.005, 50), momentum=0.5),
    }


def tutorial_loop(problem, params, steps):
    """The tutorial's loop, verbatim apart from names (tqdm left out)."""
    loss_grad_fn = eqx.filter_jit(eqx.filter_value_and_grad(problem.loss))
    optim, _ = map_optimisers(params, tutorial_optimisers())
    state = optim.init(params)

    def run():
        p, s, losses = params, state, []
        for _ in range(steps):
            loss, grads = loss_grad_fn(p)
            updates, s = optim.update(grads, s, p)
            p = optax.apply_updates(p, updates)
            losses.append(loss)
        jax.block_until_ready(p)
        return p

    return run


def jitted_step_loop(problem, params, steps):
    """A Python loop over one jitted step: the fastest hand-written loop."""
    optim, _ = map_optimisers(params, tutorial_optimisers())

    @eqx.filter_jit
    def step(p, s):
        loss, grads = eqx.filter_value_and_grad(problem.loss)(p)
        updates, s = optim.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    def run():
        p, s, losses = params, optim.init(params), []
        for _ in range(steps):
            p, s, loss = step(p, s)
            losses.append(loss)
        jax.block_until_ready(p)
        return p

    return run


def best_of(run, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(steps: int = 500, repeat: int = 3) -> dict:
    problem, _, start = fk.examples.gaussians.make_problem()
    rows = []

    for name, build in [("tutorial loop (jitted grad, eager optax)", tutorial_loop),
                        ("Python loop over a jitted step", jitted_step_loop)]:  # fmt: skip
        run = build(problem, start, steps)
        t0 = time.perf_counter()
        run()  # warm-up: compiles, and runs once
        warm = time.perf_counter() - t0
        seconds, params = best_of(run, repeat)
        rows.append(
            {"name": name, "seconds": seconds, "compile_s": max(warm - seconds, 0.0), "params": params}
        )

    for name, progress in [
        ("fk.fit, progress bar", True),
        ("fk.fit, progress=False", False),
    ]:
        results = []
        for _ in range(repeat + 1):  # the first is warm-up
            with contextlib.redirect_stderr(io.StringIO()):  # keep the bars out of the table
                results.append(
                    fk.fit(problem, start, tutorial_optimisers(), steps=steps, progress=progress,
                           stopper=fk.Stopper(restore_best=False))
                )  # fmt: skip
        best = min(results[1:], key=lambda r: r.wall_time)
        rows.append(
            {"name": name, "seconds": best.wall_time, "compile_s": best.compile_time, "params": best.params}
        )

    reference = dict(rows[0])
    for row in rows:
        row["steps_per_s"] = steps / row["seconds"]
        row["speedup"] = reference["seconds"] / row["seconds"]
        params = row.pop("params")
        row["max_param_diff"] = max(float(np.max(np.abs(params[k] - reference["params"][k]))) for k in params)
        row["chi2r"] = float(problem.chi2r(params))

    report = {
        "benchmark": "fit_loop",
        "problem": "sum of two Gaussians, 500 points (zodiax tutorial section 1)",
        "steps": steps,
        "repeat": repeat,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU (shared with other jobs)",
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "dtype": "float64",
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    return report


def table(report: dict) -> str:
    lines = [
        f"{report['steps']} SGD steps, best of {report['repeat']} after warm-up; "
        f"{report['machine']}; jax {report['jax']}, {report['dtype']}",
        "",
        "| loop | steps/s | time (ms) | compile (s) | speed-up vs tutorial | final chi2r | max param diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['name']} | {row['steps_per_s']:,.0f} | {1e3 * row['seconds']:.1f} | "
            f"{row['compile_s']:.2f} | {row['speedup']:.1f}x | {row['chi2r']:.6f} | {row['max_param_diff']:.1e} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    main(args.steps, args.repeat)
