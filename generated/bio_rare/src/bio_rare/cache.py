"""Encoded-data cache: a data file is read and encoded once, then loaded as contiguous tensors (template-owned).

``encode_file`` keeps, next to the data, ``.smt-cache/<file>.<key>.pt`` holding the encoded tensors (and, when
it fit the preprocessing, the fitted state). The key digests everything the tensors depend on: the file's
resolved path, size and modification time, the feature schema, the fitted preprocessing state (or "fit on
this file") and the source of ``preprocess.py`` itself, so a change to any of them misses the cache and
re-encodes. Entries are written atomically and loaded memory-mapped; an unreadable or corrupt entry is
ignored and rebuilt, and a read-only data directory just runs uncached.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from . import data as data_module
from . import preprocess
from .data import read_table
from .preprocess import EncodedData, Preprocessor
from .schema import FeatureSchema

CACHE_DIR = ".smt-cache"
KEEP_PER_FILE = 4  # newest entries kept per data file; older ones are pruned on write
# The code that reads, checks and encodes a file: a change to it invalidates every entry.
_ENCODER_SOURCE = hashlib.sha256(
    Path(preprocess.__file__).read_bytes() + Path(data_module.__file__).read_bytes()
).hexdigest()


def encode_file(
    path: str | Path,
    schema: FeatureSchema,
    pre: Preprocessor | None = None,
    use_cache: bool = True,
    require_labels: bool = True,
) -> tuple[Preprocessor, EncodedData]:
    """Encode ``path`` with ``pre`` (or fit a new preprocessor on it when ``pre`` is None), through the cache."""
    path = Path(path)
    entry = _entry_path(path, schema, pre, require_labels) if use_cache and path.is_file() else None
    if entry is not None:
        hit = _load(entry)
        if hit is not None:
            state, data = hit
            return (pre if pre is not None else Preprocessor(schema, state)), data
    table = read_table(path, schema, require_labels=require_labels)
    pre = pre if pre is not None else Preprocessor.fit(table, schema)
    data = pre.transform(table)
    if entry is not None:
        _store(entry, pre.state, data)
    return pre, data


def _entry_path(path: Path, schema: FeatureSchema, pre: Preprocessor | None, require_labels: bool) -> Path:
    stat = path.stat()
    parts = {
        "file": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "schema": schema.fingerprint(),
        "preprocessor": "fit" if pre is None else json.dumps(pre.state, sort_keys=True),
        "encoder": _ENCODER_SOURCE,
        "labels": require_labels,
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return path.parent / CACHE_DIR / f"{path.name}.{key}.pt"


def _load(entry: Path) -> tuple[dict, EncodedData] | None:
    if not entry.is_file():
        return None
    try:
        payload = torch.load(entry, map_location="cpu", weights_only=True, mmap=True)
        data = EncodedData(payload["sparse"], list(payload["multi_hot"]), payload["dense"], payload["labels"])
        return payload["state"], data
    except Exception as exc:  # a truncated or foreign file: rebuild it
        print(f"note: ignoring unreadable cache entry {entry} ({type(exc).__name__}); re-encoding", file=sys.stderr)
        return None


def _store(entry: Path, state: dict, data: EncodedData) -> None:
    payload = {
        "state": state,
        "sparse": data.sparse,
        "multi_hot": data.multi_hot,
        "dense": data.dense,
        "labels": data.labels,
    }
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    try:
        entry.parent.mkdir(exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, entry)
        _prune(entry, keep=KEEP_PER_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        note = f"note: cannot write the data cache in {entry.parent} ({exc.strerror}); running uncached"
        print(note, file=sys.stderr)


def _prune(entry: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest entries of the data file that ``entry`` belongs to."""
    data_name = entry.name.rsplit(".", 2)[0]
    siblings = [e for e in entry.parent.glob(f"{glob.escape(data_name)}.*.pt") if e.name.rsplit(".", 2)[0] == data_name]
    siblings.sort(key=lambda e: e.stat().st_mtime_ns, reverse=True)
    for old in [e for e in siblings if e != entry][keep - 1 :]:
        old.unlink(missing_ok=True)
