"""A tqdm progress bar that advances between the fused chunks of a fit."""

from __future__ import annotations

import math

__all__ = ["Progress"]


class Progress:
    """Show steps done and the latest loss; does nothing when `enabled` is False.

    Example:
        >>> with Progress(500, True) as bar:
        ...     bar.advance(10, 1.23)
    """

    def __init__(self, total: int, enabled: bool, description: str = "fit"):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="step")

    def advance(self, steps: int, loss: float) -> None:
        """Move the bar on by `steps` and show `loss`."""
        if self._bar is None:
            return
        if math.isfinite(loss):
            self._bar.set_postfix(loss=f"{loss:.6g}", refresh=False)
        self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
