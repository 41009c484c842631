"""fk.solve: every method reaches the optimum; logs, messages, chaining, caching, bad input."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optimistix as optx
import pytest

import fitkit as fk
from fitkit.examples.gaussians import make_problem
from fitkit.solving import METHODS, ConvergenceError, ConvergenceWarning, UnknownMethodError

CHI2R_OPTIMUM = 1.0282461240223641  # BFGS optimum of the tutorial's problem (float64)


class Rosenbrock(fk.Observation):
    """Residuals (10 (y - x^2), 1 - x): half the Rosenbrock function as the summed squares."""

    def predict(self, params, model):
        x, y = params["xy"][0], params["xy"][1]
        return jnp.stack([10.0 * (y - x**2), 1.0 - x])


class Scaled(fk.Observation):
    """A quadratic whose two curvatures differ by 1e16 (params in badly chosen units)."""

    def predict(self, params, model):
        return jnp.stack([params["a"] * 1e6, params["b"] * 1e-2])


@pytest.fixture(scope="module")
def gaussians():
    problem, _, start = make_problem()
    reference = fk.solve(problem, start, method="bfgs", rtol=1e-10, atol=1e-10)
    assert reference.converged, reference.message
    return problem, start, reference


def relative_error(params, reference):
    a, b = fk.tree.ravel(params)[0], fk.tree.ravel(reference)[0]
    return float(jnp.max(jnp.abs(a / b - 1)))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_reaches_the_gaussians_optimum(gaussians, method):
    problem, start, reference = gaussians
    res = fk.solve(problem, start, method=method, max_steps=5000)
    assert res.converged, res.message
    assert res.method == f"solve:{method}"
    assert abs(float(problem.chi2r(res.params)) / CHI2R_OPTIMUM - 1) < 1e-3
    assert relative_error(res.params, reference.params) < 1e-6
    assert res.loss == pytest.approx(float(problem.loss(res.params)), rel=1e-12)
    assert len(res.history["loss"]) == res.steps == res.stats["num_steps"]
    assert res.stats["num_accepted"] <= res.steps
    evals = {k: v for k, v in res.stats.items() if k.endswith("_evals")}
    assert evals and all(v >= res.stats["num_accepted"] for k, v in evals.items() if k != "hessian_evals")


def test_bfgs_matches_the_tutorial(gaussians):
    problem, start, _ = gaussians
    res = fk.solve(problem, start, method="bfgs")
    assert res.converged and res.steps <= 27
    assert float(problem.chi2r(res.params)) == pytest.approx(CHI2R_OPTIMUM, abs=1e-9)
    assert res.stats["loss_evals"] == res.steps and res.stats["grad_evals"] == res.stats["num_accepted"]
    assert "changed every parameter by less than atol + rtol*|parameter|" in res.message
    # the loss history comes from the solver's own state: the first point is the start
    assert res.history["loss"][0] == pytest.approx(float(problem.loss(start)), rel=1e-12)
    assert np.nanmin(res.history["loss"]) == pytest.approx(res.loss, rel=1e-12)


@pytest.mark.parametrize("method", ["bfgs", "newton", "levenberg-marquardt", "dogleg", "nelder-mead"])
def test_rosenbrock(method):
    problem = fk.Problem(None, Rosenbrock(data=jnp.zeros(2), error=jnp.ones(2)))
    res = fk.solve(problem, {"xy": jnp.array([-1.2, 1.0])}, method=method, max_steps=2000)
    assert res.converged, res.message
    np.testing.assert_allclose(res.params["xy"], [1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("method", ["bfgs", "newton", "gauss-newton", "levenberg-marquardt"])
def test_badly_scaled_quadratic(method):
    problem = fk.Problem(None, Scaled(data=jnp.array([100.0, 100.0]), error=jnp.ones(2)))
    res = fk.solve(problem, {"a": jnp.array(1e-3), "b": jnp.array(1e3)}, method=method)
    assert res.converged, res.message
    assert float(res.params["a"]) == pytest.approx(1e-4, rel=1e-6)
    assert float(res.params["b"]) == pytest.approx(1e4, rel=1e-6)


def test_chaining_starts_where_the_previous_result_ended(gaussians):
    problem, start, reference = gaussians
    with pytest.warns(ConvergenceWarning, match="max_steps=8"):
        first = fk.solve(problem, start, method="lbfgs", max_steps=8)
    assert not first.converged
    polished = fk.solve(problem, first, method="bfgs")
    assert polished.history["loss"][0] == pytest.approx(first.loss, rel=1e-12)
    assert polished.converged and relative_error(polished.params, reference.params) < 1e-6


def test_not_converged_warns_or_raises(gaussians):
    problem, start, _ = gaussians
    with pytest.warns(ConvergenceWarning) as record:
        res = fk.solve(problem, start, method="bfgs", max_steps=5)
    assert not res.converged and res.steps == 5 and res.stats["outcome"] == "max_steps"
    assert res.message.startswith("Not converged: reached max_steps=5")
    assert str(record[0].message) == res.message
    # best-so-far: the lowest loss seen, not the last iterate
    assert res.loss == pytest.approx(np.nanmin(res.history["loss"]), rel=1e-12)
    with pytest.raises(ConvergenceError, match="max_steps=5") as err:
        fk.solve(problem, start, method="bfgs", max_steps=5, throw=True)
    assert err.value.result.steps == 5


def test_non_finite_start_says_so(gaussians):
    problem, start, _ = gaussians
    bad = {**start, "std": jnp.array([jnp.nan, 2.0])}
    with pytest.raises(fk.ParamsError, match=r"std\[0\] = nan"):
        fk.solve(problem, bad, method="bfgs")
    # a finite start whose model overflows is only found by running: flagged, never valid
    huge = {**start, "power": jnp.array([-800.0, -800.0])}
    with pytest.warns(ConvergenceWarning, match="NOT VALID"):
        res = fk.solve(problem, huge, method="bfgs")
    assert not res.valid and "non_finite" in res.flags
    assert "RESULTS" not in res.message and "nonfinite" not in res.message


def test_verbose_log_lines(gaussians, capsys):
    problem, start, _ = gaussians
    res = fk.solve(problem, start, method="bfgs", verbose=True, log_every=10)
    lines = capsys.readouterr().out.strip().splitlines()
    assert res.steps == 25
    # title, header, steps 10, 20 and the last (25), and the stop line
    assert len(lines) == 6
    assert lines[0].startswith("fk.solve: bfgs on the loss, 6 params")
    assert re.split(r"\s+", lines[1].strip())[:3] == ["Step", "loss", "||dx||"]
    assert [int(line.split()[0]) for line in lines[2:5]] == [10, 20, 25]
    row = lines[4].split()
    assert float(row[1]) == pytest.approx(res.history["loss"][24], rel=1e-6)
    assert int(row[5]) == res.stats["loss_evals"]
    assert res.message.startswith(lines[5]) and lines[5].startswith("Converged after 25 steps")
    assert res.valid and "Valid: edm=" in res.message


def test_verbose_every_step_least_squares(gaussians, capsys):
    problem, start, _ = gaussians
    res = fk.solve(problem, start, method="levenberg-marquardt", verbose=True)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == res.steps + 3
    assert "on the residuals" in lines[0]
    # the log reports the problem's loss (mean squared z-score) for least squares too
    assert float(lines[2].split()[1]) == pytest.approx(float(problem.loss(start)), rel=1e-6)


def test_unknown_method_lists_the_valid_ones(gaussians):
    problem, start, _ = gaussians
    with pytest.raises(UnknownMethodError, match="levenberg-marquardt") as err:
        fk.solve(problem, start, method="adam")
    assert isinstance(err.value, ValueError)
    assert all(name in str(err.value) for name in METHODS)
    with pytest.raises(TypeError, match="history_length"):
        fk.solve(problem, start, method="bfgs", history_length=5)
    with pytest.raises(ValueError, match="max_steps"):
        fk.solve(problem, start, max_steps=0)
    with pytest.raises(fk.ParamsError):
        fk.solve(problem, {**start, "mean": jnp.ones(3)})
    with pytest.raises(TypeError, match="float"):
        fk.solve(problem, {**start, "mean": jnp.array([2, -3])})


def test_optimistix_instances_and_the_compile_cache(gaussians):
    problem, start, _ = gaussians
    res = fk.solve(problem, start, method=optx.BestSoFarMinimiser(optx.BFGS(1e-8, 1e-8)))
    assert res.converged and res.steps == 25 and res.method == "solve:BestSoFarMinimiser"
    assert res.stats["grad_evals"] == res.stats["num_accepted"]
    lm = fk.solve(problem, start, method=optx.LevenbergMarquardt(1e-8, 1e-8))
    assert lm.converged and lm.stats["objective"] == "residuals"
    again = fk.solve(problem, start, method=optx.LevenbergMarquardt(1e-8, 1e-8))
    assert again.compile_time == 0.0 and again.steps == lm.steps
    with pytest.raises(TypeError, match="instance"):
        fk.solve(problem, start, method=optx.BFGS(1e-8, 1e-8), history_length=3)


def test_priors_give_the_map_point(gaussians):
    problem, start, _ = gaussians
    prior = dist.Normal(jnp.array([2.0, -3.0]), 1e-3)
    with_prior = fk.Problem(problem.model, problem.observations, priors={"mean": prior})
    res = fk.solve(with_prior, start, method="bfgs")
    assert res.stats["objective"] == "nll" and res.converged
    # a tight prior pins the means near its centre
    np.testing.assert_allclose(res.params["mean"], [2.0, -3.0], atol=5e-4)
    with pytest.raises(ValueError, match="cannot hold the priors"):
        fk.solve(with_prior, start, method="levenberg-marquardt")
    auto = fk.solve(with_prior, start)  # the default picks Newton on the posterior
    assert auto.valid and auto.stats["tried"][0] == "newton"
    np.testing.assert_allclose(auto.params["mean"], res.params["mean"], rtol=1e-7)


def test_float32(gaussians):
    problem, start, _ = gaussians
    start32 = jax.tree.map(lambda x: x.astype(jnp.float32), start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = fk.solve(problem, start32, method="bfgs", rtol=1e-5, atol=1e-5)
    # with x64 on, float32 start params are cast to float64 before anything is compiled
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(res.params))
    assert float(problem.chi2r(res.params)) == pytest.approx(CHI2R_OPTIMUM, rel=1e-4)


def test_result_round_trips_and_frames(gaussians, tmp_path):
    problem, start, _ = gaussians
    res = fk.solve(problem, start, method="dogleg")
    frame = res.to_dataframe()
    assert list(frame.columns[:6]) == ["step", "loss", "grad_norm", "dx_norm", "step_size", "accepted"]
    assert len(frame) == res.steps
    res.save(tmp_path / "res.npz")
    loaded = fk.FitResult.load(tmp_path / "res.npz")
    assert loaded.message == res.message and loaded.stats == res.stats
