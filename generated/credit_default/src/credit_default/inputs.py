"""Checks of a training run's input files (template-owned).

A resumed run must read the files it started with; a validation split must hold both classes of every event,
since validation NE drives early stopping and the best checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ConfigError, DataError
from .preprocess import EncodedData
from .spec import SPEC


def file_identity(path: str | Path) -> dict:
    """What identifies a data file across a resume: its size and a digest of its first and last MiB."""
    path = Path(path)
    if not path.is_file():
        return {"path": str(path)}  # the reader reports the missing file
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        digest.update(fh.read(1 << 20))
    return {"path": str(path.resolve()), "bytes": size, "sha256_head_tail": digest.hexdigest()}


def check_same_inputs(recorded: dict | None, current: dict) -> None:
    """A resumed run must read the files it started with (same bytes; the path may differ)."""
    for split, now in current.items():
        then = (recorded or {}).get(split)
        if then is not None and (then.get("bytes"), then.get("sha256_head_tail")) != (
            now.get("bytes"),
            now.get("sha256_head_tail"),
        ):
            raise ConfigError(
                f"--resume: the {split} file {now['path']} is not the one this run started with "
                f"({then['path']}, {then.get('bytes')} bytes); pass that file, or start a new --out"
            )


def check_both_classes(data: EncodedData, path: str | Path) -> None:
    """Validation NE needs positives and negatives of every event; refuse a split that lacks either."""
    rates = data.labels.mean(dim=0)
    for event, rate in zip(SPEC.events, rates.tolist()):
        if not 0.0 < rate < 1.0:
            kind = "positive" if rate == 0.0 else "negative"
            raise DataError(
                f"valid file {path}: event '{event}' has no {kind} label in its {len(data)} row(s); "
                "validation NE needs both classes, so use a larger valid split"
            )
