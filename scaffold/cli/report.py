"""``smt report --out DIR``: a static HTML page of the development cycle, from the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from ..ledger import ledger_path, read
from ..report import write_report
from ._common import repo_of

HELP = "write DIR/index.html: fleet NE across versions, adoption matrix, qualification intervals, cycle summary"


def register(p) -> None:
    p.add_argument("--out", required=True, help="directory for index.html and its figures")
    p.add_argument("--ledger", help="another ledger file than the repository's ledger.jsonl")
    p.add_argument("--cycle", help="a cycle benchmark JSON (benchmarks/cycle.py) whose figures the page shows")


def run(args, console) -> int:
    repo = repo_of(args)
    ledger = read(Path(args.ledger) if args.ledger else ledger_path(repo.root))
    cycle = json.loads(Path(args.cycle).read_text()) if args.cycle else None
    page = write_report(ledger, Path(args.out), cycle)
    console.print(f"wrote {page} ({len(ledger.records)} ledger record(s))")
    return 0
