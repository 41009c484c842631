"""fk.solve in a whitened latent space (projection=)."""

import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk


class Linear(fk.Module):
    design: jnp.ndarray


class Direct(fk.Observation):
    def predict(self, params, model):
        return model.design @ params["x"]


@pytest.fixture(scope="module")
def ill_conditioned():
    """A quadratic loss whose Hessian has condition number 1e10."""
    rng = np.random.default_rng(0)
    n = 6
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    design = (q * np.sqrt(np.logspace(0, 10, n))) @ q.T
    truth = rng.normal(size=n)
    problem = fk.Problem(Linear(design=jnp.asarray(design)), Direct(data=design @ truth, error=np.ones(n)))
    return problem, {"x": jnp.zeros(n)}, truth


def test_projected_lbfgs_converges_where_raw_does_not(ill_conditioned):
    problem, start, truth = ill_conditioned
    with pytest.warns(fk.ConvergenceWarning):
        raw = fk.solve(problem, start, method="lbfgs", max_steps=50)
    projected = fk.solve(problem, start, method="lbfgs", projection="fisher", max_steps=50)
    assert not raw.converged and np.abs(raw.params["x"] - truth).max() > 1e-2
    assert projected.converged and projected.steps <= 8
    np.testing.assert_allclose(projected.params["x"], truth, atol=1e-8)
    assert projected.method == "solve:lbfgs+projection"


def test_projection_object_and_least_squares(ill_conditioned):
    problem, start, truth = ill_conditioned
    proj = fk.Projection.from_fisher(fk.fisher(problem, start), center=start)
    for method in ("bfgs", "levenberg-marquardt"):
        res = fk.solve(problem, start, method=method, projection=proj, max_steps=50)
        assert res.converged
        np.testing.assert_allclose(res.params["x"], truth, atol=1e-8)


def test_projection_errors(ill_conditioned):
    problem, start, _ = ill_conditioned
    with pytest.raises(ValueError, match="unknown projection"):
        fk.solve(problem, start, projection="newton")
    with pytest.raises(ValueError, match="projection has 2 params but params have 6"):
        fk.solve(problem, start, projection=fk.Projection.from_fisher(np.eye(2), {"y": jnp.zeros(2)}))


def test_solve_started_at_its_minimum_stops_as_converged():
    # optimistix only tests convergence on accepted steps; at a minimum to machine
    # precision every trial is rejected, which must end the solve, not run to max_steps.
    problem, _, start = fk.examples.gaussians.make_problem()
    first = fk.solve(problem, start, method="lbfgs")
    again = fk.solve(problem, first, method="lbfgs", max_steps=500)
    assert again.converged and again.steps <= 70
    assert "found no lower loss" in again.message or "Converged after" in again.message
    assert again.loss <= first.loss
