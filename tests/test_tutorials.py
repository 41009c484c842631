"""Every tutorial runs as a plain script (at reduced sizes: FITKIT_QUICK=1)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_as_script(path, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "FITKIT_QUICK": "1", "FITKIT_FIGURES": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
