"""The only module that calls copier."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import yaml

from .errors import InvalidAnswers, SmtError

ANSWERS_FILE = ".copier-answers.yml"


def render(src: str, dst: Path, data: dict, vcs_ref: str | None, cwd: Path) -> None:
    """``copier copy --defaults`` of ``src`` (resolved from ``cwd``) into ``dst`` with ``data`` as answers.

    Invalid answers raise InvalidAnswers before anything is written (copier validates first).
    """
    from copier import run_copy

    chatter = io.StringIO()
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stderr(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_copy(src, str(dst), data=data, defaults=True, vcs_ref=vcs_ref, quiet=True, overwrite=True, unsafe=False)
    except ValueError as exc:
        raise InvalidAnswers(f"invalid answer: {exc}".replace("\n", " ")) from None
    except Exception as exc:  # copier raises many types; keep its words, on one line
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise SmtError(f"copier could not render the template: {detail}") from None


def read_answers(package: Path) -> dict:
    path = package / ANSWERS_FILE
    if not path.is_file():
        raise SmtError(f"{package} has no {ANSWERS_FILE}; it was not rendered by copier (smt new)")
    try:
        answers = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = type(exc).__name__
        raise SmtError(f"{path} is not readable YAML ({reason}); restore it with `git checkout -- {path}`") from None
    if not isinstance(answers, dict) or not isinstance(answers.get("name"), str):
        raise SmtError(f"{path} is malformed (no 'name'); restore it with `git checkout -- {path}`")
    return answers


def user_answers(answers: dict) -> dict:
    """The answers to questions (without copier's private ``_src_path``, ``_commit`` …)."""
    return {k: v for k, v in answers.items() if not k.startswith("_")}


def is_package(path: Path) -> bool:
    return (path / ANSWERS_FILE).is_file()
