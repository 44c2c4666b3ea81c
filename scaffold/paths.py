"""Paths a command will write to, checked before it writes: a file or a broken link in the way is one line."""

from __future__ import annotations

from pathlib import Path

from .errors import SmtError


def folder(path: Path, flag: str, what: str) -> Path:
    """``path`` for a folder this command writes ``what`` into: a one-line error when a file is in its place, or
    a file or a broken link is where one of its parents goes (checked, not made: nothing is written yet)."""
    if path.exists() and not path.is_dir():
        raise SmtError(f"{flag} {path} is a file; {what} go in a folder: pick a new path")
    blocked = in_the_way(path)
    if blocked is not None:
        raise SmtError(f"{flag} {path}: {blocked}, not a folder; pick a new path")
    return path


def in_the_way(target: Path) -> str | None:
    """What would stop ``mkdir -p target``: "P is a file" or "P is a broken link", P the outermost of ``target``
    and its parents that is one; None when nothing is. (The packages have their own, in ``atomic``: a package
    imports nothing of this tool.)"""
    for path in reversed((target, *target.parents)):
        if path.is_symlink() and not path.exists():
            return f"{path} is a broken link"
        if path.exists() and not path.is_dir():
            return f"{path} is a file"
    return None


def output_file(value: str | Path, flag: str) -> Path:
    """``value`` as a file this command may write once it has run, checked before it runs: its folder is made
    now, so a bad path fails in a second and not after the trainings."""
    path = Path(value)
    if path.is_dir():
        raise SmtError(f"{flag} {path} is a folder; give a file name in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocked = in_the_way(path.parent) or f"{path.parent} is in the way"  # the latter: it changed since mkdir
        raise SmtError(f"{flag} {path}: {blocked}, not a folder; pick a new path") from None
    except OSError as exc:
        raise SmtError(f"{flag} {path}: cannot make its folder {path.parent} ({exc.strerror})") from None
    return path
