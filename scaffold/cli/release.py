"""``smt release vX.Y.Z``: cut a template version (an annotated PEP 440 tag with its CHANGELOG entry)."""

from __future__ import annotations

from ..versions import release
from ._common import repo_of

HELP = "tag HEAD as a template release vX.Y.Z (needs a template_repo/CHANGELOG.md entry)"


def register(p) -> None:
    p.add_argument("version", help="e.g. v0.2.0")


def run(args, console) -> int:
    notes = release(repo_of(args), args.version)
    console.print(f"released template {args.version}:\n{notes}", markup=False)
    console.print(f"next: smt sync --ref {args.version}, then commit generated/ and releases.txt (the release record)")
    return 0
