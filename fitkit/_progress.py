"""Progress bars for the long stages: `fk.fit`, `fk.solve`, `fk.sample`, `fk.covariance` blocks,
`fk.intervals` and `fk.analyse`.

Every bar advances on the host between compiled chunks (the one loop of
`fitkit._loop` returns to Python about every 0.2 s); nothing is called back
from inside a compiled program.

Which bar (`bar_class`). The choice is tqdm.auto's: a Jupyter kernel gets a
widget (`tqdm.notebook.tqdm`), anything else a text bar on stderr
(`tqdm.std.tqdm`). fitkit makes that choice itself rather than import
`tqdm.auto.tqdm`, because in a kernel without ipywidgets tqdm.auto warns
"IProgress not found" into the user's output and falls back to a text bar
on the kernel's stderr, which a notebook keeps as one output per update: a
notebook executed by nbclient (the mkdocs-jupyter tutorials) held a line per
chunk. So:

- a Jupyter kernel (notebook, lab, VS Code, Colab) with ipywidgets: `tqdm.notebook.tqdm`;
- a Jupyter kernel without ipywidgets: a text bar kept in one display output
  and updated in place (`_TextInNotebook`), so a live notebook shows one
  moving line and an executed one keeps the bar's last state, one line;
- anywhere else (a terminal, IPython in a terminal, qtconsole, Spyder, a
  script): `tqdm.std.tqdm` on stderr.

When (`shown`). `progress=None`, the default of `fk.fit`, `fk.sample`,
`fk.intervals`, `fk.covariance` and `fk.analyse`, shows a bar where someone
can watch it: in a Jupyter kernel, or when stderr is a terminal. CI logs,
pipes, files and pytest's capture get nothing. `progress=True` always shows
one (text on stderr outside a notebook), `progress=False` never; tqdm's own
environment variables apply too (`TQDM_DISABLE=1` turns every bar off,
`TQDM_MININTERVAL=5` slows the updates).

Nesting. A bar opened while another is open (the engines' bars inside
`fk.analyse`'s bar over its stages) is an inner bar: it sits below the outer
one and disappears when done (`leave=False`).
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import sys
import warnings
from typing import Any, ClassVar

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as std_tqdm

__all__ = ["Progress", "bar_class", "shown", "in_notebook", "has_widgets"]


def _import_tqdm_auto_quietly() -> None:
    """Import `tqdm.auto` once with its "IProgress not found" warning silenced.

    numpyro imports `tqdm.auto` (so does `fk.sample`, through numpyro); in a kernel
    without ipywidgets that import warns into the notebook, about a bar fitkit never uses.
    """
    if "tqdm.auto" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import tqdm.auto  # noqa: F401


_import_tqdm_auto_quietly()


def in_notebook() -> bool:
    """Whether this is a Jupyter kernel that shows rich output (tqdm.autonotebook's test)."""
    if "IPython.utils._process_emscripten" in sys.modules:  # JupyterLite
        return True
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    if any(name == "QT_API" or name.startswith("SPYDER") for name in os.environ):
        return False  # qtconsole and Spyder show text bars well
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    name = type(shell).__name__.lower()
    return isinstance(shell, ZMQInteractiveShell) and "qt" not in name and "spyder" not in name


def has_widgets() -> bool:
    """Whether ipywidgets can be imported (tqdm.notebook's widget needs it)."""
    return importlib.util.find_spec("ipywidgets") is not None


def _terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def shown(progress: bool | None) -> bool:
    """Whether to show a bar: `progress`, or for `None` whether a notebook or a terminal can show it."""
    if progress is None:
        return in_notebook() or _terminal()
    return bool(progress)


class _TextInNotebook(std_tqdm):
    """tqdm's text bar kept in one notebook output, updated in place (IPython's `update_display`).

    For kernels without ipywidgets: nothing goes to the kernel's stderr, whose every
    write would be a new output in a saved or executed notebook.
    """

    monitor_interval = 0  # no monitor thread updating the display from outside the main thread

    def __init__(self, *args, **kwargs):
        self._handle = None
        kwargs["file"] = io.StringIO()  # the newline and cursor moves of the terminal bar go nowhere
        kwargs.setdefault("ascii", False)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        from IPython.display import display

        text = self.__str__() if msg is None else msg
        if self._handle is None:
            if text:
                self._handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self._handle.update({"text/plain": text}, raw=True)
        return True


def bar_class() -> type:
    """The tqdm class for this environment: a widget in a Jupyter kernel with ipywidgets, else text."""
    if in_notebook():
        if has_widgets():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TqdmWarning)
                from tqdm.notebook import tqdm as notebook_tqdm
            return notebook_tqdm
        return _TextInNotebook
    return std_tqdm


def _shown_value(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else f"{value:.4g}"
    return value


class Progress:
    """One bar: a stage name, a total in `unit`s and a postfix; does nothing when not shown.

    Args:
        total: the units of work (steps, transitions, blocks, params, stages).
        enabled: `True`, `False` or `None` (where it can be seen; see the module).
        description: the stage name, at the bar's left.
        unit: what is counted (`"step"`, `"it"`, `"block"`, `"param"`, `"stage"`).
        leave: keep the bar once closed (default: outer bars yes, inner bars no).

    Example:
        >>> with Progress(500, True, "fit") as bar:
        ...     bar.advance(10, loss=1.23)
    """

    _open: ClassVar[list[Progress]] = []

    def __init__(
        self,
        total: int | None,
        enabled: bool | None,
        description: str = "fit",
        *,
        unit: str = "step",
        leave: bool | None = None,
    ):
        self._bar = None
        if not shown(enabled):
            return
        inner = bool(Progress._open)
        self._bar = bar_class()(
            total=total, desc=description, unit=unit, leave=(not inner) if leave is None else leave
        )
        Progress._open.append(self)

    @property
    def enabled(self) -> bool:
        """Whether a bar is shown."""
        return self._bar is not None

    @property
    def n(self) -> int:
        """Units done so far (0 when not shown)."""
        return 0 if self._bar is None else int(self._bar.n)

    def postfix(self, **values: Any) -> None:
        """Show `name=value` after the bar (floats to 4 digits; NaN and None left out)."""
        if self._bar is None:
            return
        shown_values = {k: _shown_value(v) for k, v in values.items()}
        self._bar.set_postfix({k: v for k, v in shown_values.items() if v is not None}, refresh=False)

    def advance(self, units: int, loss: float = math.nan, **postfix: Any) -> None:
        """Move the bar on by `units`, showing `loss` (when finite) and the other `postfix` values."""
        if self._bar is None:
            return
        if postfix or math.isfinite(loss):
            self.postfix(**({"loss": f"{loss:.6g}"} if math.isfinite(loss) else {}), **postfix)
        self._bar.update(units)

    def to(self, done: int, **postfix: Any) -> None:
        """Move the bar to `done` units."""
        if self._bar is not None:
            if postfix:
                self.postfix(**postfix)
            self._bar.update(done - self._bar.n)

    def describe(self, description: str) -> None:
        """Change the stage name (shown at once)."""
        if self._bar is not None and description != self._bar.desc:
            self._bar.set_description_str(description)

    def finish(self) -> None:
        """End full whatever the total was: the stage is over (a solve that converged early)."""
        if self._bar is not None and (self._bar.total is None or self._bar.n < self._bar.total):
            self._bar.total = self._bar.n
            self._bar.refresh()

    def write(self, line: str, file: Any = None) -> None:
        """Print `line` (to stdout by default) without breaking a text bar; printed even when not shown."""
        file = sys.stdout if file is None else file
        if self._bar is not None:
            type(self._bar).write(line, file=file)
        else:
            print(line, file=file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            if self in Progress._open:
                Progress._open.remove(self)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
