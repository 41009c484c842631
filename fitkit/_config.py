"""Precision and device configuration."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from ._cache import once

__all__ = ["enable_x64", "info", "warn_if_float32"]


def enable_x64(enable: bool = True) -> None:
    """Switch JAX to 64-bit floats (float64 arrays by default).

    Call this once, before creating any arrays: curvature (Hessians, Fisher
    matrices, covariances) of physical models is often meaningless in float32.

    Args:
        enable: `True` for float64, `False` to go back to float32.

    Example:
        >>> import fitkit as fk
        >>> fk.enable_x64()
    """
    jax.config.update("jax_enable_x64", bool(enable))


def info() -> dict:
    """Describe the backend, devices and default precision JAX is using.

    Returns:
        A dict with `backend`, `devices` (list of strings), `device_count`,
        `float_dtype` (the default float type) and `x64` (bool). It is also
        printed in a one-line summary by `print(fk.info())`.

    Example:
        >>> import fitkit as fk
        >>> fk.info()["backend"] in {"cpu", "gpu", "tpu"}
        True
    """
    devices = jax.devices()
    x64 = bool(jax.config.read("jax_enable_x64"))
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_count": len(devices),
        "float_dtype": str(jnp.zeros(()).dtype),
        "x64": x64,
    }


def warn_if_float32(dtype, what: str) -> None:
    """Warn once per session that `what` is being computed in single precision."""
    if jnp.dtype(dtype) == jnp.float32 and once("float32 curvature"):
        warnings.warn(
            f"{what} is computed in float32, where curvature of physical models is "
            "often inaccurate or NaN; call fitkit.enable_x64() at the start of the "
            "script.",
            stacklevel=3,
        )
