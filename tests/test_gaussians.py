import jax.numpy as jnp
import numpy as np
import pytest

from fitkit.examples import gaussians


def test_tutorial_problem_reproduces_initial_chi2r():
    prob, truth, start = gaussians.make_problem()
    # The zodiax tutorial prints 7.525943757570605 for the same data and start.
    assert float(prob.chi2r(start)) == pytest.approx(7.525943757570605, rel=1e-12)
    assert prob.n_data == 500 and prob.ddof(start) == 494
    np.testing.assert_allclose(truth["mean"], [2.0, -3.0])


def test_model_profiles_integrate_to_one():
    model = gaussians.Gaussians(mean=[0.0], std=[1.0], power=[1.0], width=10, nsamples=2001)
    dx = float(model.xs[1] - model.xs[0])
    assert float(jnp.sum(model()) * dx) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        gaussians.Gaussians(mean=[0.0, 1.0], std=[1.0], power=[1.0])
