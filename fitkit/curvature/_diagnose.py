"""Which parameters make a curvature matrix singular or indefinite, in a unit-free way.

The matrix `M` is first normalised by its diagonal, `D M D` with
`D = diag(M)^(-1/2)`: the result has ones on the diagonal whatever the units
of each parameter, so a well-measured parameter of size 1e-4 next to one of
size 1e3 is not mistaken for an unconstrained one. Its eigen-decomposition
(or, from a whitened Jacobian `A`, the SVD of `A D`, whose squared singular
values are the same eigenvalues without squaring the condition number) then
names the directions the data do not constrain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "CurvatureError",
    "Spectrum",
    "Direction",
    "spectrum_of_matrix",
    "spectrum_of_jacobian",
    "problems",
    "invert",
]


class CurvatureError(ValueError):
    """The curvature matrix is singular or indefinite, so it has no covariance.

    Attributes:
        unconstrained: the parameter names involved in the offending directions.
        directions: one line per offending direction, in words.
    """

    def __init__(self, message: str, unconstrained: Sequence[str] = (), directions: Sequence[str] = ()):
        super().__init__(message)
        self.unconstrained = list(unconstrained)
        self.directions = list(directions)


class Spectrum(NamedTuple):
    """Eigen-decomposition of a diagonal-normalised curvature matrix `D M D`.

    Attributes:
        scale: the diagonal of `D`, so that `M = D^-1 V diag(values) V^T D^-1`.
        values: eigenvalues, ascending.
        vectors: eigenvectors as columns, in normalised coordinates.
        rtol: eigenvalues below `rtol * max(values)` are numerically zero; it
            reflects the precision of the route taken (matrix or SVD).
    """

    scale: np.ndarray
    values: np.ndarray
    vectors: np.ndarray
    rtol: float


class Direction(NamedTuple):
    """A direction of parameter space with (numerically) zero or negative curvature."""

    text: str
    names: list[str]
    value: float


def check_finite(matrix: np.ndarray, names: Sequence[str], what: str) -> None:
    """Raise `CurvatureError` naming the parameters whose rows hold NaN or inf."""
    bad = ~np.all(np.isfinite(matrix), axis=0)
    if bad.any():
        involved = [name for name, b in zip(names, bad) if b]
        shown = ", ".join(involved[:10]) + (", ..." if len(involved) > 10 else "")
        raise CurvatureError(
            f"{what} has NaN or inf entries for {shown}; the model's derivatives are not finite "
            "there (e.g. 0 ** p, log(0), overflow, or float32 precision)",
            involved,
            [f"{name} has non-finite curvature" for name in involved],
        )


def _scale(diagonal: np.ndarray) -> np.ndarray:
    # A parameter with no curvature at all keeps the scale of the others, so that
    # its zero (or negative) eigenvalue shows up in the spectrum below.
    positive = diagonal[diagonal > 0]
    fallback = 1.0 / np.sqrt(positive.max()) if positive.size else 1.0
    return np.where(diagonal > 0, 1.0 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0)), fallback)


def spectrum_of_matrix(matrix: np.ndarray, eps: float, rtol: float | None = None) -> Spectrum:
    """Eigen-decompose the diagonal-normalised symmetric `matrix` (a Hessian or Fisher matrix).

    Args:
        matrix: `(n, n)` symmetric curvature matrix.
        eps: machine epsilon of the precision `matrix` was computed in.
        rtol: relative eigenvalue cut-off; default `n * eps`.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0]
    scale = _scale(np.diag(matrix).copy())
    values, vectors = np.linalg.eigh(scale[:, None] * matrix * scale[None, :])
    return Spectrum(scale, values, vectors, n * eps if rtol is None else rtol)


def spectrum_of_jacobian(jac: np.ndarray, eps: float, rtol: float | None = None) -> Spectrum:
    """The spectrum of `jac^T jac` from the SVD of the column-normalised whitened Jacobian `jac`.

    Args:
        jac: `(m, n)` whitened Jacobian (rows may include prior square roots).
        eps: machine epsilon of the precision `jac` was computed in.
        rtol: relative eigenvalue cut-off; default `(max(m, n) * eps)^2`: the SVD
            resolves singular values down to `max(m, n) * eps` of the largest.
    """
    jac = np.asarray(jac, dtype=np.float64)
    n = jac.shape[1]
    scale = _scale(np.sum(jac * jac, axis=0))
    # A short-and-wide Jacobian has fewer singular values than parameters: the
    # full V supplies the null directions, whose eigenvalues are zero.
    _, singular, vt = np.linalg.svd(jac * scale[None, :], full_matrices=jac.shape[0] < n)
    values = np.concatenate([singular**2, np.zeros(n - singular.size)])
    order = np.argsort(values)
    values, vectors = values[order], vt.T[:, order]
    default = (max(jac.shape) * eps) ** 2
    return Spectrum(scale, values, vectors, default if rtol is None else rtol)


def _combination(vector: np.ndarray, names: Sequence[str]) -> tuple[str, list[str]]:
    weights = vector**2
    order = [i for i in np.argsort(-weights) if weights[i] >= 0.05][:6]
    terms = [f"{'-' if vector[i] < 0 else '+'} {abs(vector[i]):.2f} {names[i]}" for i in order]
    text = " ".join(terms)
    text = text[2:] if text.startswith("+ ") else "-" + text[2:]
    return text, [names[i] for i in order]


def _directions(vectors: np.ndarray, values: np.ndarray, names: Sequence[str], kind: str) -> list[Direction]:
    """Describe a subspace: single parameters lying in it first, then remaining combinations."""
    if vectors.shape[1] == 0:
        return []
    inside = np.sum(vectors**2, axis=1)  # how much of each parameter's axis lies in the subspace
    single = [i for i in np.argsort(-inside) if inside[i] > 0.9][: vectors.shape[1]]
    value = float(values.min()) if kind == "negative" else float(values.max())
    verb = "is not constrained by the data" if kind == "zero" else "has negative curvature (not at a minimum)"
    out = [Direction(f"{names[i]} {verb}", [names[i]], value) for i in single]
    rest = vectors.copy()
    rest[single, :] = 0.0
    u, s, _ = np.linalg.svd(rest, full_matrices=False)
    for k in range(vectors.shape[1] - len(single)):
        if s[k] < 0.5:
            break
        text, involved = _combination(u[:, k] / np.linalg.norm(u[:, k]), names)
        if kind == "zero":
            line = f"the combination {text} is not constrained by the data ({', '.join(involved)} are degenerate)"
        else:
            line = f"the combination {text} has negative curvature (not at a minimum)"
        out.append(Direction(line, involved, value))
    return out


def problems(spectrum: Spectrum, names: Sequence[str], rtol: float | None = None) -> list[Direction]:
    """The zero-curvature and negative-curvature directions of `spectrum`, described by parameter names."""
    rtol = spectrum.rtol if rtol is None else rtol
    values, vectors = spectrum.values, spectrum.vectors
    top = max(float(values.max()), 0.0) if values.size else 0.0
    cut = rtol * top
    negative = values < -cut
    zero = (np.abs(values) <= cut) | (top == 0.0)
    return _directions(vectors[:, zero], values[zero], names, "zero") + _directions(
        vectors[:, negative & ~zero], values[negative & ~zero], names, "negative"
    )


def invert(
    spectrum: Spectrum, names: Sequence[str], what: str, regularise: bool | float | None = None
) -> tuple[np.ndarray, list[Direction]]:
    """The covariance `M^-1` from the spectrum of `M`, or its pseudo-inverse when asked.

    Args:
        spectrum: from `spectrum_of_matrix` or `spectrum_of_jacobian`.
        names: flat parameter names, for messages.
        what: the matrix in words ("the Hessian of the nll"), for messages.
        regularise: `None`/`False`: raise on any zero or negative direction.
            `True`: drop those directions (a pseudo-inverse). A float: also drop
            directions whose normalised eigenvalue is below `regularise` times the largest.

    Returns:
        `(covariance, dropped)`: the `(n, n)` matrix and the dropped directions.

    Raises:
        CurvatureError: a zero or negative direction and no `regularise`.
    """
    if not np.all(np.isfinite(spectrum.values)):
        raise CurvatureError(f"{what} has non-finite entries; check the model for NaNs at these params")
    if regularise is None or regularise is False:
        found = problems(spectrum, names)
        if found:
            involved = sorted({n for d in found for n in d.names}, key=list(names).index)
            kind = "indefinite" if any("negative" in d.text for d in found) else "singular"
            lines = "\n".join(f"  - {d.text}" for d in found)
            raise CurvatureError(
                f"{what} is {kind}, so it has no covariance:\n{lines}\n"
                "Fix or remove these parameters, add priors on them, fit further if the curvature is "
                "negative, or pass regularise=True for a pseudo-inverse that drops these directions.",
                involved,
                [d.text for d in found],
            )
        keep = np.ones(spectrum.values.size, dtype=bool)
        dropped: list[Direction] = []
    else:
        if isinstance(regularise, bool):
            rtol = spectrum.rtol
        elif isinstance(regularise, (int, float)) and regularise >= 0:
            rtol = max(float(regularise), spectrum.rtol)
        else:
            raise ValueError(f"regularise must be None, True, or a non-negative float, got {regularise!r}")
        dropped = problems(spectrum, names, rtol)
        keep = spectrum.values > rtol * max(float(spectrum.values.max()), 0.0)
    vectors = spectrum.vectors[:, keep] * spectrum.scale[:, None]
    covariance = (vectors / spectrum.values[keep]) @ vectors.T
    return 0.5 * (covariance + covariance.T), dropped
