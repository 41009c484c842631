import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def optics64():
    """The tutorial's optics problem at 64 pupil pixels, built once per test session (~7 s)."""
    from fitkit.examples import optics

    return optics.make_problem(0, wf_npixels=64)


@pytest.fixture(scope="session")
def on_devices():
    """`on_devices(script, count=4)`: run `script` in a fresh Python on `count` fake CPU devices and
    return the JSON its last line of output prints (the test fails with its stderr if it fails)."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]

    def run(script: str, count: int = 4, timeout: float = 600):
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
            "JAX_PLATFORMS": "cpu",
        }
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run
