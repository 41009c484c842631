"""Parametrisation: the one map from an unconstrained vector to params, with bounds, fixed values and ties.

Every engine works on an unconstrained flat vector `z`; `params = T(z)`
bounds each element by a smooth bijection, replaces fixed elements by their
values and computes tied leaves from the others. Which elements are fixed is
an array inside the map, so fixing or releasing a parameter reuses the
compiled engine.

The bijections are Stan's: `lo + exp(z)` (or `hi - exp(-z)`) for one bound and
`lo + (hi - lo) * sigmoid(z)` for two. Unlike MINUIT's sine map, the logistic
map is one-to-one on the whole real line, so a sampler sees one copy of the
posterior and its log-Jacobian is finite everywhere.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import tree
from .problem import ParamsError

__all__ = [
    "Parametrisation",
    "ParametrisationError",
    "TreeLatent",
    "element_indices",
    "normalise_fixed",
    "resolve_ties",
]


class ParametrisationError(ParamsError):
    """Bounds, ties or fixed params that cannot hold: unknown paths, empty intervals, cycles, a start outside."""


def element_indices(params: Any, path: str, what: str) -> np.ndarray:
    """The flat (ravel-order) indices named by `path`: a node, a leaf, or one element (`"wfe[0]"`).

    Raises:
        ParametrisationError: the path names nothing in `params`; the message lists the closest names.
    """
    if not isinstance(path, str):
        raise ParametrisationError(f"{what}: a parameter path must be a string, got {path!r}")
    names = tree.names(params)
    compact = re.sub(r"\s+", "", path)
    if compact in names:
        return np.array([names.index(compact)])
    try:
        node = ".".join(tree.split_path(path))
    except tree.PathError as err:
        raise ParametrisationError(f"{what}: {err}") from None
    leaves = tree.leaf_paths(params)
    sizes = [int(np.size(leaf)) for leaf in jax.tree.leaves(params)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    found = [
        np.arange(offsets[i], offsets[i + 1])
        for i, leaf in enumerate(leaves)
        if leaf == node or leaf.startswith(node + ".")
    ]
    if not found:
        choices = tree.node_paths(params) + [n for n in names if "[" in n]
        close = difflib.get_close_matches(path, choices, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(tree.node_paths(params)[:30])
        raise ParametrisationError(
            f"{what}: unknown parameter path {path!r}.{hint} Valid paths: {shown}; an element is "
            "named like 'wfe[0]'."
        )
    return np.concatenate(found)


def normalise_fixed(params: Any, fixed: Sequence[str] | str | None) -> tuple[str, ...]:
    """The flat element names fixed by `fixed` (paths, leaves or elements), in ravel order.

    Raises:
        ParametrisationError: an unknown path, or every parameter fixed.
        TypeError: `fixed` is not a path or a list of paths.
    """
    if fixed is None:
        return ()
    if isinstance(fixed, str):
        fixed = [fixed]
    if not isinstance(fixed, Sequence | set | frozenset):
        raise TypeError(f"fixed must be a path or a list of paths, got {type(fixed).__name__}")
    names = tree.names(params)
    chosen = np.zeros(len(names), bool)
    for path in fixed:
        chosen[element_indices(params, path, "fixed")] = True
    if chosen.all():
        raise ParametrisationError(
            f"fixed names every one of the {len(names)} parameters, so nothing is left to fit; "
            "release at least one"
        )
    return tuple(n for n, c in zip(names, chosen) if c)


def _broadcast_bound(value, shape: tuple[int, ...], path: str, side: str) -> np.ndarray:
    fill = -np.inf if side == "lower" else np.inf
    if value is None:
        return np.full(shape, fill)
    array = np.asarray(value, dtype=np.float64)
    array = np.where(np.isnan(array), fill, array)
    try:
        return np.broadcast_to(array, shape).copy()
    except ValueError:
        raise ParametrisationError(
            f"the {side} bound of {path!r} has shape {array.shape}, which does not broadcast to the "
            f"params there, of shape {shape}; give a number or an array of shape {shape}"
        ) from None


def support_bounds(prior: Any) -> tuple[Any, Any]:
    """The `(lower, upper)` bounds of a prior's support (numpyro's `support.lower_bound`), `None` where open."""
    support = getattr(prior, "support", None)
    return getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)


def _support_of_function(prior: Any, params: Any, path: str) -> Any:
    """The distribution a prior function gives at `params`, after checking its support is fixed.

    A support that moves with the params (`Uniform(p["lo"], p["hi"])`) cannot be
    one fixed bijection: the user must declare the bounds.
    """
    moving = []

    def probe(p):
        lo, hi = support_bounds(prior(p))
        moving.extend(b for b in (lo, hi) if isinstance(b, jax.core.Tracer))
        return 0.0

    jax.eval_shape(probe, params)
    if moving:
        raise ParametrisationError(
            f"the prior for {path!r} is a function of the params whose support depends on them; "
            f"declare fixed bounds for it, fk.Problem(..., bounds={{{path!r}: (lower, upper)}})"
        )
    return prior(params)


def declared_bounds(params: Any, bounds: Mapping[str, Any], priors: Mapping[str, Any]) -> tuple:
    """Flat lower and upper bounds from the declared bounds, then the priors' supports where none was given.

    Raises:
        ParametrisationError: an unknown path, a malformed or empty interval.
    """
    n = tree.size(params)
    lower, upper = np.full(n, -np.inf), np.full(n, np.inf)
    given = np.zeros(n, bool)
    names = tree.names(params)
    for path, bound in bounds.items():
        lo, hi = bound
        index = element_indices(params, path, "bounds")
        shape = (
            np.shape(tree.get(params, path)) if len(index) > 1 and _is_leaf(params, path) else (len(index),)
        )
        lo = _broadcast_bound(lo, shape, path, "lower").ravel()
        hi = _broadcast_bound(hi, shape, path, "upper").ravel()
        empty = ~(lo < hi)
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise ParametrisationError(
                f"the bounds of {names[index[i]]!r} are ({lo[i]:g}, {hi[i]:g}): the lower bound must be "
                "below the upper one"
            )
        lower[index], upper[index], given[index] = lo, hi, True
    for path, prior in priors.items():
        if path not in bounds and not hasattr(prior, "log_prob"):
            prior = _support_of_function(prior, params, path)
        lo, hi = support_bounds(prior)
        if lo is None and hi is None:
            continue
        index = element_indices(params, path, "priors")
        shape = np.shape(tree.get(params, path))
        lo = _broadcast_bound(lo, shape, path, "lower").ravel()
        hi = _broadcast_bound(hi, shape, path, "upper").ravel()
        open_ = ~given[index]
        lower[index[open_]], upper[index[open_]] = lo[open_], hi[open_]
    return lower, upper


def _is_leaf(params, path) -> bool:
    node = tree.get(params, path)
    return len(jax.tree.leaves(node)) == 1 and jax.tree.leaves(node)[0] is node


def check_inside(params: Any, lower: np.ndarray, upper: np.ndarray, free: np.ndarray, on_bound: bool) -> None:
    """Refuse a start outside its bounds (or on one, unless `on_bound`), naming the first elements that are.

    Raises:
        ParametrisationError: some free element lies outside its bounds, or on one.
    """
    x = np.asarray(tree.ravel(params)[0], np.float64)
    names = tree.names(params)
    outside = free & ((x < lower) | (x > upper))
    if outside.any():
        shown = ", ".join(
            f"{names[i]} = {x[i]:g} not in [{lower[i]:g}, {upper[i]:g}]" for i in np.flatnonzero(outside)[:4]
        )
        raise ParametrisationError(
            f"the start lies outside its bounds: {shown}; start every bounded parameter inside its bounds"
        )
    edge = free & ((x == lower) | (x == upper))
    if edge.any() and not on_bound:
        shown = ", ".join(f"{names[i]} = {x[i]:g}" for i in np.flatnonzero(edge)[:4])
        raise ParametrisationError(
            f"the start lies on a bound: {shown}; start strictly inside (a bound is at infinity in the "
            "unconstrained space the engines work in, so a param there could not move). To keep a "
            "param at its bound, fix it: fixed=[...]"
        )


def _used_leaves(fn: Callable, params: Any, path: str) -> tuple[set[int], Any]:
    """The leaves (ravel order) a tie reads, from its jaxpr, and the shape of what it returns."""
    try:
        closed = jax.make_jaxpr(fn)(params)
        out = jax.eval_shape(fn, params)
    except Exception as err:  # noqa: BLE001 - re-raised with the tie named
        raise ParametrisationError(
            f"the tie for {path!r} failed on the params ({type(err).__name__}: {err}); a tie is a "
            "function of the params pytree, e.g. lambda p: p['width']['blue'] * 1.2"
        ) from err
    jaxpr = closed.jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return {i for i, v in enumerate(jaxpr.invars) if id(v) in read}, out


def _check_tie_shape(path: str, node: Any, out: Any, size: int) -> None:
    want = [tuple(np.shape(leaf)) for leaf in jax.tree.leaves(node)]
    got = [tuple(leaf.shape) for leaf in jax.tree.leaves(out)]
    same = jax.tree.structure(out) == jax.tree.structure(node) and got == want
    # One leaf may be given a number (broadcast) or an array of the leaf's size.
    broadcast = len(want) == 1 and len(got) == 1 and int(np.prod(got[0])) in (1, size)
    if not (same or broadcast):
        raise ParametrisationError(
            f"the tie for {path!r} returns shapes {got}, but the params there have {want}"
        )


def resolve_ties(
    params: Any, ties: Mapping[str, Callable]
) -> tuple[tuple[tuple[str, Callable], ...], np.ndarray]:
    """The ties in an order that computes each after the ties it reads, and the flat mask of tied elements.

    Raises:
        ParametrisationError: an unknown path, a tie that is not callable, returns the wrong
            shape, refers to itself or forms a cycle with other ties.
    """
    n = tree.size(params)
    tied = np.zeros(n, bool)
    if not ties:
        return (), tied
    leaves = tree.leaf_paths(params)
    owner: dict[int, str] = {}
    reads: dict[str, set[int]] = {}
    for path, fn in ties.items():
        if not callable(fn):
            raise ParametrisationError(
                f"the tie for {path!r} is a {type(fn).__name__}; give a function of the params, "
                "e.g. lambda p: p['width']['blue'] * 1.2"
            )
        index = element_indices(params, path, "ties")
        node = tree.get(params, path)
        used, out = _used_leaves(fn, params, path)
        _check_tie_shape(path, node, out, len(index))
        tied[index] = True
        node_path = ".".join(tree.split_path(path))
        mine = {i for i, leaf in enumerate(leaves) if leaf == node_path or leaf.startswith(node_path + ".")}
        if used & mine:
            raise ParametrisationError(
                f"the tie for {path!r} refers to {path!r} itself; a tie computes a param from other params"
            )
        for i in mine:
            owner[i] = path
        reads[path] = used
    depends = {path: sorted({owner[i] for i in used if i in owner}) for path, used in reads.items()}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(path: str, trail: list[str]) -> None:
        if state.get(path) == 2:
            return
        if state.get(path) == 1:
            cycle = " -> ".join([*trail[trail.index(path) :], path])
            raise ParametrisationError(f"the ties form a cycle ({cycle}); one of them must be a free param")
        state[path] = 1
        for other in depends[path]:
            visit(other, [*trail, path])
        state[path] = 2
        order.append(path)

    for path in ties:
        visit(path, [])
    return tuple((path, ties[path]) for path in order), tied


def _shaped_like(value: Any, node: Any) -> Any:
    """A tie's value cast and broadcast to the node it replaces."""
    if eqx.is_array(node):
        return jnp.broadcast_to(jnp.asarray(value, node.dtype), node.shape)
    return jax.tree.map(lambda v, leaf: jnp.broadcast_to(jnp.asarray(v, leaf.dtype), leaf.shape), value, node)


class Parametrisation(eqx.Module):
    """The map `params = T(z)` from an unconstrained flat vector to params, and back.

    `T` bounds each element (Stan's transforms: `lo + exp(z)`, `hi - exp(-z)`,
    `lo + (hi - lo) * sigmoid(z)`), puts the reference value in every element
    that is not free (fixed by the user, or held at a limit), then computes the
    tied leaves from the result. The masks and values are arrays, so another
    choice of fixed params reuses every compiled engine.

    Usually built by `Problem.parametrisation(params, fixed=...)`.

    Attributes:
        layout: the ravel layout of the params.
        reference: flat physical values of the elements that are not free.
        free: True where an element is a free parameter (neither fixed, tied nor at a limit).
        tied: True where an element is computed by a tie.
        lower, upper: flat bounds (`-inf` / `inf` where there is none).
        ties: `(path, fn)` pairs in the order they are computed.
        names: flat element names.

    Example:
        >>> T = prob.parametrisation(start, fixed=["N"])
        >>> z = T.to_latent(start)
        >>> T.to_params(z)["N"] == start["N"]
    """

    layout: tree.Layout
    reference: Float[Array, " n"]
    free: Bool[Array, " n"]
    tied: Bool[Array, " n"]
    lower: Float[Array, " n"]
    upper: Float[Array, " n"]
    ties: tuple = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)

    @property
    def size(self) -> int:
        return len(self.names)

    # ------------------------------------------------------------ host views
    def independent(self) -> np.ndarray:
        """The flat indices of the free parameters (host array)."""
        return np.flatnonzero(np.asarray(self.free))

    def fixed_names(self) -> tuple[str, ...]:
        """The names of the elements held at their reference value."""
        held = ~np.asarray(self.free) & ~np.asarray(self.tied)
        return tuple(n for n, h in zip(self.names, held) if h)

    def tied_names(self) -> tuple[str, ...]:
        return tuple(n for n, t in zip(self.names, np.asarray(self.tied)) if t)

    def bounded(self) -> bool:
        """Whether any element has a finite bound."""
        return bool(np.isfinite(np.asarray(self.lower)).any() or np.isfinite(np.asarray(self.upper)).any())

    def with_fixed(self, values: Float[Array, " n"], held: np.ndarray) -> Parametrisation:
        """The same map with the elements where `held` is True fixed at `values` (physical, flat)."""
        held = jnp.asarray(held, bool)
        reference = jnp.where(held, jnp.asarray(values, self.reference.dtype), self.reference)
        return eqx.tree_at(lambda p: (p.reference, p.free), self, (reference, self.free & ~held))

    # ------------------------------------------------------------ elementwise bijection
    def _kinds(self):
        has_lo, has_hi = jnp.isfinite(self.lower), jnp.isfinite(self.upper)
        lo = jnp.where(has_lo, self.lower, 0.0)
        hi = jnp.where(has_hi, self.upper, 1.0)
        return has_lo & has_hi, has_lo & ~has_hi, has_hi & ~has_lo, lo, hi

    def constrain(self, z: Float[Array, " n"]) -> Float[Array, " n"]:
        """Physical flat values of an unconstrained vector (bounds only; no fixing or ties)."""
        two, low, high, lo, hi = self._kinds()
        # Each branch sees a harmless input where it is not used, so no inf or NaN reaches a gradient.
        x_two = lo + (hi - lo) * jax.nn.sigmoid(jnp.where(two, z, 0.0))
        x_low = lo + jnp.exp(jnp.where(low, z, 0.0))
        x_high = hi - jnp.exp(-jnp.where(high, z, 0.0))
        return jnp.where(two, x_two, jnp.where(low, x_low, jnp.where(high, x_high, z)))

    def unconstrain(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """The unconstrained vector of physical flat values; a value on a bound maps to a large finite `z`."""
        two, low, high, lo, hi = self._kinds()
        dtype = jnp.result_type(x)
        tiny = jnp.finfo(dtype).tiny
        fraction = jnp.clip(jnp.where(two, (x - lo) / (hi - lo), 0.5), tiny, 1.0 - jnp.finfo(dtype).epsneg)
        z_two = jnp.log(fraction) - jnp.log1p(-fraction)
        z_low = jnp.log(jnp.maximum(jnp.where(low, x - lo, 1.0), tiny))
        z_high = -jnp.log(jnp.maximum(jnp.where(high, hi - x, 1.0), tiny))
        return jnp.where(two, z_two, jnp.where(low, z_low, jnp.where(high, z_high, x)))

    def log_det_jacobian(self, z: Float[Array, " n"]) -> Float[Array, ""]:
        """`sum log |dx/dz|` over the free elements: the density correction of sampling in `z`."""
        two, low, high, lo, hi = self._kinds()
        z_two = jnp.where(two, z, 0.0)
        term = jnp.where(
            two,
            jnp.log(hi - lo) + jax.nn.log_sigmoid(z_two) + jax.nn.log_sigmoid(-z_two),
            jnp.where(low, z, jnp.where(high, -z, 0.0)),
        )
        return jnp.sum(jnp.where(self.free, term, 0.0))

    # ------------------------------------------------------------ the whole map
    def complete(self, x: Float[Array, " n"]) -> Any:
        """The params from physical flat values: reference values where not free, then the ties."""
        params = self.layout.to_params(jnp.where(self.free, x, self.reference))
        for path, fn in self.ties:
            params = tree.set(params, path, _shaped_like(fn(params), tree.get(params, path)))
        return params

    def to_params(self, z: Float[Array, " n"]) -> Any:
        """The params pytree at unconstrained vector `z`."""
        return self.complete(self.constrain(z))

    def to_latent(self, params: Any) -> Float[Array, " n"]:
        """The unconstrained vector of `params`."""
        return self.unconstrain(self.layout.to_latent(params))

    def flat(self, params: Any) -> Float[Array, " n"]:
        """The physical flat values of `params` (ravel order)."""
        return self.layout.to_latent(params)

    def penalty(self, z: Float[Array, " n"]) -> Float[Array, ""]:
        """`0.5 |z - z_ref|^2` over the elements that are not free.

        The objective does not depend on them, so this only gives them unit
        curvature: Newton-type steps stay defined and leave them where they are.
        """
        return 0.5 * jnp.sum(jnp.square(self.anchor_residuals(z)))

    def anchor_residuals(self, z: Float[Array, " n"]) -> Float[Array, " n"]:
        """`z - z_ref` where an element is not free, 0 where it is (rows appended to least-squares residuals)."""
        return jnp.where(self.free, 0.0, z - jax.lax.stop_gradient(self.unconstrain(self.reference)))


class TreeLatent(eqx.Module):
    """A `Parametrisation` on pytrees: the optimised tree has the params' structure and holds `z`,
    so per-path optimisers address it by the params' paths."""

    parametrisation: Parametrisation

    def to_params(self, z_tree: Any) -> Any:
        return self.parametrisation.to_params(self.parametrisation.layout.to_latent(z_tree))

    def to_latent(self, params: Any) -> Any:
        return self.parametrisation.layout.to_params(self.parametrisation.to_latent(params))


def build(
    params: Any,
    *,
    bounds: Mapping[str, Any],
    ties: Mapping[str, Callable],
    priors: Mapping[str, Any],
    fixed: Sequence[str] | str | None,
    on_bound: bool = False,
) -> Parametrisation:
    """The `Parametrisation` of a problem's declarations at the start `params`.

    Raises:
        ParametrisationError: an unknown path, an empty interval, a start outside its
            bounds (or on one, unless `on_bound`), a tie that refers to itself or forms a
            cycle, a param both tied and fixed or bounded, every param fixed.
    """
    names = tree.names(params)
    order, tied = resolve_ties(params, ties)
    fixed_names = normalise_fixed(params, fixed)
    held = np.isin(np.asarray(names, dtype=object), np.asarray(fixed_names, dtype=object))
    both = held & tied
    if both.any():
        raise ParametrisationError(
            f"{names[int(np.flatnonzero(both)[0])]!r} is both tied and fixed; a tie already fixes its value"
        )
    lower, upper = declared_bounds(params, bounds, priors)
    for path in bounds:
        index = element_indices(params, path, "bounds")
        # A bound over a sub-tree skips its tied leaves; a bound on tied params alone is a mistake.
        if tied[index].all():
            raise ParametrisationError(
                f"{path!r} is tied and bounded; a tied param follows the params it is computed from: "
                "bound those instead"
            )
    lower, upper = np.where(tied, -np.inf, lower), np.where(tied, np.inf, upper)
    free = ~held & ~tied
    if not free.any():
        raise ParametrisationError("every parameter is fixed or tied, so nothing is left to fit; release one")
    check_inside(params, lower, upper, free, on_bound)
    layout = tree.Layout.of(params)
    x = layout.to_latent(params)
    dtype = x.dtype
    param = Parametrisation(
        layout=layout,
        reference=x,
        free=jnp.asarray(free),
        tied=jnp.asarray(tied),
        lower=jnp.asarray(lower, dtype),
        upper=jnp.asarray(upper, dtype),
        ties=order,
        names=tuple(names),
    )
    # The reference holds the start with its ties applied, so a fixed value and a tie agree from the start.
    return eqx.tree_at(lambda p: p.reference, param, layout.to_latent(param.complete(x)))
