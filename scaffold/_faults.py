"""Fault injection for the crash tests: ``SMT_FAULT=<point>`` makes this process kill itself (SIGKILL) there.

The points are named where a kill matters most (after the journal is written, after the k-th file, after the
tests, after staging, during recovery). Outside the tests the variable is unset and a point costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SMT_FAULT"


def point(name: str) -> None:
    """SIGKILL the current process when ``$SMT_FAULT`` equals ``name``."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
