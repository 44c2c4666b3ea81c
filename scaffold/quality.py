"""Quality of fleet packages on their real tasks: train over seeds through each package's own CLI, test metrics.

Task data comes from `smt data fetch` (DESIGN §5). A *variant* is a named set of training overrides
(``key=value``), so template defaults can be chosen by evidence across the whole fleet: one setting for all.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import runner
from .datasets.tasks import ALIASES
from .errors import SmtError
from .fleet import Package, load_package
from .status import render_answers
from .template import TemplateRepo, is_model_owned, model_owned_patterns


@dataclass
class Run:
    package: str
    variant: str
    seed: int
    test: dict  # event → metrics
    train_seconds: float
    steps: int
    capacity: dict

    @property
    def mean_ne(self) -> float:
        return statistics.mean(m["ne"] for m in self.test.values())


@dataclass
class Summary:
    package: str
    variant: str
    runs: list[Run] = field(default_factory=list)

    def stat(self, key: str) -> tuple[float, float]:
        values = [statistics.mean(m[key] for m in r.test.values()) for r in self.runs]
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def task_path(data_root: Path, package: Package) -> Path:
    """Where the package's task data lives: its own name, or the task it shares (movielens_multi)."""
    return data_root / ALIASES.get(package.name, package.name)


def task_dir(data_root: Path, package: Package) -> Path:
    path = task_path(data_root, package)
    if not (path / "train.parquet").is_file():
        raise SmtError(f"no task data for {package.name} in {path}; run `smt data fetch` first")
    return path


def run_once(package: Package, data: Path, seed: int, overrides: list[str], variant: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="smt-quality-") as tmp:
        out = Path(tmp) / "run"
        args = ["--train", str(data / "train.parquet"), "--valid", str(data / "valid.parquet"), "--out", str(out)]
        summary = json.loads(runner.check_cli(package.path, "train", *args, "--quiet", f"seed={seed}", *overrides))
        test = json.loads(
            runner.check_cli(
                package.path, "evaluate", "--checkpoint", str(out), "--data", str(data / "test.parquet"), "--json"
            )
        )
        capacity = json.loads(runner.check_cli(package.path, "capacity", "--checkpoint", str(out), "--json"))
    return Run(package.name, variant, seed, test["events"], summary["train_seconds"], summary["steps"], capacity)


def relative_ne_change(candidate: float, baseline: float) -> float:
    """(NE_candidate − NE_baseline) / NE_baseline, in percent; negative is better (Meta's convention)."""
    return 100.0 * (candidate - baseline) / baseline


@dataclass(frozen=True)
class Variant:
    """A named change to evaluate: template answers (re-render) and/or training overrides (``key=value``)."""

    name: str
    answers: dict = field(default_factory=dict)
    training: tuple[str, ...] = ()


def parse_variant(spec: str, questions: set[str]) -> Variant:
    """``NAME:key=value,key=value``; keys that are template questions are answers, the rest training options."""
    name, _, items = spec.partition(":")
    answers, training = {}, []
    for item in filter(None, items.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SmtError(f"variant {spec!r}: {item!r} must look like key=value")
        if key in questions:
            answers[key] = value if value == "match" else yaml.safe_load(value)
        else:
            training.append(item)
    return Variant(name, answers, tuple(training))


def template_questions(repo: TemplateRepo) -> set[str]:
    config = yaml.safe_load((repo.root / "copier.yml").read_text())
    return {k for k in config if not k.startswith("_")}


@contextlib.contextmanager
def with_answers(repo: TemplateRepo, package: Package, answers: dict) -> Iterator[Package]:
    """The package re-rendered from the working-tree template with changed answers, its own files kept."""
    if not answers:
        yield package
        return
    with repo.snapshot() as template_dir, tempfile.TemporaryDirectory(prefix="smt-variant-") as tmp:
        merged = {**package.questions, **answers}
        out = render_answers(template_dir, merged, Path(tmp) / package.name)
        patterns = model_owned_patterns(template_dir, merged)
        for path in package.path.rglob("*"):
            rel = path.relative_to(package.path).as_posix()
            if path.is_file() and is_model_owned(rel, patterns):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out / rel)
        yield load_package(out)
