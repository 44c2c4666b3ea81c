"""``smt bench quality``: fleet packages on their real tasks, over seeds, per variant of training overrides."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from ..fleet import discover
from ..quality import (
    Summary,
    Variant,
    parse_variant,
    relative_ne_change,
    run_once,
    task_dir,
    task_path,
    template_questions,
    with_answers,
)
from ._common import fleet_of, repo_of

HELP = "benchmarks: `quality` trains fleet packages on their real tasks over seeds and reports test metrics"


def register(p) -> None:
    sub = p.add_subparsers(dest="bench_command", required=True)
    q = sub.add_parser("quality", help="test NE/AUC/calibration per package and variant, mean over seeds")
    q.add_argument("names", nargs="*", help="packages (default: those with task data)")
    q.add_argument("--data", default="build/data", help="task data root (smt data fetch)")
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,key=value",
        help="a named set of training overrides; 'default' (no overrides) always runs first",
    )
    q.add_argument("--out", help="write the runs as JSON here")


def run(args, console) -> int:
    repo = repo_of(args)
    data_root = Path(args.data) if Path(args.data).is_absolute() else repo.root / args.data
    packages = [
        p
        for p in discover(repo, args.names or None, fleet_of(args))
        if args.names or (task_path(data_root, p) / "train.parquet").is_file()
    ]
    questions = template_questions(repo)
    variants = [Variant("default"), *(parse_variant(v, questions) for v in args.variant)]
    summaries = []
    with console.status("training") as status:
        for package in packages:
            data = task_dir(data_root, package)
            default_flops = None
            for variant in variants:
                answers = dict(variant.answers)
                if answers.get("flops_budget") == "match":
                    answers["flops_budget"] = int(default_flops)
                summary = Summary(package.name, variant.name)
                with with_answers(repo, package, answers) as candidate:
                    for seed in range(args.seeds):
                        status.update(f"{package.name} / {variant.name} / seed {seed}")
                        run = run_once(candidate, data, seed, list(variant.training), variant.name)
                        summary.runs.append(run)
                default_flops = default_flops or summary.runs[0].capacity["dense_flops_per_example"]
                summaries.append(summary)
    _table(console, summaries)
    if args.out:
        Path(args.out).write_text(json.dumps([[r.__dict__ for r in s.runs] for s in summaries], indent=2) + "\n")
    return 0


def _table(console, summaries: list[Summary]) -> None:
    table = Table(title="test metrics, mean ± std over seeds (NE: lower is better)")
    for column in ("package", "variant", "NE", "ΔNE vs default", "AUC", "calibration", "train s", "FLOPs/ex"):
        table.add_column(column, justify="left" if column in ("package", "variant") else "right")
    default = {s.package: s.stat("ne")[0] for s in summaries if s.variant == "default"}
    for s in summaries:
        ne, ne_sd = s.stat("ne")
        auc, _ = s.stat("auc")
        cal, _ = s.stat("calibration")
        seconds = sum(r.train_seconds for r in s.runs) / len(s.runs)
        flops = s.runs[0].capacity["dense_flops_per_example"]
        delta = relative_ne_change(ne, default[s.package])
        table.add_row(
            s.package,
            s.variant,
            f"{ne:.4f} ± {ne_sd:.4f}",
            f"{delta:+.2f}%",
            f"{auc:.4f}",
            f"{cal:.3f}",
            f"{seconds:.1f}",
            f"{flops:,.0f}",
        )
    console.print(table)
    variants = sorted({s.variant for s in summaries} - {"default"})
    for v in variants:
        deltas = [relative_ne_change(s.stat("ne")[0], default[s.package]) for s in summaries if s.variant == v]
        console.print(f"{v}: fleet-average relative NE change vs default {sum(deltas) / len(deltas):+.2f}%")
