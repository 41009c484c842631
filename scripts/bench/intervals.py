"""Benchmark: profile-likelihood (MINOS) intervals, `fk.intervals` against iminuit MINOS and a loop of `fk.solve`.

All 1-sigma MINOS intervals (the nll, minimised over the other params, rises
by 0.5) of every free param of two problems:

- optics: the zodiax tutorial's hierarchical optics problem
  (`fk.examples.optics.make_problem(seed, wf_npixels=--npix)`, 16 params),
  at a Levenberg-Marquardt optimum from the tutorial's start (as in
  `sampling.py`);
- gaussians: the tutorial's sum of Gaussians
  (`fk.examples.gaussians.make_problem(seed)`, 6 params), at `fk.solve`'s
  optimum from the tutorial's start (as in `solvers.py`).

Three ways to the same limits:

1. `fk.intervals(problem, res, engine=...)`: all 2n searches at once, with
   each of its two engines: `"host"` (the default on a CPU: a Python loop
   over the gradient the fit's verdict compiled, and the search step compiled
   once per shape) and `"compiled"` (the whole search one compiled call over
   `vmap`ped gradients, for accelerators). The first call runs in a fresh
   Python process (this script re-runs itself with `--worker`, as
   `latency.py` does), after the fit, with fitkit's persistent compilation
   cache off (`FITKIT_COMPILE_CACHE=off`), so it includes tracing and
   compiling; the second call is on new data (the problem rebuilt with seed
   1, same shapes, solved again first, untimed). A third row runs the host
   engine's first call in a fresh process that shares a warm persistent
   cache with an earlier one (fitkit's default on-disk cache: a user's next
   session).
2. iminuit (`Minuit(fcn, x0, grad=...)`, `errordef=0.5`) given fitkit's
   jitted nll and jitted gradient on the flat params (`fk.tree.ravel`, the
   problem passed as an argument of `eqx.filter_jit`, so new data do not
   recompile), started at fitkit's optimum: `migrad()` then `minos()`, each
   timed; the JIT compile of the nll and gradient is timed apart. The
   ratios use `minos()` alone (the goal: fk.intervals' first call, compile
   included, at least 5x faster).
3. A naive MINOS written with fitkit: per param and side,
   `scipy.optimize.brentq` on `profile(x) - nll_min - 0.5`, each profile
   evaluation an `fk.solve(problem, p, fixed=[name])` started from the
   previous evaluation's optimum, bracketed by the Hessian's sigma
   (`xtol = 1e-4 sigma`). Seed 0 only, one fresh process, stopped after
   `--loop-budget` seconds (the table says how many sides it finished; the
   all-params time is extrapolated from the mean per side).

Agreement: the max over params and sides of |limit_a - limit_b| / sigma,
sigma iminuit's HESSE error, against iminuit's MINOS limits on the same data.

Usage: python scripts/bench/intervals.py [--npix 64] [--loop-budget 300]
       [--problems optics,gaussians] [--no-save]
Writes scripts/bench/results/intervals.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "intervals.json"
MARKER = "@@intervals-result "
PROBLEMS = ("optics", "gaussians")
ENGINES = ("host", "compiled")
WORKER_TIMEOUT_S = 3 * 3600
GOAL = 5.0
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile = {"seconds": 0.0, "count": 0}


# ----------------------------------------------------------------------------- helpers in workers


def _jax():
    """Import jax with x64 on and a listener adding up the JAX trace + lower + compile time."""
    import jax

    jax.config.update("jax_enable_x64", True)

    def on_duration(event: str, seconds: float, **_) -> None:
        if event in COMPILE_EVENTS:
            _compile["seconds"] += seconds
            _compile["count"] += event == COMPILE_EVENTS[-1]

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    return jax


def build(problem_name: str, seed: int, npix: int):
    """`(problem, res)`: the problem (seed 0: the tutorial's data; 1: new data, same shapes) at its optimum."""
    import fitkit as fk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if problem_name == "optics":
            from fitkit.examples.optics import make_problem

            problem, _, start = make_problem(seed, wf_npixels=npix)
            res = fk.solve(problem, start, method="levenberg-marquardt")
        else:
            from fitkit.examples.gaussians import make_problem

            problem, _, start = make_problem(seed)
            res = fk.solve(problem, start)
    return problem, res


def timed(fn):
    """`(out, wall seconds, JAX compile seconds, XLA compilations)` of `fn()`."""
    before = dict(_compile)
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, _compile["seconds"] - before["seconds"], _compile["count"] - before["count"]


def _warnings(caught) -> list[str]:
    return sorted({f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught})


# ----------------------------------------------------------------------------- workers


def worker_fitkit(problem_name: str, engine: str, paths: str, cfg: dict) -> dict:
    """fk.intervals: first call (fresh process), then on new data (unless first only)."""
    jax = _jax()
    import numpy as np

    import fitkit as fk
    import fitkit.profiles._api as api

    chosen = None if paths == "all" else paths.split(",")
    search = {"seconds": 0.0}
    original = api.run

    def timed_search(*a, **k):  # the compiled search alone, to split the call's time
        t0 = time.perf_counter()
        out = jax.block_until_ready(original(*a, **k))
        search["seconds"] += time.perf_counter() - t0
        search["evaluations"] = [int(e) for e in out.evaluations]
        return out

    api.run = timed_search
    calls = []
    for seed in (0,) if cfg["first_only"] else (0, 1):
        problem, res = build(problem_name, seed, cfg["npix"])
        search["seconds"] = 0.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            iv, wall, compile_s, compiles = timed(
                functools.partial(fk.intervals, problem, res, chosen, engine=engine)
            )
        calls.append(
            {
                "seed": seed,
                "wall_s": wall,
                "jax_compile_s": compile_s,
                "xla_compiles": compiles,
                "search_s": search["seconds"],
                "gradients_per_ray": search.get("evaluations"),
                "solve_valid": bool(res.valid),
                "names": list(iv.names),
                "value": np.asarray(iv.value).tolist(),
                "lower": np.asarray(iv.flat_lower).tolist(),
                "upper": np.asarray(iv.flat_upper).tolist(),
                "valid": bool(iv.valid),
                "lower_valid": np.asarray(iv.lower_valid).tolist(),
                "upper_valid": np.asarray(iv.upper_valid).tolist(),
                "at_bound": (np.asarray(iv.lower_at_bound) | np.asarray(iv.upper_at_bound)).tolist(),
                "new_minimum": iv.new_minimum is not None,
                "messages": list(iv.messages),
                "warnings": _warnings(caught),
            }
        )
    return {"engine": engine, "paths": paths, "calls": calls}


def minos_call(problem, res, seed: int, functions: dict) -> dict:
    """One iminuit `migrad()` + `minos()` from fitkit's optimum `res`, on the jitted `functions`."""
    import numpy as np
    from iminuit import Minuit

    import fitkit as fk

    x0 = np.asarray(fk.tree.ravel(res.params)[0])
    names = list(problem.parametrisation(res.params).names)
    nll_j, grad_j = functions["nll"], functions["grad"]
    _, jit_s, _, _ = timed(lambda: (float(nll_j(x0, problem)), np.asarray(grad_j(x0, problem))))

    def fcn(x):
        return float(nll_j(x, problem))

    def grad(x):
        return np.asarray(grad_j(x, problem))

    m = Minuit(fcn, x0, grad=grad, name=names)
    m.errordef = Minuit.LIKELIHOOD
    t0 = time.perf_counter()
    m.migrad()
    t1 = time.perf_counter()
    migrad_fcn, migrad_grad = m.nfcn, m.ngrad
    m.minos()
    t2 = time.perf_counter()
    merrors = [m.merrors[n] for n in names]
    return {
        "seed": seed,
        "jit_first_eval_s": jit_s,
        "migrad_s": t1 - t0,
        "minos_s": t2 - t1,
        "migrad_nfcn": migrad_fcn,
        "migrad_ngrad": migrad_grad,
        "minos_nfcn": m.nfcn - migrad_fcn,
        "minos_ngrad": m.ngrad - migrad_grad,
        "migrad_valid": bool(m.valid),
        "edm": float(m.fmin.edm),
        "names": names,
        "value": [float(m.values[n]) for n in names],
        "hesse_error": [float(m.errors[n]) for n in names],
        "lower": [float(m.values[n] + e.lower) for n, e in zip(names, merrors)],
        "upper": [float(m.values[n] + e.upper) for n, e in zip(names, merrors)],
        "minos_valid": [bool(e.is_valid) for e in merrors],
        "fitkit_value": x0.tolist(),
    }


def worker_iminuit(problem_name: str, cfg: dict) -> dict:
    """iminuit migrad + minos on fitkit's jitted nll and gradient, from fitkit's optimum."""
    jax = _jax()
    import equinox as eqx
    import iminuit

    import fitkit as fk

    problem, res = build(problem_name, 0, cfg["npix"])
    x0, unravel = fk.tree.ravel(res.params)

    def nll(u, prob):  # the problem is an argument: new data (same shapes) reuse the compiled code
        return prob.nll(unravel(u))

    functions = {
        "nll": eqx.filter_jit(nll),
        "grad": eqx.filter_jit(jax.grad(nll)),
        "hessian": eqx.filter_jit(jax.hessian(nll)),
    }
    calls = [minos_call(problem, res, 0, functions)]
    calls.append(minos_call(*build(problem_name, 1, cfg["npix"]), 1, functions))
    # Per-evaluation costs, compiled (the currency of each method's search).
    costs = {}
    for name, fn in functions.items():
        jax.block_until_ready(fn(x0, problem))
        reps = []
        for _ in range(3 if name == "hessian" else 10):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x0, problem))
            reps.append(time.perf_counter() - t0)
        costs[name] = min(reps)
    return {"iminuit": iminuit.__version__, "calls": calls, "eval_s": costs}


def worker_loop(problem_name: str, cfg: dict) -> dict:
    """A naive MINOS: brentq on the profile, each point an fk.solve with the param fixed."""
    _jax()
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np
    import scipy
    import scipy.optimize

    import fitkit as fk

    problem, res = build(problem_name, 0, cfg["npix"])
    names = list(problem.parametrisation(res.params).names)
    x_hat, unravel = fk.tree.ravel(res.params)
    x_hat = np.asarray(x_hat)
    sigma = np.asarray(fk.tree.ravel(fk.covariance(problem, res.params).std)[0])
    nll = eqx.filter_jit(problem.nll)  # what a careful user would write: one compiled nll
    nll_min = float(nll(res.params))
    budget = cfg["loop_budget"]
    sides = []
    t_start = time.perf_counter()
    compile_before = _compile["seconds"]
    for i, name in enumerate(names):
        for side in (-1.0, 1.0):
            if time.perf_counter() - t_start > budget:
                break
            state = {"x": x_hat.copy(), "solves": 0, "valid": True}

            def rise(x, i=i, name=name, state=state):
                flat = state["x"].copy()
                flat[i] = x
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = fk.solve(problem, unravel(jnp.asarray(flat)), fixed=[name], warn=False)
                state["x"] = np.asarray(fk.tree.ravel(r.params)[0])
                state["solves"] += 1
                state["valid"] &= bool(r.valid)
                return float(nll(r.params)) - nll_min - 0.5

            t0 = time.perf_counter()
            a, b = x_hat[i], x_hat[i] + side * 1.5 * sigma[i]
            while rise(b) < 0:  # widen the bracket until the profile has risen by 0.5
                a, b = b, x_hat[i] + 2.0 * (b - x_hat[i])
            state["x"] = x_hat.copy()  # brentq starts at a; warm start from the optimum
            limit = scipy.optimize.brentq(rise, a, b, xtol=1e-4 * sigma[i])
            sides.append(
                {
                    "name": name,
                    "side": "lower" if side < 0 else "upper",
                    "limit": float(limit),
                    "solves": state["solves"],
                    "all_solves_valid": state["valid"],
                    "seconds": time.perf_counter() - t0,
                }
            )
    total = time.perf_counter() - t_start
    done = len(sides)
    return {
        "names": names,
        "sides": sides,
        "sides_done": done,
        "sides_total": 2 * len(names),
        "total_s": total,
        "jax_compile_s": _compile["seconds"] - compile_before,
        "solves": sum(s["solves"] for s in sides),
        "estimated_all_s": total * 2 * len(names) / done if done else None,
        "scipy": scipy.__version__,
    }


def run_worker(case: str, cfg: dict) -> None:
    kind, problem, *rest = case.split(":")
    if kind == "fitkit":
        out = worker_fitkit(problem, rest[0], rest[1], cfg)
    elif kind == "iminuit":
        out = worker_iminuit(problem, cfg)
    elif kind == "loop":
        out = worker_loop(problem, cfg)
    else:
        raise SystemExit(f"unknown worker case {case!r}")
    print(MARKER + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- the parent


def spawn(case: str, args, cache_dir: str | None = None, first_only: bool = False) -> dict:
    """Run one worker in a fresh interpreter; its JSON plus `process_s`, or `error` with the stderr tail."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["FITKIT_COMPILE_CACHE"] = cache_dir or "off"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # see solvers.py: BLAS threads fight XLA's
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", case]
    cmd += ["--npix", str(args.npix), "--loop-budget", str(args.loop_budget)]
    cmd += ["--first-only"] if first_only else []
    label = f"{case}{' (warm persistent cache)' if cache_dir else ''}"
    print(f"  {label} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(" timed out", flush=True)
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    process_s = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        print(f" FAILED (rc {proc.returncode})", flush=True)
        return {
            "error": f"rc {proc.returncode}",
            "stderr": proc.stderr[-6000:],
            "stdout": proc.stdout[-2000:],
        }
    out = json.loads(lines[-1][len(MARKER) :])
    out["process_s"] = process_s
    print(f" {process_s:.1f} s", flush=True)
    return out


def have(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], capture_output=True, text=True, cwd=RESULTS.parent
            ).stdout.strip()
        except OSError:
            return None

    dirty = git("status", "--porcelain", "--", "fitkit")
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": have("jax"),
        "jaxlib": have("jaxlib"),
        "fitkit": have("fitkit"),
        "iminuit": have("iminuit"),
        "scipy": have("scipy"),
        "backend": "cpu (no GPU)",
        "dtype": "float64",
        "git_commit": git("rev-parse", "HEAD"),
        "fitkit_tree_uncommitted_changes": None if dirty is None else len(dirty.splitlines()),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def agreement(names, lower, upper, ref: dict) -> float | None:
    """Max |limit - iminuit's| / HESSE sigma over the names both have, both sides."""
    index = {n: k for k, n in enumerate(ref["names"])}
    worst = None
    for n, lo, hi in zip(names, lower, upper):
        k = index[n]
        for mine, theirs in ((lo, ref["lower"][k]), (hi, ref["upper"][k])):
            d = abs(mine - theirs) / ref["hesse_error"][k] if mine == mine else float("inf")  # NaN: failed
            worst = d if worst is None else max(worst, d)
    return worst


def fmt(x, spec=".3g", unit="") -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return f"{x:{spec}}{unit}"


def build_rows(report: dict) -> list[dict]:
    rows = []
    for problem, res in report["problems"].items():
        im = res["iminuit"]
        if "error" in im:
            rows.append({"problem": problem, "method": "iminuit MINOS", "error": im["error"]})
            continue
        ref = {c["seed"]: c for c in im["calls"]}
        minos = [ref[0]["minos_s"], ref[1]["minos_s"]]
        n = len(ref[0]["names"])
        rows.append(
            {
                "problem": problem,
                "method": "iminuit `minos()` (after `migrad()`)",
                "steps": "—",
                "profiled": f"{n}/{n}",
                "first_s": minos[0],
                "compile_s": None,
                "second_s": minos[1],
                "ratio_first": 1.0,
                "ratio_second": 1.0,
                "agreement": 0.0,
                "valid": all(ref[0]["minos_valid"]) and all(ref[1]["minos_valid"]),
                "note": (
                    f"migrad {ref[0]['migrad_s']:.3g} s / {ref[1]['migrad_s']:.3g} s; JIT of nll+grad "
                    f"{ref[0]['jit_first_eval_s']:.3g} s; minos nfcn {ref[0]['minos_nfcn']}, "
                    f"ngrad {ref[0]['minos_ngrad']}"
                ),
            }
        )
        for key, fit in res["fitkit"].items():
            if "error" in fit:
                rows.append({"problem": problem, "method": f"fk.intervals {key}", "error": fit["error"]})
                continue
            calls = fit["calls"]
            first = calls[0]
            second = calls[1] if len(calls) > 1 else None
            k = len(first["names"])
            estimated = k < n
            first_s = first["wall_s"]
            second_s = second["wall_s"] if second else None
            note = f"search {first['search_s']:.3g} s of the first"
            if second:
                note += f", {second['search_s']:.3g} s of the second"
            note += f"; gradients per ray {min(first['gradients_per_ray'])}-{max(first['gradients_per_ray'])}"
            if estimated and second:
                scale = n / k
                first_s = first["wall_s"] + (scale - 1) * second["wall_s"]
                second_s = scale * second["wall_s"]
                note = (
                    f"estimated for {n} params from {k}: measured {first['wall_s']:.3g} s "
                    f"and {second['wall_s']:.3g} s; " + note
                )
            agree = [agreement(c["names"], c["lower"], c["upper"], ref[c["seed"]]) for c in calls]
            label = "fk.intervals" + (
                ", fresh process, warm persistent cache" if key.endswith("cached") else ", fresh process"
            )
            rows.append(
                {
                    "problem": problem,
                    "method": label,
                    "steps": fit["engine"],
                    "profiled": f"{k}/{n}",
                    "first_s": first_s,
                    "compile_s": first["jax_compile_s"],
                    "second_s": second_s,
                    "ratio_first": minos[0] / first_s,
                    "ratio_second": minos[1] / second_s if second_s else None,
                    "agreement": max(agree),
                    "valid": all(c["valid"] for c in calls),
                    "estimated": estimated,
                    "note": note,
                }
            )
        loop = res.get("loop")
        if loop and "error" not in loop:
            done = {(s["name"], s["side"]): s["limit"] for s in loop["sides"]}
            names = [nm for nm in loop["names"] if (nm, "lower") in done and (nm, "upper") in done]
            agree = agreement(
                names, [done[(nm, "lower")] for nm in names], [done[(nm, "upper")] for nm in names], ref[0]
            )
            full = loop["sides_done"] == loop["sides_total"]
            rows.append(
                {
                    "problem": problem,
                    "method": "loop: brentq over fk.solve(fixed=[name])",
                    "steps": "—",
                    "profiled": f"{loop['sides_done']}/{loop['sides_total']} sides",
                    "first_s": loop["total_s"] if full else loop["estimated_all_s"],
                    "compile_s": loop["jax_compile_s"],
                    "second_s": None,
                    "ratio_first": minos[0] / (loop["total_s"] if full else loop["estimated_all_s"]),
                    "ratio_second": None,
                    "agreement": agree,
                    "valid": all(s["all_solves_valid"] for s in loop["sides"]),
                    "estimated": not full,
                    "note": (
                        f"{loop['solves']} solves"
                        + (
                            ""
                            if full
                            else f"; measured {loop['total_s']:.3g} s for {loop['sides_done']} sides"
                        )
                    ),
                }
            )
    return rows


def table(report: dict) -> str:
    lines = [
        "| problem | method | engine | profiled | first call (s) | JAX compile in first (s) | "
        "second call, new data (s) | iminuit minos / first | iminuit minos / second | "
        "max abs(limit - iminuit's) / sigma | valid | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['problem']} | {r['method']} | FAILED: {r['error']} |||||||||")
            continue
        est = "~" if r.get("estimated") else ""
        lines.append(
            f"| {r['problem']} | {r['method']} | {r['steps']} | {r['profiled']} | {est}{fmt(r['first_s'])} | "
            f"{fmt(r['compile_s'])} | {est if r['second_s'] else ''}{fmt(r['second_s'])} | "
            f"{fmt(r['ratio_first'])} | {fmt(r['ratio_second'])} | {fmt(r['agreement'], '.2g')} | "
            f"{r['valid']} | {r['note']} |"
        )
    return "\n".join(lines)


def ratios(report: dict) -> str:
    """iminuit / fitkit and loop / fitkit for each fk.intervals configuration, and the goal."""
    lines = [
        "| problem | fk.intervals engine | first call (s) | iminuit minos / fitkit first | "
        f"goal >= {GOAL:g}x met | iminuit minos / fitkit second | loop / fitkit first | loop / fitkit second |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for problem in report["problems"]:
        rows = [r for r in report["rows"] if r["problem"] == problem and "error" not in r]
        loop = next((r for r in rows if r["method"].startswith("loop")), None)
        for r in rows:
            if not r["method"].startswith("fk.intervals") or "cache" in r["method"]:
                continue
            est = "~" if r.get("estimated") else ""
            loop_first = loop["first_s"] / r["first_s"] if loop else None
            loop_second = loop["first_s"] / r["second_s"] if loop and r["second_s"] else None
            lines.append(
                f"| {problem} | {r['steps']} | {est}{fmt(r['first_s'])} | {fmt(r['ratio_first'])} | "
                f"{'yes' if r['ratio_first'] >= GOAL else 'no'} | {fmt(r['ratio_second'])} | "
                f"{fmt(loop_first)} | {fmt(loop_second)} |"
            )
    return "\n".join(lines)


def main(args) -> dict:
    t0 = time.perf_counter()
    report: dict = {
        "benchmark": "intervals",
        "machine": machine_info(),
        "settings": {
            "npix": args.npix,
            "loop_budget_s": args.loop_budget,
            "engines": ENGINES,
            "cl": "1 sigma (delta nll 0.5)",
        },
        "problems": {},
    }
    for problem in args.problems.split(","):
        print(f"{problem}:", flush=True)
        res: dict = {"iminuit": spawn(f"iminuit:{problem}", args), "fitkit": {}}
        for engine in ENGINES:
            res["fitkit"][engine] = spawn(f"fitkit:{problem}:{engine}:all", args)
        # A fresh process sharing a persistent cache an earlier one filled (fitkit's default on disk).
        cache_dir = tempfile.mkdtemp(prefix="fitkit-intervals-cache-")
        try:
            spawn(f"fitkit:{problem}:host:all", args, cache_dir, first_only=True)
            res["fitkit"]["host cached"] = spawn(
                f"fitkit:{problem}:host:all", args, cache_dir, first_only=True
            )
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        res["loop"] = spawn(f"loop:{problem}", args)
        report["problems"][problem] = res
    report["rows"] = build_rows(report)
    report["total_s"] = time.perf_counter() - t0
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    text, summary = table(report), ratios(report)
    print()
    print(text)
    print()
    print(summary)
    print(f"\ntotal {report['total_s']:.0f} s")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1, default=float) + "\n")
        print(f"wrote {RESULTS}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npix", type=int, default=64, help="pupil pixels of the optics problem")
    parser.add_argument("--loop-budget", type=float, default=300.0, help="seconds for the fk.solve loop")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated: optics,gaussians")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--first-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(
            args.worker, {"npix": args.npix, "loop_budget": args.loop_budget, "first_only": args.first_only}
        )
    else:
        main(args)
