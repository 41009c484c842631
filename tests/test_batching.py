"""Batched fits: `fk.batch` and `fk.solve` on a batch against one `fk.solve` per member."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitkit as fk
from fitkit.batching import BatchError, stack_params


class Peak(fk.Observation):
    """Counts of a Gaussian peak on a flat background, Normal errors."""

    x: jax.Array

    def predict(self, p, model):
        return p["amp"] * jnp.exp(-0.5 * ((self.x - p["mu"]) / p["width"]) ** 2) + p["bkg"]


X = jnp.linspace(-5.0, 5.0, 100)
TRUTH = {"amp": 5.0, "mu": 0.3, "width": 1.2, "bkg": 1.0}


def _survey(size, seed=0):
    """`size` noise realisations of one peak; every 20th member starts far off (the peak at x = 40, off
    the data: no curvature in mu and width there), the others near the truth."""
    rng = np.random.default_rng(seed)
    clean = TRUTH["amp"] * np.exp(-0.5 * ((np.asarray(X) - TRUTH["mu"]) / TRUTH["width"]) ** 2) + TRUTH["bkg"]
    problems, starts = [], []
    for i in range(size):
        data = clean + 0.3 * rng.normal(size=X.size)
        problems.append(fk.Problem(None, Peak(data=jnp.asarray(data), error=jnp.full(X.size, 0.3), x=X)))
        start = {"amp": 4.0, "mu": 40.0, "width": 0.1, "bkg": 0.8} if i % 20 == 0 else {
            "amp": 4.0, "mu": 0.0, "width": 1.0, "bkg": 0.8}  # fmt: skip
        starts.append({k: jnp.asarray(v) for k, v in start.items()})
    return problems, starts


@pytest.fixture(scope="module")
def survey():
    problems, starts = _survey(1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = fk.solve(fk.batch(problems), stack_params(starts))
        singles = [fk.solve(p, s) for p, s in zip(problems, starts)]
    return problems, starts, batched, singles


def test_batched_solve_equals_one_solve_per_member(survey):
    problems, _, batched, singles = survey
    assert isinstance(batched, fk.BatchResult) and len(batched) == 1000
    # the same verdict for every member, the far starts among the invalid ones
    np.testing.assert_array_equal(batched.valid, [r.valid for r in singles])
    assert not batched.valid[::20].any() and batched.valid.sum() == 950
    for index in np.flatnonzero(~batched.valid):
        assert batched.flags_of(index) == singles[index].flags
    # The same optima: the vmapped loop rounds differently from a single one, so Levenberg-Marquardt
    # may stop elsewhere inside its tolerance, but both end with the verdict's Newton step, which
    # lands at the minimum to the float precision.
    for name in TRUTH:
        mine = np.asarray(batched.params[name])[batched.valid]
        theirs = np.array([float(r.params[name]) for r in singles])[batched.valid]
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(batched.loss[batched.valid], [r.loss for r in singles if r.valid], rtol=1e-12)
    assert np.all(batched.edm[batched.valid] <= 1e-8)
    # every member's error bars, in one call, as each member's own fk.covariance
    cov = fk.covariance(fk.batch(problems), batched)
    assert cov.ok.tolist() == batched.valid.tolist()  # the far starts: flat in mu and width
    for index in (1, 7, 33, 150):
        one = fk.covariance(problems[index], singles[index])
        np.testing.assert_allclose(cov.matrix[index], np.asarray(one.matrix), rtol=1e-9)
        np.testing.assert_allclose(float(cov.std["amp"][index]), float(one.std["amp"]), rtol=1e-9)
    assert np.isnan(cov.matrix[0]).all()
    # the pulls of the valid members look like N(0, 1)
    pulls = (np.asarray(batched.params["mu"]) - TRUTH["mu"])[cov.ok] / np.asarray(cov.std["mu"])[cov.ok]
    assert abs(pulls.mean()) < 0.25 and 0.8 < pulls.std() < 1.2
    with pytest.raises(TypeError, match="no options"):
        fk.covariance(fk.batch(problems), batched, method="fisher")


def test_batch_summary_and_members():
    problems, starts = _survey(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = fk.solve(fk.batch(problems), stack_params(starts))
    text = batched.summary()
    assert text.startswith("95 of 100 fits valid (95.0%)")
    assert "5 flagged curvature_not_positive_definite" in text and "worst: " in text
    one = batched.member(3)
    assert isinstance(one, fk.FitResult) and one.valid
    assert float(one.params["amp"]) == float(batched.params["amp"][3])
    assert not batched.member(20).valid and "NOT VALID" in batched.member(20).message


def test_invalid_members_warn():
    problems, starts = _survey(21)
    with pytest.warns(fk.ConvergenceWarning, match="19 of 21 fits valid"):
        fk.solve(fk.batch(problems), stack_params(starts))


def test_problems_of_another_structure_are_refused():
    problems, _ = _survey(3)
    short = fk.Problem(None, Peak(data=jnp.ones(50), error=jnp.ones(50), x=X[:50]))
    with pytest.raises(
        BatchError, match=r"problem 2 has an array of shape \(50,\).*problem 0 has an array of shape \(100,\)"
    ):
        fk.batch([problems[0], problems[1], short])
    bounded = fk.Problem(None, problems[0].observations[0], bounds={"width": (0.0, None)})
    with pytest.raises(BatchError, match="problem 1"):
        fk.batch([problems[0], bounded])
    with pytest.raises(TypeError, match="item 1 is a dict"):
        fk.batch([problems[0], {}])
    with pytest.raises(BatchError, match="at least one"):
        fk.batch([])


def test_starts_of_the_wrong_length_are_refused():
    problems, starts = _survey(4)
    survey = fk.batch(problems)
    with pytest.raises(BatchError, match="the starts hold 3 members, the batch 4"):
        fk.solve(survey, stack_params(starts[:3]))
    with pytest.raises(BatchError, match="one leading batch axis"):
        fk.solve(survey, starts[0])
    with pytest.raises(TypeError, match="does not take verbose"):
        fk.solve(survey, stack_params(starts), verbose=True)
    bad = stack_params(starts)
    bad = {**bad, "amp": bad["amp"].at[2].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"members \[2\] are not finite"):
        fk.solve(survey, bad)


def test_bounded_batch_respects_the_bounds():
    problems, starts = _survey(8, seed=1)
    bounded = [
        fk.Problem(None, p.observations[0], bounds={"width": (0.0, None), "amp": (0.0, 100.0)})
        for p in problems
    ]
    near = [s for i, s in enumerate(starts) if i % 20]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = fk.solve(fk.batch(bounded[1:]), stack_params(near))
        singles = [fk.solve(p, s) for p, s in zip(bounded[1:], near)]
    np.testing.assert_array_equal(batched.valid, [r.valid for r in singles])
    for name in TRUTH:
        np.testing.assert_allclose(
            np.asarray(batched.params[name]), [float(r.params[name]) for r in singles], atol=1e-10
        )
    outside = stack_params(near)
    outside = {**outside, "width": outside["width"].at[1].set(-1.0)}
    with pytest.raises(ValueError, match=r"members \[1\] are on or outside the bounds"):
        fk.solve(fk.batch(bounded[1:]), outside)


SHARDED_SCRIPT = """
import json, sys, warnings
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, "tests")
import fitkit as fk
from fitkit.batching import stack_params
from test_batching import _survey

problems, starts = _survey(40)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = fk.solve(fk.batch(problems), stack_params(starts))
print(json.dumps({
    "devices": jax.device_count(),
    "valid": res.valid.tolist(),
    "params": {k: np.asarray(v).tolist() for k, v in res.params.items()},
}))
"""


def test_batch_sharded_over_four_devices_matches_one(on_devices):
    """The batch axis split over a 1-D mesh of 4 (fake CPU) devices: the same members valid and the
    same optima as on one device."""
    one, four = on_devices(SHARDED_SCRIPT, 1), on_devices(SHARDED_SCRIPT, 4)
    assert (one["devices"], four["devices"]) == (1, 4)
    assert one["valid"] == four["valid"] and sum(one["valid"]) == 38
    valid = np.asarray(one["valid"])
    for name in TRUTH:
        gap = np.abs(np.asarray(one["params"][name]) - np.asarray(four["params"][name]))[valid]
        assert gap.max() < 1e-12, name


PROCESS_SCRIPT = """
import json, sys, warnings
import jax, numpy as np
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, process = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process)
sys.path.insert(0, "tests")
import fitkit as fk
from fitkit.batching import gather, local_rows, stack_params
from test_batching import _survey

problems, starts = _survey(40)
rows = local_rows(40)
survey = fk.batch([problems[k] for k in rows])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = fk.solve(survey, stack_params([starts[k] for k in rows]))
everything, cov = gather(res), gather(fk.covariance(survey, res))
print(json.dumps({
    "process": jax.process_index(),
    "rows": rows.tolist(),
    "local_devices": len(jax.local_devices()),
    "devices": jax.device_count(),
    "size": len(everything),
    "valid": everything.valid.tolist(),
    "std": np.asarray(cov.std["amp"]).tolist(),
    "params": {k: np.asarray(v).tolist() for k, v in everything.params.items()},
}))
"""


def test_batch_over_two_processes_matches_one_device(on_devices, tmp_path):
    """Two local processes joined by `jax.distributed` (2 CPU devices each): each fits its block of
    members, `gather` puts the survey together in every process, equal to the one-device run."""
    import json
    import os
    import pathlib
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    logs = [open(tmp_path / f"process{k}.log", "w+") for k in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, str(port), str(k)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=log,
        )
        for k, log in enumerate(logs)
    ]
    one = on_devices(SHARDED_SCRIPT, 1)
    for worker in workers:
        worker.wait(timeout=600)
    outputs = []
    for worker, log in zip(workers, logs):
        log.seek(0)
        text = log.read()
        assert worker.returncode == 0, text[-3000:]
        outputs.append(json.loads(text.strip().splitlines()[-1]))
    assert [o["rows"] for o in outputs] == [list(range(20)), list(range(20, 40))]
    assert all(o["local_devices"] == 2 and o["devices"] == 4 and o["size"] == 40 for o in outputs)
    assert outputs[0]["params"] == outputs[1]["params"]  # every process holds the whole survey
    valid = np.asarray(one["valid"])
    assert outputs[0]["valid"] == one["valid"]
    for name in TRUTH:
        gap = np.abs(np.asarray(outputs[0]["params"][name]) - np.asarray(one["params"][name]))[valid]
        assert gap.max() < 1e-12, name
    std = np.asarray(outputs[0]["std"])
    assert np.isfinite(std[valid]).all() and np.isnan(std[~valid]).all()


def test_gather_with_one_process_is_the_identity():
    problems, starts = _survey(3)
    from fitkit.batching import gather, local_rows

    assert local_rows(3).tolist() == [0, 1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fk.solve(fk.batch(problems), stack_params(starts))
    assert gather(res) is res
    with pytest.raises(TypeError, match="BatchResult or a BatchCovariance"):
        gather({"a": 1})


def _ragged(size, seed=3):
    """Peaks sampled on 40 to 100 points each (light curves of different lengths)."""
    rng = np.random.default_rng(seed)
    problems = []
    for _ in range(size):
        n = int(rng.integers(40, 101))
        x = np.linspace(-5.0, 5.0, n)
        clean = TRUTH["amp"] * np.exp(-0.5 * ((x - TRUTH["mu"]) / TRUTH["width"]) ** 2) + TRUTH["bkg"]
        data = jnp.asarray(clean + 0.3 * rng.normal(size=n))
        problems.append(fk.Problem(None, Peak(data=data, error=jnp.full(n, 0.3), x=jnp.asarray(x))))
    start = {
        "amp": jnp.asarray(4.0),
        "mu": jnp.asarray(0.0),
        "width": jnp.asarray(1.0),
        "bkg": jnp.asarray(0.8),
    }
    return problems, [start] * size


def test_ragged_members_are_padded_with_masked_points():
    problems, starts = _ragged(12)
    with pytest.raises(BatchError, match=r"pad=True"):
        fk.batch(problems)
    survey = fk.batch(problems, pad=True)
    assert survey.problem.observations[0].data.shape == (12, 95)
    assert survey.member(1).n_data == problems[1].n_data == 45  # each member counts its own points
    batched = fk.solve(survey, stack_params(starts))
    singles = [fk.solve(p, s) for p, s in zip(problems, starts)]
    assert batched.valid.all() and all(r.valid for r in singles)
    for name in TRUTH:
        np.testing.assert_allclose(
            np.asarray(batched.params[name]), [float(r.params[name]) for r in singles], rtol=0, atol=1e-12
        )
    np.testing.assert_allclose(batched.loss, [r.loss for r in singles], rtol=1e-13)
    cov = fk.covariance(survey, batched)
    np.testing.assert_allclose(cov.matrix[4], fk.covariance(problems[4], singles[4]).matrix, rtol=1e-9)


def test_from_arrays_builds_the_batch_of_the_problems_it_stands_for():
    problems, starts = _survey(30)
    data = np.stack([np.asarray(p.observations[0].data) for p in problems])
    template = problems[0]
    survey = fk.Batch.from_arrays(template, lambda p: p.observations[0].data, data)
    assert len(survey) == 30 and survey.problem.observations[0].x.shape == (30, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = fk.solve(survey, stack_params(starts))
        theirs = fk.solve(fk.batch(problems), stack_params(starts))
    np.testing.assert_array_equal(mine.valid, theirs.valid)
    for name in TRUTH:
        np.testing.assert_allclose(
            np.asarray(mine.params[name])[mine.valid], np.asarray(theirs.params[name])[mine.valid], atol=1e-12
        )
    # masks may differ per member, also where the template has none: each member counts its points
    mask = np.ones(data.shape, bool)
    mask[:, :30] = False
    mask[5, 50:] = False
    masked = fk.Batch.from_arrays(
        template, lambda p: (p.observations[0].data, p.observations[0].mask), (data, mask)
    )
    assert masked.member(5).n_data == 20 and masked.member(6).n_data == 70
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fk.solve(masked, stack_params(starts))
    alone = fk.Problem(
        None, Peak(data=jnp.asarray(data[5]), error=jnp.full(100, 0.3), x=X, mask=jnp.asarray(mask[5]))
    )
    single = fk.solve(alone, starts[5])
    assert fitted.valid[5] and single.valid
    assert abs(float(fitted.params["mu"][5]) - float(single.params["mu"])) < 1e-12
    assert fitted.loss[5] == pytest.approx(single.loss, rel=1e-13)


def test_from_arrays_refuses_bad_arrays_before_compiling():
    problems, _ = _survey(2)
    template = problems[0]
    data = np.stack([np.asarray(p.observations[0].data) for p in problems])
    where = lambda p: p.observations[0].data  # noqa: E731
    with pytest.raises(BatchError, match=r"shape \(2, 99\).*give shape \(members,\) \+ \(100,\)"):
        fk.Batch.from_arrays(template, where, data[:, :99])
    with pytest.raises(BatchError, match="give as many values"):
        fk.Batch.from_arrays(template, lambda p: (p.observations[0].data, p.observations[0].error), (data,))
    with pytest.raises(BatchError, match=r"hold \[2, 3\] members"):
        fk.Batch.from_arrays(
            template, lambda p: (p.observations[0].data, p.observations[0].error), (data, np.ones((3, 100)))
        )
    bad = data.copy()
    bad[1, 7] = np.nan
    with pytest.raises(
        fk.ObservationError, match="from_arrays, over all members: .*1 of 200 unmasked data points"
    ):
        fk.Batch.from_arrays(template, where, bad)
    empty = np.ones(data.shape, bool)
    empty[1] = False
    with pytest.raises(fk.ObservationError, match=r"members \[1\] use none of the points"):
        fk.Batch.from_arrays(
            template, lambda p: (p.observations[0].data, p.observations[0].mask), (data, empty)
        )
    with pytest.raises(TypeError, match="needs an fk.Problem"):
        fk.Batch.from_arrays({"a": 1}, where, data)
    correlated = fk.Problem(
        None,
        Peak(
            data=jnp.asarray(data[0]),
            error=None,
            x=X,
            likelihood=fk.MultivariateNormal(covariance=0.09 * jnp.eye(100)),
        ),
    )
    with pytest.raises(ValueError, match="prepared from each member's data"):
        fk.Batch.from_arrays(correlated, where, data)


def test_a_survey_in_chunks_streamed_from_a_memory_map_resumes_where_it_stopped(tmp_path, monkeypatch):
    """10 chunks of 8 members read from a .npy memory map, each saved as it finishes; an interrupted
    run, called again, fits only the chunks it had not saved, and equals the batch fitted at once."""
    import fitkit.batching._chunks as chunks

    problems, starts = _survey(75)
    data = np.stack([np.asarray(p.observations[0].data) for p in problems])
    np.save(tmp_path / "data.npy", data)
    on_disk = np.load(tmp_path / "data.npy", mmap_mode="r")
    begin = jax.tree.map(np.asarray, stack_params(starts))
    where = lambda p: p.observations[0].data  # noqa: E731
    store = tmp_path / "fits"
    solved = []
    real = chunks._solved

    class Interrupted(Exception):
        """Stands for Ctrl-C or a job killed half-way (pytest takes a real KeyboardInterrupt for itself)."""

    stop = {"after": 4}

    def interrupted(*args):
        if len(solved) == stop["after"]:
            raise Interrupted
        solved.append(args[4])
        return real(*args)

    monkeypatch.setattr(chunks, "_solved", interrupted)
    with pytest.raises(Interrupted):
        chunks.solve_chunks(problems[0], where, on_disk, begin, chunk_size=8, store=store, progress=False)
    assert solved == [0, 8, 16, 24] and len(list(store.glob("chunk-*.npz"))) == 4
    solved.clear()
    stop["after"] = None
    res, cov = chunks.solve_chunks(
        problems[0], where, on_disk, begin, chunk_size=8, store=store, progress=False, warn=False
    )
    assert solved == [32, 40, 48, 56, 64, 72]  # only the chunks not saved; the last (3 members) padded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = fk.solve(fk.batch(problems), stack_params(starts))
    assert len(res) == 75 and res.valid.tolist() == whole.valid.tolist()
    for name in TRUTH:
        np.testing.assert_allclose(
            np.asarray(res.params[name])[res.valid], np.asarray(whole.params[name])[res.valid], atol=1e-12
        )
    assert res.flags_of(0) == whole.flags_of(0)
    np.testing.assert_allclose(
        cov.matrix[cov.ok], fk.covariance(fk.batch(problems), whole).matrix[cov.ok], rtol=1e-9
    )
    # a third call only reads the store
    solved.clear()
    again, _ = chunks.solve_chunks(
        problems[0], where, on_disk, begin, chunk_size=8, store=store, progress=False, warn=False
    )
    assert solved == [] and np.array_equal(np.asarray(again.params["mu"]), np.asarray(res.params["mu"]))
    # the same store for another survey, or other settings, is refused
    with pytest.raises(BatchError, match="holds the results of another survey .*arrays"):
        chunks.solve_chunks(problems[0], where, data + 1.0, begin, chunk_size=8, store=store, progress=False)
    with pytest.raises(BatchError, match="settings"):
        chunks.solve_chunks(
            problems[0], where, on_disk, begin, chunk_size=8, store=store, progress=False, covariance=False
        )
    with pytest.raises(BatchError, match="chunk_size must be a positive integer"):
        chunks.solve_chunks(problems[0], where, on_disk, begin, chunk_size=0)
    with pytest.raises(BatchError, match="the starts hold 74 members, the values 75"):
        chunks.solve_chunks(problems[0], where, on_disk, jax.tree.map(lambda x: x[:74], begin))


def test_batched_fit_equals_one_fit_per_member():
    problems, starts = _survey(40)
    stopper = fk.Stopper(patience=30, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batched = fk.fit(
            fk.batch(problems), stack_params(starts), optax.adam(0.05), steps=3000, stopper=stopper
        )
        singles = [
            fk.fit(p, s, optax.adam(0.05), steps=3000, stopper=stopper, progress=False)
            for p, s in zip(problems, starts)
        ]
    assert batched.method == "fit:optax" and len(batched) == 40
    np.testing.assert_array_equal(batched.valid, [r.valid for r in singles])
    assert [batched.flags_of(i) for i in range(40)] == [r.flags for r in singles]
    assert not batched.valid[::20].any() and batched.valid.sum() >= 36
    # Each member stops on its own stopper, within a few steps of its single fit (the vmapped loop
    # rounds differently, so Adam's paths part by ~1e-8: far inside the errors of ~0.05).
    np.testing.assert_array_equal(batched.converged, [r.converged for r in singles])
    assert np.abs(batched.steps - np.array([r.steps for r in singles])).max() <= 20
    assert batched.steps.min() < batched.steps.max()
    for name in TRUTH:
        theirs = np.array([float(r.params[name]) for r in singles])
        np.testing.assert_allclose(np.asarray(batched.params[name]), theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(batched.loss, [r.loss for r in singles], rtol=1e-9)
    # the batch's history: members still running, falling to zero as each member's patience runs out
    running = batched.history["running"]
    assert running[0] == 40 and running[-1] == 0 and np.all(np.diff(running) <= 0)


def test_batched_fit_flags_a_member_that_goes_non_finite_and_refuses_single_only_options():
    problems, starts = _survey(6)
    starts = stack_params(starts)
    broken = {**starts, "width": starts["width"].at[2].set(0.0)}  # x / 0: the loss is NaN at the start
    with pytest.warns(fk.ConvergenceWarning, match="flagged non_finite"):
        res = fk.fit(fk.batch(problems), broken, optax.adam(0.05), steps=200)
    assert res.flags_of(2)[0] == "non_finite" and not res.valid[2] and res.steps[2] == 1
    assert not res.flags["non_finite"][[0, 1, 3, 4, 5]].any() and (res.steps[[1, 3, 4, 5]] > 1).all()
    for option in (
        {"batch_size": 2},
        {"validation": problems[0]},
        {"callback": lambda *a: None},
        {"precondition": "fisher"},
        {"fixed": ["bkg"]},
    ):
        with pytest.raises(ValueError, match=f"does not take {next(iter(option))}="):
            fk.fit(fk.batch(problems), starts, optax.adam(0.05), steps=10, **option)
    with pytest.raises(BatchError, match="the starts hold 5 members, the batch 6"):
        fk.fit(fk.batch(problems), jax.tree.map(lambda x: x[:5], starts), optax.adam(0.05), steps=10)
    with pytest.raises(ValueError, match="give the number of steps"):
        fk.fit(fk.batch(problems), starts, optax.adam(0.05))


def test_engines_of_one_problem_refuse_a_batch_by_name():
    problems, starts = _survey(3)
    survey, starts = fk.batch(problems), stack_params(starts)
    for name, call in (
        ("fk.intervals", lambda: fk.intervals(survey, starts)),
        ("fk.sample", lambda: fk.sample(survey, starts)),
        ("fk.analyse", lambda: fk.analyse(survey, starts)),
        ("fk.fisher", lambda: fk.fisher(survey, starts)),
    ):
        with pytest.raises(TypeError, match=f"{name} does not take a batch yet"):
            call()
