"""NUTS (numpyro's kernel) as a stepper of the one loop: one transition of every chain per step.

numpyro's functional `hmc(potential_fn_gen=...)` takes the model's arrays as
arguments of every transition, so the compiled loop is shared by calls with
new data or a new centre; the warm-up schedule is part of the state (`i`
counts transitions, adaptation stops after `num_warmup`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from numpyro.infer.hmc import hmc

from .._loop import RUNNING, Step, Stepper

__all__ = ["NutsStepper", "potential"]


def potential(problem, projection, prior=None):
    """The potential NUTS moves on: `-log p(u)`, the problem's posterior in the latent vector `u`.

    `problem.nll(projection.to_params(u)) - log |d params / du|` and, only when a
    `latent_prior` was asked for, minus its log-density: nothing else changes the
    density sampled. The linear whitening has a constant Jacobian, left out.
    """

    def energy(u):
        # The log-Jacobian of the bounds makes a prior on the physical params mean what it says.
        value = problem.nll(projection.to_params(u)) - projection.log_det_jacobian(u)
        return value if prior is None else value - jnp.sum(prior.log_prob(u))

    return energy


class NutsStepper(Stepper):
    """Every chain's next NUTS transition (warm-up first) per loop step.

    `y` is `(z, keys)`: the chains' latent positions `(chains, dim)` and their
    starting keys; `args` is `(problem, projection, prior)`.

    Attributes:
        num_warmup: transitions that adapt the step size (and mass matrix).
        adapt_mass, dense_mass, max_tree_depth, target_accept: NUTS settings.
        sequential: run the chains one after another (`lax.map`) instead of `vmap`.
    """

    num_warmup: int = eqx.field(static=True)
    adapt_mass: bool = eqx.field(static=True)
    dense_mass: bool = eqx.field(static=True)
    max_tree_depth: int = eqx.field(static=True)
    target_accept: float = eqx.field(static=True)
    sequential: bool = eqx.field(static=True)

    def _kernels(self, z, key, args):
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential, algo="NUTS")
        # init_kernel also sets the kernel's warm-up schedule, which sample_kernel reads.
        state = init_kernel(
            z,
            self.num_warmup,
            step_size=1.0,
            adapt_mass_matrix=self.adapt_mass,
            dense_mass=self.dense_mass,
            target_accept_prob=self.target_accept,
            max_tree_depth=self.max_tree_depth,
            model_args=args,
            rng_key=key,
        )
        return state, sample_kernel

    def _map(self, fn, *xs):
        if self.sequential:
            return jax.lax.map(lambda x: fn(*x), xs)
        return jax.vmap(fn)(*xs)

    def init(self, y0, args):
        z, keys = y0
        return self._map(lambda zi, ki: self._kernels(zi, ki, args)[0], z, keys)

    def row_spec(self, y0, args) -> dict:
        z, _ = y0
        chains = jax.ShapeDtypeStruct(z.shape[:1], z.dtype)
        return {
            "z": jax.ShapeDtypeStruct(z.shape, z.dtype),
            "diverging": jax.ShapeDtypeStruct(z.shape[:1], jnp.bool_),
            "num_steps": jax.ShapeDtypeStruct(z.shape[:1], jnp.int32),
            "accept_prob": chains,
            "step_size": chains,
        }

    def step(self, y, state, args) -> Step:
        z, keys = y

        def transition(chain_state, key):
            _, sample_kernel = self._kernels(chain_state.z, key, args)
            return sample_kernel(chain_state, model_args=args)

        state = self._map(transition, state, keys)
        row = {
            "z": state.z,
            "diverging": state.diverging,
            "num_steps": state.num_steps,
            "accept_prob": state.accept_prob,
            "step_size": state.adapt_state.step_size,
        }
        energy = jnp.mean(state.potential_energy)
        return Step(
            y=(state.z, keys),
            state=state,
            point=(state.z, keys),
            loss=energy,
            row=row,
            code=jnp.asarray(RUNNING, jnp.int32),
        )
