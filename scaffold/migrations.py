"""Copier ``_migrations`` for `smt sync`: which apply to an update, and running them on a scratch copy.

Supported: copier's new-format entries (``version``, ``command``, optional ``when``, ``working_directory``)
whose ``when`` selects the ``before`` stage, e.g. a script that renames a key in ``.copier-answers.yml``
(copier re-reads the answers after them). Like copier, they run only with ``trust`` and only between
PEP 440 versions (release tags); ``after``-stage migrations are refused with a pointer to ``copier update``.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2
from packaging.version import InvalidVersion, Version

from .errors import SmtError
from .template import template_config


@dataclass(frozen=True)
class Migration:
    command: str | tuple[str, ...]
    working_directory: str
    context: dict


def applicable(template_dir: Path, answers: dict, version_from: str, version_to: str) -> list[Migration]:
    """The ``before`` migrations of the target template for an update ``version_from`` → ``version_to``."""
    entries = template_config(template_dir).get("_migrations") or []
    try:
        old, new = Version(version_from), Version(version_to)
    except InvalidVersion:
        return []  # copier runs migrations only between PEP 440 versions
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or "before" in entry or "after" in entry:
            raise SmtError("only copier's new-format _migrations (version/command/when) are supported by smt sync")
        if "version" in entry and not (new >= Version(str(entry["version"])) > old):
            continue
        context = {
            **answers,
            "_version_from": version_from,
            "_version_to": version_to,
            "_copier_python": sys.executable,
        }
        condition = entry.get("when", '{{ _stage == "after" }}')
        if _truthy(env.from_string(str(condition)).render(**context, _stage="after")):
            raise SmtError(
                f"migration {entry.get('version')} runs after the update; smt sync runs only 'before' migrations "
                "(use copier update --trust for this package)"
            )
        if _truthy(env.from_string(str(condition)).render(**context, _stage="before")):
            command = entry["command"]
            rendered = (
                env.from_string(command).render(**context, _stage="before")
                if isinstance(command, str)
                else tuple(env.from_string(str(part)).render(**context, _stage="before") for part in command)
            )
            found.append(
                Migration(rendered, str(entry.get("working_directory", ".")), {"version": entry.get("version")})
            )
    return found


def run(migrations: list[Migration], package: Path) -> None:
    for m in migrations:
        proc = subprocess.run(
            m.command,
            shell=isinstance(m.command, str),
            cwd=package / m.working_directory,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise SmtError(f"migration {m.context.get('version')} failed: {last}")


def _truthy(text: str) -> bool:
    return text.strip().lower() not in ("", "false", "0", "no", "none", "off")
