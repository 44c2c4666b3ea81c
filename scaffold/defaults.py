"""The template's defaults, read and changed in place: answers in ``copier.yml``, training options in the
template's ``config.py`` (``TrainConfig``).

A default changes by editing one value where a person would edit it (comments, layout and every other line
kept), then re-reading the file to prove the new value is what the file now says. ``smt adopt`` is the caller.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from .errors import SmtError
from .template import template_config

CONFIG_GLOB = "template_repo/src/*/config.py"


def config_path(template_root: Path) -> Path:
    """The template's ``config.py`` (its directory name is a Jinja expression, so found by glob)."""
    found = sorted(Path(template_root).glob(CONFIG_GLOB))
    if len(found) != 1:
        raise SmtError(f"expected one {CONFIG_GLOB} in {template_root}, found {len(found)}")
    return found[0]


def _train_config_class(tree: ast.Module, source: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
            return node
    raise SmtError(f"{source} has no class TrainConfig")


def _option_nodes(config_py: Path) -> tuple[str, dict[str, ast.expr]]:
    """The source of ``config_py`` and, per option of TrainConfig, the expression node of its default."""
    try:
        source = Path(config_py).read_text()
    except FileNotFoundError:
        raise SmtError(
            f"{config_py} is missing; it is template-owned: restore it with `git checkout -- {config_py}`"
        ) from None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise SmtError(f"{config_py} is not valid Python ({exc.msg}, line {exc.lineno})") from None
    nodes = {}
    for stmt in _train_config_class(tree, str(config_py)).body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
            continue
        value = stmt.value
        if isinstance(value, ast.Call) and value.args:  # _option(default, "help")
            value = value.args[0]
        nodes[stmt.target.id] = value
    return source, nodes


def training_defaults(config_py: Path) -> dict:
    """Every TrainConfig option with a literal default, as Python values (read without importing the file)."""
    _, nodes = _option_nodes(config_py)
    out = {}
    for name, node in nodes.items():
        try:
            out[name] = ast.literal_eval(node)
        except ValueError:
            continue
    return out


def set_training_default(config_py: Path, key: str, value) -> None:
    """Rewrite the default of TrainConfig option ``key`` in ``config_py`` to ``value``."""
    source, nodes = _option_nodes(config_py)
    if key not in nodes:
        raise SmtError(f"TrainConfig in {config_py} has no option {key!r}")
    node = nodes[key]
    old = ast.literal_eval(node)
    if type(old) is not type(value) and not (isinstance(old, float) and isinstance(value, int)):
        raise SmtError(f"training option {key} is a {type(old).__name__}; cannot make {value!r} its default")
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    start = offsets[node.lineno - 1] + node.col_offset
    end = offsets[node.end_lineno - 1] + node.end_col_offset
    literal = repr(float(value) if isinstance(old, float) else value)
    Path(config_py).write_text(source[:start] + literal + source[end:])
    if training_defaults(config_py).get(key) != value:
        raise SmtError(f"rewriting the default of {key} in {config_py} did not take; edit it by hand")


def answer_default(template_root: Path, key: str):
    """The default of question ``key`` in copier.yml (a Jinja expression stays a string)."""
    question = template_config(template_root).get(key)
    if not isinstance(question, dict):
        raise SmtError(f"copier.yml has no question {key!r}")
    return question.get("default")


def set_answer_default(template_root: Path, key: str, value) -> None:
    """Rewrite the ``default:`` line of question ``key`` in copier.yml (the file's other lines kept)."""
    path = Path(template_root) / "copier.yml"
    old = answer_default(template_root, key)
    if isinstance(old, str) and "{" in old:
        raise SmtError(f"the default of {key} is computed ({old}); change it in copier.yml by hand")
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"{key}:"), None)
    if start is None:
        raise SmtError(f"copier.yml: question {key} is not a block '{key}:'; change its default by hand")
    line_no = None
    for i in range(start + 1, len(lines)):
        if lines[i].strip() and not lines[i].startswith((" ", "\t")):
            break  # the next question: this one has no default line
        if re.match(r"^\s+default:", lines[i]):
            line_no = i
            break
    if line_no is None:
        raise SmtError(f"copier.yml: question {key} has no 'default:' line; add one by hand")
    indent = lines[line_no][: len(lines[line_no]) - len(lines[line_no].lstrip())]
    flow = yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("...\n").strip()
    lines[line_no] = f"{indent}default: {flow}\n"
    path.write_text("".join(lines))
    if answer_default(template_root, key) != value:
        raise SmtError(f"rewriting the default of {key} in copier.yml did not take; edit it by hand")
