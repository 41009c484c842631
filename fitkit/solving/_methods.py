"""Method names for `fk.solve`: which optimistix solver each builds, on which objective.

Defaults were chosen by measurement (`scripts/bench/solvers.py`, on the
tutorial's sum of Gaussians, 6 params and 500 residuals, and on a badly
scaled copy whose params are in units that make their curvatures differ by
~1e12; steps from the tutorial's start, rtol = atol = 1e-8):

- `"bfgs"`: dense inverse-Hessian BFGS with backtracking. 25 steps and the
  least wall time on the Gaussians; 135 steps on the scaled copy. Stores an
  n x n matrix: up to ~1000 params. The tutorial's method.
- `"lbfgs"`: limited-memory BFGS keeping the last 20 pairs. History 20 took
  41 / 237 steps (plain / scaled) against 49 / 319 for 10 and 86 / 739 for 5
  (40 gained little more on the plain problem); memory is 2 x 20 vectors of
  the params' size. The default: it scales to any number of params.
- `"newton"`: exact Hessian in a trust region; 25 / 33 steps, insensitive to
  scaling, each step costs a full Hessian: a few hundred params at most.
- `"nonlinear-cg"`: Polak-Ribiere conjugate gradient (`beta=` picks another
  formula; Polak-Ribiere needed 827 steps, Fletcher-Reeves 2551). Tiny memory
  but slow, and on the scaled copy its steps became so short that the
  step-size test stopped it far from the minimum: a fallback only.
- `"nelder-mead"`: derivative-free simplex (rdelta 0.05: 1545 / 1305 steps;
  0.2 was no better). For losses without useful gradients, and few params.
- `"gauss-newton"`: Gauss-Newton with a backtracking line search on the
  residuals: 25 / 16 steps. Invariant to the params' units; no damping, so a
  rank-deficient Jacobian (unconstrained params) breaks its linear solve.
- `"levenberg-marquardt"`: damped Gauss-Newton in a trust region: 16 / 74
  steps, robust to rank deficiency. The first choice for least squares.
- `"dogleg"`: Powell's dogleg trust region on the residuals: 16 / 97 steps.

Least-squares methods fit `problem.residuals` (the z-scores), so they find the
maximum-likelihood point and ignore priors; minimisers fit `problem.loss`, or
`problem.nll` when the problem has priors (the MAP point).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optimistix as optx

from ._solvers import DampedGaussNewton, NelderMead, Newton

__all__ = ["METHODS", "Method", "resolve", "UnknownMethodError"]


class UnknownMethodError(ValueError):
    """The method name is not one `fk.solve` knows."""


@dataclass(frozen=True)
class Method:
    """One named method.

    Attributes:
        name: the name given to `fk.solve`.
        least_squares: whether it solves on residuals (else it minimises a scalar).
        build: `build(rtol, atol, **options)` returns the optimistix solver.
        summary: one line saying what it suits.
    """

    name: str
    least_squares: bool
    build: Callable[..., optx.AbstractIterativeSolver]
    summary: str


def _lbfgs(rtol, atol, history_length: int = 20, **options):
    return optx.LBFGS(rtol, atol, history_length=history_length, **options)


_BETAS = {
    "polak-ribiere": optx.polak_ribiere,
    "fletcher-reeves": optx.fletcher_reeves,
    "hestenes-stiefel": optx.hestenes_stiefel,
    "dai-yuan": optx.dai_yuan,
}


def _nonlinear_cg(rtol, atol, beta: str | Callable = "polak-ribiere", **options):
    # optimistix calls the beta formula `method`, which `fk.solve` already uses for the solver name.
    if isinstance(beta, str):
        if beta not in _BETAS:
            raise UnknownMethodError(
                f"unknown beta {beta!r} for nonlinear-cg; choose one of: {', '.join(_BETAS)}"
            )
        beta = _BETAS[beta]
    return optx.NonlinearCG(rtol, atol, method=beta, **options)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "bfgs",
            False,
            optx.BFGS,
            "small dense problems (up to ~1000 params); fewest steps of the quasi-Newton methods",
        ),
        Method("lbfgs", False, _lbfgs, "the default; memory linear in the number of params (history 20)"),
        Method("newton", False, Newton, "exact Hessian; small smooth problems (a few hundred params)"),
        Method("nonlinear-cg", False, _nonlinear_cg, "minimal memory; many more steps than (L-)BFGS"),
        Method("nelder-mead", False, NelderMead, "derivative-free; non-differentiable losses, few params"),
        Method(
            "gauss-newton",
            True,
            DampedGaussNewton,
            "least squares with a well-conditioned Jacobian; invariant to units",
        ),
        Method(
            "levenberg-marquardt",
            True,
            optx.LevenbergMarquardt,
            "least squares; robust, fewest steps on the Gaussians",
        ),
        Method("dogleg", True, optx.Dogleg, "least squares in a trust region; like Levenberg-Marquardt"),
    )
}


def resolve(
    method, rtol: float, atol: float, options: dict
) -> tuple[optx.AbstractIterativeSolver, str, bool]:
    """The solver for `method`, its display name, and whether it is a least-squares solver.

    Args:
        method: a name in `METHODS`, or an optimistix minimiser or least-squares
            solver instance (then `rtol`, `atol` and `options` must be left alone,
            as the instance carries its own).
        rtol, atol: tolerances passed to the named method's constructor.
        options: extra keyword arguments for the named method's constructor.

    Raises:
        UnknownMethodError: an unknown name (the message lists the valid ones).
        TypeError: an object that is neither a name nor an optimistix solver, or
            solver options given with an instance, or options the method does not take.
    """
    if isinstance(method, optx.AbstractLeastSquaresSolver | optx.AbstractMinimiser):
        if options:
            raise TypeError(
                f"solver options {sorted(options)} cannot be applied to a solver instance; "
                "set them when constructing it"
            )
        return method, type(method).__name__, isinstance(method, optx.AbstractLeastSquaresSolver)
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a name ({', '.join(METHODS)}) or an optimistix minimiser or "
            f"least-squares solver instance, got {type(method).__name__}"
        )
    key = method.strip().lower().replace("_", "-").replace(" ", "-")
    if key not in METHODS:
        raise UnknownMethodError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    spec = METHODS[key]
    try:
        solver = spec.build(rtol, atol, **options)
    except TypeError as err:
        raise TypeError(f"method {key!r} does not take these options {sorted(options)}: {err}") from err
    return solver, key, spec.least_squares
