"""Files replaced atomically: written aside, fsynced, renamed over the target (template-owned).

A process killed at any moment leaves the old file or the new one, never a torn one; a write that fails
(or a check of the new file that fails) leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, ModelError


@contextlib.contextmanager
def replacing(path: str | Path, error: type[ModelError] = ConfigError, what: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); on success, fsync it and rename it over ``path``.

    A file where ``path``'s folder should be is ``error`` (``what``: the failed action, default "cannot write
    PATH"); the caller picks the type its own callers expect.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "metrics.json"
    >>> with replacing(target) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('{}', ['metrics.json'])
    """
    path = Path(path)
    make_folder(path.parent, what or f"cannot write {path}", error)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def make_folder(folder: str | Path, what: str, error: type[ModelError] = ConfigError) -> None:
    """``mkdir -p folder``, or a one-line ``error`` (``what``: the failed action) when a file is in the way."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocked = in_the_way(folder) or f"{folder} is in the way"  # the latter: it changed since mkdir failed
        raise error(f"{what}: {blocked}, not a folder; pick another path") from None


def in_the_way(folder: str | Path) -> str | None:
    """What stops ``mkdir -p folder``: "P is a file" or "P is a broken link", P the outermost of ``folder`` and its
    parents that is one; None when nothing is.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "taken").write_text("mine")
    >>> in_the_way(root / "taken" / "run") == f"{root / 'taken'} is a file", in_the_way(root / "new" / "run")
    (True, None)
    """
    for path in reversed((Path(folder), *Path(folder).parents)):
        if path.is_symlink() and not path.exists():
            return f"{path} is a broken link"
        if path.exists() and not path.is_dir():
            return f"{path} is a file"
    return None
