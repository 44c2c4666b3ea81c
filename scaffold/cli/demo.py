"""``smt demo``: the whole loop on an embedded default, in about a minute."""

from __future__ import annotations

import json

from rich.table import Table

from ..demo import run_demo
from ..paths import folder
from ._common import repo_of

HELP = "render a fresh package, train it on synthetic data, evaluate, export; print metrics and capacity"
ALL_ROWS = "synthetic train rows (default 100,000; valid and test get a fifth each)"


def register(p) -> None:
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default 3); bounded by work, not time")
    p.add_argument("--rows", type=int, default=100_000, help=ALL_ROWS)
    p.add_argument("--workdir", default="build/demo", help="where the demo package goes (replaced)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON at the end")


def run(args, console) -> int:
    repo = repo_of(args)
    workdir = folder(repo.root / args.workdir, "--workdir", "the demo's package and data")  # an absolute one stays
    result = run_demo(repo, workdir, args.epochs, args.rows, echo=console.print)
    train = result.train
    console.print(
        f"trained {train.steps} steps in {train.train_seconds:.1f} s "
        f"({train.samples_per_second:,.0f} samples/s); best step {train.best_step}"
    )
    table = Table(title="test metrics per event")
    for column in ("event", "rows", "logloss", "NE", "AUC", "calibration"):
        table.add_column(column, justify="right")
    for event, m in result.test.items():
        table.add_row(event, f"{m.rows:,}", _num(m.logloss, 4), _num(m.ne, 4), _num(m.auc, 4), _num(m.calibration, 3))
    console.print(table)
    cap, exp = result.capacity, result.export
    console.print(
        f"capacity: {cap.parameters:,} parameters ({cap.embedding_bytes / 1e6:.2f} MB of embeddings), "
        f"{cap.dense_flops_per_example:,.0f} dense FLOPs/example"
    )
    console.print(
        f"export: {exp.artifact} parity max |diff| {exp.parity_max_abs_diff:.1e}; "
        f"p50 latency ms by batch {exp.latency_ms_p50}"
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


def _num(value: float | None, digits: int) -> str:
    """A metric for the table; undefined metrics (a split with one class) show as a dash."""
    return "–" if value is None else f"{value:.{digits}f}"
