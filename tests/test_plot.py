import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import fitkit as fk
from fitkit import plot
from fitkit.examples import gaussians

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def gauss():
    problem, truth, start = gaussians.make_problem()
    return problem, truth, start


@pytest.fixture(scope="module")
def fitted(gauss):
    problem, _, start = gauss
    steps = 5
    params_history = {k: jnp.stack([v + 0.01 * i for i in range(steps)]) for k, v in start.items()}
    return fk.FitResult(
        params=start,
        loss=1.0,
        steps=steps,
        converged=False,
        message="",
        history={"step": np.arange(steps), "loss": np.linspace(5, 1, steps), "params": params_history},
    )


@pytest.fixture(scope="module")
def posterior():
    rng = np.random.default_rng(0)
    params = {"a": jnp.zeros(2), "b": jnp.array(1.0)}
    latent = rng.normal(size=(2, 300, 3))
    samples = {"a": latent[..., 1:], "b": 1.0 + latent[..., 0]}
    return fk.Posterior(
        samples=samples, latent=latent, names=tuple(fk.tree.names(params)), diagnostics={}, config={}
    )


def test_loss_and_history(fitted, tmp_path):
    fig = plot.loss(fitted)
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    fig.savefig(tmp_path / "loss.png")
    fig = plot.history(fitted)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 2
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata()[-1], 0.04)
    fig.savefig(tmp_path / "history.png")
    with pytest.raises(ValueError, match="history=True"):
        plot.history(fk.FitResult(params={}, loss=0.0, steps=0, converged=False, message=""))


def test_residuals_and_matrix(gauss, tmp_path):
    problem, truth, _ = gauss
    fig = plot.residuals(problem, truth)
    assert len(fig.axes) == 1
    fig.savefig(tmp_path / "res.png")
    fig = plot.matrix(np.array([[2.0, -1.0], [-1.0, 2.0]]), names=["x", "y"], title="H")
    assert len(fig.axes) == 2  # the image and its colour bar
    fig.savefig(tmp_path / "m.png")
    with pytest.raises(ValueError, match="kind"):
        plot.matrix(np.eye(2), kind="linear")


def test_corner_posterior_with_fit_and_truth(posterior, tmp_path):
    result = fk.FitResult(
        params={"a": jnp.zeros(2), "b": jnp.array(1.0)}, loss=0.0, steps=0, converged=True, message=""
    )
    fig = plot.corner([posterior, result], truth={"a": jnp.zeros(2), "b": jnp.array(1.0)})
    assert len([ax for ax in fig.axes if ax.get_visible()]) >= 6  # 3x3 lower triangle
    fig.savefig(tmp_path / "corner.png")
    with pytest.raises(TypeError, match="corner cannot draw"):
        plot.corner([posterior, np.eye(2)])
    with pytest.raises(ValueError, match="at least one"):
        plot.corner([result])


def test_profile_contour_and_asymmetric_errorbars(gauss):
    problem, _, start = gauss
    result = fk.solve(problem, start)
    cov = fk.covariance(problem, result)
    fig = plot.profile(problem, result, "mean[0]", covariance=cov)
    curve, parabola = fig.axes[0].lines[0], fig.axes[0].lines[1]
    # Near the optimum of a nearly Gaussian likelihood the profile is the curvature's parabola.
    np.testing.assert_allclose(curve.get_ydata()[15:26], parabola.get_ydata()[15:26], atol=2e-3)
    fig = plot.contour(problem, result, ("mean[0]", "std[0]"), covariance=cov)
    x, y = fig.axes[0].lines[0].get_data()
    assert x[0] == x[-1] and y[0] == y[-1] and len(x) == 41
    iv = fk.intervals(problem, result, ["mean"])
    fig = plot.errorbars(cov, intervals=iv)
    assert any("profile likelihood" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_corner_marks_the_profile_limits(gauss):
    problem, _, start = gauss
    result = fk.solve(problem, start)
    cov = fk.covariance(problem, result)
    iv = fk.intervals(problem, result, ["mean"])
    names = list(fk.tree.names(result.params))
    fig = plot.corner(cov, intervals=iv, covariance_draws=2000)
    size = len(names)
    for k, name in enumerate(iv.names):
        i = names.index(name)
        ax = fig.axes[i * size + i]
        dashed = sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")
        np.testing.assert_allclose(dashed, [iv.flat_lower[k], iv.flat_upper[k]], rtol=1e-12)
    # a param that was not profiled has no dashed lines
    other = names.index("std[0]")
    assert not [line for line in fig.axes[other * size + other].lines if line.get_linestyle() == "--"]
