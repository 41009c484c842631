import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import fitkit as fk
from fitkit.sampling import Posterior, sample


class Linear(fk.Module):
    design: jnp.ndarray


class Direct(fk.Observation):
    def predict(self, params, model):
        return model.design @ jnp.concatenate([params["small"], params["big"]])


def _mvn_problem(seed=0):
    """Linear-Gaussian problem whose posterior is a correlated normal with scales 1e-6 .. 1e3."""
    rng = np.random.default_rng(seed)
    scales = np.array([1e-6, 1e-3, 1.0, 1e3])
    corr = np.array([[1, 0.9, 0.2, 0], [0.9, 1, 0.3, 0.1], [0.2, 0.3, 1, -0.5], [0, 0.1, -0.5, 1]])
    cov = corr * scales[:, None] * scales[None, :]
    # With unit errors the posterior covariance is (A^T A)^-1: take A = corr^-1/2 diag(1/scales),
    # which keeps every step well conditioned (an eigh of cov itself would not be).
    w, v = np.linalg.eigh(corr)
    design = ((v / np.sqrt(w)) @ v.T) / scales[None, :]
    truth = rng.normal(size=4) * scales
    data = design @ truth + rng.normal(size=4)
    problem = fk.Problem(Linear(design=jnp.asarray(design)), Direct(data=data, error=np.ones(4)))
    mode = np.linalg.solve(design, data)
    params = {"small": jnp.asarray(mode[:2]), "big": jnp.asarray(mode[2:])}
    ravel_order = [2, 3, 0, 1]  # fk.tree.ravel sorts dict keys: big before small
    return problem, params, cov[ravel_order][:, ravel_order]


@pytest.fixture(scope="module")
def mvn():
    problem, params, cov = _mvn_problem()
    projection = fk.Projection.from_fisher(np.linalg.inv(cov), center=params)
    post = sample(
        problem, params, projection=projection, num_samples=2000, num_chains=2, progress=False, key=1
    )
    return problem, params, cov, post


def test_recovers_mean_and_covariance_across_scales(mvn):
    _, params, cov, post = mvn
    flat = post.flat().reshape(-1, 4)
    std = np.sqrt(np.diag(cov))
    mean_error = (flat.mean(0) - np.asarray(fk.tree.ravel(params)[0])) / std
    assert np.all(np.abs(mean_error) < 0.1)
    sample_cov = np.cov(flat.T)
    np.testing.assert_allclose(np.sqrt(np.diag(sample_cov)) / std, 1.0, atol=0.08)
    np.testing.assert_allclose(
        sample_cov / std[:, None] / std[None, :], cov / std[:, None] / std[None, :], atol=0.1
    )
    assert post.diagnostics["mean_num_steps"] < 15
    assert post.diagnostics["divergences"] == 0


def test_summary_names_and_columns(mvn):
    _, _, _, post = mvn
    table = post.summary()
    assert list(table.index) == ["big[0]", "big[1]", "small[0]", "small[1]"]
    assert list(table.columns) == ["mean", "std", "median", "q5", "q95", "ess_bulk", "ess_tail", "r_hat"]
    assert (table["r_hat"] < 1.01).all() and (table["ess_bulk"] > 1000).all()
    frame = post.to_dataframe()
    assert list(frame.columns[:2]) == ["chain", "draw"] and len(frame) == 4000


def test_latent_draws_map_to_samples(mvn):
    _, _, _, post = mvn
    u = jnp.asarray(post.latent[1, 7])
    mapped = post.projection.to_params(u)
    np.testing.assert_allclose(mapped["big"], post.samples["big"][1, 7], rtol=1e-12)
    np.testing.assert_allclose(np.abs(post.latent).mean(), np.sqrt(2 / np.pi), atol=0.05)


def test_prior_changes_posterior_as_conjugate_closed_form():
    # y_i ~ N(mu, 1), i = 1..4, prior mu ~ N(3, 0.5): posterior precision 4 + 4 = 8.
    class Mean(fk.Observation):
        def predict(self, params, model):
            return jnp.full(4, params["mu"])

    data = jnp.array([0.5, 1.0, 1.5, 2.0])
    problem = fk.Problem(None, Mean(data=data, error=jnp.ones(4)), priors={"mu": dist.Normal(3.0, 0.5)})
    post_mean = (data.sum() + 3.0 / 0.25) / 8.0
    params = {"mu": jnp.asarray(post_mean)}
    projection = fk.Projection.from_fisher(np.array([[8.0]]), center=params)
    post = sample(problem, params, projection=projection, num_samples=4000, num_chains=1, progress=False)
    draws = post.samples["mu"].ravel()
    assert draws.mean() == pytest.approx(float(post_mean), abs=0.02)
    assert draws.std() == pytest.approx(1 / np.sqrt(8.0), rel=0.05)


def test_save_load_and_arviz_round_trip(mvn, tmp_path):
    _, _, _, post = mvn
    post.save(tmp_path / "post.npz")
    back = Posterior.load(tmp_path / "post.npz")
    np.testing.assert_array_equal(back.samples["big"], post.samples["big"])
    np.testing.assert_array_equal(back.latent, post.latent)
    assert back.names == post.names and back.diagnostics["divergences"] == 0
    idata = post.to_arviz()
    np.testing.assert_array_equal(idata.posterior["small"].values, post.samples["small"])
    assert idata.posterior["small"].shape == (2, 2000, 2)


def test_bad_arguments():
    problem, params, cov = _mvn_problem()
    projection = fk.Projection.from_fisher(np.linalg.inv(cov), center=params)
    with pytest.raises(ValueError, match="chain_method"):
        sample(problem, params, projection=projection, chain_method="threads")
    with pytest.raises(ValueError, match="num_samples"):
        sample(problem, params, projection=projection, num_samples=0)
    with pytest.raises(ValueError, match="projection has 2 params but params have 4"):
        sample(problem, params, projection=fk.Projection.from_fisher(np.eye(2), {"a": jnp.zeros(2)}))
    with pytest.raises(TypeError, match="projection must be"):
        sample(problem, params, projection=np.eye(4))
    with pytest.raises(fk.ParamsError, match="big"):
        sample(problem, {"small": params["small"]}, projection=projection)


def test_a_truncated_projection_does_not_report_zero_spread_for_what_it_dropped():
    # `big[1]` does not enter the model, so its direction is unconstrained; a
    # truncated projection holds it at the center and its draws have no spread.
    design = jnp.array([[1.0, 0.5, 0.0, 0.0], [0.2, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    data = np.array([0.3, -0.1, 0.4])
    problem = fk.Problem(Linear(design=design), Direct(data=data, error=np.ones(3)))
    params = {"small": jnp.zeros(2), "big": jnp.array([0.2, 0.0])}
    with pytest.warns(fk.TruncationWarning, match=r"big\[1\] stay at the center"):
        post = sample(problem, params, truncate=1e-10, num_warmup=50, num_samples=200, progress=False)
    assert post.unsampled == ("big[1]",)
    summary = post.summary()
    assert np.isnan(summary.loc["big[1]", "std"]) and np.isnan(summary.loc["big[1]", "q5"])
    assert np.ptp(post.flat()[..., 1]) == 0.0  # the draws themselves never moved along it
    # the params the projection kept are sampled as usual: big[0] ~ N(0.2, 1/4)
    assert 0.35 < summary.loc["big[0]", "std"] < 0.65 and summary.loc["big[0]", "mean"] == pytest.approx(
        0.2, abs=0.15
    )
