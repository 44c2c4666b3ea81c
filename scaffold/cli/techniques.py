"""``smt techniques``: the technique catalogue and each technique's state across the fleet."""

from __future__ import annotations

import json

from rich.table import Table

from ..fleet import discover
from ..ledger import ledger_path, read
from ..techniques import enabled, is_default, load_catalogue
from ._common import fleet_of, repo_of

HELP = "list the technique catalogue (techniques.yml) with each technique's fleet state"


def register(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def technique_rows(repo, fleet_file=None) -> list[dict]:
    """Per technique: its catalogue entry, whether it is a template default, the packages that have it on,
    and its last qualification / adoption in the ledger."""
    catalogue = load_catalogue(repo.root)
    packages = discover(repo, None, fleet_file)
    ledger = read(ledger_path(repo.root))
    on = {p.name: enabled(catalogue, p) for p in packages if not p.problem}  # each package read once
    rows = []
    for technique in catalogue.values():
        last = ledger.last_qualification(technique.id)
        adoptions = [  # a record that completes another (its not-synced packages) is not a new adoption
            r
            for r in ledger.of_kind("adoption")
            if technique.id in r.get("techniques", [r["technique"]]) and not r.get("completes")
        ]
        rows.append(
            {
                **technique.to_dict(),
                "switch": technique.switch,
                "default": is_default(technique, repo.root),
                "on_in": [name for name, ids in on.items() if technique.id in ids],
                "qualification": (
                    {k: last[k] for k in ("id", "decision", "template_version", "date")}
                    | {"delta": last["aggregate"]["delta"], "ci": last["aggregate"]["ci"]}
                    if last
                    else None
                ),
                "adopted_in": adoptions[-1]["to_version"] if adoptions else None,
            }
        )
    return rows


def _state(row: dict) -> str:
    if row["adopted_in"]:
        return f"adopted {row['adopted_in']}"
    q = row["qualification"]
    if q:
        verdict = "accepted" if q["decision"] == "accept" else "rejected"
        return f"{verdict} {q['template_version']} ({q['delta']:+.2f}% [{q['ci'][0]:+.2f}, {q['ci'][1]:+.2f}])"
    return "default" if row["default"] else "—"


def run(args, console) -> int:
    repo = repo_of(args)
    rows = technique_rows(repo, fleet_of(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    total = len(discover(repo, None, fleet_of(args)))
    table = Table(title=f"{len(rows)} technique(s) in techniques.yml")
    for column in ("technique", "slot", "switch", "default", f"on in (of {total})", "ledger", "reference"):
        table.add_column(column, overflow="fold")
    for r in rows:
        on = f"{len(r['on_in'])}: {', '.join(r['on_in'])}" if r["on_in"] else "0"
        table.add_row(r["id"], r["slot"], r["switch"], "yes" if r["default"] else "no", on, _state(r), r["reference"])
    console.print(table)
    return 0
