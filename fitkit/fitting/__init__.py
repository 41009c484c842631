"""First-order fitting: `fit` with per-parameter optax optimisers, `Stopper`, `delay`."""

from ._engine import fit
from ._nan import NonFiniteError
from ._natural import damped_inverse, natural_gradient
from ._optimisers import OptimiserError, map_optimisers
from ._schedules import delay
from ._stopper import Stopper, StopperState

__all__ = [
    "fit",
    "natural_gradient",
    "damped_inverse",
    "Stopper",
    "StopperState",
    "delay",
    "map_optimisers",
    "OptimiserError",
    "NonFiniteError",
]
