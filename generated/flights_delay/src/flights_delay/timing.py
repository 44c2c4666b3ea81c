"""Where a training process spends its wall time, per named phase (template-owned).

One process-wide ``PHASES`` clock. Code wraps its work in ``with PHASES.phase("read"):`` and ``train``
reports the totals (``phases`` in its summary and ``metrics.json``) beside ``process_seconds``, the wall
time since the package's CLI module was imported. The totals are the process's: a CLI process trains once;
a library caller that trains several times in one process sees the sums. Phases do not nest: a phase opened
inside another is charged to itself and taken out of the outer one, so the totals add up to at most
``process_seconds``.

Phase names: ``imports`` (torch and the training modules), ``read`` (data file → checked table), ``fit``
(vocabularies, dense statistics), ``encode`` (table → tensors), ``cache_load`` / ``cache_write`` (the
encoded-data cache), ``stage`` (tensors to the device), ``build`` (model and optimizers), ``steps`` (the
train loop's forward, backward and updates, with batch gathering), ``evaluate`` (validation predictions and
metrics), ``checkpoint`` (``best.pt`` / ``last.pt`` writes; with ``async_checkpoints`` only the snapshot
and any wait for the previous write), ``calibrate``, ``test`` (scoring ``train --test``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PROCESS_STARTED = time.perf_counter()  # reset by the CLI at import, before torch is imported


class PhaseClock:
    """Wall seconds per phase; a nested phase is subtracted from the phase it interrupts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[list] = []  # [name, started, seconds of nested phases]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the wall time of the ``with`` block to ``name`` (minus phases opened inside it).

        >>> clock = PhaseClock()
        >>> with clock.phase("outer"):
        ...     with clock.phase("inner"):
        ...         pass
        >>> sorted(clock.seconds)
        ['inner', 'outer']
        """
        frame = [name, time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[1]
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - frame[2]
            if self._stack:
                self._stack[-1][2] += elapsed

    def report(self) -> dict[str, float]:
        """Seconds per phase (rounded to ms), plus ``other``: process wall time no phase accounts for."""
        total = time.perf_counter() - PROCESS_STARTED
        phases = {name: round(seconds, 3) for name, seconds in self.seconds.items()}
        phases["other"] = round(max(0.0, total - sum(self.seconds.values())), 3)
        return phases


PHASES = PhaseClock()


def process_seconds() -> float:
    """Wall seconds since the CLI module was imported."""
    return time.perf_counter() - PROCESS_STARTED
