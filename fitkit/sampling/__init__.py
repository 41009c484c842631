"""Posterior sampling: NUTS in the whitened latent space, and the Posterior it returns."""

# First: numpyro imports tqdm.auto, which would warn in a notebook without ipywidgets.
from .. import _progress  # noqa: F401
from ._diagnostics import ess_bulk, ess_tail, r_hat
from ._nuts import SamplingWarning, sample
from ._posterior import Posterior

__all__ = ["sample", "SamplingWarning", "Posterior", "ess_bulk", "ess_tail", "r_hat"]
