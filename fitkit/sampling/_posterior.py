"""Posterior: draws in parameter space, their latent values and sampler diagnostics."""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .. import _io, tree
from ._diagnostics import summary_frame

__all__ = ["Posterior"]


class Posterior(eqx.Module):
    """Posterior draws from `fk.sample`, with diagnostics and exports.

    Attributes:
        samples: the params pytree with leading `(chain, draw)` axes.
        latent: the whitened latent draws, shape `(chain, draw, dim)`.
        names: flat parameter names (`position.blue[0]`, ...), in ravel order.
        diagnostics: sampler statistics: `divergences` (after warm-up),
            `warmup_divergences`, `accept_prob` (mean), `step_size` (per chain),
            `num_steps` (leapfrog steps per draw, `(chain, draw)`),
            `mean_num_steps`, `tree_depth` (mean), `grad_evals` (warm-up plus
            sampling), `warmup_grad_evals`, `wall_time` (seconds, compilation
            included).
        config: the settings the sampler ran with (for the record and the CSV header).
        projection: the `fk.Projection` from latent to params (None after `load`).

    Example:
        >>> post = fk.sample(prob, res.params, num_samples=1000, num_chains=2)
        >>> post.summary()[["mean", "std", "r_hat"]]
    """

    samples: Any
    latent: np.ndarray
    names: tuple[str, ...]
    diagnostics: dict
    config: dict
    projection: Any = None

    @property
    def num_chains(self) -> int:
        """Number of chains."""
        return int(self.latent.shape[0])

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        return int(self.latent.shape[1])

    def flat(self) -> np.ndarray:
        """The draws as one array `(chain, draw, n_params)` in `names` order."""
        chains, draws = self.num_chains, self.num_draws
        leaves = [np.reshape(np.asarray(x), (chains, draws, -1)) for x in jax.tree.leaves(self.samples)]
        return np.concatenate(leaves, axis=-1)

    @property
    def unsampled(self) -> tuple[str, ...]:
        """Params a truncated projection held at its center along a dropped direction."""
        return tuple(self.config.get("unsampled_params", ()))

    def summary(self, prob: float = 0.9):
        """A DataFrame per flat param: mean, std, median, central `prob` interval, ESS bulk/tail, R-hat.

        Params in `unsampled` get NaN for their std, interval, ESS and R-hat:
        the draws did not explore them fully, so any spread would be too small.
        """
        if not self.unsampled:
            return summary_frame(self.flat(), list(self.names), prob)
        with np.errstate(invalid="ignore", divide="ignore"):  # the ESS of a constant draw is 0/0
            frame = summary_frame(self.flat(), list(self.names), prob)
        spread = [c for c in frame.columns if c not in ("mean", "median")]
        frame.loc[list(self.unsampled), spread] = np.nan
        return frame

    def to_dataframe(self):
        """Every draw as a row: `chain`, `draw`, then one column per flat param name."""
        import pandas as pd

        flat = self.flat()
        chains, draws = np.meshgrid(np.arange(self.num_chains), np.arange(self.num_draws), indexing="ij")
        frame = pd.DataFrame(flat.reshape(-1, flat.shape[-1]), columns=list(self.names))
        frame.insert(0, "draw", draws.ravel())
        frame.insert(0, "chain", chains.ravel())
        return frame

    def to_arviz(self):
        """An ArviZ `InferenceData`: one variable per leaf path, sample stats from the sampler.

        Raises:
            ImportError: ArviZ is not installed (`pip install "fitkit[arviz]"`).
        """
        try:
            import arviz as az
        except ImportError as err:
            raise ImportError('to_arviz needs ArviZ: pip install "fitkit[arviz]"') from err
        posterior = {
            path: np.asarray(leaf)
            for path, leaf in zip(tree.leaf_paths(self.samples), jax.tree.leaves(self.samples))
        }
        stats = {}
        if "num_steps" in self.diagnostics:
            stats["n_steps"] = np.asarray(self.diagnostics["num_steps"])
        if "diverging" in self.diagnostics:
            stats["diverging"] = np.asarray(self.diagnostics["diverging"])
        return az.from_dict(posterior=posterior, sample_stats=stats or None)

    def save(self, path: str | os.PathLike) -> None:
        """Write draws, latent draws, diagnostics and config to one `.npz` file."""
        _io.save_npz(
            path,
            {
                "samples": self.samples,
                "latent": np.asarray(self.latent),
                "names": list(self.names),
                "diagnostics": {
                    k: (np.asarray(v) if not np.isscalar(v) else v) for k, v in self.diagnostics.items()
                },
                "config": self.config,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Posterior:
        """Read a posterior written by `save` (without its projection).

        Raises:
            FitKitFileError: the file is truncated, corrupted, or not a saved
                `Posterior` (the message names the path and what is wrong).
        """
        fields = _io.load_npz(path, kind="Posterior")
        fields["names"] = tuple(fields["names"])
        known = ("samples", "latent", "names", "diagnostics", "config")
        extra = [k for k in fields if k not in known]
        if extra:
            raise _io.FitKitFileError(
                f"cannot load {fields.where} as a Posterior: it has unexpected fields {extra}"
            )
        return cls(**fields)

    def __repr__(self) -> str:
        """A summary line, the sampler's validity box (divergences, R-hat, ESS) and the posterior table."""
        from .. import display

        return display.text(self)

    def _repr_html_(self) -> str:
        """The notebook display (`fitkit.display`): the same cells as the text, coloured."""
        from .. import display

        return display.html(self)
