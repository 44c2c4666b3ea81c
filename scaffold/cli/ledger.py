"""``smt ledger``: the technique × package matrix of every qualification and adoption."""

from __future__ import annotations

import json

from rich.table import Table

from ..fleet import discover
from ..ledger import ADOPTION, QUALIFICATION, ledger_path, pair_matrix, read
from ._common import fleet_of, repo_of

HELP = "the ledger of qualifications and adoptions as a technique × package matrix"


def register(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _cell(c: dict | None) -> str:
    if not c:
        return "·"
    text = c["state"]
    if c.get("delta") is not None:
        text += f" {c['delta']:+.2f}% [{c['ci'][0]:+.2f},{c['ci'][1]:+.2f}]"
    return f"{text} {c['template_version']}"


def run(args, console) -> int:
    repo = repo_of(args)
    ledger = read(ledger_path(repo.root))
    cells = pair_matrix(ledger.records)
    if args.json:
        print(json.dumps({"records": len(ledger.records), "torn_tail": ledger.torn_tail, "matrix": cells}, indent=2))
        return 0
    if ledger.torn_tail:
        console.print("note: the ledger's last line is partial (a writer was killed); it is not a record")
    if not ledger.records:
        console.print("the ledger is empty: `smt qualify TECHNIQUE` writes its first record")
        return 0
    packages = sorted(
        {p.name for p in discover(repo, None, fleet_of(args))} | {n for row in cells.values() for n in row}
    )
    table = Table(
        title=f"ledger: {len(ledger.of_kind(QUALIFICATION))} qualification(s), "
        f"{len(ledger.of_kind(ADOPTION))} adoption(s)"
    )
    table.add_column("technique")
    for name in packages:
        table.add_column(name, overflow="fold")
    for technique, row in cells.items():
        table.add_row(technique, *(_cell(row.get(name)) for name in packages))
    console.print(table)
    return 0
