"""The sum-of-Gaussians model of the zodiax tutorial, and its data generator."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from ..module import Module
from ..observation import Observation
from ..problem import Problem

__all__ = ["Gaussians", "Curve", "TRUTH", "make_problem", "initial_params"]

TRUTH = {"mean": [2.0, -3.0], "std": [0.5, 2.0], "power": [1.5, 1.0]}


class Gaussians(Module):
    """A sum of Gaussian profiles `g(x)**power` on a fixed 1-D grid `xs`.

    Each profile is `exp(-(x - mean)^2 / (2 std^2)) / (std sqrt(2 pi))` raised
    to its `power`. Call the model with a params dict (`mean`, `std`, `power`,
    any subset) to evaluate it with those values in place of its own.

    Example:
        >>> model = Gaussians(mean=[2, -3], std=[0.5, 2], power=[1.5, 1])
        >>> model().shape
        (500,)
    """

    mean: Float[Array, " k"]
    std: Float[Array, " k"]
    power: Float[Array, " k"]
    xs: Float[Array, " n"]

    def __init__(self, mean, std, power, width: float = 10.0, nsamples: int = 500):
        self.mean = jnp.asarray(mean, float)
        self.std = jnp.asarray(std, float)
        self.power = jnp.asarray(power, float)
        if not (self.mean.shape == self.std.shape == self.power.shape):
            raise ValueError(
                f"mean, std and power must have the same shape, got {self.mean.shape}, "
                f"{self.std.shape} and {self.power.shape}"
            )
        self.xs = jnp.linspace(-width, width, nsamples)

    @staticmethod
    def profile(x, mean, std, power):
        """One Gaussian profile raised to `power`, evaluated at `x`."""
        norm = 1.0 / (std * math.sqrt(2.0 * math.pi))
        return norm * jnp.exp(-0.5 * jnp.square((x - mean) / std)) ** power

    def __call__(self, params: dict[str, Any] | None = None) -> Float[Array, " n"]:
        model = self if not params else self.set(list(params), list(params.values()))
        mean, std, power = (jnp.atleast_1d(v) for v in (model.mean, model.std, model.power))
        curves = jax.vmap(lambda m, s, p: self.profile(self.xs, m, s, p))(mean, std, power)
        return curves.sum(axis=0)


class Curve(Observation):
    """A curve measured on the model's grid: the prediction is `model(params)`."""

    def predict(self, params, model):
        return model(params)


def initial_params(model: Gaussians, seed: int = 1) -> dict[str, Array]:
    """The tutorial's starting guess: each true value plus a uniform draw in [0, 1)."""
    keys = jr.split(jr.key(seed), 3)
    return {
        name: jr.uniform(key, getattr(model, name).shape) + getattr(model, name)
        for name, key in zip(("mean", "std", "power"), keys)
    }


def make_problem(seed: int = 0, error: float = 0.05, truth: dict | None = None, **kwargs):
    """The tutorial's problem: the true curve plus Gaussian noise of std `error`.

    Args:
        seed: key of the noise draw (the tutorial uses 0).
        error: standard deviation of the noise.
        truth: true `mean`, `std`, `power` (default: the tutorial's).
        **kwargs: passed to `Gaussians` (`width`, `nsamples`).

    Returns:
        `(problem, true_params, initial_params)`: the `Problem`, the true params
        dict, and the tutorial's starting guess (drawn with key 1).
    """
    truth = dict(TRUTH if truth is None else truth)
    model = Gaussians(**truth, **kwargs)
    clean = model()
    data = clean + error * jr.normal(jr.key(seed), clean.shape)
    problem = Problem(model, Curve(data=data, error=jnp.full(data.shape, error)))
    true_params = {name: getattr(model, name) for name in ("mean", "std", "power")}
    return problem, true_params, initial_params(model)
