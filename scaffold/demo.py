"""The whole loop on an embedded default: render a fresh package, synthesize data, train, evaluate, export.

Every model step runs the rendered package's own CLI in a subprocess (``python -m demo_ctr …``), so the
demo also proves that a package stands alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import SmtError
from .new import new_package
from .package_cli import Capacity, EventMetrics, ExportResult, PackageCLI, TrainResult, events_to_dict
from .template import TemplateRepo

DEMO_NAME = "demo_ctr"
DEMO_ANSWERS = {"events": ["click", "conversion"], "interaction": "dcn_v2", "towers": "mmoe"}


@dataclass(frozen=True)
class DemoResult:
    package: Path
    answers: dict
    smt_new_seconds: float
    train: TrainResult
    test: dict[str, EventMetrics]
    export: ExportResult
    capacity: Capacity

    def to_dict(self) -> dict:
        return {
            "package": str(self.package),
            "answers": self.answers,
            "smt_new_seconds": round(self.smt_new_seconds, 3),
            "train": self.train.to_dict(),
            "test": events_to_dict(self.test),
            "export": dict(self.export.raw),
            "capacity": self.capacity.to_dict(),
        }


def run_demo(
    repo: TemplateRepo, workdir: Path, epochs: int = 3, rows: int = 100_000, echo: Callable = print
) -> DemoResult:
    """Run the loop in ``workdir`` (replaced if present).

    Bounded by epochs, never by wall time: the same machine prints the same metrics on every run (seeded data,
    seeded model, a data order that depends only on the seed).
    """
    if epochs < 1 or rows < 5:
        raise SmtError(
            f"the demo needs --epochs >= 1 and --rows >= 5 (valid and test get a fifth each); "
            f"got --epochs {epochs} --rows {rows}"
        )
    dest = workdir / DEMO_NAME
    if dest.exists():
        shutil.rmtree(dest)
    dirty = bool(repo.dirty_files())
    echo(f"1/5 smt new {DEMO_NAME} " + ("(uncommitted template: rendering the working tree)" if dirty else ""))
    created = new_package(repo, DEMO_NAME, dict(DEMO_ANSWERS), dest=dest, from_working_tree=dirty)
    cli, data = PackageCLI(dest), dest / "data"
    echo(f"2/5 synth: {rows:,} train, {rows // 5:,} valid and {rows // 5:,} test rows")
    for split, n, seed in (("train", rows, 1), ("valid", rows // 5, 2), ("test", rows // 5, 3)):
        cli.synth(data / f"{split}.parquet", n, seed)
    echo(f"3/5 train for up to {epochs} epoch(s) (early stopping on validation NE)")
    run = dest / "runs" / "demo"
    train = cli.train(data / "train.parquet", data / "valid.parquet", run, [f"epochs={epochs}"], quiet=False)
    echo("4/5 evaluate on the test split")
    test = cli.evaluate(run, data / "test.parquet")
    echo("5/5 export with torch.export (parity + latency) and capacity")
    export = cli.export(run, run / "model.pt2")
    return DemoResult(
        created.path, DEMO_ANSWERS, created.seconds, train, test.events, export, cli.run_capacity(train, run)
    )
