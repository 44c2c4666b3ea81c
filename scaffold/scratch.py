"""Scratch folders that a killed command does not leave behind.

smt renders packages, snapshots templates and merges files in scratch folders under the system's temp folder.
A command killed with SIGKILL cannot run its ``finally``, so before this module every killed sync left its
folders (a rendered package each) in ``/tmp``. Now each folder is named ``smt-<kind>-<random>`` and holds an
exclusive ``flock`` on its ``.owner`` file for as long as it is in use. The kernel drops that lock when the
holder dies, however it dies, so a folder whose lock can be taken has no live owner: ``sweep`` removes those.
A lock, unlike a pid in the folder's name, is not fooled by a reused pid or by another pid namespace sharing
the same ``/tmp`` (containers).

Every ``smt`` command sweeps once as it starts (cli/__init__.py). A folder without an ``.owner`` file is
left alone: it is being created, or it was made by something else. The one exception is a folder that holds
nothing but an unlocked ``.owner.new`` older than ``GRACE_SECONDS``: its maker was killed in the instant
between creating its lock file and renaming it into place (a live maker renames it within microseconds).
A kill even earlier, between making the folder and creating its lock file, leaves it empty: an empty folder
named as ``scratch_dir`` names them (``smt-<kind>-`` and mkdtemp's 8 characters) is removed once it is older
than ``GRACE_SECONDS``, with ``rmdir``, which fails if anything has appeared in it since. A maker so slow
that its folder was removed under it makes another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import _faults

PREFIX = "smt-"
OWNER = ".owner"
NEW_OWNER = f"{OWNER}.new"
GRACE_SECONDS = 60.0  # an unlocked NEW_OWNER this old was left by a killed maker, not one still making it
SCRATCH_NAME = re.compile(rf"{PREFIX}[a-z]+-[a-z0-9_]{{8}}")  # what scratch_dir's mkdtemp makes


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A new empty folder ``smt-<kind>-*`` in the temp folder, removed on exit; ``sweep`` removes it once
    this process is gone if the exit never ran."""
    while True:
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
        _faults.point("scratch:folder-made")
        try:
            fd = os.open(path / NEW_OWNER, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by commands we run
            break
        except FileNotFoundError:  # a sweep took it for a killed maker's: we took over GRACE_SECONDS
            continue
    try:
        _faults.point("scratch:owner-created")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a sweep leaves a fresh NEW_OWNER alone: cannot block
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for a person who looks: the lock, not this, decides
        os.rename(path / NEW_OWNER, path / OWNER)  # a sweep only ever sees it locked
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
    """Remove ``folder`` if its ``.owner`` lock can be taken (its owner is dead), or if it holds only a stale
    ``.owner.new`` (its maker died making it); whether it was removed."""
    try:
        fd = os.open(folder / OWNER, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        if _remove_if_stale_and_empty(folder):
            return True
        fd = _stale_new_owner(folder)
        if fd is None:  # no owner file: being created, or not ours
            return False
    except OSError:
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


def _stale_new_owner(folder: Path) -> int | None:
    """An open descriptor of ``folder``'s ``.owner.new`` when that file is all the folder holds and is older
    than ``GRACE_SECONDS``, else None."""
    if [e.name for e in os.scandir(folder)] != [NEW_OWNER]:
        return None
    fd = os.open(folder / NEW_OWNER, os.O_RDWR | os.O_NOFOLLOW)
    if not _stale(os.fstat(fd).st_mtime):
        os.close(fd)
        return None
    return fd


def _remove_if_stale_and_empty(folder: Path) -> bool:
    """Remove ``folder`` if it is named as ``scratch_dir`` names them, older than ``GRACE_SECONDS`` and empty
    (its maker was killed before it made its lock file); whether it was removed."""
    if not SCRATCH_NAME.fullmatch(folder.name) or not _stale(folder.stat().st_mtime):
        return False
    try:
        folder.rmdir()  # fails unless empty: a maker that has since written its lock file keeps its folder
    except OSError:
        return False
    return True


def _stale(mtime: float) -> bool:
    """Whether a file or folder last changed at ``mtime`` is older than ``GRACE_SECONDS``: no live maker leaves
    its folder half-made that long."""
    return time.time() - mtime >= GRACE_SECONDS
