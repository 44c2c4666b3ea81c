"""Test helpers: real temp git repositories holding a copy of the template, real copier, real git."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from scaffold import runner

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(sys.executable).parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout


def copy_template(dest: Path) -> Path:
    """The working tree's template (copier.yml + template_repo/, and the technique catalogue beside them)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "copier.yml", dest / "copier.yml")
    shutil.copy2(REPO / "techniques.yml", dest / "techniques.yml")
    shutil.copytree(REPO / "template_repo", dest / "template_repo", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def make_template_repo(root: Path, tag: str | None = "v1") -> Path:
    """A fresh git repository whose root is a copy of the template, committed (and tagged)."""
    copy_template(root)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@smt.invalid")
    git(root, "config", "user.name", "SMT test")
    commit_all(root, "template v1")
    if tag:
        git(root, "tag", tag)
    return root


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def run_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A console script of the test environment (smt, copier, black, ruff) as a real subprocess."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True)


def run_package_tests(package: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    """The package's own test suite, in its own process, as a user would run it."""
    return runner.run_tests(package, *pytest_args)


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes), without caches."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }


def process_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, …); None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
