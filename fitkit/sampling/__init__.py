"""Posterior sampling: NUTS in the whitened latent space, and the Posterior it returns."""

from ._diagnostics import ess_bulk, ess_tail, r_hat
from ._nuts import SamplingWarning, sample
from ._posterior import Posterior

__all__ = ["sample", "SamplingWarning", "Posterior", "ess_bulk", "ess_tail", "r_hat"]
