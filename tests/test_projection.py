import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitkit as fk
from fitkit.fitting._natural import damped_inverse, natural_gradient


def _spd(n, cond, seed=0):
    """A random symmetric positive-definite matrix with the given condition number."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.logspace(0, np.log10(cond), n)) @ q.T


@pytest.fixture
def params():
    return {
        "wfe": jnp.array([1e-3, -2e-3, 5e-4]),
        "flux": {"blue": jnp.array(6.0)},
        "pos": jnp.array([0.1, 0.2]),
    }


def _scaled_fisher(params, cond=1e6, seed=1):
    """A Fisher matrix for params of very different units: scale by 1/size^2."""
    flat, _ = fk.tree.ravel(params)
    units = np.abs(np.asarray(flat)) + 1e-3
    return _spd(flat.size, cond, seed) / units[:, None] / units[None, :]


def test_round_trip_and_whitening(params):
    fisher = _scaled_fisher(params)
    proj = fk.Projection.from_fisher(fisher, center=params)
    assert proj.dim == 6 and proj.names[0] == "flux.blue"
    u = jnp.linspace(-1.0, 2.0, 6)
    np.testing.assert_allclose(proj.to_latent(proj.to_params(u)), u, atol=1e-10)
    np.testing.assert_allclose(proj.to_latent(params), 0.0, atol=1e-12)
    latent_fisher = proj.matrix.T @ fisher @ proj.matrix
    np.testing.assert_allclose(latent_fisher, np.eye(6), atol=1e-8)
    back = proj.to_params(jnp.zeros(6))
    np.testing.assert_allclose(back["pos"], params["pos"])


def test_from_covariance_reproduces_covariance(params):
    cov = np.linalg.inv(_scaled_fisher(params))
    proj = fk.Projection.from_covariance(cov, center=params)
    np.testing.assert_allclose(proj.matrix @ proj.matrix.T, cov, rtol=1e-8, atol=1e-14 * np.abs(cov).max())
    u = jnp.arange(6.0)
    np.testing.assert_allclose(proj.to_latent(proj.to_params(u)), u, atol=1e-9)


def test_unconstrained_parameter_is_named_and_truncation_drops_it(params):
    fisher = np.asarray(_scaled_fisher(params))
    fisher[4, :] = fisher[:, 4] = 0.0  # wfe[1] no longer affects anything
    with pytest.raises(fk.ProjectionError, match=r"wfe\[1\] is not constrained by the data"):
        fk.Projection.from_fisher(fisher, center=params)
    proj = fk.Projection.from_fisher(fisher, center=params, truncate=1e-10)
    assert proj.dim == 5 and any("wfe[1]" in d for d in proj.dropped)
    moved = fk.tree.ravel(proj.to_params(jnp.ones(5)))[0] - fk.tree.ravel(params)[0]
    assert abs(float(moved[4])) < 1e-15 and float(jnp.abs(moved).max()) > 1e-6


def test_bad_matrices(params):
    with pytest.raises(fk.ProjectionError, match="6 parameters"):
        fk.Projection.from_fisher(np.eye(3), center=params)
    with pytest.raises(fk.ProjectionError, match="not symmetric"):
        fk.Projection.from_fisher(np.triu(np.ones((6, 6))), center=params)
    with pytest.raises(fk.ProjectionError, match=r"wfe\[2\] has negative curvature"):
        fk.Projection.from_fisher(np.diag([1.0, 1, 1, 1, 1, -1]), center=params)
    with pytest.raises(fk.ProjectionError, match=r"combination .* has negative curvature"):
        fk.Projection.from_fisher(np.array([[1.0, 2.0], [2.0, 1.0]]), center=jnp.zeros(2))
    with pytest.raises(fk.CurvatureError, match="NaN or inf"):
        fk.Projection.from_fisher(np.full((6, 6), np.nan), center=params)


def test_natural_gradient_takes_one_step_to_quadratic_optimum(params):
    hessian = jnp.asarray(_scaled_fisher(params, cond=1e8))
    flat0, unravel = fk.tree.ravel(params)
    target = flat0 * 1.5 + 0.01

    def loss(p):
        d = fk.tree.ravel(p)[0] - target
        return 0.5 * d @ hessian @ d

    opt = optax.chain(natural_gradient(hessian, damping=0.0), optax.sgd(1.0))
    state = opt.init(params)
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(fk.tree.ravel(new)[0], target, rtol=1e-7)
    assert float(loss(new)) < 1e-10 * float(loss(params))


def test_natural_gradient_refresh_and_errors(params):
    n = fk.tree.size(params)
    calls = jnp.arange(1.0, n + 1)
    fn = lambda p: jnp.diag(calls * (1.0 + jnp.sum(fk.tree.ravel(p)[0] ** 2)))
    opt = natural_gradient(fn, damping=0.0, refresh_every=2)
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    first, state = opt.update(grads, state, params)
    np.testing.assert_allclose(fk.tree.ravel(first)[0], 1.0 / np.diag(fn(params)), rtol=1e-12)
    with pytest.raises(ValueError, match="refresh_every"):
        natural_gradient(jnp.eye(n), refresh_every=3)
    with pytest.raises(ValueError, match=r"\(6, 6\)"):
        natural_gradient(jnp.eye(2)).init(params)
    np.testing.assert_allclose(damped_inverse(jnp.diag(jnp.array([4.0, 0.0])), 0.25), np.diag([0.2, 4.0]))
