"""Progress bars (`fitkit._progress`): text on stderr, a widget in notebooks, nothing when off."""

import numpy as np
import optax
import pytest
import tqdm.notebook
import tqdm.std

import fitkit as fk
from fitkit import _progress
from fitkit._progress import Progress, bar_class
from fitkit.examples import gaussians

TINY_SAMPLE = {"num_warmup": 20, "num_samples": 30}
# Draws this few do not pass the convergence checks; the tests look at the bars only.
pytestmark = [
    pytest.mark.filterwarnings("ignore:fk.sample. do not trust"),
    pytest.mark.filterwarnings("ignore:reached the maximum of 40 steps"),
]


@pytest.fixture(scope="module")
def gauss():
    problem, _, start = gaussians.make_problem()
    return problem, start


@pytest.fixture(scope="module")
def optimum(gauss):
    problem, start = gauss
    return fk.solve(problem, start, method="lbfgs")


@pytest.fixture
def no_terminal(monkeypatch):
    """stderr is not a terminal (as under capsys), whatever runs the tests."""
    monkeypatch.setattr(_progress, "_terminal", lambda: False)
    monkeypatch.setattr(_progress, "in_notebook", lambda: False)


def last_line(text: str) -> str:
    """The last state of a text bar: tqdm redraws it after carriage returns."""
    return [part for part in text.replace("\n", "\r").split("\r") if part.strip()][-1]


def test_fit_bar_shows_its_stage_and_reaches_the_total(gauss, capsys):
    problem, start = gauss
    fk.fit(problem, start, optax.adam(1e-2), steps=40, progress=True, warn=False)
    err = capsys.readouterr().err
    assert last_line(err).startswith("fit: 100%") and "40/40" in err and "loss=" in last_line(err)


def test_fit_stopped_by_its_stopper_ends_full(gauss, capsys):
    problem, start = gauss
    stopper = fk.Stopper(patience=2, atol=1e9)  # no step gains 1e9: stops after two steps
    res = fk.fit(problem, start, optax.adam(1e-2), steps=500, stopper=stopper, progress=True, warn=False)
    assert res.converged and res.steps < 500
    assert f"{res.steps}/{res.steps}" in last_line(capsys.readouterr().err)


def test_solve_bar_ends_full_at_the_steps_taken(gauss, capsys):
    problem, start = gauss
    res = fk.solve(problem, start, method="lbfgs", progress=True)
    line = last_line(capsys.readouterr().err)
    assert line.startswith("solve lbfgs: 100%") and f"{res.steps}/{res.steps}" in line and "grad=" in line


def test_sample_bar_goes_from_warm_up_to_draws(gauss, optimum, capsys):
    problem, _ = gauss
    fk.sample(problem, optimum, **TINY_SAMPLE, progress=True)
    err = capsys.readouterr().err
    assert "sample: warm-up" in err
    line = last_line(err)
    assert line.startswith("sample: draws: 100%") and "50/50" in line and "divergences=" in line


def test_intervals_bar_counts_params(gauss, optimum, capsys):
    problem, _ = gauss
    fk.intervals(problem, optimum, progress=True)
    line = last_line(capsys.readouterr().err)
    assert line.startswith("intervals: 100%") and "6/6" in line


def test_covariance_blocks_bar_and_the_same_matrix(gauss, optimum, capsys):
    problem, _ = gauss
    plain = fk.covariance(problem, optimum, batch_size=2)
    assert capsys.readouterr().err == ""
    followed = fk.covariance(problem, optimum, batch_size=2, progress=True)  # 6 params: 3 blocks
    line = last_line(capsys.readouterr().err)
    assert line.startswith("hessian: 100%") and "3/3" in line
    np.testing.assert_allclose(followed.matrix, plain.matrix, rtol=1e-10, atol=0)
    fisher = fk.fisher(problem, optimum, batch_size=4, progress=True)  # 2 blocks of the Jacobian
    assert "jacobian: 100%" in last_line(capsys.readouterr().err)
    np.testing.assert_allclose(fisher, fk.fisher(problem, optimum, batch_size=4), rtol=1e-12)


def test_analyse_has_a_bar_over_its_stages_and_the_engines_below_it(gauss, capsys):
    problem, start = gauss
    fk.analyse(
        problem,
        start,
        fit={"optimisers": optax.adam(1e-2), "steps": 40, "precondition": None, "refresh_every": None},
        solve={"method": "lbfgs", "projection": None},
        sample=False,
        progress=True,
    )
    captured = capsys.readouterr()
    for shown in ("analyse: fit", "analyse: solve", "analyse: uncertainty", "\rfit:", "\rsolve lbfgs:"):
        assert shown in captured.err
    line = last_line(captured.err)
    assert line.startswith("analyse: 100%") and "3/3" in line  # fit, solve, uncertainty
    assert "[fitkit] warm start" in captured.out and "[fitkit] polish" in captured.out


def test_progress_false_prints_nothing(gauss, optimum, capsys):
    problem, start = gauss
    fk.fit(problem, start, optax.adam(1e-2), steps=20, progress=False, warn=False)
    fk.solve(problem, start, method="lbfgs", progress=False)
    fk.sample(problem, optimum, **TINY_SAMPLE, progress=False)
    fk.analyse(
        problem, start, fit=False, solve={"method": "lbfgs", "projection": None}, sample=False, progress=False
    )
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_default_shows_a_bar_only_where_someone_can_watch(gauss, capsys, monkeypatch, no_terminal):
    problem, start = gauss
    fk.fit(problem, start, optax.adam(1e-2), steps=20, warn=False)  # a log, a pipe, CI
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(_progress, "_terminal", lambda: True)
    fk.fit(problem, start, optax.adam(1e-2), steps=20, warn=False)
    assert "20/20" in last_line(capsys.readouterr().err)


def test_notebook_gets_the_widget_bar_and_a_terminal_the_text_bar(monkeypatch):
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "has_widgets", lambda: True)
    assert bar_class() is tqdm.notebook.tqdm
    assert _progress.shown(None)  # a notebook always shows the default bars
    monkeypatch.setattr(_progress, "has_widgets", lambda: False)
    assert bar_class() is _progress._TextInNotebook
    monkeypatch.setattr(_progress, "in_notebook", lambda: False)
    assert bar_class() is tqdm.std.tqdm


def test_notebook_without_widgets_keeps_one_output_updated_in_place(monkeypatch, capsys):
    import IPython.display

    outputs = []

    class Handle:
        def __init__(self, text):
            self.texts = [text]

        def update(self, bundle, raw):
            self.texts.append(bundle["text/plain"])

    def display(bundle, raw, display_id):
        outputs.append(Handle(bundle["text/plain"]))
        return outputs[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "has_widgets", lambda: False)
    with Progress(2, None, "analyse", unit="stage") as outer:
        with Progress(10, None, "fit") as inner:
            inner.advance(10, loss=0.5)
        outer.advance(2)
    assert len(outputs) == 2  # one output per bar, however many updates
    assert outputs[0].texts[-1].startswith("analyse: 100%") and "2/2" in outputs[0].texts[-1]
    assert (
        outputs[1].texts[0].startswith("fit:") and outputs[1].texts[-1] == ""
    )  # the inner bar goes when done
    assert capsys.readouterr().err == ""  # nothing on the kernel's stderr


def test_inner_bars_do_not_stay(capsys):
    with Progress(1, True, "outer") as outer:
        with Progress(1, True, "inner") as inner:
            assert inner._bar.leave is False
        assert outer._bar.leave is True
    assert Progress._open == []
