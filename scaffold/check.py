"""`smt check`: the CI gate. Every package at the latest template version, no undeclared drift, no unmerged state.

Works in a clone without tags or history: when a package's recorded version cannot be resolved, the package
is compared with a render of the target version instead (same answers), which is what "in sync" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import _git, journal
from .errors import SmtError
from .fleet import Package, discover, git_roots
from .status import FileDrift, drift_from_render
from .template import TemplateRepo
from .versions import foreign_version_tags
from .workers import map_in_workers

CONFLICT_MARKERS = (b"<<<<<<< ", b">>>>>>> ")


@dataclass(frozen=True)
class Problem:
    package: str  # "" for the repository as a whole
    what: str


def check_fleet(repo: TemplateRepo, fleet_file: Path | None = None, jobs: int | None = None) -> list[Problem]:
    """Every problem of the repository and its fleet, package by package; the renders that compare each package
    with the target version run in ``jobs`` worker processes (None: one per CPU)."""
    problems = [Problem("", f"unmerged file {p}") for p in _git.unmerged_paths(repo.root)]
    problems += [Problem("", f"tag {t!r} parses as a template version; rename it") for t in foreign_version_tags(repo)]
    problems += _pending_recoveries(git_roots(repo, fleet_file))
    packages = discover(repo, fleet_file=fleet_file)
    if not packages:
        return problems
    target = repo.resolve(repo.default_ref())
    with repo.snapshot(target) as target_dir:
        found: list[list[Problem]] = []  # per package, in fleet order
        to_render: list[tuple[int, Package, str | None]] = []
        for index, package in enumerate(packages):
            if package.problem:
                found.append([Problem(package.name, package.problem)])
                continue
            own, render, recorded = _check_package(repo, package, target)
            found.append(own)
            if render:
                to_render.append((index, package, recorded))
        requests = [(target_dir, package.answers, package.path) for _, package, _ in to_render]
        drifts = map_in_workers(drift_from_render, requests, jobs)
        for (index, package, recorded), drift in zip(to_render, drifts, strict=True):
            found[index] += _drift_problems(package, recorded, drift)
    return problems + [problem for own in found for problem in own]


def _pending_recoveries(roots: list[Path]) -> list[Problem]:
    """A sync that was killed mid-write leaves a journal: the package it names may be half-updated."""
    problems = []
    for root in roots:
        try:
            tx = journal.pending(root)
        except SmtError as exc:
            problems.append(Problem("", str(exc)))
            continue
        if tx is not None:
            problems.append(Problem(str(tx.package_dir), journal.PENDING))
    return problems


def _check_package(repo: TemplateRepo, package: Package, target: str) -> tuple[list[Problem], bool, str | None]:
    """The package's problems short of its drift; whether its drift against the target is to be checked (it is
    not when its version is unknown or differs from the target), and the commit of its recorded version."""
    problems = [Problem(package.name, f"stray {p.relative_to(package.path)}") for p in package.path.rglob("*.rej")]
    problems += [Problem(package.name, f"conflict markers in {rel}") for rel in _files_with_markers(package.path)]
    dirty = _git.dirty_paths(package.git_root, package.git_relpath)
    if dirty:
        what = f"{len(dirty)} uncommitted file(s) ({', '.join(dirty[:3])}); commit them: the fleet is what is committed"
        problems.append(Problem(package.name, what))
    recorded = repo.resolve(package.version) if package.version else None
    if recorded is None and not _tagless_clone(repo, package):
        return [*problems, Problem(package.name, _unknown_version(package))], False, recorded
    if recorded is not None and recorded != target and repo.changed_between(recorded, target):
        if _git.is_ancestor(repo.root, target, recorded):
            what = f"ahead of the latest release: at {package.version}; cut a release (`smt release`) for it"
        else:
            what = f"behind: at {package.version}; run `smt sync {package.name}`"
        return [*problems, Problem(package.name, what)], False, recorded
    return problems, True, recorded


def _drift_problems(package: Package, recorded: str | None, drift: list[FileDrift]) -> list[Problem]:
    """The package's drift from a render of the target that it does not declare in ``.smt-drift``."""
    declared = _declared_drift(package.path)
    undeclared = [d for d in drift if d.path not in declared]
    if not undeclared:
        return []
    detail = ", ".join(f"{d.path} ({d.kind})" for d in undeclared[:5])
    if recorded is None:
        return [Problem(package.name, f"differs from the template ({detail}); version unknown, run smt sync")]
    return [Problem(package.name, f"undeclared drift in template-owned files: {detail}")]


def _tagless_clone(repo: TemplateRepo, package: Package) -> bool:
    """A shallow clone, or a clone without tags asked about a release: the version may exist upstream."""
    if _git.is_shallow(repo.root):
        return True
    return not _git.looks_like_commit(str(package.version)) and _git.latest_version_tag(repo.root) is None


def _unknown_version(package: Package) -> str:
    """Why a recorded version that this full clone cannot find is a problem, and the fix."""
    version = str(package.version)
    if _git.looks_like_commit(version):
        return (
            f"records template version {version!r}, a commit this repository does not have (copier update with "
            f"uncommitted files records such a phantom); restore the package with git, then `smt sync {package.name}`"
        )
    return f"records template version {version!r}, which this clone does not have; `git fetch --tags`, then rerun"


def _declared_drift(package: Path) -> set[str]:
    """Template-owned files a package declares it changes on purpose: one path per line in ``.smt-drift``."""
    path = package / ".smt-drift"
    if not path.is_file():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def _files_with_markers(package: Path) -> list[str]:
    found = []
    for path in package.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pt", ".pt2", ".parquet"):
            lines = path.read_bytes().splitlines()
            if any(line.startswith(CONFLICT_MARKERS) for line in lines):
                found.append(path.relative_to(package).as_posix())
    return sorted(found)
