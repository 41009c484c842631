"""Problem: a model, its observations, a likelihood and priors, turned into objectives."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import likelihoods, tree
from ._cache import registry
from .observation import Observation, ObservationError

__all__ = ["Problem", "ParamsError", "ParamsTypeError"]


class ParamsError(ValueError):
    """The params do not fit the problem (missing paths, wrong dtypes or shapes, non-finite values)."""


class ParamsTypeError(ParamsError, TypeError):
    """A params leaf is not a float array (a string, an object, an integer); also a `TypeError`."""


def _stack(observations: Sequence[Observation]) -> Observation | None:
    """Stack observations along a new leading axis, or None if they cannot be vmapped."""
    first = observations[0]
    arrays0, static0 = eqx.partition(first, eqx.is_array)
    structure = jax.tree.structure(first)
    for obs in observations[1:]:
        if type(obs) is not type(first) or jax.tree.structure(obs) != structure:
            return None
        arrays, static = eqx.partition(obs, eqx.is_array)
        if jax.tree.structure(static) != jax.tree.structure(static0):
            return None
        if any(a != b for a, b in zip(jax.tree.leaves(static), jax.tree.leaves(static0))):
            return None
        shapes = [(jnp.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(arrays)]
        shapes0 = [(jnp.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(arrays0)]
        if shapes != shapes0:
            return None
    arrays = [eqx.filter(obs, eqx.is_array) for obs in observations]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *arrays)
    return eqx.combine(stacked, static0)


def _is_tracing(params) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(params))


def _check_data(observations: Sequence[Observation]) -> None:
    """Refuse observations with no used point."""
    for obs in observations:
        if not _is_concrete_data(obs):
            continue
        used = np.asarray(obs.valid)
        if not used.any():
            raise ObservationError(
                f"{obs.describe()}: its mask leaves none of its {used.size} points in use; unmask "
                "some points (True where a point is used), or leave this observation out"
            )


def _prior_at(prior: Any, params: Any) -> Any:
    """The distribution of a prior at `params`: the prior itself, or what a function of the params returns."""
    return prior if hasattr(prior, "log_prob") else prior(params)


def _is_concrete_data(obs: Observation) -> bool:
    arrays = (obs.data, obs.error, None if isinstance(obs.mask, str) else obs.mask)
    return not any(isinstance(a, jax.core.Tracer) for a in arrays if a is not None)


def _check_prior_shape(path: str, prior: Any, node: Any) -> None:
    """A prior must sit on one leaf, with a batch shape that broadcasts exactly to the leaf's."""
    leaves = jax.tree.leaves(node)
    if len(leaves) != 1 or leaves[0] is not node:
        below = ", ".join(f"{path}.{p}" for p in tree.leaf_paths(node)[:6]) or "no leaves"
        raise ParamsError(
            f"the prior for {path!r} points at a sub-tree ({below}), not at one leaf; give one "
            "prior per leaf path"
        )
    leaf_shape = tuple(jnp.shape(node))
    batch = tuple(getattr(prior, "batch_shape", ()))
    event = tuple(getattr(prior, "event_shape", ()))
    n_event = len(event)
    leaf_batch = leaf_shape[: len(leaf_shape) - n_event] if n_event else leaf_shape
    try:
        fits = leaf_shape[len(leaf_batch) :] == event and np.broadcast_shapes(batch, leaf_batch) == leaf_batch
    except ValueError:
        fits = False
    if not fits:
        raise ParamsError(
            f"the prior for {path!r} has shape {batch + event} (batch {batch}, event {event}) but the "
            f"leaf has shape {leaf_shape}; give a prior of shape {leaf_shape}, or a scalar prior "
            "that applies to each element (e.g. dist.Normal(0.0, 1.0))"
        )


def _check_start(problem: Problem, params: Any) -> None:
    """The value checks of `Problem.check`: finite leaves, and every prior's support."""
    if _is_tracing(params):
        return
    for path, leaf in zip(tree.leaf_paths(params), jax.tree.leaves(params)):
        values = np.asarray(leaf)
        finite = np.isfinite(values)
        if not finite.all():
            where = [path + n for n in tree._index_names(values.shape)]
            bad = [f"{name} = {v}" for name, v, ok in zip(where, values.ravel(), finite.ravel()) if not ok]
            raise ParamsError(
                f"params leaf {path!r} has {len(bad)} non-finite value(s) ({', '.join(bad[:3])}"
                f"{', ...' if len(bad) > 3 else ''}); give finite start values"
            )
    for path, prior in problem.priors.items():
        value = tree.get(params, path)
        try:
            prior = _prior_at(prior, params)
        except Exception as err:  # noqa: BLE001 - e.g. numpyro refusing a negative scale
            raise ParamsError(
                f"the prior for {path!r} (a function of the params) cannot be built at the start params "
                f"({type(err).__name__}: {err}); start its hyperparameters inside their supports"
            ) from err
        try:
            inside = np.asarray(prior.support(value))
        except Exception:  # noqa: BLE001 - a support that cannot be evaluated: rely on log_prob
            inside = np.ones((), bool)
        with warnings.catch_warnings():  # numpyro warns on out-of-support values: the error below says it
            warnings.simplefilter("ignore")
            log_prob = np.asarray(prior.log_prob(value))
        outside = ~inside | ~np.isfinite(log_prob)
        if outside.any():
            shown = np.asarray(value).ravel()[: min(3, np.asarray(value).size)].tolist()
            raise ParamsError(
                f"params leaf {path!r} starts outside the support of its prior "
                f"{type(prior).__name__} ({prior.support}): value {shown}, prior log-density "
                f"{np.ravel(log_prob)[:3].tolist()}; start inside the support"
            )
    if problem.log_prior_fn is not None:
        value = float(problem.log_prior_fn(params))
        if not np.isfinite(value):
            raise ParamsError(
                f"log_prior(params) is {value} at the start params; start where the prior density is positive"
            )
    for obs in problem.observations:
        if not obs.custom and obs.family.checks_start:
            prediction = _predict(obs, params, problem.model)
            obs.family.check_start(params, prediction, obs.view(), obs.describe())


@eqx.filter_jit
def _predict(obs: Observation, params: Any, model: Any):
    return obs.predict(params, model)


def _shape_of(fn, params: Any, what: str, context: str = "") -> Any:
    """`jax.eval_shape(fn, params)`, with a failure re-raised as a ParamsError naming `what`."""
    try:
        return jax.eval_shape(fn, params)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ParamsError(f"{what} failed on these params ({type(err).__name__}: {err}){context}") from err


def _check_scalar(fn, params: Any, what: str, context: str = "") -> None:
    """`fn(params)` must run on the params and return one float; `what` names it in the message."""
    out = _shape_of(fn, params, what, context)
    if getattr(out, "shape", None) != () or not jnp.issubdtype(out.dtype, jnp.floating):
        raise ParamsError(
            f"{what} must return one float (a scalar), got {getattr(out, 'shape', type(out).__name__)} "
            f"of dtype {getattr(out, 'dtype', None)}; sum the log-densities"
        )


def _with_family(obs: Observation, default: Any) -> Observation:
    """The observation with its likelihood family resolved (its own, else the problem's) and prepared."""
    family = likelihoods.family(default if obs.likelihood is None else obs.likelihood)
    if not obs.custom:  # a custom log_likelihood does not use the family, so it need not fit the data
        family = family.prepare(obs)
    return eqx.tree_at(lambda o: o.likelihood, obs, family, is_leaf=lambda x: x is None)


def _has_fisher(obs: Observation) -> bool:
    """Whether the observation's family gives its Fisher information (not a custom log-likelihood)."""
    return not obs.custom and obs.family.fisher_channels > 0


def _check_declarations(bounds, ties) -> tuple[dict, dict]:
    """Bounds are pairs and ties are functions, under path strings (checked against params later)."""
    bounds, ties = dict(bounds or {}), dict(ties or {})
    for path, bound in bounds.items():
        tree.split_path(path)
        if not isinstance(bound, tuple | list) or len(bound) != 2:
            raise ValueError(
                f"the bounds of {path!r} are {bound!r}; give a pair (lower, upper), with None for no "
                "bound on that side, e.g. (0.0, None)"
            )
        bounds[path] = tuple(None if b is None else np.asarray(b, np.float64) for b in bound)
    for path, fn in ties.items():
        tree.split_path(path)
        if not callable(fn):
            raise TypeError(
                f"the tie for {path!r} is a {type(fn).__name__}; give a function of the params, "
                "e.g. lambda p: p['width']['blue'] * 1.2"
            )
    return bounds, ties


# The methods every engine builds on: a subclass may add methods, not replace these.
_OBJECTIVES = frozenset(
    {
        "nll",
        "loss",
        "chi2",
        "chi2r",
        "ddof",
        "residuals",
        "log_prior",
        "log_prior_loss",
        "weights",
        "flat_predictions",
        "predict",
        "z_scores",
        "_predictions",
        "fisher_root",
        "hessian_terms",
        "log_likelihood",
    }
)


class Problem(eqx.Module):
    """A model, its observations, a likelihood and priors: the objectives to fit.

    Args:
        model: the forward model (usually an `fk.Module`); it is passed to every
            observation's `predict(params, model)` unchanged.
        observations: one `fk.Observation` or a sequence of them.
        likelihood: the family of every observation that does not name its
            own (`Observation(likelihood=...)`): `"normal"` (Gaussian with each
            observation's `error`), `"poisson"` (data are counts, predictions
            are rates), or an `fk.Likelihood` (`fk.Normal(scale=...)`,
            `fk.StudentT`, `fk.MultivariateNormal`, `fk.Unbinned`).
        priors: optional dict from a parameter path (`"flux.blue"`) to a
            numpyro distribution, or to a function of the params returning
            one (a hierarchical prior, `lambda p: dist.Normal(p["mu"],
            p["tau"])`); its log-density is added to `nll`.
        log_prior: optional function `log_prior(params) -> scalar`, added to
            the priors' log-density (for priors no path-wise form covers).
        vmap: evaluate observations with `jax.vmap` (`True`), a Python loop
            inside jit (`False`), or decide automatically (`None`: vmap when
            all observations have the same type, static fields and shapes).
        bounds: optional dict from a path (a sub-tree, a leaf or one element,
            `"wfe[0]"`) to `(lower, upper)`: numbers or arrays shaped like the
            leaf, `None` for no bound on that side. Every engine keeps the
            params inside (open intervals, through smooth bijections of an
            unconstrained vector). A prior whose support is bounded
            (`HalfNormal`, `Uniform`, `Beta`, ...) bounds its leaf in the same
            way unless a bound is given for it.
        ties: optional dict from a path to a function of the params giving
            its value (lmfit's `expr`), e.g.
            `{"width.red": lambda p: p["width"]["blue"] * 1.2}`. A tied param
            is not free: engines compute it, and its error comes from
            propagating the free params' covariance. Ties may read other
            tied params, but not themselves or in a cycle.

    Which params are fixed is chosen per call (`fk.solve(..., fixed=["N"])`),
    not here, since the same problem is often fitted with different params free.

    Raises:
        TypeError: an observation is not an `fk.Observation`, a prior has no
            `log_prob`, or a tie is not a function.
        ValueError: unknown likelihood, or a normal likelihood with an
            observation that has no `error`; a bound that is not a pair.
        ObservationError: data a family cannot take (negative counts for
            Poisson, a covariance of the wrong size or not positive definite).
            Paths are checked against the params when an engine starts.

    Example:
        >>> prob = fk.Problem(model, [blue, green, red], bounds={"flux": (0.0, None)})
        >>> prob.loss(params), prob.chi2r(params)
    """

    def __init_subclass__(cls, **kwargs):
        # Engines reach the objectives by different routes (least squares through
        # `residuals`, curvature through `nll` or `flat_predictions`, `fk.fit`
        # through `loss`), so overriding one of them would be used by some engines
        # and silently bypassed by others. They are refused at class creation.
        super().__init_subclass__(**kwargs)
        overridden = sorted(name for name in _OBJECTIVES if name in cls.__dict__)
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides Problem.{', Problem.'.join(overridden)}, which fitkit's engines "
                "would not all respect. Put the model in Observation.predict(params, model), the noise in "
                "each observation's likelihood (fk.Normal(scale=...), fk.StudentT, ...) or its own "
                "Observation.log_likelihood(params, model), and prior knowledge in priors={path: "
                "distribution or function of params} or log_prior=fn; subclass fk.Problem only to add "
                "new methods."
            )

    model: Any
    observations: tuple[Observation, ...]
    priors: dict
    bounds: dict
    ties: dict
    likelihood: Any
    log_prior_fn: Any
    vmapped: bool = eqx.field(static=True)
    _stacked: Observation | None
    _valid: Any
    _valid_index: Array
    # In a batch whose members use different numbers of points (ragged, or masked differently) every
    # point stays in the residual vector (the unused ones as zeros) and this holds the member's count.
    _count: Array | None
    n_data: int = eqx.field(static=True)
    n_fisher: int = eqx.field(static=True)
    has_residuals: bool = eqx.field(static=True)
    has_hessian_terms: bool = eqx.field(static=True)

    def __init__(
        self,
        model: Any,
        observations: Observation | Sequence[Observation],
        likelihood: Any = "normal",
        priors: Mapping[str, Any] | None = None,
        vmap: bool | None = None,
        bounds: Mapping[str, Any] | None = None,
        ties: Mapping[str, Any] | None = None,
        log_prior: Any = None,
    ):
        if isinstance(observations, Observation):
            observations = [observations]
        observations = tuple(observations)
        if not observations:
            raise ValueError("a Problem needs at least one observation")
        for i, obs in enumerate(observations):
            if not isinstance(obs, Observation):
                raise TypeError(
                    f"observation {i} is a {type(obs).__name__}; subclass fk.Observation and "
                    "implement predict(params, model)"
                )
            if type(obs).predict is Observation.predict and not obs.custom:
                raise TypeError(
                    f"{obs.describe()} defines neither predict(params, model) nor log_likelihood(params, "
                    "model); write predict (or your own log_likelihood)"
                )
        default = likelihoods.family(likelihood)
        observations = tuple(_with_family(obs, default) for obs in observations)
        priors = dict(priors or {})
        for path, prior in priors.items():
            tree.split_path(path)
            if isinstance(prior, type):
                raise TypeError(
                    f"the prior for {path!r} is the class {prior.__name__}, not a distribution; "
                    f"give an instance with its parameters, {prior.__name__}(...), not the class itself"
                )
            if not hasattr(prior, "log_prob") and not callable(prior):
                raise TypeError(
                    f"the prior for {path!r} is a {type(prior).__name__}; give a numpyro "
                    "distribution (anything with a log_prob method), or a function of the params "
                    "returning one"
                )
        if log_prior is not None and not callable(log_prior):
            raise TypeError(
                f"log_prior must be a function log_prior(params) -> scalar, got {type(log_prior).__name__}"
            )
        bounds, ties = _check_declarations(bounds, ties)
        _check_data(observations)
        stacked = _stack(observations) if vmap in (None, True) else None
        if vmap is True and stacked is None:
            raise ValueError(
                "vmap=True needs observations of the same type, with equal static fields "
                "and equal array shapes; use vmap=None to fall back to a loop"
            )
        valid = tuple(obs.valid for obs in observations)
        flat_valid = np.concatenate([np.asarray(v).ravel() for v in valid])
        if stacked is not None:
            valid = jnp.stack(valid)

        self.model = model
        self.observations = observations
        self.priors = priors
        self.bounds = bounds
        self.ties = ties
        self.likelihood = likelihood
        self.log_prior_fn = log_prior
        self.vmapped = stacked is not None
        self._stacked = stacked
        self._valid = valid
        self._valid_index = jnp.asarray(np.flatnonzero(flat_valid))
        self._count = None
        self.n_data = sum(obs.family.n_points(obs.view()) for obs in observations)
        self.n_fisher = sum(
            obs.family.fisher_channels * int(np.size(obs.data)) for obs in observations if _has_fisher(obs)
        )
        self.has_residuals = all(not obs.custom and obs.family.has_residuals for obs in observations)
        self.has_hessian_terms = bool(priors or log_prior is not None) or not all(
            _has_fisher(obs) for obs in observations
        )

    # ------------------------------------------------------------------ checks
    def check(self, params: Any) -> None:
        """Check that `params` fit this problem, before anything is compiled.

        Every leaf must be a finite floating-point array; every prior path must
        name one leaf, with a prior whose shape matches the leaf's (or a
        scalar prior, applied to each element), and the leaf must lie inside
        the prior's support; each observation's `predict` must run on `params`
        and return an array shaped like its data. The structural checks are
        cached per params structure; the value checks (finite, inside the
        support) run on every call. The engines (`fk.fit`, `fk.solve`,
        `fk.sample`, `fk.covariance`, ...) call it on their start.

        Raises:
            ParamsError: with a message naming the observation or path to fix.
            ParamsTypeError: (also a `TypeError`) a leaf of `params` is not a
                floating-point array.
        """
        self._check_structure(params)
        _check_start(self, params)

    def _check_structure(self, params: Any) -> None:
        signature = tuple(
            (p, jnp.shape(x), str(jnp.result_type(x)))
            for p, x in zip(tree.leaf_paths(params), jax.tree.leaves(params))
        )
        signature = (jax.tree.structure(params), signature)
        # id(problem) -> (weakref to problem, set of checked params signatures)
        checked = registry.get("checked structures")
        entry = checked.get(id(self))
        if entry is not None and entry[0]() is self and signature in entry[1]:
            return
        self._check(params)
        if entry is None or entry[0]() is not self:
            entry = (weakref.ref(self), set())
            checked[id(self)] = entry
        entry[1].add(signature)

    def _check(self, params: Any) -> None:
        paths = tree.leaf_paths(params)
        if not paths:
            raise ParamsError("params is empty: give a pytree (e.g. a dict) of float arrays to fit")
        for path, leaf in zip(paths, jax.tree.leaves(params)):
            if not eqx.is_array_like(leaf) or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                raise ParamsTypeError(
                    f"params leaf {path!r} is {type(leaf).__name__} of dtype "
                    f"{getattr(leaf, 'dtype', None)}; every parameter must be a float array "
                    "(write 1.0, not 1)"
                )
        for path, prior in self.priors.items():
            if not hasattr(prior, "log_prob"):
                prior = _shape_of(prior, params, f"the prior for {path!r} (a function of the params)")
                if not hasattr(prior, "log_prob"):
                    raise ParamsError(
                        f"the prior for {path!r} is a function of the params that returned a "
                        f"{type(prior).__name__}; return a numpyro distribution, e.g. "
                        "lambda p: dist.Normal(p['mu'], p['tau'])"
                    )
            _check_prior_shape(path, prior, tree.get(params, path))
        if self.log_prior_fn is not None:
            _check_scalar(self.log_prior_fn, params, "log_prior(params)")
        shown = ", ".join(paths[:20]) + (", ..." if len(paths) > 20 else "")
        for obs in self.observations:
            if obs.custom:
                _check_scalar(
                    lambda p, o=obs: o.log_likelihood(p, self.model),
                    params,
                    f"{obs.describe()}.log_likelihood(params, model)",
                    f". The params have paths: {shown}",
                )
                if type(obs).predict is Observation.predict:
                    continue
            out = _shape_of(
                lambda p, o=obs: o.predict(p, self.model),
                params,
                f"{obs.describe()}.predict(params, model)",
                f". The params have paths: {shown}",
            )
            if not hasattr(out, "shape"):
                raise ParamsError(f"{obs.describe()}.predict returned {type(out).__name__}; return one array")
            if out.shape != jnp.shape(obs.data):
                raise ParamsError(
                    f"{obs.describe()}.predict returned shape {out.shape} but its data has shape "
                    f"{jnp.shape(obs.data)}"
                )
            if not jnp.issubdtype(out.dtype, jnp.inexact):
                raise ParamsError(f"{obs.describe()}.predict returned dtype {out.dtype}; return floats")

    def _maybe_check(self, params) -> None:
        # Structure only: an objective evaluated at non-finite params returns NaN, it does not raise.
        if not _is_tracing(params):
            self._check_structure(params)

    # ------------------------------------------------------------ parameters
    def declares(self, fixed: Any = None) -> bool:
        """Whether fitting these params needs a `Parametrisation`: bounds, ties, fixed params,
        or a prior with bounded support."""
        from .parametrisation import support_bounds

        if self.bounds or self.ties or fixed:
            return True
        if any(not hasattr(p, "log_prob") for p in self.priors.values()):
            return True  # a prior that is a function of the params: its support is read at the start
        return any(bound is not None for p in self.priors.values() for bound in support_bounds(p))

    def parametrisation(self, params: Any, fixed: Any = None, on_bound: bool = False):
        """The map from an unconstrained vector to params that respects this problem's bounds and
        ties, with the params named in `fixed` held at their values in `params`.

        Args:
            params: the start (its values become the fixed values).
            fixed: a path or a list of paths (sub-trees, leaves or elements like `"wfe[0]"`).
            on_bound: allow free params to start exactly on a bound (the sampler starts
                them a little inside); otherwise that is an error.

        Returns:
            An `fk.Parametrisation`.

        Raises:
            ParametrisationError: an unknown path, an empty interval, a start outside its
                bounds, a tie that refers to itself or forms a cycle, every param fixed.
        """
        from .parametrisation import build

        return build(
            params, bounds=self.bounds, ties=self.ties, priors=self.priors, fixed=fixed, on_bound=on_bound
        )

    # ------------------------------------------------------------ predictions
    def _predictions(self, params: Any):
        if self.vmapped:
            arrays, static = eqx.partition(self._stacked, eqx.is_array)
            predict = lambda a: eqx.combine(a, static).predict(params, self.model)  # noqa: E731
            return jax.vmap(predict)(arrays)
        return tuple(obs.predict(params, self.model) for obs in self.observations)

    def predict(self, params: Any) -> list[Float[Array, "..."]]:
        """Each observation's prediction, in the order of `observations`."""
        self._maybe_check(params)
        return list(self._predictions(params))

    def _each(self, method: str, params: Any, observations=None):
        """Each observation's `method(params, model)`: one stacked array when vmapped, else a tuple."""
        if self.vmapped and observations is None:
            arrays, static = eqx.partition(self._stacked, eqx.is_array)
            return jax.vmap(lambda a: getattr(eqx.combine(a, static), method)(params, self.model))(arrays)
        chosen = self.observations if observations is None else observations
        return tuple(getattr(obs, method)(params, self.model) for obs in chosen)

    def _total(self, method: str, params: Any, observations=None):
        return sum(jnp.sum(x) for x in jax.tree.leaves(self._each(method, params, observations)))

    def _flat(self, per_obs) -> Array:
        return jnp.concatenate([jnp.ravel(r) for r in jax.tree.leaves(per_obs)])[self._valid_index]

    def families(self) -> list[str]:
        """Each observation's likelihood, in words (`"Normal(error)"`, `"custom log_likelihood"`)."""
        return ["custom log_likelihood" if o.custom else o.family.describe() for o in self.observations]

    @property
    def fixed_errors(self) -> bool:
        """Whether every observation is Gaussian with its fixed quoted errors (so chi2 is a chi-squared)."""
        return all(
            not o.custom and isinstance(o.family, likelihoods.Normal) and o.family.scale is None
            for o in self.observations
        )

    def _need_residuals(self, what: str) -> None:
        if not self.has_residuals:
            without = sorted(
                {
                    f
                    for f, o in zip(self.families(), self.observations)
                    if o.custom or not o.family.has_residuals
                }
            )
            raise ValueError(
                f"{what} needs least-squares residuals, which these likelihoods do not have: "
                f"{', '.join(without)} (their normalisation depends on the params, or they are not "
                "sums of squares); use problem.nll or problem.loss, and a minimiser (fk.solve's "
                "default picks one)"
            )

    def z_scores(self, params: Any) -> list[Float[Array, "..."]]:
        """Each observation's standardised residual map; NaN where masked.

        `(data - prediction) / sigma` for the normal and Student-t families (sigma
        from the noise model when there is one), the signed deviance residuals
        for Poisson, the whitened residuals for a `MultivariateNormal`; all NaN
        for unbinned data and custom log-likelihoods, which have none.
        """
        self._maybe_check(params)
        maps = []
        for obs in self.observations:
            if obs.custom:
                maps.append(jnp.full(jnp.shape(obs.data), jnp.nan))
            else:
                maps.append(jnp.where(obs.valid, obs._standardised(params, self.model), jnp.nan))
        return maps

    # -------------------------------------------------------------- objectives
    def chi2(self, params: Any) -> Float[Array, ""]:
        """The deviance, `-2 log L` up to a constant of the data.

        It is the chi-squared (summed squared z-scores) for normal data with
        fixed errors, the summed deviance for Poisson counts and the squared
        whitened residuals for a `MultivariateNormal`: in those cases about
        `n_data` at a good fit. With noise models, Student-t tails, unbinned
        data or custom log-likelihoods it is `-2 log L` (less constants).
        """
        self._maybe_check(params)
        return self._total("_deviance", params)

    def loss(self, params: Any) -> Float[Array, ""]:
        """The deviance per used point, plus the priors: about 1 at a good fit of normal or Poisson data.

        `(chi2 - 2 * log_prior) / n_data`: well scaled for optimisers whatever
        the data size, and equal to `2 * nll / n_data` up to a constant, so its
        minimiser is the maximum-likelihood point without priors and the
        maximum a posteriori (MAP) point with them; every engine (`fk.fit`,
        `fk.solve`) therefore fits the posterior when there are priors. A point
        outside a prior's support has an infinite loss, so no engine moves there.
        """
        chi2 = self.chi2(params)
        count = self.n_data if self._count is None else self._count
        if self.priors or self.log_prior_fn is not None:
            return (chi2 - 2.0 * self.log_prior(params)) / count
        return chi2 / count

    def log_prior_loss(self, params: Any) -> Float[Array, ""]:
        """`-log_prior(params)`: the priors' part of `nll`."""
        return -self.log_prior(params)

    def log_prior(self, params: Any) -> Float[Array, ""]:
        """Summed log-density of the priors (and of `log_prior`, when given) at `params` (0 without)."""
        total = jnp.zeros(())
        for path, prior in self.priors.items():
            total = total + jnp.sum(_prior_at(prior, params).log_prob(tree.get(params, path)))
        if self.log_prior_fn is not None:
            total = total + self.log_prior_fn(params)
        return total

    def log_likelihood(self, params: Any) -> Float[Array, ""]:
        """The summed log-likelihood of every observation (no priors), normalisation included."""
        self._maybe_check(params)
        return self._total("log_likelihood", params)

    def nll(self, params: Any) -> Float[Array, ""]:
        """Summed negative log-likelihood plus negative log-prior: use it for curvature and sampling."""
        return -self.log_likelihood(params) - self.log_prior(params)

    def hessian_terms(self, params: Any) -> Float[Array, ""]:
        """The part of `nll` whose curvature enters the Fisher information as its Hessian.

        The negative log-prior, plus the negative log-likelihood of observations
        whose family gives no Fisher information (custom `log_likelihood`s).
        """
        value = -self.log_prior(params)
        without = [o for o in self.observations if not _has_fisher(o)]
        if without:
            value = value - self._total("log_likelihood", params, without)
        return value

    def residuals(self, params: Any) -> Float[Array, " n_data"]:
        """Flat vector of the least-squares residuals of used points: z-scores for normal data.

        Its squared norm is `chi2`; hand it to least-squares solvers. Poisson
        data give signed deviance residuals, a `MultivariateNormal` the
        whitened residuals, a Student-t with fixed `nu` and scale
        `sign(z) sqrt((nu + 1) log(1 + z^2 / nu))`.

        Raises:
            ValueError: a likelihood has no residuals (a noise model, fitted
                Student-t tails, unbinned data, a custom log-likelihood).
        """
        self._need_residuals("problem.residuals")
        self._maybe_check(params)
        return self._flat(self._each("_residuals", params))

    def fisher_root(self, params: Any) -> Float[Array, " n_fisher"]:
        """A vector whose Jacobian `J` gives the likelihood's expected Fisher information `J^T J`.

        Each family contributes its rows (`Likelihood.fisher_root`): the
        predictions divided by sigma for normal data, by the square root of the
        rate for Poisson, the whitened predictions for a `MultivariateNormal`,
        plus rows for fitted noise terms; unbinned data give the per-event
        log-likelihoods (the empirical Fisher). Observations with a custom
        log-likelihood have no rows: their curvature is in `hessian_terms`.
        """
        self._maybe_check(params)
        with_fisher = [o for o in self.observations if _has_fisher(o)]
        if not with_fisher:
            return jnp.zeros((0,), jnp.result_type(float))
        roots = self._each("_fisher_root", params, None if self.vmapped else with_fisher)
        return jnp.concatenate([jnp.ravel(r) for r in jax.tree.leaves(roots)])

    def flat_predictions(self, params: Any) -> Float[Array, " n_data"]:
        """Flat vector of the predictions at used points, in `residuals` order."""
        self._maybe_check(params)
        preds = jax.tree.leaves(self._predictions(params))
        return jnp.concatenate([jnp.ravel(p) for p in preds])[self._valid_index]

    def weights(self, params: Any) -> Float[Array, " n_data"]:
        """Fisher weight of each used point, in `residuals` order.

        The Fisher information is `J^T diag(w) J` with `J` the Jacobian of
        `flat_predictions`: `w = 1 / error^2` for a normal likelihood and
        `w = 1 / prediction` for a Poisson one. Families without one diagonal
        weight per point raise; use `fisher_root` there.
        """
        per_obs = []
        for obs in self.observations:
            prediction = obs.predict(params, self.model)
            per_obs.append(obs.family.weights(params, prediction, obs.view()))
        return jnp.concatenate([jnp.ravel(w) for w in per_obs])[self._valid_index]

    def ddof(self, params: Any) -> int:
        """Degrees of freedom: used data points minus the number of parameters."""
        return self.n_data - tree.size(params)

    def chi2r(self, params: Any) -> Float[Array, ""]:
        """Reduced chi-squared, `chi2 / ddof`.

        Raises:
            ValueError: `ddof <= 0` (no more used data points than parameters),
                where the reduced chi-squared is not defined.
        """
        ddof = self.ddof(params)
        if ddof <= 0:
            raise ValueError(
                f"the reduced chi-squared needs more used data points than parameters: "
                f"{self.n_data} points - {tree.size(params)} params = ddof {ddof}; add data, fix "
                "some parameters, or use chi2 instead"
            )
        return self.chi2(params) / ddof

    # -------------------------------------------------------------- selection
    def with_observations(self, observations: Sequence[Observation]) -> Problem:
        """The problem with other observations: the same model, likelihood, priors, bounds and ties.

        It is built by `fk.Problem` again, so every check runs and the points are counted anew.

        Example:
            >>> prob.with_observations([dataclasses.replace(prob.observations[0], data=new)])
        """
        return Problem(
            self.model,
            observations,
            self.likelihood,
            self.priors,
            vmap=self.vmapped,
            bounds=self.bounds,
            ties=self.ties,
            log_prior=self.log_prior_fn,
        )

    def take(self, indices: Any) -> Problem:
        """The sub-problem made of the observations at `indices`: one mini-batch.

        It keeps the model, likelihood and priors. Concrete indices (a list or
        a NumPy array) give exactly `Problem(model, [observations[i], ...])`.
        On a vmapped problem the indices may also be traced (inside `jit`,
        `vmap` or `lax.scan`): the stacked observation arrays are then
        gathered on device. As `n_data` is a static count, traced indices need
        every observation to use the same number of points; this is checked
        when the data are concrete and assumed when they are traced.

        Args:
            indices: 1-D integer positions in `observations` (repeats allowed).

        Returns:
            A `Problem` of `len(indices)` observations, in the order given.

        Raises:
            TypeError: `indices` are not a 1-D integer array.
            ValueError: an index is out of range, or indices are traced on a
                problem that is not vmapped or whose observations use
                different numbers of points.

        Example:
            >>> prob.take([0, 2]).loss(params)          # the loss of two observations
            >>> jax.jit(lambda i: prob.take(i).chi2(params))(jnp.array([1, 3]))
        """
        n_obs = len(self.observations)
        if not isinstance(indices, jax.core.Tracer):
            idx = np.asarray(indices)
            if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
                raise TypeError(f"take needs a non-empty 1-D array of integer indices, got {indices!r}")
            if np.any((idx < -n_obs) | (idx >= n_obs)):
                raise ValueError(f"take: indices {idx.tolist()} are out of range for {n_obs} observations")
            if not _is_tracing(self._valid):
                return self.with_observations([self.observations[i] for i in idx])
        if not self.vmapped:
            raise ValueError(
                "take with traced indices needs a vmapped problem (observations of one type and "
                "shape); select with concrete indices (a list) instead"
            )
        indices = jnp.asarray(indices)
        if indices.ndim != 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
            raise TypeError(f"take needs 1-D integer indices, got {indices.dtype}{list(indices.shape)}")
        if _is_tracing(self._valid):
            counts = None if self.n_data % n_obs else [self.n_data // n_obs]
        else:
            counts = np.unique(np.reshape(np.asarray(self._valid), (n_obs, -1)).sum(axis=1))
        if counts is None or len(counts) != 1:
            raise ValueError(
                "take with traced indices needs every observation to use the same number of "
                "points, but their masks differ; select with concrete indices instead"
            )
        k = indices.shape[0]
        n_data = k * int(counts[0])
        arrays, static = eqx.partition(self._stacked, eqx.is_array)
        arrays = jax.tree.map(lambda a: a[indices], arrays)
        valid = self._valid[indices]
        fields = {
            "model": self.model,
            "observations": tuple(
                eqx.combine(jax.tree.map(lambda a, j=j: a[j], arrays), static) for j in range(k)
            ),
            "priors": self.priors,
            "bounds": self.bounds,
            "ties": self.ties,
            "likelihood": self.likelihood,
            "log_prior_fn": self.log_prior_fn,
            "vmapped": True,
            "_stacked": eqx.combine(arrays, static),
            "_valid": valid,
            "_valid_index": jnp.nonzero(jnp.ravel(valid), size=n_data)[0],
            "_count": None,
            "n_data": n_data,
            "n_fisher": self.n_fisher // n_obs * k,
            "has_residuals": self.has_residuals,
            "has_hessian_terms": self.has_hessian_terms,
        }
        # Built field by field: __init__ would need concrete arrays to count points.
        sub = object.__new__(Problem)
        for name, value in fields.items():
            object.__setattr__(sub, name, value)
        return sub
