"""Per-package work in parallel worker processes that die with their parent (sync planning, status, check).

Rendering a package through copier is CPU-bound Python (Jinja compiles every file of the template again), so
a fleet of n packages costs n renders; worker processes spread them over the machine's cores. Results come
back in the order of the inputs, so what a command prints does not depend on ``jobs``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PR_SET_PDEATHSIG = 1


def worker_count(jobs: int | None, tasks: int) -> int:
    """``jobs`` workers (None: one per CPU), never more than there are ``tasks``, at least one."""
    return max(1, min(jobs or os.cpu_count() or 1, tasks))


def map_in_workers(fn: Callable[[T], R], items: Iterable[T], jobs: int | None) -> Iterator[R]:
    """``fn`` over ``items`` in order: in this process when one worker is enough, else in a pool of workers
    that exit as soon as this process is gone (even by kill -9). ``fn`` and the items must pickle."""
    items = list(items)
    workers = worker_count(jobs, len(items))
    if workers == 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        yield from pool.map(fn, items)


def die_with_parent(parent: int) -> None:
    """Worker initializer: exit as soon as the process that started this worker is gone (even by kill -9).

    Linux delivers SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG); elsewhere, and as a second guard,
    a thread notices the worker being re-parented.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the guard was in place
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="smt-parent-watch").start()
