"""Quality of fleet packages on their real tasks: train over seeds through each package's own CLI, test metrics.

Task data comes from `smt data fetch` (DESIGN §5). A *variant* is a named set of training overrides
(``key=value``), so template defaults can be chosen by evidence across the whole fleet: one setting for all.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import runner
from .errors import SmtError
from .fleet import Package

TASK_OF = {"movielens_like": "movielens_like", "movielens_multi": "movielens_like"}


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


def task_dir(data_root: Path, package: Package) -> Path:
    task = TASK_OF.get(package.name, package.name)
    path = data_root / task
    if not (path / "train.parquet").is_file():
        raise SmtError(f"no task data for {package.name} in {path}; run `smt data fetch` first")
    return path


def run_once(package: Package, data: Path, seed: int, overrides: list[str], variant: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="smt-quality-") as tmp:
        out = Path(tmp) / "run"
        args = ["--train", str(data / "train.parquet"), "--valid", str(data / "valid.parquet"), "--out", str(out)]
        summary = _json(package, "train", *args, "--quiet", f"seed={seed}", *overrides)
        test = _json(package, "evaluate", "--checkpoint", str(out), "--data", str(data / "test.parquet"), "--json")
        capacity = _json(package, "capacity", "--checkpoint", str(out), "--json")
    return Run(package.name, variant, seed, test["events"], summary["train_seconds"], summary["steps"], capacity)


def _json(package: Package, *args: str) -> dict:
    proc = runner.run_cli(package.path, *args)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise SmtError(f"{package.name} {args[0]} failed: {last}")
    return json.loads(proc.stdout)


def relative_ne_change(candidate: float, baseline: float) -> float:
    """(NE_candidate − NE_baseline) / NE_baseline, in percent; negative is better (Meta's convention)."""
    return 100.0 * (candidate - baseline) / baseline
