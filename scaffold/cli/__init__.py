"""``smt``: parses arguments, calls the library, renders results. One exit path for typed errors."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ..errors import SmtError
from ..scratch import sweep
from . import (
    adopt,
    bench,
    check,
    data,
    demo,
    ledger,
    new,
    qualify,
    recover,
    release,
    report,
    status,
    subset,
    sync,
    techniques,
)

COMMANDS = {
    "new": new,
    "status": status,
    "sync": sync,
    "recover": recover,
    "check": check,
    "release": release,
    "techniques": techniques,
    "subset": subset,
    "qualify": qualify,
    "adopt": adopt,
    "ledger": ledger,
    "report": report,
    "data": data,
    "bench": bench,
    "demo": demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smt", description="Standard Model Template: one template, a fleet of models")
    parser.add_argument("--repo", help="the SMT repository (default: the git repository of the current directory)")
    parser.add_argument("--fleet", help="a fleet file (YAML 'packages: [paths]') instead of generated/")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.register(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sweep()  # scratch folders of smt commands that were killed (see scratch.py)
    wide = None if sys.stdout.isatty() else 200  # tables in logs and pipes are not squeezed to 80 columns
    console = Console(highlight=False, soft_wrap=True, width=wide)
    try:
        return COMMANDS[args.command].run(args, console)
    except SmtError as exc:
        Console(stderr=True, highlight=False).print(f"[red]error:[/red] {exc}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
