"""The fleet: every package rendered from the template, found by its copier answers file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._copier import is_package, read_answers, user_answers
from .errors import SmtError
from .template import TemplateRepo


@dataclass(frozen=True)
class Package:
    """One generated package: its directory and its recorded answers."""

    path: Path
    answers: dict

    @property
    def name(self) -> str:
        return self.answers["name"]

    @property
    def version(self) -> str | None:
        """The template commit/tag it was last rendered from (copier's ``_commit``)."""
        return self.answers.get("_commit")

    @property
    def questions(self) -> dict:
        return user_answers(self.answers)


def load_package(path: Path) -> Package:
    return Package(path=path, answers=read_answers(path))


def discover(repo: TemplateRepo, names: list[str] | None = None) -> list[Package]:
    """Packages under ``generated/`` (sorted by name), optionally only ``names``."""
    root = repo.fleet_dir
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_package(p)) if root.is_dir() else []
    packages = [load_package(p) for p in found]
    if names:
        known = {p.name for p in packages}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise SmtError(f"no package named {unknown} in {root}; see `smt status` for the fleet")
        packages = [p for p in packages if p.name in names]
    return packages
