"""Release records: which commit each template release tags, in a tracked file beside the ledger.

Packages record their template version as a tag (``_commit: v0.6.6``), and sync renders that version again
as the merge base. A clone that did not fetch the tags (``git clone --no-tags``, a push of the branch
without ``--tags``, many CI checkouts) can check the fleet but cannot sync it. ``smt release`` therefore
also appends ``vX.Y.Z <commit sha>`` to ``releases.txt``, which is committed with the fleet, and every smt
command puts back any recorded release tag the clone lacks (annotated, pointing at the recorded commit).
A recorded commit that this clone does not hold (a shallow clone) is left alone; sync then says which
version is missing, as before.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import _git
from ._git import RELEASE_TAG

RELEASES = "releases.txt"


def releases_path(root: Path) -> Path:
    return Path(root) / RELEASES


def read(root: Path) -> dict[str, str]:
    """version → commit sha of every well-formed line of ``releases.txt`` (none when it does not exist);
    a later line for the same version wins."""
    path = releases_path(root)
    if not path.is_file():
        return {}
    recorded = {}
    for line in path.read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2 and RELEASE_TAG.match(parts[0]) and len(parts[1]) == 40:
            recorded[parts[0]] = parts[1]
    return recorded


def record(root: Path, version: str, commit: str) -> None:
    """Append ``version commit`` (one line, fsynced: a kill leaves the line whole or absent)."""
    path = releases_path(root)
    header = "" if path.exists() else "# template release → the commit its tag points at (written by smt release)\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{header}{version} {commit}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_tags(root: Path) -> list[str]:
    """Create the recorded release tags this clone lacks, where it holds their commits; the versions restored."""
    recorded = read(root)
    if not recorded:
        return []
    present = set(_git.run(root, "tag", "--list").split())
    restored = []
    for version, commit in sorted(recorded.items()):
        if version in present or _git.resolve(root, commit) != commit:
            continue
        proc = subprocess.run(
            ["git", "-C", str(root), "tag", "-a", version, commit, "-m", f"Template {version} (from {RELEASES})"],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0 or _git.resolve(root, version) == commit:  # another smt made it meanwhile
            restored.append(version)
    return restored
