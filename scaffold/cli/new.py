"""``smt new NAME``: render a package from the template."""

from __future__ import annotations

from pathlib import Path

from ..errors import SmtError
from ..new import new_package
from ..template import TemplateRepo, questions
from ._common import REF_HELP, parse_data, repo_of

HELP = "create a model package from the template (same result as copier copy)"


SHORTCUTS = {"events": str, "interaction": str, "towers": str, "embedding_dim": int, "description": str}


def register(p) -> None:
    asked = _questions()
    p.add_argument("name", help="package/import name, lower snake-case")
    for key, kind in SHORTCUTS.items():
        flag = "--" + key.replace("_", "-")
        p.add_argument(flag, type=kind, dest=key, help=_help(asked.get(key, {}), key))
    others = ", ".join(sorted(set(asked) - set(SHORTCUTS) - {"name"})) or "see copier.yml"
    p.add_argument(
        "--set",
        "--data",  # DESIGN §4's spelling, as in `copier copy --data`
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"any template answer, as YAML: {others}",
    )
    p.add_argument("--dest", help="target directory (default: generated/NAME)")
    p.add_argument("--ref", help=REF_HELP)
    p.add_argument("--features", help="a features.yaml to start from instead of the template's example")


def run(args, console) -> int:
    data = parse_data(args.set, "--set")
    if args.events is not None:  # "" or "," is an empty list, which the template's validator rejects
        data["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
    for key in [k for k in SHORTCUTS if k != "events"]:
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
    console.print(
        f"next: pip install -e {created.path} && cd {created.path} && "
        f"python -m {args.name} synth --rows 20000 --out data/train.parquet"
    )
    return 0


def _questions() -> dict:
    """The template's questions, for the help text: the repository of the current directory, else this tool's."""
    for start in (None, Path(__file__).resolve().parents[2]):
        try:
            return questions(TemplateRepo.find(start).root)
        except SmtError:
            continue
    return {}


def _help(question: dict, key: str) -> str:
    """A question's help, choices and default as copier.yml gives them (one source; never written twice)."""
    text = str(question.get("help", key)).replace("%", "%%")
    if key == "events":
        text += "; here comma-separated, e.g. click,conversion"
    if question.get("choices"):
        text += f" (one of: {', '.join(map(str, question['choices']))})"
    default = question.get("default")
    if default is not None and "{" not in str(default):
        text += f" [default: {default}]"
    return text
