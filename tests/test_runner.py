"""A package's processes run as its user would run them, and end when the smt process that started them ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaffold import runner

from .helpers import process_stat

REPO = Path(__file__).resolve().parents[1]

MAIN = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    if sys.argv[1] == "echo":
        print(" ".join(sys.argv[2:]), os.environ.get("OMP_NUM_THREADS"), Path.cwd().name)
        sys.exit(3)
    Path(sys.argv[2]).write_text(str(os.getpid()))
    time.sleep(600)
    """)


@pytest.fixture
def package(tmp_path) -> Path:
    """The smallest thing ``runner`` runs: ``src/<name>/__main__.py`` (``echo`` or ``sleep PIDFILE``)."""
    root = tmp_path / "tiny_pkg"
    (root / "src" / "tiny_pkg").mkdir(parents=True)
    (root / "src" / "tiny_pkg" / "__init__.py").write_text("")
    (root / "src" / "tiny_pkg" / "__main__.py").write_text(MAIN)
    return root


def test_the_command_runs_as_itself_with_its_arguments_env_and_exit_status(package):
    proc = runner.run_cli(package, "echo", "a b", "c", threads=2)
    assert proc.returncode == 3
    assert proc.stdout.strip() == "a b c 2 tiny_pkg"


# How smt starts a package's (or a peer's) process: its CLI and tests, and the speed benchmark's timed runs.
CALLERS = {
    "run_cli": "runner.run_cli(package, 'sleep', sys.argv[2])",
    "bench speed": "speed.run_measured([sys.executable, '-m', package.name, 'sleep', sys.argv[2]], package, "
    "runner.package_env(package))",
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("how", sorted(CALLERS))
def test_a_package_process_ends_when_the_smt_process_that_started_it_is_killed(package, tmp_path, how):
    pidfile = tmp_path / "pid"
    caller = "import sys; from pathlib import Path; from scaffold import runner, speed; "
    caller += f"package = Path(sys.argv[1]); {CALLERS[how]}"
    smt = subprocess.Popen(
        [sys.executable, "-c", caller, str(package), str(pidfile)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    deadline = time.monotonic() + 60
    while not pidfile.is_file() or not pidfile.read_text():
        assert time.monotonic() < deadline and smt.poll() is None, "the package process never started"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert _alive(child)
    smt.send_signal(signal.SIGKILL)
    smt.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the package process outlived the killed smt process"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    fields = process_stat(pid)
    return fields is not None and fields[0] != "Z"
