"""Projection: a whitened latent space built from a Fisher or covariance matrix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import tree

__all__ = ["Projection", "ProjectionError"]


class ProjectionError(ValueError):
    """The matrix cannot define a projection: it is not symmetric, or some directions are unconstrained."""


def _describe_direction(vector: np.ndarray, names: list[str], top: int = 3) -> str:
    """Name the params that dominate an eigenvector, largest weight first."""
    weights = np.abs(vector) ** 2
    order = np.argsort(weights)[::-1][:top]
    parts = [names[i] for i in order if weights[i] > 0.05 * weights[order[0]]]
    return " + ".join(parts)


def _normalised_eigh(matrix: np.ndarray, what: str, names: list[str]):
    """Eigen-decompose `matrix` normalised by its diagonal; returns (scale, eigenvalues, eigenvectors)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ProjectionError(f"the {what} matrix must be square, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ProjectionError(
            f"the {what} matrix has non-finite entries; compute it in float64 (fk.enable_x64())"
        )
    asym = np.max(np.abs(matrix - matrix.T)) / max(np.max(np.abs(matrix)), 1e-300)
    if asym > 1e-6:
        raise ProjectionError(f"the {what} matrix is not symmetric (relative asymmetry {asym:.2g})")
    matrix = 0.5 * (matrix + matrix.T)
    diag = np.diag(matrix).copy()
    if np.any(diag < 0):
        negative = ", ".join(names[i] for i in np.flatnonzero(diag < 0))
        raise ProjectionError(
            f"the {what} matrix is indefinite: negative diagonal for {negative}; the params are "
            "not at a minimum, or the matrix is not a Fisher/Hessian/covariance"
        )
    scale = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 0.0)
    eigenvalues, eigenvectors = np.linalg.eigh(scale[:, None] * matrix * scale[None, :])
    return scale, eigenvalues, eigenvectors


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

    Example:
        >>> F = fk.fisher(prob, params)
        >>> proj = fk.Projection.from_fisher(F, center=params)
        >>> u = proj.to_latent(params)            # zeros
        >>> proj.to_params(u + 1.0)               # one sigma along every latent direction
    """

    center: Float[Array, " n"]
    matrix: Float[Array, "n k"]
    inverse: Float[Array, "k n"]
    unravel: Callable = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    dropped: tuple[str, ...] = eqx.field(static=True)

    @property
    def dim(self) -> int:
        """The number of latent dimensions (params minus truncated directions)."""
        return int(self.matrix.shape[1])

    def to_params(self, u: Float[Array, " k"]) -> Any:
        """The params pytree at latent vector `u`."""
        return self.unravel(self.center + self.matrix @ u)

    def to_latent(self, params: Any) -> Float[Array, " k"]:
        """The latent vector of `params` (its projection onto the kept directions)."""
        flat, _ = tree.ravel(params)
        return self.inverse @ (flat - self.center)

    @classmethod
    def _build(cls, center, matrix, inverse, names, dropped, unravel, dtype):
        return cls(
            center=center,
            matrix=jnp.asarray(matrix, dtype),
            inverse=jnp.asarray(inverse, dtype),
            unravel=unravel,
            names=tuple(names),
            dropped=tuple(dropped),
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
        flat, unravel = tree.ravel(center)
        names = tree.names(center)
        if np.shape(fisher) != (flat.size, flat.size):
            raise ProjectionError(
                f"the Fisher matrix has shape {np.shape(fisher)} but center has {flat.size} parameters"
            )
        scale, eigenvalues, vectors = _normalised_eigh(fisher, "Fisher", names)
        keep, dropped = _keep_directions(eigenvalues, vectors, scale, names, truncate)
        lam, vec = eigenvalues[keep], vectors[:, keep]
        # P = D V L^-1/2 whitens: P^T F P = L^-1/2 V^T (D F D) V L^-1/2 = I.
        safe = np.where(scale > 0, scale, 1.0)
        matrix = scale[:, None] * vec / np.sqrt(lam)[None, :]
        inverse = (np.sqrt(lam)[:, None] * vec.T) / safe[None, :]
        return cls._build(flat, matrix, inverse, names, dropped, unravel, flat.dtype)

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
        flat, unravel = tree.ravel(center)
        names = tree.names(center)
        if np.shape(covariance) != (flat.size, flat.size):
            raise ProjectionError(
                f"the covariance has shape {np.shape(covariance)} but center has {flat.size} parameters"
            )
        inv_scale, eigenvalues, vectors = _normalised_eigh(covariance, "covariance", names)
        keep, dropped = _keep_directions(eigenvalues, vectors, inv_scale, names, truncate, "covariance")
        lam, vec = eigenvalues[keep], vectors[:, keep]
        # Here the diagonal scaling is D^-1 = diag(C)^(1/2): P = D^-1 V L^1/2.
        std = np.where(inv_scale > 0, 1.0 / np.where(inv_scale > 0, inv_scale, 1.0), 0.0)
        matrix = std[:, None] * vec * np.sqrt(lam)[None, :]
        inverse = (vec.T / np.sqrt(lam)[:, None]) * inv_scale[None, :]
        return cls._build(flat, matrix, inverse, names, dropped, unravel, flat.dtype)


def _keep_directions(eigenvalues, vectors, scale, names, truncate, what: str = "Fisher"):
    """Which eigen-directions to keep, and descriptions of those dropped."""
    top = max(float(eigenvalues.max(initial=0.0)), 1e-300)
    threshold = (truncate if truncate is not None else 1e-12) * top
    weak = eigenvalues <= threshold
    zero_diag = [names[i] for i in np.flatnonzero(scale == 0)]
    described = [_describe_direction(vectors[:, i], names) for i in np.flatnonzero(weak)]
    if truncate is None and weak.any():
        negative = [
            _describe_direction(vectors[:, i], names) for i in np.flatnonzero(eigenvalues < -threshold)
        ]
        if negative:
            raise ProjectionError(
                f"the {what} matrix is indefinite (negative curvature along "
                + ", ".join(negative)
                + "): the params are not at a minimum, or the matrix is not a Fisher/Hessian of the nll"
            )
        unconstrained = sorted(set(zero_diag) | set(described))
        what_is = "constrained by the data" if what == "Fisher" else "given a positive variance"
        raise ProjectionError(
            "; ".join(f"{name} is not {what_is}" for name in unconstrained)
            + ". Fix or remove these params, add a prior, or pass truncate=1e-10 to drop them."
        )
    return np.flatnonzero(~weak), described


CURVATURES = ("fisher", "hessian")


def resolve_projection(
    problem, params: Any, projection: Projection | str, truncate: float | None = None
) -> Projection:
    """A `Projection` for `params`: the one given, or one built from the curvature of `problem.nll`.

    Args:
        problem: the `fk.Problem`.
        params: the params pytree the projection is centred on (when built here).
        projection: an `fk.Projection` (checked against the params' size), or
            `"fisher"` / `"hessian"` to whiten `fk.fisher(problem, params)` /
            `fk.hessian(problem.nll, params)`.
        truncate: passed to `Projection.from_fisher` when one is built here.

    Raises:
        ValueError: a projection of the wrong size or an unknown curvature name.
        TypeError: `projection` is of another type.
        ProjectionError: the curvature has unconstrained directions (named).
    """
    from . import curvature

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
    else:
        raise ValueError(f"unknown projection {projection!r}; give an fk.Projection or one of {CURVATURES}")
    return Projection.from_fisher(np.asarray(matrix), center=params, truncate=truncate)
