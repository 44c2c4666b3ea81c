"""The fleet: every package rendered from the template, found by its copier answers file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from . import _git
from ._copier import is_package, read_answers, user_answers
from .errors import SmtError
from .template import TemplateRepo


@dataclass(frozen=True)
class Package:
    """One generated package: its directory and its recorded answers."""

    path: Path
    answers: dict
    problem: str = ""  # why the package cannot be read (e.g. a corrupt answers file); "" when it can

    @property
    def name(self) -> str:
        return self.answers.get("name") or self.path.name

    @property
    def version(self) -> str | None:
        """The template commit/tag it was last rendered from (copier's ``_commit``)."""
        return self.answers.get("_commit")

    @property
    def questions(self) -> dict:
        return user_answers(self.answers)

    @cached_property
    def git_root(self) -> Path:
        """The git repository holding the package: the template repository, or the package's own."""
        return _git.toplevel(self.path)

    @property
    def git_relpath(self) -> str:
        return self.path.relative_to(self.git_root).as_posix() or "."


def load_package(path: Path) -> Package:
    """The package at ``path``; one whose answers cannot be read carries the reason in ``problem``."""
    try:
        return Package(path=path, answers=read_answers(path))
    except SmtError as exc:
        return Package(path=path, answers={}, problem=str(exc))


def package_dirs(repo: TemplateRepo, fleet_file: Path | None = None) -> list[Path]:
    """The fleet's package directories (``generated/*``, or those a fleet file lists), without reading them."""
    if fleet_file is not None:
        return _listed(Path(fleet_file))
    root = repo.fleet_dir
    return sorted(p for p in root.iterdir() if p.is_dir() and is_package(p)) if root.is_dir() else []


def git_roots(repo: TemplateRepo, fleet_file: Path | None = None) -> list[Path]:
    """Every git repository that holds a package of the fleet, the template repository first."""
    roots = [repo.root]
    if fleet_file is not None:
        roots += sorted({_git.toplevel(p) for p in package_dirs(repo, fleet_file)} - {repo.root})
    return roots


def discover(repo: TemplateRepo, names: list[str] | None = None, fleet_file: Path | None = None) -> list[Package]:
    """Packages under ``generated/``, or those a fleet file lists; sorted by name, optionally only ``names``."""
    packages = sorted((load_package(p) for p in package_dirs(repo, fleet_file)), key=lambda p: p.name)
    if names:
        known = {p.name for p in packages}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SmtError(f"no package named {unknown} in the fleet; see `smt status` for its packages")
        packages = [p for p in packages if p.name in names]
    return packages


def _listed(fleet_file: Path) -> list[Path]:
    """Package directories listed in a fleet file (YAML ``packages: [path, …]``, relative to the file)."""
    if not fleet_file.is_file():
        raise SmtError(f"fleet file {fleet_file} is not a file; give --fleet a YAML file that lists 'packages:'")
    try:
        data = yaml.safe_load(fleet_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SmtError(f"fleet file {fleet_file} is not readable YAML ({type(exc).__name__})") from None
    entries = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise SmtError(f"fleet file {fleet_file} must hold 'packages:' with a list of package paths")
    paths = [(fleet_file.parent / e).resolve() for e in entries]
    missing = [str(p) for p in paths if not is_package(p)]
    if missing:
        raise SmtError(f"fleet file {fleet_file} lists directories that are not packages: {missing}")
    return paths
