import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

import fitkit as fk
from fitkit.examples import gaussians

SMALL_SAMPLE = {"num_warmup": 50, "num_samples": 100, "num_chains": 2}


@pytest.fixture(scope="module")
def gauss():
    return gaussians.make_problem()


@pytest.fixture(scope="module")
def full(gauss):
    problem, truth, start = gauss
    return fk.analyse(
        problem,
        start,
        fit={"optimisers": optax.adam(1e-2), "steps": 50, "precondition": None, "refresh_every": None},
        solve={"method": "lbfgs", "projection": None},
        sample=SMALL_SAMPLE,
        truth=truth,
        progress=False,
    )


def test_every_stage_runs_and_reaches_the_optimum(full, gauss):
    problem = gauss[0]
    assert full.fit is not None and full.fit.steps == 50
    assert full.solve.converged
    assert float(problem.chi2r(full.params)) == pytest.approx(1.028246, rel=1e-5)
    assert full.covariance is not None and full.posterior.num_draws == 100
    table = full.table()
    assert list(table.columns) == [
        "estimate",
        "truth",
        "std (curvature)",
        "post. mean",
        "post. std",
        "r_hat",
        "ess_bulk",
    ]
    # The posterior agrees with the curvature error bars (within sampling noise of 200 draws).
    ratio = table["post. std"] / table["std (curvature)"]
    assert ratio.between(0.7, 1.3).all()
    report = full.report()
    assert "reduced chi-squared: start 7.52594 -> final 1.02825" in report
    assert "mean[0]" in report and "divergences" in report


@pytest.mark.parametrize("skip", ["fit", "solve", "uncertainty", "sample"])
def test_each_stage_can_be_skipped(gauss, skip):
    problem, _, start = gauss
    stages = {"fit": {"steps": 20}, "solve": {"method": "bfgs", "projection": None}, "sample": SMALL_SAMPLE}
    stages[skip] = False
    analysis = fk.analyse(problem, start, progress=False, **stages)
    assert getattr(analysis, {"uncertainty": "covariance", "sample": "posterior"}.get(skip, skip)) is None
    others = {
        "fit": analysis.fit,
        "solve": analysis.solve,
        "uncertainty": analysis.covariance,
        "sample": analysis.posterior,
    }
    assert all(value is not None for name, value in others.items() if name != skip)
    assert isinstance(analysis.report(), str)


def test_warm_start_only_when_far_off(gauss):
    problem, truth, start = gauss
    near = fk.analyse(
        problem,
        start,
        uncertainty=False,
        sample=False,
        solve={"method": "bfgs", "projection": None},
        progress=False,
    )
    assert near.fit is None and "skipped: starting reduced chi-squared 7.53" in near.config["fit"]


def test_save_writes_report_figures_results_and_csv(full, tmp_path):
    folder = full.save(tmp_path / "out")
    names = {p.name for p in folder.iterdir()}
    expected = {
        "report.txt",
        "residuals.png",
        "correlation.png",
        "errorbars.png",
        "pulls.png",
        "zscores.png",
        "corner.png",
        "loss_warm_start.png",
    }
    assert (
        expected
        | {"loss_polish.png", "fit.npz", "solve.npz", "covariance.npz", "posterior.npz", "samples.csv"}
        <= names
    )
    frame = pd.read_csv(folder / "samples.csv", comment="#", float_precision="round_trip")
    np.testing.assert_array_equal(
        frame[list(full.posterior.names)].to_numpy(),
        full.posterior.to_dataframe()[list(full.posterior.names)].to_numpy(),
    )
    header = (folder / "samples.csv").read_text().splitlines()[:3]
    assert (
        header[0].startswith("# fitkit") and header[1].startswith("# config:") and "num_warmup" in header[2]
    )
    back = fk.FitResult.load(folder / "solve.npz")
    assert back.loss == full.solve.loss


def test_bad_stage_options(gauss):
    problem, _, start = gauss
    with pytest.raises(TypeError, match="sample="):
        fk.analyse(problem, start, sample="yes")
    with pytest.raises(TypeError, match="fk.Problem"):
        fk.analyse(None, start)


def test_demo_quick_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fitkit.demo", "--quick", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reduced chi-squared: start" in out.stdout
    folder = tmp_path / "demo"
    assert {"corner.png", "pulls.png", "zscores.png", "errorbars.png"} <= {p.name for p in folder.iterdir()}
    report = (folder / "report.txt").read_text()
    for field in ("AIC", "BIC", "init =", "Correlations"):
        assert field in report, field


@pytest.fixture(scope="module")
def optics_analysis():
    """The demo's problem, smaller: the 16 optics params solved from the tutorial's start."""
    from fitkit.examples import optics

    problem, truth, start = optics.make_problem(0, wf_npixels=32, n_frames=200)
    return fk.analyse(problem, start, truth=truth, sample=False, progress=False)


def test_the_demo_figures_show_pulls_of_all_16_params_and_the_z_scores(optics_analysis):
    figures = optics_analysis.figures()
    names = list(optics_analysis.covariance.names)
    assert len(names) == 16
    pulls = figures["pulls"]
    (ax,) = pulls.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert "σ" in ax.get_xlabel() and "truth" in ax.get_xlabel()
    expected = (
        fk.tree.ravel(optics_analysis.params)[0] - fk.tree.ravel(optics_analysis.truth)[0]
    ) / optics_analysis.covariance.flat_std
    written = [float(t.get_text()) for t in ax.texts if t.get_text() != "no σ"]
    np.testing.assert_allclose(written, np.round(np.asarray(expected), 2), atol=0.0051)
    assert fk.plot.tick_overlaps(pulls, labels=True) == []
    zscores = figures["zscores"]
    (zax,) = zscores.axes
    used = sum(
        int(np.isfinite(np.asarray(z)).sum())
        for z in optics_analysis.problem.z_scores(optics_analysis.params)
    )
    assert sum(p.get_height() for p in zax.patches) == used
    assert "N(0, 1)" in [t.get_text() for t in zax.get_legend().get_texts()]
    assert fk.plot.tick_overlaps(zscores, labels=True) == []
    report = optics_analysis.report()
    for field in ("AIC", "BIC", "init =", "Correlations"):
        assert field in report, field


def test_intervals_stage_reports_profile_errors():
    x = jnp.linspace(0.0, 1.0, 30)
    data = 1.0 + 2.0 * x + 0.1 * jnp.sin(17.0 * x)

    class Line(fk.Observation):
        def predict(self, params, model):
            return params["a"] + params["b"] * x

    problem = fk.Problem(None, Line(data=data, error=jnp.full(30, 0.1)))
    start = {"a": jnp.asarray(0.0), "b": jnp.asarray(0.0)}
    analysis = fk.analyse(problem, start, sample=False, intervals=True, progress=False)
    table = analysis.table()
    # A linear model with Gaussian errors: the profile interval is the curvature error exactly.
    np.testing.assert_allclose(table["profile minus"], table["std (curvature)"], rtol=1e-6)
    np.testing.assert_allclose(table["profile plus"], table["std (curvature)"], rtol=1e-6)
    assert "profile-likelihood intervals (68.3%): 2 params, valid" in analysis.report()
    with pytest.raises(ValueError, match=r"analyse\(intervals=...\): cl must be a probability"):
        fk.analyse(problem, start, intervals={"cl": 2.0}, progress=False)
