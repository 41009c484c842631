"""Bounds, fixed params and ties: lmfit's documented examples, active bounds, sampling densities, errors."""

import jax
import jax.numpy as jnp
import lmfit
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import fitkit as fk


class Curve(fk.Observation):
    """Data at abscissae `x` predicted by a function of the params."""

    x: jax.Array
    shape: str = "sine"

    def predict(self, params, model):
        return SHAPES[self.shape](params, self.x)


def _sine(p, x):
    return p["amp"] * jnp.sin(p["omega"] * x + p["shift"]) * jnp.exp(-x * x * p["decay"])


def _gauss(amp, center, width, x):
    return amp * jnp.exp(-0.5 * ((x - center) / width) ** 2)


def _peaks(p, x):
    blue, red = p["peak"]["blue"], p["peak"]["red"]
    return (
        _gauss(blue["amp"], blue["center"], p["width"]["blue"], x)
        + _gauss(red["amp"], red["center"], p["width"]["red"], x)
        + p["background"]
    )


def _decay(p, x):
    return p["N"] * jnp.exp(-x / p["tau"])


def _line(p, x):
    return p["slope"] * x + p["offset"]


SHAPES = {"sine": _sine, "peaks": _peaks, "decay": _decay, "line": _line}


def _curve(shape, x, y, error=1.0):
    x, y = jnp.asarray(x), jnp.asarray(y)
    return Curve(data=y, error=jnp.full_like(y, error), x=x, shape=shape)


# ------------------------------------------------------------------ lmfit's documented examples
@pytest.fixture(scope="module")
def sine():
    rng = np.random.default_rng(7)
    x = np.linspace(0.0, 15.0, 301)
    y = 5.0 * np.sin(2.0 * x - 0.1) * np.exp(-x * x * 0.025) + rng.normal(0.0, 0.2, x.size)
    bounds = {"amp": (0.0, None), "shift": (-np.pi / 2, np.pi / 2)}
    return fk.Problem(None, _curve("sine", x, y), bounds=bounds), x, y


def _lmfit(residual, parameters):
    out = lmfit.minimize(residual, parameters, xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=100000)
    return {k: (v.value, v.stderr) for k, v in out.params.items()}


def _agree(result, cov, reference):
    for name, (value, stderr) in reference.items():
        got = float(fk.tree.get(result.params, name))
        assert got == pytest.approx(value, rel=1e-6, abs=1e-9), name
        std = float(fk.tree.get(cov.std, name))
        if stderr is None or stderr == 0:
            assert std == 0.0, name
        else:
            assert std == pytest.approx(stderr, rel=1e-4), name


def test_damped_sine_with_bounds_matches_lmfit(sine):
    problem, x, y = sine
    start = {"amp": 10.0, "decay": 0.1, "shift": 0.0, "omega": 3.0}
    res = fk.solve(problem, start)
    assert res.valid and res.flags == () and res.at_limit == ()
    cov = fk.covariance(problem, res, method="fisher", scale="chi2r")

    parameters = lmfit.Parameters()
    parameters.add("amp", value=10.0, min=0.0)
    parameters.add("decay", value=0.1)
    parameters.add("shift", value=0.0, min=-np.pi / 2, max=np.pi / 2)
    parameters.add("omega", value=3.0)
    reference = _lmfit(lambda p: _sine(p.valuesdict(), x) - y, parameters)
    _agree(res, cov, reference)


def test_two_gaussians_with_a_tied_width_match_lmfit():
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 10.0, 201)
    truth = {
        "peak": {"blue": {"amp": 3.0, "center": 3.5}, "red": {"amp": 2.0, "center": 6.5}},
        "width": {"blue": 0.6, "red": 0.9},
        "background": 0.3,
    }
    y = np.asarray(_peaks(truth, x)) + rng.normal(0.0, 0.1, x.size)
    ties = {"width.red": lambda p: p["width"]["blue"] * 1.5}
    problem = fk.Problem(None, _curve("peaks", x, y, 0.1), bounds={"width": (0.0, None)}, ties=ties)
    start = {
        "peak": {"blue": {"amp": 2.0, "center": 3.0}, "red": {"amp": 1.0, "center": 7.0}},
        "width": {"blue": 1.0, "red": 1.0},
        "background": 0.0,
    }
    res = fk.solve(problem, start)
    assert res.valid
    assert float(res.params["width"]["red"]) == pytest.approx(
        1.5 * float(res.params["width"]["blue"]), rel=1e-12
    )
    cov = fk.covariance(problem, res, method="fisher", scale="chi2r")

    parameters = lmfit.Parameters()
    for name, value in [("b_amp", 2.0), ("b_center", 3.0), ("r_amp", 1.0), ("r_center", 7.0), ("bg", 0.0)]:
        parameters.add(name, value=value)
    parameters.add("b_width", value=1.0, min=0.0)
    parameters.add("r_width", expr="b_width * 1.5")

    def residual(p):
        v = p.valuesdict()
        params = {
            "peak": {
                "blue": {"amp": v["b_amp"], "center": v["b_center"]},
                "red": {"amp": v["r_amp"], "center": v["r_center"]},
            },
            "width": {"blue": v["b_width"], "red": v["r_width"]},
            "background": v["bg"],
        }
        return (np.asarray(_peaks(params, x)) - y) / 0.1

    got = _lmfit(residual, parameters)
    reference = {
        "peak.blue.amp": got["b_amp"],
        "peak.blue.center": got["b_center"],
        "peak.red.amp": got["r_amp"],
        "peak.red.center": got["r_center"],
        "background": got["bg"],
        "width.blue": got["b_width"],
        "width.red": got["r_width"],  # lmfit propagates the tie's error too
    }
    _agree(res, cov, reference)


@pytest.fixture(scope="module")
def decay():
    rng = np.random.default_rng(11)
    x = np.linspace(0.0, 5.0, 60)
    y = 8.0 * np.exp(-x / 1.3) + rng.normal(0.0, 0.25, x.size)
    return fk.Problem(None, _curve("decay", x, y, 0.25)), x, y


def test_decay_with_n_fixed_matches_lmfit_and_the_result_carries_it(decay):
    problem, x, y = decay
    start = {"N": 7.5, "tau": 2.0}
    res = fk.solve(problem, start, fixed=["N"])
    assert res.valid and res.fixed == ("N",) and float(res.params["N"]) == 7.5
    cov = fk.covariance(problem, res, method="fisher", scale="chi2r")  # uses the result's fixed set
    assert cov.fixed == ("N",)

    parameters = lmfit.Parameters()
    parameters.add("N", value=7.5, vary=False)
    parameters.add("tau", value=2.0)
    reference = _lmfit(lambda p: (np.asarray(_decay(p.valuesdict(), x)) - y) / 0.25, parameters)
    _agree(res, cov, reference)
    # released at the same point: N has an error, and tau's marginal error exceeds its conditional one
    with pytest.warns(fk.ConvergenceWarning, match="not at a minimum"):  # N's own minimum is elsewhere
        free = fk.covariance(problem, res.params, fixed=[])
    held = fk.covariance(problem, res)
    assert float(free.std["N"]) > 0 and float(free.std["tau"]) > float(held.std["tau"])


def test_hessian_covariance_of_the_free_params_matches_jax_hessian(decay):
    problem, _, _ = decay
    res = fk.solve(problem, {"N": 7.5, "tau": 2.0}, fixed="N")
    cov = fk.covariance(problem, res)
    curvature = jax.hessian(lambda tau: problem.nll({"N": res.params["N"], "tau": tau}))(res.params["tau"])
    assert float(cov.std["tau"]) == pytest.approx(float(1.0 / jnp.sqrt(curvature)), rel=1e-10)
    assert float(cov.std["N"]) == 0.0


# ------------------------------------------------------------------ active bounds
def test_a_minimum_beyond_a_bound_is_held_there_and_flagged():
    rng = np.random.default_rng(5)
    x = np.linspace(0.0, 1.0, 40)
    sigma = 0.1
    y = 2.0 * x - 0.5 + rng.normal(0.0, sigma, x.size)  # the data want offset -0.5
    problem = fk.Problem(None, _curve("line", x, y, sigma), bounds={"offset": (0.0, None)})
    res = fk.solve(problem, {"slope": 1.0, "offset": 0.5})
    assert res.valid and "at_limit" in res.flags and res.at_limit == ("offset",)
    assert float(res.params["offset"]) == 0.0
    assert "At a bound" in res.message and "offset" in res.message
    # with the offset held at 0 the slope is a weighted least-squares fit through the origin
    slope = np.sum(x * y) / np.sum(x * x)
    assert float(res.params["slope"]) == pytest.approx(slope, rel=1e-9)
    cov = fk.covariance(problem, res)
    assert cov.at_limit == ("offset",)
    assert np.isnan(float(cov.std["offset"]))
    assert float(cov.std["slope"]) == pytest.approx(sigma / np.sqrt(np.sum(x * x)), rel=1e-9)
    draws = cov.sample(jax.random.key(0), 200)
    assert np.all(np.asarray(draws["offset"]) == 0.0)
    # chained from the result, the offset stays held; the sampler explores next to the bound
    again = fk.solve(problem, res)
    assert again.valid and float(again.params["offset"]) == 0.0
    assert float(again.params["slope"]) == pytest.approx(slope, rel=1e-9)
    post = fk.sample(problem, res, num_samples=300, progress=False)
    assert np.all(np.asarray(post.samples["offset"]) > 0)


def test_laplace_draws_stay_inside_the_bounds(sine):
    problem, _, _ = sine
    res = fk.solve(problem, {"amp": 10.0, "decay": 0.1, "shift": 0.0, "omega": 3.0})
    cov = fk.covariance(problem, res, scale=400.0)  # so wide that many draws fall outside
    draws = cov.sample(jax.random.key(1), 2000)
    shift = np.asarray(draws["shift"])
    assert np.all(np.abs(shift) < np.pi / 2) and np.all(np.asarray(draws["amp"]) >= 0)
    assert shift.std() > 0.1  # still the wide normal, cut at the bounds


# ------------------------------------------------------------------ first-order fits and sampling
def test_first_order_fit_respects_bounds_fixed_params_and_deep_paths(sine):
    problem, _, _ = sine
    start = {"amp": 10.0, "decay": 0.1, "shift": 0.0, "omega": 3.0}
    best = fk.solve(problem, start, fixed=["omega"])
    res = fk.fit(problem, start, optax.adam(0.02), steps=3000, progress=False, fixed=["omega"], warn=False)
    assert res.fixed == ("omega",) and float(res.params["omega"]) == 3.0
    for name in ("amp", "decay", "shift"):
        assert float(res.params[name]) == pytest.approx(float(best.params[name]), rel=1e-5)
    assert abs(float(res.params["shift"])) < np.pi / 2


def test_per_path_optimisers_reach_nested_leaves():
    params = {"position": {"blue": jnp.ones(2), "red": jnp.zeros(2)}, "flux": 1.0}
    from fitkit.fitting import map_optimisers

    with pytest.warns(UserWarning, match="position.red"):
        optimiser, frozen = map_optimisers(params, {"position.blue": optax.sgd(1.0), "flux": optax.sgd(0.5)})
    assert frozen == ["position.red"]
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimiser.update(grads, optimiser.init(params), params)
    assert float(updates["flux"]) == -0.5 and np.all(np.asarray(updates["position"]["red"]) == 0)
    assert np.all(np.asarray(updates["position"]["blue"]) == -1.0)


def test_sampling_adds_the_log_jacobian_so_the_prior_means_what_it_says():
    # One noisy measurement of a positive scale: the posterior sits against the bound,
    # where a sampler without the Jacobian would be badly off. Reference: a brute-force grid.
    y = np.array([0.3, -0.2, 0.4])
    prior = dist.HalfNormal(1.0)
    problem = fk.Problem(None, _curve("line", np.zeros(3), y, 1.0), priors={"offset": prior})
    params = {"slope": 0.0, "offset": 0.5}
    post = fk.sample(problem, params, num_samples=4000, num_chains=2, progress=False, fixed=["slope"])
    draws = np.asarray(post.samples["offset"]).ravel()
    grid = np.linspace(1e-6, 6.0, 200001)
    log_density = -0.5 * np.sum((y[:, None] - grid[None, :]) ** 2, axis=0) - 0.5 * grid**2
    weight = np.exp(log_density - log_density.max())
    mean = np.sum(grid * weight) / np.sum(weight)
    spread = np.sqrt(np.sum((grid - mean) ** 2 * weight) / np.sum(weight))
    assert draws.min() > 0
    assert np.mean(draws) == pytest.approx(mean, abs=4 * spread / np.sqrt(1000))
    assert np.all(np.asarray(post.samples["slope"]) == 0.0)


# ------------------------------------------------------------------ the map itself
def test_the_transform_round_trips_and_its_log_jacobian_is_exact():
    params = {"a": jnp.array([0.5, 2.0, -3.0]), "b": 0.2, "c": 1000.0}
    problem = fk.Problem(
        None,
        _curve("line", np.zeros(2), np.zeros(2)),
        bounds={"a": (np.array([0.0, -np.inf, -5.0]), np.array([1.0, 3.0, np.inf])), "b": (0.0, None)},
    )
    transform = problem.parametrisation(params)
    z = transform.to_latent(params)
    back = transform.to_params(z)
    assert np.allclose(np.asarray(back["a"]), [0.5, 2.0, -3.0], rtol=1e-13)
    jac = jax.jacfwd(transform.constrain)(z)
    exact = np.sum(np.log(np.abs(np.diag(np.asarray(jac)))))
    assert float(transform.log_det_jacobian(z)) == pytest.approx(exact, rel=1e-12)
    # the unbounded c = 1000 would overflow the exp branches it does not use: its gradient stays finite
    assert np.all(np.asarray(jax.grad(lambda u: jnp.sum(transform.constrain(u)))(z)) > 0)


def test_ties_compute_in_dependency_order():
    params = {"a": 1.0, "b": 0.0, "c": 0.0}
    ties = {"c": lambda p: p["b"] + 1.0, "b": lambda p: 2.0 * p["a"]}
    problem = fk.Problem(None, _curve("line", np.zeros(2), np.zeros(2)), ties=ties)
    completed = problem.parametrisation(params).to_params(jnp.array([3.0, 0.0, 0.0]))
    assert (float(completed["b"]), float(completed["c"])) == (6.0, 7.0)


# ------------------------------------------------------------------ fixing never recompiles
def test_fixing_each_of_16_optics_params_in_turn_compiles_once():
    problem, truth, _ = fk.examples.optics.make_problem(0, wf_npixels=16, n_frames=100)
    problem = fk.Problem(problem.model, problem.observations, bounds={"flux": (0.0, None)})
    best = fk.solve(problem, truth, fixed=["wfe[0]"])
    assert best.valid
    names = fk.tree.names(truth)
    assert len(names) == 16
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: (
            compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    start = len(compiles)
    scan = [fk.solve(problem, best.params, fixed=[name], warn=False) for name in names]
    assert len(compiles) == start  # one compiled solve and verdict serve every choice of fixed param
    assert all(r.valid and r.compile_time == 0.0 for r in scan)
    assert [r.fixed for r in scan] == [(name,) for name in names]


# ------------------------------------------------------------------ bad declarations, before compiling
@pytest.fixture(scope="module")
def line():
    x = np.linspace(0.0, 1.0, 10)
    return _curve("line", x, 2.0 * x + 1.0, 0.1), {"slope": 1.0, "offset": 0.5}


@pytest.mark.parametrize(
    "declared, fixed, words",
    [
        (
            {"bounds": {"ofset": (0.0, None)}},
            None,
            ["unknown parameter path 'ofset'", "Did you mean 'offset'"],
        ),
        ({"bounds": {"offset": (1.0, 0.0)}}, None, ["(1, 0)", "lower bound must be below"]),
        ({"bounds": {"offset": (1.0, 2.0)}}, None, ["offset = 0.5 not in [1, 2]", "outside its bounds"]),
        ({"bounds": {"offset": (0.5, 2.0)}}, None, ["on a bound: offset = 0.5", "fix it"]),
        ({"ties": {"offset": lambda p: p["offset"] * 2}}, None, ["refers to 'offset' itself"]),
        (
            {"ties": {"offset": lambda p: p["slope"], "slope": lambda p: p["offset"]}},
            None,
            ["cycle", "offset", "slope"],
        ),
        ({}, ["slpoe"], ["unknown parameter path 'slpoe'", "Did you mean 'slope'"]),
        ({}, ["slope", "offset"], ["every one of the 2 parameters", "release at least one"]),
        ({"ties": {"offset": lambda p: p["slope"]}}, ["slope"], ["every parameter is fixed or tied"]),
        ({"bounds": {"slope": ([0.0, 1.0], None)}}, None, ["does not broadcast"]),
        ({"ties": {"offset": lambda p: jnp.ones(3)}}, None, ["returns shapes [(3,)]"]),
    ],
)
def test_bad_declarations_fail_clearly_before_anything_compiles(line, declared, fixed, words):
    obs, start = line
    problem = fk.Problem(None, obs, **declared)
    # The small eager operations of building a map compile once per process; do that first.
    fk.Problem(
        None, obs, bounds={"offset": (-1.0, None)}, ties={"slope": lambda p: p["offset"]}
    ).parametrisation(fk.results.start_params(start))
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: (
            compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
        )
    )
    with pytest.raises(fk.ParametrisationError) as caught:
        fk.solve(problem, start, fixed=fixed)
    for word in words:
        assert word in str(caught.value)
    assert not compiles


def test_malformed_declarations_fail_at_the_problem(line):
    obs, _ = line
    with pytest.raises(ValueError, match="give a pair"):
        fk.Problem(None, obs, bounds={"offset": 0.0})
    with pytest.raises(TypeError, match="give a function of the params"):
        fk.Problem(None, obs, ties={"offset": 2.0})


def test_bounds_given_to_solve_point_to_the_problem(line):
    obs, start = line
    with pytest.raises(TypeError, match="fk.Problem"):
        fk.solve(fk.Problem(None, obs), start, bounds={"offset": (0.0, None)})
    with pytest.raises(ValueError, match="MAP point"):
        fk.solve(fk.Problem(None, obs), start, jacobian=True)


def test_a_result_saves_and_loads_what_was_fixed(decay, tmp_path):
    problem, _, _ = decay
    res = fk.solve(problem, {"N": 7.5, "tau": 2.0}, fixed=["N"])
    res.save(tmp_path / "fit.npz")
    again = fk.FitResult.load(tmp_path / "fit.npz")
    assert again.fixed == ("N",) and again.at_limit == ()
    cov = fk.covariance(problem, res)
    cov.save(tmp_path / "cov.npz")
    assert fk.Covariance.load(tmp_path / "cov.npz").fixed == ("N",)


def test_projected_solves_and_natural_gradients_work_through_the_bounds(sine):
    problem, _, _ = sine
    start = {"amp": 4.0, "decay": 0.03, "shift": -0.3, "omega": 2.01}
    best = fk.solve(problem, start)
    projected = fk.solve(problem, start, method="bfgs", projection="hessian", fixed=["omega"])
    held = fk.solve(problem, start, fixed=["omega"])
    assert projected.valid and projected.fixed == ("omega",)
    for name in ("amp", "decay", "shift"):
        assert float(projected.params[name]) == pytest.approx(float(held.params[name]), rel=1e-7)
    natural = fk.fit(
        problem, start, optax.sgd(0.5), precondition="fisher", refresh_every=1, steps=60, progress=False
    )
    for name in best.params:
        assert float(natural.params[name]) == pytest.approx(float(best.params[name]), rel=1e-6)


def test_analyse_holds_the_fixed_params_in_every_stage(decay):
    problem, _, _ = decay
    analysis = fk.analyse(
        problem,
        {"N": 7.5, "tau": 2.0},
        fixed="N",
        fit=False,
        solve={"method": "levenberg-marquardt"},
        sample={"num_samples": 200, "num_warmup": 100},
        progress=False,
    )
    assert analysis.solve.fixed == ("N",)
    assert float(analysis.covariance.std["N"]) == 0.0
    assert np.all(np.asarray(analysis.posterior.samples["N"]) == 7.5)
    assert float(analysis.covariance.std["tau"]) > 0
