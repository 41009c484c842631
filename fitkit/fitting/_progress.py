"""The progress bar of `fk.fit`: `fitkit._progress.Progress` (one module serves every engine)."""

from __future__ import annotations

from .._progress import Progress

__all__ = ["Progress"]
