"""Batches of problems: many fits of one structure, `vmap`ped over a leading axis in one compiled loop."""

from ._arrays import from_arrays
from ._chunks import solve_chunks
from ._covariance import BatchCovariance, covariance_batch
from ._distributed import gather, local_rows
from ._fit import fit_batch
from ._result import BatchResult
from ._solve import solve_batch
from ._stack import Batch, BatchError, batch, stack_params

__all__ = [
    "Batch",
    "BatchCovariance",
    "BatchError",
    "BatchResult",
    "covariance_batch",
    "fit_batch",
    "batch",
    "from_arrays",
    "gather",
    "local_rows",
    "solve_batch",
    "solve_chunks",
    "stack_params",
]
