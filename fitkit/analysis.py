"""fk.analyse: fit, polish, error bars and posterior samples in one call, with a report."""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import time
import warnings
from typing import Any

import equinox as eqx
import numpy as np
import optax

from . import display, plot, tree
from ._checks import refuse_batch, whole
from ._progress import Progress
from .curvature import Covariance, CurvatureError, covariance
from .curvature._blocks import check_batch_size, memory_budget
from .curvature._engine import METHODS as COVARIANCE_METHODS
from .display import fit_report
from .fitting import fit as fit_engine
from .fitting._nan import NAN_POLICIES
from .fitting._optimisers import map_optimisers
from .problem import Problem
from .projection import CURVATURES, Projection
from .results import FitResult, start_params
from .sampling import Posterior
from .sampling import sample as sample_engine
from .sampling._nuts import CHAIN_METHODS
from .solving import solve as solve_engine
from .solving._methods import resolve as resolve_method

__all__ = ["analyse", "Analysis", "DEFAULTS"]

# Stage defaults, chosen on the hierarchical optics example (docs/performance.md):
# natural gradient needs one learning rate for every param (0.1 with the Fisher
# refreshed every 10 steps reaches the optimum on both examples, where a fixed
# Fisher and 0.2 diverges on the Gaussians); L-BFGS in the Fisher
# eigen-projected space then converges in about 25 steps; whitened NUTS needs
# only a short warm-up.
DEFAULTS: dict[str, dict[str, Any]] = {
    "fit": {
        "optimisers": optax.sgd(0.1, momentum=0.5),
        "steps": 100,
        "precondition": "fisher",
        "refresh_every": 10,
    },
    "solve": {"method": "lbfgs", "projection": "fisher", "rtol": 1e-8, "atol": 1e-8, "max_steps": 500},
    "uncertainty": {"method": "hessian"},
    "sample": {"num_warmup": 200, "num_samples": 1000, "num_chains": 2},
    "intervals": {},
}
SMALL = 64  # up to this many params the Hessian is one block: no memory planning (saves compiles)
FAR = 10.0  # warm-start with the first-order stage when the starting chi2r exceeds this


def _stage_options(name: str, value: Any) -> dict | None:
    """The keyword arguments of a stage, or None when it is skipped."""
    if value is False:
        return None
    if value is None or value is True:
        return dict(DEFAULTS[name])
    if isinstance(value, dict):
        return {**DEFAULTS[name], **value}
    raise TypeError(f"{name}= must be None (defaults), False (skip), True or a dict of keyword arguments")


def _fail(stage: str, err: Exception) -> Exception:
    """`err` re-raised with the stage it belongs to, keeping its class (a ValueError stays one)."""
    kind = type(err)
    try:
        return kind(f"analyse({stage}=...): {err}")
    except Exception:  # noqa: BLE001 - an error class with another constructor
        return ValueError(f"analyse({stage}=...): {err}")


def _known_options(stage: str, engine, options: dict, open_ended: bool = False) -> None:
    """Every option of `stage` must be a keyword of its `engine` (unless it takes `**options`)."""
    names = [n for n in inspect.signature(engine).parameters if n not in ("problem", "params")]
    unknown = sorted(k for k in options if k not in names)
    if unknown and not open_ended:
        raise TypeError(
            f"analyse({stage}=...): {unknown} are not options of fk.{engine.__name__}; "
            f"its options are: {', '.join(n for n in names if n != 'progress')}"
        )
    if "progress" in options:
        raise TypeError(f"analyse({stage}=...): give progress= to fk.analyse, not inside {stage}=")


def _optional_whole(options: dict, name: str, minimum: int = 1) -> None:
    if options.get(name) is not None:
        whole(options[name], name, minimum)


def _check_curvature_name(value: Any, name: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, Projection):
        return
    if not isinstance(value, str) or value not in CURVATURES:
        raise ValueError(f"{name}={value!r} is not understood; give an fk.Projection or one of {CURVATURES}")


def _check_stages(start: Any, options: dict[str, dict | None]) -> None:
    """Check every stage's options before the first stage runs: a typo must not cost a whole fit.

    Raises:
        TypeError, ValueError: naming the stage and the option to fix.
    """
    checks = {"fit": _check_fit, "solve": _check_solve, "uncertainty": _check_uncertainty}
    checks["sample"] = _check_sample
    checks["intervals"] = _check_intervals
    for stage, check in checks.items():
        if options[stage] is None:
            continue
        try:
            check(start, options[stage])
        except (TypeError, ValueError) as err:
            raise _fail(stage, err) from err


def _check_fit(start: Any, options: dict) -> None:
    _known_options("fit", fit_engine, options)
    if "optimisers" not in options:
        raise TypeError("give optimisers (an optax transformation such as optax.sgd(0.1))")
    if options.get("steps") is None and options.get("stopper") is None:
        raise ValueError("give the number of steps, e.g. fit={'steps': 100}")
    _optional_whole(options, "steps")
    for name in ("history_every", "chunk_size", "batch_size", "refresh_every"):
        _optional_whole(options, name)
    if options.get("nan", "raise") not in NAN_POLICIES:
        raise ValueError(f"nan={options['nan']!r} is not a policy; choose one of {NAN_POLICIES}")
    precondition, projection = options.get("precondition"), options.get("projection")
    if isinstance(precondition, str):
        _check_curvature_name(precondition, "precondition")
    _check_curvature_name(projection, "projection")
    if projection is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            map_optimisers(start, options["optimisers"])
    elif isinstance(options["optimisers"], dict):
        raise ValueError("with projection=..., give one optax optimiser, not a dict of them")


def _check_solve(start: Any, options: dict) -> None:
    _known_options("solve", solve_engine, options, open_ended=True)
    names = inspect.signature(solve_engine).parameters
    solver_options = {k: v for k, v in options.items() if k not in names}
    method = options.get("method", names["method"].default)
    rtol = options.get("rtol", names["rtol"].default)
    atol = options.get("atol", names["atol"].default)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    _optional_whole(options, "max_steps")
    _optional_whole(options, "log_every")
    _check_curvature_name(options.get("projection"), "projection")
    resolve_method(method, rtol, atol, solver_options)  # builds the solver object only: nothing compiles


def _check_uncertainty(start: Any, options: dict) -> None:
    _known_options("uncertainty", covariance, options)
    method = options.get("method", "hessian")
    if method not in COVARIANCE_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {COVARIANCE_METHODS}")
    check_batch_size(options.get("batch_size"), tree.size(start))
    if options.get("max_memory") is not None:
        memory_budget(options["max_memory"])
    regularise = options.get("regularise")
    if regularise is not None and (
        not isinstance(regularise, (bool, int, float))
        or (not isinstance(regularise, bool) and regularise < 0)
    ):
        raise ValueError(f"regularise must be None, True, or a non-negative float, got {regularise!r}")


def _check_sample(start: Any, options: dict) -> None:
    _known_options("sample", sample_engine, options)
    _optional_whole(options, "num_warmup", 0)
    _optional_whole(options, "num_samples")
    _optional_whole(options, "num_chains")
    _optional_whole(options, "max_tree_depth")
    if options.get("chain_method", "sequential") not in CHAIN_METHODS:
        raise ValueError(f"unknown chain_method {options['chain_method']!r}; choose one of {CHAIN_METHODS}")
    target = options.get("target_accept", 0.8)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target!r}")
    _check_curvature_name(options.get("projection"), "projection")


def _check_intervals(start: Any, options: dict) -> None:
    from .profiles import intervals as intervals_engine
    from .profiles import threshold

    _known_options("intervals", intervals_engine, options)
    threshold(options.get("cl"), options.get("sigma"))


def _chi2r(problem: Problem, params: Any) -> float | None:
    """The reduced chi-squared, or None where it is undefined (no more data points than params)."""
    return float(problem.chi2r(params)) if problem.ddof(params) > 0 else None


def _show(value: float | None) -> str:
    return "undefined (ddof <= 0)" if value is None else f"{value:.6g}"


def _verdict(stage: FitResult) -> str:
    """A fit stage's verdict in words: valid or not, the edm, and the flags."""
    edm = getattr(stage, "edm", float("nan"))
    flags = tuple(getattr(stage, "flags", ()))
    if getattr(stage, "valid", False):
        return f"valid, edm {edm:.3g}"
    reasons = ", ".join(flags) if flags else "not checked"
    return f"NOT VALID ({reasons}), edm {edm:.3g}"


def _scaling(cov: Covariance) -> str:
    """Whether the covariance was multiplied by the reduced chi-squared (`fk.covariance(scale="chi2r")`)."""
    values = [getattr(cov, name, None) for name in ("scale", "scaled_by")]
    names = [v for v in values if isinstance(v, str) and v.lower() not in ("", "none")]
    factors = [
        float(v)
        for v in values
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v is not None
    ]
    if not names and all(f == 1.0 for f in factors):
        return "not scaled by the reduced chi-squared"
    factor = f" x {factors[0]:.6g}" if factors else ""
    return f"scaled by the reduced chi-squared ({names[0] if names else 'chi2r'}{factor})"


class Analysis(eqx.Module):
    """Every stage of `fk.analyse`: the fits, the covariance, the posterior and a report.

    Attributes:
        problem: the `fk.Problem` analysed.
        start: the starting params.
        fit: the first-order warm start (`FitResult`), or None if skipped.
        solve: the second-order polish (`FitResult`), or None if skipped.
        covariance: the `Covariance` at the optimum, or None.
        posterior: the `Posterior` from whitened NUTS, or None.
        truth: optional true params (simulations), shown in the report and plots.
        config: the options each stage ran with (as text).
        timings: seconds per stage.
        notes: warnings collected on the way (unconstrained params, divergences...).
        intervals: the profile-likelihood `fk.Intervals`, or None (the stage is off by default).

    Example:
        >>> analysis = fk.analyse(prob, start)
        >>> print(analysis.report())
        >>> analysis.save("results/")
    """

    problem: Problem
    start: Any
    fit: FitResult | None
    solve: FitResult | None
    covariance: Covariance | None
    posterior: Posterior | None
    truth: Any
    config: dict
    timings: dict
    notes: tuple[str, ...]
    intervals: Any = None

    @property
    def params(self) -> Any:
        """The best params found: the polish's, else the warm start's, else the start."""
        for stage in (self.solve, self.fit):
            if stage is not None:
                return stage.params
        return self.start

    def table(self):
        """A DataFrame per flat param: estimate, Hessian error, posterior mean/std/r_hat/ESS (and truth)."""
        import pandas as pd

        names = tree.names(self.params)
        frame = pd.DataFrame(
            {"estimate": np.asarray(tree.ravel(self.params)[0])}, index=pd.Index(names, name="param")
        )
        if self.truth is not None:
            frame["truth"] = np.asarray(tree.ravel(self.truth)[0])
        if self.covariance is not None:
            frame["std (curvature)"] = np.asarray(self.covariance.flat_std)
        if self.intervals is not None:
            minus, plus = self.intervals.errors
            frame["profile minus"] = pd.Series(dict(zip(self.intervals.names, minus)))
            frame["profile plus"] = pd.Series(dict(zip(self.intervals.names, plus)))
        if self.posterior is not None:
            summary = self.posterior.summary()
            for column, label in (
                ("mean", "post. mean"),
                ("std", "post. std"),
                ("r_hat", "r_hat"),
                ("ess_bulk", "ess_bulk"),
            ):
                frame[label] = summary[column].to_numpy()
        return frame

    def evidence(self):
        """The Laplace approximation of the log evidence at the optimum (`fk.laplace_evidence`), or None
        without a fit and a covariance."""
        from .curvature import laplace_evidence

        stage = self.solve or self.fit
        if stage is None or self.covariance is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return laplace_evidence(self.problem, stage, self.covariance)

    def _comparison(self) -> list[str]:
        """The model-comparison lines of the report: log-likelihood, AIC, BIC and the Laplace evidence."""
        stage = self.solve or self.fit
        if stage is None or not np.isfinite(getattr(stage, "log_likelihood", np.nan)):
            return []
        lines = [
            f"model comparison: max log-likelihood {stage.log_likelihood:.6g} ({stage.n_free} free params, "
            f"{stage.n_data} data points), AIC {stage.aic:.6g}, BIC {stage.bic:.6g}"
        ]
        evidence = self.evidence()
        if evidence is not None:
            lines.append(f"Laplace log evidence: {evidence.log_evidence:.6g} ({evidence.assumptions})")
        return lines

    def report(self) -> str:
        """The analysis in text: reduced chi-squared before and after, stage summaries, the
        parameter table, the last fit's full report (`fk.fit_report`: AIC, BIC, validity,
        initial values, strong correlations) and any warnings."""
        lines = ["fitkit analysis", "=" * 15]
        chi_start = _chi2r(self.problem, self.start)
        chi_end = _chi2r(self.problem, self.params)
        lines.append(f"data points: {self.problem.n_data}, params: {tree.size(self.params)}")
        if self.problem.fixed_errors:
            lines.append(f"reduced chi-squared: start {_show(chi_start)} -> final {_show(chi_end)}")
            if self.truth is not None:
                lines.append(f"reduced chi-squared at the truth: {_show(_chi2r(self.problem, self.truth))}")
        else:
            # No chi-squared to judge by (noise models, counts, events): the log-likelihood itself.
            ll = [float(self.problem.log_likelihood(p)) for p in (self.start, self.params)]
            lines.append(f"log-likelihood: start {ll[0]:.6g} -> final {ll[1]:.6g}")
            if self.truth is not None:
                lines.append(
                    f"log-likelihood at the truth: {float(self.problem.log_likelihood(self.truth)):.6g}"
                )
        for label, stage in (("warm start", self.fit), ("polish", self.solve)):
            if stage is not None:
                lines.append(
                    f"{label}: {_verdict(stage)}; {stage.method}, {stage.steps} steps, "
                    f"{stage.wall_time:.3g} s (+{stage.compile_time:.3g} s compile): {stage.message}"
                )
        if self.covariance is not None:
            lines.append(
                f"covariance: {self.covariance.method}, {_scaling(self.covariance)}, "
                f"{self.timings.get('uncertainty', 0):.3g} s"
            )
        if self.intervals is not None:
            state = "valid" if self.intervals.valid else "NOT VALID: " + "; ".join(self.intervals.messages)
            lines.append(
                f"profile-likelihood intervals ({100 * self.intervals.cl:.3g}%): {len(self.intervals.names)} "
                f"params, {state}, {self.timings.get('intervals', 0):.3g} s"
            )
        lines += self._comparison()
        if self.posterior is not None:
            d = self.posterior.diagnostics
            summary = self.posterior.summary()
            lines.append(
                f"posterior: {self.posterior.num_chains} chain(s) x {self.posterior.num_draws} draws, "
                f"{d['divergences']} divergences, mean {d['mean_num_steps']:.3g} leapfrog steps per draw, "
                f"max r_hat {summary['r_hat'].max():.4f}, min ESS bulk {summary['ess_bulk'].min():.0f}, "
                f"{d['wall_time']:.3g} s"
            )
        lines.append("")
        with_pandas_options = self.table().to_string(float_format=lambda v: f"{v:.6g}")
        lines.append(with_pandas_options)
        stage = self.solve or self.fit
        if stage is not None:
            # The full report of the last fit: AIC, BIC, validity, initial values, strong correlations.
            report = fit_report(stage, self.covariance, self.intervals, self.problem, initial=self.start)
            lines += ["", report]
        if self.notes:
            lines += ["", "warnings:"] + [f"  - {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        """A summary line, a validity box per stage and the parameter table of every stage."""
        return display.text(self)

    def _repr_html_(self) -> str:
        """The notebook display (`fitkit.display`): the same cells as the text, coloured."""
        return display.html(self)

    def figures(self, corner: list[str] | None = None) -> dict[str, Any]:
        """The standard figures, by file stem: loss curves, residual maps, z-score histogram,
        correlation matrix, pulls against the truth, raw error bars and the corner plot.

        `pulls` (each param's `(estimate - truth) / error`) is drawn when a truth was given;
        `errorbars` always shows the raw values with their bars; `zscores` where the data
        have z-scores (not unbinned or custom likelihoods).

        Args:
            corner: paths whose params the corner plot shows (e.g. `["wfe"]`);
                default all. A corner of many params takes a while to draw.
        """
        figures = {}
        for label, stage in (("loss_warm_start", self.fit), ("loss_polish", self.solve)):
            if stage is not None and len(stage.history.get("loss", [])):
                figures[label] = plot.loss(stage)
        figures["residuals"] = plot.residuals(self.problem, self.params)
        if self.covariance is not None:
            figures["correlation"] = plot.matrix(
                np.asarray(self.covariance.correlation),
                names=list(self.covariance.names),
                title="correlation",
            )
            if self.truth is not None:
                # Offsets from the truth in units of their errors: readable whatever the params' scales.
                figures["pulls"] = plot.pulls(
                    self.covariance, self.covariance, self.truth, intervals=self.intervals
                )
            figures["errorbars"] = plot.errorbars(self.covariance, sigma=1.0, truth=self.truth, kind="raw")
        try:
            figures["zscores"] = plot.zscores(self.problem, self.params)
        except ValueError:
            pass  # unbinned data and custom log-likelihoods have no z-scores
        items = [x for x in (self.posterior, self.covariance) if x is not None]
        if items:
            labels = ["posterior" if x is self.posterior else "covariance" for x in items]
            names = tree.names(self.params)
            columns = None
            if corner is not None:
                prefixes = tuple(corner)
                columns = [n for n in names if n.startswith(prefixes)]
            figures["corner"] = plot.corner(items, truth=self.truth, labels=labels, columns=columns)
        return figures

    def save(self, folder: str | os.PathLike, corner: list[str] | None = None) -> pathlib.Path:
        """Write the report, every figure (PNG), the results (`.npz`) and the samples (CSV).

        `corner` selects the corner plot's params (see `figures`). The CSV starts with `#` comment lines recording the fitkit version and
        each stage's configuration (like CmdStan's output files); read it back
        bit for bit with `pandas.read_csv(path, comment="#", float_precision="round_trip")`.

        Returns:
            The folder, as a `pathlib.Path`.
        """
        import matplotlib.pyplot as plt

        from . import __version__

        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.txt").write_text(self.report() + "\n")
        for name, figure in self.figures(corner).items():
            figure.savefig(folder / f"{name}.png", dpi=60 if name == "corner" else 90, bbox_inches="tight")
            plt.close(figure)
        for name, stage in (("fit", self.fit), ("solve", self.solve)):
            if stage is not None:
                stage.save(folder / f"{name}.npz")
        if self.covariance is not None:
            self.covariance.save(folder / "covariance.npz")
        if self.posterior is not None:
            self.posterior.save(folder / "posterior.npz")
            header = [
                f"# fitkit {__version__} analyse",
                f"# config: {json.dumps(self.config, sort_keys=True)}",
            ]
            header.append(f"# posterior: {json.dumps(self.posterior.config, sort_keys=True, default=str)}")
            with open(folder / "samples.csv", "w") as handle:
                handle.write("\n".join(header) + "\n")
                self.posterior.to_dataframe().to_csv(handle, index=False, float_format="%.17g")
        return folder


def analyse(
    problem: Problem,
    params: Any,
    *,
    fit: dict | bool | None = None,
    solve: dict | bool | None = None,
    uncertainty: dict | bool | None = None,
    sample: dict | bool | None = None,
    intervals: dict | bool | None = None,
    truth: Any = None,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
    fixed: Any = None,
) -> Analysis:
    """The whole pipeline: warm start, second-order polish, error bars, posterior samples.

    Stages, each configured with the keywords of its engine (a dict merged
    over the defaults in `fitkit.analysis.DEFAULTS`), or skipped with `False`:

    1. `fit` (`fk.fit`): natural-gradient descent with one learning rate for
       every param, run only when the starting reduced chi-squared exceeds 10
       (pass a dict or True to force it).
    2. `solve` (`fk.solve`): L-BFGS in the Fisher eigen-projected space.
    3. `uncertainty` (`fk.covariance`): the inverse Hessian of the nll at the
       optimum. If it is singular the unconstrained params are noted and a
       pseudo-inverse is used.
    4. `sample` (`fk.sample`): NUTS whitened by that covariance.
    5. `intervals` (`fk.intervals`): profile-likelihood (MINOS) intervals of
       every free param; off unless `intervals=True` or a dict of options.

    Args:
        problem: the `fk.Problem`.
        params: the starting params pytree or a `FitResult`.
        fit, solve, uncertainty, sample, intervals: stage options (see above).
        truth: optional true params (for simulations), shown in report and plots.
        out: a folder to `save` everything to at the end.
        progress: one bar over the stages run (`"analyse: solve"`, ...), with each engine's
            own bar (steps, transitions, covariance blocks, params) below it while that stage
            runs, and a line per stage printed on stdout. `None` (default): the bars where a
            notebook or a terminal shows them, the lines always; `True`: the bars always;
            `False`: neither bars nor lines.
        fixed: params held at their start values in every stage (paths,
            leaves or elements such as `"wfe[0]"`); params the solve finds at
            a bound are held there for the error bars too.

    Returns:
        An `Analysis`.

    Raises:
        TypeError, ValueError: a stage option that is unknown to its engine or
            out of range (every stage's options are checked before the first
            stage runs; the message names the stage and the option).
        ParamsError, PathError: the params do not fit the problem (before any compilation).

    Example:
        >>> prob, truth, start = fk.examples.optics.make_problem(0, wf_npixels=64)
        >>> analysis = fk.analyse(prob, start, truth=truth, sample={"num_samples": 200})
        >>> print(analysis.report())
    """
    refuse_batch(problem, "fk.analyse")
    if not isinstance(problem, Problem):
        raise TypeError(f"problem is a {type(problem).__name__}; give an fk.Problem")
    options = {
        name: _stage_options(name, value)
        for name, value in (("fit", fit), ("solve", solve), ("uncertainty", uncertainty), ("sample", sample))
    }
    # Off unless asked for: 2n profile searches cost several solves each.
    options["intervals"] = None if intervals in (None, False) else _stage_options("intervals", intervals)
    start = start_params(params)
    problem.check(start)
    if truth is not None:
        problem.check(start_params(truth))
    _check_stages(start, options)
    fixed = [fixed] if isinstance(fixed, str) else fixed
    if fixed is not None:
        problem.parametrisation(start, fixed)  # unknown paths and all-fixed fail here, before any stage
        for stage in options.values():
            if stage is not None:
                stage.setdefault("fixed", fixed)
    timings, notes = {}, []
    current = start
    chi_start = _chi2r(problem, start)
    far = chi_start is None or chi_start > FAR
    run_fit = options["fit"] is not None and (fit is not None or far)
    stages = [name for name in options if options[name] is not None and (name != "fit" or run_fit)]
    # One bar over the stages; the engines' bars open inside it, below it, and go when done.
    bar = Progress(len(stages), progress, "analyse", unit="stage")
    say = bar.write if progress is not False else (lambda *a, **k: None)

    def begin(stage: str) -> float:
        bar.describe(f"analyse: {stage}")
        bar.to(stages.index(stage))
        return time.perf_counter()

    def reached(stage: str, what: str, result: FitResult, t0: float) -> None:
        timings[stage] = time.perf_counter() - t0
        chi = _show(_chi2r(problem, result.params))
        say(f"[fitkit] {what}: reduced chi-squared {chi} after {result.steps} steps")

    with bar:
        say(f"[fitkit] start: reduced chi-squared {_show(chi_start)}")
        warm = None
        if run_fit:
            t0 = begin("fit")
            warm = fit_engine(problem, current, progress=progress, **options["fit"])
            reached("fit", "warm start", warm, t0)
            current = warm.params

        polish = None
        if options["solve"] is not None:
            t0 = begin("solve")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                polish = solve_engine(problem, current, progress=progress, **options["solve"])
            notes += [str(w.message) for w in caught]
            reached("solve", "polish", polish, t0)
            current = polish.params

        cov = None
        if options["uncertainty"] is not None:
            t0 = begin("uncertainty")
            if "batch_size" not in options["uncertainty"] and tree.size(current) <= SMALL:
                options["uncertainty"]["batch_size"] = tree.size(current)
            at_limit = list(polish.at_limit) if polish is not None else []
            if at_limit:
                given = options["uncertainty"].get("fixed") or []
                given = [given] if isinstance(given, str) else list(given)
                options["uncertainty"]["fixed"] = [*given, *at_limit]
            try:
                cov = covariance(problem, current, progress=progress, **options["uncertainty"])
            except CurvatureError as err:
                notes.append(f"the curvature at the optimum is singular: {err}; using a pseudo-inverse")
                cov = covariance(
                    problem, current, progress=progress, **{**options["uncertainty"], "regularise": True}
                )
            timings["uncertainty"] = time.perf_counter() - t0
            say(f"[fitkit] covariance: {cov.method} in {timings['uncertainty']:.3g} s")

        posterior = None
        if options["sample"] is not None:
            t0 = begin("sample")
            sample_options = dict(options["sample"])
            declared = problem.declares(sample_options.get("fixed"))
            if cov is not None and "projection" not in sample_options and not declared:
                sample_options["projection"] = Projection.from_covariance(
                    np.asarray(cov.matrix), center=current, truncate=1e-14
                )
            posterior = sample_engine(problem, current, progress=progress, **sample_options)
            timings["sample"] = time.perf_counter() - t0
            summary = posterior.summary()
            if posterior.unsampled:
                notes.append(
                    f"{', '.join(posterior.unsampled)} not sampled along a dropped direction: their "
                    "posterior spread is unknown (NaN in the summary)"
                )
            if posterior.diagnostics["divergences"]:
                notes.append(f"{posterior.diagnostics['divergences']} divergent transitions after warm-up")
            high = summary.index[summary["r_hat"] > 1.01].tolist()
            if high:
                notes.append(f"r_hat above 1.01 for {', '.join(high)}: run longer chains")
            say(
                f"[fitkit] posterior: max r_hat {summary['r_hat'].max():.4f}, min ESS {summary['ess_bulk'].min():.0f}"
            )

        found = None
        if options["intervals"] is not None:
            from .profiles import intervals as intervals_engine

            t0 = begin("intervals")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                found = intervals_engine(
                    problem,
                    polish if polish is not None else current,
                    progress=progress,
                    **options["intervals"],
                )
            notes += [str(w.message) for w in caught]
            timings["intervals"] = time.perf_counter() - t0
            say(
                f"[fitkit] profile intervals: {'valid' if found.valid else 'NOT VALID'} in {timings['intervals']:.3g} s"
            )

        bar.describe("analyse")
        bar.to(len(stages))

    config = {
        name: {k: repr(v) for k, v in value.items()} if value is not None else "skipped"
        for name, value in options.items()
    }
    if options["fit"] is not None and warm is None:
        config["fit"] = f"skipped: starting reduced chi-squared {chi_start:.3g} <= {FAR}"
    analysis = Analysis(
        problem=problem,
        start=start,
        fit=warm,
        solve=polish,
        covariance=cov,
        posterior=posterior,
        truth=None if truth is None else start_params(truth),
        config=config,
        timings=timings,
        notes=tuple(notes),
        intervals=found,
    )
    if out is not None:
        analysis.save(out)
        say(f"[fitkit] wrote {out}")
    return analysis
