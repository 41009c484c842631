"""Covariance: the normal (Laplace) approximation at a mode, with error bars, draws and bands."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .. import _io, tree
from ._blocks import check_batch_size, sum_blocks
from ._flat import flatten

__all__ = ["Covariance", "ErrorBars", "Prediction", "MAX_REDRAWS"]

# Rounds of redrawing the Laplace draws that fall outside the bounds.
MAX_REDRAWS = 100


class ErrorBars(NamedTuple):
    """What `plt.errorbar` needs: flat parameter names, values and `sigma`-scaled errors."""

    names: list[str]
    values: np.ndarray
    errors: np.ndarray


class Prediction(NamedTuple):
    """Delta-method mean and standard deviation of a function of the params."""

    mean: Any
    std: Any


class Covariance(eqx.Module):
    """A covariance matrix of the params at a point: error bars, correlations, draws, predictive bands.

    Usually made by `fk.covariance(problem, params)`; can be built directly from
    a flat matrix in `fitkit.tree.ravel` order and the params it belongs to.

    Attributes:
        matrix: the `(n, n)` covariance in `fitkit.tree.ravel` order.
        mean: the params (the mode) the covariance belongs to.
        names: flat scalar parameter names (`wfe[3]`) labelling rows and columns.
        method: how it was computed (`"hessian"`, `"fisher:svd"`, `"fisher:matrix"`).
        dropped: directions dropped by a regularised (pseudo-)inverse, in words.
        scale: the factor the inverse curvature was multiplied by (1 unless
            `fk.covariance(..., scale="chi2r")` or a number was asked for).
        fixed: flat names of params held fixed (zero variance).
        at_limit: flat names of params held at a bound: their error is not a
            standard deviation, so `std` is NaN there.
        lower, upper: flat bounds of the params (`-inf`/`inf` where none), or
            None; `sample` keeps its draws inside them.

    Example:
        >>> cov = fk.covariance(problem, result)
        >>> cov.std["mean"]                      # error bars, shaped like the params
        >>> draws = cov.sample(jr.key(0), 1000)  # params pytree with a leading axis
        >>> band = cov.predict(lambda p: model(p))
    """

    matrix: Float[Array, "n n"]
    mean: Any
    names: tuple[str, ...] = eqx.field(static=True)
    method: str = eqx.field(static=True, default="")
    dropped: tuple[str, ...] = eqx.field(static=True, default=())
    scale: float = eqx.field(static=True, default=1.0)
    fixed: tuple[str, ...] = eqx.field(static=True, default=())
    at_limit: tuple[str, ...] = eqx.field(static=True, default=())
    lower: Float[Array, " n"] | None = None
    upper: Float[Array, " n"] | None = None

    def __init__(
        self,
        matrix: Float[Array, "n n"],
        mean: Any,
        method: str = "",
        dropped: Sequence[str] = (),
        scale: float = 1.0,
        fixed: Sequence[str] = (),
        at_limit: Sequence[str] = (),
        lower: Any = None,
        upper: Any = None,
    ):
        matrix = jnp.asarray(matrix)
        n = tree.size(mean)
        if matrix.shape != (n, n):
            raise ValueError(
                f"the covariance matrix has shape {matrix.shape}, but the params have {n} scalars"
            )
        self.matrix = matrix
        self.mean = mean
        self.names = tuple(tree.names(mean))
        self.method = str(method)
        self.dropped = tuple(str(d) for d in dropped)
        self.scale = float(scale)
        self.fixed = tuple(str(name) for name in fixed)
        self.at_limit = tuple(str(name) for name in at_limit)
        self.lower = None if lower is None else jnp.asarray(lower, matrix.dtype)
        self.upper = None if upper is None else jnp.asarray(upper, matrix.dtype)

    # ------------------------------------------------------------ summaries
    @property
    def size(self) -> int:
        """Number of scalar parameters."""
        return len(self.names)

    @property
    def flat_std(self) -> Float[Array, " n"]:
        """Standard deviations as one vector in `names` order (NaN for params at a bound)."""
        std = jnp.sqrt(jnp.diag(self.matrix))
        if not self.at_limit:
            return std
        return jnp.where(jnp.asarray([n in self.at_limit for n in self.names]), jnp.nan, std)

    @property
    def std(self) -> Any:
        """Standard deviations, shaped like the params (same pytree structure)."""
        return tree.ravel(self.mean)[1](self.flat_std)

    @property
    def correlation(self) -> Float[Array, "n n"]:
        """The correlation matrix: the covariance divided by the outer product of the stds."""
        std = self.flat_std
        return self.matrix / jnp.outer(std, std)

    def to_dataframe(self):
        """A pandas DataFrame indexed by parameter name with columns `mean` and `std`."""
        import pandas as pd

        return pd.DataFrame(
            {"mean": np.asarray(tree.ravel(self.mean)[0]), "std": np.asarray(self.flat_std)},
            index=pd.Index(self.names, name="param"),
        )

    def errorbar(self, sigma: float = 1.0) -> ErrorBars:
        """Data for `plt.errorbar(range(n), values, yerr=errors)`: errors are `sigma` standard deviations.

        Example:
            >>> names, values, errors = cov.errorbar(sigma=5)
            >>> plt.errorbar(np.arange(len(names)), values, yerr=errors, fmt="o")
        """
        if not np.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        values = np.asarray(tree.ravel(self.mean)[0])
        return ErrorBars(list(self.names), values, sigma * np.asarray(self.flat_std))

    # ------------------------------------------------------------ draws and bands
    def _root(self) -> Float[Array, "n n"]:
        """A square root `L` with `L L^T = matrix`, valid for singular (pseudo-inverse) matrices too.

        The matrix is factored in its diagonally scaled basis, `C = D R D` with
        `D = sqrt(diag C)` and `R` the correlation matrix: the eigenvalues of `R`
        are resolved to machine precision relative to 1, whereas those of `C`
        itself only relative to its largest variance, which loses every
        direction whose variance is below `eps * max variance` (a covariance
        spanning 1e-4..3e13 then gives spreads many times too large).
        """
        scale = jnp.sqrt(jnp.clip(jnp.diag(self.matrix), 0.0))
        safe = jnp.where(scale > 0, scale, 1.0)
        correlation = self.matrix / jnp.outer(safe, safe)
        values, vectors = jnp.linalg.eigh(0.5 * (correlation + correlation.T))
        return (scale[:, None] * vectors) * jnp.sqrt(jnp.clip(values, 0.0))

    def sample(self, key: PRNGKeyArray, n: int) -> Any:
        """Laplace draws: `n` params from the normal approximation `N(mean, matrix)`.

        Args:
            key: a JAX random key.
            n: number of draws.

        With bounds (`lower`, `upper`), the draws are those of the normal
        approximation truncated to the bounds: a draw outside is drawn again
        (up to `MAX_REDRAWS` rounds, then an error).

        Returns:
            A params pytree whose leaves have a leading axis of length `n`.

        Raises:
            ValueError: `n` is not a positive integer, or the bounds keep
                rejecting draws (the mode lies far outside them).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        flat, unravel = tree.ravel(self.mean)
        root = self._root().T
        z = jax.random.normal(key, (int(n), flat.size), dtype=self.matrix.dtype)
        draws = flat + z @ root
        if self.lower is not None:
            draws = self._truncate(key, draws, flat, root)
        return jax.vmap(unravel)(draws)

    def _truncate(self, key, draws, flat, root):
        lower, upper = np.asarray(self.lower), np.asarray(self.upper)
        out = np.asarray(draws).copy()
        for round_ in range(MAX_REDRAWS):
            outside = np.flatnonzero(np.any((out < lower) | (out > upper), axis=1))
            if not outside.size:
                return jnp.asarray(out)
            key = jax.random.fold_in(key, round_ + 1)
            # A full batch each round: one shape, so the draw is not compiled again per round.
            z = jax.random.normal(key, draws.shape, dtype=self.matrix.dtype)
            out[outside] = np.asarray(flat + z @ root)[: outside.size]
        raise ValueError(
            f"Covariance.sample: after {MAX_REDRAWS} rounds, {outside.size} draws still fall outside the "
            "bounds; the normal approximation puts almost no mass inside them. Sample the posterior "
            "with fk.sample instead"
        )

    def predict(
        self, fn: Callable[[Any], Any], params: Any = None, batch_size: int | None = None
    ) -> Prediction:
        """Delta-method mean and standard deviation of `fn(params)`, e.g. a model curve or image.

        The variance of each output is `diag(J C J^T)` with `J` the Jacobian of
        `fn` at `params`; it is accumulated from JVPs along the columns of a
        square root of `C`, in blocks of `batch_size`, so J is never formed.

        Args:
            fn: function of the params returning an array or a pytree of arrays.
            params: where to linearise `fn` (default: `mean`).
            batch_size: JVPs per block (default: all at once).

        Returns:
            `Prediction(mean, std)`, each shaped like `fn`'s output.

        Example:
            >>> band = cov.predict(lambda p: model(p))
            >>> plt.fill_between(x, band.mean - band.std, band.mean + band.std)
        """
        params = self.mean if params is None else params
        x, fn_flat, _ = flatten(fn, params, what="fn")
        n = x.size
        if n != self.size:
            raise ValueError(f"params have {n} scalars but the covariance has {self.size}")
        batch_size = check_batch_size(batch_size, n) or n
        root = self._root().astype(x.dtype)
        out0, jvp = jax.linearize(fn_flat, x)

        def block(idx):
            columns = jnp.take(root, idx, axis=1, mode="fill", fill_value=0.0).T  # padding -> 0
            return jnp.sum(jnp.square(jax.vmap(jvp)(columns)), axis=0)

        variance = sum_blocks(block, n, batch_size)
        shapes = jax.eval_shape(fn, params)
        _, unravel_out = tree.ravel(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes))
        return Prediction(unravel_out(out0), unravel_out(jnp.sqrt(variance)))

    # ------------------------------------------------------------ save and load
    def save(self, path: str | os.PathLike) -> None:
        """Write the covariance to one `.npz` file (params made of dicts, lists, tuples and arrays)."""
        _io.save_npz(
            path,
            {
                "matrix": self.matrix,
                "mean": self.mean,
                "method": self.method,
                "dropped": list(self.dropped),
                "scale": self.scale,
                "fixed": list(self.fixed),
                "at_limit": list(self.at_limit),
                "lower": self.lower,
                "upper": self.upper,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Covariance:
        """Read a covariance written by `save`; arrays come back bit for bit."""
        fields = _io.load_npz(path)
        return cls(
            fields["matrix"],
            fields["mean"],
            fields["method"],
            fields["dropped"],
            fields.get("scale", 1.0),
            fields.get("fixed", ()),
            fields.get("at_limit", ()),
            fields.get("lower"),
            fields.get("upper"),
        )

    def __repr__(self) -> str:
        """A summary line, the validity box (positive definite or not), the error table and the correlations."""
        from .. import display

        return display.text(self)

    def _repr_html_(self) -> str:
        """The notebook display (`fitkit.display`): the same cells as the text, coloured."""
        from .. import display

        return display.html(self)
