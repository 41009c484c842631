"""FitResult: what every fitting and solving engine returns."""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy
import numpy as np

from . import _io, tree

__all__ = ["FitResult", "start_params", "inherited_fixed"]


def inherited_fixed(params_or_result: Any, fixed: Any, at_limit: bool = True) -> Any:
    """The params to hold fixed: those given, else those a `FitResult` held (a downstream call keeps
    them), with the params it held at a bound unless `at_limit=False`."""
    if fixed is None and isinstance(params_or_result, FitResult):
        held = [*params_or_result.fixed, *(params_or_result.at_limit if at_limit else ())]
        return held or None
    return fixed


def start_params(params_or_result: Any) -> Any:
    """The params to start from: a `FitResult`'s params (to chain fits), or the params given.

    Leaves are converted to JAX arrays so engines can trace them.
    Floating-point leaves of lower precision than JAX's default float are cast
    to it (with x64 enabled, `fk.enable_x64()`: float32, float16 and bfloat16
    become float64, the precision the problem's data are held in), so every
    engine computes in one dtype rather than failing on mixed ones.

    Raises:
        ParamsTypeError: (a `TypeError` and an `fk.ParamsError`) a leaf is not
            numeric (a string, an object); the message names the leaf.
    """
    from .problem import ParamsTypeError

    params = params_or_result.params if isinstance(params_or_result, FitResult) else params_or_result
    wide = jax.numpy.result_type(float)

    def convert(key_path, leaf):
        if not isinstance(leaf, jax.Array):
            kind = "str" if isinstance(leaf, (str, bytes)) else np.asarray(leaf).dtype.kind
            if kind not in "biuf":
                raise ParamsTypeError(
                    f"params leaf {tree.key_path_to_str(key_path)!r} is {type(leaf).__name__} "
                    f"{_short(leaf)}; every parameter must be a float array (e.g. jnp.array(1.0))"
                )
        leaf = jax.numpy.asarray(leaf)
        if jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating) and leaf.dtype.itemsize < wide.itemsize:
            leaf = leaf.astype(wide)
        return leaf

    return jax.tree_util.tree_map_with_path(convert, params)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FitResult(eqx.Module):
    """The outcome of `fk.fit` or `fk.solve`: immutable, saveable, chainable.

    Attributes:
        params: the fitted params (the best seen, where best-so-far is on).
        loss: `problem.loss(params)` at the returned params.
        steps: number of optimisation steps taken.
        converged: whether a convergence criterion was met (as opposed to
            running out of steps or meeting non-finite values).
        message: why it stopped, in words.
        history: dict of per-step arrays: `"step"` and `"loss"` always; the
            engine may add `"params"` (a pytree with a leading step axis, the
            steps it holds listed in `"params_step"`) and other per-step columns
            such as `"grad_norm"`.
        wall_time: seconds spent running, compilation excluded.
        compile_time: seconds spent tracing and compiling.
        method: the engine and algorithm, e.g. `"fit:optax"` or `"solve:bfgs"`.
        stats: counters such as `{"loss_evals": 27, "grad_evals": 27}`.
        valid: the verdict: True only when the engine stopped normally, no call
            limit was hit, every value is finite, the curvature at `params` is
            positive definite and `edm` is below the tolerance the engine states
            (`max_edm`). Trust a result only when it is valid.
        edm: the estimated distance to the minimum, `0.5 g^T C g` in units of
            the problem's negative log-likelihood (`g` its gradient, `C` the
            inverse curvature at `params`): the decrease of the nll still to be
            had. NaN when it could not be computed.
        flags: why the result is not valid, as names from `fitkit.FLAGS`
            (empty when valid, apart from the informational `at_limit`);
            `message` says it in words.
        fixed: flat names of the params held at their start values (`fixed=`).
        at_limit: flat names of the params held at a bound because the
            minimum lies beyond it (flag `at_limit`).
        log_likelihood: `problem.log_likelihood(params)`, the log-likelihood
            at the returned params (normalisation included, priors not).
        n_free: how many scalar params were free (not fixed, tied or held at
            a bound): the `k` of `aic` and `bic`.
        n_data: the problem's number of used data points (events for unbinned data).
        initial: the params the engine started from (same pytree as `params`,
            ties applied), or None for a result built by hand or saved by an
            older fitkit.

    Example:
        >>> res = fk.solve(prob, params)
        >>> res.save("fit.npz"); fk.FitResult.load("fit.npz").loss == res.loss
        True
    """

    params: Any
    loss: float
    steps: int
    converged: bool
    message: str
    history: dict = eqx.field(default_factory=dict)
    wall_time: float = 0.0
    compile_time: float = 0.0
    method: str = ""
    stats: dict = eqx.field(default_factory=dict)
    valid: bool = False
    edm: float = float("nan")
    flags: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    at_limit: tuple[str, ...] = ()
    log_likelihood: float = float("nan")
    n_free: int = 0
    n_data: int = 0
    initial: Any = None

    @property
    def aic(self) -> float:
        """Akaike's information criterion, `2 k - 2 log L` (`k = n_free`): lower is better.

        Compare models fitted to the same data; it is meaningful at the
        maximum-likelihood point (a MAP point with informative priors shifts it).
        """
        return 2.0 * self.n_free - 2.0 * float(self.log_likelihood)

    @property
    def bic(self) -> float:
        """The Bayesian information criterion, `k log n - 2 log L` (`n = n_data`): lower is better."""
        return (
            self.n_free * float(np.log(self.n_data)) - 2.0 * float(self.log_likelihood)
            if self.n_data
            else float("nan")
        )

    def names(self) -> list[str]:
        """Flat scalar names of the params (`position.blue[0]`, ...), in ravel order."""
        return tree.names(self.params)

    def to_dataframe(self):
        """The history as a pandas DataFrame: one row per recorded step.

        Columns: `step`, `loss`, every other per-step history column, and, when
        the params history was kept, one column per flat parameter name (NaN
        on rows whose params were thinned out).
        """
        import pandas as pd

        history = self.history
        steps = np.asarray(history.get("step", np.arange(len(history.get("loss", [])))))
        frame = pd.DataFrame({"step": steps})
        for key, value in history.items():
            if key in ("step", "params", "params_step"):
                continue
            value = np.asarray(value)
            if value.ndim == 1 and len(value) == len(steps):
                frame[key] = value
        if history.get("params") is not None:
            leaves = jax.tree.leaves(history["params"])
            n_rows = np.shape(leaves[0])[0] if leaves else 0
            flat = np.concatenate([np.reshape(np.asarray(x), (n_rows, -1)) for x in leaves], axis=1)
            params_step = np.asarray(history.get("params_step", steps[:n_rows]))
            columns = pd.DataFrame(flat, columns=tree.names(self.params))
            columns["step"] = params_step
            frame = frame.merge(columns, on="step", how="left")
        return frame

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to one `.npz` file (params made of dicts, lists, tuples)."""
        _io.save_npz(
            path,
            {
                "params": self.params,
                "loss": float(self.loss),
                "steps": int(self.steps),
                "converged": bool(self.converged),
                "message": str(self.message),
                "history": self.history,
                "wall_time": float(self.wall_time),
                "compile_time": float(self.compile_time),
                "method": str(self.method),
                "stats": self.stats,
                "valid": bool(self.valid),
                "edm": float(self.edm),
                "flags": list(self.flags),
                "fixed": list(self.fixed),
                "at_limit": list(self.at_limit),
                "log_likelihood": float(self.log_likelihood),
                "n_free": int(self.n_free),
                "n_data": int(self.n_data),
                "initial": self.initial,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> FitResult:
        """Read a result written by `save`; arrays come back as NumPy arrays, bit for bit."""
        fields = _io.load_npz(path)
        for name in ("flags", "fixed", "at_limit"):
            fields[name] = tuple(fields.get(name, ()))
        return cls(**fields)

    def __repr__(self) -> str:
        """A summary line (`valid` or `NOT VALID (flags)`), the validity box and the parameter table."""
        from . import display

        return display.text(self)

    def _repr_html_(self) -> str:
        """The notebook display: the validity box and the parameter table (`fitkit.display`)."""
        from . import display

        return display.html(self)
