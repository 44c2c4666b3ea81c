"""The template repository: where it is, which version, which files each package owns."""

from __future__ import annotations

import contextlib
import fnmatch
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2
import yaml

from . import _git
from .errors import InvalidAnswers, NotATemplateRepo
from .scratch import scratch_dir

TEMPLATE_PATHS = ("copier.yml", "template_repo")
FLEET_DIR = "generated"


@dataclass(frozen=True)
class TemplateRepo:
    """The git repository whose root holds ``copier.yml`` and ``template_repo/``."""

    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> TemplateRepo:
        root = _git.toplevel((start or Path.cwd()).resolve())
        if not (root / "copier.yml").is_file() or not (root / "template_repo").is_dir():
            raise NotATemplateRepo(f"{root} holds no copier.yml + template_repo/; run smt inside the SMT repository")
        from .releases import restore_tags

        restore_tags(root)  # a clone without tags gets back the releases recorded in releases.txt
        return cls(root)

    @property
    def fleet_dir(self) -> Path:
        return self.root / FLEET_DIR

    def default_ref(self) -> str:
        """The latest PEP 440 release tag if any, else the HEAD commit (never copier's dirty-HEAD draft)."""
        return _git.latest_version_tag(self.root) or _git.head_commit(self.root)

    def dirty_files(self) -> list[str]:
        return _git.dirty_paths(self.root, *TEMPLATE_PATHS)

    def working_version(self) -> str:
        """The version of a render of the working tree (``snapshot()``): the latest release tag when the template
        is as released (commits since that touch only other files do not count), else ``git describe --tags
        --always`` of HEAD, as copier records ``_commit``, with ``+dirty`` for uncommitted template edits."""
        if self.dirty_files():
            return f"{_git.describe(self.root, 'HEAD')}+dirty"
        tag = _git.latest_version_tag(self.root)
        return tag if tag and not self.changed_since(tag) else _git.describe(self.root, "HEAD")

    def resolve(self, ref: str) -> str | None:
        return _git.resolve(self.root, ref)

    def changed_since(self, commit: str) -> bool:
        return self.changed_between(commit, "HEAD")

    def changed_between(self, older: str, newer: str) -> bool:
        """Whether the template (copier.yml, template_repo/) differs between two commits in anything that can
        reach a package: paths that copier's ``_exclude`` keeps out of packages (the CHANGELOG) do not count."""
        return _git.changed_between(self.root, older, newer, *TEMPLATE_PATHS, *self._excluded_pathspecs)

    @cached_property
    def _excluded_pathspecs(self) -> list[str]:
        config = template_config(self.root)
        specs = []
        for pattern in config.get("_exclude") or []:
            if "{" in pattern:  # templated per package: cannot be decided for every package at once
                continue
            glob = pattern.strip("/")
            specs += [f":(exclude,glob)template_repo/**/{glob}", f":(exclude,glob)template_repo/**/{glob}/**"]
        return specs

    @contextlib.contextmanager
    def snapshot(self, commit: str | None = None) -> Iterator[Path]:
        """A plain (non-git) copy of the template: the working tree, or the tree at ``commit``."""
        with scratch_dir("template") as tmp:
            if commit is None:
                shutil.copy2(self.root / "copier.yml", tmp / "copier.yml")
                shutil.copytree(self.root / "template_repo", tmp / "template_repo", ignore=_ignored)
            else:
                _git.export_tree(self.root, commit, tmp, *TEMPLATE_PATHS)
            yield tmp


def _ignored(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".pyc")]


def template_config(template_dir: Path) -> dict:
    """``copier.yml`` of a template checkout or snapshot, parsed: the one reader of that file in smt."""
    return yaml.safe_load((Path(template_dir) / "copier.yml").read_text()) or {}


def questions(template_dir: Path) -> dict:
    """The template's questions (copier.yml keys without a leading underscore) and their settings."""
    return {k: v for k, v in template_config(template_dir).items() if not k.startswith("_")}


def check_answer_keys(template_dir: Path, keys, flag: str) -> None:
    """Refuse answers to questions the template does not ask (copier would ignore them silently)."""
    known = questions(template_dir)
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise InvalidAnswers(
            f"{flag} {', '.join(unknown)}: the template has no such question; known: {', '.join(sorted(known))}"
        )


def model_owned_patterns(template_dir: Path, answers: dict) -> list[str]:
    """The package's model-owned paths: copier.yml's ``_skip_if_exists`` rendered with its answers."""
    config = template_config(template_dir)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return [env.from_string(p).render(**answers) for p in config.get("_skip_if_exists", [])]


def is_model_owned(relpath: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(relpath, p) for p in patterns)
