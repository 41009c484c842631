"""Example models used by the tutorials, the demo and the tests."""

from . import gaussians, nls, optics

__all__ = ["gaussians", "nls", "optics"]
