"""`python -m fitkit.demo`: the hierarchical optics example through the whole pipeline.

Simulates three noisy images of a star through a telescope with unknown
wavefront error, then fits them from the zodiax tutorial's starting guess with
`fk.analyse` (natural-gradient warm start, projected L-BFGS, Hessian error
bars, whitened NUTS), prints the report (lmfit-style: chi-squared, AIC, BIC, initial
values, strong correlations, validity) and writes it with its figures, among them
`pulls.png` (each param's offset from the truth in units of its error) and
`zscores.png` (the residuals' histogram against N(0, 1)).
"""

from __future__ import annotations

import argparse
import time

from . import _config

# Sizes that keep the demo under 3 minutes (40 s with --quick) on a 2-core CPU.
FULL = {"wf_npixels": 128, "n_frames": 1000, "num_warmup": 200, "num_samples": 500, "num_chains": 2}
QUICK = {"wf_npixels": 48, "n_frames": 200, "num_warmup": 100, "num_samples": 150, "num_chains": 1}


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m fitkit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fitkit-demo", help="folder for the report, figures and samples")
    parser.add_argument("--quick", action="store_true", help="a smaller pupil and fewer draws (about 40 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data")
    args = parser.parse_args(argv)
    _config.enable_x64()

    import fitkit as fk
    from fitkit.examples import optics

    sizes = QUICK if args.quick else FULL
    info = fk.info()
    print(
        f"fitkit {fk.__version__} demo on {info['backend']} ({info['device_count']} device(s)), x64={info['x64']}"
    )
    t0 = time.perf_counter()
    problem, truth, start = optics.make_problem(
        args.seed, wf_npixels=sizes["wf_npixels"], n_frames=sizes["n_frames"]
    )
    print(
        f"simulated 3 filters x {problem.observations[0].data.shape} pixels in {time.perf_counter() - t0:.1f} s"
    )
    sample = {k: sizes[k] for k in ("num_warmup", "num_samples", "num_chains")}
    analysis = fk.analyse(problem, start, truth=truth, sample=sample)
    # A 16-param corner plot takes chainconsumer ~8 s to draw: --quick shows the wavefront only.
    analysis.save(args.out, corner=["wfe"] if args.quick else None)
    print()
    print(analysis.report())
    print(f"\ntotal {time.perf_counter() - t0:.1f} s; report, figures and samples in {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
