"""Template versions: PEP 440 release tags on this repository (``v0.2.0``), and cutting a new one."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.version import InvalidVersion, Version

from . import _git, releases
from ._git import RELEASE_TAG
from .errors import SmtError, TemplateDirty
from .lock import fleet_lock
from .template import TemplateRepo

CHANGELOG = "template_repo/CHANGELOG.md"


def foreign_version_tags(repo: TemplateRepo) -> list[str]:
    """Tags that copier would take for template versions but are not ``vX.Y.Z`` releases (hazard H1)."""
    foreign = []
    for tag in _git.run(repo.root, "tag", "--list").split():
        try:
            Version(tag)
        except InvalidVersion:
            continue
        if not RELEASE_TAG.match(tag):
            foreign.append(tag)
    return foreign


def release(repo: TemplateRepo, version: str) -> str:
    """Tag HEAD as template release ``version`` (e.g. ``v0.2.0``) after checking it can be one."""
    with fleet_lock(repo.root, f"smt release {version}"):
        return _release(repo, version)


def _release(repo: TemplateRepo, version: str) -> str:
    if not RELEASE_TAG.match(version):
        raise SmtError(f"release {version!r} must look like v1.2.3 (a v prefix and up to three numbers)")
    foreign = foreign_version_tags(repo)
    if foreign:
        raise SmtError(
            f"tags {foreign} parse as template versions; rename them before releasing (copier would use them)"
        )
    latest = _git.latest_version_tag(repo.root)
    if latest and Version(version) <= Version(latest):
        raise SmtError(f"release {version} is not newer than the latest release {latest}")
    dirty = repo.dirty_files()
    if dirty:
        raise TemplateDirty(f"the template has uncommitted changes ({', '.join(dirty[:3])}); commit them first")
    notes = changelog_entry(repo.root / CHANGELOG, version)
    _git.run(repo.root, "tag", "-a", version, "-m", f"Template {version}\n\n{notes}")
    releases.record(repo.root, version, _git.head_commit(repo.root))  # survives a clone without tags
    return notes


def changelog_entry(path: Path, version: str) -> str:
    """The text under ``## vX.Y.Z`` in the template's CHANGELOG; a release must have one."""
    text = path.read_text() if path.is_file() else ""
    match = re.search(rf"^## {re.escape(version)}\b.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not match or not match.group(1).strip():
        raise SmtError(f"{CHANGELOG} has no entry '## {version}'; say what this version brings, then release")
    return match.group(1).strip()
