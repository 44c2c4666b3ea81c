"""``smt adopt TECHNIQUE…``: accepted techniques become template defaults, released, synced, recorded."""

from __future__ import annotations

import json

from rich.table import Table

from ..adopt import adopt
from ..errors import SmtError
from ..techniques import load_catalogue
from ._common import fleet_of, repo_of, worker_count

HELP = (
    "make qualified techniques template defaults: CHANGELOG, release, sync of the fleet, ledger (one command); "
    "run again to finish a killed adoption or its not-synced packages"
)


def register(p) -> None:
    p.add_argument("techniques", nargs="+", help="techniques of techniques.yml with an accepted qualification")
    p.add_argument("--override-reason", metavar="TEXT", help="adopt without an accepted qualification (recorded)")
    p.add_argument("--jobs", type=worker_count, help="parallel sync workers (default: CPU count)")
    p.add_argument("--no-test", action="store_true", help="skip each package's fast tests after its update (recorded)")
    p.add_argument("--json", action="store_true", help="print the ledger record")


def run(args, console) -> int:
    repo = repo_of(args)
    catalogue = load_catalogue(repo.root)
    unknown = [t for t in args.techniques if t not in catalogue]
    if unknown:
        raise SmtError(f"unknown technique(s) {unknown}; see `smt techniques` (or add them to techniques.yml)")
    techniques = [catalogue[t] for t in dict.fromkeys(args.techniques)]
    schema_only = [t.id for t in techniques if not t.switchable]
    if schema_only:
        raise SmtError(f"{schema_only}: per-feature schema options stay each model's own; nothing to adopt")
    say = (lambda text: None) if args.json else (lambda text: console.print(text, highlight=False))
    record = adopt(repo, techniques, args.override_reason, args.jobs, fleet_of(args), say, run_tests=not args.no_test)
    if args.json:
        print(json.dumps(record, indent=2))
        return 0 if "not synced" not in record["packages"].values() else 1
    title = f"adopt {record['technique']}: {record['from_version']} → {record['to_version']}"
    if record.get("completes"):
        title += f" (finishes the not-synced pairs of {record['completes']})"
    table = Table(title=title)
    table.add_column("package")
    for t in record["techniques"]:
        table.add_column(t)
    for name in sorted(record["packages"]):
        table.add_row(name, *(record["per_technique"][t][name] for t in record["techniques"]))
    console.print(table)
    for name, reason in record.get("not_synced", {}).items():
        console.print(f"{name}: not synced: {reason}", highlight=False)
    skipped = "" if record["package_tests"] else "; the packages' tests were skipped (--no-test)"
    console.print(f"ledger record {record['id']}; {record['machine_seconds']:.0f} s{skipped}")
    return 0 if "not synced" not in record["packages"].values() else 1
