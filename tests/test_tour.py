"""The README's tour runs as written, command by command, in a fresh clone with a venv of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .helpers import BIN, REPO, git


def tour_commands(readme: str) -> str:
    """The first ```bash block under the heading '## A tour of the loop'."""
    section = readme[readme.index("## A tour of the loop") :]
    start = section.index("```bash\n") + len("```bash\n")
    return section[start : section.index("```", start)]


def _venv_beside(clone: Path) -> None:
    """``clone/.venv``: a fresh venv that sees this environment's packages (torch, smt …) but installs into itself."""
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]
    (site / "smt-tour-parent.pth").write_text(f"import site; site.addsitedir({ours!r})\n")


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(REPO), str(clone))
    _venv_beside(clone)
    commands = tour_commands((REPO / "README.md").read_text())  # the working tree's README (= HEAD in CI)
    assert "pip install" in commands and "source .venv/bin/activate" in commands
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{env.get('PATH', '')}:{BIN}"  # smt and copier; the activated venv comes first
    env["SMT_DATA_CACHE"] = str(tmp_path / "cache")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=clone, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    package = clone / "generated" / "ctr_feed"
    assert (package / "runs" / "a" / "model.pt2").is_file()
    assert "ctr_feed" in done.stdout and "ctr_wide" in done.stdout  # smt status lists both
