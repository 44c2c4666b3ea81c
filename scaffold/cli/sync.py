"""``smt sync``: bring packages to a template version, transactionally, in parallel."""

from __future__ import annotations

import json

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..fleet import discover
from ..sync import REACHED, WOULD_UPDATE, sync_fleet
from ._common import REF_HELP, fleet_of, parse_data, repo_of, worker_count

HELP = "update packages to a template version (3-way merge, per-package transaction, tests after update)"


def register(p) -> None:
    p.add_argument("names", nargs="*", help="only these packages (default: the whole fleet)")
    p.add_argument("--ref", "--to", help=REF_HELP)  # --to: DESIGN §4's spelling
    p.add_argument("--jobs", type=worker_count, help="parallel planning workers (default: CPU count)")
    p.add_argument("--dry-run", action="store_true", help="plan and report; write nothing")
    p.add_argument("--no-test", action="store_true", help="skip each package's fast tests after its update")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change an answer (adopt)")
    p.add_argument("--trust", action="store_true", help="let the template's _migrations run their commands")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args, console) -> int:
    repo = repo_of(args)
    overrides = parse_data(args.set, "--set")
    total = len(discover(repo, args.names or None, fleet_of(args)))
    columns = (TextColumn("sync"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True, disable=args.json) as bar:
        task = bar.add_task("", total=total)
        results = sync_fleet(
            repo,
            args.names or None,
            ref=args.ref,
            jobs=args.jobs,
            dry_run=args.dry_run,
            run_tests=not args.no_test,
            overrides=overrides,
            on_result=lambda r: bar.update(task, advance=1, description=f"{r.name}: {r.result}"),
            trust=args.trust,
            fleet_file=fleet_of(args),
        )
    ok = {*REACHED, WOULD_UPDATE} if args.dry_run else REACHED
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        _table(console, results)
    return 0 if all(r.result in ok for r in results) else 1


def _table(console, results) -> None:
    table = Table(title="smt sync")
    for column in ("package", "from", "to", "result", "files changed", "seconds"):
        table.add_column(column, justify="right" if column in ("files changed", "seconds") else "left")
    for r in results:
        table.add_row(
            r.name, str(r.from_version), r.to_version, r.result, str(len(r.files_changed)), f"{r.seconds:.2f}"
        )
    console.print(table)
    for r in results:
        if r.reason:
            console.print(f"[bold]{r.name}[/bold]: {r.result}: {r.reason}")
        for c in r.conflicts:
            if c.detail:
                console.print(f"--- {r.name}/{c.path}\n{c.detail}", markup=False)
