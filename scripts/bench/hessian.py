"""Benchmark: fitkit's batched Hessian and Fisher against jax.hessian and zodiax's batched Hessian.

The model is a 1-D phase retrieval (a least-squares problem): `n` phase
coefficients set a pupil phase through an inverse FFT, the data are the
|FFT|^2 of the pupil field on `m` = 16384 points with Gaussian errors. For
n = 64, 512 and 2048 it measures, in one run:

* wall time of the compiled computation after one warm-up call (best of 7
  rounds; in each round every method runs once, interleaved in a rotating
  order, so that all see the same machine load), and compile time separately;
  also the process CPU time of each call (all threads), which is far less
  sensitive than wall time to other jobs sharing the cores;
* memory two ways: the peak resident memory (VmHWM) of a fresh subprocess
  while it runs the compiled computation once, above its resident memory just
  before (the peak is reset after compiling through /proc/self/clear_refs),
  and XLA's compiled `memory_analysis()` temporary + output bytes.

Every method runs under `jax.jit` (zodiax's eager call would recompile on
each call). zodiax is compared at equal batch size (`nbatches = n / batch_size`);
with one batch it falls back to `jax.hessian` by design. The data size keeps
the whole run at a few minutes on a 2-core CPU.

Usage: python scripts/bench/hessian.py [--quick]
Writes scripts/bench/results/hessian.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import fitkit as fk  # noqa: E402

try:
    import zodiax  # noqa: E402
except ImportError:  # an optional benchmark dependency: pip install fitkit[bench]
    zodiax = None

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "hessian.json"
BATCH_SIZES = (16, 64, 256)


class Pupil(fk.Module):
    """1-D phase retrieval: |FFT(aperture * exp(i phase))|^2, the phase from `n` Fourier coefficients."""

    aperture: jax.Array

    def __call__(self, coefficients):
        size, half = self.aperture.size, coefficients.size // 2
        spectrum = (
            jnp.zeros(size // 2 + 1, complex)
            .at[1 : half + 1]
            .set(coefficients[:half] + 1j * coefficients[half:])
        )
        phase = jnp.fft.irfft(spectrum, size) * size / jnp.sqrt(coefficients.size)
        return jnp.abs(jnp.fft.fft(self.aperture * jnp.exp(1j * phase))) ** 2 / size


class Image(fk.Observation):
    def predict(self, params, model):
        return model(params)


def make_problem(n: int, m: int):
    """The problem and a point near (not at) its optimum."""
    grid = jnp.linspace(-1.0, 1.0, m)
    model = Pupil(aperture=(jnp.abs(grid) < 0.5).astype(float))
    truth = 0.03 * jax.random.normal(jax.random.key(0), (n,))
    clean = model(truth)
    error = 0.01 * jnp.sqrt(clean.max()) * jnp.ones(m)
    data = clean + error * jax.random.normal(jax.random.key(1), (m,))
    return fk.Problem(model, Image(data=data, error=error)), truth + 1e-3


def methods(problem, n: int) -> dict:
    """name -> (function of the flat params returning the (n, n) matrix, batch size or None)."""
    f = problem.nll
    out = {"jax.hessian": (jax.hessian(f), n)}
    for b in sorted({min(b, n) for b in BATCH_SIZES}):
        out[f"fitkit b={b}"] = (lambda x, b=b: fk.hessian(f, x, batch_size=b), b)
        if zodiax is not None:
            out[f"zodiax b={b}"] = (lambda x, b=b: zodiax.diffops.hessian(f, x, nbatches=n // b)[0], b)
    out["fitkit auto"] = (lambda x: fk.hessian(f, x), None)
    out["fitkit fisher"] = (lambda x: fk.fisher(problem, x), None)
    return out


def _status(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", pathlib.Path("/proc/self/status").read_text()).group(1)) * 1024


def worker(n: int, m: int, name: str) -> dict:
    """In a fresh process: compile one method, run it once, report its peak memory above the baseline."""
    problem, x = make_problem(n, m)
    fn, _ = methods(problem, n)[name]
    compiled = jax.jit(fn).lower(x).compile()
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    baseline = _status("VmRSS")
    compiled(x).block_until_ready()
    return {"peak_rss_bytes": _status("VmHWM") - baseline}


def time_all(n: int, m: int, rounds: int) -> dict:
    problem, x = make_problem(n, m)
    rows, compiled, outputs = {}, {}, {}
    for name, (fn, batch) in methods(problem, n).items():
        start = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(x).compile()
        stats = compiled[name].memory_analysis()
        rows[name] = {
            "n": n,
            "m": m,
            "method": name,
            "batch_size": batch,
            "compile_s": time.perf_counter() - start,
            "xla_bytes": int(stats.temp_size_in_bytes + stats.output_size_in_bytes),
            "times_s": [],
            "cpu_times_s": [],
        }
    for fn in compiled.values():  # warm-up: first-touch allocation is not timed
        fn(x).block_until_ready()
    names = list(compiled)
    for r in range(rounds):
        # Rotate the order each round: a method run right after jax.hessian's large
        # free pays for fresh pages, and no method should always be that one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = compiled[name]
            start, cpu = time.perf_counter(), time.process_time()
            outputs[name] = fn(x).block_until_ready()
            rows[name]["times_s"].append(time.perf_counter() - start)
            rows[name]["cpu_times_s"].append(time.process_time() - cpu)
    reference = outputs["jax.hessian"]
    scale = float(jnp.abs(reference).max())
    for name, row in rows.items():
        row["best_s"] = min(row["times_s"])
        row["best_cpu_s"] = min(row["cpu_times_s"])
        row["max_rel_diff_vs_jax_hessian"] = float(jnp.abs(outputs[name] - reference).max()) / scale
    return rows


def memory_all(n: int, m: int, names) -> dict:
    out = {}
    for name in names:
        run = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps([n, m, name])],
            capture_output=True,
            text=True,
            check=True,
        )
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])["peak_rss_bytes"]
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| n | method | batch | wall (s) | wall / zodiax | CPU (s) | CPU / zodiax | compile (s) "
        "| peak RSS (MB) | RSS / zodiax | XLA temp+out (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["n"], r["method"]): r for r in rows}
    for r in rows:
        twin = by_key.get((r["n"], r["method"].replace("fitkit", "zodiax")))
        paired = twin is not None and twin is not r
        vs_time = f"{r['best_s'] / twin['best_s']:.2f}" if paired else ""
        vs_cpu = f"{r['best_cpu_s'] / twin['best_cpu_s']:.2f}" if paired else ""
        vs_rss = f"{r['peak_rss_bytes'] / twin['peak_rss_bytes']:.2f}" if paired else ""
        lines.append(
            f"| {r['n']} | {r['method']} | {r['batch_size'] or 'auto'} | {r['best_s']:.3f} | {vs_time} | "
            f"{r['best_cpu_s']:.3f} | {vs_cpu} | "
            f"{r['compile_s']:.2f} | {r['peak_rss_bytes'] / 1e6:.0f} | {vs_rss} | {r['xla_bytes'] / 1e6:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 64 and 512 with a small data vector")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        n, m, name = json.loads(args.worker)
        print(json.dumps(worker(n, m, name)))
        return
    if zodiax is None:
        print("note: zodiax is not importable (pip install zodiax); its rows are skipped")
    sizes, m = ((64, 512), 2048) if args.quick else ((64, 512, 2048), 16384)
    start = time.perf_counter()
    rows = []
    for n in sizes:
        timed = time_all(n, m, rounds=7)
        peaks = memory_all(n, m, list(timed))
        for name, row in timed.items():
            row["peak_rss_bytes"] = peaks[name]
            rows.append(row)
        print(f"n={n} done after {time.perf_counter() - start:.0f} s", flush=True)
    print(table(rows))
    info = fk.info()
    meta = {
        "machine": f"{os.cpu_count()}-core CPU, no GPU, shared with other jobs",
        "backend": info["backend"],
        "jax": jax.__version__,
        "zodiax": getattr(zodiax, "__version__", None),
        "dtype": "float64",
        "data_size": m,
        "memory": "peak_rss_bytes: VmHWM of a fresh subprocess during one run of the compiled call, "
        "above its RSS just before; xla_bytes: compiled memory_analysis temp + output",
        "time": "best of 7 interleaved rounds (rotating order) after a warm-up call, compile excluded; wall (perf_counter) and CPU (process_time, all threads) time",
        "total_s": time.perf_counter() - start,
    }
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
