"""The CmdStan-style iteration log of `fk.solve`, printed between the loop's chunks.

The compiled loop records every step's row; after each chunk the host hands
the chunk's rows to the `Reporter` of the call, which prints them. The log
and progress bar are per call, the compiled loop is shared.

A log looks like::

    fk.solve: bfgs on the loss, 6 params, rtol=1e-08, atol=1e-08, max_steps=1000
        Step            loss      ||dx||    ||grad||   step size   # evals  Notes
           1        7.202236           0       71.46           1         1
           2        2.183651      0.8046       24.95           1         2
    ...
    Converged after 25 steps: the last accepted step changed every parameter by ...
"""

from __future__ import annotations

import math
import sys

from .._progress import Progress

__all__ = ["Reporter", "HEADER"]

HEADER = f"{'Step':>8} {'loss':>15} {'||dx||':>11} {'||grad||':>11} {'step size':>11} {'# evals':>9}  Notes"


def _number(value: float, width: int, digits: int) -> str:
    if not math.isfinite(value):
        return " " * width if math.isnan(value) else f"{value:>{width}}"
    return f"{value:>{width}.{digits}g}"


class Reporter:
    """Prints the log (`verbose`) and/or drives a tqdm bar (`progress`) for one solve.

    Use as a context manager around the compiled call; rows arrive via `emit`.

    Args:
        title: the first line (what is solved, with which settings).
        max_steps: the bar's total.
        verbose: print the table.
        progress: a bar of the steps out of `max_steps` with the loss and the gradient's norm
            (`True`, `False`, or `None`: where a notebook or a terminal shows it).
        stream: where the table goes (default: `sys.stdout` at print time).
        rejected: the note on a step that did not move the current point.
        description: the bar's stage name.
    """

    def __init__(
        self,
        title: str,
        max_steps: int,
        verbose: bool,
        progress: bool,
        stream=None,
        rejected: str = "rejected",
        description: str = "solve",
    ):
        self.title = title
        self.description = description
        self.rejected = rejected
        self.max_steps = max_steps
        self.verbose = verbose
        self.progress = progress
        self.stream = stream
        self.bar = None
        self.rows = 0

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream or sys.stdout)
        else:
            print(line, file=self.stream or sys.stdout, flush=True)

    def __enter__(self) -> Reporter:
        bar = Progress(self.max_steps, self.progress, self.description, unit="step")
        self.bar = bar if bar.enabled else None
        if self.verbose:
            self._print(self.title)
            self._print(HEADER)
        return self

    def row(self, step, loss, dx, grad, step_size, evals, accepted) -> None:
        step, evals, accepted = int(step), int(evals), int(accepted)
        if self.verbose:
            notes = self.rejected if accepted == 0 else ""
            self._print(
                f"{step:>8d} {_number(float(loss), 15, 8)} {_number(float(dx), 11, 4)} "
                f"{_number(float(grad), 11, 4)} {_number(float(step_size), 11, 4)} "
                f"{evals if evals >= 0 else '':>9}  {notes}".rstrip()
            )
        if self.bar is not None:
            shown = {"loss": f"{float(loss):.6g}"} if math.isfinite(float(loss)) else {}
            self.bar.to(step, **shown, grad=float(grad))
        self.rows += 1

    def finish(self, message: str) -> None:
        """Close the bar and print why the solve stopped."""
        if self.bar is not None:
            self.bar.finish()  # end full: the solve is over, whatever max_steps was
            self.bar.close()
            self.bar = None
        if self.verbose:
            self._print(message)

    def chunk(self, rows: dict, last_step: int, log_every: int, final: bool) -> None:
        """Report one chunk's rows, numbered up to `last_step`; the final step is always printed."""
        count = len(rows["loss"])
        for i in range(count):
            step = last_step - count + 1 + i
            if step % log_every == 0 or (final and i == count - 1):
                self.row(
                    step,
                    *(rows[k][i] for k in ("loss", "dx_norm", "grad_norm", "step_size", "evals", "accepted")),
                )
            elif self.bar is not None and i == count - 1:
                self.bar.to(step)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
