"""Ctrl-C (a real SIGINT, from a timer thread) during an engine keeps the work done so far."""

import os
import signal
import threading
import time

import numpy as np
import optax
import pytest

import fitkit as fk
from fitkit.examples import gaussians


@pytest.fixture(scope="module")
def problem():
    prob, _, start = gaussians.make_problem()
    return prob, start


def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_ctrl_c_during_fit_returns_the_best_params_so_far(problem):
    prob, start = problem
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    fk.fit(prob, start, optax.sgd(1e-4), steps=600, progress=False, warn=False)  # compile first
    timer = _interrupt_after(0.5)
    began = time.perf_counter()
    with pytest.warns(fk.ConvergenceWarning, match="interrupted"):
        res = fk.fit(prob, start, optax.sgd(1e-4), steps=10**9, progress=False)
    took = time.perf_counter() - began
    timer.join()
    assert took < 10.0  # generous for a loaded machine: without the interrupt it would run for hours
    assert "interrupted" in res.flags and not res.valid and not res.converged
    assert 0 < res.steps < 10**9 and len(res.history["loss"]) == res.steps
    assert res.loss <= float(prob.loss(start))  # the best params seen, not the start
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_ctrl_c_during_solve_returns_the_best_params_so_far(problem):
    prob, start = problem
    # Nelder-Mead with zero tolerances never converges: only the interrupt ends it.
    options = dict(method="nelder-mead", rtol=0.0, atol=0.0, warn=False)
    fk.solve(prob, start, max_steps=600, **options)  # compile first (the same chunk length)
    timer = _interrupt_after(0.5)
    began = time.perf_counter()
    res = fk.solve(prob, start, max_steps=10**9, **options)
    took = time.perf_counter() - began
    timer.join()
    assert took < 10.0
    assert "interrupted" in res.flags and not res.valid and res.stats["outcome"] == "interrupted"
    assert "Interrupted" in res.message and 0 < res.steps < 10**9
    assert np.all(np.isfinite(res.history["loss"])) and res.loss < float(prob.loss(start))


def test_ctrl_c_during_sample_keeps_the_draws_so_far(problem):
    prob, start = problem
    best = fk.solve(prob, start, warn=False)
    options = dict(num_warmup=50, num_chains=2, progress=False)
    fk.sample(prob, best.params, num_samples=600, **options)  # compile first
    timer = _interrupt_after(1.0)
    began = time.perf_counter()
    with pytest.warns(UserWarning, match="interrupted"):
        post = fk.sample(prob, best.params, num_samples=10**7, **options)
    took = time.perf_counter() - began
    timer.join()
    assert took < 10.0
    assert post.diagnostics["interrupted"] and 0 < post.num_draws < 10**7
    assert post.latent.shape == (2, post.num_draws, 6) and np.all(np.isfinite(post.flat()))
    assert post.diagnostics["num_steps"].shape == (2, post.num_draws)
