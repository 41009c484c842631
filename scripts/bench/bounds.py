"""Benchmark: the bounds transform. Stan's logistic/exp maps (fitkit's) against MINUIT's sine/sqrt maps.

Both maps run through the same `fk.solve` (Levenberg-Marquardt on the
unconstrained vector, the default) on the same bounded problems, from many
random starts inside the bounds; lmfit (which uses MINUIT's maps with
MINPACK's Levenberg-Marquardt) runs from the same starts as the reference a
user would otherwise reach for.

- sine: lmfit's damped sine, `amp >= 0`, `shift in (-pi/2, pi/2)`; the best
  fit lies inside the bounds.
- decay: `N exp(-t / tau)`, both `>= 0`, far inside.
- edge: a line whose offset is bounded at 0 while the data want -0.5 (an
  active bound: fitkit holds it at the limit).
- peak: a Gaussian whose width is bounded in (0.05, 5) and centre in (0, 10).

A run succeeds when the result is valid and its chi-squared is within 1e-9
(relative) of the best found by any method on that problem. Times are wall
seconds per call after the first (compilation excluded for fitkit; lmfit has none).

Usage: python scripts/bench/bounds.py [--starts 50]
Writes scripts/bench/results/bounds.json and prints a markdown table.
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
import lmfit  # noqa: E402
import numpy as np  # noqa: E402

import fitkit as fk  # noqa: E402
from fitkit.parametrisation import Parametrisation  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bounds.json"


class SineMap(Parametrisation):
    """MINUIT's transforms: `lo + (hi - lo) (sin z + 1) / 2` for two bounds, `lo - 1 + sqrt(z^2 + 1)` for one."""

    def constrain(self, z):
        two, low, high, lo, hi = self._kinds()
        x_two = lo + 0.5 * (hi - lo) * (jnp.sin(jnp.where(two, z, 0.0)) + 1.0)
        x_low = lo - 1.0 + jnp.sqrt(jnp.square(jnp.where(low, z, 0.0)) + 1.0)
        x_high = hi + 1.0 - jnp.sqrt(jnp.square(jnp.where(high, z, 0.0)) + 1.0)
        return jnp.where(two, x_two, jnp.where(low, x_low, jnp.where(high, x_high, z)))

    def unconstrain(self, x):
        two, low, high, lo, hi = self._kinds()
        fraction = jnp.clip(jnp.where(two, 2.0 * (x - lo) / (hi - lo) - 1.0, 0.0), -1.0, 1.0)
        z_low = jnp.sqrt(jnp.maximum(jnp.square(jnp.where(low, x - lo, 0.0) + 1.0) - 1.0, 0.0))
        z_high = jnp.sqrt(jnp.maximum(jnp.square(jnp.where(high, hi - x, 0.0) + 1.0) - 1.0, 0.0))
        return jnp.where(two, jnp.arcsin(fraction), jnp.where(low, z_low, jnp.where(high, z_high, x)))


class MinuitProblem(fk.Problem):
    """The same problem, solved through MINUIT's maps."""

    def parametrisation(self, params, fixed=None):
        fitkit_map = super().parametrisation(params, fixed)
        return SineMap(**{f: getattr(fitkit_map, f) for f in fitkit_map.__dataclass_fields__})


class Curve(fk.Observation):
    x: jax.Array
    shape: str = "sine"

    def predict(self, params, model):
        return SHAPES[self.shape](params, self.x)


SHAPES = {
    "sine": lambda p, x: p["amp"] * jnp.sin(p["omega"] * x + p["shift"]) * jnp.exp(-x * x * p["decay"]),
    "decay": lambda p, x: p["N"] * jnp.exp(-x / p["tau"]),
    "edge": lambda p, x: p["slope"] * x + p["offset"],
    "peak": lambda p, x: p["amp"] * jnp.exp(-0.5 * ((x - p["center"]) / p["width"]) ** 2) + p["background"],
}


def cases(rng):
    """(name, x, y, error, bounds, a start drawer) for each problem."""
    x = np.linspace(0.0, 15.0, 301)
    y = 5.0 * np.sin(2.0 * x - 0.1) * np.exp(-x * x * 0.025) + rng.normal(0.0, 0.2, x.size)
    yield (
        "sine",
        x,
        y,
        0.2,
        {"amp": (0.0, None), "shift": (-np.pi / 2, np.pi / 2)},
        lambda r: {
            "amp": r.uniform(1, 10),
            "decay": r.uniform(0.01, 0.1),
            "shift": r.uniform(-1.5, 1.5),
            "omega": r.uniform(1.8, 2.2),
        },
    )
    t = np.linspace(0.0, 5.0, 60)
    yield (
        "decay",
        t,
        8.0 * np.exp(-t / 1.3) + rng.normal(0.0, 0.25, t.size),
        0.25,
        {"N": (0.0, None), "tau": (0.0, None)},
        lambda r: {"N": r.uniform(1, 20), "tau": r.uniform(0.2, 5)},
    )
    u = np.linspace(0.0, 1.0, 40)
    yield (
        "edge",
        u,
        2.0 * u - 0.5 + rng.normal(0.0, 0.1, u.size),
        0.1,
        {"offset": (0.0, None)},
        lambda r: {"slope": r.uniform(0, 4), "offset": r.uniform(0.01, 2)},
    )
    v = np.linspace(0.0, 10.0, 200)
    yield (
        "peak",
        v,
        3.0 * np.exp(-0.5 * ((v - 4.2) / 0.7) ** 2) + 0.2 + rng.normal(0.0, 0.1, v.size),
        0.1,
        {"width": (0.05, 5.0), "center": (0.0, 10.0)},
        lambda r: {
            "amp": r.uniform(1, 5),
            "center": r.uniform(3, 5.5),
            "width": r.uniform(0.2, 3),
            "background": r.uniform(-0.5, 0.5),
        },
    )


def run_fitkit(problem, start):
    begin = time.perf_counter()
    res = fk.solve(problem, start, warn=False)
    return {
        "chi2": float(problem.chi2(res.params)),
        "valid": bool(res.valid),
        "steps": int(res.steps),
        "wall": time.perf_counter() - begin,
        "compile": float(res.compile_time),
    }


def run_lmfit(name, x, y, error, bounds, start):
    parameters = lmfit.Parameters()
    for key, value in start.items():
        lo, hi = bounds.get(key, (None, None))
        parameters.add(key, value=value, min=-np.inf if lo is None else lo, max=np.inf if hi is None else hi)
    shape = SHAPES[name]

    def residual(p):
        return (np.asarray(shape({k: v for k, v in p.valuesdict().items()}, x)) - y) / error

    begin = time.perf_counter()
    out = lmfit.minimize(residual, parameters)
    wall = time.perf_counter() - begin
    return {"chi2": float(out.chisqr), "valid": bool(out.success), "steps": int(out.nfev), "wall": wall}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=50)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name, x, y, error, bounds, draw in cases(rng):
        obs = Curve(data=jnp.asarray(y), error=jnp.full(y.shape, error), x=jnp.asarray(x), shape=name)
        problems = {
            "fitkit (logistic/exp)": fk.Problem(None, obs, bounds=bounds),
            "MINUIT maps (sine/sqrt)": MinuitProblem(None, obs, bounds=bounds),
        }
        starts = [{k: float(v) for k, v in draw(rng).items()} for _ in range(args.starts)]
        runs = {label: [] for label in [*problems, "lmfit leastsq"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for label, problem in problems.items():
                for start in starts:
                    runs[label].append(run_fitkit(problem, start))
            for start in starts:
                runs["lmfit leastsq"].append(run_lmfit(name, x, y, error, bounds, start))
        best = min(r["chi2"] for rs in runs.values() for r in rs if np.isfinite(r["chi2"]))
        for label, results in runs.items():
            right = [r["valid"] and abs(r["chi2"] - best) <= 1e-9 * best for r in results]
            wrong_valid = [r["valid"] and not ok for r, ok in zip(results, right)]
            rows.append(
                {
                    "problem": name,
                    "method": label,
                    "starts": len(results),
                    "success": float(np.mean(right)),
                    "valid_but_wrong": int(np.sum(wrong_valid)),
                    "median_steps": float(np.median([r["steps"] for r in results])),
                    "median_wall_s": float(np.median([r["wall"] for r in results[1:]])),
                    "first_call_s": float(results[0]["wall"]),
                }
            )
    print(
        "| problem | method | success | valid but wrong | median steps (lmfit: nfev) | median s/call | first call s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['problem']} | {r['method']} | {r['success']:.0%} | {r['valid_but_wrong']} | "
            f"{r['median_steps']:.0f} | {r['median_wall_s']:.4f} | {r['first_call_s']:.2f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "jax": jax.__version__}
    machine["devices"] = [str(d) for d in jax.devices()]
    RESULTS.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
