"""The sync journal: one package update as a transaction that a kill at any point cannot leave half-done.

Before the first byte of a package changes, the journal records every file the update will touch, with the
sha256 of its content before and after, and keeps a copy of each old file. Each file is then replaced
atomically (written aside, fsynced, renamed). Recovery (the next ``smt sync``, or ``smt recover``) reads the
journal and, per file: leaves it when it holds the old bytes, restores the old bytes when it holds the new
ones, and refuses when it holds anything else (the user changed it after the kill), so it never deletes or
overwrites work it did not write. Files the journal does not name are never touched. When every file holds
the new bytes and the git index has them too (the kill came after staging), the update was complete and
recovery only closes the journal.

Layout, per git repository: ``.git/smt-sync/journal.json`` and ``.git/smt-sync/old/<sha256>``. Removing
``journal.json`` is the commit point.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from . import _atomic, _faults, _git
from .errors import SmtError

DIRECTORY = "smt-sync"
JOURNAL = "journal.json"
LEGACY_JOURNAL = "smt-sync.json"  # smt before the journal recorded files: it named the package only
RESCUE_DIRECTORY = "smt-rescued"


class FileState(StrEnum):
    """A journaled file after a kill: the old bytes, the new bytes, or neither (edited since)."""

    OLD = "old"
    NEW = "new"
    CHANGED = "changed"


PENDING = "a killed sync left this package half-updated; run `smt recover` (or `smt sync`) to finish it"


class RecoveryBlocked(SmtError):
    """A killed sync left a package half-updated, and files it wrote were changed since; nothing was touched."""


@dataclass(frozen=True)
class Change:
    """One file of the update: sha256 of its bytes before and after (None: absent)."""

    old: str | None
    new: str | None


@dataclass(frozen=True)
class Pending:
    """An update a killed sync left open in one git repository."""

    root: Path
    package: str  # the package directory, relative to root ("." when the package is the repository)
    files: dict[str, Change]  # path inside the package → change
    started: str = ""

    @property
    def package_dir(self) -> Path:
        return self.root / self.package if self.package != "." else self.root


@dataclass(frozen=True)
class Recovered:
    pending: Pending
    outcome: str  # "rolled back" | "completed" (the update had been staged) | "untouched" (nothing written yet)
    rescued: list[str]  # copies of files the user had changed, kept before a forced roll-back


def _dir(root: Path) -> Path:
    return _git.git_path(root, DIRECTORY)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _current(path: Path) -> str | None:
    return digest(path.read_bytes()) if path.is_file() else None


def pending(root: Path) -> Pending | None:
    """The open transaction in ``root``'s repository, or None; a corrupt journal raises with the fix."""
    legacy = _git.git_path(root, LEGACY_JOURNAL)
    if legacy.is_file():
        raise RecoveryBlocked(
            f"an older smt was killed mid-sync and left {legacy} (it names no files); check `git status` of the "
            "package it names, restore what you want with git, then delete that file"
        )
    path = _dir(root) / JOURNAL
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        files = {rel: Change(c["old"], c["new"]) for rel, c in data["files"].items()}
        return Pending(root, data["package"], files, data.get("started", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise RecoveryBlocked(
            f"the sync journal {path} is unreadable; the package it covered may be half-updated: check "
            "`git status`, restore it with git, then delete the directory " + str(_dir(root))
        ) from None


class Transaction:
    """An open update of one package: ``begin`` → ``write`` → ``close`` (or ``rollback``)."""

    def __init__(self, root: Path, package: str, files: dict[str, Change]):
        self.pending = Pending(root, package, files)

    @classmethod
    def begin(cls, root: Path, package: str, writes: dict[str, bytes], deletes: list[str]) -> Transaction:
        """Keep the old bytes of every file to be touched, then write the journal (before any package change)."""
        directory = _dir(root)
        if (directory / JOURNAL).exists():
            raise SmtError(f"a sync journal is already open in {directory}; run `smt recover` first")
        shutil.rmtree(directory, ignore_errors=True)  # backups of a transaction that never got its journal
        (directory / "old").mkdir(parents=True)
        package_dir = Pending(root, package, {}).package_dir
        files: dict[str, Change] = {}
        for rel in sorted({*writes, *deletes}):
            path = package_dir / rel
            old = path.read_bytes() if path.is_file() else None
            if old is not None:
                _atomic.write_bytes(directory / "old" / digest(old), old)
            files[rel] = Change(None if old is None else digest(old), digest(writes[rel]) if rel in writes else None)
        record = {
            "format": 1,
            "package": package,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pid": os.getpid(),
            "files": {rel: {"old": c.old, "new": c.new} for rel, c in files.items()},
        }
        _atomic.write_text(directory / JOURNAL, json.dumps(record, indent=1) + "\n")
        _faults.point("sync:journal")
        return cls(root, package, files)

    def write(self, writes: dict[str, bytes], deletes: list[str]) -> None:
        """Apply the update: each file replaced atomically, each deletion one unlink."""
        package_dir = self.pending.package_dir
        for k, rel in enumerate(sorted({*writes, *deletes}), start=1):
            path = package_dir / rel
            if rel in writes:
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic.write_bytes(path, writes[rel])
            else:
                path.unlink(missing_ok=True)
            _faults.point(f"sync:write:{k}")
        _faults.point("sync:written")

    def rollback(self) -> Recovered:
        """Put back the old files (in this process, after a failure): changed ones are rescued, never lost."""
        return _roll_back(self.pending, force=True)

    def close(self) -> None:
        _close(self.pending.root)


def _close(root: Path) -> None:
    directory = _dir(root)
    (directory / JOURNAL).unlink(missing_ok=True)  # the commit point
    _atomic.fsync_dir(directory)
    shutil.rmtree(directory, ignore_errors=True)


def recover(root: Path, force: bool = False) -> Recovered | None:
    """Finish the transaction a killed sync left in ``root``'s repository (see the module doc); None if none."""
    open_tx = pending(root)
    if open_tx is None:
        shutil.rmtree(_dir(root), ignore_errors=True)  # backups of a transaction that never got its journal
        return None
    states = _states(open_tx)
    if all(state == FileState.NEW for state in states.values()) and _staged(open_tx):
        _close(root)
        return Recovered(open_tx, "completed", [])
    if all(state == FileState.OLD for state in states.values()):
        _remove_temporaries(open_tx)
        _close(root)
        return Recovered(open_tx, "untouched", [])
    return _roll_back(open_tx, force)


def _states(tx: Pending) -> dict[str, FileState]:
    """Per file: its FileState."""
    states = {}
    for rel, change in tx.files.items():
        current = _current(tx.package_dir / rel)
        states[rel] = (
            FileState.OLD if current == change.old else FileState.NEW if current == change.new else FileState.CHANGED
        )
    return states


def _staged(tx: Pending) -> bool:
    """Whether the index holds exactly the new files (the update was staged before the kill)."""
    prefix = "" if tx.package == "." else tx.package + "/"
    paths = [prefix + rel for rel in tx.files]
    index = _git.index_blobs(tx.root, paths)
    present = [rel for rel, c in tx.files.items() if c.new is not None]
    ids = dict(zip(present, _git.blob_ids(tx.root, [tx.package_dir / rel for rel in present])))
    return all(index.get(prefix + rel) == ids.get(rel) for rel in tx.files)


def _roll_back(tx: Pending, force: bool) -> Recovered:
    states = _states(tx)
    changed = sorted(rel for rel, state in states.items() if state == FileState.CHANGED)
    if changed and not force:
        shown = ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
        raise RecoveryBlocked(
            f"a killed sync left {tx.package} half-updated, and {len(changed)} file(s) it wrote changed since "
            f"({shown}); nothing was touched: copy your edits aside, then run `smt recover --force` "
            f"(it restores the pre-sync files and keeps a copy of each changed one in .git/{RESCUE_DIRECTORY}/)"
        )
    rescued = _rescue(tx, changed) if changed else []
    backups = _dir(tx.root) / "old"
    for k, rel in enumerate(sorted(rel for rel, state in states.items() if state != FileState.OLD), start=1):
        path, old = tx.package_dir / rel, tx.files[rel].old
        if old is None:
            path.unlink(missing_ok=True)
            _prune_empty_parents(path.parent, tx.package_dir)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic.write_bytes(path, (backups / old).read_bytes())
        _faults.point(f"recover:restore:{k}")
    _remove_temporaries(tx)
    _close(tx.root)
    return Recovered(tx, "rolled back", rescued)


def _rescue(tx: Pending, paths: list[str]) -> list[str]:
    """Copy files the user changed after the kill to .git/smt-rescued/<time>/<package>/<path>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = _git.git_path(tx.root, RESCUE_DIRECTORY) / stamp / tx.package
    kept = []
    for rel in paths:
        source = tx.package_dir / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            _atomic.write_bytes(target / rel, source.read_bytes())
            kept.append(str(target / rel))
    return kept


def _remove_temporaries(tx: Pending) -> None:
    for rel in tx.files:
        _atomic.tmp_path(tx.package_dir / rel).unlink(missing_ok=True)


def _prune_empty_parents(directory: Path, stop: Path) -> None:
    """Remove directories the update created and left empty, up to the package directory."""
    while directory != stop and directory.is_relative_to(stop) and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent
