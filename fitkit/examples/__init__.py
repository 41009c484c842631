"""Example models used by the tutorials, the demo and the tests."""

from . import gaussians, optics

__all__ = ["gaussians", "optics"]
