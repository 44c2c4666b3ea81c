"""``smt subset``: every package's model descriptors and a representative subset of K packages."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.table import Table

from .. import smt_cache
from ..descriptors import FIELDS, describe_fleet
from ..errors import SmtError
from ..fleet import discover
from ..quality import task_path
from ..subset import choose_subset
from ._common import fleet_of, repo_of

HELP = "model descriptors of every package and a representative subset (k-means) for qualification"


def register(p) -> None:
    p.add_argument("--k", type=int, help="number of representatives (default: ceil(sqrt(packages)))")
    p.add_argument("--data", default="build/data", help="task data root: DATA/<package>/train.parquet")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def fleet_subset(repo, args, console):
    """Descriptors of the fleet's packages that have task data, and their subset; notes the others."""
    data_root = Path(args.data) if Path(args.data).is_absolute() else repo.root / args.data
    packages = [p for p in discover(repo, None, fleet_of(args)) if not p.problem]

    def train_of(package):
        return task_path(data_root, package) / "train.parquet"

    descriptors, missing = describe_fleet(packages, train_of, os.cpu_count() or 1, smt_cache.capacities(repo.root))
    if not descriptors:
        raise SmtError(f"no package has task data under {data_root}; run `smt data fetch` or pass --data")
    if missing and not getattr(args, "json", False):
        console.print(f"no task data under {data_root} (left out): {', '.join(missing)}")
    return descriptors, choose_subset(descriptors, args.k), missing


def run(args, console) -> int:
    descriptors, subset, missing = fleet_subset(repo_of(args), args, console)
    if args.json:
        print(
            json.dumps(
                {"descriptors": [d.to_dict() for d in descriptors], "subset": subset.to_dict(), "left_out": missing},
                indent=2,
            )
        )
        return 0
    table = Table(title=f"{len(descriptors)} package(s), {subset.k} representative(s)")
    for column in ("package", *FIELDS, "represented by"):
        table.add_column(column.replace("_", " "), justify="left" if column == "package" else "right")
    for d in descriptors:
        rep = subset.represented_by[d.package]
        cells = [
            (
                f"{getattr(d, f):.4f}"
                if isinstance(getattr(d, f), float) and f.endswith("rate")
                else f"{getattr(d, f):,.0f}" if isinstance(getattr(d, f), float) else str(getattr(d, f))
            )
            for f in FIELDS
        ]
        table.add_row(
            f"[bold]{d.package}[/bold]" if rep == d.package else d.package,
            *cells,
            "itself" if rep == d.package else rep,
        )
    console.print(table)
    console.print(f"subset: {', '.join(subset.representatives)}")
    return 0
