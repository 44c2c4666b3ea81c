"""Files replaced atomically: written aside, fsynced, renamed over the target. A kill leaves the old or the new."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".smt-tmp"


def tmp_path(path: Path) -> Path:
    """The name a file is written under before it is renamed into place (same directory: same filesystem)."""
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, keeping the mode of the file it replaces."""
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
