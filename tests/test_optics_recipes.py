"""The good recipes on the hierarchical optics problem, from the tutorial's start (issue 6).

At 64 pupil pixels (the benchmark `scripts/bench/optics.py` checks the same
claims at the tutorial's 256). The optimum is Levenberg-Marquardt started
from the true params; every recipe starts from the tutorial's initial guess
(zero wavefront error, brightest-pixel positions, summed fluxes), whose
reduced chi-squared is ~1.8e6.
"""

import warnings

import optax
import pytest

import fitkit as fk


@pytest.fixture(scope="module")
def optics(optics64):
    problem, truth, start = optics64
    optimum = fk.solve(problem, truth, method="levenberg-marquardt", rtol=1e-10, atol=1e-10)
    assert optimum.converged, optimum.message
    return problem, start, float(problem.chi2r(optimum.params))


def gap(problem, params, optimum):
    """Relative excess of the reduced chi-squared over the optimum's."""
    return (float(problem.chi2r(params)) - optimum) / optimum


def test_the_start_is_far_from_the_optimum(optics):
    problem, start, optimum = optics
    assert 0.95 < optimum < 1.1
    assert float(problem.chi2r(start)) > 1e5


def test_natural_gradient_with_one_learning_rate_reaches_the_optimum(optics):
    problem, start, optimum = optics
    res = fk.fit(
        problem,
        start,
        optax.sgd(0.2, momentum=0.5),
        steps=100,
        precondition="fisher",
        progress=False,
        history=False,
    )
    assert res.steps == 100
    assert -1e-9 < gap(problem, res.params, optimum) < 1e-2


def test_projected_lbfgs_reaches_the_optimum_in_30_steps(optics):
    problem, start, optimum = optics
    res = fk.solve(problem, start, method="lbfgs", rtol=1e-6, atol=1e-6, max_steps=30, projection="fisher")
    assert res.converged, res.message
    assert res.steps <= 30
    assert -1e-9 < gap(problem, res.params, optimum) < 1e-3


def test_raw_lbfgs_stalls_far_from_the_optimum(optics):
    problem, start, optimum = optics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fk.ConvergenceWarning)
        res = fk.solve(problem, start, method="lbfgs", rtol=1e-6, atol=1e-6, max_steps=512)
    # It stops on the step-size test (or the step limit) with chi2r in the thousands.
    assert float(problem.chi2r(res.params)) > 100 * optimum
