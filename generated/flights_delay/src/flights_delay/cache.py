"""Encoded-data cache: a data file is read and encoded once, then loaded as contiguous tensors (template-owned).

``encode_file`` keeps the encoded tensors (and, when it fit the preprocessing, the fitted state) in the user's
cache directory, never beside the data (data directories are often shared or read-only):
``$SMT_DATA_CACHE`` or ``$XDG_CACHE_HOME/smt-data`` or ``~/.cache/smt-data``, one folder per data file. The
key digests everything the tensors depend on: the file's resolved path, size and modification time, the
feature schema (file layout included), the fitted preprocessing state (or "fit on this file") and the
source of the reader and encoder, so a change to any of them misses the cache and re-encodes. Entries are
written atomically and loaded memory-mapped; an unreadable or corrupt entry is ignored and rebuilt, and an
unwritable cache directory just runs uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from .preprocess import EncodedData, Preprocessor, text_digest
from .schema import FeatureSchema
from .timing import PHASES

CACHE_ENV = "SMT_DATA_CACHE"
KEEP_PER_FILE = 4  # newest entries kept per data file; older ones are pruned on write
# The code that reads, checks and encodes a file: a change to it invalidates every entry. Read as files, not
# imported: a hit needs neither ``data`` nor ``columns`` (nor pyarrow, which they import).
_ENCODER_SOURCE = hashlib.sha256(
    b"".join(Path(__file__).with_name(name).read_bytes() for name in ("preprocess.py", "columns.py", "data.py"))
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
        with PHASES.phase("cache_load"):
            hit = _load(entry)
        if hit is not None:
            state_json, digest, cardinalities, data = hit
            return (pre if pre is not None else Preprocessor(schema, None, state_json, cardinalities, digest)), data
    from .data import read_table  # pyarrow: only on a miss

    with PHASES.phase("read"):
        table = read_table(path, schema, require_labels=require_labels)
    if pre is None:
        with PHASES.phase("fit"):
            pre = Preprocessor.fit(table, schema)
    with PHASES.phase("encode"):
        data = pre.transform(table)
    if entry is not None:
        with PHASES.phase("cache_write"):
            _store(entry, pre, data)
    return pre, data


def _entry_path(path: Path, schema: FeatureSchema, pre: Preprocessor | None, require_labels: bool) -> Path:
    stat = path.stat()
    parts = {
        "file": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "schema": schema.layout_fingerprint(),
        # The digest of the state's one JSON text (``state_json``), not a sorted re-encoding of it: the same
        # fitted state gives the same text whether it was just fit, read from the cache or from a checkpoint.
        "preprocessor": "fit" if pre is None else pre.state_digest,
        "encoder": _ENCODER_SOURCE,
        "labels": require_labels,
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return entry_dir(path) / f"{key}.pt"


def cache_root() -> Path:
    """``$SMT_DATA_CACHE``, else ``$XDG_CACHE_HOME/smt-data``, else ``~/.cache/smt-data``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smt-data"


def entry_dir(path: str | Path) -> Path:
    """The cache folder of one data file: its name plus a digest of its resolved path."""
    path = Path(path)
    return cache_root() / f"{path.name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"


def _load(entry: Path) -> tuple[str, str, tuple[list[int], list[int]], EncodedData] | None:
    """(the fitted state's JSON text, its digest, its table sizes, the encoded tensors) of ``entry``; None when
    it is missing or unreadable. The text is not decoded (a warm-cache ``train`` needs only the sizes), but its
    digest must match the one stored with it: torch does not check its records on load."""
    if not entry.is_file():
        return None
    try:
        payload = torch.load(entry, map_location="cpu", weights_only=True, mmap=True)
        data = EncodedData(payload["sparse"], list(payload["multi_hot"]), payload["dense"], payload["labels"])
        state_json, sizes = payload["state_json"], payload["cardinalities"]
        digest = text_digest(state_json)
        if digest != payload["state_digest"]:
            raise ValueError("the fitted state does not match its digest")
        return state_json, digest, (list(sizes[0]), list(sizes[1])), data
    except Exception as exc:  # a truncated, corrupt or foreign file: rebuild it
        print(f"note: ignoring unreadable cache entry {entry} ({type(exc).__name__}); re-encoding", file=sys.stderr)
        return None


def _store(entry: Path, pre: Preprocessor, data: EncodedData) -> None:
    payload = {  # the state as one JSON string: unpickling millions of vocabulary strings one by one is slow
        "state_json": pre.state_json,
        "state_digest": pre.state_digest,
        "cardinalities": list(pre.cardinalities()),
        "sparse": data.sparse,
        "multi_hot": data.multi_hot,
        "dense": data.dense,
        "labels": data.labels,
    }
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, entry)
        _prune(entry, keep=KEEP_PER_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        note = f"note: cannot write the data cache in {entry.parent} ({exc.strerror}); running uncached"
        print(note, file=sys.stderr)


def _prune(entry: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest entries of the data file that ``entry`` belongs to."""
    siblings = sorted(entry.parent.glob("*.pt"), key=lambda e: e.stat().st_mtime_ns, reverse=True)
    for old in [e for e in siblings if e != entry][keep - 1 :]:
        old.unlink(missing_ok=True)
