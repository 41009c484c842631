"""Profile-likelihood intervals (MINOS), profile curves and 2-D profile contours."""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import refuse_batch
from .._progress import Progress
from .._reduced import OnFlat, OnLatent
from .._verdict import _value_and_grad, default_max_edm
from ..curvature import hessian as curvature_hessian
from ..problem import Problem
from ..results import FitResult, inherited_fixed, start_params
from ._centre import latent_view, map_rows, polish
from ._machine import Settings
from ._search import ENGINES, Objective, run

# An unconstrained coordinate this far out is at its bound (exp(-25) of the way).
Z_EDGE = 25.0
# The farthest a ray goes on an open side, in standard deviations of the curvature.
R_OPEN = 1.0e3
# The inner fits go on to this fraction of `max_edm`, so the profile values are exact well inside it,
# or to the rounding of the nll (`ROUNDING` ulps of it), below which no step can be judged.
EDM_MARGIN = 1e-2
ROUNDING = 16.0

__all__ = ["Intervals", "intervals", "profile", "contour", "threshold"]


def threshold(cl: float | None = None, sigma: float | None = None, dof: int = 1) -> float:
    """The rise of the nll that bounds a profile region: `chi2.ppf(cl, dof) / 2` (`sigma**2 / 2` for 1-D).

    Args:
        cl: the confidence level, in (0, 1).
        sigma: or the 1-D interval in standard deviations (its level is `erf(sigma / sqrt 2)`).
            Neither given: one sigma (cl 0.6827).
        dof: the number of params profiled jointly: 1 (an interval) or 2 (a contour).

    Returns:
        The rise Δ of the nll.

    Raises:
        ValueError: both `cl` and `sigma` given, `cl` outside (0, 1), `sigma` not positive, `dof` not 1 or 2.

    Example:
        >>> fk.profiles.threshold(0.95)           # 1.92
        >>> fk.profiles.threshold(sigma=1, dof=2)  # 1.15
    """
    if sigma is not None:
        if cl is not None:
            raise ValueError("give cl= or sigma=, not both")
        if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        cl = math.erf(sigma / math.sqrt(2.0))
    if cl is None:
        cl = 0.6826894921370859
    if isinstance(cl, bool) or not isinstance(cl, (int, float)) or not 0 < cl < 1:
        raise ValueError(f"cl must be a probability in (0, 1), e.g. 0.68 or 0.95; got {cl!r}")
    if dof == 1:
        return 0.5 * statistics.NormalDist().inv_cdf(0.5 * (1.0 + cl)) ** 2
    if dof == 2:
        return -math.log1p(-cl)  # chi2 with 2 dof: ppf(cl) = -2 log(1 - cl)
    raise ValueError("dof must be 1 or 2")


class Intervals(eqx.Module):
    """Profile-likelihood (MINOS) intervals of a fit: absolute lower and upper limits per param.

    Attributes:
        params: the best-fit params the intervals belong to.
        lower, upper: pytrees shaped like the params with the absolute limits
            (NaN for params not profiled; the bound itself for a one-sided side).
        names: the flat names profiled, in order.
        value, flat_lower, flat_upper: flat arrays over `names`.
        lower_valid, upper_valid: per name, whether that side converged (the
            inner fits too) and stayed inside the bounds.
        lower_at_bound, upper_at_bound: the side ran into a bound before the
            nll rose enough: a one-sided interval, reported at the bound.
        new_minimum: a point with a lower nll found by a search (params), or None:
            the fit was not at the minimum; solve again from it.
        cl: the confidence level; delta: the nll rise that bounds it.
        messages: what went wrong, in words (empty when all is valid).

    Example:
        >>> iv = fk.intervals(prob, res)
        >>> iv.table()
    """

    params: Any
    lower: Any
    upper: Any
    names: tuple[str, ...] = eqx.field(static=True)
    value: np.ndarray
    flat_lower: np.ndarray
    flat_upper: np.ndarray
    lower_valid: np.ndarray
    upper_valid: np.ndarray
    lower_at_bound: np.ndarray
    upper_at_bound: np.ndarray
    new_minimum: Any
    cl: float
    delta: float
    messages: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Every side of every interval converged and no lower minimum was found."""
        return bool(self.lower_valid.all() and self.upper_valid.all() and self.new_minimum is None)

    @property
    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """`(minus, plus)`: the distances from the value to the limits (positive), as MINOS quotes them."""
        return self.value - self.flat_lower, self.flat_upper - self.value

    def table(self):
        """A DataFrame per param: value, lower, upper, the two errors and the flags."""
        import pandas as pd

        minus, plus = self.errors
        return pd.DataFrame(
            {
                "value": self.value,
                "lower": self.flat_lower,
                "upper": self.flat_upper,
                "minus": minus,
                "plus": plus,
                "lower valid": self.lower_valid,
                "upper valid": self.upper_valid,
                "lower at bound": self.lower_at_bound,
                "upper at bound": self.upper_at_bound,
            },
            index=pd.Index(list(self.names), name="param"),
        )

    def __repr__(self) -> str:
        """A summary line, the validity box (every side converged or not) and the table of limits."""
        from .. import display

        return display.text(self)

    def _repr_html_(self) -> str:
        """The notebook display (`fitkit.display`): the same cells as the text, coloured."""
        from .. import display

        return display.html(self)


class _Centre(NamedTuple):
    problem: Any
    params: Any
    parametrisation: Any
    declared: bool
    objective: Any
    z_hat: Any
    nll_min: Any
    flat_hat: np.ndarray
    hessian: Any
    free: np.ndarray
    sigma: np.ndarray
    max_edm: float
    new_minimum: Any
    messages: tuple[str, ...]


def _setup(problem, result, fixed, what: str) -> _Centre:
    """The parametrisation, the objective in z, the optimum and its curvature, checked before compiling.

    The EDM at the given point is measured: above the tolerance the point is
    not the minimum, so it is polished (Newton over the free params) and the
    searches run around the polished point, which is offered as `new_minimum`
    with a warning.
    """
    refuse_batch(problem, what)
    if not isinstance(problem, Problem):
        raise TypeError(f"{what} needs an fk.Problem as its first argument, got {type(problem).__name__}")
    if isinstance(result, FitResult) and not result.valid:
        warnings.warn(
            f"{what}: the result is not valid ({', '.join(result.flags) or 'unchecked'}), so the profiles are "
            "taken around a point that may not be the minimum; solve until the result is valid",
            UserWarning,
            stacklevel=3,
        )
    held = inherited_fixed(result, fixed)
    params = start_params(result)
    problem.check(params)
    parametrisation = problem.parametrisation(params, held, on_bound=True)
    free = np.asarray(parametrisation.free)
    keep = np.flatnonzero(free)
    # The gradient and Hessian in physical units are the verdict's own compiled functions (a fit in
    # this session has compiled them already); the chain rule takes them to the unconstrained z.
    x = parametrisation.flat(params)
    declared = problem.declares(held)
    if declared:
        f, point = OnFlat(problem, parametrisation), x
    else:  # as the verdict sees a problem with nothing declared: the nll of the params pytree
        f, point = problem.nll, params
    nll_start, grad = _value_and_grad(f, point)
    grad = np.asarray(grad, np.float64)
    hessian = np.asarray(curvature_hessian(f, point), np.float64)
    if parametrisation.bounded():
        z_start, first, second = (np.asarray(a, np.float64) for a in latent_view(parametrisation, x))
    else:  # z is x: nothing to compile
        z_start, first, second = np.asarray(x, np.float64), np.ones(x.size), np.zeros(x.size)
    hessian = first[:, None] * hessian * first[None, :] + np.diag(second * grad)
    grad = first * grad
    max_edm = default_max_edm(x.dtype)
    edm_start = _edm(grad[keep], hessian[np.ix_(keep, keep)])
    objective = OnLatent(problem, parametrisation, "nll")
    dtype = x.dtype
    z_hat, nll_min = jnp.asarray(z_start, dtype), nll_start
    messages = []
    new_minimum = None
    if not edm_start <= max_edm:
        z_hat, nll_min, polished_ok, polished_hessian = polish(
            objective, z_hat, jnp.asarray(free), max_edm=max_edm
        )
        hessian = np.asarray(polished_hessian, np.float64)
        params = new_minimum = parametrisation.to_params(z_hat)
        messages.append(
            f"the start is not at the minimum (edm {edm_start:.3g} > {max_edm:g}): a lower nll "
            f"(by {float(nll_start - nll_min):.3g}) is at Intervals.new_minimum, and the profiles are taken "
            "around it; solve again from new_minimum"
            + ("" if bool(polished_ok) else " (which is not a converged minimum either)")
        )
    block = hessian[np.ix_(keep, keep)]
    try:
        sigma_keep = np.sqrt(np.diag(np.linalg.inv(block)))
    except np.linalg.LinAlgError:
        sigma_keep = np.full(keep.size, np.nan)
    sigma = np.ones(free.size)
    good = np.isfinite(sigma_keep) & (sigma_keep > 0)
    sigma[keep[good]] = sigma_keep[good]
    hessian = jnp.asarray(hessian, dtype)
    flat_hat = (
        np.asarray(x)
        if new_minimum is None
        else np.asarray(map_rows(parametrisation, z_hat[None], "constrain"))[0]
    )
    return _Centre(
        problem,
        params,
        parametrisation,
        declared,
        objective,
        z_hat,
        nll_min,
        flat_hat,
        hessian,
        free,
        sigma,
        max_edm,
        new_minimum,
        tuple(messages),
    )


def _edm(grad: np.ndarray, hessian: np.ndarray) -> float:
    """`0.5 g^T |H|^-1 g` (the eigenvalues made positive); inf for a non-finite or singular Hessian."""
    if not (np.all(np.isfinite(hessian)) and np.all(np.isfinite(grad))):
        return float("inf")
    eigenvalues, vectors = np.linalg.eigh(hessian)
    size = np.abs(eigenvalues)
    if not size.min(initial=np.inf) > 1e-14 * size.max(initial=0.0):
        return float("inf")
    return 0.5 * float(np.sum((vectors.T @ grad) ** 2 / size))


def _indices(params, parametrisation, paths, what) -> list[int]:
    from ..parametrisation import element_indices

    free = np.asarray(parametrisation.free)
    if paths is None:
        return [int(i) for i in np.flatnonzero(free)]
    if isinstance(paths, str):
        paths = [paths]
    chosen = []
    for path in paths:
        for i in element_indices(params, path, what):
            if not free[i]:
                raise ValueError(
                    f"{what}: {parametrisation.names[i]!r} is not free (fixed, tied or held at a bound), so "
                    "it has no profile; free it, or leave it out of paths"
                )
            chosen.append(int(i))
    return chosen


def _ray_caps(parametrisation, z_hat, held, direction) -> np.ndarray:
    """How far each ray may go: to `Z_EDGE` on a bounded side, `R_OPEN` sigma on an open one."""
    lower = np.isfinite(np.asarray(parametrisation.lower))
    upper = np.isfinite(np.asarray(parametrisation.upper))
    z_hat = np.asarray(z_hat)
    caps = np.full(len(direction), R_OPEN)
    for k, (row, d) in enumerate(zip(held, direction)):
        for j in np.flatnonzero(row):
            if d[j] > 0 and upper[j]:
                caps[k] = min(caps[k], max((Z_EDGE - z_hat[j]) / d[j], 0.0))
            elif d[j] < 0 and lower[j]:
                caps[k] = min(caps[k], max((-Z_EDGE - z_hat[j]) / d[j], 0.0))
    return caps


def intervals(
    problem: Problem,
    result: Any,
    paths: str | list[str] | None = None,
    *,
    cl: float | None = None,
    sigma: float | None = None,
    fixed: Any = None,
    outer_steps: int = 30,
    inner_steps: int = 100,
    engine: str = "auto",
    progress: bool | None = None,
) -> Intervals:
    """Profile-likelihood (MINOS) intervals for every free param, both sides, every search at once.

    For each param the limits are where the nll, minimised over all the
    other free params, has risen by `Δ = chi2.ppf(cl, 1) / 2` above its
    minimum (`Δ = 0.5` for one sigma). The 2n searches (n params, two
    sides) are rays from the optimum in the problem's unconstrained space,
    run together, a gradient per ray per step: Newton's method on
    `sqrt(2 Δnll)`, which is linear along a ray for a Gaussian likelihood,
    kept inside a bracket of the crossing, with BFGS inner fits started
    from the optimum's Hessian and each point predicted from the last along
    the Gaussian profile direction. Bounds, ties and
    fixed params are respected; a side that reaches a bound before the nll
    rises by `Δ` is one-sided: reported at the bound and flagged. A search
    that finds a lower nll than the fit's says so and returns that point
    (`new_minimum`): solve again from it.

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` (or params) at the minimum.
        paths: the params to profile (paths or elements, `"wfe[0]"`); default: every free one.
        cl: the confidence level (default 0.6827, one sigma); or `sigma=`.
        sigma: the interval in sigmas (`sigma=2` is cl 0.9545).
        fixed: params held fixed (default: those the result held).
        outer_steps, inner_steps: the most iterations of each ray's search and of each inner fit
            (BFGS, a gradient each); both stop as soon as they have converged.
        engine: `"host"` (a Python loop over the gradient a fit has compiled already: no new
            compilation of the model), `"compiled"` (every search in one compiled call, the
            gradients `vmap`ped: for accelerators and repeated calls) or `"auto"` (host on a CPU).
        progress: a bar of the params whose two limits are found, out of those profiled (it
            moves between the host engine's steps; the compiled engine fills it at the end).
            `None` (default): shown in a notebook or when stderr is a terminal; `True`:
            always; `False`: never.

    Returns:
        An `Intervals` (`lower`, `upper` pytrees of absolute limits, flags, `table()`).

    Raises:
        ValueError: an unknown or fixed path, a `cl` outside (0, 1).
        TypeError: `problem` is not an `fk.Problem`.

    Example:
        >>> res = fk.solve(prob, start)
        >>> iv = fk.intervals(prob, res)            # every free param, 68%
        >>> iv.lower["tau"], iv.upper["tau"]
    """
    delta = threshold(cl, sigma)
    _check_engine(engine, "fk.intervals")
    level = 2 * _normal_cdf(math.sqrt(2 * delta)) - 1
    c = _setup(problem, result, fixed, "fk.intervals")
    parametrisation, z_hat, free = c.parametrisation, c.z_hat, c.free
    chosen = _indices(c.params, parametrisation, paths, "fk.intervals")
    n = free.size
    held = np.zeros((2 * len(chosen), n), bool)
    direction = np.zeros((2 * len(chosen), n))
    goal = math.sqrt(2 * delta)
    for k, i in enumerate(chosen):
        for s, side in enumerate((-1.0, 1.0)):
            held[2 * k + s, i] = True
            direction[2 * k + s, i] = side * c.sigma[i] * goal
    with Progress(len(chosen), progress, "intervals", unit="param") as bar:

        def on_step(done):
            bar.to(int(np.sum(done[0::2] & done[1::2])))  # rows 2k and 2k + 1 are param k's sides

        found = _search(c, held, direction, delta, outer_steps, inner_steps, engine, on_step)
        bar.to(len(chosen))
    physical = _constrain_rows(parametrisation, found.z)
    names = [parametrisation.names[i] for i in chosen]
    value = c.flat_hat[chosen]
    limits = {}
    flags = {}
    lower_bound, upper_bound = np.asarray(parametrisation.lower), np.asarray(parametrisation.upper)
    for s, side in enumerate(("lower", "upper")):
        rows = np.arange(s, 2 * len(chosen), 2)
        capped = np.asarray(found.capped)[rows]
        bound = (lower_bound if side == "lower" else upper_bound)[chosen]
        at = capped & np.isfinite(bound)
        limit = np.where(at, bound, physical[rows, chosen])
        ok = (np.asarray(found.converged)[rows] | at) & np.asarray(found.inner_ok)[rows]
        limits[side] = np.where(capped & ~np.isfinite(bound), np.nan, limit)
        flags[side] = (ok & ~(capped & ~np.isfinite(bound)), at)
    messages = list(c.messages)
    for side in ("lower", "upper"):
        for name, ok, at in zip(names, *flags[side]):
            if not ok:
                messages.append(f"the {side} limit of {name} did not converge (no rise of {delta:.3g} found)")
            elif at:
                messages.append(
                    f"the {side} limit of {name} is at its bound: the interval is one-sided there"
                )
    new_minimum = c.new_minimum
    below = np.asarray(found.below)
    if below.any():
        rises = np.asarray(found.delta)
        best = int(np.argmin(np.where(below, rises, np.inf)))
        new_minimum = parametrisation.to_params(found.z[best])
        messages.append(
            f"a search found a lower nll (by {-rises[best]:.3g}) than the fit's: the result is not at the minimum; "
            "solve again from Intervals.new_minimum"
        )
    real_messages = [m for m in messages if "is at its bound" not in m]
    if real_messages:
        warnings.warn("fk.intervals: " + "; ".join(real_messages), UserWarning, stacklevel=2)

    def as_tree(flat_values):
        full = np.full(n, np.nan)
        full[chosen] = flat_values
        return parametrisation.layout.to_params(jnp.asarray(full, z_hat.dtype))

    return Intervals(
        params=c.params,
        lower=as_tree(limits["lower"]),
        upper=as_tree(limits["upper"]),
        names=tuple(names),
        value=value,
        flat_lower=limits["lower"],
        flat_upper=limits["upper"],
        lower_valid=flags["lower"][0],
        upper_valid=flags["upper"][0],
        lower_at_bound=flags["lower"][1],
        upper_at_bound=flags["upper"][1],
        new_minimum=new_minimum,
        cl=float(level),
        delta=float(delta),
        messages=tuple(messages),
    )


def _settings(c: _Centre, target: float, tol: float = 1e-6) -> Settings:
    nll_min = float(c.nll_min)
    noise = ROUNDING * float(np.finfo(np.asarray(c.z_hat).dtype).eps) * max(abs(nll_min), 1.0)
    values = (nll_min, target, max(EDM_MARGIN * c.max_edm, noise), c.max_edm, noise, tol)
    return Settings(np.asarray(c.z_hat), *(np.float64(v) for v in values))


def _run(
    c: _Centre,
    held,
    direction,
    cap,
    schedule,
    target,
    *,
    walk,
    engine,
    outer_steps,
    inner_steps,
    on_step=None,
):
    dtype = np.asarray(c.z_hat).dtype
    ray = (
        np.asarray(c.hessian, dtype),
        np.asarray(c.free),
        np.asarray(held),
        np.asarray(direction, dtype),
        np.asarray(cap, dtype),
        np.asarray(schedule, dtype),
    )
    objective = Objective(c.problem, c.parametrisation, c.declared)
    return run(
        objective,
        _settings(c, target),
        ray,
        walk=walk,
        engine=engine,
        inner_steps=inner_steps,
        outer_steps=outer_steps,
        on_step=on_step,
    )


def _search(c: _Centre, held, direction, delta, outer_steps, inner_steps, engine, on_step=None):
    """All the rays of `held`/`direction` from the centre, capped at the bounds."""
    cap = _ray_caps(c.parametrisation, c.z_hat, held, direction)
    schedule = np.minimum(1.0, cap)[:, None]
    return _run(
        c, held, direction, cap, schedule, delta,
        walk=False, engine=engine, outer_steps=outer_steps, inner_steps=inner_steps, on_step=on_step,
    )  # fmt: skip


def _constrain_rows(parametrisation, z) -> np.ndarray:
    """The physical flat values of each row of `z` (compiled only where there are bounds)."""
    if not parametrisation.bounded():
        return np.asarray(z)
    return np.asarray(map_rows(parametrisation, jnp.asarray(z), "constrain"))


def _check_engine(engine, what: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"{what}: engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}")


def _warn_off_minimum(c: _Centre, what: str) -> None:
    if c.messages:
        warnings.warn(f"{what}: " + "; ".join(c.messages), UserWarning, stacklevel=3)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def profile(
    problem: Problem,
    result: Any,
    path: str,
    grid: Any,
    *,
    fixed: Any = None,
    inner_steps: int = 100,
    engine: str = "auto",
):
    """The profile of the nll along one param: `min nll` over the others at each value of `grid`, less the minimum.

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` (or params) at the minimum.
        path: one scalar param (a leaf of size 1, or an element `"wfe[0]"`).
        grid: 1-D physical values (inside the param's bounds).
        fixed: params held fixed (default: those the result held).
        inner_steps: the most BFGS iterations of each inner fit.
        engine: `"host"` (a Python loop over the gradient a fit has compiled already: no new
            compilation of the model), `"compiled"` (every search in one compiled call, the
            gradients `vmap`ped: for accelerators and repeated calls) or `"auto"` (host on a CPU).

    Returns:
        `(grid, delta_nll, params, ok)`: the grid, the profiled rise of the nll at
        each point, the params there (a pytree with a leading grid axis) and
        whether each inner fit converged.

    Raises:
        ValueError: the path is not one free scalar, or grid values outside its bounds.

    Example:
        >>> x, dnll, _, ok = fk.profile(prob, res, "tau", jnp.linspace(0.5, 3.0, 41))
    """
    _check_engine(engine, "fk.profile")
    c = _setup(problem, result, fixed, "fk.profile")
    _warn_off_minimum(c, "fk.profile")
    parametrisation, z_hat, free = c.parametrisation, c.z_hat, c.free
    chosen = _indices(c.params, parametrisation, path, "fk.profile")
    if len(chosen) != 1:
        raise ValueError(f"fk.profile: {path!r} names {len(chosen)} elements; give one, e.g. {path!r}[0]")
    i = chosen[0]
    grid = np.asarray(grid, np.float64).ravel()
    lo, hi = float(parametrisation.lower[i]), float(parametrisation.upper[i])
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= lo) or np.any(grid >= hi):
        raise ValueError(
            f"fk.profile: the grid must be non-empty, finite and inside the bounds ({lo:g}, {hi:g}) of {path!r}"
        )
    flat_hat = c.flat_hat
    flat = np.tile(flat_hat, (grid.size, 1))
    flat[:, i] = grid
    rows = np.tile(np.asarray(z_hat), (grid.size, 1))
    if parametrisation.bounded():
        rows[:, i] = np.asarray(map_rows(parametrisation, jnp.asarray(flat, z_hat.dtype), "unconstrain"))[
            :, i
        ]
    else:
        rows[:, i] = flat[:, i]
    # Out from the optimum on each side, so every inner fit starts next to the previous one. Both
    # sides are padded (repeating their last point) to one power-of-two length: one compilation
    # serves every grid up to that size.
    distance = grid - flat_hat[i]
    sides = [np.flatnonzero(distance < 0), np.flatnonzero(distance >= 0)]
    sides = [idx[np.argsort(np.abs(distance[idx]))] for idx in sides]
    length = 1 << max(0, int(math.ceil(math.log2(max(len(idx) for idx in sides)))))
    # Each side is a walk along the param's own coordinate, through its grid points in order.
    schedule = np.zeros((2, length))
    for k, idx in enumerate(sides):
        if idx.size:
            schedule[k, : idx.size] = rows[idx, i] - float(z_hat[i])
            schedule[k, idx.size :] = schedule[k, idx.size - 1]
    held = np.zeros((2, free.size), bool)
    held[:, i] = True
    found = _run(
        c, held, held.astype(float), np.full(2, np.inf), schedule, 0.0,
        walk=True, engine=engine, outer_steps=length, inner_steps=inner_steps,
    )  # fmt: skip
    values, zs, good = found.walk_value, found.walk_z, found.walk_ok
    values, zs, good = np.asarray(values), np.asarray(zs), np.asarray(good)
    rise = np.empty(grid.size)
    z_points = np.empty_like(rows)
    ok = np.empty(grid.size, bool)
    for k, idx in enumerate(sides):
        rise[idx] = values[k, : idx.size] - float(c.nll_min)
        z_points[idx] = zs[k, : idx.size]
        ok[idx] = good[k, : idx.size]
    points = map_rows(parametrisation, jnp.asarray(z_points, z_hat.dtype), "to_params")
    return grid, rise, points, ok


def contour(
    problem: Problem,
    result: Any,
    paths: tuple[str, str],
    *,
    cl: float | None = None,
    sigma: float | None = None,
    points: int = 40,
    fixed: Any = None,
    outer_steps: int = 30,
    inner_steps: int = 100,
    engine: str = "auto",
):
    """The 2-D profile-likelihood contour of two params: where `min nll` over the rest rises by `chi2.ppf(cl, 2) / 2`.

    `points` rays from the optimum, evenly spread in angle in the plane of the
    two params (scaled by their standard deviations, in the unconstrained
    space), are searched together, as in `fk.intervals`.

    Args:
        problem: the `fk.Problem`.
        result: the `FitResult` (or params) at the minimum.
        paths: two scalar params.
        cl: the confidence level of the region (default 0.6827; or `sigma=`, the 1-D equivalent).
        points: how many points on the contour.
        fixed, outer_steps, inner_steps, engine: as for `fk.intervals`.

    Returns:
        `(x, y, ok)`: the contour's physical coordinates (closed: the first point
        repeated at the end) and whether each point converged (False where a
        ray reached a bound first; the point is then on the bound).

    Example:
        >>> x, y, ok = fk.contour(prob, res, ("a", "b"), cl=0.68)
    """
    if sigma is not None:
        if cl is not None:
            raise ValueError("fk.contour: give cl= or sigma=, not both")
        threshold(sigma=sigma)  # checks sigma
        cl = math.erf(sigma / math.sqrt(2.0))  # the level of a 1-D `sigma` interval
    delta = threshold(cl, None, dof=2)
    if len(paths) != 2:
        raise ValueError("fk.contour needs two paths, e.g. ('a', 'b')")
    _check_engine(engine, "fk.contour")
    c = _setup(problem, result, fixed, "fk.contour")
    _warn_off_minimum(c, "fk.contour")
    parametrisation, free = c.parametrisation, c.free
    ia, ib = (_indices(c.params, parametrisation, p, "fk.contour") for p in paths)
    if len(ia) != 1 or len(ib) != 1 or ia == ib:
        raise ValueError(f"fk.contour: {paths!r} must name two different scalar params")
    i, j = ia[0], ib[0]
    angles = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    n = free.size
    held = np.zeros((points, n), bool)
    held[:, [i, j]] = True
    direction = np.zeros((points, n))
    goal = math.sqrt(2 * delta)
    direction[:, i] = np.cos(angles) * c.sigma[i] * goal
    direction[:, j] = np.sin(angles) * c.sigma[j] * goal
    found = _search(c, held, direction, delta, outer_steps, inner_steps, engine)
    physical = _constrain_rows(parametrisation, found.z)
    ok = np.asarray(found.converged) & np.asarray(found.inner_ok) & ~np.asarray(found.capped)
    x = np.append(physical[:, i], physical[0, i])
    y = np.append(physical[:, j], physical[0, j])
    return x, y, np.append(ok, ok[0])
