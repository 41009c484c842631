"""fk.sample: NUTS in the whitened latent space of a Projection."""

from __future__ import annotations

import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .. import tree
from .._checks import refuse_batch, whole
from .._loop import run
from .._progress import Progress
from ..problem import Problem
from ..projection import Projection, ProjectionError, TruncationWarning, resolve_projection
from ..results import inherited_fixed, start_params
from ._posterior import Posterior
from ._stepper import NutsStepper, potential

__all__ = ["sample", "CHAIN_METHODS"]

CHAIN_METHODS = ("vectorized", "parallel", "sequential")


@eqx.filter_jit
def _to_params(projection, latent):
    return jax.vmap(projection.to_params)(latent)


# A mode on a bound (a param held at its limit) is centred this far inside it, in
# the unconstrained units, where the density of the bounded param is finite.
EDGE = 20.0


def _at_edge(parametrisation, params) -> bool:
    """Whether a free bounded param lies at the edge of the unconstrained space (held at a bound)."""
    z = np.asarray(parametrisation.to_latent(params))
    bounded = np.isfinite(np.asarray(parametrisation.lower)) | np.isfinite(np.asarray(parametrisation.upper))
    return bool(np.any(bounded & np.asarray(parametrisation.free) & (np.abs(z) >= EDGE)))


def _has_bounded_free(parametrisation) -> bool:
    bounded = np.isfinite(np.asarray(parametrisation.lower)) | np.isfinite(np.asarray(parametrisation.upper))
    return bool(np.any(bounded & np.asarray(parametrisation.free)))


def _inside(parametrisation, params):
    """`params` with every bounded element at least `EDGE` unconstrained units inside its bounds."""
    if parametrisation is None:
        return params
    z = jnp.clip(parametrisation.to_latent(params), -EDGE, EDGE)
    bounded = jnp.isfinite(parametrisation.lower) | jnp.isfinite(parametrisation.upper)
    z = jnp.where(bounded, z, parametrisation.to_latent(params))
    return parametrisation.to_params(z)


# Newton steps, each at most MAX_MOVE unconstrained units, to the mode of the density of `z`.
MODE_STEPS, MAX_MOVE = 60, 2.0


@eqx.filter_jit
def _energies(problem, projection, prior, u):
    return jax.vmap(potential(problem, projection, prior))(u)


# Each redraw of the starts whose density is not finite halves the jitter, this many times at most.
REDRAWS = 8


def _safe_starts(problem, projection, prior, key, num_chains: int, jitter: float) -> jax.Array:
    """`(num_chains, dim)` starting latent points, every one where the posterior density is finite.

    The chains start at `jitter * normal` around the centre. Starts where the
    density is not finite (outside a support the bounds do not encode, a model
    that overflows) are redrawn with half the jitter, up to `REDRAWS` times, then
    put at the centre; a `SamplingWarning` gives the numbers when that happened.

    Raises:
        ValueError: the density is not finite at the centre itself.
    """
    dtype = projection.center.dtype
    centre = np.asarray(_energies(problem, projection, prior, jnp.zeros((1, projection.dim), dtype)))[0]
    if not np.isfinite(centre):
        raise ValueError(
            f"fk.sample: the posterior density is not finite at the params given (nll + log-Jacobian = "
            f"{centre}): start from params inside every bound and support, where problem.nll is finite "
            "(the FitResult of fk.solve, for one)"
        )
    keys = iter(jax.random.split(key, REDRAWS + 1))
    u = np.array(jitter * jax.random.normal(next(keys), (num_chains, projection.dim), dtype))
    bad = ~np.isfinite(np.asarray(_energies(problem, projection, prior, jnp.asarray(u))))
    first_bad, scale = int(bad.sum()), jitter
    for _ in range(REDRAWS):
        if not bad.any():
            break
        scale /= 2.0
        u[bad] = np.asarray(scale * jax.random.normal(next(keys), (int(bad.sum()), projection.dim), dtype))
        bad = ~np.isfinite(np.asarray(_energies(problem, projection, prior, jnp.asarray(u))))
    if first_bad:
        u[bad] = 0.0
        at_centre = f"; {int(bad.sum())} start(s) at the centre" if bad.any() else ""
        warnings.warn(
            f"fk.sample: {first_bad} of {num_chains} starting point(s) drawn with jitter={jitter:g} had a "
            f"non-finite posterior density (outside the support of the model or a prior); redrawn with "
            f"jitter down to {scale:.3g}{at_centre}. Declare the bounds of such params (fitkit samples "
            "them in unconstrained coordinates) or pass a smaller jitter.",
            SamplingWarning,
            stacklevel=3,
        )
    return jnp.asarray(u)


# Beyond these the draws do not describe the posterior: Vehtari et al. (2021) ask for
# R-hat < 1.01 and a bulk ESS of at least 100 per chain before trusting summaries.
MAX_R_HAT, MIN_ESS_PER_CHAIN = 1.01, 100


def _warn_if_unconverged(diagnostics: dict, latent: np.ndarray, kept: int) -> None:
    """Record the worst R-hat and bulk ESS of the latent draws, and warn when they, or divergences,
    say the draws are not to be trusted (a sampler's result is never silently taken as good)."""
    from ._diagnostics import ess_bulk, r_hat

    num_chains = latent.shape[0]
    worst_r_hat = float(np.nanmax(r_hat(latent))) if num_chains > 1 and kept >= 4 else float("nan")
    least_ess = float(np.nanmin(ess_bulk(latent))) if kept >= 4 else float("nan")
    diagnostics["max_r_hat"], diagnostics["min_ess_bulk"] = worst_r_hat, least_ess
    problems = []
    if worst_r_hat > MAX_R_HAT:
        problems.append(f"the chains disagree (max R-hat {worst_r_hat:.4f} > {MAX_R_HAT})")
    if least_ess < MIN_ESS_PER_CHAIN * num_chains:
        problems.append(
            f"few independent draws (min bulk ESS {least_ess:.0f} < {MIN_ESS_PER_CHAIN * num_chains})"
        )
    if diagnostics["divergences"]:
        problems.append(
            f"{diagnostics['divergences']} divergent transitions (the posterior has regions the step size "
            "cannot follow, such as a hierarchical funnel: reparametrise, e.g. non-centred, or raise "
            "target_accept)"
        )
    if problems and kept >= 4:
        warnings.warn(
            "fk.sample: do not trust these draws yet: " + "; ".join(problems) + ". Run longer chains, "
            "reparametrise (a non-centred hierarchical model), or raise target_accept.",
            SamplingWarning,
            stacklevel=3,
        )


class SamplingWarning(UserWarning):
    """The draws of `fk.sample` fail a convergence check (R-hat, effective sample size, divergences)."""


def _latent_mode(problem, parametrisation, params):
    """The params at the mode of the density of the unconstrained `z` (log-Jacobian included).

    A param held at a bound by the solve has its `z` at the edge, where that density is
    flat; the whitening built there would be far too wide. The mode of the density of `z`
    lies a finite distance inside the bound, so the chains are centred there instead.
    """
    from .._reduced import OnLatent
    from .._verdict import _value_and_grad
    from ..curvature import hessian

    objective = OnLatent(problem, parametrisation, "nll", True)
    keep = parametrisation.independent()
    z = np.asarray(parametrisation.to_latent(params), np.float64)
    value, grad = (np.asarray(a, np.float64) for a in _value_and_grad(objective, jnp.asarray(z)))
    for _ in range(MODE_STEPS):
        matrix = np.asarray(hessian(objective, jnp.asarray(z)), np.float64)[np.ix_(keep, keep)]
        g = grad[keep]
        try:
            step = -np.linalg.solve(matrix, g)
        except np.linalg.LinAlgError:
            step = -g
        if not np.all(np.isfinite(step)) or g @ step >= 0:
            step = -g
        step *= min(1.0, MAX_MOVE / max(np.max(np.abs(step)), 1e-300))
        for _ in range(40):  # backtrack until the density rises
            trial = z.copy()
            trial[keep] += step
            new_value, new_grad = (
                np.asarray(a, np.float64) for a in _value_and_grad(objective, jnp.asarray(trial))
            )
            if np.isfinite(new_value) and new_value <= value:
                break
            step *= 0.5
        else:
            break
        z, value, grad = trial, new_value, new_grad
        if np.max(np.abs(step)) < 1e-8:
            break
    return parametrisation.to_params(jnp.asarray(z, parametrisation.reference.dtype))


def sample(
    problem: Problem,
    params: Any,
    *,
    projection: Projection | str | None = None,
    num_warmup: int = 200,
    num_samples: int = 1000,
    num_chains: int = 1,
    chain_method: str | None = None,
    key: int | jax.Array = 0,
    progress: bool | None = None,
    latent_prior: dist.Distribution | None = None,
    adapt_mass: bool = False,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    target_accept: float = 0.8,
    jitter: float = 0.1,
    truncate: float | None = None,
    fixed: Any = None,
) -> Posterior:
    """Sample the posterior with NUTS in the whitened latent space around `params`.

    The params are mapped to a latent vector `u` by a `Projection` built from
    the curvature of `problem.nll` at `params` (normally the optimum), so the
    posterior in `u` is close to a unit normal: NUTS needs few leapfrog steps,
    a step size near 1 and only a short warm-up. The log-density is exactly
    `-problem.nll(projection.to_params(u))` (which includes the problem's
    priors) plus the log-Jacobian of the bounds transform, and nothing else
    unless a `latent_prior` is asked for; the linear map has a constant Jacobian.
    A posterior with a direction the data and priors leave flat (zero
    curvature at the mode) is improper: it is refused with a `ProjectionError`
    naming that direction, before anything compiles.

    Args:
        problem: the `fk.Problem`.
        params: params pytree or `FitResult` at (or near) the posterior mode.
        projection: an `fk.Projection`, or `"hessian"` (default when None) or
            `"fisher"` to build one at `params` (at the mode of the unconstrained
            density, log-Jacobian included, when free params are bounded), or
            `"identity"` for plain NUTS on the unconstrained params (for
            posteriors with no Gaussian core, such as a centred hierarchical
            funnel; pair it with `adapt_mass=True`).
        num_warmup: warm-up (adaptation) iterations per chain. The default of
            200 suffices because the latent space is already whitened.
        num_samples: draws kept per chain.
        num_chains: number of chains; they start at `u = jitter * normal`.
        chain_method: `None` (default): `"sequential"` on a CPU, where NUTS
            chains of different tree depths gain nothing from `vmap` (they
            compile faster and run faster one after another), else
            `"vectorized"`. `"vectorized"` (chains vmapped on one device),
            `"parallel"` (the chain axis sharded over every device; `num_chains`
            a multiple of the device count) or `"sequential"` (one chain after
            another in the compiled loop: least memory).
        key: an integer seed or a JAX key.
        progress: a bar of the transitions (every chain moves together), `"sample: warm-up"`
            for the first `num_warmup` then `"sample: draws"`, with the divergences after
            warm-up and the mean step size (a widget in Jupyter, text on stderr elsewhere).
            `None` (default): shown in a notebook or when stderr is a terminal; `True`:
            always; `False`: never.
        latent_prior: an auxiliary numpyro distribution on each latent coordinate, added to
            the density (default None: none, the draws follow `-problem.nll` and the
            parametrisation's log-Jacobian exactly). It changes the posterior: a
            `Normal(0, s)` on a latent coordinate whose posterior width is `w` (about 1
            at a Gaussian mode, far more on a curved ridge) shrinks that coordinate's
            variance by a factor of about `1 / (1 + w**2 / s**2)`. Use it only to keep
            a posterior proper that is not, knowing it then carries that prior.
        adapt_mass: adapt a mass matrix during warm-up. Off by default: the
            latent space is already whitened, so the identity is the right
            mass matrix, and estimating one from a short warm-up only adds
            noise (and restarts the step-size adaptation at every window).
        dense_mass: with `adapt_mass`, adapt a dense rather than diagonal mass matrix.
        max_tree_depth: NUTS's maximum tree depth.
        target_accept: target acceptance probability of step-size adaptation.
        jitter: standard deviation of the chains' starting points in latent units.
        truncate: passed to `Projection.from_fisher` when one is built here.
            Params with weight in a dropped direction are not sampled along
            it: a `TruncationWarning` names them, and `Posterior.summary`
            reports NaN for their spread instead of a spread that is too small.
        fixed: params held at their values (paths, leaves or elements; default:
            those a `FitResult` given as `params` held; params it held at a
            bound are sampled, next to it).

    With bounds declared on the problem (or priors with bounded support),
    NUTS samples the unconstrained vector `z` of the free params and the
    log-density includes `log |dx/dz|`, so a prior declared on a physical
    param means what it says (CmdStan's `jacobian=True`); the draws are
    params, inside their bounds, with fixed params constant and ties applied.
    The projection is then built from the Hessian in `z`.

    Returns:
        A `Posterior`.

    Raises:
        ValueError: bad counts, unknown chain method, a projection of the wrong size,
            or a curvature matrix with unconstrained directions (named).

    Example:
        >>> post = fk.sample(prob, res.params, num_samples=500, num_chains=2)
        >>> post.summary()
    """
    refuse_batch(problem, "fk.sample")
    # Params a solve held at a bound are sampled: the posterior has mass next to it.
    fixed = inherited_fixed(params, fixed, at_limit=False)
    params = start_params(params)
    problem.check(params)
    parametrisation = (
        problem.parametrisation(params, fixed, on_bound=True) if problem.declares(fixed) else None
    )
    if parametrisation is not None:
        params = parametrisation.complete(parametrisation.flat(params))
    num_warmup = whole(num_warmup, "num_warmup", 0)
    num_samples = whole(num_samples, "num_samples", 1)
    num_chains = whole(num_chains, "num_chains", 1)
    whole(max_tree_depth, "max_tree_depth", 1)
    if chain_method is None:
        chain_method = "sequential" if jax.default_backend() == "cpu" else "vectorized"
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"unknown chain_method {chain_method!r}; choose one of {CHAIN_METHODS}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")
    center = _inside(parametrisation, params)
    if parametrisation is not None and (
        _at_edge(parametrisation, params) or _has_bounded_free(parametrisation)
    ):
        # The chains sample the density of z (log-Jacobian included), whose mode differs from the
        # params' mode wherever a free param is bounded; near a bound (a hierarchical scale at 0)
        # the two are far apart, and a whitening built at the params' mode would be far too narrow.
        center = _latent_mode(problem, parametrisation, center)
    try:
        proj = resolve_projection(
            problem,
            center,
            "hessian" if projection is None else projection,
            truncate,
            parametrisation=parametrisation,
            jacobian=True,
        )
    except ProjectionError as err:
        raise type(err)(
            f"{err}\nfk.sample whitens the posterior with its curvature at a mode; where the posterior has "
            "no Gaussian core (a centred hierarchical model's funnel: theta ~ Normal(mu, tau) with tau "
            "free), reparametrise it non-centred (eta ~ Normal(0, 1), ties={'theta': lambda p: p['mu'] "
            "+ p['tau'] * p['eta']}), or sample without whitening: projection='identity', adapt_mass=True"
        ) from err
    if proj.unsampled:
        warnings.warn(
            f"the projection drops {len(proj.dropped)} direction(s) ({'; '.join(proj.dropped)}), so "
            f"{', '.join(proj.unsampled)} stay at the center along them: their posterior spread is not "
            "sampled and Posterior.summary reports NaN for it. Fix or remove these params, or add a prior.",
            TruncationWarning,
            stacklevel=2,
        )
    if latent_prior is not None and not hasattr(latent_prior, "log_prob"):
        raise TypeError("latent_prior must be a numpyro distribution")
    devices = jax.devices()
    if chain_method == "parallel" and num_chains % len(devices):
        raise ValueError(
            f"chain_method='parallel' spreads the chains over the {len(devices)} devices: give num_chains "
            f"as a multiple of {len(devices)}, or use chain_method='vectorized'"
        )

    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    init_key, chain_key = jax.random.split(key)
    u0 = _safe_starts(problem, proj, latent_prior, init_key, num_chains, jitter)
    keys = jax.random.split(chain_key, num_chains)
    if chain_method == "parallel":
        chains = NamedSharding(Mesh(np.array(devices), ("chain",)), PartitionSpec("chain"))
        u0, keys = jax.device_put(u0, chains), jax.device_put(keys, chains)
    stepper = NutsStepper(
        num_warmup=num_warmup,
        adapt_mass=bool(adapt_mass),
        dense_mass=bool(dense_mass),
        max_tree_depth=int(max_tree_depth),
        target_accept=float(target_accept),
        sequential=chain_method == "sequential",
    )
    total = num_warmup + num_samples
    phase = "sample: warm-up" if num_warmup else "sample: draws"
    with Progress(total, progress, description=phase, unit="it") as bar:
        divergences = 0

        def on_chunk(carry, rows, done):
            nonlocal divergences
            count = len(rows["num_steps"])
            drawn = min(count, max(done - num_warmup, 0))  # the chunk's last `drawn` rows are draws
            if drawn:
                divergences += int(np.sum(rows["diverging"][count - drawn :]))
            if done >= num_warmup:
                bar.describe("sample: draws")
            step_size = float(np.mean(rows["step_size"][-1])) if count else float("nan")
            bar.advance(count, divergences=divergences, step_size=step_size)
            return False

        out = run(stepper, (u0, keys), (problem, proj, latent_prior), max_steps=total, on_chunk=on_chunk)
    rows = out.history
    done = out.steps
    kept = max(done - num_warmup, 0)
    if out.interrupted:
        warnings.warn(
            f"sampling was interrupted (Ctrl-C) after {done} of {total} transitions: the posterior holds the "
            f"{kept} draws made after warm-up"
            + ("" if done > num_warmup else " (none: warm-up had not finished)"),
            UserWarning,
            stacklevel=2,
        )
    warm = {k: np.asarray(v[:num_warmup]) for k, v in rows.items() if k != "z"} if done else {}
    # rows are (transition, chain, ...); a Posterior holds (chain, draw, ...)
    latent = (
        np.swapaxes(np.asarray(rows["z"][num_warmup:]), 0, 1) if done else np.zeros((num_chains, 0, proj.dim))
    )
    fields = {k: np.swapaxes(np.asarray(v[num_warmup:]), 0, 1) for k, v in rows.items() if k != "z"}
    warm_steps = int(np.sum(warm["num_steps"])) if warm else 0
    warm_divergences = int(np.sum(warm["diverging"])) if warm else 0
    flat_latent = jnp.asarray(latent.reshape(-1, proj.dim))
    draws = _to_params(proj, flat_latent)
    samples = jax.tree.map(lambda x: np.asarray(x).reshape(latent.shape[:2] + x.shape[1:]), draws)
    num_steps = fields["num_steps"] if done else np.zeros((num_chains, 0), int)
    last_step_size = np.asarray(rows["step_size"][-1]) if done else np.ones(num_chains)
    diagnostics = {
        "divergences": int(fields["diverging"].sum()) if done else 0,
        "warmup_divergences": warm_divergences,
        "diverging": fields["diverging"] if done else np.zeros((num_chains, 0), bool),
        "accept_prob": float(fields["accept_prob"].mean()) if kept else float("nan"),
        "step_size": last_step_size,
        "num_steps": num_steps,
        "mean_num_steps": float(num_steps.mean()) if kept else float("nan"),
        "tree_depth": float(np.log2(num_steps + 1).mean()) if kept else float("nan"),
        "grad_evals": warm_steps + int(num_steps.sum()),
        "warmup_grad_evals": warm_steps,
        "wall_time": out.wall_time + out.compile_time,
        "compile_time": out.compile_time,
        "interrupted": bool(out.interrupted),
    }
    config = {
        "num_warmup": num_warmup,
        "num_samples": num_samples,
        "num_chains": num_chains,
        "chain_method": chain_method,
        "adapt_mass": bool(adapt_mass),
        "dense_mass": bool(dense_mass),
        "max_tree_depth": int(max_tree_depth),
        "target_accept": float(target_accept),
        "jitter": float(jitter),
        "latent_prior": repr(latent_prior) if latent_prior is not None else "none",
        "latent_dim": proj.dim,
        "dropped_directions": list(proj.dropped),
        "unsampled_params": list(proj.unsampled),
    }
    _warn_if_unconverged(diagnostics, latent, kept)
    return Posterior(
        samples=samples,
        latent=latent,
        names=tuple(tree.names(params)),
        diagnostics=diagnostics,
        config=config,
        projection=proj,
    )
