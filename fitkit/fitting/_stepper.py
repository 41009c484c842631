"""optax as a stepper of the one loop (`fitkit._loop`): per-path optimisers, the Stopper, the NaN policies."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._loop import RUNNING, Step, Stepper
from ._nan import nonfinite_leaves, zero_nonfinite

__all__ = ["OptaxStepper", "Identity", "STOPPED_CODE", "NONFINITE_CODE"]

STOPPED_CODE, NONFINITE_CODE = 1, 3


class Identity(eqx.Module):
    """The latent map of a fit in the params themselves."""

    def to_params(self, x: Any) -> Any:
        return x

    def to_latent(self, params: Any) -> Any:
        return params


def _select(condition, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


class OptaxStepper(Stepper):
    """One optax update per loop step on `problem.loss(latent.to_params(x))`.

    `args` is `(problem, validation, subs, batches)`: the problem, the
    validation problem (or None), the per-observation sub-problems and the
    mini-batch schedule (or None). The stopper's patience is the termination;
    the loop keeps the point with the lowest monitored loss (the validation
    loss when there is one).

    Attributes:
        optimiser: the optax transformation (per-path optimisers already combined).
        stopper: the `fk.Stopper`.
        latent: the map from the optimised pytree `x` to params.
        nan: `"raise"`, `"skip"` or `"zero"`.
        trainable: per leaf of `x`, whether an optimiser updates it.
        stacked: the observations are stacked, so a mini-batch is one vmapped take.
        counts: used points per observation (for mini-batch losses).
        record_params: put the params of every step in the history rows.
    """

    optimiser: optax.GradientTransformation
    stopper: Any
    latent: Any
    nan: str = eqx.field(static=True)
    trainable: tuple[bool, ...] = eqx.field(static=True)
    stacked: bool = eqx.field(static=True)
    counts: tuple[int, ...] = eqx.field(static=True)
    record_params: bool = eqx.field(static=True)

    def _objective(self, x, args, step):
        problem, _, subs, batches = args
        params = self.latent.to_params(x)
        if batches is None:
            return problem.loss(params)
        indices, weights = batches(step)
        if self.stacked:
            chi2 = jax.vmap(lambda i: problem.take(i[None]).chi2(params))(indices)
        else:
            # lax.switch runs one observation's branch per batch slot.
            branches = [lambda p, s=s: s.chi2(p) for s in subs]
            chi2 = jax.lax.map(lambda i: jax.lax.switch(i, branches, params), indices)
        return jnp.sum(weights * chi2) / jnp.sum(weights * jnp.asarray(self.counts)[indices])

    def init(self, x0, args):
        loss_dtype = jax.eval_shape(args[0].loss, self.latent.to_params(x0)).dtype
        return {
            "opt": self.optimiser.init(x0),
            "stopper": self.stopper.init(loss_dtype),
            "step": jnp.asarray(0, jnp.int32),
            "bad_leaves": jnp.zeros(len(self.trainable), bool),
            "loss_finite": jnp.asarray(True),
        }

    def loss_dtype(self, x0, args):
        return jax.eval_shape(args[0].loss, self.latent.to_params(x0)).dtype

    def row_spec(self, x0, args) -> dict:
        scalar = jax.ShapeDtypeStruct((), self.loss_dtype(x0, args))
        spec = {"loss": scalar, "grad_norm": scalar}
        if args[1] is not None:
            spec["validation_loss"] = scalar
        if self.record_params:
            spec["params"] = jax.eval_shape(self.latent.to_params, x0)
        return spec

    def step(self, x, state, args) -> Step:
        problem, validation, _, _ = args
        loss, grads = eqx.filter_value_and_grad(self._objective)(x, args, state["step"])
        bad = nonfinite_leaves(grads, list(self.trainable))
        loss_finite = jnp.isfinite(loss)
        broken = jnp.any(bad) | ~loss_finite
        if self.nan == "zero":
            grads = zero_nonfinite(grads)
        updates, opt_state = self.optimiser.update(grads, state["opt"], x)
        x_new = optax.apply_updates(x, updates)
        if self.nan != "zero":
            x_new = _select(broken, x, x_new)
            opt_state = _select(broken, state["opt"], opt_state)
        monitored = loss if validation is None else validation.loss(self.latent.to_params(x))
        stopper = self.stopper.update(state["stopper"], state["step"], monitored)
        failed = broken if self.nan == "raise" else jnp.asarray(False)
        code = jnp.where(failed, NONFINITE_CODE, jnp.where(stopper.stopped, STOPPED_CODE, RUNNING))
        row = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        if validation is not None:
            row["validation_loss"] = monitored
        if self.record_params:
            row["params"] = self.latent.to_params(x)
        new_state = {
            "opt": opt_state,
            "stopper": stopper,
            "step": state["step"] + 1,
            "bad_leaves": bad,
            "loss_finite": loss_finite,
        }
        # A failed step leaves x where it was; the loop then stops on the code.
        return Step(y=x_new, state=new_state, point=x, loss=monitored, row=row, code=code)


def finish(stepper: OptaxStepper, x, best, args):
    """The params to return and their training loss: the best point seen or the last, whichever is lower."""
    problem, validation, _, _ = args
    to_params = stepper.latent.to_params
    if not stepper.stopper.restore_best:
        return to_params(x), problem.loss(to_params(x))
    judge = problem if validation is None else validation
    last, low = judge.loss(to_params(x)), judge.loss(to_params(best))
    use_last = (last < low) | ~jnp.isfinite(low)  # the last also when no finite loss was seen
    params = to_params(_select(use_last, x, best))
    loss = jnp.where(use_last, last, low) if validation is None else problem.loss(params)
    return params, loss


__all__ += ["finish"]
