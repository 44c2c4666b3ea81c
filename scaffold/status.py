"""Fleet status: per package, its template version, answers, drift and whether it is behind."""

from __future__ import annotations

import filecmp
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from . import _copier, _git
from .fleet import Package, discover
from .template import TemplateRepo, is_model_owned, model_owned_patterns


class State(StrEnum):
    """Where a package stands against the template (its value is what tables and --json show)."""

    UP_TO_DATE = "up to date"
    BEHIND = "behind"
    UNKNOWN = "unknown version"
    BROKEN = "unreadable"


UP_TO_DATE, BEHIND, UNKNOWN, BROKEN = State.UP_TO_DATE, State.BEHIND, State.UNKNOWN, State.BROKEN


@dataclass(frozen=True)
class FileDrift:
    """A template-owned file whose content differs from a fresh render (``modified``) or is gone (``deleted``)."""

    path: str
    kind: str


@dataclass
class PackageStatus:
    name: str
    path: str
    version: str | None
    state: State
    dirty: bool
    answers: dict
    drift: list[FileDrift] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def render_answers(template_dir: Path, answers: dict, out: Path) -> Path:
    """A fresh render of ``answers`` from a plain template copy into ``out``."""
    _copier.render(str(template_dir), out, _copier.user_answers(answers), None, cwd=template_dir)
    return out


def compare_to_render(package: Path, rendered: Path, patterns: list[str]) -> list[FileDrift]:
    """Template-owned files of ``rendered`` that differ in, or are missing from, ``package``."""
    drift = []
    for file in sorted(p for p in rendered.rglob("*") if p.is_file()):
        rel = file.relative_to(rendered).as_posix()
        if rel == _copier.ANSWERS_FILE or is_model_owned(rel, patterns):
            continue
        mine = package / rel
        if not mine.is_file():
            drift.append(FileDrift(rel, "deleted"))
        elif not filecmp.cmp(file, mine, shallow=False):
            drift.append(FileDrift(rel, "modified"))
    return drift


def fleet_status(
    repo: TemplateRepo, names: list[str] | None = None, fleet_file: Path | None = None
) -> list[PackageStatus]:
    """Status of every package (or of ``names``); renders each recorded template version once."""
    packages = discover(repo, names, fleet_file)
    by_commit: dict[str | None, list[Package]] = {}
    statuses = [_broken(repo, p) for p in packages if p.problem]
    for package in (p for p in packages if not p.problem):
        commit = repo.resolve(package.version) if package.version else None
        by_commit.setdefault(commit, []).append(package)
    for commit, group in by_commit.items():
        if commit is None:
            statuses += [_unknown(repo, p) for p in group]
            continue
        with repo.snapshot(commit) as template_dir:
            statuses += [_status(repo, p, commit, template_dir) for p in group]
    return sorted(statuses, key=lambda s: s.name)


def _status(repo: TemplateRepo, package: Package, commit: str, template_dir: Path) -> PackageStatus:
    with tempfile.TemporaryDirectory(prefix="smt-status-") as tmp:
        rendered = render_answers(template_dir, package.answers, Path(tmp) / package.name)
        drift = compare_to_render(package.path, rendered, model_owned_patterns(template_dir, package.answers))
    return PackageStatus(
        name=package.name,
        path=_shown(repo, package),
        version=package.version,
        state=BEHIND if repo.changed_since(commit) else UP_TO_DATE,
        dirty=_is_dirty(repo, package),
        answers=package.questions,
        drift=drift,
    )


def _broken(repo: TemplateRepo, package: Package) -> PackageStatus:
    shown = _shown(repo, package)
    return PackageStatus(package.name, shown, None, BROKEN, _is_dirty(repo, package), {}, note=package.problem)


def _unknown(repo: TemplateRepo, package: Package) -> PackageStatus:
    return PackageStatus(
        name=package.name,
        path=_shown(repo, package),
        version=package.version,
        state=UNKNOWN,
        dirty=_is_dirty(repo, package),
        answers=package.questions,
        note=f"template version {package.version!r} is not in this clone (fetch its tags/commits); drift unknown",
    )


def _is_dirty(repo: TemplateRepo, package: Package) -> bool:
    return bool(_git.dirty_paths(package.git_root, package.git_relpath))


def _shown(repo: TemplateRepo, package: Package) -> str:
    path = package.path
    return str(path.relative_to(repo.root)) if path.is_relative_to(repo.root) else str(path)
