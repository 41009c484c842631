"""fk.covariance and Covariance: closed forms, honest failures, draws and predictive bands."""

import warnings

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import numpyro.distributions as dist
import pytest

import fitkit as fk
from fitkit import _cache, _config


class Linear(fk.Module):
    """y = design @ theta, with theta read from named params (each a scalar or a vector)."""

    design: jax.Array
    order: tuple = ()

    def __call__(self, params):
        theta = jnp.concatenate([jnp.ravel(params[k]) for k in self.order])
        return self.design @ theta


class Points(fk.Observation):
    def predict(self, params, model):
        return model(params)


def _linear_problem(design, error, order, priors=None, seed=0):
    design = jnp.asarray(design, float)
    data = jr.normal(jr.key(seed), (design.shape[0],))
    model = Linear(design=design, order=tuple(order))
    return fk.Problem(model, Points(data=data, error=error), priors=priors)


@pytest.fixture(scope="module")
def linear():
    x = jnp.linspace(-1.0, 2.0, 30)
    design = jnp.stack([jnp.ones_like(x), x, x**2, jnp.sin(3 * x)], axis=1)
    error = 0.1 + 0.05 * jnp.abs(x)
    problem = _linear_problem(design, error, ["offset", "coeffs"])
    params = {"coeffs": jnp.array([0.5, -1.0, 0.2]), "offset": jnp.array(0.3)}
    # ravel order is coeffs then offset; the design is ordered offset, coeffs.
    design_ravel = design[:, [1, 2, 3, 0]]
    closed = np.linalg.inv(np.asarray(design_ravel.T @ (design_ravel / error[:, None] ** 2)))
    return problem, params, closed


@pytest.mark.parametrize(
    "method, max_memory, label",
    [("hessian", None, "hessian"), ("fisher", None, "fisher:svd"), ("fisher", 1, "fisher:matrix")],
)
def test_linear_gaussian_covariance_equals_the_closed_form(linear, method, max_memory, label):
    problem, params, closed = linear
    cov = fk.covariance(problem, params, method=method, batch_size=3, max_memory=max_memory)
    assert cov.method == label
    np.testing.assert_allclose(cov.matrix, closed, rtol=1e-10, atol=1e-14)
    assert cov.names == ("coeffs[0]", "coeffs[1]", "coeffs[2]", "offset")
    assert set(cov.std) == {"coeffs", "offset"} and cov.std["coeffs"].shape == (3,)
    np.testing.assert_allclose(cov.std["offset"], np.sqrt(closed[3, 3]), rtol=1e-10)
    corr = np.asarray(cov.correlation)
    np.testing.assert_allclose(np.diag(corr), 1.0, rtol=1e-12)
    np.testing.assert_allclose(corr[0, 1], closed[0, 1] / np.sqrt(closed[0, 0] * closed[1, 1]), rtol=1e-10)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), cov.mean, params))


def test_gaussian_priors_add_their_precision(linear):
    problem, params, closed = linear
    with_prior = fk.Problem(problem.model, problem.observations, priors={"offset": dist.Normal(0.0, 0.05)})
    precision = np.linalg.inv(closed)
    precision[3, 3] += 1 / 0.05**2
    for method in ("hessian", "fisher"):
        cov = fk.covariance(with_prior, params, method=method)
        np.testing.assert_allclose(cov.matrix, np.linalg.inv(precision), rtol=1e-10, atol=1e-14)


def test_unconstrained_parameter_is_named():
    design = np.stack([np.ones(20), np.linspace(0, 1, 20), np.zeros(20)], axis=1)
    problem = _linear_problem(design, 0.1, ["wfe"])
    params = {"wfe": jnp.array([0.1, 0.2, 0.3])}
    for method in ("hessian", "fisher"):
        with pytest.raises(fk.CurvatureError, match=r"wfe\[2\] is not constrained by the data") as err:
            fk.covariance(problem, params, method=method)
        assert isinstance(err.value, ValueError)
        assert err.value.unconstrained == ["wfe[2]"]


def test_degenerate_pair_is_named_as_a_combination():
    x = np.linspace(0, 1, 20)
    design = np.stack([x, x, np.ones(20)], axis=1)  # a and b only enter as a + b
    problem = _linear_problem(design, 0.1, ["a", "b", "c"])
    params = {"a": jnp.array(1.0), "b": jnp.array(2.0), "c": jnp.array(0.0)}
    with pytest.raises(fk.CurvatureError, match="a, b are degenerate") as err:
        fk.covariance(problem, params)
    assert sorted(err.value.unconstrained) == ["a", "b"]
    assert "0.71" in str(err.value)


def test_verdict_does_not_depend_on_units():
    # One parameter in units where it is ~1e-4, another ~1e3: curvatures 1e16 apart.
    x = np.linspace(0, 1, 25)
    design = np.stack([1e4 * np.sin(4 * x), 1e-4 * np.cos(3 * x)], axis=1)
    problem = _linear_problem(design, 0.1, ["tiny", "huge"])
    params = {"huge": jnp.array(1e3), "tiny": jnp.array(1e-4)}
    hess = np.asarray(fk.hessian(problem.nll, params))
    raw = np.linalg.eigvalsh(hess)
    assert raw[0] / raw[-1] < 2 * np.finfo(float).eps  # a naive eigenvalue test would call this singular
    cov = fk.covariance(problem, params)
    d = design[:, [1, 0]] / 0.1
    np.testing.assert_allclose(cov.matrix, np.linalg.inv(d.T @ d), rtol=1e-8)


def test_indefinite_hessian_names_the_direction():
    # nll = (a^2 - 1)^2 / (2 s^2) + ...: a maximum along a at a = 0.
    class Square(fk.Module):
        def __call__(self, params):
            return jnp.stack([params["a"] ** 2, params["b"], 2 * params["b"]])

    problem = fk.Problem(Square(), Points(data=jnp.array([1.0, 0.0, 0.0]), error=0.1))
    params = {"a": jnp.array(0.0), "b": jnp.array(0.0)}
    with pytest.raises(fk.CurvatureError, match="a has negative curvature") as err:
        fk.covariance(problem, params)
    assert err.value.unconstrained == ["a"]
    # The Fisher matrix is positive semi-definite: there `a` is merely unconstrained.
    with pytest.raises(fk.CurvatureError, match="a is not constrained by the data"):
        fk.covariance(problem, params, method="fisher")


def test_regularise_drops_and_lists_the_unconstrained_directions():
    design = np.stack([np.ones(20), np.linspace(0, 1, 20), np.zeros(20)], axis=1)
    problem = _linear_problem(design, 0.1, ["wfe"])
    params = {"wfe": jnp.array([0.1, 0.2, 0.3])}
    with pytest.warns(UserWarning, match=r"wfe\[2\] is not constrained"):
        cov = fk.covariance(problem, params, regularise=True)
    assert cov.dropped == ("wfe[2] is not constrained by the data",)
    d = design[:, :2] / 0.1
    np.testing.assert_allclose(cov.matrix[:2, :2], np.linalg.inv(d.T @ d), rtol=1e-10)
    np.testing.assert_allclose(cov.matrix[2], 0.0, atol=1e-20)
    with pytest.raises(ValueError, match="regularise"):
        fk.covariance(problem, params, regularise=-1.0)


def test_bad_arguments(linear):
    problem, params, _ = linear
    with pytest.raises(ValueError, match="unknown method"):
        fk.covariance(problem, params, method="laplace")
    with pytest.raises(TypeError, match="fk.Problem"):
        fk.covariance(problem.nll, params)
    with pytest.raises(TypeError, match="cannot run under jit"):
        jax.jit(lambda p: fk.covariance(problem, p).matrix)(params)
    with pytest.raises(fk.ParamsError):
        fk.covariance(problem, {"coeffs": jnp.zeros(3)})


def test_float32_warns_once_and_suggests_enable_x64(linear, monkeypatch):
    problem, params, _ = linear
    _cache.registry.get("once").pop("float32 curvature", None)
    single = jax.tree.map(lambda v: v.astype(jnp.float32), params)
    # with x64 on, float32 params are cast to float64: no float32 curvature, no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*float32")
        cov = fk.covariance(problem, single)
    assert cov.matrix.dtype == jnp.float64
    # float32 curvature (x64 off) warns once, naming the fix
    with pytest.warns(UserWarning, match=r"enable_x64\(\)"):
        _config.warn_if_float32(jnp.float32, "The covariance")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _config.warn_if_float32(jnp.float32, "The covariance")


def test_laplace_draws_have_the_right_mean_and_covariance(linear):
    problem, params, closed = linear
    cov = fk.covariance(problem, params)
    draws = cov.sample(jr.key(42), 20000)
    assert draws["coeffs"].shape == (20000, 3) and draws["offset"].shape == (20000,)
    flat = np.concatenate([np.asarray(draws["coeffs"]), np.asarray(draws["offset"])[:, None]], axis=1)
    mean = np.concatenate([params["coeffs"], params["offset"][None]])
    std = np.sqrt(np.diag(closed))
    assert np.all(np.abs(flat.mean(0) - mean) < 4 * std / np.sqrt(20000))
    sample_cov = np.cov(flat.T)
    # Standard error of a sample covariance entry: sqrt((C_ii C_jj + C_ij^2) / N).
    se = np.sqrt((np.outer(np.diag(closed), np.diag(closed)) + closed**2) / 20000)
    assert np.all(np.abs(sample_cov - closed) < 4 * se)


def test_delta_method_band_matches_monte_carlo():
    problem, truth, _ = fk.examples.gaussians.make_problem()
    cov = fk.covariance(problem, truth, method="fisher")
    band = cov.predict(problem.model)
    assert band.mean.shape == band.std.shape == (500,)
    np.testing.assert_allclose(band.mean, problem.model(truth), rtol=1e-12)
    draws = cov.sample(jr.key(7), 4000)
    curves = np.asarray(jax.jit(jax.vmap(problem.model))(draws))
    peak = band.std > 0.1 * band.std.max()
    np.testing.assert_allclose(curves.std(0)[peak], np.asarray(band.std)[peak], rtol=0.06)
    blocked = cov.predict(lambda p: {"curve": problem.model(p)}, batch_size=4)
    np.testing.assert_allclose(blocked.std["curve"], band.std, rtol=1e-10)


def test_summaries_save_load_and_fit_result(linear, tmp_path):
    problem, params, closed = linear
    result = fk.FitResult(params=params, loss=0.0, steps=1, converged=True, message="test")
    cov = fk.covariance(problem, result)
    frame = cov.to_dataframe()
    assert list(frame.index) == list(cov.names) and list(frame.columns) == ["mean", "std"]
    np.testing.assert_allclose(frame.loc["offset", "std"], np.sqrt(closed[3, 3]), rtol=1e-10)
    names, values, errors = cov.errorbar(sigma=5)
    assert names == list(cov.names)
    np.testing.assert_allclose(values, [0.5, -1.0, 0.2, 0.3])
    np.testing.assert_allclose(errors, 5 * np.sqrt(np.diag(closed)), rtol=1e-10)
    path = tmp_path / "cov.npz"
    cov.save(path)
    loaded = fk.Covariance.load(path)
    np.testing.assert_array_equal(loaded.matrix, cov.matrix)
    np.testing.assert_array_equal(loaded.mean["coeffs"], params["coeffs"])
    assert loaded.names == cov.names and loaded.method == cov.method
    assert "offset" in repr(cov)
