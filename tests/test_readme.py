"""The README's quickstart runs as written, and its two commands are where CI looks."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs():
    block = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first = float(out.stdout.split()[0])
    assert first > 10.0  # chi2r at the (bad) start


def test_two_setup_commands_come_first():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert len(commands[0].splitlines()) == 1 and "python -m fitkit.demo" in commands[0]
    assert commands[1].endswith("pytest -n auto") and "<!-- test-command -->" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci


def test_version_after_install():
    code = "import fitkit as fk; fk.enable_x64(); print(fk.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0.1.0"
