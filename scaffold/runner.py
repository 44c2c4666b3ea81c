"""Run a rendered package's own CLI or tests in a subprocess, as its user would (the package stands alone)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from .errors import SmtError
from .workers import PR_SET_PDEATHSIG

CACHE_PARTS = ("__pycache__", ".pytest_cache", ".smt-cache")

# Run before a package's process on Linux: ask the kernel for SIGKILL when our caller dies (it survives the
# exec), give up if the caller is already gone, then exec the real command in this same process.
# workers.die_with_parent does the same in a worker process; this one must run in the package's own process.
_WITH_PARENT = f"""
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(137)
os.execv(sys.argv[2], sys.argv[2:])
"""


def dies_with_us(command: list[str]) -> list[str]:
    """``command`` made to end when this process ends, even by kill -9: a killed sync or qualify leaves no
    package tests or training behind. The process is the same after a short exec (its pid, argv, env and
    exit status are the command's). Unchanged off Linux."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-S", "-c", _WITH_PARENT, str(os.getpid()), *command]


def tree_hash(path: Path) -> str:
    """sha256 over every file under ``path`` (relative path and bytes; caches and bytecode left out): the
    content identity of a package or of part of one. Two renders of the same answers hash alike."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if any(part in CACHE_PARTS for part in file.parts) or rel.endswith(".pyc"):
            continue
        digest.update(rel.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def package_env(package: Path, threads: int | None = None) -> dict:
    """The environment for a package's processes: its ``src/`` importable, pytest's own variables removed, and
    ``OMP_NUM_THREADS`` set to ``threads`` when given (for that process only: this process's stays as it is)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(Path(package).absolute() / "src")  # absolute: the process runs in the package
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cli(
    package: Path, *args: str, capture_stderr: bool = True, threads: int | None = None
) -> subprocess.CompletedProcess:
    """``python -m <package> ARGS`` in the package directory (the import name is the directory name), on
    ``threads`` OpenMP threads when given."""
    return subprocess.run(
        dies_with_us([sys.executable, "-m", package.name, *args]),
        cwd=package,
        env=package_env(package, threads),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
    )


def run_tests(package: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    """The package's own test suite. One thread per process: several suites may run side by side."""
    env = package_env(package, threads=1)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:warnings", *pytest_args]
    return subprocess.run(dies_with_us(args), cwd=package, capture_output=True, text=True, env=env)


def check_cli(package: Path, *args: str, capture_stderr: bool = True, threads: int | None = None) -> str:
    """``run_cli`` that raises SmtError with the command's last stderr line when it fails; returns stdout."""
    proc = run_cli(package, *args, capture_stderr=capture_stderr, threads=threads)
    if proc.returncode != 0:
        last = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise SmtError(f"`python -m {package.name} {args[0]}` failed: {last[0]}")
    return proc.stdout
