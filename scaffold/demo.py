"""The whole loop on an embedded default: render a fresh package, synthesize data, train, evaluate, export.

Every model step runs the rendered package's own CLI in a subprocess (``python -m demo_ctr …``), so the
demo also proves that a package stands alone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from . import runner
from .new import new_package
from .template import TemplateRepo

DEMO_NAME = "demo_ctr"
DEMO_ANSWERS = {"events": ["click", "conversion"], "interaction": "dcn_v2", "towers": "mmoe"}


def run_demo(repo: TemplateRepo, workdir: Path, epochs: int = 3, rows: int = 100_000, echo: Callable = print) -> dict:
    """Run the loop in ``workdir`` (replaced if present) and return every result as a dict.

    Bounded by epochs, never by wall time: the same machine prints the same metrics on every run (seeded data,
    seeded model, a data order that depends only on the seed).
    """
    dest = workdir / DEMO_NAME
    if dest.exists():
        shutil.rmtree(dest)
    dirty = bool(repo.dirty_files())
    echo(f"1/5 smt new {DEMO_NAME} " + ("(uncommitted template: rendering the working tree)" if dirty else ""))
    created = new_package(repo, DEMO_NAME, dict(DEMO_ANSWERS), dest=dest, from_working_tree=dirty)
    data = dest / "data"
    echo(f"2/5 synth: {rows:,} train, {rows // 5:,} valid and {rows // 5:,} test rows")
    for split, n, seed in (("train", rows, 1), ("valid", rows // 5, 2), ("test", rows // 5, 3)):
        runner.check_cli(dest, "synth", "--rows", str(n), "--out", str(data / f"{split}.parquet"), "--seed", str(seed))
    echo(f"3/5 train for up to {epochs} epoch(s) (early stopping on validation NE)")
    run = dest / "runs" / "demo"
    train = json.loads(
        runner.check_cli(
            dest,
            "train",
            *("--train", str(data / "train.parquet"), "--valid", str(data / "valid.parquet"), "--out", str(run)),
            f"epochs={epochs}",
            capture_stderr=False,
        )
    )
    echo("4/5 evaluate on the test split")
    test = json.loads(
        runner.check_cli(dest, "evaluate", "--checkpoint", str(run), "--data", str(data / "test.parquet"), "--json")
    )
    echo("5/5 export with torch.export (parity + latency) and capacity")
    export = json.loads(
        runner.check_cli(dest, "export", "--checkpoint", str(run), "--out", str(run / "model.pt2"), "--json")
    )
    capacity = json.loads(runner.check_cli(dest, "capacity", "--checkpoint", str(run), "--json"))
    return {
        "package": str(created.path),
        "answers": DEMO_ANSWERS,
        "smt_new_seconds": round(created.seconds, 3),
        "train": train,
        "test": test["events"],
        "export": export,
        "capacity": capacity,
    }
