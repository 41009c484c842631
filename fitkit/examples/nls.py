"""Published nonlinear least-squares test problems, badly scaled on purpose, with their solutions.

Each `Case` holds a builder of an `fk.Problem` (unweighted: every error is 1,
so `problem.chi2` is the sum of squares the papers print), two starting points,
the published minimum and the citation. Most problems are from

    J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing unconstrained
    optimization software", ACM Trans. Math. Software 7 (1981) 17-41 (MGH),

written so that `data - predict` is the paper's residual vector `f(x)` up to
its sign: the constant part of each `f_i` is the `data`, the part that depends
on the params is `predict`. Two are classic regressions from D. M. Bates and
D. G. Watts, "Nonlinear Regression Analysis and Its Applications" (Wiley, 1988).
The NIST StRD nonlinear-regression files are left out on purpose: they are an
independent check of whatever is tuned on this set.

Reference values. Where the published solution has fewer digits than float64
("0.2578", "8.21487...e-3"), `solution` is that minimum refined: scipy
`least_squares(method="lm", xtol=ftol=gtol=1e-15)` from the printed point (JAX
Jacobian), then Newton steps on the gradient of the sum of squares in float64
(JAX Hessian). The Newton polish matters on nonzero-residual problems: scipy's
`ftol` test stops once the sum of squares no longer changes in its 15th digit,
which leaves the params right to only 6-8 digits (Brown-Dennis: 6); after the
polish, restarts from perturbed points agree to 12-16 digits. The printed
digits are kept in `published` as strings and `tests/test_nls.py` checks that
the refined values agree with them (to at most 7 significant digits: longer
published values, such as the GSL test suite's, are themselves solver output).
Where MGH print only the minimum sum of squares, the params come from the
source named in the case's `citation`, or are refined from the value MGH print.

Comparing a fit with a case (`Case.digits`): the correct significant digits of
each param, the minimum over params, against the nearest of the case's
`minima()`: the published solution, the points equal to it by a symmetry of the
model (swapping two exponential or Gaussian terms leaves the residuals
unchanged, so both orders are the same answer), and the local minima the paper
publishes (Freudenstein-Roth's second minimum). A component whose reference
value is 0 is compared with an absolute tolerance: its digits are
`-log10(|found| / zero_scale)`, with `zero_scale` 1 unless a case says
otherwise (all zero components here are on params of order 1), so 6 digits
means `|found| < 1e-6`.

Left out: Powell singular (MGH 13; its minimum is a singular point, so no
curvature-based verdict can call it valid, and "6 digits of 0" depends only on
how long a solver runs), and the minima at infinity of Bard and Kowalik-Osborne
(not points). A fit that runs off to those scores 0 digits, which is right.

Example:
    >>> import fitkit as fk
    >>> fk.enable_x64()
    >>> case = fk.examples.nls.CASES["meyer"]
    >>> prob = case.build()
    >>> float(prob.chi2(case.params()))  # doctest: +ELLIPSIS
    87.9458...
    >>> case.digits(case.solution)
    16.0
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..module import Module
from ..observation import Observation
from ..problem import Problem

__all__ = [
    "default_calls",
    "Case",
    "CASES",
    "Function",
    "Target",
    "digits",
    "minimum_digits",
    "problem_of",
    "scipy_least_squares",
    "SCIPY_TIGHT_6",
]

MAX_DIGITS = 16.0
MGH = (
    "J. J. More, B. S. Garbow and K. E. Hillstrom, Testing unconstrained optimization software, "
    "ACM Trans. Math. Software 7 (1981) 17-41"
)
BATES_WATTS = "D. M. Bates and D. G. Watts, Nonlinear Regression Analysis and Its Applications, Wiley (1988)"
GSL = "GSL 2.x multifit_nlinear test suite (tests/test_{}.c), full-precision values of the same minimum"


class Function(Module):
    """A model that is a function of the params and a fixed vector `t`: `fn(params, t)`.

    Attributes:
        t: the fixed abscissae (times, indices, concentrations) of the problem.
        fn: `fn(params, t) -> predictions`, a pure JAX function (static).

    Example:
        >>> model = Function(t=jnp.arange(3.0), fn=lambda p, t: p["a"] * t)
        >>> model({"a": jnp.array(2.0)})
        Array([0., 2., 4.], dtype=float64)
    """

    t: Any
    fn: Callable = eqx.field(static=True)

    def __call__(self, params: dict[str, Any]) -> Any:
        return self.fn(params, self.t)


class Target(Observation):
    """The target values of a test problem: the prediction is `model(params)`."""

    def predict(self, params, model):
        return model(params)


def problem_of(fn: Callable, data, t=None) -> Problem:
    """An unweighted `fk.Problem` whose residuals are `data - fn(params, t)`.

    Args:
        fn: `fn(params, t)`, the params-dependent part of the residual vector.
        data: the constant part (targets), one per residual.
        t: abscissae passed to `fn` (default: `1, 2, ..., len(data)`).

    Returns:
        An `fk.Problem` with every error 1, so `chi2` is the plain sum of squares.

    Example:
        >>> prob = problem_of(lambda p, t: p["a"] * t, [1.0, 2.0])
        >>> float(prob.chi2({"a": jnp.array(1.0)}))
        0.0
    """
    data = jnp.asarray(data, float)
    t = jnp.arange(1.0, data.size + 1.0) if t is None else jnp.asarray(t, float)
    return Problem(Function(t=t, fn=fn), Target(data=data, error=jnp.ones_like(data)))


def _param_digits(found: float, reference: float, zero_scale: float) -> float:
    if not math.isfinite(found):
        return 0.0
    scale = abs(reference) if reference != 0 else zero_scale
    error = abs(found - reference)
    if error == 0:
        return MAX_DIGITS
    return float(min(MAX_DIGITS, max(0.0, -math.log10(error / scale))))


def digits(found: dict[str, Any], reference: dict[str, float], zero_scale: float = 1.0) -> float:
    """Correct significant digits of `found` against `reference`: the minimum over params.

    Each param scores `-log10(|found - ref| / |ref|)`, clipped to `[0, 16]`; a
    reference of exactly 0 scores `-log10(|found| / zero_scale)` (an absolute
    tolerance); a non-finite value scores 0.

    Args:
        found: params dict of scalars (floats or 0-d arrays).
        reference: params dict with the same keys.
        zero_scale: the absolute scale for zero-valued reference components.

    Returns:
        The number of correct significant digits of the worst param.

    Example:
        >>> round(digits({"a": 1.0000001, "b": 2e-9}, {"a": 1.0, "b": 0.0}), 6)
        7.0
    """
    if set(found) != set(reference):
        raise KeyError(f"params {sorted(found)} and reference {sorted(reference)} differ")
    return min(_param_digits(float(found[k]), float(reference[k]), zero_scale) for k in reference)


def minimum_digits(found: dict[str, Any], minima, zero_scale: float = 1.0) -> tuple[float, int]:
    """The digits of `found` against the nearest of several minima, and which one.

    Args:
        found: params dict of scalars.
        minima: sequence of reference params dicts.
        zero_scale: see `digits`.

    Returns:
        `(digits, index)`: the best score and the index of the minimum it was reached for.

    Example:
        >>> minimum_digits({"a": 2.0}, [{"a": 1.0}, {"a": 2.0}])
        (16.0, 1)
    """
    scores = [digits(found, m, zero_scale) for m in minima]
    best = int(np.argmax(scores))
    return scores[best], best


@dataclasses.dataclass(frozen=True)
class Case:
    """One published test problem with its starts and its published minimum.

    Attributes:
        name: short identifier (`"meyer"`).
        build: `build() -> fk.Problem` (call it after `fk.enable_x64()`).
        starts: the two starting points: the paper's `x0` and `10 * x0` (MGH's
            second standard start), as params dicts of floats.
        solution: the published (global) minimiser, to float64 precision.
        sum_squares: the published minimum sum of squares at `solution`.
        citation: where the problem, its data and its minimum are published.
        published: the printed digits (strings) of the solution, where it was
            printed to fewer digits than float64 and refined; None otherwise.
        published_sum_squares: the printed minimum sum of squares, as a string.
        equivalent: other params giving the very same residuals (symmetries).
        local_minima: published local minima, as `(params, sum_squares)`; a fit
            that reaches one has found a true minimum, reported as such.
        zero_scale: absolute scale for comparing zero-valued components.
        note: anything particular about the case.

    Example:
        >>> case = CASES["rosenbrock"]
        >>> case.starts[0], case.solution
        ({'x1': -1.2, 'x2': 1.0}, {'x1': 1.0, 'x2': 1.0})
    """

    name: str
    build: Callable[[], Problem]
    starts: tuple[dict[str, float], dict[str, float]]
    solution: dict[str, float]
    sum_squares: float
    citation: str
    published: dict[str, str] | None = None
    published_sum_squares: str | None = None
    equivalent: tuple[dict[str, float], ...] = ()
    local_minima: tuple[tuple[dict[str, float], float], ...] = ()
    zero_scale: float = 1.0
    note: str = ""

    def minima(self) -> list[dict[str, float]]:
        """Every reference a fit is compared with: solution, its equivalents, local minima."""
        return [self.solution, *self.equivalent, *(m for m, _ in self.local_minima)]

    def digits(self, params: dict[str, Any]) -> float:
        """Correct significant digits of `params` against the nearest of `minima()`."""
        return minimum_digits(params, self.minima(), self.zero_scale)[0]

    def which(self, params: dict[str, Any]) -> str:
        """Which minimum `params` is nearest to: `"global"` or `"local"`."""
        index = minimum_digits(params, self.minima(), self.zero_scale)[1]
        return "global" if index <= len(self.equivalent) else "local"

    def params(self, which: dict[str, float] | int | None = None) -> dict[str, Any]:
        """A params dict of 0-d float arrays: the solution (default) or start number `which`."""
        values = self.solution if which is None else (self.starts[which] if isinstance(which, int) else which)
        return {k: jnp.asarray(v, float) for k, v in values.items()}


TIGHT = {"method": "lm", "xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15}


def scipy_least_squares(problem: Problem, start: dict[str, Any], tight: bool = True, **options):
    """`scipy.optimize.least_squares` on `problem.residuals`, with a jitted JAX Jacobian.

    Args:
        problem: a problem of this module (params: a dict of scalars).
        start: the starting params dict.
        tight: use `method="lm", xtol=ftol=gtol=1e-15` (the reference solver of
            `tests/test_nls.py`); False: scipy's defaults (`"trf"`, 1e-8).
        **options: passed on to `least_squares` (they override the above).

    Returns:
        `(params, result)`: the params dict of floats it ended at, and scipy's `OptimizeResult`.

    Example:
        >>> case = CASES["bod"]
        >>> params, out = scipy_least_squares(case.build(), case.starts[0])
        >>> case.digits(params) > 6
        True
    """
    import scipy.optimize

    keys = list(start)

    def residuals(x):
        return problem.residuals({k: x[i] for i, k in enumerate(keys)})

    fun, jac = jax.jit(residuals), jax.jit(jax.jacfwd(residuals))
    kwargs = dict(TIGHT) if tight else {}
    kwargs.update(options)
    x0 = np.array([start[k] for k in keys], float)
    out = scipy.optimize.least_squares(
        lambda x: np.asarray(fun(jnp.asarray(x))), x0, jac=lambda x: np.asarray(jac(jnp.asarray(x))), **kwargs
    )
    return dict(zip(keys, (float(v) for v in out.x))), out


def _names(n: int) -> list[str]:
    return [f"x{i}" for i in range(1, n + 1)]


def _vec(values) -> dict[str, float]:
    return dict(zip(_names(len(values)), (float(v) for v in values)))


def _starts(x0) -> tuple[dict[str, float], dict[str, float]]:
    return _vec(x0), _vec([10.0 * v for v in x0])


def _x(params, n: int) -> list[Any]:
    return [params[name] for name in _names(n)]


# ------------------------------------------------------------ MGH problems
def rosenbrock() -> Problem:
    """MGH 1, Rosenbrock: `f = (10 (x2 - x1^2), 1 - x1)`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return jnp.stack([10.0 * (x1**2 - x2), x1])

    return problem_of(fn, [0.0, 1.0])


def freudenstein_roth() -> Problem:
    """MGH 2, Freudenstein and Roth: `f1 = -13 + x1 + ((5 - x2) x2 - 2) x2`, `f2 = -29 + x1 + ((x2 + 1) x2 - 14) x2`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return jnp.stack([x1 + ((5.0 - x2) * x2 - 2.0) * x2, x1 + ((x2 + 1.0) * x2 - 14.0) * x2])

    return problem_of(fn, [13.0, 29.0])


def powell_badly_scaled() -> Problem:
    """MGH 3, Powell badly scaled: `f = (1e4 x1 x2 - 1, exp(-x1) + exp(-x2) - 1.0001)`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return jnp.stack([1e4 * x1 * x2, jnp.exp(-x1) + jnp.exp(-x2)])

    return problem_of(fn, [1.0, 1.0001])


def brown_badly_scaled() -> Problem:
    """MGH 4, Brown badly scaled: `f = (x1 - 1e6, x2 - 2e-6, x1 x2 - 2)`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return jnp.stack([x1, x2, x1 * x2])

    return problem_of(fn, [1e6, 2e-6, 2.0])


def beale() -> Problem:
    """MGH 5, Beale: `f_i = y_i - x1 (1 - x2^i)`, `y = (1.5, 2.25, 2.625)`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return x1 * (1.0 - x2**t)

    return problem_of(fn, [1.5, 2.25, 2.625])


def jennrich_sampson() -> Problem:
    """MGH 6, Jennrich and Sampson (m = 10): `f_i = 2 + 2i - (exp(i x1) + exp(i x2))`."""

    def fn(p, t):
        x1, x2 = _x(p, 2)
        return jnp.exp(t * x1) + jnp.exp(t * x2)

    t = np.arange(1.0, 11.0)
    return problem_of(fn, 2.0 + 2.0 * t, t)


def helical_valley() -> Problem:
    """MGH 7, helical valley: `f = (10 (x3 - 10 theta), 10 (r - 1), x3)` (theta jumps by 1/2 at x1 = 0)."""

    def fn(p, t):
        x1, x2, x3 = _x(p, 3)
        angle = jnp.arctan(x2 / x1) / (2.0 * jnp.pi)
        theta = jnp.where(x1 > 0, angle, angle + 0.5)
        return jnp.stack([10.0 * (x3 - 10.0 * theta), 10.0 * jnp.sqrt(x1**2 + x2**2), x3])

    return problem_of(fn, [0.0, 10.0, 0.0])


BARD_Y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]


def bard() -> Problem:
    """MGH 8, Bard: `f_i = y_i - (x1 + u_i / (v_i x2 + w_i x3))`, `u = i, v = 16 - i, w = min(u, v)`."""

    def fn(p, t):
        x1, x2, x3 = _x(p, 3)
        v = 16.0 - t
        return x1 + t / (v * x2 + jnp.minimum(t, v) * x3)

    return problem_of(fn, BARD_Y)


GAUSSIAN_Y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989]
GAUSSIAN_Y = GAUSSIAN_Y + GAUSSIAN_Y[-2::-1]


def gaussian() -> Problem:
    """MGH 9, Gaussian: `f_i = x1 exp(-x2 (t_i - x3)^2 / 2) - y_i`, `t_i = (8 - i) / 2`."""

    def fn(p, t):
        x1, x2, x3 = _x(p, 3)
        return x1 * jnp.exp(-0.5 * x2 * (t - x3) ** 2)

    return problem_of(fn, GAUSSIAN_Y, (8.0 - np.arange(1.0, 16.0)) / 2.0)


MEYER_Y = [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744]
MEYER_Y += [8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872]


def meyer() -> Problem:
    """MGH 10, Meyer: `f_i = x1 exp(x2 / (t_i + x3)) - y_i`, `t_i = 45 + 5 i`."""

    def fn(p, t):
        x1, x2, x3 = _x(p, 3)
        return x1 * jnp.exp(x2 / (t + x3))

    return problem_of(fn, MEYER_Y, 45.0 + 5.0 * np.arange(1.0, 17.0))


def box_3d() -> Problem:
    """MGH 12, Box three-dimensional (m = 10): `f_i = exp(-t x1) - exp(-t x2) - x3 (exp(-t) - exp(-10 t))`."""

    def fn(p, t):
        x1, x2, x3 = _x(p, 3)
        return jnp.exp(-t * x1) - jnp.exp(-t * x2) - x3 * (jnp.exp(-t) - jnp.exp(-10.0 * t))

    return problem_of(fn, np.zeros(10), 0.1 * np.arange(1.0, 11.0))


def wood() -> Problem:
    """MGH 14, Wood: six residuals in four params (two coupled Rosenbrock valleys)."""

    def fn(p, t):
        x1, x2, x3, x4 = _x(p, 4)
        s90, s10 = math.sqrt(90.0), math.sqrt(10.0)
        return jnp.stack([10.0 * (x1**2 - x2), x1, s90 * (x3**2 - x4), x3, s10 * (x2 + x4), (x4 - x2) / s10])

    return problem_of(fn, [0.0, 1.0, 0.0, 1.0, 2.0 * math.sqrt(10.0), 0.0])


KOWALIK_Y = [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
KOWALIK_U = [4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625]


def kowalik_osborne() -> Problem:
    """MGH 15, Kowalik and Osborne: `f_i = y_i - x1 (u_i^2 + u_i x2) / (u_i^2 + u_i x3 + x4)`."""

    def fn(p, u):
        x1, x2, x3, x4 = _x(p, 4)
        return x1 * (u**2 + u * x2) / (u**2 + u * x3 + x4)

    return problem_of(fn, KOWALIK_Y, KOWALIK_U)


def brown_dennis() -> Problem:
    """MGH 16, Brown and Dennis (m = 20): `f_i = (x1 + t x2 - e^t)^2 + (x3 + x4 sin t - cos t)^2`, `t = i / 5`."""

    def fn(p, t):
        x1, x2, x3, x4 = _x(p, 4)
        return (x1 + t * x2 - jnp.exp(t)) ** 2 + (x3 + x4 * jnp.sin(t) - jnp.cos(t)) ** 2

    return problem_of(fn, np.zeros(20), np.arange(1.0, 21.0) / 5.0)


OSBORNE1_Y = [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751]
OSBORNE1_Y += [0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490]
OSBORNE1_Y += [0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406]


def osborne1() -> Problem:
    """MGH 17, Osborne 1: `f_i = y_i - (x1 + x2 exp(-t x4) + x3 exp(-t x5))`, `t_i = 10 (i - 1)`."""

    def fn(p, t):
        x1, x2, x3, x4, x5 = _x(p, 5)
        return x1 + x2 * jnp.exp(-t * x4) + x3 * jnp.exp(-t * x5)

    return problem_of(fn, OSBORNE1_Y, 10.0 * np.arange(33.0))


def biggs_exp6() -> Problem:
    """MGH 18, Biggs EXP6 (m = 13): `f_i = x3 e^(-t x1) - x4 e^(-t x2) + x6 e^(-t x5) - y_i`, `t_i = i / 10`."""

    def fn(p, t):
        x1, x2, x3, x4, x5, x6 = _x(p, 6)
        return x3 * jnp.exp(-t * x1) - x4 * jnp.exp(-t * x2) + x6 * jnp.exp(-t * x5)

    t = 0.1 * np.arange(1.0, 14.0)
    return problem_of(fn, np.exp(-t) - 5.0 * np.exp(-10.0 * t) + 3.0 * np.exp(-4.0 * t), t)


OSBORNE2_Y = [1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679, 0.608]
OSBORNE2_Y += [0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661]
OSBORNE2_Y += [0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428]
OSBORNE2_Y += [0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559]
OSBORNE2_Y += [0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054]


def osborne2() -> Problem:
    """MGH 19, Osborne 2: an exponential plus three Gaussians in 11 params, 65 points, `t_i = (i - 1) / 10`."""

    def fn(p, t):
        x = _x(p, 11)
        gaussians = sum(x[k] * jnp.exp(-((t - x[k + 7]) ** 2) * x[k + 4]) for k in (1, 2, 3))
        return x[0] * jnp.exp(-t * x[4]) + gaussians

    return problem_of(fn, OSBORNE2_Y, np.arange(65.0) / 10.0)


# ----------------------------------------------- Bates & Watts regressions
PUROMYCIN_X = [0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10]
PUROMYCIN_Y = [76.0, 47.0, 97.0, 107.0, 123.0, 139.0, 159.0, 152.0, 191.0, 201.0, 207.0, 200.0]


def puromycin() -> Problem:
    """Bates & Watts A1.3, Puromycin (treated cells): Michaelis-Menten `Vm x / (K + x)`."""
    return problem_of(lambda p, x: p["Vm"] * x / (p["K"] + x), PUROMYCIN_Y, PUROMYCIN_X)


BOD_X = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0]
BOD_Y = [8.3, 10.3, 19.0, 16.0, 15.6, 19.8]


def bod() -> Problem:
    """Bates & Watts A1.4, biochemical oxygen demand: `theta1 (1 - exp(-theta2 x))`."""
    return problem_of(lambda p, x: p["theta1"] * (1.0 - jnp.exp(-p["theta2"] * x)), BOD_Y, BOD_X)


def _osborne2_equivalents(x: list[float]) -> tuple[dict[str, float], ...]:
    """The 5 other orders of Osborne 2's three Gaussian terms (amplitude, width, centre)."""
    terms = [(x[k], x[k + 4], x[k + 7]) for k in (1, 2, 3)]
    out = []
    for order in itertools.permutations(range(3)):
        if order == (0, 1, 2):
            continue
        y = list(x)
        for slot, k in enumerate(order):
            y[1 + slot], y[5 + slot], y[8 + slot] = terms[k]
        out.append(_vec(y))
    return tuple(out)


def _cases() -> dict[str, Case]:
    osborne1_x = [0.3754100521069521, 1.9358469127123679, -1.4646871366134238]
    osborne1_x += [0.012867534640057292, 0.022122699661672615]
    osborne2_x = [1.3099771546273007, 0.4315537946029891, 0.633661698960724, 0.5994305347859163]
    osborne2_x += [0.7541832263280117, 0.9042885798596328, 1.3658118352370283, 4.8236988172271555]
    osborne2_x += [2.3986848661317546, 4.568874597667672, 5.6753414705806415]
    biggs_x = [1.0, 10.0, 1.0, 5.0, 4.0, 3.0]
    cases = [
        Case(
            "rosenbrock",
            rosenbrock,
            _starts([-1.2, 1.0]),
            _vec([1.0, 1.0]),
            0.0,
            f"MGH problem 1 ({MGH})",
        ),
        Case(
            "freudenstein_roth",
            freudenstein_roth,
            _starts([0.5, -2.0]),
            _vec([5.0, 4.0]),
            0.0,
            f"MGH problem 2 ({MGH}); local minimum f = 48.9842... at (11.41..., -0.8968...)",
            local_minima=((_vec([11.412778986902, -0.89680525327448]), 48.98425367924),),
            published_sum_squares="0",
            note="the local minimum is published (MGH) and counts as a minimum reached",
        ),
        Case(
            "powell_badly_scaled",
            powell_badly_scaled,
            _starts([0.0, 1.0]),
            _vec([1.0981593296997596e-05, 9.106146739867004]),
            0.0,
            f"MGH problem 3 ({MGH}); full digits: {GSL.format('powell3')}",
            published={"x1": "1.098e-5", "x2": "9.106"},
        ),
        Case(
            "brown_badly_scaled",
            brown_badly_scaled,
            _starts([1.0, 1.0]),
            _vec([1e6, 2e-6]),
            0.0,
            f"MGH problem 4 ({MGH})",
        ),
        Case("beale", beale, _starts([1.0, 1.0]), _vec([3.0, 0.5]), 0.0, f"MGH problem 5 ({MGH})"),
        Case(
            "jennrich_sampson",
            jennrich_sampson,
            _starts([0.3, 0.4]),
            _vec([0.2578252136703641, 0.2578252136703641]),
            124.3621823556148,
            f"MGH problem 6, m = 10 ({MGH}); f = 124.362 at x1 = x2 = 0.2578",
            published={"x1": "0.2578", "x2": "0.2578"},
            published_sum_squares="124.362",
        ),
        Case(
            "helical_valley",
            helical_valley,
            _starts([-1.0, 0.0, 0.0]),
            _vec([1.0, 0.0, 0.0]),
            0.0,
            f"MGH problem 7 ({MGH})",
            note="x2 = x3 = 0 at the solution: compared with an absolute tolerance (zero_scale 1)",
        ),
        Case(
            "bard",
            bard,
            _starts([1.0, 1.0, 1.0]),
            _vec([0.08241055974978896, 1.1330360920297222, 2.3436951786425366]),
            8.214877306578982e-03,
            f"MGH problem 8 ({MGH}): f = 8.21487...e-3; params: {GSL.format('bard')}",
            published={"x1": "0.08241055975623580", "x2": "1.133036092245175", "x3": "2.343695178435405"},
            published_sum_squares="8.21487e-3",
            note="MGH's second minimum, f = 17.4286 at x2, x3 -> -inf, is not a point: 0 digits",
        ),
        Case(
            "gaussian",
            gaussian,
            _starts([0.4, 1.0, 0.0]),
            _vec([0.3989561378387567, 1.0000190844878056, 0.0]),
            1.1279327696190517e-08,
            f"MGH problem 9 ({MGH}): f = 1.12793...e-8; params: {GSL.format('gaussian')}",
            published={"x1": "0.398956137838762825", "x2": "1.00001908448786647", "x3": "0"},
            published_sum_squares="1.12793e-8",
            note="x3 = 0 by the symmetry of the data: compared with an absolute tolerance (zero_scale 1)",
        ),
        Case(
            "meyer",
            meyer,
            _starts([0.02, 4000.0, 250.0]),
            _vec([5.609636471028093e-03, 6181.346346286364, 345.22363462413614]),
            87.94585517065208,
            f"MGH problem 10 ({MGH}): f = 87.9458...; params: {GSL.format('meyer')}",
            published={"x1": "5.609636471049458e-03", "x2": "6181.346346283188", "x3": "345.2236346240292"},
            published_sum_squares="87.9458",
        ),
        Case(
            "box_3d",
            box_3d,
            _starts([0.0, 10.0, 20.0]),
            _vec([1.0, 10.0, 1.0]),
            0.0,
            f"MGH problem 12, m = 10 ({MGH})",
            equivalent=(_vec([10.0, 1.0, -1.0]),),
            note="f = 0 also on the line x1 = x2, x3 = 0, where the curvature is singular: not a "
            "point, so a fit that ends there scores the digits of the nearest listed minimum",
        ),
        Case(
            "wood",
            wood,
            _starts([-3.0, -1.0, -3.0, -1.0]),
            _vec([1.0, 1.0, 1.0, 1.0]),
            0.0,
            f"MGH problem 14 ({MGH})",
        ),
        Case(
            "kowalik_osborne",
            kowalik_osborne,
            _starts([0.25, 0.39, 0.415, 0.39]),
            _vec([0.19280693457903791, 0.1912823287343665, 0.12305650692632095, 0.1360623306837946]),
            3.075056038492375e-04,
            f"MGH problem 15 ({MGH}): f = 3.07505...e-4; params: {GSL.format('kowalik')}",
            published={
                "x1": "1.928069345723978e-01",
                "x2": "1.912823290344599e-01",
                "x3": "1.230565070690708e-01",
                "x4": "1.360623308065148e-01",
            },
            published_sum_squares="3.07505e-4",
            note="MGH's second minimum, f = 1.02734e-3 with x1 -> inf, is not a point: 0 digits",
        ),
        Case(
            "brown_dennis",
            brown_dennis,
            _starts([25.0, 5.0, -5.0, -1.0]),
            _vec([-11.594439904762163, 13.203630051207202, -0.40343948817685943, 0.23677877445573622]),
            85822.20162635634,
            f"MGH problem 16, m = 20 ({MGH}): f = 85822.2...; MGH print f only: params refined here",
            published_sum_squares="85822.2",
        ),
        Case(
            "osborne1",
            osborne1,
            _starts([0.5, 1.5, -1.0, 0.01, 0.02]),
            _vec(osborne1_x),
            5.46489469748275e-05,
            f"MGH problem 17 ({MGH}): f = 5.46489...e-5; params printed in the MGH MATLAB collection "
            "(Plassmann, 1994): (.3754, 1.9358, -1.4647, .01287, .02212)",
            published={"x1": "0.3754", "x2": "1.9358", "x3": "-1.4647", "x4": "0.01287", "x5": "0.02212"},
            published_sum_squares="5.46489e-5",
            equivalent=(_vec([osborne1_x[i] for i in (0, 2, 1, 4, 3)]),),
            note="swapping the two exponentials (x2, x4) <-> (x3, x5) is the same minimum",
        ),
        Case(
            "biggs_exp6",
            biggs_exp6,
            _starts([1.0, 2.0, 1.0, 1.0, 1.0, 1.0]),
            _vec(biggs_x),
            0.0,
            f"MGH problem 18, m = 13 ({MGH}): f = 0 at (1, 10, 1, 5, 4, 3); local minimum f = 5.65565...e-3",
            equivalent=(_vec([4.0, 10.0, 3.0, 5.0, 1.0, 1.0]),),
            note="swapping (x1, x3) <-> (x5, x6) is the same minimum; MGH's local minimum "
            "(f = 5.65565e-3) is printed without its params and is not listed: reaching it scores "
            "the digits of the global one",
        ),
        Case(
            "osborne2",
            osborne2,
            _starts([1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5]),
            _vec(osborne2_x),
            4.0137736293547735e-02,
            f"MGH problem 19 ({MGH}): f = 4.01377...e-2; MGH print f only: params refined here from "
            "the MGH start (the MGH MATLAB collection, Plassmann 1994, prints (1.31, .4315, .6336, .5993, "
            ".7539, .9056, 1.3651, 4.8248, 2.3988, 4.5689, 5.6754), which agrees with this minimum to 2-4 "
            "digits only: x6 = .9056 against 0.904289)",
            published_sum_squares="4.01377e-2",
            equivalent=_osborne2_equivalents(osborne2_x),
            note="the three Gaussian terms may come in any order: 6 equivalent minima",
        ),
        Case(
            "puromycin",
            puromycin,
            ({"Vm": 205.0, "K": 0.08}, {"Vm": 2050.0, "K": 0.8}),
            {"Vm": 212.68374314253606, "K": 0.06412128168156705},
            1195.4488144393595,
            f"Puromycin, treated cells: {BATES_WATTS}, section 2.1 and appendix A1.3 "
            "(Vm = 212.7, K = 0.06412, S = 1195); start (205, 0.08) from the same section",
            published={"Vm": "212.7", "K": "0.06412"},
            published_sum_squares="1195",
        ),
        Case(
            "bod",
            bod,
            ({"theta1": 20.0, "theta2": 0.24}, {"theta1": 200.0, "theta2": 2.4}),
            {"theta1": 19.142575284617866, "theta2": 0.5310913769652101},
            25.990267281941343,
            f"Biochemical oxygen demand: {BATES_WATTS}, appendix A1.4 and section 3.x "
            "(theta = (19.143, 0.5311), S = 25.99); start (20, 0.24) from the same book",
            published={"theta1": "19.143", "theta2": "0.5311"},
            published_sum_squares="25.99",
        ),
    ]
    return {case.name: case for case in cases}


CASES: dict[str, Case] = _cases()

# (case, start index) where scipy `least_squares(method="lm", xtol=ftol=gtol=1e-15)` (other options at
# their defaults, so `max_nfev = 100 * n`) reaches 6 correct digits; measured with scipy 1.17 and checked
# by tests/test_nls.py. These are the runs where fitkit's default solve must reach 6 digits too. From
# 10 * x0 it ends at: Powell badly scaled, Beale, Meyer: the call limit, far off; Jennrich-Sampson: a
# point of sum 259.6; Bard, Kowalik-Osborne: the minima at infinity; Box 3D: f = 0.0756, not the line
# of zeros; Osborne 2: a local minimum of sum 1.790.
SCIPY_TIGHT_6: frozenset[tuple[str, int]] = frozenset(
    {(name, start) for name in CASES for start in (0, 1)}
    - {
        ("powell_badly_scaled", 1),
        ("beale", 1),
        ("jennrich_sampson", 1),
        ("bard", 1),
        ("meyer", 1),
        ("box_3d", 1),
        ("kowalik_osborne", 1),
        ("osborne2", 1),
    }
)


def default_calls(case: Case, problem: Problem, start: int) -> dict[str, Any]:
    """A new user's calls on `case` from start number `start`: `fk.solve` then `fk.covariance`.

    Both with no options; their warnings are silenced (the verdict is what is returned).

    Args:
        case: the test problem.
        problem: `case.build()` (built once and passed in, so its compilation is reused).
        start: 0 for the paper's `x0`, 1 for `10 * x0`.

    Returns:
        A dict: `result` (the `FitResult`), `curvature` (`"ok"` or the `CurvatureError`
        text), `valid` (`result.valid` and a covariance exists), `digits` and `minimum`
        (against `case.minima()`), and `params` as floats.

    Example:
        >>> case = CASES["meyer"]
        >>> default_calls(case, case.build(), 0)["valid"]
        True
    """
    import warnings

    from ..curvature import CurvatureError, covariance
    from ..solving import solve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = solve(problem, case.params(start))
        try:
            covariance(problem, result.params)
            curvature = "ok"
        except CurvatureError as error:
            curvature = f"CurvatureError: {str(error)[:200]}"
    params = {k: float(v) for k, v in result.params.items()}
    return {
        "result": result,
        "curvature": curvature,
        "valid": bool(result.valid) and curvature == "ok",
        "digits": case.digits(params),
        "minimum": case.which(params),
        "params": params,
    }
