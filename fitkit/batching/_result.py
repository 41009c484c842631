"""The outcome of a batched fit: per-member params, verdicts and flags, and a summary in words."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._flags import FLAGS, describe_flags
from ..results import FitResult

__all__ = ["BatchResult"]


class BatchResult(eqx.Module):
    """Every member's fit: arrays with one entry per member (params with a leading axis).

    Attributes:
        params: the fitted params, each leaf with a leading batch axis.
        loss: `problem.loss` of each member at its params.
        steps: the steps of each member's last solve.
        converged: each member's solver met its convergence test.
        valid: each member's verdict, as `FitResult.valid` (trust only those that are True).
        edm: each member's estimated distance to the minimum.
        flags: flag name (see `fk.FLAGS`) -> a boolean array, True for the members it applies to.
        method: the methods run, e.g. `"solve:levenberg-marquardt->newton"`.
        tried: for each member, how many solves it took (1 + the retries it needed).
        wall_time, compile_time: seconds, for the whole batch.
        history: the batch's per-step rows where the engine keeps them (`fk.fit`: `step`,
            `running`, `loss`); empty otherwise.

    Example:
        >>> res = fk.solve(survey, starts)
        >>> print(res.summary())
        >>> res.member(17)          # one member as an fk.FitResult
    """

    params: Any
    loss: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    valid: np.ndarray
    edm: np.ndarray
    flags: dict
    method: str = ""
    tried: np.ndarray = eqx.field(default_factory=lambda: np.zeros(0, int))
    wall_time: float = 0.0
    compile_time: float = 0.0
    history: dict = eqx.field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.valid.shape[0])

    def __len__(self) -> int:
        return self.size

    def flags_of(self, index: int) -> tuple[str, ...]:
        """The flags of member `index`, in `fk.FLAGS` order."""
        return tuple(name for name in FLAGS if name in self.flags and bool(self.flags[name][index]))

    def member(self, index: int) -> FitResult:
        """Member `index` as an `fk.FitResult` (no history: a batch keeps none per member)."""
        flags = self.flags_of(index)
        state = "Valid" if self.valid[index] else f"NOT VALID: {describe_flags(flags)}"
        return FitResult(
            params=jax.tree.map(lambda x: x[index], self.params),
            loss=float(self.loss[index]),
            steps=int(self.steps[index]),
            converged=bool(self.converged[index]),
            message=f"Member {index} of a batch of {self.size}. {state} (edm={self.edm[index]:.3g})",
            method=self.method,
            valid=bool(self.valid[index]),
            edm=float(self.edm[index]),
            flags=flags,
        )

    def summary(self, worst: int = 5) -> str:
        """How many members are valid, how many carry each flag, and the worst few by EDM."""
        lines = [
            f"{int(self.valid.sum())} of {self.size} fits valid ({100 * self.valid.mean():.1f}%), {self.method}."
        ]
        for name in FLAGS:
            if name in self.flags and self.flags[name].any():
                lines.append(f"  {int(self.flags[name].sum())} flagged {name}: {FLAGS[name]}")
        bad = np.flatnonzero(~self.valid)
        if bad.size:
            order = bad[np.argsort(-np.nan_to_num(self.edm[bad], nan=np.inf))][:worst]
            shown = ", ".join(f"{i} (edm {self.edm[i]:.3g}; {', '.join(self.flags_of(i))})" for i in order)
            lines.append(f"  worst: {shown}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"BatchResult({int(self.valid.sum())}/{self.size} valid, {self.method})"
