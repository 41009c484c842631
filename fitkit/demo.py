"""`python -m fitkit.demo`: fit the tutorial's sum-of-Gaussians problem and report it."""

from __future__ import annotations

import argparse
import time

import optimistix as optx

from . import _config
from .examples import gaussians


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m fitkit.demo", description=__doc__)
    parser.parse_args(argv)
    _config.enable_x64()
    info = _config.info()
    print(f"fitkit demo on {info['backend']} ({info['device_count']} device(s)), x64={info['x64']}")
    problem, truth, start = gaussians.make_problem()
    print(f"initial reduced chi-squared: {float(problem.chi2r(start)):.6f}")
    problem.check(start)
    solver = optx.BestSoFarMinimiser(optx.BFGS(rtol=1e-8, atol=1e-8))
    t0 = time.perf_counter()
    sol = optx.minimise(lambda p, _: problem.loss(p), solver, start, max_steps=256, throw=False)
    elapsed = time.perf_counter() - t0
    print(f"final reduced chi-squared:   {float(problem.chi2r(sol.value)):.6f}")
    print(f"BFGS steps: {int(sol.stats['num_steps'])} ({elapsed:.2f} s including compilation)")
    for name in ("mean", "std", "power"):
        fitted = ", ".join(f"{x:+.4f}" for x in sol.value[name].tolist())
        true = ", ".join(f"{x:+.4f}" for x in truth[name].tolist())
        print(f"  {name:5s} fitted [{fitted}]  true [{true}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
