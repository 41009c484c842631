"""fitkit: fit differentiable scientific models to data, and say how sure the fit is.

`import fitkit` loads only what every model needs (modules, observations,
problems, results); the engines and their libraries (optimistix, optax,
numpyro, lineax) and the plotting and table libraries (matplotlib,
chainconsumer, pandas, arviz) load on first use of the name that needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _cache, likelihoods, stats, tree
from ._cache import clear_caches, enable_compile_cache
from ._config import enable_x64, info
from ._flags import FLAGS
from ._io import FitKitFileError
from .likelihoods import Likelihood, LikelihoodError, MultivariateNormal, Normal, Poisson, StudentT, Unbinned
from .module import Module
from .observation import Observation, ObservationError, valid_mask
from .parametrisation import Parametrisation, ParametrisationError
from .problem import ParamsError, ParamsTypeError, Problem
from .results import FitResult
from .tree import PathError

__version__ = "0.1.0"

_cache.enable_from_environment()

# public name -> the module that defines it, imported on first access (PEP 562)
_LAZY = {
    "examples": "fitkit.examples",
    "analysis": "fitkit.analysis",
    "curvature": "fitkit.curvature",
    "fitting": "fitkit.fitting",
    "projection": "fitkit.projection",
    "sampling": "fitkit.sampling",
    "solving": "fitkit.solving",
    "plot": "fitkit.plot",
    "display": "fitkit.display",
    "fit_report": "fitkit.display",
    "Analysis": "fitkit.analysis",
    "analyse": "fitkit.analysis",
    "Covariance": "fitkit.curvature",
    "CurvatureError": "fitkit.curvature",
    "covariance": "fitkit.curvature",
    "fisher": "fitkit.curvature",
    "hessian": "fitkit.curvature",
    "jacobian": "fitkit.curvature",
    "Evidence": "fitkit.curvature",
    "laplace_evidence": "fitkit.curvature",
    "Stopper": "fitkit.fitting",
    "delay": "fitkit.fitting",
    "fit": "fitkit.fitting",
    "natural_gradient": "fitkit.fitting",
    "Projection": "fitkit.projection",
    "ProjectionError": "fitkit.projection",
    "TruncationWarning": "fitkit.projection",
    "Posterior": "fitkit.sampling",
    "sample": "fitkit.sampling",
    "SamplingWarning": "fitkit.sampling",
    "ConvergenceError": "fitkit.solving",
    "ConvergenceWarning": "fitkit.solving",
    "solve": "fitkit.solving",
    "batching": "fitkit.batching",
    "Batch": "fitkit.batching",
    "BatchError": "fitkit.batching",
    "BatchResult": "fitkit.batching",
    "batch": "fitkit.batching",
    "profiles": "fitkit.profiles",
    "Intervals": "fitkit.profiles",
    "intervals": "fitkit.profiles",
    "profile": "fitkit.profiles",
    "contour": "fitkit.profiles",
}

if TYPE_CHECKING:
    from . import display, examples, plot
    from .analysis import Analysis, analyse
    from .batching import Batch, BatchError, BatchResult, batch
    from .curvature import (
        Covariance,
        CurvatureError,
        Evidence,
        covariance,
        fisher,
        hessian,
        jacobian,
        laplace_evidence,
    )
    from .display import fit_report
    from .fitting import Stopper, delay, fit, natural_gradient
    from .profiles import Intervals, contour, intervals, profile
    from .projection import Projection, ProjectionError, TruncationWarning
    from .sampling import Posterior, SamplingWarning, sample
    from .solving import ConvergenceError, ConvergenceWarning, solve


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'fitkit' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if where == f"fitkit.{name}" else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Parametrisation",
    "ParametrisationError",
    "__version__",
    "enable_x64",
    "info",
    "enable_compile_cache",
    "clear_caches",
    "tree",
    "stats",
    "examples",
    "plot",
    "display",
    "fit_report",
    "Module",
    "Observation",
    "ObservationError",
    "valid_mask",
    "likelihoods",
    "Likelihood",
    "LikelihoodError",
    "Normal",
    "StudentT",
    "Poisson",
    "MultivariateNormal",
    "Unbinned",
    "Problem",
    "ParamsError",
    "ParamsTypeError",
    "PathError",
    "FitResult",
    "FitKitFileError",
    "FLAGS",
    "jacobian",
    "hessian",
    "fisher",
    "covariance",
    "Covariance",
    "laplace_evidence",
    "Evidence",
    "CurvatureError",
    "fit",
    "Stopper",
    "delay",
    "natural_gradient",
    "Projection",
    "ProjectionError",
    "TruncationWarning",
    "sample",
    "SamplingWarning",
    "Posterior",
    "analyse",
    "Analysis",
    "solve",
    "batch",
    "Batch",
    "BatchError",
    "BatchResult",
    "intervals",
    "Intervals",
    "profile",
    "contour",
    "ConvergenceError",
    "ConvergenceWarning",
]
