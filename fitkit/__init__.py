"""fitkit: fit differentiable scientific models to data, and say how sure the fit is."""

from . import examples, plot, stats, tree
from ._config import enable_x64, info
from ._flags import FLAGS
from ._io import FitKitFileError
from .analysis import Analysis, analyse
from .curvature import Covariance, CurvatureError, covariance, fisher, hessian, jacobian
from .fitting import Stopper, delay, fit, natural_gradient
from .module import Module
from .observation import Observation, ObservationError, valid_mask
from .problem import ParamsError, ParamsTypeError, Problem
from .projection import Projection, ProjectionError, TruncationWarning
from .results import FitResult
from .sampling import Posterior, sample
from .solving import ConvergenceError, ConvergenceWarning, solve
from .tree import PathError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "enable_x64",
    "info",
    "tree",
    "stats",
    "examples",
    "plot",
    "Module",
    "Observation",
    "ObservationError",
    "valid_mask",
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
    "CurvatureError",
    "fit",
    "Stopper",
    "delay",
    "natural_gradient",
    "Projection",
    "ProjectionError",
    "TruncationWarning",
    "sample",
    "Posterior",
    "analyse",
    "Analysis",
    "solve",
    "ConvergenceError",
    "ConvergenceWarning",
]
