import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fitkit as fk


class Image(fk.Observation):
    filter: str

    def predict(self, params, model):
        return params["flux"][self.filter] * jnp.ones_like(self.data)


class Handmade(fk.Observation):
    filter: str

    def __init__(self, data, error, filter):
        self.data = data
        self.error = error
        self.filter = filter

    def predict(self, params, model):
        return jnp.zeros_like(self.data)


def test_keyword_construction_and_conversion():
    obs = Image(data=[[1, 2], [3, 4]], error=0.5, filter="blue")
    assert obs.data.dtype == jnp.result_type(float) and obs.data.shape == (2, 2)
    assert obs.filter == "blue" and obs.describe() == "Image(filter='blue')"
    assert bool(obs.valid.all())
    assert Handmade(jnp.ones(3), jnp.ones(3), "red").describe() == "Handmade(filter='red')"


def test_base_fields_are_keyword_only():
    with pytest.raises(TypeError):
        Image(jnp.ones(2), jnp.ones(2), "blue")


def test_shape_mismatches_are_errors():
    with pytest.raises(fk.ObservationError, match=r"Image\(filter='blue'\): error has shape \(3,\)"):
        Image(data=jnp.ones(2), error=jnp.ones(3), filter="blue")
    with pytest.raises(fk.ObservationError, match="mask has shape"):
        Image(data=jnp.ones(2), error=jnp.ones(2), mask=jnp.ones(3, bool), filter="blue")
    with pytest.raises(fk.ObservationError, match="boolean"):
        Image(data=jnp.ones(2), error=jnp.ones(2), mask=jnp.ones(2), filter="blue")
    with pytest.raises(fk.ObservationError, match="not understood"):
        Image(data=jnp.ones(2), error=jnp.ones(2), mask="nan", filter="blue")


def test_bad_errors_name_observation_and_count():
    error = jnp.array([1.0, jnp.nan, 0.0, -1.0])
    with pytest.raises(
        fk.ObservationError, match=r"Image\(filter='blue'\): 3 of 4 unmasked points.*mask='invalid'"
    ):
        Image(data=jnp.ones(4), error=error, filter="blue")
    with pytest.raises(fk.ObservationError, match="1 of 2 unmasked data points are not finite"):
        Image(data=jnp.array([1.0, jnp.inf]), error=1.0, filter="red")
    with pytest.raises(fk.ObservationError, match="non-positive"):
        Handmade(jnp.ones(2), jnp.zeros(2), "red")


def test_masking_is_one_keyword_away():
    error = jnp.array([1.0, jnp.nan, 0.0, 2.0])
    obs = Image(data=jnp.array([1.0, 2.0, 3.0, jnp.nan]), error=error, mask="invalid", filter="b")
    np.testing.assert_array_equal(obs.valid, [True, False, False, False])
    explicit = Image(data=jnp.ones(4), error=error, mask=jnp.isfinite(error) & (error > 0), filter="b")
    np.testing.assert_array_equal(explicit.valid, [True, False, False, True])
    np.testing.assert_array_equal(fk.valid_mask(jnp.ones(4), error), [True, False, False, True])


def test_validation_is_skipped_for_traced_values():
    out = jax.jit(lambda d: Image(data=d, error=jnp.ones(2), filter="b").data.sum())(
        jnp.array([1.0, jnp.nan])
    )
    assert np.isnan(out)
