"""Example models used by the tutorials, the demo and the tests."""

from . import gaussians

__all__ = ["gaussians"]
