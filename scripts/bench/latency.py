"""Benchmark: the latency a notebook user feels, first calls and warm calls, each in a fresh process.

Compilation caches live in the process, so every "first call" is measured in a
fresh Python subprocess: this script re-runs itself with a hidden
`--worker <case>` argument, the worker times its calls with
`time.perf_counter()` (results passed through `jax.block_until_ready`) and
prints one JSON line. Jax, numpy and fitkit are imported only inside functions,
so that a worker times its own imports; each worker turns x64 on
(`jax.config.update("jax_enable_x64", True)`) straight after `import jax`,
before importing fitkit. Measured:

1. `import jax` against `import fitkit`, each in a fresh process (median of 3),
   and whether matplotlib, chainconsumer, pandas and arviz are loaded by
   `import fitkit`.
2. Two problems, the tutorial's sum of Gaussians
   (`fk.examples.gaussians.make_problem()`) and a 3-parameter quadratic
   (50 points, `y = a + b x + c x^2`, Gaussian errors 0.5), and four engines:
   `fk.fit` (1000 steps: the tutorial's SGD optimisers on the Gaussians,
   `optax.adam(1e-2)` on the quadratic), `fk.solve` (default method),
   `fk.covariance` (at the solve's params) and `fk.sample` (2 chains x 1000
   draws, 200 warm-up). One process per problem and engine: the first call;
   the second, on new data (a new noise draw, same shapes: the problem is
   rebuilt) from a perturbed start; and a third, identical to the second, the
   compiled run time. Goal: second <= 1.2 x third + 0.02 s.
3. `fk.fit`'s second call (1000 steps on the Gaussians) against the tutorial's
   own loop: `jax.jit(jax.value_and_grad(loss))`, then an eager
   `optimiser.update` and `optax.apply_updates` per step, timed after a
   warm-up run and after the jitted gradient is compiled. Goal: >= 20x.
4. The whole small analysis of the quadratic (`fk.solve` + `fk.covariance` +
   `fk.sample`) in a fresh process, end to end including the imports, against
   emcee (32 walkers x 5000 steps, numpy log-likelihood, flat priors, started
   in a small ball around the least-squares solution) and lmfit
   (`lmfit.minimize`, leastsq, with its stderr), also end to end with their
   imports. emcee needs `pip install emcee`; a missing emcee or lmfit skips
   its row with a note.
5. The analysis of (4) in two fresh processes sharing one JAX persistent
   compilation cache (a fresh temporary directory, set with
   `jax_compilation_cache_dir`, min compile time 0, min entry size -1, and
   `FITKIT_COMPILE_CACHE=<dir>`). Goal: first / second >= 3x. Every other
   worker runs with `FITKIT_COMPILE_CACHE=off` and no JAX cache directory.

Usage: python scripts/bench/latency.py [--quick] [--skip-reference] [--no-save]
  --quick: fit 200 steps, sample 100 warm-up + 100 draws, emcee 32 x 500 (a smoke test)
  --skip-reference: leave out the tutorial loop, emcee and lmfit
Writes scripts/bench/results/latency.json and prints a markdown table.
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
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

T_START = time.perf_counter()  # a worker's end-to-end clock starts here, before any import

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "latency.json"
MARKER = "@@latency-result "
HEAVY = ("matplotlib", "chainconsumer", "pandas", "arviz")
PROBLEMS = ("gaussians", "line")
ENGINES = ("fit", "solve", "covariance", "sample")
LINE_TRUTH = {"a": 1.0, "b": 2.0, "c": -0.5}
LINE_SIGMA = 0.5
LINE_POINTS = 50
WORKER_TIMEOUT_S = 900
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile = {"seconds": 0.0, "count": 0}  # JAX tracing + lowering + compiling in this worker (jax.monitoring)
_calls: list[dict] = []  # per timed call: the compile seconds and XLA compilations inside it


def settings(quick: bool) -> dict:
    return {
        "fit_steps": 200 if quick else 1000,
        "num_warmup": 100 if quick else 200,
        "num_samples": 100 if quick else 1000,
        "num_chains": 2,
        "emcee_walkers": 32,
        "emcee_steps": 500 if quick else 5000,
        "import_repeats": 3,
    }


# ----------------------------------------------------------------------------- helpers in workers


def _jax(cache_dir: str | None = None):
    """Import jax with x64 on (and the persistent cache set when asked), before fitkit."""
    import jax

    jax.config.update("jax_enable_x64", True)

    def on_duration(event: str, seconds: float, **_) -> None:
        if event in COMPILE_EVENTS:
            _compile["seconds"] += seconds
            _compile["count"] += event == COMPILE_EVENTS[-1]

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return jax


def line_data(seed: int):
    """The quadratic's data, numpy only (shared by the fitkit, emcee and lmfit workers)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.linspace(-2.0, 2.0, LINE_POINTS)
    a, b, c = LINE_TRUTH.values()
    y = a + b * x + c * x**2 + LINE_SIGMA * rng.normal(size=x.shape)
    return x, y, np.full(x.shape, LINE_SIGMA)


@functools.cache
def _line_classes():
    """The quadratic's fk.Module and fk.Observation, defined once per process (same pytree types)."""
    import jax

    import fitkit as fk

    class Quadratic(fk.Module):
        x: jax.Array

        def __call__(self, params):
            return params["a"] + params["b"] * self.x + params["c"] * self.x**2

    class Points(fk.Observation):
        def predict(self, params, model):
            return model(params)

    return Quadratic, Points


def line_problem(seed: int):
    import jax.numpy as jnp

    import fitkit as fk

    Quadratic, Points = _line_classes()
    x, y, err = line_data(seed)
    return fk.Problem(Quadratic(x=jnp.asarray(x)), Points(data=jnp.asarray(y), error=jnp.asarray(err)))


def make_case(problem_name: str, which: str):
    """`(problem, start)`: which="first" is the tutorial's data and start; "second" new data, perturbed start."""
    import jax.numpy as jnp
    import numpy as np

    import fitkit as fk

    rng = np.random.default_rng(123)
    if problem_name == "gaussians":
        if which == "first":
            problem, _, start = fk.examples.gaussians.make_problem()
            return problem, start
        problem, _, start = fk.examples.gaussians.make_problem(seed=1)
        return problem, {k: v + 0.05 * jnp.asarray(rng.normal(size=v.shape)) for k, v in start.items()}
    if which == "first":
        return line_problem(0), {k: jnp.asarray(0.0) for k in LINE_TRUTH}
    return line_problem(1), {k: jnp.asarray(float(v)) for k, v in zip(LINE_TRUTH, rng.normal(0.0, 0.3, 3))}


def tutorial_optimisers():
    import optax

    import fitkit as fk

    return {
        ("mean", "std"): optax.sgd(0.002, momentum=0.5),
        "power": optax.sgd(fk.delay(0.005, 50), momentum=0.5),
    }


def optimisers_for(problem_name: str):
    import optax

    return tutorial_optimisers() if problem_name == "gaussians" else optax.adam(1e-2)


def ready(out):
    """Block on the arrays of a FitResult, Covariance or Posterior (or anything else)."""
    import jax

    for attr in ("params", "matrix", "samples"):
        if hasattr(out, attr):
            jax.block_until_ready(getattr(out, attr))
            return out
    return jax.block_until_ready(out)


def timed(fn):
    """`(fn(), seconds)`; the JAX compile time and XLA compilations inside go to `_calls`."""
    before = dict(_compile)
    t0 = time.perf_counter()
    out = ready(fn())
    seconds = time.perf_counter() - t0
    _calls.append({k: _compile[k] - before[k] for k in before})
    return out, seconds


def _floats(tree) -> dict:
    import numpy as np

    return {k: np.asarray(v).tolist() for k, v in tree.items()}


# ----------------------------------------------------------------------------- workers


def worker_import(module: str, _cfg: dict) -> dict:
    t0 = time.perf_counter()
    mod = __import__(module)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "heavy_loaded": {name: name in sys.modules for name in HEAVY}}
    if module == "fitkit":
        out["fitkit_version"] = getattr(mod, "__version__", "?")
    return out


def worker_engine(problem_name: str, engine: str, cfg: dict) -> dict:
    _jax()
    import fitkit as fk

    def call(problem, start):
        if engine == "fit":
            return fk.fit(
                problem, start, optimisers_for(problem_name), steps=cfg["fit_steps"], progress=False
            )
        return fk.solve(problem, start, warn=False)

    def timed_call(problem, start):
        if engine in ("covariance", "sample"):  # time only the engine, not the solve before it
            params = ready(fk.solve(problem, start, warn=False)).params
            if engine == "covariance":
                return timed(lambda: fk.covariance(problem, params))
            return timed(
                lambda: fk.sample(
                    problem,
                    params,
                    num_warmup=cfg["num_warmup"],
                    num_samples=cfg["num_samples"],
                    num_chains=cfg["num_chains"],
                    progress=False,
                )
            )
        return timed(lambda: call(problem, start))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem1, start1 = make_case(problem_name, "first")
        out1, first = timed_call(problem1, start1)
        problem2, start2 = make_case(problem_name, "second")
        out2, second = timed_call(problem2, start2)
        out3, third = timed_call(problem2, start2)
    result = {"first": first, "second": second, "third": third}
    result["jax_compile_s"] = [c["seconds"] for c in _calls]  # trace + lower + compile, per call
    result["xla_compiles"] = [c["count"] for c in _calls]
    if engine in ("fit", "solve"):
        result["reported"] = [
            {"wall_time": float(o.wall_time), "compile_time": float(o.compile_time), "steps": int(o.steps)}
            for o in (out1, out2, out3)
        ]
        result["chi2r"] = [
            float(p.chi2r(o.params)) for p, o in ((problem1, out1), (problem2, out2), (problem2, out3))
        ]
    result["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
    return result


def worker_loop(_problem: str, _engine: str, cfg: dict) -> dict:
    """The tutorial's loop: jitted value_and_grad, eager optax update and apply_updates per step."""
    jax = _jax()
    import optax

    from fitkit.fitting import map_optimisers  # `fk.fitting` is not an attribute of the lazy `fitkit`

    steps = cfg["fit_steps"]

    def run(problem, start):
        loss_and_grad = jax.jit(jax.value_and_grad(problem.loss))
        optimiser, _ = map_optimisers(start, tutorial_optimisers())
        params, state = start, optimiser.init(start)
        t0 = time.perf_counter()
        jax.block_until_ready(loss_and_grad(params))  # compile, as the tutorial does before timing
        compiled = time.perf_counter()
        for _ in range(steps):
            loss, grads = loss_and_grad(params)
            updates, state = optimiser.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        jax.block_until_ready(params)
        end = time.perf_counter()
        return params, compiled - t0, end - compiled, float(problem.chi2r(params))

    _, compile1, loop1, chi1 = run(*make_case("gaussians", "first"))  # warm-up: eager op caches
    _, compile2, loop2, chi2 = run(*make_case("gaussians", "second"))
    return {
        "first_compile": compile1,
        "first_loop": loop1,
        "second_compile": compile2,
        "second_loop": loop2,
        "chi2r": [chi1, chi2],
    }


def worker_analysis_fitkit(_problem: str, _engine: str, cfg: dict, cache_dir: str | None = None) -> dict:
    _jax(cache_dir)
    import jax.numpy as jnp

    import fitkit as fk

    t_import = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = line_problem(0)
        res = ready(fk.solve(problem, {k: jnp.asarray(0.0) for k in LINE_TRUTH}, warn=False))
        t_solve = time.perf_counter()
        cov = ready(fk.covariance(problem, res.params))
        t_cov = time.perf_counter()
        post = ready(
            fk.sample(
                problem,
                res.params,
                num_warmup=cfg["num_warmup"],
                num_samples=cfg["num_samples"],
                num_chains=cfg["num_chains"],
                progress=False,
            )
        )
    end = time.perf_counter()
    import numpy as np

    draws = {k: np.asarray(v).reshape(-1) for k, v in post.samples.items()}
    return {
        "seconds": end - T_START,
        "imports": t_import - T_START,
        "solve": t_solve - t_import,
        "covariance": t_cov - t_solve,
        "sample": end - t_cov,
        "jax_compile_s": _compile["seconds"],
        "xla_compiles": _compile["count"],
        "params": _floats(res.params),
        "std": _floats(cov.std),
        "posterior_mean": {k: float(v.mean()) for k, v in draws.items()},
        "posterior_std": {k: float(v.std()) for k, v in draws.items()},
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught}),
    }


def worker_analysis_emcee(_problem: str, _engine: str, cfg: dict) -> dict:
    import emcee
    import numpy as np

    t_import = time.perf_counter()
    x, y, err = line_data(0)
    design = np.stack([np.ones_like(x), x, x**2], axis=1)
    start = np.linalg.lstsq(design / err[:, None], y / err, rcond=None)[0]

    def log_prob(theta):  # flat priors
        a, b, c = theta
        return -0.5 * np.sum(((y - (a + b * x + c * x**2)) / err) ** 2)

    rng = np.random.default_rng(0)
    walkers = cfg["emcee_walkers"]
    p0 = start + 1e-4 * rng.normal(size=(walkers, 3))
    sampler = emcee.EnsembleSampler(walkers, 3, log_prob)
    sampler.run_mcmc(p0, cfg["emcee_steps"], progress=False)
    end = time.perf_counter()
    chain = sampler.get_chain(discard=cfg["emcee_steps"] // 5, flat=True)
    tau = sampler.get_autocorr_time(quiet=True, discard=cfg["emcee_steps"] // 5)
    return {
        "seconds": end - T_START,
        "imports": t_import - T_START,
        "emcee_version": emcee.__version__,
        "posterior_mean": dict(zip(LINE_TRUTH, chain.mean(0).tolist())),
        "posterior_std": dict(zip(LINE_TRUTH, chain.std(0).tolist())),
        "autocorr_time": tau.tolist(),
    }


def worker_analysis_lmfit(_problem: str, _engine: str, _cfg: dict) -> dict:
    import lmfit
    import numpy as np

    t_import = time.perf_counter()
    x, y, err = line_data(0)
    params = lmfit.Parameters()
    for name in LINE_TRUTH:
        params.add(name, value=0.0)

    def residual(p):
        return (y - (p["a"] + p["b"] * x + p["c"] * x**2)) / err

    out = lmfit.minimize(residual, params, method="leastsq")
    stderr = {k: out.params[k].stderr for k in LINE_TRUTH}
    end = time.perf_counter()
    return {
        "seconds": end - T_START,
        "imports": t_import - T_START,
        "lmfit_version": lmfit.__version__,
        "params": {k: float(out.params[k].value) for k in LINE_TRUTH},
        "std": {k: None if v is None else float(v) for k, v in stderr.items()},
        "nfev": int(out.nfev),
        "numpy": np.__version__,
    }


def run_worker(case: str, cfg: dict, cache_dir: str | None) -> None:
    kind, _, rest = case.partition(":")
    problem, _, engine = rest.partition(":")
    if kind == "import":
        out = worker_import(problem, cfg)
    elif kind == "engine":
        out = worker_engine(problem, engine, cfg)
    elif kind == "loop":
        out = worker_loop(problem, engine, cfg)
    elif kind == "analysis" and problem == "fitkit":
        out = worker_analysis_fitkit(problem, engine, cfg, cache_dir)
    elif kind == "analysis" and problem == "emcee":
        out = worker_analysis_emcee(problem, engine, cfg)
    elif kind == "analysis" and problem == "lmfit":
        out = worker_analysis_lmfit(problem, engine, cfg)
    else:
        raise SystemExit(f"unknown worker case {case!r}")
    print(MARKER + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- the parent


def spawn(case: str, args, cache_dir: str | None = None) -> dict:
    """Run one worker in a fresh interpreter; its JSON, plus `process_s`, or `error` with the stderr tail."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["FITKIT_COMPILE_CACHE"] = cache_dir or "off"
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", case]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--cache-dir", cache_dir] if cache_dir else []
    print(f"  {case}{' (shared cache)' if cache_dir else ''} ...", end="", flush=True)
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


def machine_info(fitkit_version: str | None) -> dict:
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
        "fitkit": fitkit_version,
        "optax": have("optax"),
        "numpyro": have("numpyro"),
        "emcee": have("emcee"),
        "lmfit": have("lmfit"),
        "backend": "cpu (no GPU)",
        "dtype": "float64",
        "git_commit": git("rev-parse", "HEAD"),
        "fitkit_tree_uncommitted_changes": None if dirty is None else len(dirty.splitlines()),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def fmt(x, unit="") -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return f"{x:.3g}{unit}"


def build_rows(report: dict) -> list[dict]:
    rows = []

    def add(measurement, fitkit, reference, ratio, goal, met):
        rows.append(
            {"measurement": measurement, "fitkit_s": fitkit, "reference_s": reference, "ratio": ratio,
             "goal": goal, "met": met}
        )  # fmt: skip

    imp = report["imports"]
    if imp.get("fitkit") is not None and imp.get("jax") is not None:
        heavy = [k for k, v in imp["heavy_loaded"].items() if v]
        add("`import fitkit` vs `import jax` (median of 3 processes)", imp["fitkit"], imp["jax"],
            imp["fitkit"] / imp["jax"], "—", None)  # fmt: skip
        add("heavy modules loaded by `import fitkit`: " + (", ".join(heavy) or "none"), None, None, None,
            "none", not heavy)  # fmt: skip
    else:
        add("imports: FAILED (see JSON)", None, None, None, "—", False)

    for name, res in report["engines"].items():
        if "error" in res:
            add(f"{name}: FAILED (see JSON)", None, None, None, "—", False)
            continue
        add(f"{name}: 1st call (ref: 3rd = compiled run)", res["first"], res["third"],
            res["first"] / res["third"], "—", None)  # fmt: skip
        add(f"{name}: 2nd call, new data + start (ref: 3rd)", res["second"], res["third"],
            res["second"] / res["third"], "2nd ≤ 1.2 × 3rd + 0.02 s", res["goal_met"])  # fmt: skip

    loop = report.get("tutorial_loop")
    fit = report["engines"].get("gaussians / fit", {})
    if loop is None:
        add("fk.fit 2nd call vs tutorial loop: skipped (--skip-reference)", None, None, None, "≥ 20x", None)
    elif "error" in loop or "error" in fit:
        add("fk.fit 2nd call vs tutorial loop: FAILED (see JSON)", None, None, None, "≥ 20x", False)
    else:
        speedup = loop["second_loop"] / fit["second"]
        add(f"gaussians: fk.fit 2nd call vs tutorial loop, {report['settings']['fit_steps']} steps (ratio = speed-up)",
            fit["second"], loop["second_loop"], speedup, "≥ 20x", speedup >= 20)  # fmt: skip

    ana = report["analysis"]
    fk_s = ana["fitkit"].get("seconds")
    for ref in ("emcee", "lmfit"):
        res = ana.get(ref)
        what = "emcee 32 walkers" if ref == "emcee" else "lmfit leastsq + stderr"
        if res is None or "skipped" in res:
            note = "skipped" if res is None else res["skipped"]
            add(f"line analysis end to end vs {what}: {note}", fk_s, None, None, "—", None)
        elif "error" in res or fk_s is None:
            add(
                f"line analysis end to end vs {what}: FAILED (see JSON)",
                fk_s,
                res.get("seconds"),
                None,
                "—",
                False,
            )
        else:
            add(f"line analysis (solve + covariance + sample) end to end vs {what} (ratio = ref / fitkit)",
                fk_s, res["seconds"], res["seconds"] / fk_s, "—", None)  # fmt: skip
    if fk_s is None:
        add("line analysis end to end: FAILED (see JSON)", None, None, None, "—", False)

    cache = report["persistent_cache"]
    first, second = cache["first"].get("seconds"), cache["second"].get("seconds")
    if first is None or second is None:
        add("persistent cache: FAILED (see JSON)", second, first, None, "≥ 3x", False)
    else:
        add("line analysis, 2nd process vs 1st, shared persistent cache (ratio = 1st / 2nd)", second, first,
            first / second, "≥ 3x", first / second >= 3)  # fmt: skip
    return rows


def table(report: dict) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"fit {s['fit_steps']} steps, sample {s['num_chains']} chains x {s['num_samples']} draws "
        f"({s['num_warmup']} warm-up), emcee {s['emcee_walkers']} x {s['emcee_steps']}; "
        f"{m['processor']}, {m['cpu_count']} cores, no GPU; jax {m['jax']}, fitkit {m['fitkit']}, float64",
        "",
        "| measurement | fitkit (s) | reference (s) | ratio | goal | met? |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['measurement']} | {fmt(r['fitkit_s'])} | {fmt(r['reference_s'])} | "
            f"{fmt(r['ratio'], 'x')} | {r['goal']} | {met} |"
        )
    return "\n".join(lines)


def main(args) -> dict:
    cfg = settings(args.quick)
    t0 = time.perf_counter()
    report: dict = {"benchmark": "latency", "quick": args.quick, "skip_reference": args.skip_reference,
                    "settings": cfg}  # fmt: skip

    print("1. imports", flush=True)
    runs = {m: [spawn(f"import:{m}", args) for _ in range(cfg["import_repeats"])] for m in ("jax", "fitkit")}
    ok = {m: [r for r in rs if "error" not in r] for m, rs in runs.items()}
    report["imports"] = {
        m: statistics.median(r["seconds"] for r in ok[m]) if ok[m] else None for m in ("jax", "fitkit")
    }
    report["imports"]["heavy_loaded"] = ok["fitkit"][0]["heavy_loaded"] if ok["fitkit"] else None
    report["imports"]["runs"] = runs
    fitkit_version = ok["fitkit"][0].get("fitkit_version") if ok["fitkit"] else None
    report["machine"] = machine_info(fitkit_version)

    print("2. engines: first, second (new data and start), third (same as second) call", flush=True)
    report["engines"] = {}
    for problem in PROBLEMS:
        for engine in ENGINES:
            res = spawn(f"engine:{problem}:{engine}", args)
            if "error" not in res:
                res["ratio"] = res["second"] / res["third"]
                res["goal_met"] = res["second"] <= 1.2 * res["third"] + 0.02
            report["engines"][f"{problem} / {engine}"] = res

    print("3. tutorial loop", flush=True)
    report["tutorial_loop"] = None if args.skip_reference else spawn("loop:gaussians", args)

    print("4. small analysis end to end", flush=True)
    analysis = {"fitkit": spawn("analysis:fitkit", args)}
    for ref in ("emcee", "lmfit"):
        if args.skip_reference:
            analysis[ref] = {"skipped": "skipped (--skip-reference)"}
        elif have(ref) is None:
            hint = " (pip install emcee)" if ref == "emcee" else ""
            analysis[ref] = {"skipped": f"skipped: {ref} not installed{hint}"}
        else:
            analysis[ref] = spawn(f"analysis:{ref}", args)
    report["analysis"] = analysis

    print("5. persistent compilation cache", flush=True)
    cache_dir = tempfile.mkdtemp(prefix="fitkit-latency-cache-")
    try:
        first = spawn("analysis:fitkit", args, cache_dir)
        files = [p for p in pathlib.Path(cache_dir).rglob("*") if p.is_file()]
        second = spawn("analysis:fitkit", args, cache_dir)
        report["persistent_cache"] = {
            "first": first,
            "second": second,
            "cache_files_after_first": len(files),
            "cache_bytes_after_first": sum(p.stat().st_size for p in files),
        }
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)

    report["rows"] = build_rows(report)
    report["total_s"] = time.perf_counter() - t0
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    text = table(report)
    print()
    print(text)
    print(f"\ntotal {report['total_s']:.0f} s")
    failures = [name for name, res in _all_runs(report) if "error" in res]
    for name in failures:
        print(f"\nFAILED: {name}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1, default=float) + "\n")
        print(f"wrote {RESULTS}")
    return report


def _all_runs(report: dict):
    for m, rs in report["imports"]["runs"].items():
        for i, r in enumerate(rs):
            yield f"import:{m} #{i}", r
    yield from report["engines"].items()
    if report.get("tutorial_loop"):
        yield "tutorial loop", report["tutorial_loop"]
    yield from ((f"analysis:{k}", v) for k, v in report["analysis"].items())
    yield from ((f"cache:{k}", v) for k, v in report["persistent_cache"].items() if isinstance(v, dict))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and draws, for a smoke test")
    parser.add_argument(
        "--skip-reference", action="store_true", help="leave out the tutorial loop, emcee, lmfit"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, settings(args.quick), args.cache_dir)
    else:
        main(args)
