"""Convergence diagnostics of MCMC draws, built on numpyro's ESS and split R-hat."""

from __future__ import annotations

import numpy as np
from jax.scipy.special import ndtri
from jaxtyping import Float
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

__all__ = ["ess_bulk", "ess_tail", "r_hat", "summary_frame"]


def _rank_normalise(draws: np.ndarray) -> np.ndarray:
    """Replace draws by normal quantiles of their pooled ranks (Vehtari et al. 2021)."""
    chains, n = draws.shape[:2]
    flat = draws.reshape(chains * n, -1)
    ranks = np.argsort(np.argsort(flat, axis=0, kind="stable"), axis=0) + 1.0
    z = np.asarray(ndtri((ranks - 0.375) / (chains * n + 0.25)))
    return z.reshape(draws.shape)


def ess_bulk(draws: Float[np.ndarray, "chain draw *p"]) -> np.ndarray:
    """Bulk effective sample size: numpyro's ESS of the rank-normalised draws."""
    return np.asarray(effective_sample_size(_rank_normalise(np.asarray(draws))))


def ess_tail(draws: Float[np.ndarray, "chain draw *p"]) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the 5% and 95% quantile indicators."""
    draws = np.asarray(draws)
    lower = np.quantile(draws, 0.05, axis=(0, 1))
    upper = np.quantile(draws, 0.95, axis=(0, 1))
    ess_low = effective_sample_size((draws <= lower).astype(float))
    ess_high = effective_sample_size((draws >= upper).astype(float))
    return np.minimum(np.asarray(ess_low), np.asarray(ess_high))


def r_hat(draws: Float[np.ndarray, "chain draw *p"]) -> np.ndarray:
    """Split R-hat (numpyro's); NaN-free for a single chain, as each chain is split in two."""
    return np.asarray(split_gelman_rubin(np.asarray(draws)))


def summary_frame(draws: Float[np.ndarray, "chain draw p"], names: list[str], prob: float = 0.9):
    """A pandas DataFrame, one row per parameter: mean, std, median, quantiles, ESS, R-hat."""
    import pandas as pd

    draws = np.asarray(draws)
    pooled = draws.reshape(-1, draws.shape[-1])
    low, high = (1 - prob) / 2, 1 - (1 - prob) / 2
    # A fixed param is constant in every draw: it has no ESS or R-hat (NaN), and no warning.
    constant = np.all(pooled == pooled[:1], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        chain_stats = {"ess_bulk": ess_bulk(draws), "ess_tail": ess_tail(draws), "r_hat": r_hat(draws)}
    chain_stats = {k: np.where(constant, np.nan, v) for k, v in chain_stats.items()}
    return pd.DataFrame(
        {
            "mean": pooled.mean(0),
            "std": pooled.std(0, ddof=1),
            "median": np.median(pooled, 0),
            f"q{100 * low:g}": np.quantile(pooled, low, axis=0),
            f"q{100 * high:g}": np.quantile(pooled, high, axis=0),
            **chain_stats,
        },
        index=pd.Index(names, name="param"),
    )
