"""Benchmark: a survey of 10,000 independent fits, `fk.solve` on a batch against fitting in a loop.

Issue 16's survey: throughput in fits/s of 10,000 independent fits of each of
two models, one fixed numpy seed, so every method fits the same data:

- **peak**: a Gaussian peak on a flat background (4 params: amp, mu, width,
  bkg), 100 points on `x = linspace(-5, 5, 100)`; truth amp ~ U(3, 8),
  mu ~ U(-1, 1), width 1.2, bkg 1; Normal noise, sigma 0.3; start amp 4,
  mu 0, width 1, bkg 0.8.
- **psf**: PSF photometry on 16 x 16 pixels (5 params), a circular Gaussian
  PSF `flux exp(-r^2 / 2 sigma^2) / (2 pi sigma^2) + bkg` on
  `grid = arange(16) - 7.5`; truth flux ~ U(2000, 5000), x0, y0 ~ U(-1, 1),
  sigma 1.5, bkg 10; Normal noise with the Poisson variance of the true image
  (error = sqrt(clean image)); start flux 3000, x0 0, y0 0, sigma 2, bkg 8.

The second call of a process fits new data of the same shapes: the same
truths, a new noise draw. Compilation caches live in the process, so every
first call is measured in a fresh Python subprocess: the script re-runs
itself with a hidden `--worker <json spec>` argument and the worker prints
one JSON line. Workers run with `FITKIT_COMPILE_CACHE=off` (and no JAX cache
directory), so the persistent cache does not hide compilation; jax, numpy
and fitkit are imported inside functions; x64 is on. Rows:

1. fitkit batched, 1 device: build the problems, `fk.batch`, `stack_params`
   the starts (timed apart), then `fk.solve(survey, starts)`, the whole call
   timed: the first (compilation included) and a second on new data. Also
   `res.valid.sum()`, `res.compile_time` / `res.wall_time` and the JAX
   trace + lower + compile seconds inside each call (`jax.monitoring`).
2. fitkit batched, 2 devices: the same worker with
   `XLA_FLAGS=--xla_force_host_platform_device_count=2` (fitkit shards the
   batch axis over the local devices); `len(jax.local_devices())` recorded.
   The 2-device worker is killed once it takes 2x the 1-device one + 60 s:
   on a machine with as many cores as fake devices, XLA's CPU collectives and
   jaxlib's batched LAPACK kernels (the QR of Levenberg-Marquardt) wait on
   each other in the one intra-op thread pool, and the run hangs or aborts;
   the row then says so. When a probe subprocess finds
   `jax.default_backend() == "gpu"`, the 1-device worker without the flag is
   the GPU row (all local GPUs) and the CPU rows, the loops included, run
   with `JAX_PLATFORMS=cpu`.
3. fitkit in a Python loop: `fk.solve(problem_i, start_i)` on the first
   `--fitkit-loop` objects (problems built before the clock); the first call
   (compilation) in its own column, the warm fits/s from the rest.
4. scipy `least_squares(method="lm")` in a loop, numpy residuals
   `(model(p) - data) / error` and the default finite-difference Jacobian
   (what a typical user writes), on the first `--scipy-loop` objects.
5. lmfit `minimize` (leastsq) with `lmfit.Parameters` and numpy residuals,
   on the first `--lmfit-loop` objects (skipped with a note if lmfit is missing).
6. fits/s against batch size: fitkit batched on 1 device at `--sizes`, the
   first call (fresh process) and the second (same process, new data),
   plotted on log-log axes with the scipy and lmfit loop throughputs as
   horizontal lines (`docs/images/survey-throughput.png`).

Correctness: over the objects the scipy (and lmfit) loop fitted, the largest
|fitkit batched - reference| / fitkit error per param, over members that both
call valid / successful (errors from `fk.covariance(survey, res).std`).
Goals, compile included: fitkit batched >= 100x the scipy loop and >= 1000x
the lmfit loop.

Usage: python scripts/bench/survey.py [--quick] [--sizes 10,100,1000,10000] [--no-save]
  [--objects N] [--fitkit-loop N] [--scipy-loop N] [--lmfit-loop N]
  --quick: 500 objects, loops of 50, sizes 10,100,500 (a smoke test)
Writes scripts/bench/results/survey.json and docs/images/survey-throughput.png
(neither with --no-save) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import time
import warnings

# scipy's and lmfit's MINPACK calls go through numpy/OpenBLAS, whose worker threads fight XLA's for
# the CPU; one BLAS thread is what a careful scipy user would run with (inherited by the workers).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "scripts" / "bench" / "results" / "survey.json"
FIGURE = ROOT / "docs" / "images" / "survey-throughput.png"
MARKER = "@@survey-result "
WORKER_TIMEOUT_S = 1800
SEED = 16
MODELS = ("peak", "psf")
PARAMS = {"peak": ("amp", "mu", "width", "bkg"), "psf": ("flux", "x0", "y0", "sigma", "bkg")}
STARTS = {
    "peak": {"amp": 4.0, "mu": 0.0, "width": 1.0, "bkg": 0.8},
    "psf": {"flux": 3000.0, "x0": 0.0, "y0": 0.0, "sigma": 2.0, "bkg": 8.0},
}
PEAK_POINTS, PEAK_SIGMA = 100, 0.3
PSF_PIXELS = 16
DEVICE_FLAG = "--xla_force_host_platform_device_count"
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile = {"seconds": 0.0, "count": 0}  # JAX tracing + lowering + compiling in this worker


def settings(args) -> dict:
    quick = args.quick
    objects = args.objects or (500 if quick else 10_000)
    sizes = args.sizes or ([10, 100, 500] if quick else [10, 100, 1000, 10_000])
    return {
        "objects": objects,
        "fitkit_loop": min(objects, args.fitkit_loop or (50 if quick else 300)),
        "scipy_loop": min(objects, args.scipy_loop or (50 if quick else 2000)),
        "lmfit_loop": min(objects, args.lmfit_loop or (50 if quick else 300)),
        "sizes": sorted(set(sizes)),
        "seed": SEED,
    }


# ----------------------------------------------------------------------------- data (numpy only)


@functools.cache
def grids():
    """The peak's x and the psf's pixel centres X, Y (numpy)."""
    import numpy as np

    grid = np.arange(float(PSF_PIXELS)) - 7.5
    X, Y = np.meshgrid(grid, grid, indexing="xy")
    return np.linspace(-5.0, 5.0, PEAK_POINTS), X, Y


def peak_model(p, x):
    import numpy as np

    return p["amp"] * np.exp(-0.5 * ((x - p["mu"]) / p["width"]) ** 2) + p["bkg"]


def psf_model(p, X, Y):
    import numpy as np

    r2 = (X - p["x0"]) ** 2 + (Y - p["y0"]) ** 2
    return p["flux"] * np.exp(-0.5 * r2 / p["sigma"] ** 2) / (2 * np.pi * p["sigma"] ** 2) + p["bkg"]


def dataset(model: str, n: int, draw: int = 0):
    """`(truth, data, error)` of the first `n` objects: truth a dict of (n,) arrays, data and error
    (n, 100) or (n, 16, 16). Each truth and each noise draw has its own generator, so the first `k`
    objects are the same whatever `n`, and draw 1 is draw 0's truths with new noise."""
    import numpy as np

    def rng(stream):
        return np.random.default_rng([SEED, stream])

    x, X, Y = grids()
    if model == "peak":
        truth = {
            "amp": rng(1).uniform(3.0, 8.0, n),
            "mu": rng(2).uniform(-1.0, 1.0, n),
            "width": np.full(n, 1.2),
            "bkg": np.full(n, 1.0),
        }
        clean = peak_model({k: v[:, None] for k, v in truth.items()}, x[None, :])
        error = np.full(clean.shape, PEAK_SIGMA)
    else:
        truth = {
            "flux": rng(1).uniform(2000.0, 5000.0, n),
            "x0": rng(2).uniform(-1.0, 1.0, n),
            "y0": rng(3).uniform(-1.0, 1.0, n),
            "sigma": np.full(n, 1.5),
            "bkg": np.full(n, 10.0),
        }
        clean = psf_model({k: v[:, None, None] for k, v in truth.items()}, X[None], Y[None])
        error = np.sqrt(clean)
    data = clean + error * rng(100 + draw).normal(size=clean.shape)
    return truth, data, error


# ----------------------------------------------------------------------------- helpers in workers


def _jax():
    """Import jax with x64 on and a listener summing JAX's compile events, before fitkit."""
    import jax

    jax.config.update("jax_enable_x64", True)

    def on_duration(event: str, seconds: float, **_) -> None:
        if event in COMPILE_EVENTS:
            _compile["seconds"] += seconds
            _compile["count"] += event == COMPILE_EVENTS[-1]

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    return jax


@functools.cache
def _observations():
    """The fitkit observations of the two models, defined once per process (same pytree types)."""
    import jax
    import jax.numpy as jnp

    import fitkit as fk

    class Peak(fk.Observation):
        """A Gaussian peak on a flat background."""

        x: jax.Array

        def predict(self, p, model):
            return p["amp"] * jnp.exp(-0.5 * ((self.x - p["mu"]) / p["width"]) ** 2) + p["bkg"]

    class Stamp(fk.Observation):
        """A 16 x 16 pixel cut-out: a circular Gaussian PSF on a flat background."""

        x: jax.Array
        y: jax.Array

        def predict(self, p, model):
            r2 = (self.x - p["x0"]) ** 2 + (self.y - p["y0"]) ** 2
            return (
                p["flux"] * jnp.exp(-0.5 * r2 / p["sigma"] ** 2) / (2 * jnp.pi * p["sigma"] ** 2) + p["bkg"]
            )

    return {"peak": Peak, "psf": Stamp}


def problems_for(model: str, data, error) -> list:
    """One `fk.Problem` per object, as a user builds them."""
    import jax.numpy as jnp

    import fitkit as fk

    obs = _observations()[model]
    x, X, Y = grids()
    if model == "peak":
        xs = {"x": jnp.asarray(x)}
    else:
        xs = {"x": jnp.asarray(X), "y": jnp.asarray(Y)}
    return [
        fk.Problem(None, obs(data=jnp.asarray(d), error=jnp.asarray(e), **xs)) for d, e in zip(data, error)
    ]


def start_of(model: str) -> dict:
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in STARTS[model].items()}


def _ready(res):
    import jax

    jax.block_until_ready(res.params)
    return res


def _warnings(caught) -> list[str]:
    return sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})


# ----------------------------------------------------------------------------- workers


def worker_probe(_spec: dict) -> dict:
    jax = _jax()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "local_devices": len(jax.local_devices()),
    }


def worker_batched(spec: dict) -> dict:
    """fk.solve on a batch of `n` objects: build + stack, first call, covariance, second call."""
    jax = _jax()
    import numpy as np

    import fitkit as fk
    from fitkit.batching import stack_params

    model, n, compare = spec["model"], spec["n"], spec.get("compare", 0)
    out = {
        "model": model,
        "n": n,
        "backend": jax.default_backend(),
        "local_devices": len(jax.local_devices()),
        "devices": [str(d) for d in jax.local_devices()],
        "calls": [],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for draw in (0, 1):
            _, data, error = dataset(model, n, draw)
            t0 = time.perf_counter()
            survey = fk.batch(problems_for(model, data, error))
            starts = stack_params([start_of(model) for _ in range(n)])
            jax.block_until_ready(starts)
            build = time.perf_counter() - t0
            before = dict(_compile)
            t0 = time.perf_counter()
            res = _ready(fk.solve(survey, starts))
            seconds = time.perf_counter() - t0
            call = {
                "draw": draw,
                "build_s": build,
                "solve_s": seconds,
                "fits_per_s": n / seconds,
                "compile_time": float(res.compile_time),
                "wall_time": float(res.wall_time),
                "jax_compile_s": _compile["seconds"] - before["seconds"],
                "xla_compiles": _compile["count"] - before["count"],
                "valid": int(res.valid.sum()),
                "method": res.method,
                "tried": np.bincount(np.asarray(res.tried), minlength=4).tolist(),
                "steps_median": float(np.median(res.steps)),
                "steps_max": int(np.max(res.steps)),
                "flags": {k: int(np.sum(v)) for k, v in res.flags.items() if np.any(v)},
            }
            if draw == 0 and compare:
                t0 = time.perf_counter()
                cov = fk.covariance(survey, res)
                call["covariance_s"] = time.perf_counter() - t0
                k = min(n, compare)
                out["compare"] = {
                    "params": {p: np.asarray(v)[:k].tolist() for p, v in res.params.items()},
                    "std": {p: np.asarray(v)[:k].tolist() for p, v in cov.std.items()},
                    "valid": np.asarray(res.valid)[:k].tolist(),
                    "cov_ok": np.asarray(cov.ok)[:k].tolist(),
                }
            out["calls"].append(call)
    out["warnings"] = _warnings(caught)
    return out


def worker_fitkit_loop(spec: dict) -> dict:
    """One fk.solve per object on the first `n` objects; the first call apart."""
    _jax()
    import numpy as np

    import fitkit as fk

    model, n = spec["model"], spec["n"]
    _, data, error = dataset(model, n)
    t0 = time.perf_counter()
    problems = problems_for(model, data, error)
    build = time.perf_counter() - t0
    times, valid = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for problem in problems:
            t0 = time.perf_counter()
            res = _ready(fk.solve(problem, start_of(model), warn=False))
            times.append(time.perf_counter() - t0)
            valid.append(bool(res.valid))
    rest = sum(times[1:])
    return {
        "model": model,
        "n": n,
        "build_s": build,
        "first_s": times[0],
        "rest_s": rest,
        "total_s": sum(times),
        "fits_per_s": n / sum(times),
        "warm_fits_per_s": (n - 1) / rest if n > 1 else None,
        "jax_compile_s": _compile["seconds"],
        "valid": int(np.sum(valid)),
        "warnings": _warnings(caught),
    }


def worker_scipy(spec: dict) -> dict:
    """scipy.optimize.least_squares(method="lm") per object, numpy residuals, finite differences."""
    import numpy as np
    import scipy
    import scipy.optimize

    model, n = spec["model"], spec["n"]
    names = PARAMS[model]
    _, data, error = dataset(model, n)
    x, X, Y = grids()
    x0 = np.array([STARTS[model][k] for k in names])

    def predict(theta):
        p = dict(zip(names, theta))
        return peak_model(p, x) if model == "peak" else psf_model(p, X, Y).ravel()

    params, success, nfev = [], [], []
    t0 = time.perf_counter()
    for d, e in zip(data, error):
        d, e = d.ravel(), e.ravel()
        fit = scipy.optimize.least_squares(lambda theta, d=d, e=e: (predict(theta) - d) / e, x0, method="lm")
        params.append(fit.x.tolist())
        success.append(bool(fit.success))
        nfev.append(int(fit.nfev))
    seconds = time.perf_counter() - t0
    return {
        "model": model,
        "n": n,
        "seconds": seconds,
        "fits_per_s": n / seconds,
        "success": int(np.sum(success)),
        "nfev_median": float(np.median(nfev)),
        "scipy_version": scipy.__version__,
        "compare": {"params": dict(zip(names, np.array(params).T.tolist())), "ok": success},
    }


def worker_lmfit(spec: dict) -> dict:
    """lmfit.minimize (leastsq) per object, lmfit.Parameters, numpy residuals."""
    import lmfit
    import numpy as np

    model, n = spec["model"], spec["n"]
    names = PARAMS[model]
    _, data, error = dataset(model, n)
    x, X, Y = grids()

    def residual(pars, d, e):
        p = pars.valuesdict()
        return ((peak_model(p, x) if model == "peak" else psf_model(p, X, Y)) - d) / e

    params, success, nfev = [], [], []
    t0 = time.perf_counter()
    for d, e in zip(data, error):
        pars = lmfit.Parameters()
        for k in names:
            pars.add(k, value=STARTS[model][k])
        fit = lmfit.minimize(residual, pars, args=(d, e), method="leastsq")
        params.append([float(fit.params[k].value) for k in names])
        success.append(bool(fit.success))
        nfev.append(int(fit.nfev))
    seconds = time.perf_counter() - t0
    return {
        "model": model,
        "n": n,
        "seconds": seconds,
        "fits_per_s": n / seconds,
        "success": int(np.sum(success)),
        "nfev_median": float(np.median(nfev)),
        "lmfit_version": lmfit.__version__,
        "compare": {"params": dict(zip(names, np.array(params).T.tolist())), "ok": success},
    }


WORKERS = {
    "probe": worker_probe,
    "batched": worker_batched,
    "fitkit_loop": worker_fitkit_loop,
    "scipy": worker_scipy,
    "lmfit": worker_lmfit,
}


def run_worker(spec: dict) -> None:
    print(MARKER + json.dumps(WORKERS[spec["kind"]](spec), default=float), flush=True)


# ----------------------------------------------------------------------------- the parent


def _reason(stderr: str) -> str:
    """The line of a worker's stderr that says why it died: XLA's fatal log line, else the last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if re.match(r"F\d{4} ", ln)]
    return (fatal or lines or ["(no stderr)"])[-1][:300]


def spawn(spec: dict, devices: int | None = 1, cpu: bool = False, timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Run one worker in a fresh interpreter; its JSON plus `process_s`, or `error` (and `reason`, the
    stderr tail) when it fails or outlives `timeout` seconds (a hang is killed, not waited for).

    devices: the fake CPU device count (`XLA_FLAGS`), None to leave the flag out; cpu: `JAX_PLATFORMS=cpu`.
    """
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["FITKIT_COMPILE_CACHE"] = "off"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
    if devices is not None and devices > 1:
        flags.append(f"{DEVICE_FLAG}={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", json.dumps(spec)]
    label = " ".join(f"{k}={v}" for k, v in spec.items() if k != "compare")
    print(f"  {label}{f' ({devices} devices)' if devices and devices > 1 else ''} ...", end="", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        print(f" timed out after {timeout:.0f} s", flush=True)
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return {
            "error": f"timed out after {timeout:.0f} s (killed)",
            "reason": "hung",
            "stderr": stderr[-6000:],
        }
    process_s = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        print(f" FAILED (rc {proc.returncode})", flush=True)
        return {
            "error": f"rc {proc.returncode}",
            "reason": _reason(proc.stderr),
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


def machine_info(probe: dict) -> dict:
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=ROOT).stdout.strip()
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
        "numpy": have("numpy"),
        "scipy": have("scipy"),
        "lmfit": have("lmfit"),
        "backend": probe.get("backend"),
        "devices": probe.get("devices"),
        "dtype": "float64",
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "git_commit": git("rev-parse", "HEAD"),
        "fitkit_tree_uncommitted_changes": None if dirty is None else len(dirty.splitlines()),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def agreement(batched: dict, reference: dict, model: str) -> dict | None:
    """The largest |fitkit - reference| / fitkit error per param, over members both call good."""
    import numpy as np

    if "compare" not in batched or "compare" not in reference:
        return None
    fk_cmp, ref_cmp = batched["compare"], reference["compare"]
    k = min(len(fk_cmp["valid"]), len(ref_cmp["ok"]))
    both = np.asarray(fk_cmp["valid"][:k]) & np.asarray(fk_cmp["cov_ok"][:k]) & np.asarray(ref_cmp["ok"][:k])
    out = {"objects": k, "both_good": int(both.sum()), "max_abs_diff_over_error": {}}
    for name in PARAMS[model]:
        ours = np.asarray(fk_cmp["params"][name][:k])[both]
        theirs = np.asarray(ref_cmp["params"][name][:k])[both]
        std = np.asarray(fk_cmp["std"][name][:k])[both]
        out["max_abs_diff_over_error"][name] = (
            float(np.max(np.abs(ours - theirs) / std)) if both.any() else None
        )
    return out


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def build_rows(report: dict) -> list[dict]:
    """One row per method and model: objects, first call, fits/s compile included and warm."""
    rows = []
    for key, label in report["row_labels"].items():
        for model in MODELS:
            res = report["runs"].get(key, {}).get(model)
            row = {"method": label, "key": key, "model": model, "objects": None, "first_s": None,
                   "fits_per_s": None, "warm_fits_per_s": None, "note": ""}  # fmt: skip
            if res is None:
                continue
            if "skipped" in res:
                row["note"] = res["skipped"]
            elif "error" in res:
                row["note"] = f"FAILED: {res['error']}; {res.get('reason', '')}".replace("|", "/")
            elif key.startswith("batched"):
                first, second = res["calls"]
                row.update(objects=res["n"], first_s=first["solve_s"], fits_per_s=first["fits_per_s"],
                           warm_fits_per_s=second["fits_per_s"])  # fmt: skip
                row["note"] = (
                    f"{res['local_devices']} {res['backend']} device(s); valid {first['valid']}/{res['n']}, "
                    f"{second['valid']}/{res['n']}; {first['method']}"
                )
            elif key == "fitkit_loop":
                row.update(objects=res["n"], first_s=res["first_s"], fits_per_s=res["fits_per_s"],
                           warm_fits_per_s=res["warm_fits_per_s"])  # fmt: skip
                row["note"] = f"valid {res['valid']}/{res['n']}"
            else:
                row.update(objects=res["n"], fits_per_s=res["fits_per_s"])
                row["note"] = f"success {res['success']}/{res['n']}, median nfev {res['nfev_median']:.0f}"
            rows.append(row)
    return rows


def build_ratios(report: dict) -> list[dict]:
    ratios = []
    by = {(r["key"], r["model"]): r for r in report["rows"]}
    goals = {"scipy": 100, "lmfit": 1000}
    for key in report["row_labels"]:
        if not key.startswith("batched"):
            continue
        for model in MODELS:
            ours = by.get((key, model), {})
            for ref, goal in goals.items():
                theirs = by.get((ref, model), {}).get("fits_per_s")
                ratio, warm = (
                    (ours[k] / theirs if ours.get(k) and theirs else None)
                    for k in ("fits_per_s", "warm_fits_per_s")
                )
                ratios.append({"batched": key, "reference": ref, "model": model, "ratio": ratio,
                               "ratio_second_call": warm, "goal": goal,
                               "met": None if ratio is None else ratio >= goal})  # fmt: skip
    return ratios


def tables(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        f"{s['objects']} objects per model; loops: fitkit {s['fitkit_loop']}, scipy {s['scipy_loop']}, "
        f"lmfit {s['lmfit_loop']}; {m['processor']}, {m['cpu_count']} cores, backend {m['backend']}; "
        f"jax {m['jax']}, fitkit {m['fitkit']}, float64",
        "",
        "| method | model | objects | 1st call (s) | fits/s, compile incl. | fits/s, 2nd call | notes |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['method']} | {r['model']} | {fmt(r['objects'])} | {fmt(r['first_s'])} | "
            f"{fmt(r['fits_per_s'])} | {fmt(r['warm_fits_per_s'])} | {r['note']} |"
        )
    labels = report["row_labels"]
    lines += [
        "",
        "| ratio of fits/s | model | 1st call (compile incl.) | 2nd call | goal (compile incl.) | met? |",
        "|---|---|---:|---:|---|---|",
    ]
    for q in report["ratios"]:
        met = "—" if q["met"] is None else ("yes" if q["met"] else "**no**")
        ratio, warm = (None if v is None else fmt(v) + "x" for v in (q["ratio"], q["ratio_second_call"]))
        lines.append(
            f"| {labels[q['batched']]} / {q['reference']} loop | {q['model']} | {fmt(ratio)} | {fmt(warm)} | "
            f"≥ {q['goal']}x | {met} |"
        )
    lines += [
        "",
        "| where the batched time goes (s) | model | build + stack | 1st solve | of which res.compile_time "
        "| JAX compile in call | res.wall_time | covariance | 2nd build | 2nd solve | JAX compile in 2nd |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in [k for k in labels if k.startswith("batched")]:
        for model in MODELS:
            res = report["runs"][key][model]
            if "error" in res:
                continue
            a, b = res["calls"]
            lines.append(
                f"| {labels[key]} | {model} | {fmt(a['build_s'])} | {fmt(a['solve_s'])} | "
                f"{fmt(a['compile_time'])} | {fmt(a['jax_compile_s'])} | {fmt(a['wall_time'])} | "
                f"{fmt(a.get('covariance_s'))} | {fmt(b['build_s'])} | {fmt(b['solve_s'])} | "
                f"{fmt(b['jax_compile_s'])} |"
            )
    lines += [
        "",
        "| fits/s vs batch size (1 device) | model | size | 1st call | 2nd call |",
        "|---|---|---:|---:|---:|",
    ]
    for model in MODELS:
        for size, res in report["sizes"][model].items():
            if "error" in res:
                lines.append(f"| | {model} | {size} | FAILED | FAILED |")
                continue
            first, second = res["calls"]
            lines.append(f"| | {model} | {size} | {fmt(first['fits_per_s'])} | {fmt(second['fits_per_s'])} |")
    lines += [
        "",
        "| agreement with the batched fit | model | objects both good | max abs diff / error per param |",
        "|---|---|---:|---|",
    ]
    for ref in ("scipy", "lmfit"):
        for model in MODELS:
            a = report["agreement"].get(ref, {}).get(model)
            if a is None:
                continue
            gaps = ", ".join(f"{k} {fmt(v, 2)}" for k, v in a["max_abs_diff_over_error"].items())
            lines.append(f"| {ref} loop | {model} | {a['both_good']}/{a['objects']} | {gaps} |")
    return "\n".join(lines)


def plot(report: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(11, 4.2))
    by = {(r["key"], r["model"]): r for r in report["rows"]}
    for ax, model in zip(axes, MODELS):
        points = [
            (int(size), res["calls"]) for size, res in report["sizes"][model].items() if "error" not in res
        ]
        sizes = [p[0] for p in points]
        ax.plot(
            sizes,
            [c[0]["fits_per_s"] for _, c in points],
            "o-",
            label="fitkit batched, 1st call (compile incl.)",
        )
        ax.plot(
            sizes, [c[1]["fits_per_s"] for _, c in points], "s--", label="fitkit batched, 2nd call (new data)"
        )
        for key, style in (("fitkit_loop", ":"), ("scipy", "-."), ("lmfit", "--")):
            row = by.get((key, model), {})
            value = row.get("warm_fits_per_s" if key == "fitkit_loop" else "fits_per_s")
            if value:
                label = report["row_labels"][key] + (" (warm)" if key == "fitkit_loop" else "")
                color = {"fitkit_loop": "C2", "scipy": "C3", "lmfit": "C4"}[key]
                ax.axhline(value, color=color, ls=style, label=f"{label} ({value:.3g}/s)")
        ax.set(xscale="log", yscale="log", xlabel="batch size (objects)", ylabel="fits/s",
               title=f"{model}: {len(PARAMS[model])} params")  # fmt: skip
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    m = report["machine"]
    fig.suptitle(
        f"Survey throughput, {m['cpu_count']} CPU cores, backend {m['backend']}, float64", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args) -> dict:
    cfg = settings(args)
    n = cfg["objects"]
    compare = max(cfg["scipy_loop"], cfg["lmfit_loop"])
    t0 = time.perf_counter()
    report: dict = {"benchmark": "survey", "quick": args.quick, "settings": cfg, "runs": {}}

    print("0. probe", flush=True)
    probe = spawn({"kind": "probe"})
    gpu = probe.get("backend") == "gpu"
    report["probe"] = probe
    report["machine"] = machine_info(probe)
    labels = {}
    if gpu:
        labels["batched_gpu"] = "fitkit batched, GPU"
    labels["batched_1"] = "fitkit batched, 1 CPU device"
    labels["batched_2"] = "fitkit batched, 2 CPU devices"
    labels.update(fitkit_loop="fitkit, Python loop", scipy="scipy least_squares loop", lmfit="lmfit loop")
    report["row_labels"] = labels
    runs = report["runs"]

    print("1. fitkit batched", flush=True)
    for key in [k for k in labels if k.startswith("batched")]:
        devices = None if key == "batched_gpu" else int(key[-1])
        runs[key] = {}
        for model in MODELS:
            # More devices should not be slower than one: a worker that takes 2x the 1-device one
            # (+ 60 s) is hung (XLA's CPU collectives and LAPACK kernels share one thread pool).
            one = runs.get("batched_1", {}).get(model, {}).get("process_s")
            timeout = WORKER_TIMEOUT_S if key == "batched_1" or one is None else 2 * one + 60
            spec = {"kind": "batched", "model": model, "n": n, "compare": compare}
            runs[key][model] = spawn(spec, devices, cpu=gpu or key != "batched_gpu", timeout=timeout)

    print("2. loops", flush=True)
    for key in ("fitkit_loop", "scipy", "lmfit"):
        if key == "lmfit" and have("lmfit") is None:
            runs[key] = {model: {"skipped": "skipped: lmfit not installed"} for model in MODELS}
            continue
        size = cfg[{"fitkit_loop": "fitkit_loop", "scipy": "scipy_loop", "lmfit": "lmfit_loop"}[key]]
        runs[key] = {model: spawn({"kind": key, "model": model, "n": size}, cpu=gpu) for model in MODELS}

    print("3. fits/s vs batch size", flush=True)
    main_key = "batched_gpu" if gpu else "batched_1"
    report["sizes"] = {}
    for model in MODELS:
        report["sizes"][model] = {}
        for size in cfg["sizes"]:
            if size == n and "error" not in runs[main_key][model]:
                res = runs[main_key][model]
            else:
                res = spawn({"kind": "batched", "model": model, "n": size}, None if gpu else 1)
            report["sizes"][model][str(size)] = res

    report["agreement"] = {
        ref: {
            model: agreement(runs[main_key][model], runs[ref][model], model)
            for model in MODELS
            if "error" not in runs[main_key][model] and "error" not in runs[ref][model]
        }
        for ref in ("scipy", "lmfit")
    }
    for group in runs.values():  # the per-object params served the agreement; keep the JSON small
        for res in group.values():
            res.pop("compare", None)

    report["rows"] = build_rows(report)
    report["ratios"] = build_ratios(report)
    report["total_s"] = time.perf_counter() - t0
    report["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print()
    print(tables(report))
    print(f"\ntotal {report['total_s']:.0f} s")
    for group, by_model in [*runs.items(), *(("sizes " + m, v) for m, v in report["sizes"].items())]:
        for model, res in by_model.items():
            if "error" in res:
                print(f"FAILED: {group} {model}: {res['error']}; {res.get('reason', '')}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1, default=float) + "\n")
        plot(report, FIGURE)
        print(f"wrote {RESULTS.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}")
    return report


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 objects, loops of 50, sizes 10,100,500")
    parser.add_argument("--sizes", type=_sizes, help="batch sizes of the sweep, comma-separated")
    parser.add_argument("--objects", type=int, help="objects per model in the batched rows (default 10000)")
    parser.add_argument("--fitkit-loop", type=int, help="objects in the fk.solve loop (default 300)")
    parser.add_argument("--scipy-loop", type=int, help="objects in the scipy loop (default 2000)")
    parser.add_argument("--lmfit-loop", type=int, help="objects in the lmfit loop (default 300)")
    parser.add_argument("--no-save", action="store_true", help="write neither the JSON nor the plot")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(json.loads(args.worker))
    else:
        main(args)
