"""The one-line summary of each class: the first line of its text display (and its short repr)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["result_line", "covariance_line", "posterior_line", "intervals_line", "analysis_line"]


def result_line(result: Any) -> str:
    """`FitResult(<method>: valid | NOT VALID (flags), loss=..., edm=..., steps=..., time)`.

    The message is left out: the display's `reason` cell holds it.
    """
    state = "valid" if result.valid else "NOT VALID (" + ", ".join(result.flags or ("unchecked",)) + ")"
    return (
        f"FitResult({result.method or 'fit'}: {state}, loss={float(result.loss):.6g}, "
        f"edm={float(result.edm):.3g}, steps={result.steps}, {float(result.wall_time):.3g}s)"
    )


def covariance_line(cov: Any) -> str:
    """`Covariance(<method>: n params; std a=..., ...)`, with what is dropped, scaled, fixed or at a bound."""
    shown = ", ".join(f"{n}={s:.3g}" for n, s in zip(cov.names[:6], np.asarray(cov.flat_std)))
    more = ", ..." if cov.size > 6 else ""
    extra = f", {len(cov.dropped)} dropped directions" if cov.dropped else ""
    extra += f", scaled by {cov.scale:.6g}" if cov.scale != 1.0 else ""
    extra += f", fixed: {', '.join(cov.fixed)}" if cov.fixed else ""
    extra += f", at a bound: {', '.join(cov.at_limit)}" if cov.at_limit else ""
    return f"Covariance({cov.method or 'matrix'}: {cov.size} params; std {shown}{more}{extra})"


def posterior_line(post: Any) -> str:
    """`Posterior(chains x draws of n params; divergences=..., mean leapfrog steps=...)`."""
    d = post.diagnostics
    return (
        f"Posterior({post.num_chains} chain(s) x {post.num_draws} draws of {len(post.names)} params; "
        f"divergences={d.get('divergences')}, mean leapfrog steps={d.get('mean_num_steps', float('nan')):.3g})"
    )


def intervals_line(iv: Any) -> str:
    """`Intervals(cl=..., valid | NOT VALID: messages; name: value -minus +plus, ...)`."""
    minus, plus = iv.errors
    rows = ", ".join(f"{n}: {v:.6g} -{m:.3g} +{p:.3g}" for n, v, m, p in zip(iv.names, iv.value, minus, plus))
    state = "valid" if iv.valid else "NOT VALID: " + "; ".join(iv.messages)
    return f"Intervals(cl={iv.cl:.4g}, {state}; {rows})"


def analysis_line(analysis: Any) -> str:
    """`Analysis(stages run; verdict of the last fit)`."""
    stages = [
        name
        for name, value in (
            ("fit", analysis.fit),
            ("solve", analysis.solve),
            ("covariance", analysis.covariance),
            ("posterior", analysis.posterior),
            ("intervals", analysis.intervals),
        )
        if value is not None
    ]
    stage = analysis.solve or analysis.fit
    verdict = ""
    if stage is not None:
        verdict = (
            "; valid" if stage.valid else "; NOT VALID (" + ", ".join(stage.flags or ("unchecked",)) + ")"
        )
    return f"Analysis({', '.join(stages) or 'no stages'}{verdict})"
