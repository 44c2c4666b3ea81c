"""Benchmark: `smt new` seconds per package and smoke-training throughput of every fleet package on CPU.

    .venv/bin/python -m benchmarks.fleet_smoke [--rows 20000] [--repeats 5]

Prints a table and writes benchmarks/results/fleet_smoke.{json,md}. Each package's own CLI is run in a
subprocess on synthetic data from its own `synth` (its real-task schema), so the numbers are what a user gets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from scaffold import TemplateRepo, discover, new_package
from scaffold.package_cli import PackageCLI, mean_ne

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def time_smt_new(repo: TemplateRepo, answers: dict, repeats: int) -> float:
    """Median wall seconds of `new_package` (copier render from a git ref, placed atomically)."""
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            start = time.perf_counter()
            new_package(repo, answers["name"], answers, dest=Path(tmp) / f"p{i}", ref=repo.default_ref())
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def smoke_train(package: Path, rows: int, epochs: int) -> dict:
    cli = PackageCLI(package)
    with tempfile.TemporaryDirectory() as tmp:
        train, valid, run = Path(tmp) / "train.parquet", Path(tmp) / "valid.parquet", Path(tmp) / "run"
        cli.synth(train, rows, seed=1)
        cli.synth(valid, rows // 4, seed=2)
        summary = cli.train(train, valid, run, [f"epochs={epochs}", "patience=0"])
        capacity = cli.run_capacity(summary, run)
    valid_ne = mean_ne(summary.valid)
    return {"samples_per_second": summary.samples_per_second, "valid_mean_ne": valid_ne, **capacity.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repo = TemplateRepo.find(Path(__file__).resolve().parent)
    rows = []
    for package in discover(repo):
        new_seconds = time_smt_new(repo, package.questions, args.repeats)
        smoke = smoke_train(package.path, args.rows, args.epochs)
        rows.append({"package": package.name, "smt_new_seconds": round(new_seconds, 3), **smoke})
        print(f"{package.name:<16} new {new_seconds:.2f}s  train {smoke['samples_per_second']:>9,.0f} samples/s")
    result = {"machine": machine(), "settings": vars(args), "packages": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_smoke.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "fleet_smoke.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        "# Fleet smoke benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']} (CPU).",
        f"Synthetic data from each package's own `synth` ({s['rows']:,} train rows), {s['epochs']} epochs, batch 512;",
        f"`smt new` = median of {s['repeats']} renders. Command: `.venv/bin/python -m benchmarks.fleet_smoke`.",
        "",
        "| package | smt new (s) | train samples/s | valid NE | parameters | embedding MB | dense FLOPs/example |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["packages"]:
        cells = [
            r["package"],
            f"{r['smt_new_seconds']:.2f}",
            f"{r['samples_per_second']:,.0f}",
            f"{r['valid_mean_ne']:.4f}",
            f"{r['parameters']:,}",
            f"{r['embedding_bytes'] / 1e6:.2f}",
            f"{r['dense_flops_per_example']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
