"""The badly scaled test set itself (fitkit.examples.nls): problems, references and the scipy record."""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk
from fitkit.examples import nls

fk.enable_x64()

NAMES = list(nls.CASES)
RUNS = [(name, start) for name in NAMES for start in (0, 1)]


@functools.cache
def problem(name: str) -> fk.Problem:
    return nls.CASES[name].build()


def printed_tolerance(text: str, cap: int = 7) -> float:
    """One unit in the last printed digit (MGH truncate, others round), at most `cap` significant digits."""
    value = float(text)
    mantissa = text.lower().split("e")[0].lstrip("+-").replace(".", "").lstrip("0")
    shown = max(len(mantissa), 1)
    if value == 0:
        return 0.0
    kept = min(shown, cap)
    return 10.0 ** (math.floor(math.log10(abs(value))) - kept + 1)


def test_the_set_has_at_least_15_cases_with_two_starts_each():
    assert len(nls.CASES) >= 15
    for case in nls.CASES.values():
        assert len(case.starts) == 2
        for start in case.starts:
            assert list(start) == list(case.solution)
        for other in case.minima():
            assert list(other) == list(case.solution)
        assert case.citation


def test_digits_counts_significant_digits_and_zero_components_absolutely():
    assert nls.digits({"a": 1.0}, {"a": 1.0}) == 16.0
    assert nls.digits({"a": 1.000001}, {"a": 1.0}) == pytest.approx(6.0, abs=1e-6)
    assert nls.digits({"a": 1.5e-3, "b": 2.0}, {"a": 1.0e-3, "b": 2.0}) == pytest.approx(math.log10(2.0))
    assert nls.digits({"a": 3e-7}, {"a": 0.0}) == pytest.approx(-math.log10(3e-7))
    assert nls.digits({"a": 3e-7}, {"a": 0.0}, zero_scale=1e-3) == pytest.approx(-math.log10(3e-4))
    assert nls.digits({"a": float("nan")}, {"a": 1.0}) == 0.0
    assert nls.digits({"a": -1.0}, {"a": 1.0}) == 0.0
    assert nls.minimum_digits({"a": 2.0}, [{"a": 1.0}, {"a": 2.0}]) == (16.0, 1)
    with pytest.raises(KeyError):
        nls.digits({"a": 1.0}, {"b": 1.0})


def test_symmetric_minima_count_as_the_solution():
    case = nls.CASES["osborne2"]
    assert len(case.equivalent) == 5
    prob = problem("osborne2")
    at = [float(prob.chi2(case.params(m))) for m in case.minima()]
    assert np.allclose(at, case.sum_squares, rtol=1e-13)
    swapped = case.equivalent[2]
    assert case.digits(swapped) == 16.0 and case.which(swapped) == "global"
    roth = nls.CASES["freudenstein_roth"]
    assert roth.which(roth.local_minima[0][0]) == "local"


@pytest.mark.parametrize("name", NAMES)
def test_residuals_at_the_solution_give_the_published_sum_of_squares(name):
    case = nls.CASES[name]
    prob = problem(name)
    residuals = prob.residuals(case.params())
    assert residuals.shape == (prob.n_data,)
    chi2 = float(jnp.sum(residuals**2))
    if case.sum_squares == 0:
        assert chi2 < 1e-24  # Powell badly scaled: 1e4 * x1 * x2 - 1 with x1 ~ 1e-5 rounds to ~3e-14
    else:
        assert chi2 == pytest.approx(case.sum_squares, rel=1e-10)
    if case.published_sum_squares is not None:
        assert abs(chi2 - float(case.published_sum_squares)) <= printed_tolerance(case.published_sum_squares)
    for params, sum_squares in case.local_minima:
        assert float(prob.chi2(case.params(params))) == pytest.approx(sum_squares, rel=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if nls.CASES[n].published])
def test_refined_solution_agrees_with_every_published_digit(name):
    case = nls.CASES[name]
    for key, text in case.published.items():
        assert abs(case.solution[key] - float(text)) <= printed_tolerance(text), key


@pytest.mark.parametrize("name", NAMES)
def test_solution_is_a_minimum_to_float64_precision(name):
    """A Newton step on the sum of squares from the reference moves it by less than 1e-10."""
    case = nls.CASES[name]
    prob = problem(name)
    keys = list(case.solution)
    x = jnp.array([case.solution[k] for k in keys])

    def chi2(v):
        return prob.chi2(dict(zip(keys, v)))

    gradient, hessian = jax.jit(lambda v: (jax.grad(chi2)(v), jax.hessian(chi2)(v)))(x)
    assert np.all(np.linalg.eigvalsh(np.asarray(hessian)) > 0)
    step = np.linalg.solve(np.asarray(hessian), -np.asarray(gradient))
    moved = {k: case.solution[k] + step[i] for i, k in enumerate(keys)}
    assert nls.digits(moved, case.solution, case.zero_scale) > 10


@pytest.mark.parametrize(("name", "start"), RUNS)
def test_scipy_lm_tight_reaches_6_digits_exactly_where_recorded(name, start):
    """The record `SCIPY_TIGHT_6` is what fitkit's default solve must match; keep it honest."""
    case = nls.CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params, out = nls.scipy_least_squares(problem(name), case.starts[start])
    reached = case.digits(params)
    assert np.isfinite(out.cost)
    if (name, start) in nls.SCIPY_TIGHT_6:
        assert reached >= 6, (reached, params)
        local = dict((tuple(m.values()), f) for m, f in case.local_minima)
        index = nls.minimum_digits(params, case.minima(), case.zero_scale)[1]
        reference = case.minima()[index]
        expected = local.get(tuple(reference.values()), case.sum_squares)
        assert 2 * out.cost == pytest.approx(expected, rel=1e-9, abs=1e-20)
    else:
        assert reached < 6, (reached, params)


def test_scipy_tight_record_covers_most_runs():
    assert len(nls.SCIPY_TIGHT_6) == 30
    assert len(RUNS) == 38
