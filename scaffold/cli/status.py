"""``smt status``: per package, its template version, enabled techniques, answers, drift and whether it is behind."""

from __future__ import annotations

import json

from rich.table import Table

from ..status import fleet_status
from ._common import fleet_of, repo_of, worker_count

HELP = "show every package's template version, techniques, drift and state"


def register(p) -> None:
    p.add_argument("names", nargs="*", help="only these packages")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--jobs", type=worker_count, help="parallel render workers (default: CPU count)")


def run(args, console) -> int:
    statuses = fleet_status(repo_of(args), args.names or None, fleet_of(args), args.jobs)
    if args.json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return 0
    table = Table(title=f"{len(statuses)} package(s)")
    for column in ("package", "version", "techniques", "events", "state", "drift", "dirty"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        drift = ", ".join(f"{d.path} ({d.kind})" for d in s.drift) or ("?" if s.note else "none")
        table.add_row(
            s.name,
            str(s.version),
            "?" if s.techniques is None else (", ".join(s.techniques) or "none"),
            ",".join(s.answers.get("events", [])),
            s.state,
            drift,
            "yes" if s.dirty else "no",
        )
    console.print(table)
    for s in statuses:
        if s.note:
            console.print(f"{s.name}: {s.note}")
    return 0
