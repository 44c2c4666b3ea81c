"""``smt report --out DIR``: a static HTML page of the development cycle, from the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SmtError
from ..ledger import ledger_path, read
from ..paths import folder
from ..report import write_report
from ._common import repo_of

HELP = "write DIR/index.html: fleet NE across versions, adoption matrix, qualification intervals, cycle summary"


def register(p) -> None:
    p.add_argument("--out", required=True, help="directory for index.html and its figures")
    p.add_argument("--ledger", help="another ledger file than the repository's ledger.jsonl")
    p.add_argument("--cycle", help="a cycle benchmark JSON (benchmarks/cycle.py) whose figures the page shows")


def run(args, console) -> int:
    repo = repo_of(args)
    out = Path(args.out)
    folder(out, "--out", "the report's index.html and its figures")
    if args.ledger and not Path(args.ledger).is_file():
        raise SmtError(
            f"--ledger {args.ledger} is not a file; leave it out to use the repository's {ledger_path(repo.root).name}"
        )
    ledger = read(Path(args.ledger) if args.ledger else ledger_path(repo.root))
    cycle = _cycle(Path(args.cycle)) if args.cycle else None
    page = write_report(ledger, out, cycle)
    console.print(f"wrote {page} ({len(ledger.records)} ledger record(s))")
    return 0


def _cycle(path: Path) -> dict:
    """The cycle benchmark's JSON at ``path``, or a one-line error that says what is wrong with it."""
    try:
        cycle = json.loads(path.read_text())
    except OSError as exc:
        raise SmtError(f"--cycle {path}: {exc.strerror}; give the JSON that benchmarks/cycle.py wrote") from None
    except ValueError:
        raise SmtError(f"--cycle {path} is not valid JSON; give the JSON that benchmarks/cycle.py wrote") from None
    if not isinstance(cycle, dict):
        raise SmtError(f"--cycle {path} is not a cycle benchmark's JSON object")
    return cycle
