"""The verdict's iterative path (Lanczos + CG, used above DENSE_LIMIT params) against the dense one."""

import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk
from fitkit import _verdict


class Design(fk.Module):
    matrix: jnp.ndarray


class Linear(fk.Observation):
    def predict(self, params, model):
        return model.matrix @ params["x"]


class Product(fk.Observation):
    def predict(self, params, model):
        return jnp.atleast_1d(params["x"][0] * params["x"][1]) + 0.0 * model.matrix[0, :1]


@pytest.fixture
def iterative(monkeypatch):
    monkeypatch.setattr(_verdict, "DENSE_LIMIT", 0)


def _linear(scales, seed=0):
    rng = np.random.default_rng(seed)
    design = rng.normal(size=(3 * len(scales), len(scales))) / np.asarray(scales)
    data = rng.normal(size=design.shape[0])
    problem = fk.Problem(Design(jnp.asarray(design)), Linear(data=data, error=np.ones(len(data))))
    best = np.linalg.lstsq(design, data, rcond=None)[0]
    return problem, design, data, best


@pytest.mark.parametrize("scales", [(1.0, 2.0, 0.5), (1e-3, 1.0, 1e3, 1e-6)])
def test_iterative_edm_matches_the_closed_form(iterative, scales):
    problem, design, data, best = _linear(scales)
    offset = 1e-3 * np.asarray(scales)
    verdict = _verdict.assess(problem, {"x": jnp.asarray(best + offset)})
    # nll = chi2 / 2 is exactly quadratic: edm = 0.5 d^T (A^T A) d for an offset d from the optimum
    exact = 0.5 * offset @ (design.T @ design) @ offset
    assert verdict.edm == pytest.approx(exact, rel=1e-6)
    assert verdict.flags == ("above_max_edm",)
    assert _verdict.assess(problem, {"x": jnp.asarray(best)}).valid


@pytest.mark.parametrize("point", [[0.0, 0.0], [1e-3, 0.0], [0.3, -0.2]])
def test_iterative_path_catches_saddles_as_the_dense_one_does(monkeypatch, point):
    # nll = 0.5 (x0 x1 - 1)^2 has a saddle at the origin and is indefinite around it
    problem = fk.Problem(Design(jnp.eye(2)), Product(data=np.ones(1), error=np.ones(1)))
    params = {"x": jnp.asarray(point)}
    dense = _verdict.assess(problem, params)
    monkeypatch.setattr(_verdict, "DENSE_LIMIT", 0)
    iterative = _verdict.assess(problem, params)
    assert dense.flags == iterative.flags == ("curvature_not_positive_definite",)
    assert not iterative.valid and iterative.edm == np.inf


def test_a_cg_that_does_not_converge_is_flagged(monkeypatch):
    problem, _, _, best = _linear((1e-4, 1.0, 1e4, 1e-2, 1e2, 1.0), seed=3)
    monkeypatch.setattr(_verdict, "DENSE_LIMIT", 0)
    monkeypatch.setattr(_verdict, "CG_STEPS", 1)
    verdict = _verdict.assess(problem, {"x": jnp.asarray(best * 1.01)})
    assert verdict.flags == ("edm_not_converged",) and "did not converge" in verdict.text
