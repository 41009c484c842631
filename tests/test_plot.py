import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.colors
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.stats

import fitkit as fk
from fitkit import plot
from fitkit.examples import gaussians

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


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


# --------------------------------------------------------------------------------------------------
# Figures checked against the numbers they draw: pulls, error bars, z-scores, residual maps, corners.

C3 = matplotlib.colors.to_rgba("C3")
BLACK = matplotlib.colors.to_rgba("k")


class Line(fk.Observation):
    """Data at abscissae `x` of `offset + slope x`."""

    x: jax.Array

    def predict(self, p, model):
        return p["offset"] + p["slope"] * self.x


class Level(fk.Observation):
    """Data of any shape around one level `p[band]`: the z-scores are `(data - level) / error`."""

    band: str = "mu"

    def predict(self, p, model):
        return jnp.broadcast_to(p[self.band], jnp.shape(self.data))


class CauchyLevel(fk.Observation):
    """A custom log-likelihood: no z-scores."""

    def log_likelihood(self, p, model):
        return -jnp.sum(jnp.log1p(((self.data - p["mu"]) / self.error) ** 2))


class Events(fk.Observation):
    """Unbinned events of a unit normal around `mu`: no z-scores either."""

    def predict(self, p, model):
        return jnp.exp(-0.5 * (self.data - p["mu"]) ** 2) / jnp.sqrt(2 * jnp.pi)


# 16 params of very different scales (values -40..60, errors 1e-6..1e-3) with known pulls: two
# beyond 3 sigma (4.0 and -4.5, red), one far off the axis (20, an arrow), one without an error.
NAMES = ["flux", "position[0]", "position[1]"] + [f"wfe[{i}]" for i in range(13)]
PULLS = np.array([0.5, -1.2, 4.0, 20.0, np.nan, 0.0, 1.5, -2.5, -0.3, 0.8, -4.5, 2.2, -0.75, 1.05, -1.9, 0.1])
NO_SIGMA = 4


@pytest.fixture(scope="module")
def wide():
    """`(truth, estimates, errors, variances)`: the truth pytree, estimates offset by `PULLS` errors,
    the 16 errors and the variances of a diagonal covariance (negative where there is no error)."""
    truth = {
        "flux": jnp.asarray(60.0),
        "position": jnp.asarray([-40.0, 12.5]),
        "wfe": jnp.linspace(-30, 50, 13),
    }
    errors = np.geomspace(1e-6, 1e-3, 16)
    flat, unravel = fk.tree.ravel(truth)
    estimates = unravel(jnp.asarray(np.asarray(flat) + np.nan_to_num(PULLS) * errors))
    variances = errors**2
    variances[NO_SIGMA] = -1e-10  # a negative variance: the error is unknown
    return truth, estimates, errors, variances


def _texts(labels):
    return [t.get_text() for t in labels]


def _framed(fig):
    """The panels of a chainconsumer corner that are drawn (the upper triangle has no frame)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_frame_on()]


def test_pulls_of_sixteen_params_of_different_scales(wide):
    truth, estimates, _, variances = wide
    assert fk.tree.names(truth) == NAMES
    fig = plot.pulls(estimates, np.diag(variances), truth)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert _texts(ax.get_yticklabels()) == NAMES
    expected = ["no σ" if np.isnan(p) else f"{p:+.2f}" for p in PULLS]
    assert _texts(ax.texts) == expected
    assert expected[:4] == ["+0.50", "-1.20", "+4.00", "+20.00"]
    red = [i for i, t in enumerate(ax.texts) if t.get_color() == "C3"]
    assert red == [2, 3, 10]  # |pull| > 3
    assert ax.texts[NO_SIGMA].get_color() == "0.4"
    # the largest finite pull (20) would squash the rest: the axis stops at 10, 20 is an arrow at its edge
    assert ax.get_xlim() == (-10.0, 10.0)
    points, arrows, missing = ax.collections
    inside = [i for i in range(16) if i not in (3, NO_SIGMA)]
    np.testing.assert_allclose(points.get_offsets()[:, 0], PULLS[inside], atol=1e-6)
    np.testing.assert_array_equal(points.get_offsets()[:, 1], inside)
    colours = [tuple(c) for c in points.get_facecolors()]
    assert [i for i, c in zip(inside, colours) if c == C3] == [2, 10]
    assert all(c == BLACK for i, c in zip(inside, colours) if i not in (2, 10))
    np.testing.assert_allclose(arrows.get_offsets(), [[9.7, 3.0]])
    assert tuple(arrows.get_facecolors()[0]) == C3
    np.testing.assert_allclose(missing.get_offsets(), [[0.0, NO_SIGMA]])
    finite = PULLS[np.isfinite(PULLS)]
    rms = np.sqrt(np.mean(finite**2))
    assert ax.get_title() == f"16 params, rms pull {rms:.2f}, 5 beyond 2σ, 3 beyond 3σ, 1 without σ"
    assert ax.get_xlabel() == "(estimate − truth) / σ"
    assert ax.get_ylim() == (15.5, -0.5)  # the first param on top
    assert plot.tick_overlaps(fig, labels=True) == []


def test_pulls_other_forms_of_estimates_and_errors(wide):
    truth, estimates, _, variances = wide
    flat = np.asarray(fk.tree.ravel(estimates)[0])
    errors = np.sqrt(np.abs(variances))
    errors[NO_SIGMA] = np.nan
    # errors as a vector, the truth as a flat dict `name -> value` in another order
    reference = dict(reversed(list(zip(NAMES, np.asarray(fk.tree.ravel(truth)[0])))))
    fig = plot.pulls(estimates, errors, reference, reference_label="fit A")
    assert _texts(fig.axes[0].texts) == ["no σ" if np.isnan(p) else f"{p:+.2f}" for p in PULLS]
    assert fig.axes[0].get_xlabel() == "(estimate − fit A) / σ"
    fig = plot.pulls(flat[:3], errors[:3], np.asarray(fk.tree.ravel(truth)[0])[:3], limit=5.0)
    ax = fig.axes[0]
    assert _texts(ax.get_yticklabels()) == ["p[0]", "p[1]", "p[2]"]
    assert ax.get_xlim() == (-5.0, 5.0)
    assert (
        ax.get_title()
        == f"3 params, rms pull {np.sqrt(np.mean(PULLS[:3] ** 2)):.2f}, 1 beyond 2σ, 1 beyond 3σ"
    )
    ticks = ax.xaxis.get_majorticklocs()
    np.testing.assert_array_equal(ticks[np.abs(ticks) <= 5], np.arange(-5.0, 6.0))  # one tick per sigma
    with pytest.raises(ValueError, match="16 estimates, 15 errors, 16 reference"):
        plot.pulls(estimates, errors[:15], truth)
    with pytest.raises(ValueError, match="3 estimates, 3 errors, 2 reference"):
        plot.pulls(flat[:3], errors[:3], flat[:2])
    with pytest.raises(ValueError, match="2 names for 3 estimates"):
        plot.pulls(flat[:3], errors[:3], flat[:3], names=["a", "b"])


def test_pulls_reads_a_flat_dict_reference_in_the_order_of_names():
    names = ["wfe[2]", "wfe[10]"]  # a dict ravels "wfe[10]" before "wfe[2]"
    fig = plot.pulls(
        np.array([1.0, 10.0]), np.array([1.0, 2.0]), {"wfe[2]": 0.0, "wfe[10]": 9.0}, names=names
    )
    assert _texts(fig.axes[0].texts) == ["+1.00", "+0.50"]


@pytest.fixture(scope="module")
def line():
    """A straight line at its least-squares optimum (numpy's): the problem, the params, their
    `fk.Covariance` (errors ~0.1 and ~0.2 on values ~1) and the covariance numpy computes."""
    x = np.linspace(0.0, 1.0, 20)
    y = -0.5 + 2.0 * x + 0.3 * np.sin(7 * x)
    problem = fk.Problem(None, Line(data=y, error=0.3, x=x))
    slope, offset = np.polyfit(x, y, 1)
    params = {"offset": jnp.asarray(offset), "slope": jnp.asarray(slope)}
    design = np.c_[np.ones_like(x), x] / 0.3
    return problem, params, fk.covariance(problem, params), np.linalg.inv(design.T @ design)


def test_errorbars_draws_pulls_when_bars_would_not_show(wide):
    truth, estimates, errors, _ = wide
    cov = fk.Covariance(jnp.diag(jnp.asarray(errors**2)), estimates)
    fig = plot.errorbars(cov, truth=truth)  # bars of 1e-6 on an axis spanning 100: pulls
    ax = fig.axes[0]
    assert "σ" in ax.get_xlabel()
    assert _texts(ax.get_yticklabels()) == NAMES
    assert _texts(ax.texts) == [f"{p:+.2f}" for p in np.nan_to_num(PULLS)]
    fig = plot.errorbars(cov, truth=truth, kind="raw")
    ax = fig.axes[0]
    assert _texts(ax.get_xticklabels()) == NAMES and ax.get_ylabel() == "value"
    np.testing.assert_allclose(ax.containers[0].lines[0].get_ydata(), fk.tree.ravel(estimates)[0])
    fig = plot.errorbars(cov)  # no truth: raw bars whatever the scales
    assert _texts(fig.axes[0].get_xticklabels()) == NAMES
    assert _texts(fig.axes[0].get_legend().get_texts()) == ["estimate ± 1 σ"]


def test_errorbars_raw_bars_when_scales_are_alike(line):
    _, params, cov, expected = line
    np.testing.assert_allclose(cov.matrix, expected, rtol=1e-9)
    truth = {"offset": -0.4, "slope": 2.1}
    for kind in ("auto", "raw"):
        fig = plot.errorbars(cov, sigma=2.0, truth=truth, kind=kind)
        ax = fig.axes[0]
        assert _texts(ax.get_xticklabels()) == ["offset", "slope"]
        assert sorted(_texts(ax.get_legend().get_texts())) == ["estimate ± 2 σ", "truth"]
        points, _, (bars,) = ax.containers[0].lines
        values = np.asarray([params["offset"], params["slope"]])
        np.testing.assert_allclose(points.get_ydata(), values)
        std = np.sqrt(np.diag(expected))
        np.testing.assert_allclose(
            [s[:, 1] for s in bars.get_segments()], np.c_[values - 2 * std, values + 2 * std]
        )
        crosses = [line for line in ax.lines if line.get_marker() == "x"]
        np.testing.assert_allclose(crosses[0].get_ydata(), [-0.4, 2.1])
    fig = plot.errorbars(cov, truth=truth, kind="pulls")
    assert "σ" in fig.axes[0].get_xlabel() and _texts(fig.axes[0].get_yticklabels()) == ["offset", "slope"]
    with pytest.raises(ValueError, match="kind='pulls' needs truth"):
        plot.errorbars(cov, kind="pulls")
    with pytest.raises(ValueError, match="relative=True needs truth"):
        plot.errorbars(cov, relative=True)
    with pytest.raises(ValueError, match="unknown kind 'bars'"):
        plot.errorbars(cov, truth=truth, kind="bars")


@pytest.fixture(scope="module")
def known_z():
    """A problem of two observations whose z-scores at `mu = 1` are known: 300 normal draws and a few
    outliers (12 and -15 sigma beyond the histogram's +-8), plus 5 masked points with wild values."""
    rng = np.random.default_rng(3)
    z = np.concatenate([rng.normal(0.1, 1.2, 300), [12.0, -15.0, 5.0]])
    masked = np.full(5, 40.0)
    sigma = 0.5
    first = Level(data=1.0 + sigma * z[:200], error=sigma)
    second = Level(
        data=1.0 + sigma * np.concatenate([z[200:], masked]),
        error=sigma,
        mask=np.r_[np.ones(z.size - 200, bool), np.zeros(5, bool)],
    )
    return fk.Problem(None, [first, second]), {"mu": jnp.asarray(1.0)}, z


def _bars(ax):
    """`(heights, left edges, widths)` of the histogram's bars."""
    patches = ax.containers[0].patches
    return (
        np.array([p.get_height() for p in patches]),
        np.array([p.get_x() for p in patches]),
        np.array([p.get_width() for p in patches]),
    )


def test_zscores_histogram_counts_every_used_point(known_z):
    problem, params, z = known_z
    fig = plot.zscores(problem, params)
    ax = fig.axes[0]
    heights, lefts, widths = _bars(ax)
    assert heights.sum() == z.size == 303  # the 5 masked points are not counted
    np.testing.assert_allclose(lefts[0], -8.0)  # the range stops at 8 sigma
    np.testing.assert_allclose(lefts[-1] + widths[-1], 8.0)
    # the points beyond the range are in the edge bins
    assert heights[0] == np.sum(z < lefts[1]) and np.sum(z < -8) == 1
    assert heights[-1] == np.sum(z >= lefts[-1]) and np.sum(z > 8) == 1
    legend = _texts(ax.get_legend().get_texts())
    assert legend[0] == f"303 used points: mean {np.mean(z):+.3f}, std {np.std(z):.3f}"
    assert f"{np.sum(np.abs(z) > 3)} beyond 3σ" in legend[2]
    assert legend[3] == "2 beyond ±8 in the edge bins"
    (normal,) = [line for line in ax.lines if line.get_label() == "N(0, 1)"]
    x, y = normal.get_data()
    np.testing.assert_allclose(y, z.size * widths[0] * np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi))
    assert ax.get_yscale() == "linear"
    assert plot.tick_overlaps(fig, labels=True) == []
    fig = plot.zscores(problem, params, log=True)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_ylim()[0] == 0.5
    assert _bars(fig.axes[0])[0].sum() == 303


def test_zscores_given_bins(known_z):
    problem, params, z = known_z
    fig = plot.zscores(problem, params, bins=10)
    heights, lefts, _ = _bars(fig.axes[0])
    assert len(heights) == 10 and heights.sum() == z.size
    np.testing.assert_allclose(lefts[0], -8.0)
    # unequal edges: the expected counts are steps, and the outside points still count
    edges = [-3.0, -1.0, 0.0, 0.5, 1.0, 3.0]
    fig = plot.zscores(problem, params, bins=edges)
    ax = fig.axes[0]
    heights, lefts, _ = _bars(ax)
    np.testing.assert_allclose(lefts, edges[:-1])
    assert heights.sum() == z.size
    assert heights[0] == np.sum(z < -1.0) and heights[-1] == np.sum(z >= 1.0)
    (steps,) = [p for p in ax.patches if isinstance(p, matplotlib.patches.StepPatch)]
    cdf = scipy.stats.norm.cdf(edges)
    np.testing.assert_allclose(steps.get_data().values, z.size * np.diff(cdf), rtol=1e-12)
    assert f"{np.sum(np.abs(z) > 3)} beyond ±3 in the edge bins" in _texts(ax.get_legend().get_texts())


@pytest.mark.parametrize("observation", ["custom", "unbinned"])
def test_zscores_of_a_problem_without_them(observation):
    data = np.array([0.3, -1.0, 2.0])
    obs = (
        CauchyLevel(data=data, error=1.0)
        if observation == "custom"
        else Events(data=data, likelihood=fk.Unbinned())
    )
    with pytest.raises(ValueError, match="no used data point has a z-score"):
        plot.zscores(fk.Problem(None, obs), {"mu": jnp.asarray(0.0)})


def _images(z_red):
    """Two image observations whose z-scores at `PARAMS_IMAGES` are the given maps (one masked pixel)."""
    rng = np.random.default_rng(1)
    z_blue = np.clip(rng.normal(size=(6, 8)), -2.5, 2.5)
    mask = np.ones((6, 8), bool)
    mask[0, 0] = False
    observations = [
        Level(data=3.0 + 0.2 * z_blue, error=0.2, band="blue", mask=mask),
        Level(data=-1.0 + 0.5 * z_red, error=0.5, band="red"),
    ]
    return fk.Problem(None, observations), np.where(mask, z_blue, np.nan)


PARAMS_IMAGES = {"blue": jnp.asarray(3.0), "red": jnp.asarray(-1.0)}


def test_residual_images_share_one_colour_scale():
    z_red = np.linspace(-2.0, 2.7, 25).reshape(5, 5)
    problem, z_blue = _images(z_red)
    fig = plot.residuals(problem, PARAMS_IMAGES, titles=["blue", "red"])
    assert len(fig.axes) == 3  # two images and one colour bar
    (blue,), (red,) = fig.axes[0].images, fig.axes[1].images
    np.testing.assert_allclose(blue.get_array().filled(np.nan), z_blue, atol=1e-12)
    assert blue.get_array().mask[0, 0] and blue.get_array().mask.sum() == 1
    np.testing.assert_allclose(red.get_array(), z_red, atol=1e-12)
    assert blue.norm is red.norm
    largest = max(np.nanmax(np.abs(z_blue)), 2.7)
    np.testing.assert_allclose([red.norm.vmin, red.norm.vmax], [-largest, largest])
    colorbar = blue.colorbar
    assert colorbar is not None and red.colorbar is None and colorbar.ax is fig.axes[2]
    assert colorbar.extend == "neither" and colorbar.ax.get_ylabel() == "z-score (σ)"
    assert fig.axes[0].get_title() == f"blue\nχ²/n = {np.nanmean(z_blue**2):.3g}"
    assert fig.axes[1].get_title() == f"red\nχ²/n = {np.mean(z_red**2):.3g}"
    assert plot.tick_overlaps(fig) == []


def test_residual_images_saturate_beyond_five_sigma():
    z_red = np.linspace(-2.0, 2.0, 25).reshape(5, 5)
    z_red[1, 2] = 7.0
    problem, _ = _images(z_red)
    fig = plot.residuals(problem, PARAMS_IMAGES)
    (blue,), (red,) = fig.axes[0].images, fig.axes[1].images
    assert blue.norm is red.norm and (red.norm.vmin, red.norm.vmax) == (-5.0, 5.0)
    assert blue.colorbar.extend == "both"
    assert fig.axes[1].get_title() == "Level(band='red')\nχ²/n = " + f"{np.mean(z_red**2):.3g}"
    fig = plot.residuals(problem, PARAMS_IMAGES, limit=10.0)
    assert fig.axes[0].images[0].norm.vmax == 10.0 and fig.axes[0].images[0].colorbar.extend == "neither"
    # in the data's units: the largest |data - model| is 0.5 * 7
    fig = plot.residuals(problem, PARAMS_IMAGES, scale="data")
    (blue,), (red,) = fig.axes[0].images, fig.axes[1].images
    assert blue.norm is red.norm
    np.testing.assert_allclose([red.norm.vmin, red.norm.vmax], [-3.5, 3.5])
    np.testing.assert_allclose(red.get_array(), 0.5 * z_red, atol=1e-12)
    assert blue.colorbar.extend == "neither" and blue.colorbar.ax.get_ylabel() == "data − model"
    assert fig.axes[1].get_title().endswith(f"rms = {np.sqrt(np.mean((0.5 * z_red) ** 2)):.3g}")
    with pytest.raises(ValueError, match="unknown scale 'chi'"):
        plot.residuals(problem, PARAMS_IMAGES, scale="chi")


def test_residuals_of_curves_share_one_range(known_z):
    problem, params, z = known_z
    fig = plot.residuals(problem, params)
    assert len(fig.axes) == 2  # two curves, no colour bar
    for ax in fig.axes:
        assert ax.get_ylim() == pytest.approx((-1.05 * 15.0, 1.05 * 15.0))
        assert ax.get_ylabel() == "z-score (σ)"
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), z[:200], atol=1e-12)


@pytest.fixture(scope="module")
def wide_covariance(wide):
    """A correlated covariance of the 16 params of `wide` (values -40..60, errors 1e-6..1e-3)."""
    _, estimates, errors, _ = wide
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16))
    correlation = np.corrcoef(a @ a.T + 16 * np.eye(16))
    return fk.Covariance(jnp.asarray(correlation * np.outer(errors, errors)), estimates)


def test_corner_of_sixteen_params_has_no_overlapping_ticks(wide_covariance):
    fig = plot.corner(wide_covariance, covariance_draws=2000)
    assert len(fig.axes) == 16 * 16
    assert len(_framed(fig)) == 16 * 17 // 2  # the lower triangle and the diagonal
    bottom = [fig.axes[15 * 16 + col] for col in range(16)]
    assert [ax.get_xlabel().split("\n")[0] for ax in bottom] == NAMES
    assert plot.tick_overlaps(fig) == []


def test_corner_subsets(wide_covariance):
    fig = plot.corner(wide_covariance, covariance_draws=2000, params=["position", "flux"])
    assert len(fig.axes) == 9 and len(_framed(fig)) == 6
    assert [fig.axes[6 + col].get_xlabel().split("\n")[0] for col in range(3)] == NAMES[:3]
    assert plot.tick_overlaps(fig) == []
    columns = ["wfe[0]", "wfe[5]"]
    fig = plot.corner(wide_covariance, covariance_draws=2000, columns=columns)
    assert len(fig.axes) == 4 and len(_framed(fig)) == 3
    assert [fig.axes[2 + col].get_xlabel().split("\n")[0] for col in range(2)] == columns
    with pytest.raises(ValueError, match="not both"):
        plot.corner(wide_covariance, columns=columns, params=["wfe"])
    with pytest.raises(ValueError, match="no parameter under"):
        plot.corner(wide_covariance, params=["tilt"])


def test_tick_overlaps_finds_crowded_labels():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0.0, 49.0], [0.0, 1.0])
    assert plot.tick_overlaps(fig) == []
    ax.set_xticks(range(50), [f"a long tick label {i}" for i in range(50)])
    pairs = plot.tick_overlaps(fig)
    assert ("axes 0: a long tick label 0", "axes 0: a long tick label 1") in pairs
    assert all(a.startswith("axes 0: a long") and b.startswith("axes 0: a long") for a, b in pairs)
    ax.set_xlim(100.0, 200.0)  # ticks outside the view are not drawn
    assert plot.tick_overlaps(fig) == []
    ax.set_xlim(0.0, 49.0)
    ax.set_visible(False)  # nor are those of a hidden axis
    assert plot.tick_overlaps(fig) == []
    plt.close(fig)


def test_tick_overlaps_of_axis_labels_only_when_asked():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0.0, 1.0])
    ax.set_xlabel("a label on the tick labels")
    ax.xaxis.set_label_coords(0.5, 0.0)  # its top at the axis line, over the tick labels
    assert plot.tick_overlaps(fig) == []
    pairs = plot.tick_overlaps(fig, labels=True)
    assert pairs and all("axes 0: a label on the tick labels" in pair for pair in pairs)
    plt.close(fig)


def test_loss_labels_and_scales(fitted):
    fig = plot.loss(fitted)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "loss")
    assert ax.get_title() == "fit: final loss 1" and ax.get_legend() is None
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.linspace(5, 1, 5))
    assert plot.loss(fitted, log=False).axes[0].get_yscale() == "linear"
    negative = fk.FitResult(
        params={},
        loss=-1.0,
        steps=3,
        converged=True,
        message="",
        method="solve:bfgs",
        history={"loss": np.array([2.0, 0.5, -1.0])},
    )
    ax = plot.loss(negative).axes[0]  # a loss below zero cannot be log-scaled
    assert ax.get_yscale() == "linear" and ax.get_title() == "solve:bfgs: final loss -1"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0, 1, 2])
    fig, ax = plt.subplots()
    assert plot.loss(fitted, ax=ax, label="warm") is fig and plot.loss(negative, ax=ax, label="polish") is fig
    assert len(ax.lines) == 2 and _texts(ax.get_legend().get_texts()) == ["warm", "polish"]
    plt.close(fig)


def test_history_panels_and_labels(fitted):
    fig = plot.history(fitted)
    assert fig.get_suptitle() == "Parameter evolution"
    assert [ax.get_title() for ax in fig.axes] == ["mean", "power", "std"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["delta mean", "delta power", "delta std"]
    assert all(ax.get_xlabel() == "step" for ax in fig.axes)
    assert _texts(fig.axes[0].get_legend().get_texts()) == ["[0]", "[1]"]  # the panel's title names the path
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), 0.01 * np.arange(5))
    fig = plot.history(fitted, paths=["std"])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "std"
    fig, ax = plt.subplots()
    assert plot.history(fitted, paths=["power"], ax=ax) is fig and fig.get_suptitle() == ""
    assert len(ax.lines) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="ax= draws one panel but 3 paths"):
        plot.history(fitted, ax=plt.figure().gca())


def test_matrix_names_and_log_kind(line):
    _, _, cov, _ = line
    fig = plot.matrix(cov, title="covariance")
    ax = fig.axes[0]
    assert _texts(ax.get_xticklabels()) == _texts(ax.get_yticklabels()) == ["offset", "slope"]
    np.testing.assert_allclose(ax.images[0].get_array(), cov.matrix)
    norm = ax.images[0].norm
    assert norm.vmin == -norm.vmax  # centred on 0
    fig = plot.matrix(np.array([[1e-6, 0.0], [0.0, 1e2]]), kind="log")
    np.testing.assert_allclose(np.diag(fig.axes[0].images[0].get_array()), [-6.0, 2.0])
    assert fig.axes[1].get_ylabel() == "log10 |value|"
