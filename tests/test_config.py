import warnings

import jax.numpy as jnp

import fitkit as fk
from fitkit import _cache, _config


def test_info_reports_backend_and_precision():
    info = fk.info()
    assert info["backend"] == "cpu" and info["device_count"] >= 1
    assert info["x64"] is True and info["float_dtype"] == "float64"


def test_float32_warning_is_given_once(monkeypatch):
    _cache.registry.get("once").pop("float32 curvature", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _config.warn_if_float32(jnp.float32, "the Hessian")
        _config.warn_if_float32(jnp.float32, "the Hessian")
        _config.warn_if_float32(jnp.float64, "the Hessian")
    assert len(caught) == 1 and "enable_x64" in str(caught[0].message)
