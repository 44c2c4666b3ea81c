"""Create a package: validate answers, render the template, place the result atomically."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import _copier
from .errors import PackageExists, SmtError, TemplateDirty
from .lock import fleet_lock
from .paths import folder
from .template import TemplateRepo, check_answer_keys


@dataclass(frozen=True)
class NewPackage:
    path: Path
    answers: dict
    ref: str | None
    seconds: float


def new_package(
    repo: TemplateRepo,
    name: str,
    data: dict | None = None,
    dest: Path | None = None,
    ref: str | None = None,
    features: Path | None = None,
    from_working_tree: bool = False,
) -> NewPackage:
    """Render the template for ``name`` into ``dest`` (default ``generated/<name>``).

    The same result as ``copier copy --defaults --data name=<name> … <repo> <dest>`` at ``ref`` (default: the
    latest release tag, else HEAD). Invalid answers, an existing destination, an unreadable ``features`` file
    or a template with uncommitted changes raise before anything is written. ``from_working_tree`` renders
    the working tree instead (no version is recorded; for demos and template development).
    """
    started = time.perf_counter()
    dest = folder(dest or repo.fleet_dir / name, "--dest", "a package's files").resolve()  # a link's, unresolved
    if dest.exists() and any(dest.iterdir()):
        raise PackageExists(f"{dest} already exists; pick another name or --dest, or delete it first")
    feature_text = _read_features(features) if features else None
    check_answer_keys(repo.root, data or {}, "--set")
    answers = {**(data or {}), "name": name}
    if from_working_tree:
        ref = None
    elif ref is None:
        dirty = repo.dirty_files()
        if dirty:
            raise TemplateDirty(
                f"the template has uncommitted changes ({', '.join(dirty[:3])}…); commit them first, "
                "since a package records the template commit it was rendered from"
            )
        ref = repo.default_ref()
    in_fleet = dest.is_relative_to(repo.fleet_dir.resolve())
    with fleet_lock(repo.root, f"smt new {name}") if in_fleet else contextlib.nullcontext():
        _render_into(repo, dest, answers, ref, from_working_tree, feature_text, features)
    return NewPackage(dest, _copier.read_answers(dest), ref, time.perf_counter() - started)


def _render_into(repo, dest: Path, answers: dict, ref, from_working_tree: bool, feature_text, features) -> None:
    """Render into a staging directory beside ``dest``, then rename it into place (atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    name = answers["name"]
    staging = Path(tempfile.mkdtemp(prefix=f".smt-new-{name}-", dir=dest.parent))
    try:
        if from_working_tree:
            with repo.snapshot() as snapshot:
                _copier.render(str(snapshot), staging, answers, None, cwd=snapshot)
        else:
            inside = dest.is_relative_to(repo.root)
            _copier.render("." if inside else str(repo.root), staging, answers, ref, cwd=repo.root)
        if feature_text is not None:
            _check_labels(feature_text, _copier.read_answers(staging), features)
            _check_schema(staging, name, features)
            (staging / "src" / name / "features.yaml").write_text(feature_text)
        if dest.exists():
            dest.rmdir()
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_features(path: Path) -> str:
    try:
        text = Path(path).read_text()
        parsed = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise SmtError(f"--features {path} is not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(parsed, dict) or "labels" not in parsed:
        raise SmtError(f"--features {path} must be a features.yaml mapping with 'labels'")
    return text


# The rendered package's own validator judges the schema (it is the one that reads it at train time); it needs
# only PyYAML, so it runs in this interpreter's Python, with the staged package importable.
_VALIDATE = """
import sys
sys.path.insert(0, sys.argv[1])
from {name}.errors import SchemaError
from {name}.schema import load_schema
try:
    load_schema(sys.argv[2])
except SchemaError as exc:
    print(exc)
    sys.exit(3)
"""


def _check_schema(staging: Path, name: str, path: Path) -> None:
    """Raise the package's one-line SchemaError for ``path`` (duplicate columns, bad options, …)."""
    done = subprocess.run(
        [sys.executable, "-B", "-c", _VALIDATE.format(name=name), str(staging / "src"), str(Path(path).resolve())],
        capture_output=True,
        text=True,
    )
    if done.returncode == 3:
        raise SmtError(f"--features: {done.stdout.strip()}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SmtError(f"--features {path}: the package's schema check failed to run ({last})")


def _check_labels(feature_text: str, answers: dict, path: Path) -> None:
    labels, events = yaml.safe_load(feature_text)["labels"], answers["events"]
    if labels != events:
        raise SmtError(f"--features {path} has labels {labels} but the events answer is {events}; make them equal")
