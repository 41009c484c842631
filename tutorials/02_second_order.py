# %% [markdown]
# # 2. Second-order solving with optimistix, in one call
#
# The zodiax tutorial's second section calls
# `optx.minimise(loss_fn, optx.BestSoFarMinimiser(optx.BFGS(rtol, atol)), params, args)`
# by hand, then digs `sol.stats["num_steps"]` and `optx.RESULTS[sol.result]`
# out of the solution to learn what happened. `fk.solve` does the same in one
# call: it prints a CmdStan-style table from inside the compiled solve, says
# in words why it stopped, and returns the same `FitResult` as `fk.fit`, with
# the history, the evaluation counts and the compile time apart.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import fitkit as fk

fk.enable_x64()
QUICK = os.environ.get("FITKIT_QUICK") == "1"


# %% [markdown]
# ## The problem
# The tutorial's sum of two Gaussians, its noisy data and its starting guess.

# %%
problem, truth, start = fk.examples.gaussians.make_problem()
model = problem.model
print("initial reduced chi-squared:", float(problem.chi2r(start)))

# %% [markdown]
# ## BFGS, as in the tutorial
# `verbose=True` prints one row per step (`log_every=5` thins it): the loss at
# the current point, the length of the last accepted step `||dx||`, the
# gradient norm, the line-search step size, and the running count of loss
# evaluations. A step is one trial point, so a rejected line-search trial is
# a step too (marked in the Notes column). Best-so-far tracking is on, as in
# the tutorial's `BestSoFarMinimiser`.

# %%
bfgs = fk.solve(problem, start, method="bfgs", rtol=1e-8, atol=1e-8, verbose=True, log_every=5)
print()
print("final reduced chi-squared:", float(problem.chi2r(bfgs.params)))
print("steps:", bfgs.steps, "(the tutorial needed 27)")
print("evaluations:", {k: v for k, v in bfgs.stats.items() if k.endswith("_evals")})
print(f"compile {bfgs.compile_time:.2f} s, run {bfgs.wall_time * 1e3:.2f} ms")

# %% [markdown]
# ## Least squares on the same problem
# With a normal likelihood the loss is a sum of squared z-scores, so a
# least-squares solver can use the Jacobian of the residuals directly
# (`problem.residuals`). Levenberg-Marquardt needs fewer steps than BFGS and
# lands on the same optimum; its log reports the same loss (the mean squared
# z-score), so the two tables compare line by line.

# %%
lm = fk.solve(problem, start, method="levenberg-marquardt", verbose=True, log_every=2)
print()
print("final reduced chi-squared:", float(problem.chi2r(lm.params)))
print(
    "largest difference from BFGS:", max(float(np.max(np.abs(lm.params[k] - bfgs.params[k]))) for k in truth)
)

# %% [markdown]
# ## When it does not converge
# Out of steps, the result says so (`converged=False`) and a
# `ConvergenceWarning` carries the same message; `throw=True` raises
# instead. The best params seen are kept, so the natural next move is to
# chain: hand the result back to `fk.solve`. Here a cheap L-BFGS run that
# stopped short is polished by Levenberg-Marquardt, which starts exactly
# where L-BFGS ended (its first logged loss is `short.loss`).

# %%
import warnings  # noqa: E402

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    short = fk.solve(problem, start, method="lbfgs", max_steps=20)
print(short.converged, "-", short.message)
print("warning:", caught[0].category.__name__)

polished = fk.solve(problem, short, method="levenberg-marquardt")
print(polished.message)
print("first loss of the polish:", polished.history["loss"][0], "| loss where L-BFGS stopped:", short.loss)
print("steps after chaining:", polished.steps, "| chi2r:", float(problem.chi2r(polished.params)))

# %% [markdown]
# ## A failed fit, caught
# A solver's own stopping test can pass far from the minimum: on a badly
# scaled problem its steps become short, and "short steps" is what optimistix
# tests. So every result also carries a verdict, as MINUIT's `valid` flag:
# `res.edm` is the estimated distance to the minimum, `0.5 g^T H^-1 g` of the
# negative log-likelihood (the decrease still to be had, in the nll's own
# units, so free of the params' scales), and `res.valid` is True only when
# the solver stopped normally, every value is finite, the Hessian is positive
# definite and `edm <= max_edm` (1e-8 in float64). Meyer's thermistor problem
# (Moré, Garbow and Hillstrom 1981; params from 0.006 to 6000) is a classic
# trap: L-BFGS reports convergence far from the minimum, and the verdict
# says so. The default `fk.solve(problem, start)` (Levenberg-Marquardt,
# retried with Newton when not valid) solves it.

# %%
meyer = fk.examples.nls.CASES["meyer"]
meyer_problem = meyer.build()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    trapped = fk.solve(meyer_problem, meyer.params(0), method="lbfgs")
print("L-BFGS:", trapped)
print("warning:", caught[-1].category.__name__ if caught else None)
print("correct digits:", round(meyer.digits({k: float(v) for k, v in trapped.params.items()}), 1))
robust = fk.solve(meyer_problem, meyer.params(0))
print("default:", robust)
print("correct digits:", round(meyer.digits({k: float(v) for k, v in robust.params.items()}), 1))

# %% [markdown]
# ## Every method, side by side
# Every named method reaches the same optimum. The compiled solve is cached,
# so a second call on a problem of the same shapes costs no compilation.

# %%
methods = ["bfgs", "lbfgs", "newton", "gauss-newton", "levenberg-marquardt", "dogleg"]
if not QUICK:
    methods += ["nonlinear-cg", "nelder-mead"]
results = {m: fk.solve(problem, start, method=m, max_steps=5000) for m in methods}
print(f"{'method':>20} {'steps':>6} {'chi2r':>10} {'compile (s)':>12}")
for name, res in results.items():
    print(f"{name:>20} {res.steps:>6} {float(problem.chi2r(res.params)):>10.6f} {res.compile_time:>12.2f}")

fig, ax = plt.subplots(figsize=(8, 4))
for name, res in results.items():
    ax.semilogy(
        res.history["step"], res.history["loss"] - min(r.loss for r in results.values()) + 1e-16, label=name
    )
ax.set(xlabel="step", ylabel="loss - best loss", title="Convergence of each method", xscale="log")
ax.legend(fontsize=8)
fk.plot.show(fig, "02_convergence")

# %%
fig, ax = plt.subplots(figsize=(9, 4))
ax.plot(model.xs, model(truth), c="k", label="True")
ax.scatter(model.xs, problem.observations[0].data, s=10, alpha=0.6, label="Data")
ax.plot(model.xs, model(start), c="C2", label="Initial")
ax.plot(model.xs, model(bfgs.params), c="C1", label="BFGS")
ax.axhline(0, color="k", linestyle="--")
ax.set(xlabel="x", ylabel="f(x)", title="Second-order fit")
ax.legend()
fk.plot.show(fig, "02_fit")

# %% [markdown]
# The history is a table too: `bfgs.to_dataframe()` has one row per step with
# the loss, gradient norm, step length, step size and whether the step was
# accepted.

# %%
print(bfgs.to_dataframe().tail())
