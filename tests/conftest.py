import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def optics64():
    """The tutorial's optics problem at 64 pupil pixels, built once per test session (~7 s)."""
    from fitkit.examples import optics

    return optics.make_problem(0, wf_npixels=64)
