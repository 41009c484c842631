"""fk.jacobian, fk.hessian and fk.fisher against dense JAX references."""

import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from jax.flatten_util import ravel_pytree

import fitkit as fk
from fitkit.curvature import _blocks
from fitkit.examples import gaussians


class Params(eqx.Module):
    a: jax.Array
    b: jax.Array


def _dict_params():
    return {"a": jnp.linspace(0.1, 0.9, 3), "b": jnp.array(0.4), "c": jnp.array([[0.2, -0.5], [1.1, 0.7]])}


def _tuple_params():
    return (jnp.array([0.3, -0.2, 0.8, 1.2, -0.6]), jnp.array(0.25))


def _module_params():
    return Params(a=jnp.array([0.5, -1.0, 0.2]), b=jnp.array([[0.1, 0.3], [0.9, -0.4]]))


PARAMS = {"dict": _dict_params, "tuple": _tuple_params, "module": _module_params}


def _scalar_fn(params):
    x = ravel_pytree(params)[0]
    weights = jnp.arange(1.0, x.size + 1)
    return jnp.sum(weights * jnp.sin(x) ** 2) + jnp.prod(jnp.cos(x[:4])) + jnp.sum(x) ** 3 / 7


def _vector_fn(params):
    x = ravel_pytree(params)[0]
    grid = jnp.linspace(-1.0, 1.0, 11)
    return {"curve": jnp.exp(-((grid[:, None] - x[None, :]) ** 2)).sum(1), "tail": jnp.tanh(x) * x[0]}


def _dense_hessian(f, params):
    x, unravel = ravel_pytree(params)
    return jax.jit(jax.hessian(lambda z: f(unravel(z))))(x)


def _dense_jacobian(f, params):
    x, unravel = ravel_pytree(params)
    return jax.jit(jax.jacobian(lambda z: ravel_pytree(f(unravel(z)))[0]))(x)


def _assert_close(actual, expected, rtol=1e-10):
    scale = float(jnp.abs(expected).max())
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("kind", PARAMS)
@pytest.mark.parametrize("batch_size", [1, 3, 5, 100, None])
def test_hessian_equals_jax_hessian(kind, batch_size):
    params = PARAMS[kind]()
    expected = _dense_hessian(_scalar_fn, params)
    actual = fk.hessian(_scalar_fn, params, batch_size=batch_size)
    assert actual.shape == expected.shape == (fk.tree.size(params),) * 2
    _assert_close(actual, expected)
    np.testing.assert_array_equal(actual, actual.T)


@pytest.mark.parametrize("kind", PARAMS)
@pytest.mark.parametrize("batch_size", [1, 3, 7, None])
def test_jacobian_equals_jax_jacobian(kind, batch_size):
    params = PARAMS[kind]()
    expected = _dense_jacobian(_vector_fn, params)
    actual = fk.jacobian(_vector_fn, params, batch_size=batch_size)
    assert actual.shape == expected.shape
    _assert_close(actual, expected)


def test_hessian_and_jacobian_under_jit_vmap_and_checkpoint():
    params = _dict_params()
    expected = _dense_hessian(_scalar_fn, params)
    _assert_close(jax.jit(lambda p: fk.hessian(_scalar_fn, p, batch_size=3))(params), expected)
    _assert_close(jax.jit(lambda p: fk.hessian(_scalar_fn, p))(params), expected)
    _assert_close(fk.hessian(_scalar_fn, params, batch_size=2, checkpoint=True), expected)
    scaled = jax.vmap(lambda s: fk.hessian(lambda p: s * _scalar_fn(p), params, batch_size=3))(
        jnp.arange(3.0)
    )
    _assert_close(scaled[2], 2 * expected)
    jac = jax.jit(lambda p: fk.jacobian(_vector_fn, p, batch_size=4, checkpoint=True))(params)
    _assert_close(jac, _dense_jacobian(_vector_fn, params))


def test_bad_input_is_rejected_before_compiling():
    params = _dict_params()
    with pytest.raises(TypeError, match="real scalar"):
        fk.hessian(_vector_fn, params)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        fk.hessian(_scalar_fn, params, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be a positive integer"):
        fk.jacobian(_vector_fn, params, batch_size=2.5)
    with pytest.raises(ValueError, match="max_memory"):
        fk.hessian(_scalar_fn, params, max_memory=-1)
    with pytest.raises(TypeError, match="'n'.*write 1.0, not 1"):
        fk.hessian(lambda p: p["n"] * 1.0, {"n": jnp.array(3)})
    with pytest.raises(TypeError, match="must be a function"):
        fk.jacobian("residuals", params)


def test_batch_size_is_planned_from_the_compiled_block_cost():
    params = _dict_params()
    x, unravel = ravel_pytree(params)
    n = x.size

    def make_block(b):
        def block(z):
            _, hvp = jax.linearize(jax.grad(lambda w: _scalar_fn(unravel(w))), z)
            return jax.vmap(hvp)(_blocks.one_hot(jnp.arange(b), n, z.dtype))

        return block

    assert _blocks.plan_batch_size(make_block, x, n, max_memory=1) == 1
    assert _blocks.plan_batch_size(make_block, x, n, max_memory=2**30) == n
    # Evened out: 8 columns in blocks of at most 5 become two blocks of 4.
    per_column = 8 * n * 16  # generous bound on one HVP's working memory
    planned = _blocks.plan_batch_size(make_block, x, n, max_memory=5 * per_column)
    assert 1 <= planned <= n and n % planned == 0 or planned == n
    # A budget just above the output (the matrix and its symmetrised copy) still gives the
    # exact Hessian, one column at a time; one below it is refused before compiling, with the size.
    output = 2 * n * n * 8
    _assert_close(fk.hessian(_scalar_fn, params, max_memory=output + 1), _dense_hessian(_scalar_fn, params))
    with pytest.raises(ValueError, match=rf"max_memory=1 bytes is too small.*\({output} bytes\)"):
        fk.hessian(_scalar_fn, params, max_memory=1)
    with pytest.raises(
        ValueError, match=rf"max_memory=10 bytes is too small.*\({2 * (11 + n) * n * 8} bytes\)"
    ):
        fk.jacobian(_vector_fn, params, max_memory=10)


# ----------------------------------------------------------------- Fisher


def _poisson_problem():
    class Rate(fk.Module):
        x: jax.Array

        def __call__(self, params):
            return jnp.exp(params["log_amp"] + params["slope"] * self.x) + params["floor"]

    class Counts(fk.Observation):
        def predict(self, params, model):
            return model(params)

    x = jnp.linspace(0.0, 2.0, 40)
    counts = jnp.round(3.0 * jnp.exp(0.5 * x) + 1.0)
    params = {"log_amp": jnp.array(1.0), "slope": jnp.array(0.6), "floor": jnp.array(1.5)}
    return fk.Problem(Rate(x=x), Counts(data=counts), likelihood="poisson"), params


def _dense_fisher(problem, params):
    jac = _dense_jacobian(problem.flat_predictions, params)
    return jac.T @ (problem.weights(params)[:, None] * jac)


@pytest.mark.parametrize("likelihood", ["normal", "poisson"])
@pytest.mark.parametrize("max_memory", [None, "tight"])
def test_fisher_equals_dense_jtwj(likelihood, max_memory):
    # A budget just above the n x n output (and its copy) but far below three copies of J
    # forces the JVP+VJP product route that never holds J whole.
    if likelihood == "normal":
        problem, _, params = gaussians.make_problem()
    else:
        problem, params = _poisson_problem()
    if max_memory == "tight":
        n = fk.tree.size(params)
        max_memory = 2 * n * n * 8 + 1
        assert 3 * problem.n_data * n * 8 > max_memory
    expected = _dense_fisher(problem, params)
    _assert_close(fk.fisher(problem, params, batch_size=4, max_memory=max_memory), expected)
    _assert_close(fk.fisher(problem, params, max_memory=max_memory), expected)


def test_fisher_plus_residual_term_is_the_nll_hessian():
    problem, _, params = gaussians.make_problem()  # away from the optimum: a large residual term
    x, unravel = ravel_pytree(params)
    # nll = chi2 / 2 + const, so H = J^T W J - sum_i w_i (d_i - p_i) d^2 p_i
    weighted = problem.residuals(params) * jnp.sqrt(problem.weights(params))
    residual_term = jax.jit(jax.hessian(lambda z: jnp.sum(weighted * problem.flat_predictions(unravel(z)))))(
        x
    )
    hess = fk.hessian(problem.nll, params, batch_size=4)
    fisher = fk.fisher(problem, params)
    _assert_close(fisher - residual_term, hess, rtol=1e-9)
    assert float(jnp.abs(residual_term).max()) > 1e-3 * float(jnp.abs(hess).max())


def test_fisher_includes_prior_curvature_and_accepts_a_fit_result():
    base, _, params = gaussians.make_problem()
    problem = fk.Problem(base.model, base.observations, priors={"std": dist.Normal(1.0, 0.1)})
    expected = _dense_fisher(problem, params).at[4:, 4:].add(jnp.eye(2) / 0.1**2)
    result = fk.FitResult(params=params, loss=0.0, steps=0, converged=True, message="")
    _assert_close(fk.fisher(problem, result), expected)
    _assert_close(jax.jit(lambda p: fk.fisher(problem, p))(params), expected)
    with pytest.raises(TypeError, match="fk.Problem"):
        fk.fisher(problem.nll, params)


# ----------------------------------------------------------------- sharding

SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    import fitkit as fk
    from fitkit.examples import gaussians
    assert jax.device_count() == 4, jax.devices()
    one = [jax.devices()[0]]
    f = lambda p: jnp.sum(jnp.sin(p["a"]) ** 2 * jnp.arange(1.0, 12.0)) + jnp.prod(jnp.cos(p["a"][:5]))
    params = {"a": jnp.linspace(-1.0, 1.0, 11)}
    x = params["a"]
    dense = jax.hessian(lambda z: f({"a": z}))(x)
    out = {}
    for b in (1, 3):
        sharded = jax.jit(lambda p: fk.hessian(f, p, batch_size=b))(params)
        single = fk.hessian(f, params, batch_size=b, devices=one)
        out[f"hessian{b}"] = [float(jnp.abs(sharded - single).max()), float(jnp.abs(sharded - dense).max())]
    problem, _, p0 = gaussians.make_problem()
    jac4 = fk.jacobian(problem.residuals, p0, batch_size=2)
    jac1 = fk.jacobian(problem.residuals, p0, batch_size=2, devices=one)
    out["jacobian"] = [float(jnp.abs(jac4 - jac1).max()), 0.0]
    fis4 = fk.fisher(problem, p0, batch_size=2, max_memory=1)
    fis1 = fk.fisher(problem, p0, batch_size=2, max_memory=1, devices=one)
    out["fisher"] = [float(jnp.abs(fis4 - fis1).max() / jnp.abs(fis1).max()), 0.0]
    hlo = jax.jit(lambda p: fk.hessian(f, p, batch_size=3)).lower(params).compile().as_text()
    out["partitions"] = "num_partitions=4" in hlo
    print(json.dumps(out))
    """
)


def test_sharded_blocks_over_four_devices_match_one_device(on_devices):
    out = on_devices(SHARDED_SCRIPT, 4, timeout=300)
    assert out.pop("partitions") is True
    for name, (vs_single, vs_dense) in out.items():
        assert vs_single <= 1e-12, name
        assert vs_dense <= 1e-10, name
