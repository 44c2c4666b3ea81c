"""``smt new NAME``: render a package from the template."""

from __future__ import annotations

from pathlib import Path

from ..new import new_package
from ._common import parse_data, repo_of

HELP = "create a model package from the template (same result as copier copy)"


def register(p) -> None:
    p.add_argument("name", help="package/import name, lower snake-case")
    p.add_argument("--events", help="comma-separated label columns, one head each (default: label)")
    p.add_argument("--interaction", help="concat | dot | dcn_v2")
    p.add_argument("--towers", help="single | shared_bottom | mmoe")
    p.add_argument("--embedding-dim", type=int, dest="embedding_dim")
    p.add_argument("--description")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="any template answer (YAML)")
    p.add_argument("--dest", help="target directory (default: generated/NAME)")
    p.add_argument("--ref", help="template version: tag or commit (default: latest release tag, else HEAD)")
    p.add_argument("--features", help="a features.yaml to start from instead of the template's example")


def run(args, console) -> int:
    data = parse_data(args.data)
    if args.events:
        data["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
    for key in ("interaction", "towers", "embedding_dim", "description"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    repo = repo_of(args)
    created = new_package(
        repo,
        args.name,
        data,
        dest=Path(args.dest) if args.dest else None,
        ref=args.ref,
        features=Path(args.features) if args.features else None,
    )
    answers = {k: v for k, v in created.answers.items() if not k.startswith("_")}
    console.print(
        f"created [bold]{created.path}[/bold] at template {created.answers.get('_commit')} "
        f"in {created.seconds:.2f} s"
    )
    console.print(f"answers: {answers}")
    console.print(f"next: cd {created.path} && python -m {args.name} synth --rows 20000 --out data/train.parquet")
    return 0
