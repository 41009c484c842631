"""fk.fit with natural gradients (precondition=) and in a whitened latent space (projection=)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitkit as fk


class Linear(fk.Module):
    design: jnp.ndarray


class Direct(fk.Observation):
    def predict(self, params, model):
        theta = jnp.concatenate([params["tiny"], params["huge"][None]])
        return model.design @ theta


@pytest.fixture(scope="module")
def quadratic():
    """A linear-Gaussian problem (quadratic loss) with params of scales 1e-6 and 1e4."""
    rng = np.random.default_rng(3)
    scales = np.array([1e-6, 2e-6, 1e4])
    design = rng.normal(size=(40, 3)) / scales[None, :]
    truth = rng.normal(size=3) * scales
    data = design @ truth + rng.normal(size=40)
    problem = fk.Problem(Linear(design=jnp.asarray(design)), Direct(data=data, error=np.ones(40)))
    optimum = np.linalg.lstsq(design, data, rcond=None)[0]
    start = {"tiny": jnp.zeros(2), "huge": jnp.asarray(0.0)}
    best = {"tiny": jnp.asarray(optimum[:2]), "huge": jnp.asarray(optimum[2])}
    return problem, start, best


def _close(a, b, rtol):
    np.testing.assert_allclose(fk.tree.ravel(a)[0], fk.tree.ravel(b)[0], rtol=rtol)


@pytest.mark.parametrize("precondition", ["fisher", "hessian", "matrix"])
def test_natural_gradient_one_newton_step(quadratic, precondition):
    problem, start, best = quadratic
    if precondition == "matrix":
        precondition = fk.fisher(problem, start)
    res = fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition=precondition, progress=False)
    # steps=1 records the start's loss; the result holds the best of (start, after one step)
    _close(res.params, best, rtol=1e-6)


def test_natural_gradient_with_projection_and_per_path_optimisers(quadratic):
    problem, start, best = quadratic
    proj = fk.Projection.from_fisher(fk.fisher(problem, best), center=best)
    res = fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition=proj, progress=False)
    _close(res.params, best, rtol=1e-6)
    # Per-path optimisers after the preconditioner: "huge" frozen, "tiny" moves.
    res = fk.fit(problem, start, {"tiny": optax.sgd(0.5)}, steps=20, precondition="fisher", progress=False)
    assert float(res.params["huge"]) == 0.0 and float(jnp.abs(res.params["tiny"]).sum()) > 0


def test_projected_fit_one_step(quadratic):
    problem, start, best = quadratic
    res = fk.fit(problem, start, optax.sgd(1.0), steps=2, projection="fisher", progress=False)
    _close(res.params, best, rtol=1e-6)
    assert set(res.params) == {"tiny", "huge"}


def test_geometry_argument_errors(quadratic):
    problem, start, _ = quadratic
    with pytest.raises(ValueError, match="not both"):
        fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition="fisher", projection="fisher")
    with pytest.raises(ValueError, match="one optax optimiser"):
        fk.fit(problem, start, {"tiny": optax.sgd(1.0)}, steps=1, projection="fisher")
    with pytest.raises(ValueError, match="unknown precondition"):
        fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition="newton")
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition=jnp.eye(2))
    with pytest.raises(ValueError, match="refresh_every"):
        fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition=jnp.eye(3), refresh_every=5)
    with pytest.raises(TypeError, match="precondition must be"):
        fk.fit(problem, start, optax.sgd(1.0), steps=1, precondition=[[1.0]])


def test_refreshed_fisher_matches_fixed_on_a_quadratic(quadratic):
    problem, start, best = quadratic
    res = fk.fit(
        problem, start, optax.sgd(0.5), steps=30, precondition="fisher", refresh_every=5, progress=False
    )
    _close(res.params, best, rtol=1e-6)
