"""The fleet lock: one command that writes the fleet (sync, recover, release, new) at a time per repository.

An advisory ``flock`` on ``.git/smt.lock``: the kernel releases it when its holder dies, so a killed command
never leaves a stale lock. The file names its holder (pid, command, start time) for the message a second
command prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import _git
from .errors import SmtError

LOCK_FILE = "smt.lock"


class FleetLocked(SmtError):
    """Another smt command is writing the fleet."""


@contextlib.contextmanager
def fleet_lock(root: Path, command: str | None = None) -> Iterator[None]:
    """Hold the fleet lock of ``root``'s repository, or raise FleetLocked naming the holder."""
    path = _git.git_path(root, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FleetLocked(
                f"another smt command is changing this fleet ({_holder(path)}); wait for it to finish, then rerun"
            ) from None
        holder = {"pid": os.getpid(), "command": command or " ".join(sys.argv), "since": time.strftime("%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']}, since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
