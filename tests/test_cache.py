"""Compile once per structure: the cache registry, optimiser fingerprints, the persistent cache settings."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fitkit as fk
from fitkit import _cache
from fitkit.examples import gaussians


@pytest.fixture(scope="module")
def problem():
    prob, _, start = gaussians.make_problem()
    return prob, start


def _tutorial_optimisers():
    return {
        ("mean", "std"): optax.sgd(0.002, momentum=0.5),
        "power": optax.sgd(fk.delay(0.005, 50), momentum=0.5),
    }


def test_optimisers_built_again_share_a_fingerprint():
    a, b = _tutorial_optimisers(), _tutorial_optimisers()
    leaves_a, leaves_b = jax.tree.leaves(list(a.values())), jax.tree.leaves(list(b.values()))
    assert all(_cache.fingerprint(x) == _cache.fingerprint(y) for x, y in zip(leaves_a, leaves_b))
    # another learning rate is another program (it is a constant of the compiled update)
    other = optax.sgd(0.003, momentum=0.5)
    assert _cache.fingerprint(other.update) != _cache.fingerprint(optax.sgd(0.002, momentum=0.5).update)


def test_unhashable_statics_match_only_themselves():
    class Opaque:
        __hash__ = None

    one, two = Opaque(), Opaque()
    assert _cache.fingerprint(one) == _cache.fingerprint(one)
    assert _cache.fingerprint(one) != _cache.fingerprint(two)
    small, large = np.arange(4.0), np.zeros(10_000)
    assert _cache.fingerprint(small) == _cache.fingerprint(small.copy())  # small arrays by value
    assert _cache.fingerprint(large) != _cache.fingerprint(large.copy())  # large ones by identity


def test_second_calls_compile_nothing(problem):
    prob, start = problem
    first = fk.fit(prob, start, _tutorial_optimisers(), steps=300, progress=False, warn=False)
    moved = jax.tree.map(lambda x: x * 1.01, start)
    again = fk.fit(prob, moved, _tutorial_optimisers(), steps=700, progress=False, warn=False)
    assert again.compile_time == 0.0 and again.steps == 700
    # the same numbers as a fresh compile would give: rerun the first call after clearing
    solved = fk.solve(prob, start, warn=False)
    resolved = fk.solve(prob, moved, warn=False)
    assert resolved.compile_time == 0.0 and resolved.valid
    fk.clear_caches()
    fresh = fk.fit(prob, start, _tutorial_optimisers(), steps=300, progress=False, warn=False)
    assert fresh.compile_time > 0.0
    for name in start:
        np.testing.assert_array_equal(fresh.params[name], first.params[name])
    np.testing.assert_allclose(solved.params["mean"], resolved.params["mean"], rtol=1e-6)


def test_new_data_values_reuse_the_compiled_sample(problem):
    prob, start = problem
    best = fk.solve(prob, start, warn=False)
    options = dict(num_warmup=20, num_samples=30, num_chains=2, progress=False)
    fk.sample(prob, best.params, **options)
    other, _, _ = gaussians.make_problem(seed=3)
    post = fk.sample(other, best.params, **options)
    assert post.diagnostics["compile_time"] == 0.0 and post.latent.shape == (2, 30, 6)


def _cache_setting(env: dict) -> str:
    code = "import jax, fitkit; print(jax.config.jax_compilation_cache_dir)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_persistent_cache_follows_the_environment(tmp_path):
    assert _cache_setting({"FITKIT_COMPILE_CACHE": str(tmp_path / "here")}) == str(tmp_path / "here")
    assert _cache_setting({"FITKIT_COMPILE_CACHE": "off"}) == "None"
    default = _cache_setting({"FITKIT_COMPILE_CACHE": "", "XDG_CACHE_HOME": str(tmp_path)})
    assert default == str(tmp_path / "fitkit" / "jax")


def test_import_fitkit_loads_no_engine_or_plotting_library():
    code = (
        "import sys, fitkit; "
        "print(sorted(m for m in ('matplotlib', 'chainconsumer', 'pandas', 'arviz', 'optimistix', 'numpyro') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_memo_and_registry_are_cleared_together():
    calls = []
    key = _cache.structure_key({"a": jnp.zeros(3)})
    assert key == _cache.structure_key({"a": jnp.ones(3)})  # values do not enter the key
    assert key != _cache.structure_key({"a": jnp.ones(4)})
    _cache.memo("test memo", key, lambda: calls.append(1) or 7)
    assert _cache.memo("test memo", key, lambda: calls.append(1) or 8) == 7 and calls == [1]
    fk.clear_caches()
    assert _cache.memo("test memo", key, lambda: calls.append(1) or 9) == 9 and calls == [1, 1]
