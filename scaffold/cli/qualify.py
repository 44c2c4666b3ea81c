"""``smt qualify TECHNIQUE``: incumbent vs candidate on a representative subset, decided by a stated rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.table import Table

from ..defaults import config_path, training_defaults
from ..errors import SmtError
from ..fleet import discover
from ..ledger import append, ledger_path
from ..paths import output_file
from ..qualify import Plan, Rule, qualify, without_effect
from ..techniques import ad_hoc, load_catalogue
from ..template import questions
from ._common import fleet_of, parse_data, repo_of, worker_count
from .subset import fleet_subset

HELP = "qualify a technique on a representative subset at neutral capacity; decide and record it in the ledger"


def register(p) -> None:
    p.add_argument("technique", help="a technique of techniques.yml, or a new name with --set")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="define or override the candidate: template answers and/or training options",
    )
    p.add_argument("--packages", help="comma-separated packages instead of the representative subset")
    p.add_argument("--k", type=int, help="size of the representative subset (default: ceil(sqrt(packages)))")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm, paired (default 3)")
    p.add_argument("--jobs", type=worker_count, help="trainings at once in the local process pool (default: cores / 2)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the trainings on Ray ('local' starts a local instance)")
    p.add_argument("--data", default="build/data", help="task data root: DATA/<package>/{train,valid,test}.parquet")
    p.add_argument("--min-gain", type=float, default=Rule.min_gain, help="percent (default %(default)s)")
    p.add_argument("--max-regression", type=float, default=Rule.max_regression, help="percent (default %(default)s)")
    p.add_argument(
        "--guard-seeds",
        type=int,
        default=Plan.guard_seeds,
        help="seeds per arm on each package the subset holds out; a regression there beyond --guard-regression "
        "rejects (default %(default)s; 0: no guard; not used with --packages)",
    )
    p.add_argument(
        "--guard-regression", type=float, default=Rule.guard_regression, help="percent (default %(default)s)"
    )
    p.add_argument("--confidence", type=float, default=Rule.confidence, help="(default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="retrain incumbents even if this exact run is cached")
    p.add_argument("--ledger", help="append the record to this ledger file instead of the repository's ledger.jsonl")
    p.add_argument("--json", action="store_true", help="print the ledger record")


def candidate_of(repo, name: str, settings: dict):
    catalogue = load_catalogue(repo.root)
    if name in catalogue and not settings:
        return catalogue[name]
    base = catalogue.get(name)
    merged = {**(base.answers if base else {}), **(base.training if base else {}), **settings}
    if not merged:
        raise SmtError(f"unknown technique {name!r}; see `smt techniques`, or define it with --set KEY=VALUE")
    return ad_hoc(name, merged, questions(repo.root), training_defaults(config_path(repo.root)))


def _check_args(args) -> None:
    """Refuse what the qualification cannot mean, before any training (and before the ledger sees it)."""
    if args.seeds < 1:
        raise SmtError("--seeds must be at least 1")
    if args.guard_seeds < 0:
        raise SmtError("--guard-seeds must be 0 (no guard) or more")
    if args.packages and args.k is not None:
        raise SmtError("give --packages (these packages) or --k (a subset of that size), not both")
    bounds = {"--min-gain": args.min_gain, "--max-regression": args.max_regression}
    bounds["--guard-regression"] = args.guard_regression
    negative = [f"{flag} {value:g}" for flag, value in bounds.items() if value < 0]
    if negative:
        raise SmtError(f"{', '.join(negative)}: the rule's percentages are 0 or more")
    if not 0 < args.confidence < 1:
        raise SmtError(f"--confidence must be between 0 and 1 (e.g. 0.95), got {args.confidence:g}")
    if args.ledger:  # the record is written after the trainings: a bad path must fail now, not then
        output_file(args.ledger, "--ledger")


def run(args, console) -> int:
    repo = repo_of(args)
    technique = candidate_of(repo, args.technique, parse_data(args.set, "--set"))
    _check_args(args)
    subset_info, guard = None, []
    if args.packages:
        packages = discover(repo, args.packages.split(","), fleet_of(args))
    else:
        descriptors, subset, missing = fleet_subset(repo, args, console)
        subset_info = subset.to_dict() | {"left_out": missing}
        packages = discover(repo, subset.representatives, fleet_of(args))
        held_out = sorted(set(subset.represented_by) - set(subset.representatives))
        guard = discover(repo, held_out, fleet_of(args)) if held_out and args.guard_seeds else []
        if not args.json:
            console.print(f"representative subset (k={subset.k}): {', '.join(subset.representatives)}")
            if guard:
                console.print(f"guard: {', '.join(held_out)} at {args.guard_seeds} seed(s) per arm")
    cores = os.cpu_count() or 1
    jobs = args.jobs or max(1, cores // 2)
    rule = Rule(args.min_gain, args.max_regression, args.confidence, guard_regression=args.guard_regression)
    plan = Plan(args.seeds, jobs, max(1, cores // jobs), args.ray, rule, not args.no_cache, args.guard_seeds)
    data_root = Path(args.data) if Path(args.data).is_absolute() else repo.root / args.data
    say = (lambda text: None) if args.json else (lambda text: console.print(f"  {text}", highlight=False))
    record = qualify(repo, technique, packages, data_root, plan, say, subset_info, guard)
    append(Path(args.ledger) if args.ledger else ledger_path(repo.root), record)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        show(console, record)
    return 0


def show(console, record: dict) -> None:
    table = Table(
        title=f"qualify {record['technique']} at {record['template_version']}: "
        f"{record['seeds']} seed(s), valid NE decides"
    )
    for column in ("package", "incumbent NE", "candidate NE", "ΔNE valid", "interval", "ΔNE test", "FLOPs inc → cand"):
        table.add_column(column, justify="left" if column == "package" else "right")
    for name, r in record["results"].items():
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        table.add_row(
            name,
            f"{mean(r['incumbent_valid']):.4f}",
            f"{mean(r['candidate_valid']):.4f}",
            f"{r['delta']:+.3f}%",
            f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]",
            f"{r['delta_test']:+.3f}%",
            f"{r['incumbent_flops']:,.0f} → {r['candidate_flops']:,.0f}",
        )
    for name, r in (record.get("guard") or {}).items():
        table.add_row(
            f"{name} [dim](held out, {len(r['seeds'])} seed(s))[/dim]",
            f"{sum(r['incumbent_valid']) / len(r['seeds']):.4f}",
            f"{sum(r['candidate_valid']) / len(r['seeds']):.4f}",
            f"{r['delta']:+.3f}%",
            "",
            f"{r['delta_test']:+.3f}%",
            f"{r['incumbent_flops']:,.0f} → {r['candidate_flops']:,.0f}",
        )
    a = record["aggregate"]
    table.add_row(
        "[bold]subset mean[/bold]",
        "",
        "",
        f"{a['delta']:+.3f}%",
        f"[{a['ci'][0]:+.3f}, {a['ci'][1]:+.3f}]",
        f"{a['delta_test']:+.3f}%",
        "",
    )
    console.print(table)
    held_out = record.get("guard") or {}
    for name in without_effect({**record["results"], **held_out}):
        where = "held out, so not in the mean" if name in held_out else "it enters the subset mean at +0.000%"
        console.print(
            f"no effect on {name}: its candidate trained exactly as its incumbent on every seed, so the technique "
            f"does not touch this model ({where})"
        )
    for name, why in (record.get("skipped") or {}).items():
        console.print(f"skipped {name}: {why}")
    console.print(f"rule: {record['rule_text']}")
    console.print(f"decision: [bold]{record['decision'].upper()}[/bold] — " + "; ".join(record["reasons"]))
    console.print(
        f"machine time {record['machine_seconds']:.0f} s over {record['runs'] - record['cached_runs']} "
        f"training(s) ({record['cached_runs']} from the run cache), {record['executor']}; "
        f"ledger record {record['id']}"
    )
