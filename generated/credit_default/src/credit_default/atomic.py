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
        chain = (Path(folder), *Path(folder).parents)
        blocked = next((p for p in chain if (p.exists() or p.is_symlink()) and not p.is_dir()), Path(folder))
        kind = "a file" if blocked.exists() else "a broken link"
        raise error(f"{what}: {blocked} is {kind}, not a folder; pick another path") from None
