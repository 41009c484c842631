"""Bad input, as a careless user gives it: a clear fitkit error before anything compiles, or a flagged result.

One table of cases. Each builds one bad input on a tiny problem (an exponential,
20 points, 2 params) and calls the engine a user would call. A case either
raises a fitkit error (a `ValueError`/`TypeError` subclass) whose message names
the thing to fix (the leaf path, the observation, the option, the file), with no
engine compiled on the way; or, where only a run can tell (overflow at the
start, a solve stuck at the edge of a NaN region), returns a result with
`valid=False` and a `fk.ConvergenceWarning`. None may return unflagged numbers.
"""

from __future__ import annotations

import logging
import pathlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import fitkit as fk

X = jnp.linspace(0.0, 2.0, 20)
TRUTH = {"a": jnp.array(3.0), "b": jnp.array(1.5)}
START = {"a": jnp.array(2.0), "b": jnp.array(1.0)}


class Decay(fk.Module):
    x: jax.Array

    def __call__(self, params):
        return params["a"] * jnp.exp(-params["b"] * self.x)


class Points(fk.Observation):
    name: str

    def predict(self, params, model):
        return model(params)


class Pair(fk.Module):
    """The same decay with its two params in one vector leaf, `w = [a, b]`."""

    x: jax.Array

    def __call__(self, params):
        return params["w"][0] * jnp.exp(-params["w"][1] * self.x)


class Root(fk.Module):
    """`sqrt(a) * x + c`: NaN for a < 0, so data with a negative slope pull a solve onto that edge."""

    x: jax.Array

    def __call__(self, params):
        return jnp.sqrt(params["a"]) * self.x + params["c"]


def clean() -> jax.Array:
    return TRUTH["a"] * jnp.exp(-TRUTH["b"] * X)


def problem(data=None, error=0.1, likelihood="normal", priors=None, mask=None, name="decay") -> fk.Problem:
    data = clean() if data is None else data
    obs = Points(data=data, error=error if likelihood == "normal" else None, mask=mask, name=name)
    return fk.Problem(Decay(x=X), obs, likelihood=likelihood, priors=priors)


def start(**changes) -> dict:
    return {**START, **{k: jnp.asarray(v) for k, v in changes.items()}}


def saved(tmp_path, damage: str):
    """A saved FitResult, damaged in one of several ways; returns its path."""
    path = tmp_path / "result.npz"
    fk.FitResult(params=START, loss=1.0, steps=3, converged=True, message="ok").save(path)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "corrupted":
        path.write_bytes(raw[:100] + b"x" * 50 + raw[150:])
    elif damage == "text":
        path.write_text("params: a=2, b=1\n")
    elif damage == "foreign":
        np.savez(path, a=np.zeros(3))
    return path


@dataclass(frozen=True)
class Raises:
    """The case raises `error` with a message matching `match`, before any engine compiles."""

    error: type[Exception]
    match: str


@dataclass(frozen=True)
class Flagged:
    """Only a run can tell: the result says `valid=False`, with a ConvergenceWarning."""


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Any], Any]  # called with pytest's tmp_path
    expect: Raises | Flagged


def _solve(prob, params, **options):
    return fk.solve(prob, params, **options)


def _fit(prob, params):
    return fk.fit(prob, params, optax.sgd(1e-3), steps=5, progress=False)


CASES = [
    # ------------------------------------------------- start params never finite
    Case(
        "nan start, solve",
        lambda _: _solve(problem(), start(a=jnp.nan)),
        Raises(fk.ParamsError, r"params leaf 'a' has 1 non-finite value\(s\) \(a = nan\); give finite"),
    ),
    Case(
        "inf start, fit",
        lambda _: _fit(problem(), start(b=jnp.inf)),
        Raises(fk.ParamsError, r"params leaf 'b' has 1 non-finite value\(s\) \(b = inf\)"),
    ),
    Case(
        "nan in a vector leaf, sample",
        lambda _: fk.sample(
            fk.Problem(Pair(x=X), Points(data=clean(), error=0.1, name="decay")),
            {"w": jnp.array([3.0, jnp.nan])},
            num_samples=10,
            num_warmup=10,
            progress=False,
        ),
        Raises(fk.ParamsError, r"params leaf 'w' has 1 non-finite value\(s\) \(w\[1\] = nan\)"),
    ),
    Case(
        "nan start, covariance",
        lambda _: fk.covariance(problem(), start(b=-jnp.inf)),
        Raises(fk.ParamsError, r"params leaf 'b' has 1 non-finite value\(s\) \(b = -inf\)"),
    ),
    Case(
        "start outside the prior's support",
        lambda _: _solve(problem(priors={"a": dist.HalfNormal(5.0)}), start(a=-1.0)),
        Raises(fk.ParamsError, r"params leaf 'a' starts outside the support of its prior HalfNormal"),
    ),
    Case(
        "start on the edge of a Uniform prior's support",
        lambda _: fk.covariance(problem(priors={"b": dist.Uniform(1.0, 2.0)}), start(b=2.5)),
        Raises(fk.ParamsError, r"'b' starts outside the support of its prior Uniform"),
    ),
    # ------------------------------------------------------------- impossible data
    Case(
        "negative Poisson counts",
        lambda _: problem(data=-jnp.round(clean()), likelihood="poisson", name="counts"),
        Raises(fk.ObservationError, r"Points\(name='counts'\): \d+ of 20 used data points are not counts"),
    ),
    Case(
        "non-integer Poisson counts",
        lambda _: problem(data=clean(), likelihood="poisson", name="counts"),
        Raises(fk.ObservationError, r"Points\(name='counts'\).*likelihood='poisson' needs whole numbers"),
    ),
    Case(
        "complex data",
        lambda _: problem(data=clean() + 0.5j, name="visibilities"),
        Raises(fk.ObservationError, r"Points\(name='visibilities'\): data is complex"),
    ),
    Case(
        "complex error",
        lambda _: problem(error=jnp.full(20, 0.1 + 0.1j), name="visibilities"),
        Raises(fk.ObservationError, r"Points\(name='visibilities'\): error is complex"),
    ),
    Case(
        "empty data",
        lambda _: Points(data=jnp.zeros(0), error=0.1, name="empty"),
        Raises(fk.ObservationError, r"Points\(name='empty'\): data is empty \(shape \(0,\)\)"),
    ),
    Case(
        "an all-False mask",
        lambda _: problem(mask=jnp.zeros(20, bool), name="masked"),
        Raises(fk.ObservationError, r"Points\(name='masked'\): its mask leaves none of its 20 points"),
    ),
    # ------------------------------------------------------------------ chi2r
    Case(
        "Problem.chi2r with ddof 0",
        lambda _: fk.Problem(Decay(x=X[:2]), Points(data=clean()[:2], error=0.1, name="two")).chi2r(START),
        Raises(ValueError, r"2 points - 2 params = ddof 0"),
    ),
    Case(
        "stats.chi2r with ddof -1",
        lambda _: fk.stats.chi2r(clean(), clean(), 0.1, -1),
        Raises(ValueError, r"needs ddof >= 1.*got ddof=-1"),
    ),
    # ------------------------------------------------------------------ priors
    Case(
        "a prior whose batch shape is not its leaf's",
        lambda _: _solve(problem(priors={"a": dist.Normal(jnp.zeros(3), 1.0)}), START),
        Raises(fk.ParamsError, r"the prior for 'a' has shape \(3,\).*but the leaf has shape \(\)"),
    ),
    Case(
        "a prior on a sub-tree",
        lambda _: _solve(
            fk.Problem(
                Decay(x=X),
                Points(data=clean(), error=0.1, name="decay"),
                priors={"shape": dist.Normal(0.0, 1.0)},
            ),
            {"a": START["a"], "shape": {"b": START["b"], "c": jnp.array(0.0)}},
        ),
        Raises(fk.ParamsError, r"the prior for 'shape' points at a sub-tree \(shape.b, shape.c\)"),
    ),
    Case(
        "a distribution class, not an instance",
        lambda _: problem(priors={"a": dist.Normal}),
        Raises(TypeError, r"the prior for 'a' is the class Normal, not a distribution"),
    ),
    # ------------------------------------------------------------ leaf types
    Case(
        "a string leaf",
        lambda _: _solve(problem(), {"a": "2.0", "b": START["b"]}),
        Raises(fk.ParamsTypeError, r"params leaf 'a' is str '2.0'; every parameter must be a float"),
    ),
    Case(
        "an object leaf",
        lambda _: _fit(problem(), {"a": START["a"], "b": object()}),
        Raises(fk.ParamsTypeError, r"params leaf 'b' is object"),
    ),
    Case(
        "an integer leaf",
        lambda _: _solve(problem(), {"a": 2, "b": START["b"]}),
        Raises(fk.ParamsTypeError, r"params leaf 'a' .*int64.*write 1.0, not 1"),
    ),
    # ------------------------------------------------------------ memory budget
    Case(
        "hessian: output larger than max_memory",
        lambda _: fk.hessian(problem().nll, START, max_memory=16),
        Raises(ValueError, r"max_memory=16 bytes is too small.*need 64 B \(64 bytes\)"),
    ),
    Case(
        "jacobian: output larger than max_memory",
        lambda _: fk.jacobian(problem().residuals, START, max_memory=100),
        Raises(ValueError, r"max_memory=100 bytes is too small.*\(640 bytes\)"),
    ),
    Case(
        "fisher: output larger than max_memory",
        lambda _: fk.fisher(problem(), START, max_memory=8),
        Raises(ValueError, r"max_memory=8 bytes is too small.*\(64 bytes\)"),
    ),
    Case(
        "covariance: output larger than max_memory",
        lambda _: fk.covariance(problem(), START, max_memory=8),
        Raises(ValueError, r"max_memory=8 bytes is too small.*\(64 bytes\)"),
    ),
    # -------------------------------------------------------------- files
    Case(
        "a truncated file",
        lambda tmp: fk.FitResult.load(saved(tmp, "truncated")),
        Raises(fk.FitKitFileError, r"cannot load .*result\.npz: it is a damaged zip archive \(truncated"),
    ),
    Case(
        "a corrupted file",
        lambda tmp: fk.Covariance.load(saved(tmp, "corrupted")),
        Raises(fk.FitKitFileError, r"cannot load .*result\.npz: .*damaged"),
    ),
    Case(
        "a text file",
        lambda tmp: fk.Posterior.load(saved(tmp, "text")),
        Raises(fk.FitKitFileError, r"cannot load .*result\.npz: it is not an \.npz archive"),
    ),
    Case(
        "a foreign .npz",
        lambda tmp: fk.FitResult.load(saved(tmp, "foreign")),
        Raises(fk.FitKitFileError, r"result\.npz: it is an \.npz archive but not one written by a fitkit"),
    ),
    Case(
        "a FitResult loaded as a Covariance",
        lambda tmp: fk.Covariance.load(saved(tmp, "none")),
        Raises(fk.FitKitFileError, r"result\.npz: it has no 'matrix' field; it holds a saved FitResult"),
    ),
    Case(
        "a FitResult loaded as a Posterior",
        lambda tmp: fk.Posterior.load(saved(tmp, "none")),
        Raises(fk.FitKitFileError, r"result\.npz as a Posterior: .*it holds a saved FitResult"),
    ),
    # ------------------------------------------------ analyse: every stage's options
    Case(
        "analyse: a misspelt solve method",
        lambda _: fk.analyse(problem(), START, fit=True, solve={"method": "lbfsg"}, progress=False),
        Raises(ValueError, r"analyse\(solve=...\): unknown method 'lbfsg'"),
    ),
    Case(
        "analyse: an unknown fit option",
        lambda _: fk.analyse(problem(), START, fit={"stepz": 10}, progress=False),
        Raises(TypeError, r"analyse\(fit=...\): \['stepz'\] are not options of fk.fit"),
    ),
    Case(
        "analyse: a bad covariance method",
        lambda _: fk.analyse(problem(), START, fit=True, uncertainty={"method": "fischer"}, progress=False),
        Raises(ValueError, r"analyse\(uncertainty=...\): unknown method 'fischer'"),
    ),
    Case(
        "analyse: a bad sample count",
        lambda _: fk.analyse(problem(), START, fit=True, sample={"num_samples": 0}, progress=False),
        Raises(ValueError, r"analyse\(sample=...\): num_samples must be a whole number >= 1, got 0"),
    ),
    Case(
        "analyse: a bad warm-start step count",
        lambda _: fk.analyse(problem(), START, fit={"steps": 2.5}, progress=False),
        Raises(ValueError, r"analyse\(fit=...\): steps must be a whole number >= 1, got 2.5"),
    ),
    # ------------------------------------------------- only a run can tell
    Case(
        "overflow in the model at the start",
        lambda _: _solve(problem(), start(b=-1000.0)),
        Flagged(),
    ),
    Case(
        "overflow at the start, fit skipping every non-finite step",
        lambda _: fk.fit(problem(), start(b=-1000.0), optax.sgd(1e-3), steps=5, nan="skip", progress=False),
        Flagged(),
    ),
    Case(
        "a solve stuck on the edge of a NaN region",
        lambda _: _solve(
            fk.Problem(Root(x=X), Points(data=-1.0 * X + 0.5, error=0.1, name="line")),
            {"a": jnp.array(1.0), "c": jnp.array(0.0)},
        ),
        Flagged(),
    ),
]


class _Compiles(logging.Handler):
    """Collects the names of the functions XLA compiles while `jax.log_compiles()` is on."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        found = re.match(r"Compiling jit\((.+?)\)", record.getMessage())
        if found:
            self.names.append(found.group(1))


# The function names fitkit defines (nested ones too) that are not also jnp/lax names, plus the
# engines' names that are ("block": a curvature column block): a compile of one of them is an engine's.
_ENGINE_NAMES = {
    name
    for path in pathlib.Path(fk.__file__).parent.rglob("*.py")
    for name in re.findall(r"def (\w+)\(", path.read_text())
    if not (hasattr(jax.lax, name) or hasattr(jnp, name))
} | {"block", "<lambda>"}


def _is_eager_op(name: str) -> bool:
    """A one-operation program compiled by an eager `jnp`/`lax` call (as the checks themselves make)."""
    if name in _ENGINE_NAMES:
        return False
    bare = name.lstrip("_")
    return hasattr(jax.lax, name) or hasattr(jnp, name) or hasattr(jnp, bare) or bare.startswith("reduce_")


@pytest.fixture
def compiles():
    handler = _Compiles()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path, compiles):
    if isinstance(case.expect, Raises):
        with warnings.catch_warnings():
            warnings.simplefilter("error", fk.ConvergenceWarning)  # no engine may get as far as a verdict
            with pytest.raises(case.expect.error, match=case.expect.match) as caught:
                case.call(tmp_path)
        assert isinstance(caught.value, (ValueError, TypeError))
        engines = [name for name in compiles.names if not _is_eager_op(name)]
        assert not engines, f"{case.name}: compiled {engines} before raising"
        return
    with pytest.warns(fk.ConvergenceWarning):
        result = case.call(tmp_path)
    assert result.valid is False
    assert result.flags, "a result that is not valid says why"
    assert not result.converged or result.flags


def test_the_table_covers_every_engine_and_both_outcomes():
    names = " ".join(c.name for c in CASES)
    for word in ("solve", "fit", "sample", "covariance", "hessian", "jacobian", "fisher", "analyse"):
        assert word in names
    assert any(isinstance(c.expect, Flagged) for c in CASES)


# --------------------------------------------------- inputs that must now work


def test_float32_params_with_x64_on_are_cast_not_a_scan_error():
    single = jax.tree.map(lambda v: v.astype(jnp.float32), START)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fk.ConvergenceWarning)  # the verdict is not this test's subject
        res = fk.solve(problem(), single, method="lbfgs")
        mixed = fk.fit(problem(), {"a": np.float32(2.0), "b": 1.0}, optax.sgd(1e-3), steps=3, progress=False)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(res.params))
    np.testing.assert_allclose([res.params["a"], res.params["b"]], [3.0, 1.5], rtol=1e-6)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(mixed.params))


def test_masked_bad_counts_and_an_objective_at_nan_params_are_allowed():
    counts = jnp.round(clean()).at[0].set(-1.0)
    mask = jnp.arange(20) > 0
    prob = problem(data=counts, likelihood="poisson", mask=mask)
    assert prob.n_data == 19
    # Evaluating an objective at non-finite params gives NaN (a diagnosis), not an error;
    # only the engines' start check refuses them.
    assert np.isnan(float(problem().loss(start(a=jnp.nan))))
    with pytest.raises(fk.ParamsError, match="'a'"):
        problem().check(start(a=jnp.nan))


def test_a_scalar_prior_applies_to_each_element_of_a_vector_leaf():
    prob = fk.Problem(
        Pair(x=X), Points(data=clean(), error=0.1, name="w"), priors={"w": dist.Normal(0.0, 10.0)}
    )
    prob.check({"w": jnp.array([2.0, 1.0])})
    matched = fk.Problem(prob.model, prob.observations, priors={"w": dist.Normal(jnp.zeros(2), 10.0)})
    matched.check({"w": jnp.array([2.0, 1.0])})
    with pytest.raises(fk.ParamsError, match=r"prior for 'w' has shape \(3,\).*leaf has shape \(2,\)"):
        fk.Problem(prob.model, prob.observations, priors={"w": dist.Normal(jnp.zeros(3), 1.0)}).check(
            {"w": jnp.array([2.0, 1.0])}
        )
