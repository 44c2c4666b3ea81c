"""``smt check``: non-zero when any package is behind, drifted (undeclared) or holds unmerged state."""

from __future__ import annotations

from ..check import check_fleet
from ._common import fleet_of, repo_of, worker_count

HELP = "CI gate: fail if a package is behind the template, has undeclared drift, or unmerged state"


def register(p) -> None:
    p.add_argument("--jobs", type=worker_count, help="parallel render workers (default: CPU count)")


def run(args, console) -> int:
    problems = check_fleet(repo_of(args), fleet_of(args), args.jobs)
    for p in problems:
        console.print(f"{p.package or 'repository'}: {p.what}", markup=False)
    console.print("fleet check: " + (f"{len(problems)} problem(s)" if problems else "ok"))
    return 1 if problems else 0
