"""Projection: a whitened latent space built from a Fisher or covariance matrix."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import tree
from .curvature._diagnose import CurvatureError, check_finite, problems, spectrum_of_matrix

__all__ = ["Projection", "ProjectionError", "TruncationWarning"]

# The share of a param's normalised axis lying in dropped directions above
# which its projected spread is no longer its spread.
UNSAMPLED_WEIGHT = 1e-6


class ProjectionError(CurvatureError):
    """The matrix cannot define a projection: wrong shape, not symmetric, or with unconstrained directions."""


class TruncationWarning(UserWarning):
    """A truncated projection leaves some params unsampled along the directions it dropped."""


def _spectrum(matrix, names: list[str], what: str, truncate: float | None):
    """The diagonal-normalised spectrum of `matrix`, the kept eigen-directions and those dropped."""
    matrix = np.asarray(matrix)
    n = len(names)
    if matrix.shape != (n, n):
        raise ProjectionError(f"the {what} matrix has shape {matrix.shape} but center has {n} parameters")
    check_finite(matrix, names, f"the {what} matrix")
    matrix = matrix.astype(np.float64)
    asym = np.max(np.abs(matrix - matrix.T)) / max(np.max(np.abs(matrix)), 1e-300)
    if asym > 1e-6:
        raise ProjectionError(f"the {what} matrix is not symmetric (relative asymmetry {asym:.2g})")
    spectrum = spectrum_of_matrix(0.5 * (matrix + matrix.T), np.finfo(np.float64).eps, truncate)
    found = problems(spectrum, names)
    if what == "covariance":
        found = [
            d._replace(text=d.text.replace("is not constrained by the data", "has zero variance"))
            for d in found
        ]
    if found and truncate is None:
        involved = sorted({name for d in found for name in d.names}, key=names.index)
        lines = "\n".join(f"  - {d.text}" for d in found)
        raise ProjectionError(
            f"the {what} matrix cannot be whitened:\n{lines}\nFix or remove these params, add a prior, "
            "or pass truncate=1e-10 to drop these directions.",
            involved,
            [d.text for d in found],
        )
    keep = spectrum.values > spectrum.rtol * max(float(spectrum.values.max()), 0.0)
    # A param whose (normalised) axis has any weight in a dropped direction is
    # not sampled along it: its spread would come out too small, down to zero.
    inside = np.sum(spectrum.vectors[:, ~keep] ** 2, axis=1)
    unsampled = [name for name, weight in zip(names, inside) if weight > UNSAMPLED_WEIGHT]
    return spectrum, np.flatnonzero(keep), [d.text for d in found], unsampled


class Projection(eqx.Module):
    """A linear map from a whitened latent vector `u` to params: `params = center + P @ u`.

    Built from a Fisher (or Hessian) matrix `F` so that the curvature in latent
    space is the identity, `P.T @ F @ P = I`, or from a covariance `C` so that
    `P @ P.T = C`. The matrix is first normalised by its diagonal, so the
    result does not depend on each parameter's units, then eigen-decomposed
    (the "eigen-projection" of the zodiax tutorial). Optimisers and samplers
    work far better in `u`: every direction has unit scale and none is
    correlated with another.

    Attributes:
        center: the flat params at `u = 0`.
        matrix: `P`, shape `(n_params, dim)`.
        inverse: the left inverse of `P`, shape `(dim, n_params)`.
        names: flat parameter names.
        dropped: descriptions of the directions removed by truncation.
        unsampled: the flat names of params with weight in a dropped direction:
            along it they stay at `center`, so a spread computed through the
            projection (`fk.sample` draws) is too small for them, down to zero.

    Example:
        >>> F = fk.fisher(prob, params)
        >>> proj = fk.Projection.from_fisher(F, center=params)
        >>> u = proj.to_latent(params)            # zeros
        >>> proj.to_params(u + 1.0)               # one sigma along every latent direction
    """

    center: Float[Array, " n"]
    matrix: Float[Array, "n k"]
    inverse: Float[Array, "k n"]
    layout: Any
    names: tuple[str, ...] = eqx.field(static=True)
    dropped: tuple[str, ...] = eqx.field(static=True)
    unsampled: tuple[str, ...] = eqx.field(static=True, default=())

    @property
    def dim(self) -> int:
        """The number of latent dimensions (params minus truncated directions)."""
        return int(self.matrix.shape[1])

    def to_params(self, u: Float[Array, " k"]) -> Any:
        """The params pytree at latent vector `u`."""
        return self.layout.to_params(self.center + self.matrix @ u)

    def log_det_jacobian(self, u: Float[Array, " k"]) -> Float[Array, ""]:
        """`log |d params / du|` up to a constant: that of the bounds transform behind the projection (0 without)."""
        inner = getattr(self.layout, "log_det_jacobian", None)
        return jnp.zeros(()) if inner is None else inner(self.center + self.matrix @ u)

    def to_latent(self, params: Any) -> Float[Array, " k"]:
        """The latent vector of `params` (its projection onto the kept directions)."""
        return self.inverse @ (self.layout.to_latent(params) - self.center)

    @classmethod
    def _build(cls, center, matrix, inverse, names, dropped, unsampled, layout, dtype):
        return cls(
            center=center,
            matrix=jnp.asarray(matrix, dtype),
            inverse=jnp.asarray(inverse, dtype),
            layout=layout,
            names=tuple(names),
            dropped=tuple(dropped),
            unsampled=tuple(unsampled),
        )

    @classmethod
    def from_fisher(
        cls, fisher: Float[Array, "n n"], center: Any, truncate: float | None = None
    ) -> Projection:
        """The whitening projection of a Fisher information (or Hessian) matrix.

        Args:
            fisher: `(n, n)` symmetric positive (semi-)definite matrix in
                `fk.tree.ravel` order of `center`, e.g. from `fk.fisher` or
                `fk.hessian(prob.nll, params)`.
            center: params pytree at `u = 0` (usually the start or the optimum).
            truncate: drop latent directions whose normalised eigenvalue is
                below `truncate * max_eigenvalue` (e.g. `1e-10`). Without it,
                such directions are an error.

        Raises:
            ProjectionError: the matrix is not square, symmetric or finite, or
                has directions the data do not constrain (named in the message).
        """
        layout = tree.Layout.of(center)
        flat = layout.to_latent(center)
        names = tree.names(center)
        spectrum, keep, dropped, unsampled = _spectrum(fisher, names, "Fisher", truncate)
        lam, vec, scale = spectrum.values[keep], spectrum.vectors[:, keep], spectrum.scale
        # P = D V L^-1/2 whitens: P^T F P = L^-1/2 V^T (D F D) V L^-1/2 = I.
        matrix = scale[:, None] * vec / np.sqrt(lam)[None, :]
        inverse = (np.sqrt(lam)[:, None] * vec.T) / scale[None, :]
        return cls._build(flat, matrix, inverse, names, dropped, unsampled, layout, flat.dtype)

    @classmethod
    def from_covariance(
        cls, covariance: Float[Array, "n n"], center: Any, truncate: float | None = None
    ) -> Projection:
        """The projection whose latent unit normal maps to `N(center, covariance)`: `P P^T = C`.

        Args:
            covariance: `(n, n)` symmetric positive (semi-)definite covariance
                in `fk.tree.ravel` order of `center` (e.g. `fk.covariance(...).matrix`).
            center: params pytree at `u = 0`.
            truncate: drop directions whose normalised variance is below
                `truncate * max_variance`; without it such directions are an error.

        Raises:
            ProjectionError: as for `from_fisher`.
        """
        layout = tree.Layout.of(center)
        flat = layout.to_latent(center)
        names = tree.names(center)
        spectrum, keep, dropped, unsampled = _spectrum(covariance, names, "covariance", truncate)
        lam, vec, scale = spectrum.values[keep], spectrum.vectors[:, keep], spectrum.scale
        # Here D = diag(C)^-1/2 and C = D^-1 V L V^T D^-1, so P = D^-1 V L^1/2.
        matrix = vec * np.sqrt(lam)[None, :] / scale[:, None]
        inverse = (vec.T / np.sqrt(lam)[:, None]) * scale[None, :]
        return cls._build(flat, matrix, inverse, names, dropped, unsampled, layout, flat.dtype)


# "identity" whitens nothing: NUTS on the (unconstrained) params themselves, for posteriors with no
# Gaussian core to whiten around (a hierarchical funnel); pair it with mass adaptation.
CURVATURES = ("fisher", "hessian", "identity")


def _latent_projection(problem, params, projection, truncate, parametrisation, jacobian) -> Projection:
    """The whitening projection of the free directions of the unconstrained vector `z` of a parametrisation.

    The curvature is that of `problem.nll` through `T` (minus the log-Jacobian
    with `jacobian=True`, the density a sampler sees), restricted to the free
    params; the projection's rows for the other elements are zero, so they never move.
    """
    from ._reduced import latent_curvature

    if isinstance(projection, Projection):
        raise ValueError(
            "with bounds, ties or fixed params the projection lives in the unconstrained space of the "
            "free params; give projection='fisher' or 'hessian' and it is built there"
        )
    if projection not in CURVATURES:
        raise ValueError(f"unknown projection {projection!r}; give an fk.Projection or one of {CURVATURES}")
    z0 = parametrisation.to_latent(params)
    if projection == "identity":
        matrix = np.eye(z0.size)
    else:
        matrix = latent_curvature(problem, parametrisation, z0, projection, jacobian)
    keep = parametrisation.independent()
    names = [parametrisation.names[i] for i in keep]
    block = np.asarray(matrix)[np.ix_(keep, keep)]
    spectrum, kept, dropped, unsampled = _spectrum(
        block, names, "Hessian" if projection == "hessian" else "Fisher", truncate
    )
    lam, vec, scale = spectrum.values[kept], spectrum.vectors[:, kept], spectrum.scale
    n = parametrisation.size
    matrix = np.zeros((n, len(kept)))
    inverse = np.zeros((len(kept), n))
    matrix[keep] = scale[:, None] * vec / np.sqrt(lam)[None, :]
    inverse[:, keep] = (np.sqrt(lam)[:, None] * vec.T) / scale[None, :]
    return Projection._build(z0, matrix, inverse, names, dropped, unsampled, parametrisation, z0.dtype)


def resolve_projection(
    problem,
    params: Any,
    projection: Projection | str,
    truncate: float | None = None,
    parametrisation: Any = None,
    jacobian: bool = False,
) -> Projection:
    """A `Projection` for `params`: the one given, or one built from the curvature of `problem.nll`.

    Args:
        problem: the `fk.Problem`.
        params: the params pytree the projection is centred on (when built here).
        projection: an `fk.Projection` (checked against the params' size), or
            `"fisher"` / `"hessian"` to whiten `fk.fisher(problem, params)` /
            `fk.hessian(problem.nll, params)`, or `"identity"` for no whitening.
        truncate: passed to `Projection.from_fisher` when one is built here.
        parametrisation: an `fk.Parametrisation` (bounds, ties, fixed params):
            the projection is then built in its unconstrained space, over the free params.
        jacobian: with a parametrisation, include the log-Jacobian of its
            bounds in the curvature (for sampling).

    Raises:
        ValueError: a projection of the wrong size or an unknown curvature name.
        TypeError: `projection` is of another type.
        ProjectionError: the curvature has unconstrained directions (named).
    """
    from . import curvature

    if parametrisation is not None:
        return _latent_projection(problem, params, projection, truncate, parametrisation, jacobian)
    if isinstance(projection, Projection):
        if projection.center.size != tree.size(params):
            raise ValueError(
                f"the projection has {projection.center.size} params but params have {tree.size(params)}"
            )
        return projection
    if not isinstance(projection, str):
        raise TypeError(
            f"projection must be an fk.Projection, 'fisher' or 'hessian', got {type(projection).__name__}"
        )
    if projection == "fisher":
        matrix = curvature.fisher(problem, params)
    elif projection == "hessian":
        matrix = curvature.hessian(problem.nll, params)
    elif projection == "identity":
        matrix = np.eye(tree.size(params))
    else:
        raise ValueError(f"unknown projection {projection!r}; give an fk.Projection or one of {CURVATURES}")
    return Projection.from_fisher(np.asarray(matrix), center=params, truncate=truncate)
