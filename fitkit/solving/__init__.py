"""Second-order solving: `solve` over optimistix (BFGS, L-BFGS, Newton, least squares), with a CmdStan-style log."""

from ._engine import solve
from ._messages import ConvergenceError, ConvergenceWarning
from ._methods import METHODS, UnknownMethodError
from ._solvers import DampedGaussNewton, NelderMead, Newton

__all__ = [
    "solve",
    "METHODS",
    "UnknownMethodError",
    "ConvergenceError",
    "ConvergenceWarning",
    "Newton",
    "DampedGaussNewton",
    "NelderMead",
]
