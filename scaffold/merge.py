"""3-way merge of a package with a new template render, file by file, decided before anything is written.

Inputs: the render of the package's answers at its recorded version (base), the render at the target version
(theirs) and the package itself (ours). Semantics follow ``copier update``: model-owned files are never
overwritten (re-created only when deleted), a file the package deleted stays deleted, a file the template
deletes is deleted. Unlike copier, anything that cannot merge cleanly is a conflict that blocks the package:
overlapping edits, a template deletion of a file the package modified, a new template file that clashes with a
package file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import _git
from ._copier import ANSWERS_FILE
from .template import is_model_owned


@dataclass(frozen=True)
class Conflict:
    path: str
    reason: str
    detail: str = ""  # the conflicting hunks, with markers, when there are any


@dataclass
class MergePlan:
    """What an update would do to one package: files to write and delete, or conflicts that block it."""

    writes: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return sorted([*self.writes, *self.deletes])


def _files(root: Path | None) -> dict[str, Path]:
    if root is None:
        return {}
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None and path.is_file() else None


def plan_update(base: Path, theirs: Path, package: Path, model_owned: list[str]) -> MergePlan:
    """The plan that brings ``package`` from render ``base`` to render ``theirs`` (the answers file excluded)."""
    plan = MergePlan()
    base_files, their_files = _files(base), _files(theirs)
    for rel in sorted(set(base_files) | set(their_files)):
        if rel == ANSWERS_FILE:
            continue
        old, new, mine = _read(base_files.get(rel)), _read(their_files.get(rel)), _read(package / rel)
        if is_model_owned(rel, model_owned):
            if mine is None and new is not None:
                plan.writes[rel] = new  # a deleted model-owned file is re-created, as copier does
            continue
        _plan_file(plan, rel, old, new, mine)
    return plan


def _plan_file(plan: MergePlan, rel: str, old: bytes | None, new: bytes | None, mine: bytes | None) -> None:
    if old == new or mine == new:
        return  # the template did not change this file, or the package already has the new text
    if new is None:  # the template deletes the file
        if mine == old:
            plan.deletes.append(rel)
        elif mine is not None:
            plan.conflicts.append(Conflict(rel, "the template deletes this file, which the package modified"))
        return
    if old is None:  # the template adds the file
        if mine is None:
            plan.writes[rel] = new
        else:
            plan.conflicts.append(Conflict(rel, "the template adds this file, which the package already has"))
        return
    if mine is None:
        return  # the package deleted a template file: it stays deleted (copier's rule)
    if mine == old:
        plan.writes[rel] = new
        return
    merged, conflicted = _git.merge_file(mine, old, new)
    if conflicted:
        plan.conflicts.append(Conflict(rel, "the package and the template changed the same lines", _hunks(merged)))
    else:
        plan.writes[rel] = merged


def _hunks(merged: bytes, context: int = 2) -> str:
    """Only the conflict regions of a merged file (with a little context), for the report."""
    lines = merged.decode(errors="replace").splitlines()
    keep: set[int] = set()
    start = None
    for i, line in enumerate(lines):
        if line.startswith("<<<<<<< "):
            start = i
        elif line.startswith(">>>>>>> ") and start is not None:
            keep.update(range(max(0, start - context), min(len(lines), i + context + 1)))
            start = None
    return "\n".join(lines[i] for i in sorted(keep))
