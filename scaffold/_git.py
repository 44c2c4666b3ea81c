"""The only module that runs git. Every function takes the repository root and returns plain data."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

from .errors import GitError, NotATemplateRepo


def run(root: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise GitError(f"git {' '.join(args[:2])} failed in {root}: {last}")
    return proc.stdout


def toplevel(path: Path) -> Path:
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NotATemplateRepo(f"{path} is not inside a git repository; run smt from a clone of the SMT repository")
    return Path(proc.stdout.strip())


def head_commit(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "HEAD"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NotATemplateRepo(f"{root} has no commit yet; commit the template first")
    return proc.stdout.strip()


def resolve(root: Path, ref: str) -> str | None:
    """The full sha of ``ref`` (a tag, a sha, or copier's ``describe`` form ``v1-3-gabc123``), or None."""
    candidates = [ref]
    if "-g" in ref:
        candidates.append(ref.rsplit("-g", 1)[1])
    for candidate in candidates:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode == 0:
            return proc.stdout.strip()
    return None


RELEASE_TAG = re.compile(r"^v\d+(\.\d+){0,2}$")  # v1, v1.2, v1.2.3: the template's release tags


def latest_version_tag(root: Path) -> str | None:
    """The highest release tag (``vX.Y.Z``, PEP 440), or None. Other PEP 440 tags are not template versions."""
    best: tuple[Version, str] | None = None
    for tag in run(root, "tag", "--list").split():
        if not RELEASE_TAG.match(tag):
            continue
        try:
            version = Version(tag)
        except InvalidVersion:
            continue
        if not version.is_prerelease and (best is None or version > best[0]):
            best = (version, tag)
    return best[1] if best else None


def dirty_paths(root: Path, *paths: str) -> list[str]:
    """Uncommitted (modified, staged or untracked) files under ``paths``."""
    out = run(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def changed_between(root: Path, older: str, newer: str, *paths: str) -> bool:
    """Whether ``paths`` differ between two commits."""
    proc = subprocess.run(
        ["git", "-C", str(root), "diff", "--quiet", older, newer, "--", *paths], capture_output=True, text=True
    )
    if proc.returncode > 1:
        raise GitError(f"git diff {older} {newer} failed: {proc.stderr.strip()}")
    return proc.returncode == 1


def export_tree(root: Path, commit: str, dest: Path, *paths: str) -> None:
    """Write ``paths`` as of ``commit`` into ``dest`` (git archive; no clone, no checkout)."""
    proc = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit, "--", *paths], capture_output=True
    )
    if proc.returncode != 0:
        raise GitError(f"git archive {commit} failed: {proc.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")


def merge_file(ours: bytes, base: bytes, theirs: bytes) -> tuple[bytes, bool]:
    """3-way merge of one file's contents (``git merge-file``): (merged bytes, had conflicts)."""
    from .scratch import scratch_dir

    with scratch_dir("merge") as tmp:
        paths = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(str(path))
        labels = ["-L", "package", "-L", "last render", "-L", "new template"]
        proc = subprocess.run(["git", "merge-file", "-p", *labels, *paths], capture_output=True)
    if proc.returncode < 0 or proc.returncode >= 128:
        raise GitError(f"git merge-file failed: {proc.stderr.decode().strip()}")
    return proc.stdout, proc.returncode > 0


def describe(root: Path, commit: str) -> str:
    """``git describe --tags --always`` of ``commit``: the version string copier records as ``_commit``."""
    return run(root, "describe", "--tags", "--always", commit).strip()


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    proc = subprocess.run(["git", "-C", str(root), "merge-base", "--is-ancestor", older, newer], capture_output=True)
    return proc.returncode == 0


def unmerged_paths(root: Path) -> list[str]:
    return sorted({line.split("\t", 1)[1] for line in run(root, "ls-files", "-u").splitlines() if "\t" in line})


def check_index_unlocked(root: Path) -> None:
    """Raise when ``.git/index.lock`` exists: a git command is running, or a crashed one left its lock behind."""
    lock = git_path(root, "index.lock")
    if lock.exists():
        raise GitError(
            f"{lock} exists: another git command is running in {root}, or a crashed one left it; "
            "if no git command is running, delete that file and rerun"
        )


def stage(root: Path, paths: list[str]) -> None:
    """``git add -A`` of exactly ``paths`` (deleted ones included); checked, never partial (git locks the index)."""
    check_index_unlocked(root)
    for start in range(0, len(paths), 500):
        run(root, "add", "-A", "--", *paths[start : start + 500])


def index_blobs(root: Path, paths: list[str]) -> dict[str, str]:
    """The blob id the index holds for each of ``paths`` (absent paths are left out)."""
    out = run(root, "ls-files", "-s", "-z", "--", *paths) if paths else ""
    blobs = {}
    for entry in out.split("\0"):
        if "\t" in entry:
            info, path = entry.split("\t", 1)
            blobs[path] = info.split()[1]
    return blobs


def blob_ids(root: Path, files: list[Path]) -> list[str]:
    """The blob id ``git add`` would give each file (``git hash-object``, filters applied; nothing written)."""
    if not files:
        return []
    return run(root, "hash-object", "--", *map(str, files)).split()


def is_shallow(root: Path) -> bool:
    """Whether the clone lacks history (``git clone --depth``): recorded versions may be missing from it."""
    return run(root, "rev-parse", "--is-shallow-repository").strip() == "true"


def looks_like_commit(version: str) -> bool:
    """Whether a recorded version names a commit (``1ab75e3``, ``v2-1-g1ab75e3``) rather than a tag."""
    return bool(re.fullmatch(r"[0-9a-f]{7,64}", version) or re.search(r"-g[0-9a-f]{7,64}$", version))


def git_path(root: Path, name: str) -> Path:
    """A path inside the repository's .git directory (never committed, never dirty)."""
    return root / run(root, "rev-parse", "--git-path", name).strip()
