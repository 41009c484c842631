import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import fitkit as fk


class Line(fk.Module):
    x: jnp.ndarray

    def __call__(self, params):
        return params["slope"] * self.x + params["offset"]


class Points(fk.Observation):
    def predict(self, params, model):
        return model(params)


class Shifted(fk.Observation):
    """Observations with a per-image parameter chosen by a static name."""

    name: str

    def predict(self, params, model):
        return model(params) + params["shift"][self.name]


X = jnp.array([0.0, 1.0, 2.0])
DATA = jnp.array([1.0, 2.0, 5.0])
ERROR = jnp.array([1.0, 0.5, 2.0])
PARAMS = {"slope": jnp.array(1.0), "offset": jnp.array(1.0)}


@pytest.fixture
def tiny():
    return fk.Problem(Line(x=X), Points(data=DATA, error=ERROR))


def test_objectives_against_hand_computation(tiny):
    # prediction [1, 2, 3]; z = (data - pred) / err = [0, 0, 1]
    np.testing.assert_allclose(tiny.residuals(PARAMS), [0.0, 0.0, 1.0])
    assert float(tiny.chi2(PARAMS)) == pytest.approx(1.0)
    assert float(tiny.loss(PARAMS)) == pytest.approx(1 / 3)
    assert tiny.ddof(PARAMS) == 1
    assert float(tiny.chi2r(PARAMS)) == pytest.approx(1.0)
    expected_nll = 0.5 * 1.0 + float(jnp.log(ERROR).sum()) + 1.5 * math.log(2 * math.pi)
    assert float(tiny.nll(PARAMS)) == pytest.approx(expected_nll, rel=1e-12)
    np.testing.assert_allclose(tiny.predict(PARAMS)[0], [1.0, 2.0, 3.0])


def test_gradients_and_jit(tiny):
    grad = jax.jit(jax.grad(tiny.loss))(PARAMS)
    # d/dslope mean(z^2) = mean(2 z dz/dslope) with dz/dslope = -x/err
    assert float(grad["slope"]) == pytest.approx(2 * 1.0 * (-2.0 / 2.0) / 3)
    assert float(eqx.filter_jit(tiny.nll)(PARAMS)) == pytest.approx(float(tiny.nll(PARAMS)))


def test_mask_removes_points_everywhere():
    data = DATA.at[1].set(jnp.nan)
    error = ERROR.at[1].set(jnp.nan)
    prob = fk.Problem(Line(x=X), Points(data=data, error=error, mask="invalid"))
    np.testing.assert_allclose(prob.residuals(PARAMS), [0.0, 1.0])
    assert prob.n_data == 2 and prob.ddof(PARAMS) == 0
    assert float(prob.loss(PARAMS)) == pytest.approx(0.5)
    z = prob.z_scores(PARAMS)[0]
    assert np.isnan(z[1]) and float(z[2]) == 1.0
    grad = jax.grad(prob.nll)(PARAMS)
    assert all(np.isfinite(v) for v in jax.tree.leaves(grad))


def _shifted_problem(vmap):
    obs = [
        Shifted(data=DATA + i, error=ERROR * (i + 1), mask=jnp.array([True, i != 1, True]), name=f"o{i}")
        for i in range(3)
    ]
    params = {**PARAMS, "shift": {f"o{i}": jnp.array(0.5 * i) for i in range(3)}}
    return fk.Problem(Line(x=X), obs, vmap=vmap), params


class Same(fk.Observation):
    def predict(self, params, model):
        return model(params) * params["scale"]


def test_vmap_and_loop_paths_agree():
    obs = [Same(data=DATA * (i + 1), error=ERROR, mask=jnp.array([True, i != 1, True])) for i in range(4)]
    params = {**PARAMS, "scale": jnp.array(1.5)}
    batched = fk.Problem(Line(x=X), obs)
    looped = fk.Problem(Line(x=X), obs, vmap=False)
    assert batched.vmapped and not looped.vmapped
    for fn in ("loss", "nll", "chi2", "chi2r"):
        assert float(getattr(batched, fn)(params)) == pytest.approx(
            float(getattr(looped, fn)(params)), rel=1e-14
        )
    np.testing.assert_allclose(batched.residuals(params), looped.residuals(params), rtol=1e-14)
    g1, g2 = jax.grad(batched.loss)(params), jax.grad(looped.loss)(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_different_static_fields_fall_back_to_loop():
    prob, params = _shifted_problem(None)
    assert not prob.vmapped
    assert prob.n_data == 8
    with pytest.raises(ValueError, match="vmap=True"):
        _shifted_problem(True)


def test_priors_add_their_log_density(tiny):
    prior = dist.Normal(0.0, 2.0)
    with_prior = fk.Problem(Line(x=X), Points(data=DATA, error=ERROR), priors={"slope": prior})
    expected = float(tiny.nll(PARAMS)) - float(prior.log_prob(1.0))
    assert float(with_prior.nll(PARAMS)) == pytest.approx(expected, rel=1e-12)
    assert float(with_prior.log_prior(PARAMS)) == pytest.approx(float(prior.log_prob(1.0)))
    # the loss holds the priors too: 2 nll / n_data up to a constant, so fk.fit finds the MAP point
    shift = -2.0 * float(prior.log_prob(1.0)) / tiny.n_data
    assert float(with_prior.loss(PARAMS)) == pytest.approx(float(tiny.loss(PARAMS)) + shift, rel=1e-12)


def test_poisson_likelihood():
    counts = jnp.array([2.0, 0.0, 4.0])
    prob = fk.Problem(Line(x=X), Points(data=counts), likelihood="poisson")
    from scipy import stats as sps

    rate = np.array([1.0, 2.0, 3.0])
    assert float(prob.nll(PARAMS)) == pytest.approx(-sps.poisson.logpmf(counts, rate).sum(), rel=1e-12)
    dev = fk.stats.poisson_deviance(rate, counts)
    assert float(prob.chi2(PARAMS)) == pytest.approx(float(dev.sum()))
    np.testing.assert_allclose(jnp.square(prob.residuals(PARAMS)), dev, rtol=1e-10)


def test_construction_errors():
    with pytest.raises(TypeError, match="subclass fk.Observation"):
        fk.Problem(Line(x=X), [DATA])
    with pytest.raises(ValueError, match="choose one of"):
        fk.Problem(Line(x=X), Points(data=DATA, error=ERROR), likelihood="cauchy")
    with pytest.raises(ValueError, match="has no error"):
        fk.Problem(Line(x=X), Points(data=DATA))
    with pytest.raises(TypeError, match="numpyro distribution"):
        fk.Problem(Line(x=X), Points(data=DATA, error=ERROR), priors={"slope": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        fk.Problem(Line(x=X), [])


def test_params_are_checked_before_compilation(tiny):
    with pytest.raises(fk.ParamsError, match=r"Points\(\).predict.*KeyError.*'offset'.*paths: slope"):
        tiny.loss({"slope": jnp.array(1.0)})
    with pytest.raises(TypeError, match="'offset'.*float"):
        tiny.loss({"slope": jnp.array(1.0), "offset": jnp.array(1)})
    with pytest.raises(fk.ParamsError, match=r"shape \(2, 3\) but its data has shape \(3,\)"):
        tiny.loss({"slope": jnp.ones((2, 1)), "offset": jnp.array(1.0)})
    prob = fk.Problem(Line(x=X), Points(data=DATA, error=ERROR), priors={"slop": dist.Normal(0, 1)})
    with pytest.raises(fk.PathError, match="Did you mean 'slope'"):
        prob.nll(PARAMS)
    with pytest.raises(fk.ParamsError, match="empty"):
        tiny.check({})


def test_flat_predictions_and_fisher_weights(tiny):
    np.testing.assert_allclose(tiny.flat_predictions(PARAMS), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(tiny.weights(PARAMS), 1 / ERROR**2)
    counts = fk.Problem(Line(x=X), Points(data=jnp.array([2.0, 0.0, 4.0])), likelihood="poisson")
    np.testing.assert_allclose(counts.weights(PARAMS), [1.0, 0.5, 1 / 3])
    # J^T W J equals the Gauss-Newton part of the Hessian of nll for a linear model.
    jac = jax.jacfwd(lambda p: tiny.flat_predictions({"slope": p[0], "offset": p[1]}))(jnp.array([1.0, 1.0]))
    fisher = jac.T @ (tiny.weights(PARAMS)[:, None] * jac)
    hess = jax.hessian(lambda p: tiny.nll({"slope": p[0], "offset": p[1]}))(jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(fisher, hess, rtol=1e-12)


@pytest.mark.parametrize("name", ["nll", "residuals", "loss", "log_prior"])
def test_overriding_an_objective_is_refused_at_class_creation(name):
    with pytest.raises(TypeError, match=rf"overrides Problem\.{name}.*Observation\.predict"):
        type("Custom", (fk.Problem,), {name: lambda self, params: 0.0})


def test_a_subclass_may_add_methods(tiny):
    class Named(fk.Problem):
        def describe(self):
            return f"{self.n_data} points"

    prob = Named(Line(x=X), Points(data=DATA, error=ERROR))
    assert prob.describe() == f"{len(DATA)} points"
    assert float(prob.loss(PARAMS)) == pytest.approx(float(tiny.loss(PARAMS)), rel=1e-14)
