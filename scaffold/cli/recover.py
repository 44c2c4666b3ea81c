"""``smt recover``: finish what a killed ``smt sync`` left, without touching anything it did not write."""

from __future__ import annotations

import json

from ..fleet import git_roots
from ..lock import fleet_lock
from ..sync import recover_fleet
from ._common import fleet_of, repo_of

HELP = "roll back a package that a killed sync left half-updated (sync does this itself first)"


def register(p) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="also restore files changed since the kill, keeping a copy of each in .git/smt-rescued/",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args, console) -> int:
    repo = repo_of(args)
    with fleet_lock(repo.root, "smt recover"):
        done = recover_fleet(git_roots(repo, fleet_of(args)), force=args.force)
    rows = [_row(d) for d in done]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        console.print(f"{row['package']}: {row['outcome']} ({len(row['files'])} file(s))", markup=False)
        for path in row["rescued"]:
            console.print(f"  your changed copy kept in {path}", markup=False)
    if not rows:
        console.print("nothing to recover")
    return 0


def _row(done) -> dict:
    pending = done.pending
    return {
        "package": str(pending.package_dir),
        "outcome": done.outcome,
        "files": sorted(pending.files),
        "rescued": done.rescued,
    }
