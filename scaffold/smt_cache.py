"""The repository's ``.smt-cache/``: results smt can recompute (trainings, package capacities), never committed.

The folder ignores itself, as pytest's ``.pytest_cache`` does: a ``.gitignore`` of ``*`` inside it. So a
repository whose own ``.gitignore`` does not name it still has a clean ``git status``, and the commands that
refuse to run on uncommitted changes (adopt, release) do not trip over a cache entry.
"""

from __future__ import annotations

import os
from pathlib import Path

NAME = ".smt-cache"
IGNORE_ALL = "# made by smt: everything here can be recomputed\n*\n"


def folder(root: Path, name: str) -> Path:
    """``root/.smt-cache/name``, made if missing, inside a ``.smt-cache`` that git ignores."""
    top = Path(root) / NAME
    (top / name).mkdir(parents=True, exist_ok=True)
    try:  # first writer wins; an existing file is left as it is
        fd = os.open(top / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return top / name
    with os.fdopen(fd, "w") as fh:
        fh.write(IGNORE_ALL)
    return top / name


def runs(root: Path) -> Path:
    """Finished qualification trainings, keyed on package content, data, seed and options (qualify.RunCache)."""
    return folder(root, "runs")


def capacities(root: Path) -> Path:
    """Package capacities keyed on interpreter, torch and the content of ``src/`` (PackageCLI.capacity)."""
    return folder(root, "capacity")
