"""Fleet status: per package, its template version, answers, enabled techniques, drift and whether it is behind."""

from __future__ import annotations

import filecmp
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from . import _copier, _git
from .errors import SmtError
from .fleet import Package, discover
from .scratch import scratch_dir
from .techniques import CATALOGUE, enabled, load_catalogue
from .template import TemplateRepo, is_model_owned, model_owned_patterns
from .workers import map_in_workers


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
    # ids of the catalogue's techniques the package has on (``techniques.is_on``); None: unknown, ``note`` says why
    techniques: list[str] | None = field(default_factory=list)

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
    repo: TemplateRepo, names: list[str] | None = None, fleet_file: Path | None = None, jobs: int | None = None
) -> list[PackageStatus]:
    """Status of every package (or of ``names``); each recorded template version is snapshotted once and the
    packages' renders run in ``jobs`` worker processes (None: one per CPU)."""
    packages = discover(repo, names, fleet_file)
    by_commit: dict[str | None, list[Package]] = {}
    statuses = [_broken(repo, p) for p in packages if p.problem]
    for package in (p for p in packages if not p.problem):
        commit = repo.resolve(package.version) if package.version else None
        by_commit.setdefault(commit, []).append(package)
    statuses += [_unknown(repo, p) for p in by_commit.pop(None, [])]
    with ExitStack() as stack:
        snapshots = {commit: stack.enter_context(repo.snapshot(commit)) for commit in by_commit}
        states = {commit: BEHIND if repo.changed_since(commit) else UP_TO_DATE for commit in by_commit}
        todo = [(package, commit) for commit, group in by_commit.items() for package in group]
        requests = [(snapshots[commit], package.answers, package.path) for package, commit in todo]
        for (package, commit), drift in zip(todo, map_in_workers(drift_from_render, requests, jobs), strict=True):
            statuses.append(_status(repo, package, states[commit], drift))
    _add_techniques(repo, statuses, {_shown(repo, p): p for p in packages})
    return sorted(statuses, key=lambda s: s.name)


def _add_techniques(repo: TemplateRepo, statuses: list[PackageStatus], packages: dict[str, Package]) -> None:
    """Fill each status's ``techniques`` from the catalogue (``packages``: by the path each status shows). A missing
    catalogue lists none; an unreadable catalogue, an unreadable package or a package file that cannot be read
    (train.yaml, config.py, features.yaml) leaves ``None`` and says why in ``note``: status still reports the rest."""
    if not (repo.root / CATALOGUE).is_file():
        return
    try:
        catalogue = load_catalogue(repo.root)
    except SmtError as exc:
        catalogue, problem = None, f"techniques unknown: {exc}"
    for status in statuses:
        if catalogue is None:
            status.techniques, status.note = None, _joined(status.note, problem)
        elif status.state == BROKEN:
            status.techniques = None  # its note says why it cannot be read
        else:
            try:
                status.techniques = enabled(catalogue, packages[status.path])
            except (SmtError, OSError) as exc:
                why = exc if isinstance(exc, SmtError) else f"{exc.filename}: {exc.strerror}"
                status.techniques, status.note = None, _joined(status.note, f"techniques unknown: {why}")


def _joined(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def drift_from_render(request: tuple[Path, dict, Path]) -> list[FileDrift]:
    """``(template_dir, answers, package)``: the package's template-owned files that differ from a fresh render
    of its answers (a function of one picklable argument, so it runs in a worker process)."""
    template_dir, answers, package = request
    with scratch_dir("render") as tmp:
        rendered = render_answers(template_dir, answers, Path(tmp) / str(answers.get("name", package.name)))
        return compare_to_render(package, rendered, model_owned_patterns(template_dir, answers))


def _status(repo: TemplateRepo, package: Package, state: State, drift: list[FileDrift]) -> PackageStatus:
    return PackageStatus(
        name=package.name,
        path=_shown(repo, package),
        version=package.version,
        state=state,
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
