"""Curvature: memory-batched Jacobians and Hessians, Fisher information, and covariances."""

from ._covariance import Covariance, ErrorBars, Prediction
from ._diagnose import CurvatureError
from ._engine import covariance
from ._evidence import Evidence, laplace_evidence
from ._fisher import fisher, whitened_jacobian
from ._hessian import hessian
from ._jacobian import jacobian

__all__ = [
    "Evidence",
    "laplace_evidence",
    "jacobian",
    "hessian",
    "fisher",
    "whitened_jacobian",
    "covariance",
    "Covariance",
    "CurvatureError",
    "ErrorBars",
    "Prediction",
]
