"""Scratch folders that a killed command does not leave behind.

smt renders packages, snapshots templates and merges files in scratch folders under the system's temp folder.
A command killed with SIGKILL cannot run its ``finally``, so before this module every killed sync left its
folders (a rendered package each) in ``/tmp``. Now each folder is named ``smt-<kind>-<random>`` and holds an
exclusive ``flock`` on its ``.owner`` file for as long as it is in use. The kernel drops that lock when the
holder dies, however it dies, so a folder whose lock can be taken has no live owner: ``sweep`` removes those.
A lock, unlike a pid in the folder's name, is not fooled by a reused pid or by another pid namespace sharing
the same ``/tmp`` (containers).

Every ``smt`` command sweeps once as it starts (cli/__init__.py). A folder without an ``.owner`` file is
left alone: it is being created, or it was made by something else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "smt-"
OWNER = ".owner"


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A new empty folder ``smt-<kind>-*`` in the temp folder, removed on exit; ``sweep`` removes it once
    this process is gone if the exit never ran."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    fd = os.open(path / f"{OWNER}.new", os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by commands we run
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows the file yet: cannot block
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for a person who looks: the lock, not this, decides
        os.rename(path / f"{OWNER}.new", path / OWNER)  # a sweep only ever sees it locked
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)  # after the removal: a sweep never sees this folder unlocked while it is still ours


def sweep(parent: Path | None = None) -> list[Path]:
    """Remove the scratch folders under ``parent`` (default: the temp folder) whose owner is gone; returns
    them. Never raises: a folder it cannot read or remove is left for the next sweep."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            if _ownerless(Path(entry.path)):
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _ownerless(folder: Path) -> bool:
    """Remove ``folder`` if its ``.owner`` lock can be taken (its owner is dead); whether it was removed."""
    try:
        fd = os.open(folder / OWNER, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:  # no owner file: being created, or not ours
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    finally:
        os.close(fd)
